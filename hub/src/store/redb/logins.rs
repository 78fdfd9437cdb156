//! Failed logins and lock-outs in the redb store ([`WriteOp::LoginFailure`],
//! [`WriteOp::LoginLock`], [`WriteOp::LoginCleared`]): rows only; the
//! throttle's rules (window, limits, lock-out) live in [`crate::users`].

use alpr_shared::types::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{db_err, StoreError};

/// at (BE) ‖ counter (BE) → the key a failure counts against: failures in
/// time order, so the oldest go first.
const FAILURES: TableDefinition<&[u8; 16], &str> = TableDefinition::new("login-failures-v1");
/// (key, at, counter) → (): each key's failures, counted by time.
const FAILURES_BY_KEY: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("login-failure-keys-v1");
/// key → when its lock ends (ms).
const LOCKS: TableDefinition<&str, u64> = TableDefinition::new("login-locks-v1");

/// Create the tables (at open).
pub(super) fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(FAILURES).map_err(db_err)?;
    tx.open_table(FAILURES_BY_KEY).map_err(db_err)?;
    tx.open_table(LOCKS).map_err(db_err)?;
    Ok(())
}

fn time_key(at: u64, n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

fn split(k: &[u8; 16]) -> (u64, u64) {
    let mut at = [0u8; 8];
    let mut n = [0u8; 8];
    at.copy_from_slice(&k[..8]);
    n.copy_from_slice(&k[8..]);
    (u64::from_be_bytes(at), u64::from_be_bytes(n))
}

/// Count a failure against each of `keys`, then drop failures before
/// `keep_after` and the oldest beyond `max_rows`.
pub(super) fn failure(
    tx: &redb::WriteTransaction,
    meta: &mut redb::Table<&str, u64>,
    keys: &[String],
    at: UnixMillis,
    keep_after: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    let mut by_time = tx.open_table(FAILURES).map_err(db_err)?;
    let mut by_key = tx.open_table(FAILURES_BY_KEY).map_err(db_err)?;
    for key in keys {
        let n = meta
            .get("login-failure-counter")
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        meta.insert("login-failure-counter", n + 1)
            .map_err(db_err)?;
        by_time
            .insert(&time_key(at.0, n), key.as_str())
            .map_err(db_err)?;
        by_key.insert((key.as_str(), at.0, n), ()).map_err(db_err)?;
    }
    loop {
        let len = by_time.len().map_err(db_err)?;
        let Some((k, key)) = by_time
            .first()
            .map_err(db_err)?
            .map(|(k, v)| (*k.value(), v.value().to_owned()))
        else {
            return Ok(());
        };
        let (t, n) = split(&k);
        if t >= keep_after.0 && len <= max_rows {
            return Ok(());
        }
        by_time.remove(&k).map_err(db_err)?;
        by_key.remove((key.as_str(), t, n)).map_err(db_err)?;
    }
}

/// Forget `key`'s failures.
pub(super) fn clear(tx: &redb::WriteTransaction, key: &str) -> Result<(), StoreError> {
    let mut by_time = tx.open_table(FAILURES).map_err(db_err)?;
    let mut by_key = tx.open_table(FAILURES_BY_KEY).map_err(db_err)?;
    let mine: Vec<(u64, u64)> = by_key
        .range((key, 0, 0)..=(key, u64::MAX, u64::MAX))
        .map_err(db_err)?
        .map(|r| r.map(|(k, _)| (k.value().1, k.value().2)))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    for (t, n) in mine {
        by_key.remove((key, t, n)).map_err(db_err)?;
        by_time.remove(&time_key(t, n)).map_err(db_err)?;
    }
    Ok(())
}

/// Lock `key` until `until` (a later lock stays) and forget its failures;
/// then drop locks that ended by `at`, and the soonest to end beyond
/// `max_rows`.
pub(super) fn lock(
    tx: &redb::WriteTransaction,
    key: &str,
    until: UnixMillis,
    at: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    clear(tx, key)?;
    let mut locks = tx.open_table(LOCKS).map_err(db_err)?;
    let kept = locks.get(key).map_err(db_err)?.map_or(0, |v| v.value());
    locks.insert(key, kept.max(until.0)).map_err(db_err)?;
    let mut all: Vec<(u64, String)> = locks
        .iter()
        .map_err(db_err)?
        .map(|r| r.map(|(k, v)| (v.value(), k.value().to_owned())))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    all.sort();
    let ended = all.iter().filter(|(ends, _)| *ends <= at.0).count();
    let over = ((all.len() - ended) as u64).saturating_sub(max_rows);
    let gone = ended as u64 + over;
    for (_, k) in all.iter().take(usize::try_from(gone).unwrap_or(usize::MAX)) {
        locks.remove(k.as_str()).map_err(db_err)?;
    }
    Ok(())
}

/// Failures counted against `key` at or after `since`.
pub(super) fn failures(
    db: &redb::Database,
    key: &str,
    since: UnixMillis,
) -> Result<u64, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(FAILURES_BY_KEY).map_err(db_err)?;
    let mut n = 0u64;
    for r in t
        .range((key, since.0, 0)..=(key, u64::MAX, u64::MAX))
        .map_err(db_err)?
    {
        r.map_err(db_err)?;
        n += 1;
    }
    Ok(n)
}

/// When `key`'s lock ends, if one is kept.
pub(super) fn locked_until(
    db: &redb::Database,
    key: &str,
) -> Result<Option<UnixMillis>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(LOCKS).map_err(db_err)?;
    Ok(t.get(key).map_err(db_err)?.map(|v| UnixMillis(v.value())))
}
