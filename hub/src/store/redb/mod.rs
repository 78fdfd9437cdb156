//! [`HubStorage`] on one redb file. Table names carry a version; ordered
//! keys are big-endian so byte order is numeric order. Each concern of the
//! seam is read in a file of its own (`chains`, `access`, `accounts`,
//! `control`, `hotlists`, `alerts`, `search`, `images`, `retention`); a
//! commit opens its tables once ([`Batch`]) and hands each op to its
//! concern's write function.

use std::collections::HashMap;
use std::path::Path;

use alpr_shared::cert::Revocation;
use alpr_shared::log::{SeqRange, SignedCheckpoint, SignedEntry};
use alpr_shared::sync::{decide, ChainError, ChainState, NewKey, Verified};
use alpr_shared::types::{DeviceId, Hash32, UnixMillis};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

mod access;
mod accounts;
mod alerts;
mod chains;
mod control;
mod floors;
mod hotlists;
mod images;
mod logins;
mod retention;
mod search;

/// The hour's length of the reads-per-hour counts (the console's charts).
pub use super::rows::HOUR_MS;
use super::rows::{cell_of, coordinates, decode_row, encode, geo_cell, CELL_E7};
use super::{
    check_purge_record, in_effect_order, new_key_effect, AccessLogStore, AccountStore,
    AlertIndexRow, AlertStore, Backend, ChainStore, ControlStore, DbKind, GeoBox, HotlistStore,
    HubAlert, HubDisposition, HubStorage, ImageStore, IndexedRead, NodeCert, NodeLists, NodeRecord,
    PlacedRead, PlacedReads, Purged, RefusalRecord, SearchStore, SourceRefusalRecord, StoreError,
    WriteOp, WriteResult,
};
use chains::{cert_key, node_certs};
use search::{backfill_read_hours, backfill_search_indexes, geo_key, plate_key, UNPLACED};

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
/// User accounts by username (postcard [`crate::store::UserRecord`]).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users-v1");
/// Every signing key a user has had, by (username, public key) (postcard
/// [`crate::store::UserKey`]).
const USER_KEYS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("user-keys-v1");
/// Sessions by the SHA-256 of their token (postcard [`crate::store::SessionRecord`]).
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

/// A redb failure, by its kind.
fn db_err(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Io(_) | redb::Error::PreviousIo => DbKind::Io,
        redb::Error::Corrupted(_) => DbKind::Corrupted,
        _ => DbKind::Other,
    };
    StoreError::db(Backend::Redb, kind, e)
}

fn entry_key(id: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
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

fn decode_node(bytes: &[u8]) -> Result<NodeRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: "nodes-v1",
        detail: e.to_string(),
    })
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
    let named = |e: String| format!("{}: {e}", path.display());
    let opened = alpr_shared::health::catch_panic(|| -> Result<Database, StoreError> {
        let mut db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match db_err(e) {
                StoreError::Db { kind, detail, .. } => {
                    StoreError::db(Backend::Redb, kind, named(detail))
                }
                other => other,
            })?;
        alpr_shared::health::check_database(&mut db, path).map_err(|e| {
            StoreError::db(
                Backend::Redb,
                DbKind::Corrupted,
                named(format!("the database is corrupt: {e}")),
            )
        })?;
        Ok(db)
    });
    opened.unwrap_or_else(|panic| {
        Err(StoreError::Panicked(named(format!(
            "the database is corrupt (redb failed while checking it: {panic})"
        ))))
    })
}

