//! Nodes and their chains on PostgreSQL ([`ChainStore`]).

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::{Refusal, RefusalCode};
use deadpool_postgres::GenericClient;

use super::partition::at_col;
use super::read::*;
use super::sql::{
    bound, by_ordinal, device, execute, id_col, limit, node_row, query, NODE_COLUMNS,
};
use super::write::Commit;
use super::PgStore;
use crate::store::rows::{decode_row, encode};
use crate::store::*;

impl ChainStore for PgStore {
    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError> {
        let name = device.as_str().to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1");
            query!(c, &sql, &name)
                .await?
                .first()
                .map(|r| node_row(r).map(|(_, rec)| rec))
                .transpose()
        })
    }

    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError> {
        self.run(move |c| async move {
            let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name");
            query!(c, &sql)
                .await?
                .iter()
                .map(|r| {
                    let (name, rec) = node_row(r)?;
                    Ok((device(&name)?, rec))
                })
                .collect()
        })
    }

    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError> {
        let Some(id) = self.node_id(device)? else {
            return Ok(None);
        };
        self.run(move |c| async move { checkpoint_of(&c, id).await })
    }

    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError> {
        let Some(id) = self.node_id(device)? else {
            return Ok(Vec::new());
        };
        self.run(move |c| async move { node_certs(&c, id).await })
    }

    fn certificates_of(&self, devices: &[DeviceId]) -> Result<Vec<Vec<NodeCert>>, StoreError> {
        let names: Vec<String> = devices.iter().map(|d| d.as_str().to_owned()).collect();
        let len = devices.len();
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT q.o, c.serial, c.der, c.first_seen, c.effective_from \
                 FROM unnest($1::text[]) WITH ORDINALITY AS q(name, o) \
                 JOIN nodes n ON n.name = q.name JOIN node_certs c ON c.node_id = n.id",
                &names
            )
            .await?;
            let mut out = by_ordinal(&rows, len, Vec::new(), |certs, r| {
                certs.push(node_cert(r, 1)?);
                Ok(())
            })?;
            for certs in &mut out {
                in_effect_order(certs);
            }
            Ok(out)
        })
    }

    fn revocations(&self) -> Result<Vec<alpr_shared::cert::Revocation>, StoreError> {
        self.run(move |c| async move {
            query!(c, "SELECT bytes FROM revocations ORDER BY serial")
                .await?
                .iter()
                .map(|r| decode_row(r.get(0), "revocations"))
                .collect()
        })
    }

    fn entries(&self, device: &DeviceId, first: u64, n: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(id) = self.node_id(device)? else {
            return Ok(Vec::new());
        };
        self.run(move |c| async move {
            Ok(query!(
                c,
                "SELECT bytes FROM entries WHERE node_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                &id_col(id)?,
                &bound(first),
                &limit(n)
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = at.iter().map(|(d, _)| d.as_str().to_owned()).collect();
        let seqs: Vec<i64> = at.iter().map(|(_, s)| bound(*s)).collect();
        let len = at.len();
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT q.o, e.bytes FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY \
                 AS q(name, seq, o) \
                 JOIN nodes n ON n.name = q.name \
                 JOIN entries e ON e.node_id = n.id AND e.seq = q.seq",
                &names,
                &seqs
            )
            .await?;
            by_ordinal(&rows, len, None, |slot, r| {
                *slot = Some(r.get(1));
                Ok(())
            })
        })
    }

    fn entries_of_reads(&self, reads: &[IndexedRead]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = reads.iter().map(|r| r.device.as_str().to_owned()).collect();
        let seqs: Vec<i64> = reads.iter().map(|r| bound(r.seq)).collect();
        let times: Vec<i64> = reads.iter().map(|r| at_col(r.captured_at)).collect();
        let len = reads.len();
        self.run(move |c| async move {
            // With the capture time, each lookup prunes to the one monthly
            // partition that holds it (a year of partitions otherwise).
            let rows = query!(
                c,
                "SELECT q.o, e.bytes FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
                 WITH ORDINALITY AS q(name, seq, at, o) \
                 JOIN nodes n ON n.name = q.name \
                 JOIN entries e ON e.node_id = n.id AND e.seq = q.seq AND e.captured_at = q.at",
                &names,
                &seqs,
                &times
            )
            .await?;
            by_ordinal(&rows, len, None, |slot, r| {
                *slot = Some(r.get(1));
                Ok(())
            })
        })
    }

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        self.newest("refusals", limit)
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        self.newest("source_refusals", limit)
    }
}

