//! Reads of the hub's records on PostgreSQL, and the [`HubStorage`]
//! implementation of [`PgStore`]. Orders and limits are the redb store's.

use alpr_shared::log::SignedCheckpoint;
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use deadpool_postgres::GenericClient;

use super::partition::at_col;
use super::sql::{
    bound, by_ordinal, col, device, hash, id_col, id_of, limit, millis, node_row, query, uncol,
};
use super::sql::{execute, NODE_COLUMNS};
use super::write::UNPLACED;
use super::{pg_err, PgStore};
use crate::store::redb::{cell_of, decode_row, CELL_E7};
use crate::store::*;

/// Every certificate of node `id`, in the order they took effect (pending
/// ones last, by when they were first seen).
pub(super) async fn node_certs(
    c: &impl GenericClient,
    id: u32,
) -> Result<Vec<NodeCert>, StoreError> {
    const T: &str = "node_certs";
    let rows = query!(
        c,
        "SELECT serial, der, first_seen, effective_from FROM node_certs \
         WHERE node_id = $1 ORDER BY serial",
        &id_col(id)?
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(NodeCert {
            serial: r.get(0),
            der: r.get(1),
            first_seen: millis(r.get(2), T)?,
            effective_from: r
                .get::<_, Option<i64>>(3)
                .map(|v| uncol(v, T))
                .transpose()?,
        });
    }
    in_effect_order(&mut out);
    Ok(out)
}

/// The latest checked checkpoint of node `id`.
pub(super) async fn checkpoint_of(
    c: &impl GenericClient,
    id: u32,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    query!(
        c,
        "SELECT bytes FROM checkpoints WHERE node_id = $1",
        &id_col(id)?
    )
    .await?
    .first()
    .map(|r| {
        SignedCheckpoint::decode(r.get(0)).map_err(|e| StoreError::Corrupt {
            table: "checkpoints",
            detail: e.to_string(),
        })
    })
    .transpose()
}

/// Size and head of the hub's access log.
pub(super) async fn access_head(c: &impl GenericClient) -> Result<(u64, Hash32), StoreError> {
    let rows = query!(c, "SELECT bytes FROM hub_access ORDER BY seq DESC LIMIT 1").await?;
    let Some(row) = rows.first() else {
        return Ok((0, Hash32::ZERO));
    };
    let e = alpr_shared::log::SignedEntry::decode(row.get(0)).map_err(|e| StoreError::Corrupt {
        table: "hub_access",
        detail: e.to_string(),
    })?;
    Ok((e.seq() + 1, e.hash()))
}

/// An `alerts` row's stage and disposition entries, if they decode.
pub(super) fn decode_alert(
    progress: &[u8],
    dispositions: &[u8],
) -> Option<(alpr_shared::log::alert::Progress, Vec<u64>)> {
    let progress = alpr_shared::log::alert::Progress::decode(progress)?;
    if !dispositions.len().is_multiple_of(8) {
        return None;
    }
    let seqs = dispositions
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_be_bytes)
        .collect();
    Some((progress, seqs))
}

/// An `alerts` row as the hub shows it.
fn alert_index_row(
    node: DeviceId,
    seq: u64,
    progress: &[u8],
    covert: bool,
    dispositions: &[u8],
) -> Result<AlertIndexRow, StoreError> {
    let Some((progress, dispositions)) = decode_alert(progress, dispositions) else {
        return Err(StoreError::Corrupt {
            table: "alerts",
            detail: format!("row of {node}#{seq}"),
        });
    };
    Ok(AlertIndexRow {
        node,
        seq,
        progress,
        covert,
        dispositions,
    })
}

/// Rows of (name, seq, captured_at) as indexed reads; rows of nodes whose
/// name no longer reads are left out.
fn indexed(rows: &[tokio_postgres::Row], from: usize) -> Result<Vec<IndexedRead>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(d) = DeviceId::new(r.get::<_, &str>(from)) else {
            continue;
        };
        out.push(IndexedRead {
            device: d,
            seq: uncol(r.get(from + 1), "reads")?,
            captured_at: millis(r.get(from + 2), "reads")?,
        });
    }
    Ok(out)
}

