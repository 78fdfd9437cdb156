//! Search indexes in redb: reads by plate and time, by place cell and
//! time, plates in the order first seen, reads per hour ([`SearchStore`]).

use super::*;

pub(super) fn plate_key(plate: &str, at: UnixMillis, id: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(plate.len() + 21);
    k.extend_from_slice(plate.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The cell of reads that carry no coordinates.
pub(super) const UNPLACED: u32 = u32::MAX;

pub(super) fn geo_key(cell: u32, at: UnixMillis, id: u32, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..4].copy_from_slice(&cell.to_be_bytes());
    k[4..12].copy_from_slice(&at.0.to_be_bytes());
    k[12..16].copy_from_slice(&id.to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Index rows of the reads of one commit, gathered while entries are
/// placed and written at the end in key order (sorted inserts walk each
/// tree once).
#[derive(Default)]
pub(super) struct SearchRows {
    plate_time: Vec<Vec<u8>>,
    geo: Vec<([u8; 24], [u8; 8])>,
    plates: std::collections::HashSet<String>,
    /// Reads of this commit per hour of capture ([`READ_HOURS`]).
    hours: std::collections::BTreeMap<u64, u64>,
}

impl SearchRows {
    pub(super) fn add(&mut self, id: u32, entry: &SignedEntry) {
        let Some(read) = entry.read() else { return };
        let (at, seq) = (entry.header.captured_at, entry.header.seq);
        self.plate_time.push(plate_key(&read.plate, at, id, seq));
        *self.hours.entry(at.0 / HOUR_MS).or_default() += 1;
        let (cell, value) = match coordinates(&read.location) {
            Some((lat, lon)) => {
                let mut v = [0u8; 8];
                v[..4].copy_from_slice(&lat.to_be_bytes());
                v[4..].copy_from_slice(&lon.to_be_bytes());
                (geo_cell(lat, lon), v)
            }
            None => (UNPLACED, [0u8; 8]),
        };
        self.geo.push((geo_key(cell, at, id, seq), value));
        if !self.plates.contains(&read.plate) {
            self.plates.insert(read.plate.clone());
        }
    }

    /// Write the rows. A plate is new when `plate-time-v1` holds no read
    /// of it yet (a lookup, which dirties no page), so it is looked up
    /// before this batch's rows go in; a new plate is appended to
    /// `plate-order-v1` (sequential keys: the tree's right edge). Keeping
    /// a per-plate table with counts cost a random insert per read and
    /// 14 % of ingest (`alpr-bench hub ingest`: 37k against 43k reads/s).
    pub(super) fn write(
        mut self,
        plate_time: &mut redb::Table<&[u8], ()>,
        geo: &mut redb::Table<&[u8; 24], &[u8; 8]>,
        order: &mut redb::Table<u64, &str>,
        meta: &mut redb::Table<&str, u64>,
        hours: &mut redb::Table<u64, u64>,
    ) -> Result<(), StoreError> {
        for (hour, n) in &self.hours {
            let had = hours.get(hour).map_err(db_err)?.map_or(0, |v| v.value());
            hours.insert(hour, had + n).map_err(db_err)?;
        }
        let mut plates: Vec<String> = self.plates.into_iter().collect();
        plates.sort_unstable();
        let mut next = meta
            .get("next-plate-ordinal")
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        let first = next;
        for plate in plates {
            if !plate_held(plate_time, &plate)? {
                order.insert(next, plate.as_str()).map_err(db_err)?;
                next += 1;
            }
        }
        if next != first {
            meta.insert("next-plate-ordinal", next).map_err(db_err)?;
        }
        self.plate_time.sort_unstable();
        for k in &self.plate_time {
            plate_time.insert(k.as_slice(), ()).map_err(db_err)?;
        }
        self.geo.sort_unstable();
        for (k, v) in &self.geo {
            geo.insert(k, v).map_err(db_err)?;
        }
        Ok(())
    }
}

/// Version of the search indexes (`plate-order-v1`,
/// `geo-time-v1`); a database written before them is indexed once, here.
const SEARCH_INDEX_VERSION: u64 = 1;

pub(super) fn backfill_search_indexes(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(db_err)?;
    let done = meta
        .get("search-index-version")
        .map_err(db_err)?
        .map_or(0, |v| v.value());
    if done >= SEARCH_INDEX_VERSION {
        return Ok(());
    }
    // Every search index is rebuilt from the entries: a plate is new to
    // `plate-order-v1` when `plate-time-v1` has no read of it yet, so that
    // table starts empty too.
    tx.delete_table(PLATE_TIME).map_err(db_err)?;
    tx.delete_table(GEO_TIME).map_err(db_err)?;
    tx.delete_table(PLATE_ORDER).map_err(db_err)?;
    meta.remove("next-plate-ordinal").map_err(db_err)?;
    let entries = tx.open_table(ENTRIES).map_err(db_err)?;
    let mut plate_time = tx.open_table(PLATE_TIME).map_err(db_err)?;
    let mut geo = tx.open_table(GEO_TIME).map_err(db_err)?;
    let mut order = tx.open_table(PLATE_ORDER).map_err(db_err)?;
    // The hours are counted by `backfill_read_hours`, from the rebuilt index.
    let mut hours = tx.open_table(READ_HOURS).map_err(db_err)?;
    let mut rows = SearchRows::default();
    let mut n = 0u64;
    for row in entries.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let id = u32::from_be_bytes([k.value()[0], k.value()[1], k.value()[2], k.value()[3]]);
        // An entry that does not decode is reported by the verifier; it
        // has nothing a search could show.
        if let Ok(e) = SignedEntry::decode(v.value()) {
            rows.add(id, &e);
            n += 1;
        }
        if rows.plate_time.len() >= 100_000 {
            let mut full = std::mem::take(&mut rows);
            full.hours.clear();
            full.write(&mut plate_time, &mut geo, &mut order, &mut meta, &mut hours)?;
        }
    }
    rows.hours.clear();
    rows.write(&mut plate_time, &mut geo, &mut order, &mut meta, &mut hours)?;
    if n > 0 {
        tracing::info!(
            entries = n,
            "search indexes built for reads stored before them"
        );
    }
    meta.insert("search-index-version", SEARCH_INDEX_VERSION)
        .map_err(db_err)?;
    Ok(())
}

/// `read-hours-v1` for a database written before it: counted once from
/// the keys of `geo-time-v1` (every read held has one row there).
pub(super) fn backfill_read_hours(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(db_err)?;
    if meta.get("read-hours-version").map_err(db_err)?.is_some() {
        return Ok(());
    }
    let geo = tx.open_table(GEO_TIME).map_err(db_err)?;
    let mut counts = std::collections::BTreeMap::<u64, u64>::new();
    for row in geo.iter().map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        let at = be_u64(&k.value()[4..12])?;
        *counts.entry(at / HOUR_MS).or_default() += 1;
    }
    let mut hours = tx.open_table(READ_HOURS).map_err(db_err)?;
    for (hour, n) in &counts {
        hours.insert(hour, n).map_err(db_err)?;
    }
    meta.insert("read-hours-version", 1).map_err(db_err)?;
    Ok(())
}

impl SearchStore for RedbStore {
    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let names_t = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let mut names = Names::new(&names_t);
        let lo = plate_key(plate, from, 0, 0);
        let hi = plate_key(plate, to, u32::MAX, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?
        {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let n = k.len();
            let (Some(id), Some(seq)) = (k.get(n - 12..n - 8), k.get(n - 8..)) else {
                continue;
            };
            let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            let seq = be_u64(seq)?;
            if let Some(d) = names.get(id)? {
                out.push((d, seq));
            }
        }
        Ok(out)
    }

    fn plates_from(&self, first: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_ORDER).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.range(first..).map_err(db_err)?.take(limit) {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value(), v.value().to_owned()));
        }
        Ok(out)
    }

    fn plate_count(&self, plate: &str) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let lo = plate_key(plate, UnixMillis(0), 0, 0);
        let hi = plate_key(plate, UnixMillis(u64::MAX), u32::MAX, u64::MAX);
        let mut n = 0u64;
        for row in t
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?
        {
            row.map_err(db_err)?;
            n += 1;
        }
        Ok(n)
    }

    fn reads_of_plates(
        &self,
        plates: &[String],
        from: UnixMillis,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<IndexedRead>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let names_t = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let mut names = Names::new(&names_t);
        let mut out = Vec::new();
        for plate in plates {
            let lo = plate_key(plate, from, 0, 0);
            let hi = plate_key(plate, to, u32::MAX, u64::MAX);
            for row in t
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
                .map_err(db_err)?
            {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (k, _) = row.map_err(db_err)?;
                let k = k.value();
                let Some(tail) = k.len().checked_sub(20).and_then(|n| k.get(n..)) else {
                    continue;
                };
                let at = be_u64(&tail[..8])?;
                let id = u32::from_be_bytes([tail[8], tail[9], tail[10], tail[11]]);
                let seq = be_u64(&tail[12..])?;
                if let Some(device) = names.get(id)? {
                    out.push(IndexedRead {
                        device,
                        seq,
                        captured_at: UnixMillis(at),
                    });
                }
            }
        }
        Ok(out)
    }

    fn reads_in_box(
        &self,
        area: &GeoBox,
        from: UnixMillis,
        to: UnixMillis,
        node: Option<&DeviceId>,
        limit: usize,
        list_unplaced: bool,
    ) -> Result<PlacedReads, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(GEO_TIME).map_err(db_err)?;
        let names_t = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let mut names = Names::new(&names_t);
        let mut out = PlacedReads {
            complete: true,
            ..PlacedReads::default()
        };
        let (lat0, lat1) = (
            area.lat_min_e7.div_euclid(CELL_E7),
            area.lat_max_e7.div_euclid(CELL_E7),
        );
        let (lon0, lon1) = (
            area.lon_min_e7.div_euclid(CELL_E7),
            area.lon_max_e7.div_euclid(CELL_E7),
        );
        'cells: for lat in lat0..=lat1 {
            for lon in lon0..=lon1 {
                let cell = cell_of(lat, lon);
                let lo = geo_key(cell, from, 0, 0);
                let hi = geo_key(cell, to, u32::MAX, u64::MAX);
                for row in t.range::<&[u8; 24]>(&lo..=&hi).map_err(db_err)? {
                    if out.placed.len() >= limit {
                        out.complete = false;
                        break 'cells;
                    }
                    let (k, v) = row.map_err(db_err)?;
                    let (k, v) = (k.value(), v.value());
                    let id = u32::from_be_bytes([k[12], k[13], k[14], k[15]]);
                    if let Some(device) = names.get(id)? {
                        if node.is_some_and(|n| *n != device) {
                            continue;
                        }
                        out.placed.push(PlacedRead {
                            read: IndexedRead {
                                device,
                                seq: be_u64(&k[16..])?,
                                captured_at: UnixMillis(be_u64(&k[4..12])?),
                            },
                            lat_e7: i32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                            lon_e7: i32::from_be_bytes([v[4], v[5], v[6], v[7]]),
                        });
                    }
                }
            }
        }
        let lo = geo_key(UNPLACED, from, 0, 0);
        let hi = geo_key(UNPLACED, to, u32::MAX, u64::MAX);
        for row in t.range::<&[u8; 24]>(&lo..=&hi).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let id = u32::from_be_bytes([k[12], k[13], k[14], k[15]]);
            if node.is_none() && !list_unplaced {
                out.unplaced += 1;
                continue;
            }
            let Some(device) = names.get(id)? else {
                continue;
            };
            if node.is_some_and(|n| *n != device) {
                continue;
            }
            out.unplaced += 1;
            if list_unplaced {
                if out.unplaced_reads.len() >= limit {
                    out.complete = false;
                    break;
                }
                out.unplaced_reads.push(IndexedRead {
                    device,
                    seq: be_u64(&k[16..])?,
                    captured_at: UnixMillis(be_u64(&k[4..12])?),
                });
            }
        }
        Ok(out)
    }

    fn reads_per_hour(&self, first: u64, last: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(READ_HOURS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.range(first..=last).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }
}

/// [`WriteOp::PrunePlates`]: drop from `plate-order-v1` every plate no
/// read in `plate-time-v1` names any more.
pub(super) fn prune_plates(b: &mut Batch<'_>) -> Result<WriteResult, StoreError> {
    let mut gone = Vec::new();
    for row in b.order.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        if !plate_held(&b.plate_time, v.value())? {
            gone.push(k.value());
        }
    }
    for k in &gone {
        b.order.remove(k).map_err(db_err)?;
    }
    Ok(WriteResult::Purged(Purged {
        plates: gone.len() as u64,
        ..Purged::default()
    }))
}

/// Whether `plate-time-v1` holds any read of `plate` (a lookup, which
/// dirties no page).
fn plate_held(
    plate_time: &impl ReadableTable<&'static [u8], ()>,
    plate: &str,
) -> Result<bool, StoreError> {
    let lo = plate_key(plate, UnixMillis(0), 0, 0);
    let hi = plate_key(plate, UnixMillis(u64::MAX), u32::MAX, u64::MAX);
    Ok(plate_time
        .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
        .map_err(db_err)?
        .next()
        .is_some())
}
