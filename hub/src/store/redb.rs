//! [`HubStorage`] on one redb file. Table names carry a version; ordered
//! keys are big-endian so byte order is numeric order.

use std::collections::HashMap;
use std::path::Path;

use alpr_shared::cert::Revocation;
use alpr_shared::log::{SignedCheckpoint, SignedEntry};
use alpr_shared::sync::{decide, ChainError, ChainState, NewKey, Placement, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use alpr_shared::wire::{Refusal, RefusalCode};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

mod floors;
mod logins;

use super::{
    GeoBox, HubStorage, IndexedRead, Ingested, NodeCert, NodeRecord, PlacedRead, PlacedReads,
    RefusalRecord, SourceRefusalRecord, StoreError, WriteOp, WriteResult,
};

/// name → postcard [`NodeRecord`].
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes-v1");
/// node id → name.
const NODE_NAMES: TableDefinition<&[u8; 4], &str> = TableDefinition::new("node-names-v1");
/// node id (BE u32) ‖ seq (BE u64) → canonical entry bytes.
const ENTRIES: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("entries-v1");
/// plate ‖ 0 ‖ captured_at (BE) ‖ node id (BE) ‖ seq (BE) → ().
const PLATE_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("plate-time-v1");
/// first-seen ordinal → plate: the distinct plates in the order they were
/// first stored, so wildcard and OCR-tolerant searches never scan reads,
/// and a search index knows where to continue loading.
const PLATE_ORDER: TableDefinition<u64, &str> = TableDefinition::new("plate-order-v1");
/// cell (BE u32, [`geo_cell`]) ‖ captured_at (BE) ‖ node id (BE) ‖ seq (BE)
/// → lat_e7 ‖ lon_e7 (BE i32): reads by place and time for a canvass.
/// Reads without coordinates sit in cell [`UNPLACED`], so a canvass can
/// say how many it could not place.
const GEO_TIME: TableDefinition<&[u8; 24], &[u8; 8]> = TableDefinition::new("geo-time-v1");
/// SHA-256 → image bytes.
const IMAGES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("images-v1");
/// at (BE) ‖ counter (BE) → postcard [`RefusalRecord`].
const REFUSALS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("refusals-v1");
/// at (BE) ‖ counter (BE) → postcard [`SourceRefusalRecord`]: refusals of
/// unauthenticated sources, aggregated and pruned by the writer.
const SOURCE_REFUSALS: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("source-refusals-v1");
/// node id (BE u32) → postcard [`SignedCheckpoint`]: the latest checked one.
const CHECKPOINTS: TableDefinition<&[u8; 4], &[u8]> = TableDefinition::new("checkpoints-v1");
/// name → the DER certificate the node last connected with (read only to
/// carry older databases over to `node-certs-v2`).
const NODE_CERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("node-certs-v1");
/// node id (BE u32) ‖ serial (lower-case hex) → postcard [`NodeCert`]: every
/// certificate a node has held.
const NODE_CERTS_V2: TableDefinition<&[u8], &[u8]> = TableDefinition::new("node-certs-v2");
/// serial (lower-case hex) → postcard [`Revocation`].
const REVOCATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("revocations-v1");
/// Counters.
/// The hub's own access log: seq (big-endian) → canonical entry.
const HUB_ACCESS: TableDefinition<u64, &[u8]> = TableDefinition::new("hub-access-v1");
/// The hub's signed policy, every version: version (BE) → encoded
/// [`alpr_shared::control::SignedPolicy`].
const POLICY: TableDefinition<u64, &[u8]> = TableDefinition::new("policy-v1");
/// node name → the policy version it last said it holds or enforces.
const NODE_POLICY: TableDefinition<&str, u64> = TableDefinition::new("node-policy-v1");
/// Node name → the bulk lists it holds (postcard `Vec<(source, generation)>`).
const NODE_HOTLISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("node-hotlists-v1");
/// "config" → the hash of the `[policy]` configuration last seeded from.
const POLICY_SEED: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("policy-seed-v1");
/// "doc" → the saved legal holds document (automerge).
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("holds-v1");
/// "doc" → the saved local hotlist entries document (automerge).
const HOTLIST_LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("hotlist-local-v1");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");
/// User accounts by username (postcard [`crate::users::UserRecord`]).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users-v1");
/// Every signing key a user has had, by (username, public key) (postcard
/// [`crate::users::UserKey`]).
const USER_KEYS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("user-keys-v1");
/// Sessions by the SHA-256 of their token (postcard [`crate::users::SessionRecord`]).
const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessions-v1");
/// Nodes' access entries: (time BE, node id BE, seq BE).
const NODE_ACCESS: TableDefinition<&[u8; 20], ()> = TableDefinition::new("node-access-v1");
/// Alerts raised in nodes' logs: node id BE ‖ alert seq BE → progress (3
/// bytes, [`alpr_shared::log::alert::Progress::encode`]) ‖ covert (1) ‖
/// the node's disposition entries' seqs (BE, 8 each). Written at ingest.
const ALERTS: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("alerts-v1");
/// Past matches the hub found: number (from 1) → postcard
/// [`super::HubAlert`].
const HUB_ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("hub-alerts-v1");
/// Disposition stages recorded at the hub: (alert id `node#seq` or
/// `hub#N`, number from 0 in the order recorded) → postcard
/// [`super::HubDisposition`].
const HUB_DISPOSITIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("hub-dispositions-v1");
/// Bulk hotlist generations ([`crate::hotlist`]): (source, number) →
/// the signed generation bytes; the last few of each source only.
const HOTLIST_GEN: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("hotlist-gen-v1");
/// (source, number) → the import record of that generation (postcard
/// [`crate::hotlist::GenerationRecord`]); kept for every generation.
const HOTLIST_IMPORT: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("hotlist-import-v1");
/// Hour of capture (captured_at / 3 600 000) → reads stored that were
/// captured in it: the dashboard's reads per hour and the transparency
/// page's reads of the last 30 days, without scanning reads. A purge does
/// not lower it: it counts what was collected.
const READ_HOURS: TableDefinition<u64, u64> = TableDefinition::new("read-hours-v1");

/// Milliseconds in an hour (the unit of [`READ_HOURS`]).
pub const HOUR_MS: u64 = 3_600_000;

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

fn entry_key(id: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn plate_key(plate: &str, at: UnixMillis, id: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(plate.len() + 21);
    k.extend_from_slice(plate.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.0.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Side of a geo cell: 0.01° of latitude and of longitude (about 1.1 km ×
/// 0.85 km at 40°N): a 500 m canvass reads at most 3 × 3 cells.
pub const CELL_E7: i32 = 100_000;
/// The cell of reads that carry no coordinates.
const UNPLACED: u32 = u32::MAX;

pub(crate) fn cell_of(lat_idx: i32, lon_idx: i32) -> u32 {
    let lat = (lat_idx + 9_000).clamp(0, 18_000) as u32;
    let lon = (lon_idx + 18_000).clamp(0, 36_000) as u32;
    (lat << 16) | lon
}

/// The index cell holding a position (degrees × 10⁷).
pub fn geo_cell(lat_e7: i32, lon_e7: i32) -> u32 {
    cell_of(lat_e7.div_euclid(CELL_E7), lon_e7.div_euclid(CELL_E7))
}

fn geo_key(cell: u32, at: UnixMillis, id: u32, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..4].copy_from_slice(&cell.to_be_bytes());
    k[4..12].copy_from_slice(&at.0.to_be_bytes());
    k[12..16].copy_from_slice(&id.to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The coordinates a read carries, if any (measured or configured).
pub(crate) fn coordinates(loc: &alpr_shared::types::Location) -> Option<(i32, i32)> {
    use alpr_shared::types::Location;
    match loc {
        Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
            Some((*lat_e7, *lon_e7))
        }
        Location::Site { .. } | Location::Unknown => None,
    }
}

/// Index rows of the reads of one commit, gathered while entries are
/// placed and written at the end in key order (sorted inserts walk each
/// tree once).
#[derive(Default)]
struct SearchRows {
    plate_time: Vec<Vec<u8>>,
    geo: Vec<([u8; 24], [u8; 8])>,
    plates: std::collections::HashSet<String>,
    /// Reads of this commit per hour of capture ([`READ_HOURS`]).
    hours: std::collections::BTreeMap<u64, u64>,
}

impl SearchRows {
    fn add(&mut self, id: u32, entry: &SignedEntry) {
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
    /// 14 % of ingest (`hub bench ingest`: 37k against 43k reads/s).
    fn write(
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
            let lo = plate_key(&plate, UnixMillis(0), 0, 0);
            let hi = plate_key(&plate, UnixMillis(u64::MAX), u32::MAX, u64::MAX);
            let known = plate_time
                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
                .map_err(db_err)?
                .next()
                .is_some();
            if !known {
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

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    b.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            table: "search index",
            detail: "short value".into(),
        })
}

/// Names of node ids, looked up once per call.
struct Names<'a, T> {
    table: &'a T,
    known: HashMap<u32, Option<DeviceId>>,
}

impl<'a, T: ReadableTable<&'static [u8; 4], &'static str>> Names<'a, T> {
    fn new(table: &'a T) -> Self {
        Names {
            table,
            known: HashMap::new(),
        }
    }

    fn get(&mut self, id: u32) -> Result<Option<DeviceId>, StoreError> {
        if let Some(d) = self.known.get(&id) {
            return Ok(d.clone());
        }
        let d = self
            .table
            .get(&id.to_be_bytes())
            .map_err(db_err)?
            .and_then(|v| DeviceId::new(v.value()).ok());
        self.known.insert(id, d.clone());
        Ok(d)
    }
}

fn cert_key(id: u32, serial: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + serial.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(serial.as_bytes());
    k
}

fn decode_cert(bytes: &[u8]) -> Result<NodeCert, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "node-certs-v2",
        detail: e.to_string(),
    })
}

/// Every certificate of node `id`, in the order they took effect (pending
/// ones last, by when they were first seen).
fn node_certs(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: u32,
) -> Result<Vec<NodeCert>, StoreError> {
    let lo = id.to_be_bytes();
    let mut out = Vec::new();
    for row in t.range::<&[u8]>(lo.as_slice()..).map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        if !k.value().starts_with(&lo) {
            break;
        }
        out.push(decode_cert(v.value())?);
    }
    super::in_effect_order(&mut out);
    Ok(out)
}

/// A device's chain as the write transaction sees it; a read error or an
/// undecodable record is an error, never "nothing stored".
struct RedbChain<'a, E, C> {
    id: u32,
    entries: &'a E,
    checkpoints: &'a C,
}