impl PgStore {
    /// The id of a node, if it ever connected.
    fn node_id(&self, device: &DeviceId) -> Result<Option<u32>, StoreError> {
        let name = device.as_str().to_owned();
        self.run(move |c| async move {
            query!(c, "SELECT id FROM nodes WHERE name = $1", &name)
                .await?
                .first()
                .map(|r| id_of(r.get(0), "nodes"))
                .transpose()
        })
    }

    /// The newest `limit` rows' postcard records of a log-like table,
    /// oldest first.
    fn newest<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        n: usize,
    ) -> Result<Vec<T>, StoreError> {
        let sql = format!(
            "SELECT bytes FROM (SELECT at, id, bytes FROM {table} ORDER BY at DESC, id DESC \
             LIMIT $1) r ORDER BY at, id"
        );
        self.run(move |c| async move {
            query!(c, &sql, &limit(n))
                .await?
                .iter()
                .map(|r| decode_row(r.get(0), table))
                .collect()
        })
    }

    /// One `bytea` column of the first row of a query with one text
    /// parameter (or none).
    fn bytes_of(
        &self,
        sql: &'static str,
        key: Option<String>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |c| async move {
            let rows = match &key {
                Some(k) => query!(c, sql, k).await?,
                None => query!(c, sql).await?,
            };
            Ok(rows.first().map(|r| r.get(0)))
        })
    }
}

