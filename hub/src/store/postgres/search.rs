//! Search indexes on PostgreSQL ([`SearchStore`]).

use std::collections::HashSet;

use alpr_shared::types::{DeviceId, UnixMillis};
use deadpool_postgres::GenericClient;

use super::partition::at_col;
use super::read::*;
use super::sql::{bound, execute, id_col, limit, millis, query, uncol, UNPLACED};
use super::write::Commit;
use super::{pg_err, PgStore};
use crate::store::rows::{cell_of, CELL_E7};
use crate::store::*;

impl SearchStore for PgStore {
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
            let rows = query!(
                c,
                "SELECT ordinal, plate FROM plates WHERE ordinal >= $1 ORDER BY ordinal LIMIT $2",
                &bound(first),
                &limit(n)
            )
            .await?;
            numbered(&rows, "plates", |r| Ok(r.get(1)))
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
                        .map_err(|_| StoreError::Invalid("a geo cell out of range".into()))?,
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

    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        self.run(move |c| async move {
            let rows = query!(
                c,
                "SELECT hour, n FROM read_hours WHERE hour BETWEEN $1 AND $2 ORDER BY hour",
                &bound(first),
                &bound(last)
            )
            .await?;
            numbered(&rows, "read_hours", |r| uncol(r.get(1), "read_hours"))
        })
    }
}

impl Commit<'_> {
    /// [`WriteOp::PrunePlates`]: drop plates no read names any more.
    pub(super) async fn prune_plates(&mut self) -> Result<WriteResult, StoreError> {
        self.flush().await?;
        // Ingests that have written reads finish first, and none
        // writes more until this commit ends: a plate read by
        // another hub in the meantime is never pruned.
        self.tx
            .batch_execute("LOCK TABLE reads IN SHARE MODE")
            .await
            .map_err(pg_err)?;
        let gone = execute!(
            self.tx,
            "DELETE FROM plates p \
             WHERE NOT EXISTS (SELECT 1 FROM reads r WHERE r.plate = p.plate)"
        )
        .await?;
        Ok(WriteResult::Purged(Purged {
            plates: gone,
            ..Purged::default()
        }))
    }
}

impl Commit<'_> {
    /// Number the plates first seen in this commit, after every plate
    /// numbered before (the counter stays locked until the commit ends,
    /// so numbers become visible in order).
    pub(super) async fn number_plates(&mut self) -> Result<(), StoreError> {
        if self.plates.is_empty() {
            return Ok(());
        }
        let plates: Vec<&String> = self.plates.iter().collect();
        let new = self.unknown_plates(&plates).await?;
        if new.is_empty() {
            return Ok(());
        }
        let next: i64 = query!(
            self.tx,
            "SELECT value FROM meta WHERE key = 'next-plate-ordinal' FOR UPDATE"
        )
        .await?
        .first()
        .map(|r| r.get(0))
        .ok_or_else(|| pg_err("the plate counter is missing"))?;
        // Another hub may have numbered some while this one waited.
        let refs: Vec<&String> = new.iter().collect();
        let new = self.unknown_plates(&refs).await?;
        if new.is_empty() {
            return Ok(());
        }
        execute!(
            self.tx,
            "INSERT INTO plates (ordinal, plate) \
             SELECT $1 + o - 1, p FROM unnest($2::text[]) WITH ORDINALITY AS u(p, o)",
            &next,
            &new
        )
        .await?;
        let after = next + i64::try_from(new.len()).map_err(pg_err)?;
        execute!(
            self.tx,
            "UPDATE meta SET value = $1 WHERE key = 'next-plate-ordinal'",
            &after
        )
        .await?;
        Ok(())
    }

    /// Which of `plates` (sorted) have no number yet, in order.
    async fn unknown_plates(&self, plates: &[&String]) -> Result<Vec<String>, StoreError> {
        let known: HashSet<String> = query!(
            self.tx,
            "SELECT plate FROM plates WHERE plate = ANY($1)",
            &plates
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        Ok(plates
            .iter()
            .filter(|p| !known.contains(p.as_str()))
            .map(|p| (*p).clone())
            .collect())
    }
}