/// One commit: the tables a batch writes, open once, and what it gathers
/// to write at the end (node records, search index rows). The per-concern
/// write functions (`chains::ingest`, `control::policy`, ...) take it.
struct Batch<'tx> {
    tx: &'tx redb::WriteTransaction,
    nodes: redb::Table<'tx, &'static str, &'static [u8]>,
    names: redb::Table<'tx, &'static [u8; 4], &'static str>,
    entries: redb::Table<'tx, &'static [u8; 12], &'static [u8]>,
    plate_time: redb::Table<'tx, &'static [u8], ()>,
    geo: redb::Table<'tx, &'static [u8; 24], &'static [u8; 8]>,
    order: redb::Table<'tx, u64, &'static str>,
    images: redb::Table<'tx, &'static [u8; 32], &'static [u8]>,
    refusals: redb::Table<'tx, &'static [u8; 16], &'static [u8]>,
    meta: redb::Table<'tx, &'static str, u64>,
    checkpoints: redb::Table<'tx, &'static [u8; 4], &'static [u8]>,
    certs: redb::Table<'tx, &'static [u8], &'static [u8]>,
    revocations: redb::Table<'tx, &'static str, &'static [u8]>,
    sources: redb::Table<'tx, &'static [u8; 16], &'static [u8]>,
    access: redb::Table<'tx, u64, &'static [u8]>,
    policy: redb::Table<'tx, u64, &'static [u8]>,
    node_policy: redb::Table<'tx, &'static str, u64>,
    node_hotlists: redb::Table<'tx, &'static str, &'static [u8]>,
    policy_seed: redb::Table<'tx, &'static str, &'static [u8; 32]>,
    holds: redb::Table<'tx, &'static str, &'static [u8]>,
    hotlist_local: redb::Table<'tx, &'static str, &'static [u8]>,
    users: redb::Table<'tx, &'static str, &'static [u8]>,
    user_keys: redb::Table<'tx, (&'static str, &'static [u8; 32]), &'static [u8]>,
    sessions: redb::Table<'tx, &'static [u8; 32], &'static [u8]>,
    node_access: redb::Table<'tx, &'static [u8; 20], ()>,
    alerts: redb::Table<'tx, &'static [u8; 12], &'static [u8]>,
    hub_alerts: redb::Table<'tx, u64, &'static [u8]>,
    hub_dispositions: redb::Table<'tx, (&'static str, u64), &'static [u8]>,
    /// Node records read (or made) by this commit, written at the end.
    cache: HashMap<DeviceId, NodeRecord>,
    rows: search::SearchRows,
}