impl<E, C> ChainState for RedbChain<'_, E, C>
where
    E: ReadableTable<&'static [u8; 12], &'static [u8]>,
    C: ReadableTable<&'static [u8; 4], &'static [u8]>,
{
    type Error = StoreError;

    fn stored_hash(&mut self, seq: u64) -> Result<Option<Hash32>, StoreError> {
        self.entries
            .get(&entry_key(self.id, seq))
            .map_err(db_err)?
            .map(|v| {
                SignedEntry::decode(v.value())
                    .map(|e| e.hash())
                    .map_err(|e| StoreError::Corrupt {
                        table: "entries-v1",
                        detail: e.to_string(),
                    })
            })
            .transpose()
    }

    fn checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.checkpoints
            .get(&self.id.to_be_bytes())
            .map_err(db_err)?
            .map(|v| {
                SignedCheckpoint::decode(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "checkpoints-v1",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }
}

/// The node's pending certificate `new` takes effect at its first entry
/// appended here; refused if another certificate took effect at or after
/// that point (keys only move forward) or the certificate is unknown.
/// Returns the record to write, if it changes.
pub(crate) fn new_key_effect(
    certs: &[NodeCert],
    new: &NewKey,
    batch: &[Verified],
    placement: &Placement,
) -> Result<Option<NodeCert>, Refusal> {
    let Some(first_appended) = batch.get(placement.append_from).map(Verified::seq) else {
        return Ok(None);
    };
    let from = new.first_seq.max(first_appended);
    let Some(cert) = certs.iter().find(|c| c.serial == new.serial) else {
        return Err(Refusal {
            code: RefusalCode::UnknownNode,
            seq: Some(from),
            detail: format!("certificate {} is not known for this node", new.serial),
        });
    };
    if cert.effective_from.is_some() {
        return Ok(None);
    }
    if certs
        .iter()
        .any(|c| c.effective_from.is_some_and(|f| f >= from))
    {
        return Err(Refusal {
            code: RefusalCode::BadSignature,
            seq: Some(from),
            detail: "signed by an older certificate after a newer one took effect".into(),
        });
    }
    Ok(Some(NodeCert {
        effective_from: Some(from),
        ..cert.clone()
    }))
}

fn decode_node(bytes: &[u8]) -> Result<NodeRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "nodes-v1",
        detail: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("plain records always serialise")
}

/// The redb-backed hub store.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Open (or create) the store at `path`.
    ///
    /// Every page is checked first: a corrupt file is a clear error naming
    /// it, never a panic later in a worker; a panic inside redb while
    /// opening is turned into that error too.
    /// The check reads the whole file: about 2 s for a 624 MB database of
    /// a million reads on the development machine (1.5 s with the file in
    /// the page cache), once per start.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with redb's page cache bounded to `cache_bytes`
    /// (redb's default is 1 GiB): the hub's memory stays within its
    /// configured budgets however much is written through it.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = open_checked(path, cache_bytes)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(NODES).map_err(db_err)?;
            tx.open_table(NODE_NAMES).map_err(db_err)?;
            tx.open_table(ENTRIES).map_err(db_err)?;
            tx.open_table(PLATE_TIME).map_err(db_err)?;
            tx.open_table(PLATE_ORDER).map_err(db_err)?;
            tx.open_table(GEO_TIME).map_err(db_err)?;
            tx.open_table(IMAGES).map_err(db_err)?;
            tx.open_table(REFUSALS).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            tx.open_table(CHECKPOINTS).map_err(db_err)?;
            tx.open_table(NODE_CERTS).map_err(db_err)?;
            tx.open_table(REVOCATIONS).map_err(db_err)?;
            let mut v2 = tx.open_table(NODE_CERTS_V2).map_err(db_err)?;
            // Older databases kept one certificate per node: it vouched
            // for the whole log, so it takes effect from the start.
            let v1 = tx.open_table(NODE_CERTS).map_err(db_err)?;
            let nodes = tx.open_table(NODES).map_err(db_err)?;
            for row in v1.iter().map_err(db_err)? {
                let (name, der) = row.map_err(db_err)?;
                let Some(rec) = nodes.get(name.value()).map_err(db_err)? else {
                    continue;
                };
                let rec = decode_node(rec.value())?;
                if node_certs(&v2, rec.id)?.is_empty() {
                    let c = NodeCert {
                        serial: rec.serial.clone(),
                        der: der.value().to_vec(),
                        first_seen: rec.last_contact,
                        effective_from: Some(0),
                    };
                    v2.insert(
                        cert_key(rec.id, &c.serial).as_slice(),
                        encode(&c).as_slice(),
                    )
                    .map_err(db_err)?;
                }
            }
            tx.open_table(SOURCE_REFUSALS).map_err(db_err)?;
            tx.open_table(HUB_ACCESS).map_err(db_err)?;
            tx.open_table(POLICY).map_err(db_err)?;
            tx.open_table(NODE_POLICY).map_err(db_err)?;
            tx.open_table(NODE_HOTLISTS).map_err(db_err)?;
            tx.open_table(POLICY_SEED).map_err(db_err)?;
            tx.open_table(HOLDS).map_err(db_err)?;
            tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
            tx.open_table(USERS).map_err(db_err)?;
            tx.open_table(USER_KEYS).map_err(db_err)?;
            tx.open_table(SESSIONS).map_err(db_err)?;
            tx.open_table(NODE_ACCESS).map_err(db_err)?;
            tx.open_table(HUB_DISPOSITIONS).map_err(db_err)?;
            tx.open_table(ALERTS).map_err(db_err)?;
            tx.open_table(HUB_ALERTS).map_err(db_err)?;
            logins::create(&tx)?;
            floors::create(&tx)?;
            backfill_search_indexes(&tx)?;
            backfill_read_hours(&tx)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }
}