impl HubStorage for PgStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let partitions = self.partitions.clone();
        self.run(move |c| async move { super::write::commit(c, &partitions, ops).await })
    }

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

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        self.newest("refusals", limit)
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        self.newest("source_refusals", limit)
    }

    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let plate = plate.to_owned();
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n.name, r.seq, r.captured_at FROM reads r JOIN nodes n ON n.id = r.node_id \
                 WHERE r.plate = $1 AND r.captured_at BETWEEN $2 AND $3 \
                 ORDER BY r.captured_at, r.node_id, r.seq",
                &plate,
                &at_col(from),
                &at_col(to)
            )
            .await?;
            Ok(indexed(&rows, 0)?
                .into_iter()
                .map(|r| (r.device, r.seq))
                .collect())
        })
    }

    fn plates_from(&self, first: u64, n: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.run(move |c| async move {
            query!(
                c,
                "SELECT ordinal, plate FROM plates WHERE ordinal >= $1 ORDER BY ordinal LIMIT $2",
                &bound(first),
                &limit(n)
            )
            .await?
            .iter()
            .map(|r| Ok((uncol(r.get(0), "plates")?, r.get(1))))
            .collect()
        })
    }

    fn plate_count(&self, plate: &str) -> Result<u64, StoreError> {
        let plate = plate.to_owned();
        self.run(move |c| async move {
            let n: i64 = query!(c, "SELECT count(*) FROM reads WHERE plate = $1", &plate)
                .await?
                .first()
                .map_or(0, |r| r.get(0));
            uncol(n, "reads")
        })
    }

    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        n: usize,
    ) -> Result<Vec<IndexedRead>, StoreError> {
        if plates.is_empty() || n == 0 {
            return Ok(Vec::new());
        }
        let plates = plates.to_vec();
        self.run(move |c| async move {
            // Plate by plate (in the order given), each one's in time
            // order: one index range scan each, stopped at the limit.
            let rows = query!(
                c,
                "SELECT p.o, n.name, r.seq, r.captured_at \
                 FROM unnest($1::text[]) WITH ORDINALITY AS p(plate, o) \
                 CROSS JOIN LATERAL (SELECT node_id, seq, captured_at FROM reads \
                   WHERE plate = p.plate AND captured_at BETWEEN $2 AND $3 \
                   ORDER BY captured_at, node_id, seq LIMIT $4) r \
                 JOIN nodes n ON n.id = r.node_id \
                 ORDER BY p.o, r.captured_at, r.node_id, r.seq LIMIT $4",
                &plates,
                &at_col(from),
                &at_col(to),
                &limit(n)
            )
            .await?;
            indexed(&rows, 1)
        })
    }

    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        n: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError> {
        let node_id = match node {
            Some(d) => match self.node_id(d)? {
                Some(id) => Some(id_col(id)?),
                // No such node: none of the reads are its.
                None => {
                    return Ok(PlacedReads {
                        complete: true,
                        ..PlacedReads::default()
                    })
                }
            },
            None => None,
        };
        let mut cells = Vec::new();
        for lat in area.lat_min_e7.div_euclid(CELL_E7)..=area.lat_max_e7.div_euclid(CELL_E7) {
            for lon in area.lon_min_e7.div_euclid(CELL_E7)..=area.lon_max_e7.div_euclid(CELL_E7) {
                cells.push(
                    i32::try_from(cell_of(lat, lon))
                        .map_err(|_| StoreError::Db("a geo cell out of range".into()))?,
                );
            }
        }
        let (from, to) = (at_col(from), at_col(to));
        // One more than asked says whether the limit stopped the scan.
        let more = limit(n).saturating_add(1);
        self.run(move |c| async move {
            let mut out = PlacedReads {
                complete: true,
                ..PlacedReads::default()
            };
            // Cell by cell, each one's in time order.
            let rows = query!(
                c,
                "SELECT n.name, r.seq, r.captured_at, r.lat_e7, r.lon_e7 \
                 FROM unnest($1::integer[]) WITH ORDINALITY AS k(cell, o) \
                 CROSS JOIN LATERAL (SELECT node_id, seq, captured_at, lat_e7, lon_e7 FROM reads \
                   WHERE cell = k.cell AND captured_at BETWEEN $2 AND $3 \
                   AND ($5::integer IS NULL OR node_id = $5) \
                   ORDER BY captured_at, node_id, seq LIMIT $4) r \
                 JOIN nodes n ON n.id = r.node_id \
                 ORDER BY k.o, r.captured_at, r.node_id, r.seq LIMIT $4",
                &cells,
                &from,
                &to,
                &more,
                &node_id
            )
            .await?;
            for r in &rows {
                if out.placed.len() >= n {
                    out.complete = false;
                    break;
                }
                let Ok(device) = DeviceId::new(r.get::<_, &str>(0)) else {
                    continue;
                };
                let (Some(lat_e7), Some(lon_e7)) =
                    (r.get::<_, Option<i32>>(3), r.get::<_, Option<i32>>(4))
                else {
                    continue;
                };
                out.placed.push(PlacedRead {
                    read: IndexedRead {
                        device,
                        seq: uncol(r.get(1), "reads")?,
                        captured_at: millis(r.get(2), "reads")?,
                    },
                    lat_e7,
                    lon_e7,
                });
            }
            if list_unplaced {
                let rows = query!(
                    c,
                    "SELECT n.name, r.seq, r.captured_at FROM reads r \
                     JOIN nodes n ON n.id = r.node_id \
                     WHERE r.cell = $1 AND r.captured_at BETWEEN $2 AND $3 \
                     AND ($5::integer IS NULL OR r.node_id = $5) \
                     ORDER BY r.captured_at, r.node_id, r.seq LIMIT $4",
                    &UNPLACED,
                    &from,
                    &to,
                    &more,
                    &node_id
                )
                .await?;
                let mut reads = indexed(&rows, 0)?;
                out.unplaced = reads.len() as u64;
                if reads.len() > n {
                    reads.truncate(n);
                    out.complete = false;
                }
                out.unplaced_reads = reads;
            } else {
                let count: i64 = query!(
                    c,
                    "SELECT count(*) FROM reads WHERE cell = $1 AND captured_at BETWEEN $2 AND $3 \
                     AND ($4::integer IS NULL OR node_id = $4)",
                    &UNPLACED,
                    &from,
                    &to,
                    &node_id
                )
                .await?
                .first()
                .map_or(0, |r| r.get(0));
                out.unplaced = uncol(count, "reads")?;
            }
            Ok(out)
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

    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let h = hash.0.to_vec();
        self.run(move |c| async move {
            Ok(query!(c, "SELECT bytes FROM images WHERE hash = $1", &h)
                .await?
                .first()
                .map(|r| r.get(0)))
        })
    }

    fn hub_access_entries(&self, first: u64, n: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run(move |c| async move {
            Ok(query!(
                c,
                "SELECT bytes FROM hub_access WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &bound(first),
                &limit(n)
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn hub_access_head(&self) -> Result<(u64, Hash32), StoreError> {
        self.run(move |c| async move { access_head(&c).await })
    }

    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of(
            "SELECT encoded FROM policy ORDER BY version DESC LIMIT 1",
            None,
        )
    }

    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        self.bytes_of("SELECT hash FROM policy_seed WHERE id = 1", None)?
            .map(|b| hash(&b, "policy_seed"))
            .transpose()
    }

    fn node_policies(&self) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.run(move |c| async move {
            let mut out = Vec::new();
            for r in query!(c, "SELECT name, version FROM node_policy ORDER BY name").await? {
                if let Ok(d) = DeviceId::new(r.get::<_, &str>(0)) {
                    out.push((d, uncol(r.get(1), "node_policy")?));
                }
            }
            Ok(out)
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

    fn user(&self, username: &str) -> Result<Option<crate::users::UserRecord>, StoreError> {
        self.bytes_of(
            "SELECT bytes FROM users WHERE username = $1",
            Some(username.to_owned()),
        )?
        .map(|b| decode_row(&b, "users"))
        .transpose()
    }

    fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of("SELECT doc FROM holds WHERE id = 1", None)
    }

    fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_of("SELECT doc FROM local_entries WHERE id = 1", None)
    }

    fn users(&self) -> Result<Vec<crate::users::UserRecord>, StoreError> {
        self.run(move |c| async move {
            query!(c, "SELECT bytes FROM users ORDER BY username")
                .await?
                .iter()
                .map(|r| decode_row(r.get(0), "users"))
                .collect()
        })
    }

    fn user_keys(&self) -> Result<Vec<(String, crate::users::UserKey)>, StoreError> {
        self.run(move |c| async move {
            query!(
                c,
                "SELECT username, bytes FROM user_keys ORDER BY username, public"
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0), decode_row(r.get(1), "user_keys")?)))
            .collect()
        })
    }

    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.run(move |c| async move {
            query!(
                c,
                "SELECT hour, n FROM read_hours WHERE hour BETWEEN $1 AND $2 ORDER BY hour",
                &bound(first),
                &bound(last)
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    uncol(r.get(0), "read_hours")?,
                    uncol(r.get(1), "read_hours")?,
                ))
            })
            .collect()
        })
    }

    fn node_accesses(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        n: usize,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n.name, a.seq, a.at FROM node_access a JOIN nodes n ON n.id = a.node_id \
                 WHERE a.at BETWEEN $1 AND $2 ORDER BY a.at, a.node_id, a.seq LIMIT $3",
                &at_col(from),
                &at_col(to),
                &limit(n)
            )
            .await?;
            Ok(indexed(&rows, 0)?
                .into_iter()
                .map(|r| (r.device, r.seq))
                .collect())
        })
    }

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
            let value: i64 = query!(
                tx,
                "UPDATE meta SET value = value + 1 WHERE key = 'changes' RETURNING value"
            )
            .await?
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Db("the change counter is missing".into()))?;
            query!(
                tx,
                "SELECT pg_notify('alpr_changes', $1)",
                &value.to_string()
            )
            .await?;
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

    fn certificates_of(&self, devices: &[DeviceId]) -> Result<Vec<Vec<NodeCert>>, StoreError> {
        const T: &str = "node_certs";
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
                certs.push(NodeCert {
                    serial: r.get(1),
                    der: r.get(2),
                    first_seen: millis(r.get(3), T)?,
                    effective_from: r
                        .get::<_, Option<i64>>(4)
                        .map(|v| uncol(v, T))
                        .transpose()?,
                });
                Ok(())
            })?;
            for certs in &mut out {
                in_effect_order(certs);
            }
            Ok(out)
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

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        let h = hash.0.to_vec();
        self.run(move |c| async move {
            Ok(!query!(c, "SELECT 1 FROM images WHERE hash = $1", &h)
                .await?
                .is_empty())
        })
    }

    fn alerts(&self, node: Option<&DeviceId>, n: usize) -> Result<Vec<AlertIndexRow>, StoreError> {
        let name = node.map(|d| d.as_str().to_owned());
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT n.name, a.seq, a.progress, a.covert, a.dispositions \
                 FROM alerts a JOIN nodes n ON n.id = a.node_id \
                 WHERE ($1::text IS NULL OR n.name = $1) \
                 ORDER BY a.node_id, a.seq LIMIT $2",
                &name,
                &limit(n)
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let Ok(d) = DeviceId::new(r.get::<_, &str>(0)) else {
                    continue;
                };
                out.push(alert_index_row(
                    d,
                    uncol(r.get(1), "alerts")?,
                    r.get(2),
                    r.get(3),
                    r.get(4),
                )?);
            }
            Ok(out)
        })
    }

    fn hub_alerts(&self, n: usize) -> Result<Vec<(u64, HubAlert)>, StoreError> {
        self.run(move |c| async move {
            query!(
                c,
                "SELECT n, bytes FROM hub_alerts ORDER BY n DESC LIMIT $1",
                &limit(n)
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    uncol(r.get(0), "hub_alerts")?,
                    decode_row(r.get(1), "hub_alerts")?,
                ))
            })
            .collect()
        })
    }

    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, HubDisposition)>, StoreError> {
        let alert = alert.map(str::to_owned);
        self.run(move |c| async move {
            query!(
                c,
                "SELECT alert, bytes FROM hub_dispositions \
                 WHERE ($1::text IS NULL OR alert = $1) ORDER BY alert, n",
                &alert
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0), decode_row(r.get(1), "hub_dispositions")?)))
            .collect()
        })
    }

    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<AlertIndexRow>, StoreError> {
        let Some(id) = self.node_id(node)? else {
            return Ok(None);
        };
        let node = node.clone();
        self.run(move |c| async move {
            query!(
                c,
                "SELECT progress, covert, dispositions FROM alerts \
                 WHERE node_id = $1 AND seq = $2",
                &id_col(id)?,
                &bound(seq)
            )
            .await?
            .first()
            .map(|r| alert_index_row(node, seq, r.get(0), r.get(1), r.get(2)))
            .transpose()
        })
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::users::SessionRecord>, StoreError> {
        let h = hash.to_vec();
        self.run(move |c| async move {
            query!(c, "SELECT bytes FROM sessions WHERE hash = $1", &h)
                .await?
                .first()
                .map(|r| decode_row(r.get(0), "sessions"))
                .transpose()
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

    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError> {
        let key = key.to_owned();
        self.run(move |c| async move { super::logins::failures(&c, &key, since).await })
    }

    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError> {
        let key = key.to_owned();
        self.run(move |c| async move { super::logins::locked_until(&c, &key).await })
    }

    /// As the trait's, with the images of a page of entries looked up in
    /// one query instead of one each.
    fn lease_node(&self, device: &DeviceId) -> Result<Option<NodeLease>, StoreError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| StoreError::Db("the database runtime stopped".into()))?;
        self.leases.lease(rt, device)
    }

    fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.watch())
    }
}

/// Alert rows of node `id` by seq (for a disposition naming one stored
/// before this commit): (progress, covert, dispositions).
pub(super) async fn alert_cols(
    c: &impl GenericClient,
    id: u32,
    seq: u64,
) -> Result<Option<(Vec<u8>, bool, Vec<u8>)>, StoreError> {
    Ok(query!(
        c,
        "SELECT progress, covert, dispositions FROM alerts WHERE node_id = $1 AND seq = $2",
        &id_col(id)?,
        &bound(seq)
    )
    .await?
    .first()
    .map(|r| (r.get(0), r.get(1), r.get(2))))
}
