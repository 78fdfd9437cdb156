//! Small helpers shared by the reads and the writes: cached statements,
//! conversions between the hub's unsigned numbers and PostgreSQL's signed
//! ones, and the `nodes` row.

use alpr_shared::log::SignedEntry;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};

use crate::store::{NodeRecord, StoreError};

/// Run a statement prepared once per connection (`$c`: a pooled client or
/// a transaction) and return its rows.
macro_rules! query {
    ($c:expr, $sql:expr $(, $p:expr)* $(,)?) => {
        async {
            let st = $c.prepare_cached($sql).await.map_err($crate::store::postgres::pg_err)?;
            $c.query(&st, &[$($p),*]).await.map_err($crate::store::postgres::pg_err)
        }
    };
}
pub(super) use query;

/// [`query!`] for a statement without rows: how many it changed.
macro_rules! execute {
    ($c:expr, $sql:expr $(, $p:expr)* $(,)?) => {
        async {
            let st = $c.prepare_cached($sql).await.map_err($crate::store::postgres::pg_err)?;
            $c.execute(&st, &[$($p),*]).await.map_err($crate::store::postgres::pg_err)
        }
    };
}
pub(super) use execute;

/// A number the hub keeps as `u64`, as a column; one past `i64::MAX` is an
/// error (no log, counter or clock reaches it).
pub(super) fn col(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is out of range")))
}

/// A bound of a range query: past `i64::MAX` means "no bound".
pub(super) fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A limit, as a column value.
pub(super) fn limit(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A column the hub reads back as `u64`.
pub(super) fn uncol(v: i64, table: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("negative number {v}"),
    })
}

/// A capture time read back.
pub(super) fn millis(v: i64, table: &'static str) -> Result<UnixMillis, StoreError> {
    uncol(v, table).map(UnixMillis)
}

/// A stored SHA-256.
pub(super) fn hash(bytes: &[u8], table: &'static str) -> Result<Hash32, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash32)
        .map_err(|_| StoreError::Corrupt {
            table,
            detail: format!("a hash of {} bytes", bytes.len()),
        })
}

/// A stored entry, decoded.
pub(super) fn entry(bytes: &[u8]) -> Result<SignedEntry, StoreError> {
    SignedEntry::decode(bytes).map_err(|e| StoreError::Corrupt {
        table: "entries",
        detail: e.to_string(),
    })
}

/// A stored node name.
pub(super) fn device(name: &str) -> Result<DeviceId, StoreError> {
    DeviceId::new(name).map_err(|e| StoreError::Corrupt {
        table: "nodes",
        detail: e.to_string(),
    })
}

/// The columns of a `nodes` row, in the order [`node_row`] reads them.
pub(super) const NODE_COLUMNS: &str =
    "name, id, next_seq, head, last_contact, reported_size, serial, refusals, duplicates, images";

/// A `nodes` row selected with [`NODE_COLUMNS`].
pub(super) fn node_row(row: &tokio_postgres::Row) -> Result<(String, NodeRecord), StoreError> {
    const T: &str = "nodes";
    let get =
        |i: usize| -> Result<u64, StoreError> { uncol(row.try_get(i).map_err(super::pg_err)?, T) };
    let id: i32 = row.try_get(1).map_err(super::pg_err)?;
    let head: &[u8] = row.try_get(3).map_err(super::pg_err)?;
    Ok((
        row.try_get(0).map_err(super::pg_err)?,
        NodeRecord {
            id: u32::try_from(id).map_err(|_| StoreError::Corrupt {
                table: T,
                detail: format!("node id {id}"),
            })?,
            next_seq: get(2)?,
            head: hash(head, T)?,
            last_contact: UnixMillis(get(4)?),
            reported_size: get(5)?,
            serial: row.try_get(6).map_err(super::pg_err)?,
            refusals: get(7)?,
            duplicates: get(8)?,
            images: get(9)?,
        },
    ))
}

/// A node id as a column.
pub(super) fn id_col(id: u32) -> Result<i32, StoreError> {
    i32::try_from(id).map_err(|_| StoreError::Invalid(format!("node id {id} is out of range")))
}

/// A node id read back.
pub(super) fn id_of(v: i32, table: &'static str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("node id {v}"),
    })
}

/// Rows of a query over `unnest(…) WITH ORDINALITY` (the ordinal in
/// column 0), gathered into one slot per item asked about, in order; `add`
/// puts a row into its item's slot. Rows of no item are ignored.
pub(super) fn by_ordinal<T: Clone>(
    rows: &[tokio_postgres::Row],
    len: usize,
    empty: T,
    mut add: impl FnMut(&mut T, &tokio_postgres::Row) -> Result<(), StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = vec![empty; len];
    for r in rows {
        let o: i64 = r.get(0);
        if let Some(slot) = usize::try_from(o - 1).ok().and_then(|i| out.get_mut(i)) {
            add(slot, r)?;
        }
    }
    Ok(out)
}

/// The `cell` of reads without coordinates.
pub(super) const UNPLACED: i32 = -1;
