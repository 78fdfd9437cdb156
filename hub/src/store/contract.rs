//! The store's contract: what every [`HubStorage`] does, as a user of the
//! hub would notice it, written once over `&dyn HubStorage` and run on
//! each backend by [`contract_tests!`]: redb in a temporary folder, and
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

mod floors;
mod logins;
use floors::*;
use logins::*;

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

/// One `#[test]` per contract test and backend: `contract_tests!(redb =>
/// open_redb, postgres => open_postgres)` makes `redb::ingest_…`,
/// `postgres::ingest_…`, ….
macro_rules! contract_tests {
    ($($backend:ident => $open:expr),+ $(,)?) => {$(
        mod $backend {
            contract_tests!(@each $open;
                ingest_is_idempotent_and_refuses_forks_and_gaps,
                a_checkpoint_is_kept_when_it_extends_and_a_conflicting_one_is_refused,
                every_certificate_is_kept_and_a_new_one_takes_effect_on_the_chain,
                a_contact_updates_the_node_and_nodes_lists_every_node,
                images_are_stored_only_when_an_entry_names_them,
                missing_images_are_listed_in_log_order_within_the_limit,
                refusals_are_kept_newest_last_and_counted_on_the_node,
                unauthenticated_refusals_are_pruned_by_age_and_count_and_spare_nodes,
                a_signed_loss_moves_the_chain_past_the_lost_entries_only_from_where_it_stands,
                the_earliest_revocation_wins,
                every_policy_version_is_kept_and_a_stale_one_fails_the_whole_commit,
                node_policies_and_hotlists_are_what_each_node_last_said,
                users_are_created_replaced_and_listed,
                every_signing_key_of_a_user_is_kept_once,
                a_session_is_kept_under_its_hash_until_ended,
                the_holds_and_local_entries_documents_are_kept,
                the_hub_access_log_grows_only_by_its_next_entry,
                hub_alerts_are_numbered_from_one_and_listed_newest_first,
                hub_dispositions_keep_each_alerts_order,
                alerts_and_their_stages_are_indexed_at_ingest,
                node_accesses_are_listed_in_time_order,
                reads_are_found_by_plate_and_time,
                plates_get_ordinals_in_the_order_first_seen,
                a_canvass_finds_placed_reads_and_counts_the_unplaced,
                a_purge_deletes_content_index_rows_and_images_and_records_itself,
                a_purge_that_does_not_extend_the_hub_log_changes_nothing,
                reads_are_counted_per_hour_of_capture_once,
                generations_keep_the_last_bytes_and_every_record,
                entries_and_entries_at_return_the_stored_bytes,
                failed_logins_are_counted_per_key_since_a_time_and_pruned,
                a_lock_keeps_the_latest_end_forgets_failures_and_ended_locks_go,
                a_learned_generation_number_is_kept_per_list_and_only_raised,
            );
        }
    )+};
    (@each $open:expr; $($test:ident),+ $(,)?) => {$(
        #[test]
        fn $test() {
            let opened = $open();
            super::$test(&*opened.store);
        }
    )+};
}

contract_tests!(redb => super::open_redb, postgres => super::open_postgres);

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

// ------------------------------------------------------------ the chain

fn ingest_is_idempotent_and_refuses_forks_and_gaps(store: &dyn HubStorage) {
    let mut n = Node::new("p-1", 3);
    let first = n.reads(100, 5_000);
    let i = ingest(store, &n, first.clone());
    assert_eq!(
        (i.appended, i.duplicates, i.progress.next_seq),
        (100, 0, 100)
    );
    // The same upload again: nothing appended, all counted as duplicates.
    let i = ingest(store, &n, first.clone());
    assert_eq!(
        (i.appended, i.duplicates, i.progress.next_seq),
        (0, 100, 100)
    );
    // An overlapping upload appends only what is new.
    let more = n.reads(5, 200_000);
    let mut overlap = first[95..].to_vec();
    overlap.extend(more);
    let i = ingest(store, &n, overlap);
    assert_eq!((i.appended, i.duplicates, i.progress.next_seq), (5, 5, 105));
    // A gap: entries 155.. while 105 is due.
    let _unsent = n.reads(50, 300_000);
    let later = n.reads(10, 400_000);
    assert_eq!(
        refused(ingest_with(store, &n, later, None)),
        RefusalCode::Gap
    );
    // A fork: another history from 0 under the same key.
    let mut fork = Node::new("p-1", 3);
    let other = fork.reads(5, 6_000);
    assert_eq!(
        refused(ingest_with(store, &fork, other, Some(fork.checkpoint()))),
        RefusalCode::Fork
    );
    let rec = node_record(store, &n.device);
    assert_eq!(rec.next_seq, 105);
    assert_eq!(rec.head, stored(store, &n.device)[104].hash());
    assert_eq!(rec.duplicates, 105);
    let held = stored(store, &n.device);
    assert_eq!(held.len(), 105, "refused uploads stored nothing");
    assert!(held.iter().enumerate().all(|(i, e)| e.seq() == i as u64));
    assert_eq!(
        held[..100],
        first[..],
        "the stored entries are the signed ones"
    );
    let hits = store
        .reads_of_plate(&crate::sample::sample_read(7).plate, ALL_TIME.0, ALL_TIME.1)
        .expect("index");
    assert!(hits.contains(&(n.device.clone(), 7)), "{hits:?}");
}