/// Version of the search indexes (`plate-order-v1`,
/// `geo-time-v1`); a database written before them is indexed once, here.
const SEARCH_INDEX_VERSION: u64 = 1;

fn backfill_search_indexes(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
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
fn backfill_read_hours(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
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

/// The last `limit` rows of a log-like table (postcard values), oldest first.
fn newest_rows<T: serde::de::DeserializeOwned>(
    db: &Database,
    def: TableDefinition<&[u8; 16], &[u8]>,
    name: &'static str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(def).map_err(db_err)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)?.rev().take(limit) {
        let (_, v) = row.map_err(db_err)?;
        out.push(
            postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                table: name,
                detail: e.to_string(),
            })?,
        );
    }
    out.reverse();
    Ok(out)
}

/// redb's page cache for a store opened with [`RedbStore::open`].
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Open `path` and check its integrity (see [`RedbStore::open`]).
fn open_checked(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let named = |e: String| StoreError::Db(format!("{}: {e}", path.display()));
    let opened = alpr_shared::health::catch_panic(|| -> Result<Database, StoreError> {
        let mut db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| named(e.to_string()))?;
        alpr_shared::health::check_database(&mut db, path)
            .map_err(|e| named(format!("the database is corrupt: {e}")))?;
        Ok(db)
    });
    opened.unwrap_or_else(|panic| {
        Err(named(format!(
            "the database is corrupt (redb failed while checking it: {panic})"
        )))
    })
}

