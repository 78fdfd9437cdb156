//! The store's contract: what every [`HubStorage`] does, as a user of the
//! hub would notice it, written once over `&dyn HubStorage` and run on
//! each backend by [`contract_tests!`], one module per concern of the
//! seam (`chains`, `access`, `accounts`, ...): redb in a temporary folder, and
//! PostgreSQL in a fresh database ([`super::postgres::cluster::test_database`]:
//! the suite's cluster when `ALPR_TEST_PG_URL` names one, else a cluster
//! of this process's own).
//!
//! Every write goes through [`HubStorage::commit`] with real signed
//! entries (verified as the ingest path verifies them), so a backend that
//! stores, indexes or refuses differently fails here, not in the field.

use std::sync::Arc;

use alpr_shared::crypto::{sha256, PublicKey, SecretKey};
use alpr_shared::log::alert::{ActionTaken, ReadCheck, Stage, StatusCheck};
use alpr_shared::log::{
    AccessAction, AccessOutcome, AccessRecord, AlertRecord, DispositionRecord, LogWriter, SeqRange,
    SignedCheckpoint, SignedEntry,
};
use alpr_shared::sync::{verify_batch, Validity};
use alpr_shared::types::{DeviceId, Hash32, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, RefusalCode};

use super::*;

/// A store under test, with what must outlive it (its folder, its
/// database); the store is dropped first.
pub(crate) struct Opened {
    pub store: Arc<dyn HubStorage>,
    _keep: Box<dyn Send>,
}

