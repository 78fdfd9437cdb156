//! Control documents in redb: policy versions, what nodes hold of it,
//! the holds and local entries documents ([`ControlStore`]).

use super::*;

impl ControlStore for RedbStore {
    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY).map_err(db_err)?;
        let last = t.last().map_err(db_err)?.map(|(_, v)| v.value().to_vec());
        Ok(last)
    }

    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY_SEED).map_err(db_err)?;
        Ok(t.get("config").map_err(db_err)?.map(|v| Hash32(*v.value())))
    }

    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_POLICY).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            if let Ok(d) = DeviceId::new(k.value()) {
                out.push((d, v.value()));
            }
        }
        Ok(out)
    }

    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOLDS).map_err(db_err)?;
        Ok(t.get("doc").map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
        Ok(t.get("doc").map_err(db_err)?.map(|v| v.value().to_vec()))
    }
}

/// [`WriteOp::Policy`]: a new policy version, newer than the latest
/// stored, or the commit fails.
pub(super) fn policy(
    b: &mut Batch<'_>,
    version: u64,
    encoded: &[u8],
    seed: Option<Hash32>,
) -> Result<WriteResult, StoreError> {
    let latest = b.policy.last().map_err(db_err)?.map(|(k, _)| k.value());
    if latest.is_some_and(|l| l >= version) {
        return Err(StoreError::Corrupt {
            table: "policy-v1",
            detail: format!(
                "policy version {version} is not newer than the stored {}",
                latest.unwrap_or_default()
            ),
        });
    }
    b.policy.insert(version, encoded).map_err(db_err)?;
    if let Some(seed) = seed {
        b.policy_seed.insert("config", &seed.0).map_err(db_err)?;
    }
    Ok(WriteResult::Done)
}

/// [`WriteOp::NodePolicy`]: the policy version a node last said it holds.
pub(super) fn node_policy(
    b: &mut Batch<'_>,
    device: &DeviceId,
    version: u64,
) -> Result<WriteResult, StoreError> {
    b.node_policy
        .insert(device.as_str(), version)
        .map_err(db_err)?;
    Ok(WriteResult::Done)
}

/// [`WriteOp::Holds`] and [`WriteOp::LocalEntries`]: replace a saved
/// document (`holds-v1` or `hotlist-local-v1`).
pub(super) fn document(
    t: &mut redb::Table<'_, &'static str, &'static [u8]>,
    doc: &[u8],
) -> Result<WriteResult, StoreError> {
    t.insert("doc", doc).map_err(db_err)?;
    Ok(WriteResult::Done)
}
