//! Retention on PostgreSQL: a purge deletes reads' content, their index
//! rows and the images no read still holding content names.

use std::collections::BTreeMap;

use alpr_shared::log::retention::FreedImages;
use alpr_shared::log::SignedEntry;
use alpr_shared::types::DeviceId;
use deadpool_postgres::GenericClient;

use super::sql::{execute, id_col, query};
use super::write::Commit;
use crate::store::*;

impl Commit<'_> {
    /// [`WriteOp::Purge`]: purge reads' content and record it in the hub's log.
    pub(super) async fn purge(
        &mut self,
        device: DeviceId,
        ranges: Vec<alpr_shared::log::SeqRange>,
        record: Box<SignedEntry>,
    ) -> Result<WriteResult, StoreError> {
        super::super::check_purge_record(&device, &ranges, &record)?;
        self.append_access(&record, "purge record").await?;
        let Some(id) = self.nodes.get(device.as_str()).map(|r| r.id) else {
            return Err(StoreError::NotFound(format!("no node {device} to purge")));
        };
        Ok(WriteResult::Purged(self.purge_reads(id, &ranges).await?))
    }

    /// Purge the content of node `id`'s reads in `ranges` (see
    /// [`WriteOp::Purge`]).
    pub(super) async fn purge_reads(
        &mut self,
        id: u32,
        ranges: &[alpr_shared::log::SeqRange],
    ) -> Result<Purged, StoreError> {
        self.flush().await?;
        let idc = id_col(id)?;
        let mut freed = FreedImages::default();
        let mut purged: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for r in ranges {
            let rows = query!(
                self.tx,
                "SELECT seq, bytes FROM entries WHERE node_id = $1 AND seq BETWEEN $2 AND $3",
                &idc,
                &super::sql::bound(r.first),
                &super::sql::bound(r.last)
            )
            .await?;
            for row in rows {
                let seq: i64 = row.get(0);
                if purged.contains_key(&seq) {
                    continue;
                }
                let mut e = super::sql::entry(row.get(1))?;
                let Some(read) = e.read().cloned() else {
                    continue;
                };
                freed.purged(&read);
                e.purge_content();
                purged.insert(seq, e.encode());
            }
        }
        let (seqs, bytes): (Vec<i64>, Vec<Vec<u8>>) = purged.into_iter().unzip();
        if !seqs.is_empty() {
            execute!(
                self.tx,
                "UPDATE entries SET bytes = u.bytes \
                 FROM unnest($2::bigint[], $3::bytea[]) AS u(seq, bytes) \
                 WHERE entries.node_id = $1 AND entries.seq = u.seq",
                &idc,
                &seqs,
                &bytes
            )
            .await?;
            execute!(
                self.tx,
                "DELETE FROM reads WHERE node_id = $1 AND seq = ANY($2)",
                &idc,
                &seqs
            )
            .await?;
        }
        // Keep an image a neighbouring read still holding content names.
        for r in ranges {
            let (before, after) = FreedImages::neighbours(r);
            let rows = query!(
                self.tx,
                "SELECT bytes FROM entries WHERE node_id = $1 \
                 AND ((seq >= $2 AND seq < $3) OR (seq > $4 AND seq <= $5))",
                &idc,
                &super::sql::bound(before),
                &super::sql::bound(r.first),
                &super::sql::bound(r.last),
                &super::sql::bound(after)
            )
            .await?;
            for row in rows {
                if let Some(read) = super::sql::entry(row.get(0))?.read() {
                    freed.kept(read);
                }
            }
        }
        let named: Vec<Vec<u8>> = freed
            .into_sorted()
            .into_iter()
            .map(|h| h.0.to_vec())
            .collect();
        let images = if named.is_empty() {
            0
        } else {
            execute!(self.tx, "DELETE FROM images WHERE hash = ANY($1)", &named).await?
        };
        Ok(Purged {
            reads: seqs.len() as u64,
            images,
            plates: 0,
        })
    }
}