pub(crate) fn open_redb() -> Opened {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = super::redb::RedbStore::open(&dir.path().join("hub.redb")).expect("open redb");
    Opened {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
}

pub(crate) fn open_postgres() -> Opened {
    let db = super::postgres::cluster::test_database().expect("a test database");
    let store = super::postgres::PgStore::open(&db.config).expect("open the PostgreSQL store");
    Opened {
        store: Arc::new(store),
        _keep: Box::new(db),
    }
}

/// One `#[test]` per contract test and backend, in the concern's module:
/// `contract_tests!(ingest_…, …)` in `chains` makes `chains::redb::ingest_…`
/// and `chains::postgres::ingest_…`.
macro_rules! contract_tests {
    ($($test:ident),+ $(,)?) => {
        mod redb {
            contract_tests!(@each super::super::open_redb; $($test),+);
        }
        mod postgres {
            contract_tests!(@each super::super::open_postgres; $($test),+);
        }
    };
    (@each $open:path; $($test:ident),+) => {$(
        #[test]
        fn $test() {
            let opened = $open();
            super::$test(&*opened.store);
        }
    )+};
}

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
mod shared_database;

// ---------------------------------------------------------------- helpers

/// A simulated node: its name, key and signing log.
struct Node {
    device: DeviceId,
    key: PublicKey,
    w: LogWriter,
}

impl Node {
    fn new(name: &str, seed: u8) -> Node {
        let device = DeviceId::new(name).expect("valid name");
        let secret = SecretKey::from_bytes(&[seed; 32]);
        Node {
            key: secret.public(),
            w: LogWriter::new(secret, device.clone()),
            device,
        }
    }

    /// Seal `content` captured at `at`.
    fn read(&mut self, content: ReadContent, at: u64) -> SignedEntry {
        self.w
            .append_read(content, UnixMillis(at), TimeSource::Ntp)
            .expect("valid read")
    }

    /// Seal `n` sample reads, one second apart from `at`.
    fn reads(&mut self, n: u64, at: u64) -> Vec<SignedEntry> {
        (0..n)
            .map(|i| {
                let seq = self.w.len();
                self.read(crate::sample::sample_read(seq), at + i * 1000)
            })
            .collect()
    }

    /// The node's checkpoint of its log as it stands.
    fn checkpoint(&self) -> SignedCheckpoint {
        self.w.checkpoint(UnixMillis(9_000))
    }

    /// An access by a person on the node, at `at`.
    fn access(&mut self, at: u64) -> SignedEntry {
        self.w
            .append_access(access_record("ofc.diaz"), UnixMillis(at), TimeSource::Ntp)
            .expect("valid access")
    }
}

fn access_record(user: &str) -> AccessRecord {
    AccessRecord {
        user: user.into(),
        agency: "CA0000001".into(),
        action: AccessAction::Search,
        purpose: Some("stolen-vehicle".into()),
        case: Some("2026-0001".into()),
        query: "plate=7ABC123 mode=exact".into(),
        results: 1,
        outcome: AccessOutcome::Allowed,
        source: "127.0.0.1".into(),
    }
}

/// Verify `log` as the ingest path does and commit it, with `checkpoint`.
fn ingest_with(
    store: &dyn HubStorage,
    node: &Node,
    log: Vec<SignedEntry>,
    checkpoint: Option<SignedCheckpoint>,
) -> WriteResult {
    let e = Entries::from_log(log, checkpoint).expect("consecutive entries");
    let v = verify_batch(&node.key, &node.device, Validity::ALWAYS, e).expect("verifies");
    commit1(
        store,
        WriteOp::Ingest {
            device: node.device.clone(),
            entries: v.entries,
            checkpoint: v.checkpoint,
            new_key: v.new_key,
            at: UnixMillis(1),
        },
    )
}

/// Ingest `log`, the end of the node's log, with its checkpoint.
fn ingest(store: &dyn HubStorage, node: &Node, log: Vec<SignedEntry>) -> Ingested {
    ok(ingest_with(store, node, log, Some(node.checkpoint())))
}

fn commit1(store: &dyn HubStorage, op: WriteOp) -> WriteResult {
    store.commit(vec![op]).expect("commit").remove(0)
}

fn ok(r: WriteResult) -> Ingested {
    match r {
        WriteResult::Ingested(Ok(i)) => i,
        other => panic!("expected the entries placed, got {other:?}"),
    }
}

fn refused(r: WriteResult) -> RefusalCode {
    match r {
        WriteResult::Ingested(Err(refusal)) => refusal.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn contact(store: &dyn HubStorage, device: &DeviceId, serial: &str, size: u64, at: u64) {
    commit1(
        store,
        WriteOp::Contact {
            device: device.clone(),
            serial: serial.into(),
            cert_der: serial.as_bytes().to_vec(),
            reported_size: size,
            at: UnixMillis(at),
        },
    );
}

fn stored(store: &dyn HubStorage, device: &DeviceId) -> Vec<SignedEntry> {
    store
        .entries(device, 0, 100_000)
        .expect("entries")
        .iter()
        .map(|b| SignedEntry::decode(b).expect("canonical entry"))
        .collect()
}

fn node_record(store: &dyn HubStorage, device: &DeviceId) -> NodeRecord {
    store.node(device).expect("node").expect("known node")
}

/// Bytes standing for an image: `kind` (crop, overview) of read `i`.
fn image_bytes(kind: &str, i: u64) -> Vec<u8> {
    format!("{kind}-{i}").into_bytes()
}

/// A read of `plate` at `location` whose images are [`image_bytes`] of `i`.
fn read_of(i: u64, plate: &str, location: Location) -> ReadContent {
    ReadContent {
        plate: plate.into(),
        char_confidence: vec![9500; plate.len()],
        location,
        crop_hash: sha256(&image_bytes("crop", i)),
        overview_hash: sha256(&image_bytes("overview", i)),
        ..crate::sample::sample_read(i)
    }
}

fn site() -> Location {
    Location::Site {
        site_id: "site-1".into(),
    }
}

fn gps(lat_e7: i32, lon_e7: i32) -> Location {
    Location::Gps {
        lat_e7,
        lon_e7,
        accuracy_cm: 300,
    }
}

const ALL_TIME: (UnixMillis, UnixMillis) = (UnixMillis(0), UnixMillis(u64::MAX));

/// The hub's own log (access records and purge records).
fn hub_log() -> LogWriter {
    LogWriter::new(
        SecretKey::from_bytes(&[99; 32]),
        DeviceId::new("hub").expect("valid"),
    )
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn ingest_new_key(
    store: &dyn HubStorage,
    n: &Node,
    log: Vec<SignedEntry>,
    serial: &str,
) -> WriteResult {
    let e = Entries::from_log(log, Some(n.checkpoint())).expect("consecutive");
    let mut v = verify_batch(&n.key, &n.device, Validity::ALWAYS, e).expect("verifies");
    v.new_key = v.entries.first().map(|f| alpr_shared::sync::NewKey {
        serial: serial.into(),
        first_seq: f.seq(),
    });
    commit1(
        store,
        WriteOp::Ingest {
            device: n.device.clone(),
            entries: v.entries,
            checkpoint: v.checkpoint,
            new_key: v.new_key,
            at: UnixMillis(1),
        },
    )
}

// ------------------------------------------------------ shared documents

fn user(name: &str, title: &str) -> crate::store::UserRecord {
    crate::store::UserRecord {
        username: name.into(),
        agency: "CA0000001".into(),
        title: title.into(),
        role: crate::store::Role::Officer,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        training_completed: UnixMillis(1_000),
        training_expires: UnixMillis(u64::MAX / 2),
        disabled: false,
        created: UnixMillis(1_000),
        updated: UnixMillis(1_000),
    }
}

/// San Francisco, in degrees × 10⁷.
const SF: (i32, i32) = (377_749_000, -1_224_194_000);