fn a_checkpoint_is_kept_when_it_extends_and_a_conflicting_one_is_refused(store: &dyn HubStorage) {
    let mut n = Node::new("p-c", 4);
    assert_eq!(store.checkpoint(&n.device).expect("read"), None);
    let first = n.reads(5, 5_000);
    let cp5 = n.checkpoint();
    ingest(store, &n, first.clone());
    assert_eq!(
        store.checkpoint(&n.device).expect("read"),
        Some(cp5.clone())
    );
    let second = n.reads(3, 10_000);
    ingest(store, &n, second);
    let cp8 = store.checkpoint(&n.device).expect("read").expect("kept");
    assert_eq!(cp8.checkpoint.size, 8);
    // A replay of the first upload with its own (older) checkpoint: fine,
    // and the newer checkpoint stays.
    let i = ok(ingest_with(store, &n, first.clone(), Some(cp5)));
    assert_eq!(i.appended, 0);
    assert_eq!(
        store.checkpoint(&n.device).expect("read"),
        Some(cp8.clone())
    );
    // One naming another head at the size the hub holds, sent with a
    // replay of entries it holds: a second history.
    let two_faced = alpr_shared::wire::sign_checkpoint(
        &SecretKey::from_bytes(&[4; 32]),
        n.device.clone(),
        8,
        Hash32([7; 32]),
        UnixMillis(2),
    );
    let replay = Entries::from_log(first[..3].to_vec(), None).expect("consecutive");
    let v = verify_batch(&n.key, &n.device, Validity::ALWAYS, replay).expect("verifies");
    let r = commit1(
        store,
        WriteOp::Ingest {
            device: n.device.clone(),
            entries: v.entries,
            checkpoint: Some(two_faced),
            new_key: None,
            at: UnixMillis(2),
        },
    );
    assert_eq!(refused(r), RefusalCode::Fork);
    assert_eq!(store.checkpoint(&n.device).expect("read"), Some(cp8));
    assert_eq!(node_record(store, &n.device).next_seq, 8);
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

fn every_certificate_is_kept_and_a_new_one_takes_effect_on_the_chain(store: &dyn HubStorage) {
    let mut n = Node::new("p-2", 5);
    assert!(store.certificates(&n.device).expect("read").is_empty());
    assert_eq!(store.certificate(&n.device).expect("read"), None);
    contact(store, &n.device, "aa", 0, 10);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(certs.len(), 1);
    assert_eq!(
        (
            certs[0].serial.as_str(),
            certs[0].der.as_slice(),
            certs[0].first_seen,
            certs[0].effective_from
        ),
        ("aa", b"aa".as_slice(), UnixMillis(10), None),
        "a new certificate vouches for nothing yet"
    );
    let log = n.reads(5, 5_000);
    ok(ingest_new_key(store, &n, log, "aa"));
    // A second certificate that only says hello replaces nothing.
    contact(store, &n.device, "bb", 5, 20);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(
        certs
            .iter()
            .map(|c| (c.serial.as_str(), c.effective_from))
            .collect::<Vec<_>>(),
        vec![("aa", Some(0)), ("bb", None)]
    );
    assert_eq!(
        store.certificate(&n.device).expect("read"),
        Some(b"aa".to_vec())
    );
    // Its first entry placed on the chain makes it effective there.
    let new = SecretKey::from_bytes(&[6; 32]);
    let mut renewed = Node {
        key: new.public(),
        w: LogWriter::resume(new, n.device.clone(), n.w.len(), n.w.head()),
        device: n.device.clone(),
    };
    let log = renewed.reads(3, 10_000);
    let i = ok(ingest_new_key(store, &renewed, log, "bb"));
    assert_eq!(i.appended, 3);
    let certs = store.certificates(&n.device).expect("read");
    assert_eq!(
        certs
            .iter()
            .map(|c| (c.serial.as_str(), c.effective_from))
            .collect::<Vec<_>>(),
        vec![("aa", Some(0)), ("bb", Some(5))]
    );
    assert_eq!(
        store.certificate(&n.device).expect("read"),
        Some(b"bb".to_vec())
    );
    // A certificate the node never presented is refused, and places nothing.
    let log = renewed.reads(2, 20_000);
    let r = ingest_new_key(store, &renewed, log, "cc");
    assert_eq!(refused(r), RefusalCode::UnknownNode);
    assert_eq!(node_record(store, &n.device).next_seq, 8);
}

fn a_contact_updates_the_node_and_nodes_lists_every_node(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-a").expect("valid");
    let b = DeviceId::new("car-b").expect("valid");
    assert_eq!(store.node(&a).expect("read"), None);
    contact(store, &a, "0a", 40, 1_000);
    contact(store, &b, "0b", 7, 2_000);
    // A hello delivered late does not move the last contact back.
    contact(store, &a, "0a", 50, 500);
    let rec = node_record(store, &a);
    assert_eq!(rec.serial, "0a");
    assert_eq!(rec.reported_size, 50);
    assert_eq!(rec.last_contact, UnixMillis(1_000));
    assert_eq!(rec.backlog(), 50, "the node has 50 entries the hub lacks");
    let nodes = store.nodes().expect("nodes");
    assert_eq!(
        nodes.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        vec!["car-b", "pole-a"],
        "by name"
    );
    assert_ne!(nodes[0].1.id, nodes[1].1.id, "each node has its own id");
}

// --------------------------------------------------------------- images

fn images_are_stored_only_when_an_entry_names_them(store: &dyn HubStorage) {
    let mut n = Node::new("pole-i", 7);
    let log = vec![n.read(read_of(0, "IMG0001", site()), 5_000)];
    ingest(store, &n, log);
    let crop = image_bytes("crop", 0);
    let image = |seq: u64, bytes: &[u8]| {
        commit1(
            store,
            WriteOp::Image {
                device: n.device.clone(),
                seq,
                hash: sha256(bytes),
                bytes: bytes.to_vec(),
            },
        )
    };
    // Bytes no entry names are not kept.
    let stray = b"not named by any read".to_vec();
    assert_eq!(image(0, &stray), WriteResult::Image(false));
    assert!(!store.has_image(&sha256(&stray)).expect("read"));
    // Nor a named image offered under the wrong entry.
    assert_eq!(image(1, &crop), WriteResult::Image(false));
    assert!(!store.has_image(&sha256(&crop)).expect("read"));
    assert_eq!(image(0, &crop), WriteResult::Image(true));
    assert!(store.has_image(&sha256(&crop)).expect("read"));
    assert_eq!(
        store.image(&sha256(&crop)).expect("read"),
        Some(crop.clone())
    );
    // Offered again: still named, stored once.
    assert_eq!(image(0, &crop), WriteResult::Image(true));
    assert_eq!(node_record(store, &n.device).images, 1);
    assert_eq!(store.image(&sha256(&stray)).expect("read"), None);
}

fn missing_images_are_listed_in_log_order_within_the_limit(store: &dyn HubStorage) {
    let mut n = Node::new("pole-m", 8);
    let mut log: Vec<SignedEntry> = (0..3)
        .map(|i| n.read(read_of(i, &format!("MIS{i:04}"), site()), 5_000 + i))
        .collect();
    // A read with no images names nothing to fetch.
    let none = sha256(&[]);
    log.push(n.read(
        ReadContent {
            crop_hash: none,
            overview_hash: none,
            ..read_of(3, "MIS0003", site())
        },
        5_003,
    ));
    ingest(store, &n, log);
    let all: Vec<(u64, Hash32)> = (0..3)
        .flat_map(|i| {
            [
                (i, sha256(&image_bytes("crop", i))),
                (i, sha256(&image_bytes("overview", i))),
            ]
        })
        .collect();
    let m = store.missing_images(&n.device, 0, 4, 1000).expect("scan");
    assert_eq!(m.images, all);
    assert_eq!(m.scanned_to, 4);
    commit1(
        store,
        WriteOp::Image {
            device: n.device.clone(),
            seq: 0,
            hash: all[0].1,
            bytes: image_bytes("crop", 0),
        },
    );
    let m = store.missing_images(&n.device, 0, 4, 1000).expect("scan");
    assert_eq!(m.images, all[1..]);
    // A small limit stops early and says where; going on from there
    // finds the rest.
    let first = store.missing_images(&n.device, 0, 4, 3).expect("scan");
    assert!(
        !first.images.is_empty() && first.images.len() <= 3,
        "{first:?}"
    );
    assert!(first.scanned_to < 4);
    let rest = store
        .missing_images(&n.device, first.scanned_to, 4, 1000)
        .expect("scan");
    let mut both = first.images.clone();
    both.extend(rest.images);
    assert_eq!(both, all[1..]);
    // Only the asked range.
    let m = store.missing_images(&n.device, 2, 3, 1000).expect("scan");
    assert_eq!(m.images, all[4..]);
}

// ------------------------------------------------------------- refusals

fn refusals_are_kept_newest_last_and_counted_on_the_node(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-r").expect("valid");
    contact(store, &a, "01", 0, 1);
    let refusal = |at: u64, device: Option<&str>| RefusalRecord {
        at: UnixMillis(at),
        device: device.map(str::to_owned),
        peer: "127.0.0.1:4433".into(),
        code: "bad-signature".into(),
        seq: Some(at),
        detail: format!("refusal at {at}"),
    };
    let all: Vec<RefusalRecord> = (1..=5)
        .map(|i| refusal(i * 10, (i % 2 == 1).then_some("pole-r")))
        .collect();
    store
        .commit(all.iter().cloned().map(WriteOp::Refusal).collect())
        .expect("commit");
    assert_eq!(store.refusals(100).expect("read"), all);
    assert_eq!(
        store.refusals(2).expect("read"),
        all[3..],
        "the newest, newest last"
    );
    assert_eq!(node_record(store, &a).refusals, 3);
}

fn unauthenticated_refusals_are_pruned_by_age_and_count_and_spare_nodes(store: &dyn HubStorage) {
    let node = RefusalRecord {
        at: UnixMillis(10),
        device: Some("stolen-1".into()),
        peer: "127.0.0.1:1".into(),
        code: "revoked".into(),
        seq: None,
        detail: "revoked".into(),
    };
    store
        .commit(vec![WriteOp::Refusal(node.clone())])
        .expect("commit");
    let row = |at: u64| WriteOp::SourceRefusal {
        record: SourceRefusalRecord {
            at: UnixMillis(at),
            source: format!("10.0.0.{}", at % 250),
            code: "unknown-node".into(),
            count: 3,
            detail: "TLS handshake failed".into(),
        },
        keep_after: UnixMillis(at.saturating_sub(100)),
        max_rows: 20,
    };
    store
        .commit((1_000..1_100).map(row).collect())
        .expect("commit");
    let kept = store.source_refusals(1_000).expect("read");
    assert_eq!(kept.len(), 20, "at most max_rows are kept");
    assert_eq!(
        kept.iter().map(|r| r.at.0).collect::<Vec<_>>(),
        (1_080..1_100).collect::<Vec<_>>(),
        "the newest, newest last"
    );
    assert_eq!(kept[19].source, "10.0.0.99");
    assert_eq!(store.source_refusals(5).expect("read"), kept[15..]);
    // Far later: everything older than the retention goes.
    store.commit(vec![row(100_000)]).expect("commit");
    assert_eq!(store.source_refusals(1_000).expect("read").len(), 1);
    assert_eq!(store.refusals(50).expect("read"), vec![node]);
}

// ------------------------------------------------------------ loss, revoke

fn a_signed_loss_moves_the_chain_past_the_lost_entries_only_from_where_it_stands(
    store: &dyn HubStorage,
) {
    let mut n = Node::new("pole-s", 8);
    let log = n.reads(3, 5_000);
    ingest(store, &n, log);
    let skip = |first: u64, last: u64| {
        commit1(
            store,
            WriteOp::Skip {
                device: n.device.clone(),
                first,
                last,
                head: Hash32([5; 32]),
                at: UnixMillis(2),
            },
        )
    };
    assert_eq!(
        refused(skip(5, 5)),
        RefusalCode::Gap,
        "the chain stands at 3"
    );
    assert_eq!(ok(skip(3, 4)).progress.next_seq, 5);
    let rec = node_record(store, &n.device);
    assert_eq!((rec.next_seq, rec.head), (5, Hash32([5; 32])));
    // A replay of the same statement changes nothing.
    assert_eq!(ok(skip(3, 4)).progress.next_seq, 5);
    assert_eq!(store.entries(&n.device, 0, 100).expect("read").len(), 3);
}

fn the_earliest_revocation_wins(store: &dyn HubStorage) {
    let revoke = |serial: &str, at: u64| {
        WriteOp::Revoke(alpr_shared::cert::Revocation {
            serial: serial.into(),
            effective_at: UnixMillis(at),
            reason: format!("lost at {at}"),
        })
    };
    assert!(store.revocations().expect("read").is_empty());
    store.commit(vec![revoke("aa", 50)]).expect("commit");
    store.commit(vec![revoke("aa", 80)]).expect("commit");
    let aa = |store: &dyn HubStorage| {
        store
            .revocations()
            .expect("read")
            .into_iter()
            .find(|r| r.serial == "aa")
            .map(|r| r.effective_at)
    };
    assert_eq!(
        aa(store),
        Some(UnixMillis(50)),
        "a repeat never pushes it later"
    );
    store
        .commit(vec![revoke("aa", 30), revoke("bb", 10)])
        .expect("commit");
    assert_eq!(aa(store), Some(UnixMillis(30)));
    let mut serials: Vec<String> = store
        .revocations()
        .expect("read")
        .into_iter()
        .map(|r| r.serial)
        .collect();
    serials.sort();
    assert_eq!(serials, vec!["aa", "bb"]);
}

// ------------------------------------------------------ shared documents

fn user(name: &str, title: &str) -> crate::users::UserRecord {
    crate::users::UserRecord {
        username: name.into(),
        agency: "CA0000001".into(),
        title: title.into(),
        role: crate::users::Role::Officer,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        training_completed: UnixMillis(1_000),
        training_expires: UnixMillis(u64::MAX / 2),
        disabled: false,
        created: UnixMillis(1_000),
        updated: UnixMillis(1_000),
    }
}

fn every_policy_version_is_kept_and_a_stale_one_fails_the_whole_commit(store: &dyn HubStorage) {
    assert_eq!(store.policy().expect("read"), None);
    assert_eq!(store.policy_seed().expect("read"), None);
    let policy = |version: u64, seed: Option<Hash32>| WriteOp::Policy {
        version,
        encoded: format!("policy v{version}").into_bytes(),
        seed,
    };
    store
        .commit(vec![policy(1, Some(Hash32([1; 32])))])
        .expect("commit");
    store.commit(vec![policy(2, None)]).expect("commit");
    assert_eq!(store.policy().expect("read"), Some(b"policy v2".to_vec()));
    assert_eq!(
        store.policy_seed().expect("read"),
        Some(Hash32([1; 32])),
        "a version made by hand keeps the configuration's seed"
    );
    // Not newer: the commit fails, and nothing else in it is written.
    let r = store.commit(vec![
        WriteOp::User(user("ofc.lee", "Officer")),
        policy(2, None),
    ]);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(store.user("ofc.lee").expect("read"), None);
    assert!(store.commit(vec![policy(1, None)]).is_err());
    assert_eq!(store.policy().expect("read"), Some(b"policy v2".to_vec()));
    store
        .commit(vec![policy(7, Some(Hash32([7; 32])))])
        .expect("commit");
    assert_eq!(store.policy().expect("read"), Some(b"policy v7".to_vec()));
    assert_eq!(store.policy_seed().expect("read"), Some(Hash32([7; 32])));
}

fn node_policies_and_hotlists_are_what_each_node_last_said(store: &dyn HubStorage) {
    let a = DeviceId::new("pole-a").expect("valid");
    let b = DeviceId::new("car-b").expect("valid");
    contact(store, &a, "0a", 0, 1);
    contact(store, &b, "0b", 0, 1);
    store
        .commit(vec![
            WriteOp::NodePolicy {
                device: a.clone(),
                version: 3,
            },
            WriteOp::NodePolicy {
                device: b.clone(),
                version: 1,
            },
            WriteOp::NodeHotlists {
                device: a.clone(),
                held: vec![("ncic".into(), 4)],
            },
        ])
        .expect("commit");
    store
        .commit(vec![
            WriteOp::NodePolicy {
                device: a.clone(),
                version: 4,
            },
            WriteOp::NodeHotlists {
                device: a.clone(),
                held: vec![("ncic".into(), 5), ("dmv".into(), 2)],
            },
            WriteOp::NodeHotlists {
                device: b.clone(),
                held: vec![],
            },
        ])
        .expect("commit");
    assert_eq!(
        sorted(store.node_policies().expect("read")),
        vec![(b.clone(), 1), (a.clone(), 4)]
    );
    assert_eq!(
        sorted(store.node_hotlists().expect("read")),
        vec![
            (b.clone(), vec![]),
            (a, vec![("ncic".to_owned(), 5), ("dmv".to_owned(), 2)])
        ]
    );
    // A node may say anything: an absurd version is kept (PostgreSQL:
    // up to its column's range) and never fails the commit it rides in.
    let applied = store
        .commit(vec![
            WriteOp::NodePolicy {
                device: b.clone(),
                version: u64::MAX,
            },
            WriteOp::NodeHotlists {
                device: b.clone(),
                held: vec![("ncic".into(), u64::MAX)],
            },
        ])
        .expect("an out-of-range version does not fail the commit");
    assert_eq!(applied.len(), 2);
    let held = store.node_policies().expect("read");
    assert!(
        held.iter().any(|(d, v)| *d == b && *v >= i64::MAX as u64),
        "{held:?}"
    );
}

fn users_are_created_replaced_and_listed(store: &dyn HubStorage) {
    assert_eq!(store.user("ofc.lee").expect("read"), None);
    store
        .commit(vec![
            WriteOp::User(user("ofc.lee", "Officer")),
            WriteOp::User(user("adm.kim", "Administrator")),
        ])
        .expect("commit");
    let mut changed = user("ofc.lee", "Sergeant");
    changed.disabled = true;
    store
        .commit(vec![WriteOp::User(changed.clone())])
        .expect("commit");
    assert_eq!(store.user("ofc.lee").expect("read"), Some(changed.clone()));
    assert_eq!(
        store.users().expect("read"),
        vec![user("adm.kim", "Administrator"), changed],
        "by username"
    );
}

fn every_signing_key_of_a_user_is_kept_once(store: &dyn HubStorage) {
    use alpr_shared::control::officer::OfficerKey;
    let key = |seed: u8, since: u64| crate::users::UserKey {
        key: OfficerKey::derive("correct horse", [seed; 16], 64, 1)
            .expect("derive")
            .0,
        since: UnixMillis(since),
    };
    assert!(store.user_keys().expect("read").is_empty());
    let uk = |name: &str, key: crate::users::UserKey| WriteOp::UserKey {
        username: name.into(),
        key,
    };
    store
        .commit(vec![
            uk("ofc.lee", key(1, 1_000)),
            uk("adm.kim", key(2, 1_000)),
        ])
        .expect("commit");
    // A password change adds a key; the same key again changes nothing.
    store
        .commit(vec![
            uk("ofc.lee", key(3, 2_000)),
            uk("ofc.lee", key(1, 9_000)),
        ])
        .expect("commit");
    let mut kept = store.user_keys().expect("read");
    kept.sort_by_key(|(name, k)| (name.clone(), k.since));
    assert_eq!(
        kept,
        vec![
            ("adm.kim".to_string(), key(2, 1_000)),
            ("ofc.lee".to_string(), key(1, 1_000)),
            ("ofc.lee".to_string(), key(3, 2_000)),
        ]
    );
}

fn a_session_is_kept_under_its_hash_until_ended(store: &dyn HubStorage) {
    let s = |name: &str| crate::users::SessionRecord {
        username: name.into(),
        created: UnixMillis(1_000),
        expires: UnixMillis(9_000),
        source: "127.0.0.1".into(),
    };
    let (one, two) = ([1u8; 32], [2u8; 32]);
    store
        .commit(vec![
            WriteOp::Session {
                hash: one,
                session: Some(s("ofc.lee")),
            },
            WriteOp::Session {
                hash: two,
                session: Some(s("adm.kim")),
            },
        ])
        .expect("commit");
    assert_eq!(store.session(&one).expect("read"), Some(s("ofc.lee")));
    store
        .commit(vec![WriteOp::Session {
            hash: one,
            session: None,
        }])
        .expect("commit");
    assert_eq!(store.session(&one).expect("read"), None, "logged out");
    assert_eq!(store.session(&two).expect("read"), Some(s("adm.kim")));
    assert_eq!(store.session(&[3; 32]).expect("read"), None);
}

fn the_holds_and_local_entries_documents_are_kept(store: &dyn HubStorage) {
    use alpr_shared::control::holds::{Hold, HoldScope};
    use alpr_shared::control::holds_doc::HoldsDoc;
    use alpr_shared::hotlist::local::{EntryFields, LocalEntriesDoc};
    assert_eq!(store.holds_doc().expect("read"), None);
    assert_eq!(store.local_entries_doc().expect("read"), None);
    let hold = |id: &str| Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "homicide investigation".into(),
        placed_by: "det.lee".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis(1_000),
        placed_on: "hub".into(),
        scope: HoldScope {
            plates: vec!["7ABC123".into()],
            ..HoldScope::default()
        },
        released: None,
    };
    let mut holds = HoldsDoc::new();
    holds.add(hold("h-1")).expect("add");
    store
        .commit(vec![WriteOp::Holds(holds.save())])
        .expect("commit");
    holds.add(hold("h-2")).expect("add");
    store
        .commit(vec![WriteOp::Holds(holds.save())])
        .expect("commit");
    let saved = HoldsDoc::load(&store.holds_doc().expect("read").expect("saved")).expect("loads");
    assert_eq!(
        sorted(saved.holds().into_iter().map(|h| h.id).collect()),
        vec!["h-1", "h-2"]
    );

    let rules = alpr_shared::control::HotlistPolicy::default();
    let fields = |plate: &str| EntryFields {
        plate: Some(plate.into()),
        reason: Some("stolen from driveway".into()),
        ..EntryFields::default()
    };
    let now = UnixMillis(1_000);
    let mut local = LocalEntriesDoc::new();
    local
        .add(
            "e-1",
            fields("7ABC123"),
            "ofc.lee",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
    store
        .commit(vec![WriteOp::LocalEntries(local.save())])
        .expect("commit");
    local
        .add(
            "e-2",
            fields("8XYZ999"),
            "ofc.lee",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
    store
        .commit(vec![WriteOp::LocalEntries(local.save())])
        .expect("commit");
    let saved = LocalEntriesDoc::load(&store.local_entries_doc().expect("read").expect("saved"))
        .expect("loads");
    assert_eq!(
        sorted(saved.entries().into_iter().map(|e| e.plate).collect()),
        vec!["7ABC123", "8XYZ999"]
    );
}

// ---------------------------------------------------- the hub's own log

fn the_hub_access_log_grows_only_by_its_next_entry(store: &dyn HubStorage) {
    assert_eq!(store.hub_access_head().expect("read"), (0, Hash32::ZERO));
    let mut w = hub_log();
    let access = |w: &mut LogWriter, user: &str| {
        w.append_access(
            access_record(user),
            UnixMillis(1_000),
            TimeSource::LocalClock,
        )
        .expect("valid")
    };
    let a = access(&mut w, "a");
    let b = access(&mut w, "b");
    store
        .commit(vec![WriteOp::HubAccess(vec![a.clone(), b.clone()])])
        .expect("commit");
    assert_eq!(store.hub_access_head().expect("read"), (2, b.hash()));
    // The same entry again, or another log's entry 2: refused, nothing
    // changes.
    assert!(store
        .commit(vec![WriteOp::HubAccess(vec![b.clone()])])
        .is_err());
    let mut other = hub_log();
    access(&mut other, "x");
    access(&mut other, "y");
    let stranger = access(&mut other, "z");
    assert!(store
        .commit(vec![WriteOp::HubAccess(vec![stranger])])
        .is_err());
    assert_eq!(store.hub_access_head().expect("read"), (2, b.hash()));
    let c = access(&mut w, "c");
    store
        .commit(vec![WriteOp::HubAccess(vec![c.clone()])])
        .expect("commit");
    assert_eq!(store.hub_access_head().expect("read"), (3, c.hash()));
    assert_eq!(
        store.hub_access_entries(0, 10).expect("read"),
        vec![a.encode(), b.encode(), c.encode()]
    );
    assert_eq!(
        store.hub_access_entries(1, 1).expect("read"),
        vec![b.encode()]
    );
    assert!(store.hub_access_entries(3, 10).expect("read").is_empty());
}

fn hub_alerts_are_numbered_from_one_and_listed_newest_first(store: &dyn HubStorage) {
    assert!(store.hub_alerts(10).expect("read").is_empty());
    let node = DeviceId::new("pole-h").expect("valid");
    let alert = |seq: u64| HubAlert {
        node: node.clone(),
        at: UnixMillis(1_000 + seq),
        record: AlertRecord {
            past_match: true,
            ..crate::alerts::tests::alert(seq, "7ABC123", false)
        },
    };
    store
        .commit(vec![WriteOp::HubAlerts(vec![alert(4), alert(9)])])
        .expect("commit");
    store
        .commit(vec![WriteOp::HubAlerts(vec![alert(12)])])
        .expect("commit");
    assert_eq!(
        store.hub_alerts(10).expect("read"),
        vec![(3, alert(12)), (2, alert(9)), (1, alert(4))]
    );
    assert_eq!(store.hub_alerts(1).expect("read"), vec![(3, alert(12))]);
}

fn hub_dispositions_keep_each_alerts_order(store: &dyn HubStorage) {
    let d = |stage: Stage, seq: u64| HubDisposition {
        at: UnixMillis(1_000 + seq),
        stage,
        user: "disp.ray".into(),
        agency: "CA0000001".into(),
        note: format!("stage {seq}"),
        access_seq: seq,
    };
    let one = [
        d(Stage::Read(ReadCheck::Correct), 1),
        d(Stage::Status(StatusCheck::ConfirmedActive), 3),
        d(Stage::Action(ActionTaken::Stop), 4),
    ];
    let other = d(Stage::Read(ReadCheck::Misread), 2);
    let op = |alert: &str, disposition: &HubDisposition| WriteOp::HubDisposition {
        alert: alert.into(),
        disposition: disposition.clone(),
    };
    store
        .commit(vec![op("car-9#4", &one[0]), op("hub#1", &other)])
        .expect("commit");
    store.commit(vec![op("car-9#4", &one[1])]).expect("commit");
    store.commit(vec![op("car-9#4", &one[2])]).expect("commit");
    let of_one: Vec<HubDisposition> = store
        .hub_dispositions(Some("car-9#4"))
        .expect("read")
        .into_iter()
        .map(|(id, d)| {
            assert_eq!(id, "car-9#4");
            d
        })
        .collect();
    assert_eq!(of_one, one, "in the order recorded");
    assert_eq!(
        store.hub_dispositions(Some("hub#1")).expect("read"),
        vec![("hub#1".to_owned(), other.clone())]
    );
    assert!(store
        .hub_dispositions(Some("hub#2"))
        .expect("read")
        .is_empty());
    let all = store.hub_dispositions(None).expect("read");
    assert_eq!(all.len(), 4);
    let of_one_in_all: Vec<HubDisposition> = all
        .iter()
        .filter(|(id, _)| id == "car-9#4")
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(of_one_in_all, one, "each alert's stages in order");
}

fn alerts_and_their_stages_are_indexed_at_ingest(store: &dyn HubStorage) {
    let mut n = Node::new("car-9", 4);
    let read = n.read(read_of(0, "7ABC123", site()), 5_000);
    let stage = |w: &mut LogWriter, alert_seq: u64, stage: Stage| {
        w.append_disposition(
            DispositionRecord {
                alert_seq,
                stage,
                user: "ofc.diaz".into(),
                agency: "CA0190000".into(),
                note: "plate and car match".into(),
            },
            UnixMillis(7_000),
            TimeSource::Ntp,
        )
        .expect("valid")
    };
    let a =
        n.w.append_alert(
            crate::alerts::tests::alert(0, "7ABC123", false),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    let covert =
        n.w.append_alert(
            crate::alerts::tests::alert(0, "7ABC123", true),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    let s1 = stage(&mut n.w, a.seq(), Stage::Read(ReadCheck::Correct));
    ingest(store, &n, vec![read, a.clone(), covert.clone(), s1.clone()]);
    let rows = store.alerts(None, 100).expect("alerts");
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.covert)).collect::<Vec<_>>(),
        vec![(a.seq(), false), (covert.seq(), true)]
    );
    assert_eq!(rows[0].progress.read, Some(ReadCheck::Correct));
    assert_eq!(rows[0].dispositions, vec![s1.seq()]);
    // The next stages arrive in a later upload; a stage the rules refuse
    // (a second read check) stays in the log and is not counted.
    let s2 = stage(
        &mut n.w,
        a.seq(),
        Stage::Status(StatusCheck::ConfirmedActive),
    );
    let bad = stage(&mut n.w, a.seq(), Stage::Read(ReadCheck::Misread));
    let s3 = stage(&mut n.w, a.seq(), Stage::Action(ActionTaken::Stop));
    ingest(store, &n, vec![s2.clone(), bad, s3.clone()]);
    let row = store
        .alert(&n.device, a.seq())
        .expect("read")
        .expect("indexed");
    assert!(row.progress.closed());
    assert_eq!(row.progress.read, Some(ReadCheck::Correct));
    assert_eq!(row.dispositions, vec![s1.seq(), s2.seq(), s3.seq()]);
    assert_eq!(
        store.alert(&n.device, 0).expect("read"),
        None,
        "a read is no alert"
    );
    // Another node's alerts, and the per-node filter and limit.
    let mut m = Node::new("car-1", 5);
    let r = m.read(read_of(1, "8XYZ999", site()), 5_000);
    let other =
        m.w.append_alert(
            crate::alerts::tests::alert(0, "8XYZ999", false),
            UnixMillis(5_100),
            TimeSource::Ntp,
        )
        .expect("alert");
    ingest(store, &m, vec![r, other]);
    assert_eq!(store.alerts(None, 100).expect("read").len(), 3);
    let of_m = store.alerts(Some(&m.device), 100).expect("read");
    assert_eq!(
        of_m.iter()
            .map(|r| (r.node.as_str(), r.seq))
            .collect::<Vec<_>>(),
        vec![("car-1", 1)]
    );
    assert_eq!(store.alerts(Some(&n.device), 1).expect("read").len(), 1);
    let unknown = DeviceId::new("other").expect("valid");
    assert!(store.alerts(Some(&unknown), 10).expect("read").is_empty());
    assert_eq!(store.alert(&unknown, 1).expect("read"), None);
}

fn node_accesses_are_listed_in_time_order(store: &dyn HubStorage) {
    let mut a = Node::new("car-a", 11);
    let mut b = Node::new("car-b", 12);
    let mut log_a = a.reads(1, 50);
    log_a.extend([a.access(100), a.access(300)]);
    let log_b = vec![b.access(200), b.access(400)];
    ingest(store, &a, log_a);
    ingest(store, &b, log_b);
    let (ad, bd) = (a.device.clone(), b.device.clone());
    assert_eq!(
        store
            .node_accesses(UnixMillis(0), UnixMillis(1_000), 100)
            .expect("read"),
        vec![
            (ad.clone(), 1),
            (bd.clone(), 0),
            (ad.clone(), 2),
            (bd.clone(), 1)
        ]
    );
    assert_eq!(
        store
            .node_accesses(UnixMillis(150), UnixMillis(300), 100)
            .expect("read"),
        vec![(bd.clone(), 0), (ad.clone(), 2)],
        "the window is inclusive"
    );
    assert_eq!(
        store
            .node_accesses(UnixMillis(0), UnixMillis(1_000), 3)
            .expect("read"),
        vec![(ad.clone(), 1), (bd, 0), (ad, 2)]
    );
}

// --------------------------------------------------------------- search

fn reads_are_found_by_plate_and_time(store: &dyn HubStorage) {
    let mut a = Node::new("pole-a", 21);
    let mut b = Node::new("pole-b", 22);
    let log_a = vec![
        a.read(read_of(0, "7ABC123", site()), 10_000),
        a.read(read_of(1, "8XYZ999", site()), 20_000),
        a.read(read_of(2, "7ABC123", site()), 30_000),
    ];
    let log_b = vec![
        b.read(read_of(3, "7ABC123", site()), 25_000),
        b.read(read_of(4, "5QRS555", site()), 26_000),
    ];
    ingest(store, &a, log_a);
    ingest(store, &b, log_b);
    let (ad, bd) = (a.device.clone(), b.device.clone());
    assert_eq!(
        sorted(
            store
                .reads_of_plate("7ABC123", ALL_TIME.0, ALL_TIME.1)
                .expect("read")
        ),
        sorted(vec![(ad.clone(), 0), (ad.clone(), 2), (bd.clone(), 0)])
    );
    assert_eq!(
        sorted(
            store
                .reads_of_plate("7ABC123", UnixMillis(10_000), UnixMillis(25_000))
                .expect("read")
        ),
        sorted(vec![(ad.clone(), 0), (bd.clone(), 0)]),
        "the window is inclusive at both ends"
    );
    assert!(
        store
            .reads_of_plate("7ABC12", ALL_TIME.0, ALL_TIME.1)
            .expect("read")
            .is_empty(),
        "exact plates only"
    );
    assert_eq!(store.plate_count("7ABC123").expect("count"), 3);
    assert_eq!(store.plate_count("NOPE000").expect("count"), 0);

    let r = |d: &DeviceId, seq: u64, at: u64| IndexedRead {
        device: d.clone(),
        seq,
        captured_at: UnixMillis(at),
    };
    let plates = vec!["8XYZ999".to_owned(), "7ABC123".to_owned()];
    assert_eq!(
        store
            .reads_of_plates(&plates, ALL_TIME.0, ALL_TIME.1, 100)
            .expect("read"),
        vec![
            r(&ad, 1, 20_000),
            r(&ad, 0, 10_000),
            r(&bd, 0, 25_000),
            r(&ad, 2, 30_000)
        ],
        "plate by plate, each in time order"
    );
    assert_eq!(
        store
            .reads_of_plates(&plates, ALL_TIME.0, ALL_TIME.1, 2)
            .expect("read"),
        vec![r(&ad, 1, 20_000), r(&ad, 0, 10_000)]
    );
    assert_eq!(
        store
            .reads_of_plates(&plates, UnixMillis(21_000), UnixMillis(29_000), 100)
            .expect("read"),
        vec![r(&bd, 0, 25_000)]
    );
}

fn plates_get_ordinals_in_the_order_first_seen(store: &dyn HubStorage) {
    let mut a = Node::new("pole-o", 23);
    let first = vec![
        a.read(read_of(0, "PLATEB", site()), 10_000),
        a.read(read_of(1, "PLATEA", site()), 11_000),
        a.read(read_of(2, "PLATEB", site()), 12_000),
    ];
    ingest(store, &a, first);
    let listed = store.plates_from(0, 100).expect("read");
    assert_eq!(
        listed.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![0, 1],
        "ordinals from 0, no gaps"
    );
    assert_eq!(
        sorted(listed.iter().map(|(_, p)| p.clone()).collect()),
        vec!["PLATEA", "PLATEB"],
        "each plate once"
    );
    // A later upload: a known plate gets nothing new, a new one the next
    // ordinal, so an index loads only what is new.
    let second = vec![
        a.read(read_of(3, "PLATEA", site()), 13_000),
        a.read(read_of(4, "PLATEC", site()), 14_000),
    ];
    ingest(store, &a, second);
    assert_eq!(
        store.plates_from(2, 100).expect("read"),
        vec![(2, "PLATEC".to_owned())]
    );
    assert_eq!(store.plates_from(0, 100).expect("read")[..2], listed[..]);
    assert_eq!(store.plates_from(1, 1).expect("read"), listed[1..]);
    assert!(store.plates_from(3, 100).expect("read").is_empty());
}

/// San Francisco, in degrees × 10⁷.
const SF: (i32, i32) = (377_749_000, -1_224_194_000);

fn a_canvass_finds_placed_reads_and_counts_the_unplaced(store: &dyn HubStorage) {
    let mut a = Node::new("car-a", 31);
    let mut b = Node::new("car-b", 32);
    let log_a = vec![
        a.read(read_of(0, "NEAR001", gps(SF.0, SF.1)), 10_000),
        a.read(read_of(1, "NEAR002", gps(SF.0 + 100, SF.1 - 100)), 11_000),
        // Los Angeles: another cell altogether.
        a.read(
            read_of(2, "FAR0001", gps(340_522_000, -1_182_437_000)),
            12_000,
        ),
        a.read(read_of(3, "SITE001", site()), 13_000),
        a.read(read_of(4, "NOWHERE", Location::Unknown), 14_000),
    ];
    let log_b = vec![
        b.read(
            read_of(
                5,
                "NEAR003",
                Location::Configured {
                    lat_e7: SF.0 - 200,
                    lon_e7: SF.1 + 200,
                    accuracy_cm: 500,
                },
            ),
            15_000,
        ),
        b.read(read_of(6, "SITE002", site()), 16_000),
        b.read(read_of(7, "NEAR004", gps(SF.0, SF.1)), 90_000),
    ];
    ingest(store, &a, log_a);
    ingest(store, &b, log_b);
    let (ad, bd) = (a.device.clone(), b.device.clone());
    let area = GeoBox {
        lat_min_e7: SF.0 - 20_000,
        lat_max_e7: SF.0 + 20_000,
        lon_min_e7: SF.1 - 20_000,
        lon_max_e7: SF.1 + 20_000,
    };
    let placed = |p: &PlacedReads| {
        sorted(
            p.placed
                .iter()
                .map(|r| {
                    (
                        r.read.device.clone(),
                        r.read.seq,
                        r.read.captured_at.0,
                        r.lat_e7,
                        r.lon_e7,
                    )
                })
                .collect(),
        )
    };
    let found = store
        .reads_in_box(&area, UnixMillis(0), UnixMillis(50_000), None, 100, false)
        .expect("canvass");
    assert_eq!(
        placed(&found),
        sorted(vec![
            (ad.clone(), 0, 10_000, SF.0, SF.1),
            (ad.clone(), 1, 11_000, SF.0 + 100, SF.1 - 100),
            (bd.clone(), 0, 15_000, SF.0 - 200, SF.1 + 200),
        ]),
        "the reads there in the window, with their coordinates"
    );
    assert_eq!(found.unplaced, 3, "two sites and one unknown position");
    assert!(found.unplaced_reads.is_empty(), "not asked for");
    assert!(found.complete);
    // One node only.
    let of_b = store
        .reads_in_box(
            &area,
            UnixMillis(0),
            UnixMillis(100_000),
            Some(&bd),
            100,
            true,
        )
        .expect("canvass");
    assert_eq!(
        placed(&of_b),
        sorted(vec![
            (bd.clone(), 0, 15_000, SF.0 - 200, SF.1 + 200),
            (bd.clone(), 2, 90_000, SF.0, SF.1),
        ])
    );
    assert_eq!(of_b.unplaced, 1);
    assert_eq!(
        of_b.unplaced_reads,
        vec![IndexedRead {
            device: bd.clone(),
            seq: 1,
            captured_at: UnixMillis(16_000)
        }]
    );
    // Listed, all nodes.
    let listed = store
        .reads_in_box(&area, UnixMillis(0), UnixMillis(50_000), None, 100, true)
        .expect("canvass");
    assert_eq!(listed.unplaced, 3);
    assert_eq!(
        sorted(
            listed
                .unplaced_reads
                .iter()
                .map(|r| (r.device.clone(), r.seq))
                .collect()
        ),
        sorted(vec![(ad.clone(), 3), (ad.clone(), 4), (bd.clone(), 1)])
    );
    // A limit: no more than asked, and the answer says it is not complete.
    let limited = store
        .reads_in_box(&area, UnixMillis(0), UnixMillis(50_000), None, 2, false)
        .expect("canvass");
    assert_eq!(limited.placed.len(), 2);
    assert!(!limited.complete);
    // Nothing far from any read.
    let empty = GeoBox {
        lat_min_e7: 100_000_000,
        lat_max_e7: 100_010_000,
        lon_min_e7: 100_000_000,
        lon_max_e7: 100_010_000,
    };
    let none = store
        .reads_in_box(&empty, UnixMillis(0), UnixMillis(50_000), None, 100, false)
        .expect("canvass");
    assert!(none.placed.is_empty());
    assert!(none.complete);
}

// --------------------------------------------------------------- purges

fn a_purge_deletes_content_index_rows_and_images_and_records_itself(store: &dyn HubStorage) {
    let mut n = Node::new("pole-p", 41);
    // Reads 0..10, one hour apart; plates PURGE02..04 only in 2..=4.
    let log: Vec<SignedEntry> = (0..10)
        .map(|i| {
            let location = if i % 2 == 0 { site() } else { gps(SF.0, SF.1) };
            n.read(
                read_of(i, &format!("PURGE{i:02}"), location),
                3_600_000 * (i + 1),
            )
        })
        .collect();
    ingest(store, &n, log.clone());
    for i in 0..10 {
        for kind in ["crop", "overview"] {
            let bytes = image_bytes(kind, i);
            let r = commit1(
                store,
                WriteOp::Image {
                    device: n.device.clone(),
                    seq: i,
                    hash: sha256(&bytes),
                    bytes,
                },
            );
            assert_eq!(r, WriteResult::Image(true));
        }
    }
    let hours_before = store.reads_per_hour(0, 1_000).expect("read");
    let plates_before = store.plates_from(0, 100).expect("read");
    let area = GeoBox {
        lat_min_e7: SF.0 - 1_000,
        lat_max_e7: SF.0 + 1_000,
        lon_min_e7: SF.1 - 1_000,
        lon_max_e7: SF.1 + 1_000,
    };
    let canvass = || {
        store
            .reads_in_box(&area, ALL_TIME.0, ALL_TIME.1, None, 100, false)
            .expect("canvass")
    };
    assert_eq!((canvass().placed.len(), canvass().unplaced), (5, 5));

    let mut hub = hub_log();
    let ranges = vec![SeqRange { first: 2, last: 4 }];
    let record = hub
        .append_node_purge(
            n.device.clone(),
            ranges.clone(),
            "retention: 30 days",
            UnixMillis(50_000_000),
            TimeSource::LocalClock,
        )
        .expect("valid");
    let r = commit1(
        store,
        WriteOp::Purge {
            device: n.device.clone(),
            ranges: ranges.clone(),
            record: Box::new(record.clone()),
        },
    );
    assert_eq!(
        r,
        WriteResult::Purged(Purged {
            reads: 3,
            images: 6,
            plates: 0
        })
    );
    // The entries keep their signed headers, without content.
    let held = stored(store, &n.device);
    assert_eq!(held.len(), 10);
    for e in &held {
        assert_eq!(e.header, log[e.seq() as usize].header);
        assert!(e.signature_valid(&n.key));
        assert_eq!(
            e.is_purged(),
            (2..=4).contains(&e.seq()),
            "entry {}",
            e.seq()
        );
    }
    // Gone from every index; their images gone, the others kept.
    for i in 0..10u64 {
        let plate = format!("PURGE{i:02}");
        let purged = (2..=4).contains(&i);
        assert_eq!(
            store.plate_count(&plate).expect("count"),
            u64::from(!purged),
            "{plate}"
        );
        assert_eq!(
            store
                .reads_of_plate(&plate, ALL_TIME.0, ALL_TIME.1)
                .expect("read")
                .is_empty(),
            purged
        );
        assert_eq!(
            store
                .has_image(&sha256(&image_bytes("crop", i)))
                .expect("read"),
            !purged,
            "crop of {i}"
        );
    }
    assert_eq!((canvass().placed.len(), canvass().unplaced), (4, 3));
    // The purge is recorded in the hub's own log.
    assert_eq!(store.hub_access_head().expect("read"), (1, record.hash()));
    assert_eq!(
        store.hub_access_entries(0, 10).expect("read"),
        vec![record.encode()]
    );
    // Counted per hour as collected: a purge does not lower it.
    assert_eq!(store.reads_per_hour(0, 1_000).expect("read"), hours_before);
    // The purged plates stay listed until pruned.
    assert_eq!(store.plates_from(0, 100).expect("read"), plates_before);
    let r = commit1(store, WriteOp::PrunePlates);
    assert_eq!(
        r,
        WriteResult::Purged(Purged {
            plates: 3,
            ..Purged::default()
        })
    );
    let after = store.plates_from(0, 100).expect("read");
    assert_eq!(
        after,
        plates_before
            .iter()
            .filter(|(_, p)| !["PURGE02", "PURGE03", "PURGE04"].contains(&p.as_str()))
            .cloned()
            .collect::<Vec<_>>(),
        "the rest keep their ordinals"
    );
    // A plate seen again after pruning gets a new ordinal, after all others.
    let again = vec![n.read(read_of(10, "PURGE03", site()), 3_600_000 * 11)];
    ingest(store, &n, again);
    let newest = store.plates_from(0, 100).expect("read");
    let last = newest.last().expect("listed");
    assert_eq!(last.1, "PURGE03");
    assert!(plates_before.iter().all(|(o, _)| *o < last.0));
    // Purging what is already purged: nothing more deleted, still recorded.
    let record2 = hub
        .append_node_purge(
            n.device.clone(),
            ranges.clone(),
            "retention: 30 days",
            UnixMillis(60_000_000),
            TimeSource::LocalClock,
        )
        .expect("valid");
    let r = commit1(
        store,
        WriteOp::Purge {
            device: n.device.clone(),
            ranges,
            record: Box::new(record2.clone()),
        },
    );
    assert_eq!(r, WriteResult::Purged(Purged::default()));
    assert_eq!(store.hub_access_head().expect("read"), (2, record2.hash()));
    assert_eq!(store.plate_count("PURGE03").expect("count"), 1);
}

fn a_purge_that_does_not_extend_the_hub_log_changes_nothing(store: &dyn HubStorage) {
    let mut n = Node::new("pole-q", 42);
    let log = n.reads(5, 5_000);
    ingest(store, &n, log.clone());
    let mut hub = hub_log();
    let a = hub
        .append_access(access_record("a"), UnixMillis(1), TimeSource::LocalClock)
        .expect("valid");
    store
        .commit(vec![WriteOp::HubAccess(vec![a.clone()])])
        .expect("commit");
    // A record signed as entry 0 of the hub's log, which already has one.
    let ranges = vec![SeqRange { first: 0, last: 1 }];
    let stale = hub_log()
        .append_node_purge(
            n.device.clone(),
            ranges.clone(),
            "retention",
            UnixMillis(2),
            TimeSource::LocalClock,
        )
        .expect("valid");
    let r = store.commit(vec![WriteOp::Purge {
        device: n.device.clone(),
        ranges: ranges.clone(),
        record: Box::new(stale),
    }]);
    assert!(r.is_err(), "{r:?}");
    // A record naming other ranges than those purged.
    let wrong = hub
        .append_node_purge(
            n.device.clone(),
            vec![SeqRange { first: 3, last: 3 }],
            "retention",
            UnixMillis(2),
            TimeSource::LocalClock,
        )
        .expect("valid");
    let r = store.commit(vec![WriteOp::Purge {
        device: n.device.clone(),
        ranges,
        record: Box::new(wrong),
    }]);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(stored(store, &n.device), log, "nothing purged");
    assert_eq!(store.hub_access_head().expect("read"), (1, a.hash()));
}

// ---------------------------------------------------------------- counts

fn reads_are_counted_per_hour_of_capture_once(store: &dyn HubStorage) {
    const HOUR: u64 = 3_600_000;
    let mut n = Node::new("pole-h", 8);
    let log: Vec<SignedEntry> = [10u64, 10, 10, 12, 12]
        .iter()
        .enumerate()
        .map(|(i, h)| {
            n.read(
                crate::sample::sample_read(i as u64),
                h * HOUR + i as u64 * 1000,
            )
        })
        .collect();
    // The same upload twice: duplicates, counted once.
    ingest(store, &n, log.clone());
    ingest(store, &n, log);
    // Entries that are no reads are not counted.
    let access = vec![n.access(10 * HOUR + 5)];
    ingest(store, &n, access);
    assert_eq!(
        store.reads_per_hour(0, 100).expect("count"),
        vec![(10, 3), (12, 2)]
    );
    assert_eq!(store.reads_per_hour(11, 11).expect("count"), vec![]);
    assert_eq!(store.reads_per_hour(12, 12).expect("count"), vec![(12, 2)]);
    assert_eq!(store.reads_per_hour(0, 10).expect("count"), vec![(10, 3)]);
}

fn generations_keep_the_last_bytes_and_every_record(store: &dyn HubStorage) {
    assert_eq!(store.generation_bytes("ncic", 1).expect("read"), None);
    assert!(store.generation_records("ncic").expect("read").is_empty());
    for g in 1..=4u64 {
        store
            .store_generation(
                "ncic",
                g,
                format!("generation {g}").as_bytes(),
                format!("record {g}").as_bytes(),
                2,
            )
            .expect("store");
    }
    store
        .store_generation("dmv", 1, b"dmv 1", b"dmv record 1", 2)
        .expect("store");
    assert_eq!(store.generation_bytes("ncic", 2).expect("read"), None);
    assert_eq!(
        store.generation_bytes("ncic", 3).expect("read"),
        Some(b"generation 3".to_vec())
    );
    assert_eq!(
        store.generation_bytes("ncic", 4).expect("read"),
        Some(b"generation 4".to_vec())
    );
    assert_eq!(
        store.generation_records("ncic").expect("read"),
        (1..=4u64)
            .map(|g| (g, format!("record {g}").into_bytes(), g >= 3))
            .collect::<Vec<_>>(),
        "every import record stays: the list's history"
    );
    assert_eq!(
        store.generation_records("dmv").expect("read"),
        vec![(1, b"dmv record 1".to_vec(), true)],
        "sources are apart"
    );
}

fn entries_and_entries_at_return_the_stored_bytes(store: &dyn HubStorage) {
    let mut a = Node::new("pole-a", 51);
    let mut b = Node::new("pole-b", 52);
    let log_a = a.reads(20, 5_000);
    let log_b = b.reads(3, 5_000);
    ingest(store, &a, log_a.clone());
    ingest(store, &b, log_b.clone());
    let bytes = |log: &[SignedEntry]| log.iter().map(SignedEntry::encode).collect::<Vec<_>>();
    assert_eq!(
        store.entries(&a.device, 0, 100).expect("read"),
        bytes(&log_a)
    );
    assert_eq!(
        store.entries(&a.device, 5, 3).expect("read"),
        bytes(&log_a[5..8])
    );
    assert_eq!(
        store.entries(&a.device, 18, 100).expect("read"),
        bytes(&log_a[18..])
    );
    assert!(store.entries(&a.device, 20, 100).expect("read").is_empty());
    let unknown = DeviceId::new("unknown").expect("valid");
    assert!(store.entries(&unknown, 0, 100).expect("read").is_empty());
    assert_eq!(
        store
            .entries_at(&[
                (a.device.clone(), 7),
                (b.device.clone(), 2),
                (a.device.clone(), 99),
                (unknown, 0),
                (a.device.clone(), 0),
            ])
            .expect("read"),
        vec![
            Some(log_a[7].encode()),
            Some(log_b[2].encode()),
            None,
            None,
            Some(log_a[0].encode())
        ]
    );
}

// ------------------------------------------- several hubs, one database

/// Contracts that only a store shared by several hub processes has: each
/// test opens two [`super::postgres::PgStore`]s on one database, as two
/// hubs would.
mod shared_database {
    use super::*;
    use crate::store::postgres::PgStore;

    struct Two {
        a: Arc<PgStore>,
        b: Arc<PgStore>,
        _db: crate::store::postgres::cluster::TestDatabase,
    }

    fn two_hubs() -> Two {
        let db = crate::store::postgres::cluster::test_database().expect("a test database");
        let a = PgStore::open(&db.config).expect("open");
        let b = PgStore::open(&db.config).expect("open");
        Two {
            a: Arc::new(a),
            b: Arc::new(b),
            _db: db,
        }
    }

    #[test]
    fn two_hubs_ingesting_one_node_never_fork_or_duplicate_its_chain() {
        let two = two_hubs();
        let mut n = Node::new("car-shared", 61);
        let log = n.reads(200, 5_000);
        let cp = n.checkpoint();
        // Both hubs place the same uploads (a node that failed over and
        // resent), in chunks, at the same time.
        let upload = |store: Arc<PgStore>, log: Vec<SignedEntry>, key: PublicKey| {
            let cp = cp.clone();
            std::thread::spawn(move || {
                let device = log[0].header.device.clone();
                let mut appended = 0;
                for chunk in log.chunks(10) {
                    let last = chunk.last().expect("chunk").seq() + 1 == 200;
                    let e = Entries::from_log(chunk.to_vec(), last.then(|| cp.clone()))
                        .expect("consecutive");
                    let v = verify_batch(&key, &device, Validity::ALWAYS, e).expect("verifies");
                    let r = store
                        .commit(vec![WriteOp::Ingest {
                            device: device.clone(),
                            entries: v.entries,
                            checkpoint: v.checkpoint,
                            new_key: None,
                            at: UnixMillis(1),
                        }])
                        .expect("commit")
                        .remove(0);
                    appended += ok(r).appended;
                }
                appended
            })
        };
        let ta = upload(two.a.clone(), log.clone(), n.key);
        let tb = upload(two.b.clone(), log.clone(), n.key);
        let total = ta.join().expect("hub a") + tb.join().expect("hub b");
        assert_eq!(
            total, 200,
            "every entry placed once, by one hub or the other"
        );
        for store in [&two.a, &two.b] {
            assert_eq!(stored(&**store, &n.device), log);
            let rec = node_record(&**store, &n.device);
            assert_eq!((rec.next_seq, rec.duplicates), (200, 200));
            assert_eq!(
                store
                    .plate_count(&log[7].read().expect("read").plate)
                    .expect("count"),
                1
            );
        }
    }

    #[test]
    fn plate_ordinals_from_two_hubs_have_no_gaps_and_no_repeats() {
        let two = two_hubs();
        let upload = |store: Arc<PgStore>, name: &'static str, seed: u8| {
            std::thread::spawn(move || {
                let mut n = Node::new(name, seed);
                for round in 0..10u64 {
                    // Plates shared by both hubs' nodes, and each its own.
                    let log = vec![
                        n.read(
                            read_of(round, &format!("SHARED{round}"), site()),
                            1_000 + round,
                        ),
                        n.read(
                            read_of(
                                round,
                                &format!("{}{round}", name.to_uppercase().replace('-', "")),
                                site(),
                            ),
                            2_000 + round,
                        ),
                    ];
                    ingest(&*store, &n, log);
                }
            })
        };
        let ta = upload(two.a.clone(), "car-a", 62);
        let tb = upload(two.b.clone(), "car-b", 63);
        ta.join().expect("hub a");
        tb.join().expect("hub b");
        let plates = two.b.plates_from(0, 1_000).expect("read");
        assert_eq!(
            plates.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (0..30).collect::<Vec<u64>>(),
            "30 distinct plates, ordinals 0..30"
        );
        let mut names: Vec<&str> = plates.iter().map(|(_, p)| p.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 30, "each plate once");
        assert_eq!(two.a.plates_from(0, 1_000).expect("read"), plates);
    }

    #[test]
    fn the_hub_access_log_refuses_a_second_writer_with_a_conflict() {
        let two = two_hubs();
        let (mut wa, mut wb) = (hub_log(), hub_log());
        let a0 = wa
            .append_access(access_record("a"), UnixMillis(1), TimeSource::LocalClock)
            .expect("valid");
        let b0 = wb
            .append_access(access_record("b"), UnixMillis(2), TimeSource::LocalClock)
            .expect("valid");
        two.a
            .commit(vec![WriteOp::HubAccess(vec![a0.clone()])])
            .expect("commit");
        // Hub b's writer had not seen a0: told to reload, not corrupted.
        let r = two.b.commit(vec![WriteOp::HubAccess(vec![b0])]);
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
        let (size, head) = two.b.hub_access_head().expect("read");
        assert_eq!((size, head), (1, a0.hash()));
        // Resumed from the store, it goes on.
        let mut wb = LogWriter::resume(
            SecretKey::from_bytes(&[99; 32]),
            wb.device().clone(),
            size,
            head,
        );
        let b1 = wb
            .append_access(access_record("b"), UnixMillis(3), TimeSource::LocalClock)
            .expect("valid");
        two.b
            .commit(vec![WriteOp::HubAccess(vec![b1.clone()])])
            .expect("commit");
        assert_eq!(
            two.a.hub_access_entries(0, 10).expect("read"),
            vec![a0.encode(), b1.encode()]
        );
    }

    #[test]
    fn holds_and_local_entries_placed_on_two_hubs_both_survive() {
        use alpr_shared::control::holds::{Hold, HoldScope};
        use alpr_shared::control::holds_doc::HoldsDoc;
        use alpr_shared::hotlist::local::{EntryFields, LocalEntriesDoc};
        let two = two_hubs();
        let hold = |id: &str, on: &str| Hold {
            id: id.into(),
            case: "24-001".into(),
            reason: "homicide investigation".into(),
            placed_by: "det.lee".into(),
            agency: "CA0349400".into(),
            placed_at: UnixMillis(1_000),
            placed_on: on.into(),
            scope: HoldScope {
                plates: vec!["7ABC123".into()],
                ..HoldScope::default()
            },
            released: None,
        };
        // Each hub edits its own copy, neither having seen the other's.
        let mut on_a = HoldsDoc::new();
        on_a.add(hold("h-a", "hub-a")).expect("add");
        let mut on_b = HoldsDoc::new();
        on_b.add(hold("h-b", "hub-b")).expect("add");
        two.a
            .commit(vec![WriteOp::Holds(on_a.save())])
            .expect("commit");
        two.b
            .commit(vec![WriteOp::Holds(on_b.save())])
            .expect("commit");
        let saved =
            HoldsDoc::load(&two.a.holds_doc().expect("read").expect("saved")).expect("loads");
        assert_eq!(
            sorted(saved.holds().into_iter().map(|h| h.id).collect()),
            vec!["h-a", "h-b"]
        );

        let rules = alpr_shared::control::HotlistPolicy::default();
        let fields = |plate: &str| EntryFields {
            plate: Some(plate.into()),
            reason: Some("stolen from driveway".into()),
            ..EntryFields::default()
        };
        let now = UnixMillis(1_000);
        let mut la = LocalEntriesDoc::new();
        la.add(
            "e-a",
            fields("7ABC123"),
            "ofc.lee",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
        let mut lb = LocalEntriesDoc::new();
        lb.add(
            "e-b",
            fields("8XYZ999"),
            "ofc.kim",
            "CA0000001",
            &rules,
            now,
        )
        .expect("add");
        two.a
            .commit(vec![WriteOp::LocalEntries(la.save())])
            .expect("commit");
        two.b
            .commit(vec![WriteOp::LocalEntries(lb.save())])
            .expect("commit");
        let saved =
            LocalEntriesDoc::load(&two.b.local_entries_doc().expect("read").expect("saved"))
                .expect("loads");
        assert_eq!(
            sorted(saved.entries().into_iter().map(|e| e.plate).collect()),
            vec!["7ABC123", "8XYZ999"]
        );
    }

    #[test]
    fn a_change_on_one_hub_is_announced_to_the_other() {
        let two = two_hubs();
        let mut seen = two
            .b
            .watch_changes()
            .expect("a shared store announces changes");
        let before = *seen.borrow_and_update();
        two.a
            .commit(vec![WriteOp::User(user("ofc.lee", "Officer"))])
            .expect("commit");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), seen.changed())
                .await
                .expect("announced within 10 s")
                .expect("watch open");
        });
        assert_ne!(*seen.borrow(), before);
        assert_eq!(
            two.b.user("ofc.lee").expect("read"),
            Some(user("ofc.lee", "Officer"))
        );
    }
}
