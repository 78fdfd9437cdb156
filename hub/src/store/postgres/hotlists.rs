//! Bulk hotlist generations on PostgreSQL ([`HotlistStore`]).

use alpr_shared::types::DeviceId;
use deadpool_postgres::GenericClient;

use super::sql::{bound, col, execute, query, uncol};
use super::write::Commit;
use super::{pg_err, PgStore};
use crate::store::rows::{decode_row, encode};
use crate::store::*;

impl HotlistStore for PgStore {
    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError> {
        let (source, bytes, record) = (source.to_owned(), bytes.to_vec(), record.to_vec());
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg_err)?;
            let n = col(number, "generation")?;
            execute!(
                tx,
                "INSERT INTO hotlist_gen (source, number, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (source, number) DO UPDATE SET bytes = excluded.bytes",
                &source,
                &n,
                &bytes
            )
            .await?;
            execute!(
                tx,
                "INSERT INTO hotlist_import (source, number, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (source, number) DO UPDATE SET record = excluded.record",
                &source,
                &n,
                &record
            )
            .await?;
            // Generations below `number + 1 - keep` go (the new one stays
            // whatever `keep` says).
            let first_kept = number.saturating_add(1).saturating_sub(keep.max(1));
            execute!(
                tx,
                "DELETE FROM hotlist_gen WHERE source = $1 AND number < $2",
                &source,
                &bound(first_kept)
            )
            .await?;
            super::changes::announce(&tx).await?;
            tx.commit().await.map_err(pg_err)
        })
    }

    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let source = source.to_owned();
        self.run(move |c| async move {
            Ok(query!(
                c,
                "SELECT bytes FROM hotlist_gen WHERE source = $1 AND number = $2",
                &source,
                &bound(number)
            )
            .await?
            .first()
            .map(|r| r.get(0)))
        })
    }

    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError> {
        let source = source.to_owned();
        self.run(move |c| async move {
            query!(
                c,
                "SELECT i.number, i.record, g.number IS NOT NULL FROM hotlist_import i \
                 LEFT JOIN hotlist_gen g ON g.source = i.source AND g.number = i.number \
                 WHERE i.source = $1 ORDER BY i.number",
                &source
            )
            .await?
            .iter()
            .map(|r| Ok((uncol(r.get(0), "hotlist_import")?, r.get(1), r.get(2))))
            .collect()
        })
    }

    fn generation_floor(&self, source: &str) -> Result<u64, StoreError> {
        let source = source.to_owned();
        self.run(move |c| async move {
            query!(
                c,
                "SELECT number FROM hotlist_floor WHERE source = $1",
                &source
            )
            .await?
            .first()
            .map_or(Ok(0), |r| uncol(r.get(0), "hotlist_floor"))
        })
    }

    fn node_hotlists(&self) -> Result<Vec<(DeviceId, NodeLists)>, StoreError> {
        self.run(move |c| async move {
            let mut out = Vec::new();
            for r in query!(c, "SELECT name, held FROM node_hotlists ORDER BY name").await? {
                let held: NodeLists = decode_row(r.get(1), "node_hotlists")?;
                if let Ok(d) = DeviceId::new(r.get::<_, &str>(0)) {
                    out.push((d, held));
                }
            }
            Ok(out)
        })
    }
}

impl Commit<'_> {
    /// [`WriteOp::GenerationFloor`]: the larger number stays.
    pub(super) async fn generation_floor(
        &mut self,
        source: String,
        number: u64,
    ) -> Result<WriteResult, StoreError> {
        execute!(
            self.tx,
            "INSERT INTO hotlist_floor (source, number) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE \
             SET number = greatest(hotlist_floor.number, excluded.number)",
            &source,
            &super::sql::bound(number)
        )
        .await?;
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::NodeHotlists`]: the lists a node last said it holds.
    pub(super) async fn node_hotlists(
        &mut self,
        device: DeviceId,
        held: Vec<(String, u64)>,
    ) -> Result<WriteResult, StoreError> {
        execute!(
            self.tx,
            "INSERT INTO node_hotlists (name, held) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET held = excluded.held",
            &device.as_str(),
            &encode(&held)
        )
        .await?;
        Ok(WriteResult::Done)
    }
}
