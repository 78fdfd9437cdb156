//! Images on PostgreSQL ([`ImageStore`]).

use alpr_shared::log::SignedEntry;
use alpr_shared::types::{DeviceId, Hash32};
use deadpool_postgres::GenericClient;

use super::sql::{execute, query};
use super::write::Commit;
use super::PgStore;
use crate::store::*;

impl ImageStore for PgStore {
    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let h = hash.0.to_vec();
        self.run(move |c| async move {
            Ok(query!(c, "SELECT bytes FROM images WHERE hash = $1", &h)
                .await?
                .first()
                .map(|r| r.get(0)))
        })
    }

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        let h = hash.0.to_vec();
        self.run(move |c| async move {
            Ok(!query!(c, "SELECT 1 FROM images WHERE hash = $1", &h)
                .await?
                .is_empty())
        })
    }

    fn images_held(&self, hashes: &[Hash32]) -> Result<Vec<bool>, StoreError> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Vec<u8>> = hashes.iter().map(|h| h.0.to_vec()).collect();
        self.run(move |c| async move {
            let rows = query!(c, "SELECT hash FROM images WHERE hash = ANY($1)", &wanted).await?;
            let held: std::collections::HashSet<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
            Ok(wanted.iter().map(|h| held.contains(h)).collect())
        })
    }
}

impl Commit<'_> {
    /// [`WriteOp::Image`]: store an image named by entry `seq` of `device`.
    pub(super) async fn image(
        &mut self,
        device: &DeviceId,
        seq: u64,
        hash: Hash32,
        bytes: Vec<u8>,
    ) -> Result<WriteResult, StoreError> {
        let id = self.node(device)?.id;
        let named = self
            .stored_entry(id, seq)
            .await?
            .and_then(|b| SignedEntry::decode(&b).ok())
            .and_then(|e| {
                e.read()
                    .map(|r| r.crop_hash == hash || r.overview_hash == hash)
            })
            .unwrap_or(false);
        if named {
            let stored = execute!(
                self.tx,
                "INSERT INTO images (hash, bytes) VALUES ($1, $2) \
                 ON CONFLICT (hash) DO NOTHING",
                &hash.0.as_slice(),
                &bytes
            )
            .await?;
            self.node(device)?.images += stored;
        }
        Ok(WriteResult::Image(named))
    }
}
