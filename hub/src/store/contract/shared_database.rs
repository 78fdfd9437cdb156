//! Contracts that only a store shared by several hub processes has: each
//! test opens two [`crate::store::postgres::PgStore`]s on one database, as two
//! hubs would.

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
    let saved = HoldsDoc::load(&two.a.holds_doc().expect("read").expect("saved")).expect("loads");
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
    let saved = LocalEntriesDoc::load(&two.b.local_entries_doc().expect("read").expect("saved"))
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