impl Commit<'_> {
    /// [`WriteOp::Contact`]: a node said hello.
    pub(super) async fn contact(
        &mut self,
        device: &DeviceId,
        serial: String,
        cert_der: Vec<u8>,
        reported_size: u64,
        at: UnixMillis,
    ) -> Result<WriteResult, StoreError> {
        let id = id_col(self.node(device)?.id)?;
        // A certificate not seen before is kept as pending: it
        // vouches for nothing until the node's first entry it
        // signs lands on the stored chain.
        execute!(
            self.tx,
            "INSERT INTO node_certs (node_id, serial, der, first_seen) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (node_id, serial) DO NOTHING",
            &id,
            &serial,
            &cert_der,
            &at_col(at)
        )
        .await?;
        let rec = self.node(device)?;
        rec.serial = serial;
        rec.reported_size = reported_size;
        rec.last_contact = rec.last_contact.max(at);
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::Revoke`]: the earliest effective time recorded wins.
    pub(super) async fn revoke(
        &mut self,
        r: alpr_shared::cert::Revocation,
    ) -> Result<WriteResult, StoreError> {
        let stored = query!(
            self.tx,
            "SELECT bytes FROM revocations WHERE serial = $1",
            &r.serial
        )
        .await?;
        // The earliest effective time recorded wins: a revocation
        // is never pushed later by a repeat.
        let keep = match stored.first() {
            Some(row) => {
                let old: alpr_shared::cert::Revocation = decode_row(row.get(0), "revocations")?;
                old.effective_at > r.effective_at
            }
            None => true,
        };
        if keep {
            execute!(
                self.tx,
                "INSERT INTO revocations (serial, bytes) VALUES ($1, $2) \
                 ON CONFLICT (serial) DO UPDATE SET bytes = excluded.bytes",
                &r.serial,
                &encode(&r)
            )
            .await?;
            self.changed = true;
        }
        Ok(WriteResult::Done)
    }

    pub(super) async fn refusal(&mut self, r: &RefusalRecord) -> Result<(), StoreError> {
        execute!(
            self.tx,
            "INSERT INTO refusals (at, bytes) VALUES ($1, $2)",
            &at_col(r.at),
            &encode(r)
        )
        .await?;
        if let Some(Ok(device)) = r.device.as_deref().map(DeviceId::new) {
            self.node(&device)?.refusals += 1;
        }
        Ok(())
    }

    /// Log an unauthenticated source's refusals; drop rows before
    /// `keep_after`, then the oldest beyond `max_rows`.
    pub(super) async fn source_refusal(
        &mut self,
        record: &SourceRefusalRecord,
        keep_after: UnixMillis,
        max_rows: u64,
    ) -> Result<(), StoreError> {
        execute!(
            self.tx,
            "INSERT INTO source_refusals (at, bytes) VALUES ($1, $2)",
            &at_col(record.at),
            &encode(record)
        )
        .await?;
        execute!(
            self.tx,
            "DELETE FROM source_refusals WHERE at < $1",
            &at_col(keep_after)
        )
        .await?;
        execute!(
            self.tx,
            "DELETE FROM source_refusals WHERE id IN (SELECT id FROM source_refusals \
             ORDER BY at, id LIMIT greatest((SELECT count(*) FROM source_refusals) - $1, 0))",
            &super::sql::bound(max_rows)
        )
        .await?;
        Ok(())
    }

    /// [`WriteOp::Skip`]: a loss record past the `bigint` columns' range
    /// is refused alone (it must not fail the commit of other nodes'
    /// batches); else [`NodeRecord::skip`] decides.
    pub(super) fn skip(
        &mut self,
        device: &DeviceId,
        first: u64,
        last: u64,
        head: Hash32,
        at: UnixMillis,
    ) -> Result<WriteResult, StoreError> {
        if last >= i64::MAX as u64 {
            return Ok(WriteResult::Ingested(Err(Refusal {
                code: RefusalCode::Gap,
                seq: Some(first),
                detail: format!("loss record up to {last} is beyond any log the hub keeps"),
            })));
        }
        Ok(WriteResult::Ingested(
            self.node(device)?.skip(first, last, head, at),
        ))
    }
}
