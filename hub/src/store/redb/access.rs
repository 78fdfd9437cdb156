//! The access logs in redb: the hub's own and the index of nodes'
//! access entries ([`AccessLogStore`]).

use super::*;

fn access_head(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<(u64, Hash32), StoreError> {
    let Some(last) = t.last().map_err(db_err)? else {
        return Ok((0, Hash32::ZERO));
    };
    let e =
        alpr_shared::log::SignedEntry::decode(last.1.value()).map_err(|e| StoreError::Corrupt {
            table: "hub-access-v1",
            detail: e.to_string(),
        })?;
    Ok((e.seq() + 1, e.hash()))
}

impl AccessLogStore for RedbStore {
    fn hub_access_entries(&self, first: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HUB_ACCESS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.range(first..).map_err(db_err)?.take(limit) {
            let (_, v) = row.map_err(db_err)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        access_head(&tx.open_table(HUB_ACCESS).map_err(db_err)?)
    }

    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_ACCESS).map_err(db_err)?;
        let names = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let mut lo = [0u8; 20];
        lo[..8].copy_from_slice(&from.0.to_be_bytes());
        let mut hi = [0xffu8; 20];
        hi[..8].copy_from_slice(&to.0.to_be_bytes());
        let mut names = Names::new(&names);
        let mut out = Vec::new();
        for row in t.range::<&[u8; 20]>(&lo..=&hi).map_err(db_err)?.take(limit) {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let id = u32::from_be_bytes([k[8], k[9], k[10], k[11]]);
            if let Some(d) = names.get(id)? {
                out.push((d, be_u64(&k[12..])?));
            }
        }
        Ok(out)
    }
}

/// Index an access entry of node `id` in `node-access-v1` (by time).
pub(super) fn index_node_access(
    b: &mut Batch<'_>,
    id: u32,
    v: &Verified,
) -> Result<(), StoreError> {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&v.entry.header.captured_at.0.to_be_bytes());
    k[8..12].copy_from_slice(&id.to_be_bytes());
    k[12..].copy_from_slice(&v.seq().to_be_bytes());
    b.node_access.insert(&k, ()).map_err(db_err)?;
    Ok(())
}

/// Append `e` to the hub's access log: it must be the log's next entry.
/// `what` names it in the error ("entry", "purge record").
pub(super) fn append(
    access: &mut redb::Table<'_, u64, &'static [u8]>,
    e: &SignedEntry,
    what: &str,
) -> Result<(), StoreError> {
    let (size, head) = access_head(access)?;
    if e.seq() != size || e.header.prev != head {
        return Err(StoreError::Corrupt {
            table: "hub-access-v1",
            detail: format!(
                "{what} {} does not extend the hub's access log of {size} entries",
                e.seq()
            ),
        });
    }
    access
        .insert(e.seq(), e.encode().as_slice())
        .map_err(db_err)?;
    Ok(())
}

/// [`WriteOp::HubAccess`]: append entries to the hub's own access log.
pub(super) fn hub_access(
    b: &mut Batch<'_>,
    batch: Vec<SignedEntry>,
) -> Result<WriteResult, StoreError> {
    for e in &batch {
        append(&mut b.access, e, "entry")?;
    }
    Ok(WriteResult::Done)
}
