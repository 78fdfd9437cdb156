//! Generation numbers learned from nodes in the redb store
//! ([`WriteOp::GenerationFloor`](crate::store::WriteOp::GenerationFloor)):
//! a number per source, only ever raised.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{db_err, StoreError};

/// source → the highest generation number a node showed the hub signed.
const FLOORS: TableDefinition<&str, u64> = TableDefinition::new("hotlist-floor-v1");

/// Create the table (at open).
pub(super) fn create(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(FLOORS).map_err(db_err)?;
    Ok(())
}

/// Keep `number` for `source` if it is higher than the one kept.
pub(super) fn raise(
    tx: &redb::WriteTransaction,
    source: &str,
    number: u64,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(FLOORS).map_err(db_err)?;
    let kept = t.get(source).map_err(db_err)?.map_or(0, |v| v.value());
    if number > kept {
        t.insert(source, number).map_err(db_err)?;
    }
    Ok(())
}

/// The number kept for `source`; 0 if none.
pub(super) fn floor(db: &redb::Database, source: &str) -> Result<u64, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(FLOORS).map_err(db_err)?;
    Ok(t.get(source).map_err(db_err)?.map_or(0, |v| v.value()))
}
