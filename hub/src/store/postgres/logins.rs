//! Failed logins and lock-outs on PostgreSQL ([`WriteOp::LoginFailure`],
//! [`WriteOp::LoginLock`], [`WriteOp::LoginCleared`]), shared by every hub
//! process on the database: rows only; the throttle's rules live in
//! [`crate::users`]. Failures are appended (two hubs counting at once both
//! count), so no lock is taken.
//!
//! [`WriteOp::LoginFailure`]: crate::store::WriteOp::LoginFailure
//! [`WriteOp::LoginLock`]: crate::store::WriteOp::LoginLock
//! [`WriteOp::LoginCleared`]: crate::store::WriteOp::LoginCleared

use alpr_shared::types::UnixMillis;
use deadpool_postgres::GenericClient;

use super::partition::at_col;
use super::sql::{bound, execute, query, uncol};
use crate::store::StoreError;

/// Count a failure against each of `keys`, then drop failures before
/// `keep_after` and the oldest beyond `max_rows`.
pub(super) async fn failure(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[String],
    at: UnixMillis,
    keep_after: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    execute!(
        tx,
        "INSERT INTO login_failures (key, at) SELECT k, $2 FROM unnest($1::text[]) AS k",
        &keys,
        &at_col(at)
    )
    .await?;
    execute!(
        tx,
        "DELETE FROM login_failures WHERE at < $1",
        &at_col(keep_after)
    )
    .await?;
    execute!(
        tx,
        "DELETE FROM login_failures WHERE id IN (SELECT id FROM login_failures \
         ORDER BY at, id LIMIT greatest((SELECT count(*) FROM login_failures) - $1, 0))",
        &bound(max_rows)
    )
    .await?;
    Ok(())
}

/// Forget `key`'s failures.
pub(super) async fn clear(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> Result<(), StoreError> {
    execute!(tx, "DELETE FROM login_failures WHERE key = $1", &key).await?;
    Ok(())
}

/// Lock `key` until `until` (a later lock stays) and forget its failures;
/// then drop locks that ended by `at`, and the soonest to end beyond
/// `max_rows`.
pub(super) async fn lock(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    until: UnixMillis,
    at: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    clear(tx, key).await?;
    execute!(
        tx,
        "INSERT INTO login_locks (key, until) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET until = greatest(login_locks.until, excluded.until)",
        &key,
        &at_col(until)
    )
    .await?;
    execute!(tx, "DELETE FROM login_locks WHERE until <= $1", &at_col(at)).await?;
    execute!(
        tx,
        "DELETE FROM login_locks WHERE key IN (SELECT key FROM login_locks \
         ORDER BY until, key LIMIT greatest((SELECT count(*) FROM login_locks) - $1, 0))",
        &bound(max_rows)
    )
    .await?;
    Ok(())
}

/// Failures counted against `key` at or after `since`.
pub(super) async fn failures(
    c: &impl GenericClient,
    key: &str,
    since: UnixMillis,
) -> Result<u64, StoreError> {
    let n: i64 = query!(
        c,
        "SELECT count(*) FROM login_failures WHERE key = $1 AND at >= $2",
        &key,
        &at_col(since)
    )
    .await?
    .first()
    .map_or(0, |r| r.get(0));
    uncol(n, "login_failures")
}

/// When `key`'s lock ends, if one is kept.
pub(super) async fn locked_until(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<UnixMillis>, StoreError> {
    query!(c, "SELECT until FROM login_locks WHERE key = $1", &key)
        .await?
        .first()
        .map(|r| uncol(r.get(0), "login_locks").map(UnixMillis))
        .transpose()
}