impl HubStorage for RedbStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut nodes = tx.open_table(NODES).map_err(db_err)?;
            let mut names = tx.open_table(NODE_NAMES).map_err(db_err)?;
            let mut entries = tx.open_table(ENTRIES).map_err(db_err)?;
            let mut plate_time = tx.open_table(PLATE_TIME).map_err(db_err)?;
            let mut geo = tx.open_table(GEO_TIME).map_err(db_err)?;
            let mut order = tx.open_table(PLATE_ORDER).map_err(db_err)?;
            let mut images = tx.open_table(IMAGES).map_err(db_err)?;
            let mut refusals = tx.open_table(REFUSALS).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let mut checkpoints = tx.open_table(CHECKPOINTS).map_err(db_err)?;
            let mut certs = tx.open_table(NODE_CERTS_V2).map_err(db_err)?;
            let mut revocations = tx.open_table(REVOCATIONS).map_err(db_err)?;
            let mut sources = tx.open_table(SOURCE_REFUSALS).map_err(db_err)?;
            let mut access = tx.open_table(HUB_ACCESS).map_err(db_err)?;
            let mut policy = tx.open_table(POLICY).map_err(db_err)?;
            let mut node_policy = tx.open_table(NODE_POLICY).map_err(db_err)?;
            let mut node_hotlists = tx.open_table(NODE_HOTLISTS).map_err(db_err)?;
            let mut policy_seed = tx.open_table(POLICY_SEED).map_err(db_err)?;
            let mut holds = tx.open_table(HOLDS).map_err(db_err)?;
            let mut hotlist_local = tx.open_table(HOTLIST_LOCAL).map_err(db_err)?;
            let mut users = tx.open_table(USERS).map_err(db_err)?;
            let mut user_keys = tx.open_table(USER_KEYS).map_err(db_err)?;
            let mut sessions = tx.open_table(SESSIONS).map_err(db_err)?;
            let mut node_access = tx.open_table(NODE_ACCESS).map_err(db_err)?;
            let mut alerts = tx.open_table(ALERTS).map_err(db_err)?;
            let mut hub_alerts = tx.open_table(HUB_ALERTS).map_err(db_err)?;
            let mut hub_dispositions = tx.open_table(HUB_DISPOSITIONS).map_err(db_err)?;
            let mut cache: HashMap<DeviceId, NodeRecord> = HashMap::new();
            let mut rows = SearchRows::default();

            let record = |device: &DeviceId,
                          cache: &mut HashMap<DeviceId, NodeRecord>,
                          nodes: &redb::Table<&str, &[u8]>,
                          meta: &mut redb::Table<&str, u64>,
                          names: &mut redb::Table<&[u8; 4], &str>|
             -> Result<(), StoreError> {
                if cache.contains_key(device) {
                    return Ok(());
                }
                let rec = match nodes.get(device.as_str()).map_err(db_err)? {
                    Some(v) => decode_node(v.value())?,
                    None => {
                        let id = meta
                            .get("next-node-id")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("next-node-id", id + 1).map_err(db_err)?;
                        let id = u32::try_from(id).map_err(|_| db_err("node ids exhausted"))?;
                        names
                            .insert(&id.to_be_bytes(), device.as_str())
                            .map_err(db_err)?;
                        NodeRecord {
                            id,
                            ..NodeRecord::default()
                        }
                    }
                };
                cache.insert(device.clone(), rec);
                Ok(())
            };

            for op in ops {
                match op {
                    WriteOp::Ingest {
                        device,
                        entries: batch,
                        checkpoint,
                        new_key,
                        at,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        let rec = cache
                            .get_mut(&device)
                            .ok_or_else(|| db_err("record vanished"))?;
                        let id = rec.id;
                        let progress = rec.progress();
                        let mut chain = RedbChain {
                            id,
                            entries: &entries,
                            checkpoints: &checkpoints,
                        };
                        let placed = match decide(&batch, checkpoint.as_ref(), progress, &mut chain)
                        {
                            Ok(d) => match &new_key {
                                Some(n) => {
                                    let held = node_certs(&certs, id)?;
                                    new_key_effect(&held, n, &batch, &d.placement)
                                        .map(|effect| (d, effect))
                                }
                                None => Ok((d, None)),
                            },
                            Err(ChainError::Refused(r)) => Err(r),
                            // Fail closed: the whole commit fails, nothing
                            // is acknowledged.
                            Err(ChainError::Storage(e)) => return Err(e),
                        };
                        match placed {
                            Ok((d, effect)) => {
                                let (p, replace) = (d.placement, d.keep_checkpoint);
                                if let Some(c) = effect {
                                    certs
                                        .insert(
                                            cert_key(id, &c.serial).as_slice(),
                                            encode(&c).as_slice(),
                                        )
                                        .map_err(db_err)?;
                                }
                                if let (true, Some(c)) = (replace, &checkpoint) {
                                    checkpoints
                                        .insert(&id.to_be_bytes(), c.encode().as_slice())
                                        .map_err(db_err)?;
                                }
                                let appended = batch.len() - p.append_from;
                                for v in batch.iter().skip(p.append_from) {
                                    entries
                                        .insert(&entry_key(id, v.seq()), v.bytes.as_slice())
                                        .map_err(db_err)?;
                                    if v.entry.access().is_some() {
                                        let mut k = [0u8; 20];
                                        k[..8].copy_from_slice(
                                            &v.entry.header.captured_at.0.to_be_bytes(),
                                        );
                                        k[8..12].copy_from_slice(&id.to_be_bytes());
                                        k[12..].copy_from_slice(&v.seq().to_be_bytes());
                                        node_access.insert(&k, ()).map_err(db_err)?;
                                    }
                                    index_alert(&mut alerts, id, &v.entry)?;
                                    rows.add(id, &v.entry);
                                }
                                rec.next_seq = p.after.next_seq;
                                rec.head = p.after.head;
                                rec.duplicates += p.duplicates as u64;
                                rec.last_contact = rec.last_contact.max(at);
                                rec.reported_size = rec.reported_size.max(rec.next_seq);
                                results.push(WriteResult::Ingested(Ok(Ingested {
                                    progress: p.after,
                                    appended,
                                    duplicates: p.duplicates,
                                })));
                            }
                            Err(r) => results.push(WriteResult::Ingested(Err(r))),
                        }
                    }
                    WriteOp::Contact {
                        device,
                        serial,
                        cert_der,
                        reported_size,
                        at,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        if let Some(rec) = cache.get(&device) {
                            // A certificate not seen before is kept as
                            // pending: it vouches for nothing until the
                            // node's first entry it signs lands on the
                            // stored chain.
                            let key = cert_key(rec.id, &serial);
                            if certs.get(key.as_slice()).map_err(db_err)?.is_none() {
                                let c = NodeCert {
                                    serial: serial.clone(),
                                    der: cert_der,
                                    first_seen: at,
                                    effective_from: None,
                                };
                                certs
                                    .insert(key.as_slice(), encode(&c).as_slice())
                                    .map_err(db_err)?;
                            }
                        }
                        if let Some(rec) = cache.get_mut(&device) {
                            rec.serial = serial;
                            rec.reported_size = reported_size;
                            rec.last_contact = rec.last_contact.max(at);
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Image {
                        device,
                        seq,
                        hash,
                        bytes,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        let rec = cache
                            .get_mut(&device)
                            .ok_or_else(|| db_err("record vanished"))?;
                        let named = entries
                            .get(&entry_key(rec.id, seq))
                            .map_err(db_err)?
                            .and_then(|v| SignedEntry::decode(v.value()).ok())
                            .and_then(|e| {
                                e.read()
                                    .map(|r| r.crop_hash == hash || r.overview_hash == hash)
                            })
                            .unwrap_or(false);
                        if named && images.get(&hash.0).map_err(db_err)?.is_none() {
                            images.insert(&hash.0, bytes.as_slice()).map_err(db_err)?;
                            rec.images += 1;
                        }
                        results.push(WriteResult::Image(named));
                    }
                    WriteOp::Skip {
                        device,
                        first,
                        last,
                        head,
                        at,
                    } => {
                        record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                        let rec = cache
                            .get_mut(&device)
                            .ok_or_else(|| db_err("record vanished"))?;
                        let r = if rec.next_seq == first {
                            rec.next_seq = last + 1;
                            rec.head = head;
                            rec.last_contact = rec.last_contact.max(at);
                            rec.reported_size = rec.reported_size.max(rec.next_seq);
                            Ok(Ingested {
                                progress: rec.progress(),
                                appended: 0,
                                duplicates: 0,
                            })
                        } else if rec.next_seq > last {
                            Ok(Ingested {
                                progress: rec.progress(),
                                appended: 0,
                                duplicates: 0,
                            })
                        } else {
                            Err(alpr_shared::wire::Refusal {
                                code: alpr_shared::wire::RefusalCode::Gap,
                                seq: Some(first),
                                detail: format!(
                                    "loss record starts at {first}; the hub holds up to {}",
                                    rec.next_seq
                                ),
                            })
                        };
                        results.push(WriteResult::Ingested(r));
                    }
                    WriteOp::Revoke(r) => {
                        // The earliest effective time recorded wins: a
                        // revocation is never pushed later by a repeat.
                        let keep = match revocations.get(r.serial.as_str()).map_err(db_err)? {
                            Some(v) => {
                                let old: Revocation =
                                    postcard::from_bytes(v.value()).map_err(|e| {
                                        StoreError::Corrupt {
                                            table: "revocations-v1",
                                            detail: e.to_string(),
                                        }
                                    })?;
                                old.effective_at > r.effective_at
                            }
                            None => true,
                        };
                        if keep {
                            revocations
                                .insert(r.serial.as_str(), encode(&r).as_slice())
                                .map_err(db_err)?;
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Refusal(r) => {
                        let n = meta
                            .get("refusal-counter")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("refusal-counter", n + 1).map_err(db_err)?;
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&r.at.0.to_be_bytes());
                        key[8..].copy_from_slice(&n.to_be_bytes());
                        refusals
                            .insert(&key, encode(&r).as_slice())
                            .map_err(db_err)?;
                        if let Some(Ok(device)) = r.device.as_deref().map(DeviceId::new) {
                            record(&device, &mut cache, &nodes, &mut meta, &mut names)?;
                            if let Some(rec) = cache.get_mut(&device) {
                                rec.refusals += 1;
                            }
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::SourceRefusal {
                        record,
                        keep_after,
                        max_rows,
                    } => {
                        let n = meta
                            .get("source-refusal-counter")
                            .map_err(db_err)?
                            .map_or(0, |v| v.value());
                        meta.insert("source-refusal-counter", n + 1)
                            .map_err(db_err)?;
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&record.at.0.to_be_bytes());
                        key[8..].copy_from_slice(&n.to_be_bytes());
                        sources
                            .insert(&key, encode(&record).as_slice())
                            .map_err(db_err)?;
                        prune_source_refusals(&mut sources, keep_after, max_rows)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::LoginFailure {
                        keys,
                        at,
                        keep_after,
                        max_rows,
                    } => {
                        logins::failure(&tx, &mut meta, &keys, at, keep_after, max_rows)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::LoginLock {
                        key,
                        until,
                        at,
                        max_rows,
                    } => {
                        logins::lock(&tx, &key, until, at, max_rows)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::LoginCleared { key } => {
                        logins::clear(&tx, &key)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::GenerationFloor { source, number } => {
                        floors::raise(&tx, &source, number)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Policy {
                        version,
                        encoded,
                        seed,
                    } => {
                        let latest = policy.last().map_err(db_err)?.map(|(k, _)| k.value());
                        if latest.is_some_and(|l| l >= version) {
                            return Err(StoreError::Corrupt {
                                table: "policy-v1",
                                detail: format!(
                                    "policy version {version} is not newer than the stored {}",
                                    latest.unwrap_or_default()
                                ),
                            });
                        }
                        policy.insert(version, encoded.as_slice()).map_err(db_err)?;
                        if let Some(seed) = seed {
                            policy_seed.insert("config", &seed.0).map_err(db_err)?;
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::NodePolicy { device, version } => {
                        node_policy
                            .insert(device.as_str(), version)
                            .map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::NodeHotlists { device, held } => {
                        node_hotlists
                            .insert(device.as_str(), encode(&held).as_slice())
                            .map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Holds(doc) => {
                        holds.insert("doc", doc.as_slice()).map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::LocalEntries(doc) => {
                        hotlist_local
                            .insert("doc", doc.as_slice())
                            .map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::User(u) => {
                        users
                            .insert(u.username.as_str(), encode(&u).as_slice())
                            .map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::UserKey { username, key } => {
                        let at = (username.as_str(), &key.key.public);
                        if user_keys.get(at).map_err(db_err)?.is_none() {
                            user_keys
                                .insert(at, encode(&key).as_slice())
                                .map_err(db_err)?;
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Session { hash, session } => {
                        match session {
                            Some(s) => {
                                sessions
                                    .insert(&hash, encode(&s).as_slice())
                                    .map_err(db_err)?;
                            }
                            None => {
                                sessions.remove(&hash).map_err(db_err)?;
                            }
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::Purge {
                        device,
                        ranges,
                        record,
                    } => {
                        super::check_purge_record(&device, &ranges, &record)?;
                        let (size, head) = access_head(&access)?;
                        if record.seq() != size || record.header.prev != head {
                            return Err(StoreError::Corrupt {
                                table: "hub-access-v1",
                                detail: format!(
                                    "purge record {} does not extend the hub's log of {size} entries",
                                    record.seq()
                                ),
                            });
                        }
                        access
                            .insert(record.seq(), record.encode().as_slice())
                            .map_err(db_err)?;
                        let id = match nodes.get(device.as_str()).map_err(db_err)? {
                            Some(v) => decode_node(v.value())?.id,
                            None => return Err(db_err(format!("no node {device} to purge"))),
                        };
                        let done = purge_reads(
                            id,
                            &ranges,
                            &mut entries,
                            &mut plate_time,
                            &mut geo,
                            &mut images,
                        )?;
                        results.push(WriteResult::Purged(done));
                    }
                    WriteOp::PrunePlates => {
                        let mut gone = Vec::new();
                        for row in order.iter().map_err(db_err)? {
                            let (k, v) = row.map_err(db_err)?;
                            let plate = v.value();
                            let lo = plate_key(plate, UnixMillis(0), 0, 0);
                            let hi = plate_key(plate, UnixMillis(u64::MAX), u32::MAX, u64::MAX);
                            let held = plate_time
                                .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
                                .map_err(db_err)?
                                .next()
                                .is_some();
                            if !held {
                                gone.push(k.value());
                            }
                        }
                        for k in &gone {
                            order.remove(k).map_err(db_err)?;
                        }
                        results.push(WriteResult::Purged(super::Purged {
                            plates: gone.len() as u64,
                            ..super::Purged::default()
                        }));
                    }
                    WriteOp::HubAlerts(found) => {
                        let first = hub_alerts
                            .last()
                            .map_err(db_err)?
                            .map_or(1, |(k, _)| k.value() + 1);
                        for (n, a) in (first..).zip(found) {
                            hub_alerts
                                .insert(n, encode(&a).as_slice())
                                .map_err(db_err)?;
                        }
                        results.push(WriteResult::Done);
                    }
                    WriteOp::HubDisposition { alert, disposition } => {
                        let next = hub_dispositions
                            .range((alert.as_str(), 0)..=(alert.as_str(), u64::MAX))
                            .map_err(db_err)?
                            .next_back()
                            .transpose()
                            .map_err(db_err)?
                            .map_or(0, |(k, _)| k.value().1 + 1);
                        hub_dispositions
                            .insert((alert.as_str(), next), encode(&disposition).as_slice())
                            .map_err(db_err)?;
                        results.push(WriteResult::Done);
                    }
                    WriteOp::HubAccess(batch) => {
                        for e in batch {
                            let (size, head) = access_head(&access)?;
                            if e.seq() != size || e.header.prev != head {
                                return Err(StoreError::Corrupt {
                                    table: "hub-access-v1",
                                    detail: format!(
                                        "entry {} does not extend the access log of {size} entries",
                                        e.seq()
                                    ),
                                });
                            }
                            access
                                .insert(e.seq(), e.encode().as_slice())
                                .map_err(db_err)?;
                        }
                        results.push(WriteResult::Done);
                    }
                }
            }
            // The indexes are written last and in key order: plates and
            // places arrive in random order, and sorted inserts walk each
            // tree once.
            let mut hours = tx.open_table(READ_HOURS).map_err(db_err)?;
            rows.write(&mut plate_time, &mut geo, &mut order, &mut meta, &mut hours)?;
            for (device, rec) in cache {
                nodes
                    .insert(device.as_str(), encode(&rec).as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(results)
    }

    fn node(&self, device: &DeviceId) -> Result<Option<NodeRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODES).map_err(db_err)?;
        t.get(device.as_str())
            .map_err(db_err)?
            .map(|v| decode_node(v.value()))
            .transpose()
    }

    fn nodes(&self) -> Result<Vec<(DeviceId, NodeRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let name = DeviceId::new(k.value()).map_err(|e| StoreError::Corrupt {
                table: "nodes-v1",
                detail: e.to_string(),
            })?;
            out.push((name, decode_node(v.value())?));
        }
        Ok(out)
    }

    fn checkpoint(&self, device: &DeviceId) -> Result<Option<SignedCheckpoint>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(None);
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(CHECKPOINTS).map_err(db_err)?;
        t.get(&rec.id.to_be_bytes())
            .map_err(db_err)?
            .map(|v| {
                SignedCheckpoint::decode(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "checkpoints-v1",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }

    fn certificates(&self, device: &DeviceId) -> Result<Vec<NodeCert>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_CERTS_V2).map_err(db_err)?;
        node_certs(&t, rec.id)
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(REVOCATIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(
                postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "revocations-v1",
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    fn entries(
        &self,
        device: &DeviceId,
        first: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(rec) = self.node(device)? else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ENTRIES).map_err(db_err)?;
        let from = entry_key(rec.id, first);
        let to = entry_key(rec.id, u64::MAX);
        let mut out = Vec::new();
        for row in t
            .range::<&[u8; 12]>(&from..=&to)
            .map_err(db_err)?
            .take(limit)
        {
            let (_, v) = row.map_err(db_err)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        newest_rows(&self.db, REFUSALS, "refusals-v1", limit)
    }

    fn source_refusals(&self, limit: usize) -> Result<Vec<SourceRefusalRecord>, StoreError> {
        newest_rows(&self.db, SOURCE_REFUSALS, "source-refusals-v1", limit)
    }

    fn reads_of_plate(
        &self,
        plate: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(DeviceId, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(PLATE_TIME).map_err(db_err)?;
        let names = tx.open_table(NODE_NAMES).map_err(db_err)?;
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
            let id: [u8; 4] = id.try_into().map_err(db_err)?;
            let seq = u64::from_be_bytes(seq.try_into().map_err(db_err)?);
            if let Some(name) = names.get(&id).map_err(db_err)? {
                if let Ok(d) = DeviceId::new(name.value()) {
                    out.push((d, seq));
                }
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

    fn entries_at(&self, at: &[(DeviceId, u64)]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let t = tx.open_table(ENTRIES).map_err(db_err)?;
        let mut ids: HashMap<&DeviceId, Option<u32>> = HashMap::new();
        let mut out = Vec::with_capacity(at.len());
        for (device, seq) in at {
            let id = match ids.get(device) {
                Some(id) => *id,
                None => {
                    let id = nodes
                        .get(device.as_str())
                        .map_err(db_err)?
                        .map(|v| decode_node(v.value()))
                        .transpose()?
                        .map(|r| r.id);
                    ids.insert(device, id);
                    id
                }
            };
            let bytes = match id {
                Some(id) => t
                    .get(&entry_key(id, *seq))
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec()),
                None => None,
            };
            out.push(bytes);
        }
        Ok(out)
    }

    fn image(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

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

    fn policy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY).map_err(db_err)?;
        let last = t.last().map_err(db_err)?.map(|(_, v)| v.value().to_vec());
        Ok(last)
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

    fn policy_seed(&self) -> Result<Option<Hash32>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY_SEED).map_err(db_err)?;
        Ok(t.get("config").map_err(db_err)?.map(|v| Hash32(*v.value())))
    }

    fn store_generation(
        &self,
        source: &str,
        number: u64,
        bytes: &[u8],
        record: &[u8],
        keep: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        {
            let mut gens = tx.open_table(HOTLIST_GEN).map_err(db_err)?;
            let mut imports = tx.open_table(HOTLIST_IMPORT).map_err(db_err)?;
            gens.insert((source, number), bytes).map_err(db_err)?;
            imports.insert((source, number), record).map_err(db_err)?;
            // Generations below `number + 1 - keep` go (the new one stays
            // whatever `keep` says).
            let first_kept = number.saturating_add(1).saturating_sub(keep.max(1));
            let old: Vec<u64> = gens
                .range((source, 0)..(source, first_kept))
                .map_err(db_err)?
                .map(|row| row.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for n in old {
                gens.remove((source, n)).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(())
    }

    fn generation_bytes(&self, source: &str, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = match tx.open_table(HOTLIST_GEN) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let v = t
            .get((source, number))
            .map_err(db_err)?
            .map(|v| v.value().to_vec());
        Ok(v)
    }

    fn generation_records(&self, source: &str) -> Result<Vec<(u64, Vec<u8>, bool)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let (imports, gens) = match (tx.open_table(HOTLIST_IMPORT), tx.open_table(HOTLIST_GEN)) {
            (Ok(i), Ok(g)) => (i, g),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
            (Err(e), _) | (_, Err(e)) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        for row in imports
            .range((source, 0)..=(source, u64::MAX))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let n = k.value().1;
            let kept = gens.get((source, n)).map_err(db_err)?.is_some();
            out.push((n, v.value().to_vec(), kept));
        }
        Ok(out)
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

    fn node_hotlists(&self) -> Result<Vec<(DeviceId, super::NodeLists)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(NODE_HOTLISTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let held: Vec<(String, u64)> = decode_row(v.value(), "node-hotlists-v1")?;
            if let Ok(d) = DeviceId::new(k.value()) {
                out.push((d, held));
            }
        }
        Ok(out)
    }

    fn user(&self, username: &str) -> Result<Option<crate::users::UserRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USERS).map_err(db_err)?;
        t.get(username)
            .map_err(db_err)?
            .map(|v| decode_row(v.value(), "users-v1"))
            .transpose()
    }

    fn users(&self) -> Result<Vec<crate::users::UserRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USERS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode_row(v.value(), "users-v1")?);
        }
        Ok(out)
    }

    fn user_keys(&self) -> Result<Vec<(String, crate::users::UserKey)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(USER_KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().0.to_owned(),
                decode_row(v.value(), "user-keys-v1")?,
            ));
        }
        Ok(out)
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::users::SessionRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(SESSIONS).map_err(db_err)?;
        t.get(hash)
            .map_err(db_err)?
            .map(|v| decode_row(v.value(), "sessions-v1"))
            .transpose()
    }

    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError> {
        logins::failures(&self.db, key, since)
    }

    fn generation_floor(&self, source: &str) -> Result<u64, StoreError> {
        floors::floor(&self.db, source)
    }

    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError> {
        logins::locked_until(&self.db, key)
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
        let mut ids: HashMap<[u8; 4], Option<DeviceId>> = HashMap::new();
        let mut out = Vec::new();
        for row in t.range::<&[u8; 20]>(&lo..=&hi).map_err(db_err)?.take(limit) {
            let (k, _) = row.map_err(db_err)?;
            let k = k.value();
            let mut id = [0u8; 4];
            id.copy_from_slice(&k[8..12]);
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k[12..]);
            let name = match ids.get(&id) {
                Some(n) => n.clone(),
                None => {
                    let n = names
                        .get(&id)
                        .map_err(db_err)?
                        .and_then(|v| DeviceId::new(v.value()).ok());
                    ids.insert(id, n.clone());
                    n
                }
            };
            if let Some(d) = name {
                out.push((d, u64::from_be_bytes(seq)));
            }
        }
        Ok(out)
    }

    fn has_image(&self, hash: &Hash32) -> Result<bool, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(IMAGES).map_err(db_err)?;
        Ok(t.get(&hash.0).map_err(db_err)?.is_some())
    }

    fn alerts(
        &self,
        node: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<super::AlertIndexRow>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let names = tx.open_table(NODE_NAMES).map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let (lo, hi) = match node {
            Some(d) => {
                let Some(rec) = nodes
                    .get(d.as_str())
                    .map_err(db_err)?
                    .map(|v| decode_node(v.value()))
                    .transpose()?
                else {
                    return Ok(Vec::new());
                };
                (entry_key(rec.id, 0), entry_key(rec.id, u64::MAX))
            }
            None => ([0u8; 12], [0xffu8; 12]),
        };
        let mut ids: HashMap<[u8; 4], Option<DeviceId>> = HashMap::new();
        let mut out = Vec::new();
        for row in t.range::<&[u8; 12]>(&lo..=&hi).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let k = k.value();
            let mut id = [0u8; 4];
            id.copy_from_slice(&k[..4]);
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k[4..]);
            let name = match ids.get(&id) {
                Some(n) => n.clone(),
                None => {
                    let n = names
                        .get(&id)
                        .map_err(db_err)?
                        .and_then(|v| DeviceId::new(v.value()).ok());
                    ids.insert(id, n.clone());
                    n
                }
            };
            if let Some(d) = name {
                out.push(parse_alert_row(d, u64::from_be_bytes(seq), v.value())?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn hub_alerts(&self, limit: usize) -> Result<Vec<(u64, super::HubAlert)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HUB_ALERTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value(), decode_row(v.value(), "hub-alerts-v1")?));
        }
        Ok(out)
    }

    fn hub_dispositions(
        &self,
        alert: Option<&str>,
    ) -> Result<Vec<(String, super::HubDisposition)>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(HUB_DISPOSITIONS).map_err(db_err)?;
        let rows = match alert {
            Some(a) => t.range((a, 0)..=(a, u64::MAX)),
            None => t.range::<(&str, u64)>(..),
        }
        .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().0.to_owned(),
                decode_row(v.value(), "hub-dispositions-v1")?,
            ));
        }
        Ok(out)
    }

    fn alert(&self, node: &DeviceId, seq: u64) -> Result<Option<super::AlertIndexRow>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let nodes = tx.open_table(NODES).map_err(db_err)?;
        let Some(rec) = nodes
            .get(node.as_str())
            .map_err(db_err)?
            .map(|v| decode_node(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let Some(v) = t.get(&entry_key(rec.id, seq)).map_err(db_err)? else {
            return Ok(None);
        };
        parse_alert_row(node.clone(), seq, v.value()).map(Some)
    }
}

/// Index an alert or a disposition entry of node `id` (anything else is
/// left alone). A disposition the stage rules refuse (a node's log is the
/// node's word; the rules were checked there) is kept in the log and not
/// counted here.
fn index_alert(
    t: &mut redb::Table<&[u8; 12], &[u8]>,
    id: u32,
    e: &alpr_shared::log::SignedEntry,
) -> Result<(), StoreError> {
    use alpr_shared::log::alert::Progress;
    if let Some(r) = e.alert() {
        let mut row = Progress::default().encode().to_vec();
        row.push(u8::from(r.covert));
        t.insert(&entry_key(id, e.seq()), row.as_slice())
            .map_err(db_err)?;
    } else if let Some(d) = e.disposition() {
        let key = entry_key(id, d.alert_seq);
        let Some(mut row) = t.get(&key).map_err(db_err)?.map(|v| v.value().to_vec()) else {
            return Ok(());
        };
        let Some(mut p) = row.get(..3).and_then(Progress::decode) else {
            return Err(StoreError::Corrupt {
                table: "alerts-v1",
                detail: "progress".into(),
            });
        };
        if p.apply(d.stage).is_ok() {
            row[..3].copy_from_slice(&p.encode());
            row.extend_from_slice(&e.seq().to_be_bytes());
            t.insert(&key, row.as_slice()).map_err(db_err)?;
        }
    }
    Ok(())
}

fn parse_alert_row(node: DeviceId, seq: u64, v: &[u8]) -> Result<super::AlertIndexRow, StoreError> {
    let bad = || StoreError::Corrupt {
        table: "alerts-v1",
        detail: format!("row of {node}#{seq}"),
    };
    let progress = v
        .get(..3)
        .and_then(alpr_shared::log::alert::Progress::decode)
        .ok_or_else(bad)?;
    let covert = v.get(3).copied().ok_or_else(bad)? != 0;
    let rest = v.get(4..).ok_or_else(bad)?;
    if rest.len() % 8 != 0 {
        return Err(bad());
    }
    Ok(super::AlertIndexRow {
        node,
        seq,
        progress,
        covert,
        dispositions: rest
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_be_bytes)
            .collect(),
    })
}

/// A postcard row of `table`.
pub(crate) fn decode_row<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

/// Size and head of the hub's access log as `t` holds it.
/// How far either side of a purged range a read may share an image with
/// one in it: reads share an image only when they come from one frame,
/// which the node seals consecutively.
pub(crate) const IMAGE_NEIGHBOURS: u64 = 32;

/// The images a read names.
pub(crate) fn images_of(read: &alpr_shared::types::ReadContent) -> [Hash32; 2] {
    [read.crop_hash, read.overview_hash]
}

/// Purge the content of node `id`'s reads in `ranges` (see
/// [`WriteOp::Purge`]).
fn purge_reads(
    id: u32,
    ranges: &[alpr_shared::log::SeqRange],
    entries: &mut redb::Table<&[u8; 12], &[u8]>,
    plate_time: &mut redb::Table<&[u8], ()>,
    geo: &mut redb::Table<&[u8; 24], &[u8; 8]>,
    images: &mut redb::Table<&[u8; 32], &[u8]>,
) -> Result<super::Purged, StoreError> {
    let corrupt = |e: alpr_shared::log::DecodeError| StoreError::Corrupt {
        table: "entries-v1",
        detail: e.to_string(),
    };
    let mut done = super::Purged::default();
    let mut named = std::collections::HashSet::new();
    // Index rows and images are deleted in key order, each tree walked
    // once (plates and image hashes come in random order).
    let mut plate_rows = Vec::new();
    let mut geo_rows = Vec::new();
    for r in ranges {
        for seq in r.first..=r.last {
            let key = entry_key(id, seq);
            let Some(bytes) = entries
                .get(&key)
                .map_err(db_err)?
                .map(|v| v.value().to_vec())
            else {
                continue;
            };
            let mut e = SignedEntry::decode(&bytes).map_err(corrupt)?;
            let Some(read) = e.read().cloned() else {
                continue;
            };
            let at = e.header.captured_at;
            plate_rows.push(plate_key(&read.plate, at, id, seq));
            let cell =
                coordinates(&read.location).map_or(UNPLACED, |(lat, lon)| geo_cell(lat, lon));
            geo_rows.push(geo_key(cell, at, id, seq));
            named.extend(images_of(&read));
            e.purge_content();
            entries
                .insert(&key, e.encode().as_slice())
                .map_err(db_err)?;
            done.reads += 1;
        }
    }
    plate_rows.sort_unstable();
    for k in &plate_rows {
        plate_time.remove(k.as_slice()).map_err(db_err)?;
    }
    geo_rows.sort_unstable();
    for k in &geo_rows {
        geo.remove(k).map_err(db_err)?;
    }
    // Keep an image a neighbouring read still holding content names.
    for r in ranges {
        let before = r.first.saturating_sub(IMAGE_NEIGHBOURS)..r.first;
        let after = r.last.saturating_add(1)..r.last.saturating_add(1 + IMAGE_NEIGHBOURS);
        for seq in before.chain(after) {
            if let Some(v) = entries.get(&entry_key(id, seq)).map_err(db_err)? {
                if let Some(read) = SignedEntry::decode(v.value()).map_err(corrupt)?.read() {
                    for h in images_of(read) {
                        named.remove(&h);
                    }
                }
            }
        }
    }
    let mut named: Vec<Hash32> = named.into_iter().collect();
    named.sort_unstable_by_key(|h| h.0);
    for h in named {
        if images.remove(&h.0).map_err(db_err)?.is_some() {
            done.images += 1;
        }
    }
    Ok(done)
}

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

/// Drop unauthenticated sources' rows older than `keep_after`, then the
/// oldest while more than `max_rows` remain (keys start with the time).
fn prune_source_refusals(
    t: &mut redb::Table<&'static [u8; 16], &'static [u8]>,
    keep_after: UnixMillis,
    max_rows: u64,
) -> Result<(), StoreError> {
    loop {
        let len = t.len().map_err(db_err)?;
        let stale = match t.first().map_err(db_err)? {
            Some((k, _)) => {
                let mut at = [0u8; 8];
                at.copy_from_slice(&k.value()[..8]);
                u64::from_be_bytes(at) < keep_after.0
            }
            None => return Ok(()),
        };
        if !stale && len <= max_rows {
            return Ok(());
        }
        t.pop_first().map_err(db_err)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::SecretKey;
    use alpr_shared::log::LogWriter;
    use alpr_shared::sync::{verify_batch, Validity};
    use alpr_shared::types::TimeSource;
    use alpr_shared::wire::Entries;

    fn batch(w: &mut LogWriter, n: u64) -> Entries {
        let first_seq = w.len();
        let log = (0..n)
            .map(|i| {
                w.append_read(
                    crate::sample::sample_read(first_seq + i),
                    UnixMillis(5_000 + first_seq + i),
                    TimeSource::Ntp,
                )
                .expect("valid")
            })
            .collect();
        Entries::from_log(log, Some(w.checkpoint(UnixMillis(9_000)))).expect("consecutive")
    }

    fn ingest(
        store: &RedbStore,
        device: &DeviceId,
        e: Entries,
        key: &alpr_shared::crypto::PublicKey,
    ) -> WriteResult {
        let v = verify_batch(key, device, Validity::ALWAYS, e).expect("verifies");
        store
            .commit(vec![WriteOp::Ingest {
                device: device.clone(),
                entries: v.entries,
                checkpoint: v.checkpoint,
                new_key: v.new_key,
                at: UnixMillis(1),
            }])
            .expect("commit")
            .remove(0)
    }

    #[test]
    fn a_database_written_before_the_hour_counter_is_counted_at_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("h.redb");
        let store = RedbStore::open(&path).expect("open");
        let key = SecretKey::from_bytes(&[8; 32]).public();
        let device = DeviceId::new("pole-h").expect("valid");
        let mut w = LogWriter::new(SecretKey::from_bytes(&[8; 32]), device.clone());
        let log: Vec<SignedEntry> = [10u64, 10, 10, 12, 12]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let at = UnixMillis(h * HOUR_MS + i as u64 * 1000);
                w.append_read(crate::sample::sample_read(i as u64), at, TimeSource::Ntp)
                    .expect("valid")
            })
            .collect();
        let cp = w.checkpoint(UnixMillis(13 * HOUR_MS));
        let again = || Entries::from_log(log.clone(), Some(cp.clone())).expect("consecutive");
        // Counting at ingest is in the store's contract (`contract.rs`).
        ingest(&store, &device, again(), &key);
        let want = vec![(10, 3), (12, 2)];
        assert_eq!(store.reads_per_hour(0, 100).expect("count"), want);
        drop(store);

        // A database written before the counter: counted when opened.
        {
            let db = Database::create(&path).expect("open");
            let tx = db.begin_write().expect("tx");
            tx.delete_table(READ_HOURS).expect("drop");
            tx.open_table(META)
                .expect("meta")
                .remove("read-hours-version")
                .expect("unmark");
            tx.commit().expect("commit");
        }
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(store.reads_per_hour(0, 100).expect("count"), want);
    }

    #[test]
    fn an_undecodable_checkpoint_fails_the_commit() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RedbStore::open(&dir.path().join("h.redb")).expect("open");
        let device = DeviceId::new("p-3").expect("valid");
        let key = SecretKey::from_bytes(&[7; 32]);
        let public = key.public();
        let mut w = LogWriter::new(key, device.clone());
        let r = ingest(&store, &device, batch(&mut w, 10), &public);
        assert!(matches!(r, WriteResult::Ingested(Ok(_))));
        let id = store.node(&device).expect("read").expect("known").id;
        {
            let tx = store.db.begin_write().expect("tx");
            tx.open_table(CHECKPOINTS)
                .expect("table")
                .insert(&id.to_be_bytes(), [0xffu8, 0xff, 0xff].as_slice())
                .expect("insert");
            tx.commit().expect("commit");
        }
        let v = verify_batch(&public, &device, Validity::ALWAYS, batch(&mut w, 5)).expect("ok");
        let r = store.commit(vec![WriteOp::Ingest {
            device: device.clone(),
            entries: v.entries,
            checkpoint: v.checkpoint,
            new_key: None,
            at: UnixMillis(2),
        }]);
        assert!(
            r.is_err(),
            "a checkpoint that does not decode is not 'none': {r:?}"
        );
        assert_eq!(
            store.node(&device).expect("read").expect("known").next_seq,
            10
        );
    }
}