impl<'tx> Batch<'tx> {
    fn open(tx: &'tx redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Batch {
            tx,
            nodes: tx.open_table(NODES).map_err(db_err)?,
            names: tx.open_table(NODE_NAMES).map_err(db_err)?,
            entries: tx.open_table(ENTRIES).map_err(db_err)?,
            plate_time: tx.open_table(PLATE_TIME).map_err(db_err)?,
            geo: tx.open_table(GEO_TIME).map_err(db_err)?,
            order: tx.open_table(PLATE_ORDER).map_err(db_err)?,
            images: tx.open_table(IMAGES).map_err(db_err)?,
            refusals: tx.open_table(REFUSALS).map_err(db_err)?,
            meta: tx.open_table(META).map_err(db_err)?,
            checkpoints: tx.open_table(CHECKPOINTS).map_err(db_err)?,
            certs: tx.open_table(NODE_CERTS_V2).map_err(db_err)?,
            revocations: tx.open_table(REVOCATIONS).map_err(db_err)?,
            sources: tx.open_table(SOURCE_REFUSALS).map_err(db_err)?,
            access: tx.open_table(HUB_ACCESS).map_err(db_err)?,
            policy: tx.open_table(POLICY).map_err(db_err)?,
            node_policy: tx.open_table(NODE_POLICY).map_err(db_err)?,
            node_hotlists: tx.open_table(NODE_HOTLISTS).map_err(db_err)?,
            policy_seed: tx.open_table(POLICY_SEED).map_err(db_err)?,
            holds: tx.open_table(HOLDS).map_err(db_err)?,
            hotlist_local: tx.open_table(HOTLIST_LOCAL).map_err(db_err)?,
            users: tx.open_table(USERS).map_err(db_err)?,
            user_keys: tx.open_table(USER_KEYS).map_err(db_err)?,
            sessions: tx.open_table(SESSIONS).map_err(db_err)?,
            node_access: tx.open_table(NODE_ACCESS).map_err(db_err)?,
            alerts: tx.open_table(ALERTS).map_err(db_err)?,
            hub_alerts: tx.open_table(HUB_ALERTS).map_err(db_err)?,
            hub_dispositions: tx.open_table(HUB_DISPOSITIONS).map_err(db_err)?,
            cache: HashMap::new(),
            rows: search::SearchRows::default(),
        })
    }

    /// The node's record as this commit sees it, read once; a node first
    /// seen gets the next id (and its name under it).
    fn record(&mut self, device: &DeviceId) -> Result<&mut NodeRecord, StoreError> {
        if !self.cache.contains_key(device) {
            let rec = match self.nodes.get(device.as_str()).map_err(db_err)? {
                Some(v) => decode_node(v.value())?,
                None => {
                    let id = self
                        .meta
                        .get("next-node-id")
                        .map_err(db_err)?
                        .map_or(0, |v| v.value());
                    self.meta.insert("next-node-id", id + 1).map_err(db_err)?;
                    let id = u32::try_from(id)
                        .map_err(|_| StoreError::Invalid("node ids exhausted".into()))?;
                    self.names
                        .insert(&id.to_be_bytes(), device.as_str())
                        .map_err(db_err)?;
                    NodeRecord {
                        id,
                        ..NodeRecord::default()
                    }
                }
            };
            self.cache.insert(device.clone(), rec);
        }
        self.cache
            .get_mut(device)
            .ok_or_else(|| StoreError::Invalid("record vanished".into()))
    }

    /// One op, by the concern it belongs to.
    fn apply(&mut self, op: WriteOp) -> Result<WriteResult, StoreError> {
        match op {
            WriteOp::Ingest {
                device,
                entries,
                checkpoint,
                new_key,
                at,
            } => chains::ingest(self, &device, entries, checkpoint, new_key, at),
            WriteOp::Contact {
                device,
                serial,
                cert_der,
                reported_size,
                at,
            } => chains::contact(self, &device, serial, cert_der, reported_size, at),
            WriteOp::Skip {
                device,
                first,
                last,
                head,
                at,
            } => chains::skip(self, &device, first, last, head, at),
            WriteOp::Revoke(r) => chains::revoke(self, r),
            WriteOp::Refusal(r) => chains::refusal(self, r),
            WriteOp::SourceRefusal {
                record,
                keep_after,
                max_rows,
            } => chains::source_refusal(self, record, keep_after, max_rows),
            WriteOp::Image {
                device,
                seq,
                hash,
                bytes,
            } => images::image(self, &device, seq, hash, &bytes),
            WriteOp::HubAccess(batch) => access::hub_access(self, batch),
            WriteOp::LoginFailure {
                keys,
                at,
                keep_after,
                max_rows,
            } => logins::failure(self.tx, &mut self.meta, &keys, at, keep_after, max_rows)
                .map(|()| WriteResult::Done),
            WriteOp::LoginLock {
                key,
                until,
                at,
                max_rows,
            } => logins::lock(self.tx, &key, until, at, max_rows).map(|()| WriteResult::Done),
            WriteOp::LoginCleared { key } => {
                logins::clear(self.tx, &key).map(|()| WriteResult::Done)
            }
            WriteOp::User(u) => accounts::user(self, u),
            WriteOp::UserKey { username, key } => accounts::user_key(self, &username, key),
            WriteOp::Session { hash, session } => accounts::session(self, hash, session),
            WriteOp::Policy {
                version,
                encoded,
                seed,
            } => control::policy(self, version, &encoded, seed),
            WriteOp::NodePolicy { device, version } => control::node_policy(self, &device, version),
            WriteOp::Holds(doc) => control::document(&mut self.holds, &doc),
            WriteOp::LocalEntries(doc) => control::document(&mut self.hotlist_local, &doc),
            WriteOp::NodeHotlists { device, held } => hotlists::node_hotlists(self, &device, &held),
            WriteOp::GenerationFloor { source, number } => {
                floors::raise(self.tx, &source, number).map(|()| WriteResult::Done)
            }
            WriteOp::HubAlerts(found) => alerts::hub_alerts(self, found),
            WriteOp::HubDisposition { alert, disposition } => {
                alerts::hub_disposition(self, &alert, &disposition)
            }
            WriteOp::Purge {
                device,
                ranges,
                record,
            } => retention::purge(self, &device, &ranges, &record),
            WriteOp::PrunePlates => search::prune_plates(self),
        }
    }

    /// Write what the batch gathered. The indexes go last and in key
    /// order: plates and places arrive in random order, and sorted
    /// inserts walk each tree once.
    fn finish(mut self) -> Result<(), StoreError> {
        let mut hours = self.tx.open_table(READ_HOURS).map_err(db_err)?;
        self.rows.write(
            &mut self.plate_time,
            &mut self.geo,
            &mut self.order,
            &mut self.meta,
            &mut hours,
        )?;
        for (device, rec) in &self.cache {
            self.nodes
                .insert(device.as_str(), encode(rec).as_slice())
                .map_err(db_err)?;
        }
        Ok(())
    }
}

impl HubStorage for RedbStore {
    fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut batch = Batch::open(&tx)?;
            for op in ops {
                results.push(batch.apply(op)?);
            }
            batch.finish()?;
        }
        tx.commit().map_err(db_err)?;
        Ok(results)
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
