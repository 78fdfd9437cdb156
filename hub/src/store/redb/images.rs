//! Images in redb, by hash ([`ImageStore`]).

use super::*;

impl ImageStore for RedbStore {
    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.is_some())
    }
}

/// [`WriteOp::Image`]: store an image named by entry `seq` of `device`.
pub(super) fn image(
    b: &mut Batch<'_>,
    device: &DeviceId,
    seq: u64,
    hash: Hash32,
    bytes: &[u8],
) -> Result<WriteResult, StoreError> {
    let id = b.record(device)?.id;
    let named = b
        .entries
        .get(&entry_key(id, seq))
        .map_err(db_err)?
        .and_then(|v| SignedEntry::decode(v.value()).ok())
        .and_then(|e| {
            e.read()
                .map(|r| r.crop_hash == hash || r.overview_hash == hash)
        })
        .unwrap_or(false);
    if named && b.images.get(&hash.0).map_err(db_err)?.is_none() {
        b.images.insert(&hash.0, bytes).map_err(db_err)?;
        b.record(device)?.images += 1;
    }
    Ok(WriteResult::Image(named))
}
