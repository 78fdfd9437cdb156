//! The store's behaviour as its callers see it: reads that survive a
//! restart, capture steps, holds and local entries.

use super::*;
use alpr_shared::control::holds_doc::HoldsDoc;
use alpr_shared::crypto::sha256;
use alpr_shared::types::{Hash32, Location, ReadContent, TimeSource};

fn read(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Site {
            site_id: "s".into(),
        },
        camera: "c".into(),
        plate: plate.into(),
        confidence: 9000,
        char_confidence: vec![9000; plate.len()],
        issuer: Default::default(),
        detector_model: "d".into(),
        ocr_model: "o".into(),
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    }
}

#[tokio::test]
async fn reads_survive_reopen_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let device = DeviceId::new("v-1").expect("valid");
    let key = [5u8; 32];
    {
        let (store, join) =
            StoreHandle::open(&path, SecretKey::from_bytes(&key), device.clone()).expect("open");
        for i in 0..10 {
            let a = store
                .append_read(
                    read("ABC123"),
                    UnixMillis(1000 + i),
                    TimeSource::Gps,
                    b"crop".to_vec(),
                    vec![],
                )
                .await
                .expect("append");
            assert_eq!(a.seq, i);
        }
        assert_eq!(
            store.status().images_pending,
            10,
            "one queue slot per read naming the image"
        );
        assert_eq!(
            store
                .reads_of_plate("ABC123", UnixMillis(1002), UnixMillis(1004))
                .expect("index"),
            vec![2, 3, 4]
        );
        drop(store);
        tokio::task::spawn_blocking(move || join.join()).await.ok();
    }
    let (store, _join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&key), device).expect("reopen");
    store
        .append_read(
            read("XYZ9"),
            UnixMillis(2000),
            TimeSource::Gps,
            vec![],
            vec![],
        )
        .await
        .expect("append");
    let log = store.entries_from(0, 100).expect("read");
    assert_eq!(log.len(), 11);
    for w in log.windows(2) {
        assert_eq!(
            w[1].header.prev,
            w[0].hash(),
            "the chain continues across a restart"
        );
    }
    assert_eq!(log[0].read().map(|r| r.crop_hash), Some(sha256(b"crop")));
}

#[test]
fn a_capture_step_commits_its_reads_and_cursor_together() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let device = DeviceId::new("v-1").expect("valid");
    let (store, join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&[3; 32]), device.clone()).expect("open");
    assert_eq!(store.capture_cursor().expect("cursor"), None);
    let new = |plate: &str| NewRead {
        content: read(plate),
        captured_at: UnixMillis(5),
        time_source: TimeSource::Exif,
        crop: b"c".to_vec(),
        overview: vec![],
    };
    let mut bad = new("OK1");
    bad.content.plate = "lower".into();
    let r = store
        .commit_capture_blocking(
            vec![new("AAA111"), bad, new("BBB222")],
            Some(CaptureCursor {
                resume_at: 7,
                emitted_through: 9,
            }),
        )
        .expect("commit");
    assert_eq!(r.len(), 3);
    assert!(r[0].is_ok() && r[1].is_err() && r[2].is_ok(), "{r:?}");
    // A live camera has no position to keep.
    store
        .commit_capture_blocking(vec![new("CCC333")], None)
        .expect("commit");
    drop(store);
    join.join().expect("writer");
    let (store, _join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&[3; 32]), device).expect("reopen");
    assert_eq!(
        store.capture_cursor().expect("cursor"),
        Some(CaptureCursor {
            resume_at: 7,
            emitted_through: 9
        })
    );
    let plates: Vec<String> = store
        .entries_from(0, 10)
        .expect("log")
        .iter()
        .filter_map(|e| e.read().map(|r| r.plate.clone()))
        .collect();
    assert_eq!(plates, ["AAA111", "BBB222", "CCC333"]);
    assert_eq!(
        store.entries_from(0, 10).expect("log")[0]
            .header
            .time_source,
        TimeSource::Exif
    );
}

#[tokio::test]
async fn another_devices_store_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let (s, j) = StoreHandle::open(
        &path,
        SecretKey::from_bytes(&[1; 32]),
        DeviceId::new("a").expect("valid"),
    )
    .expect("open");
    drop(s);
    tokio::task::spawn_blocking(move || j.join()).await.ok();
    let r = StoreHandle::open(
        &path,
        SecretKey::from_bytes(&[1; 32]),
        DeviceId::new("b").expect("valid"),
    );
    assert!(matches!(r, Err(StoreError::WrongDevice { .. })));
}

fn hold(id: &str) -> alpr_shared::control::holds::Hold {
    alpr_shared::control::holds::Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "pursuit".into(),
        placed_by: "ofc.kim".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis(1),
        placed_on: "v-1".into(),
        scope: alpr_shared::control::holds::HoldScope {
            nodes: vec!["v-1".into()],
            ..Default::default()
        },
        released: None,
    }
}

#[tokio::test]
async fn holds_are_kept_merged_and_a_bad_document_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let device = DeviceId::new("v-1").expect("valid");
    let (store, _join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&[5; 32]), device).expect("open");
    assert_eq!(store.holds().expect("holds"), (Vec::new(), None));
    let saved = store
        .change_holds(HoldsChange::Add {
            hold: Box::new(hold("mine")),
            signer: None,
        })
        .await
        .expect("add")
        .expect("changed");
    assert!(store
        .change_holds(HoldsChange::Add {
            hold: Box::new(hold("mine")),
            signer: None,
        })
        .await
        .is_err());
    // The hub's document: it knew "mine" and placed "theirs".
    let mut hub = HoldsDoc::load(&saved).expect("load");
    hub.add(hold("theirs")).expect("add");
    let changed = store
        .change_holds(HoldsChange::Merge {
            doc: hub.save(),
            from_hub: true,
        })
        .await
        .expect("merge");
    assert!(changed.is_some());
    let (holds, refreshed) = store.holds().expect("holds");
    let ids: Vec<&str> = holds.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, vec!["mine", "theirs"]);
    assert!(refreshed.is_some());
    assert!(store
        .change_holds(HoldsChange::Merge {
            doc: b"junk".to_vec(),
            from_hub: true,
        })
        .await
        .is_err());
    assert_eq!(store.holds().expect("holds").0.len(), 2);
}

#[tokio::test]
async fn local_entries_are_kept_merged_watched_and_a_bad_document_changes_nothing() {
    use alpr_shared::hotlist::local::{EntryFields, LocalEntriesDoc};
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let device = DeviceId::new("v-1").expect("valid");
    let (store, _join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&[5; 32]), device).expect("open");
    assert!(store.local_entries().expect("entries").is_empty());
    let mut watch = store.watch_local_entries();
    watch.borrow_and_update();
    let fields = EntryFields {
        plate: Some("7ab*".into()),
        reason: Some("shooting".into()),
        ..EntryFields::default()
    };
    let rules = alpr_shared::control::policy::HotlistPolicy::default();
    let saved = store
        .change_local_entries(LocalEntriesChange::Add {
            id: "mine".into(),
            fields: fields.clone(),
            author: "ofc.kim".into(),
            agency: "CA0349400".into(),
            rules: rules.clone(),
            signer: None,
        })
        .await
        .expect("add")
        .expect("changed");
    assert!(watch.has_changed().expect("open"), "a change is announced");
    // The hub's document: it knew "mine" and added "theirs".
    let mut hub = LocalEntriesDoc::load(&saved).expect("load");
    hub.add("theirs", fields, "op.lee", "CA", &rules, UnixMillis::now())
        .expect("add");
    let changed = store
        .change_local_entries(LocalEntriesChange::Merge { doc: hub.save() })
        .await
        .expect("merge");
    assert!(changed.is_some());
    let ids: Vec<String> = store
        .local_entries()
        .expect("entries")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec!["mine".to_string(), "theirs".to_string()]);
    assert!(store
        .change_local_entries(LocalEntriesChange::Merge {
            doc: b"junk".to_vec()
        })
        .await
        .is_err());
    assert_eq!(store.local_entries().expect("entries").len(), 2);
}

/// What `edge status` shows moves with each change the writer commits:
/// images join and leave the upload queue, the hub's receipt sets what it
/// holds, a loss record counts the entries lost, and a restart reads the
/// same figures back from disk.
#[tokio::test]
async fn the_status_follows_each_committed_change_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.redb");
    let device = DeviceId::new("v-1").expect("valid");
    let key = [7u8; 32];
    let (store, join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&key), device.clone()).expect("open");
    for i in 0..4u64 {
        store
            .append_read(
                read("ABC123"),
                UnixMillis(1000 + i),
                TimeSource::Gps,
                format!("crop {i}").into_bytes(),
                b"overview".to_vec(),
            )
            .await
            .expect("append");
    }
    assert_eq!(store.status().len, 4);
    assert_eq!(store.status().images_pending, 8, "two images a read");
    let first = store.entries_from(0, 1).expect("log")[0].clone();
    let crop = first.read().map(|r| r.crop_hash).expect("a read");
    store.image_done(0, crop).await.expect("done");
    assert_eq!(store.status().images_pending, 7);
    store.image_done(0, crop).await.expect("done again");
    assert_eq!(
        store.status().images_pending,
        7,
        "an image the queue no longer holds is not counted twice"
    );
    assert_eq!(
        store.requeue_images(0, 1).await.expect("requeue"),
        1,
        "only the image that had left goes back"
    );
    assert_eq!(store.status().images_pending, 8);

    let receipt = alpr_shared::wire::SignedReceipt {
        receipt: alpr_shared::wire::Receipt {
            format: 1,
            device: device.clone(),
            next_seq: 3,
            head: Hash32::ZERO,
            at: UnixMillis(5000),
        },
        signature: alpr_shared::crypto::Signature([0; 64]),
    };
    store.set_acked(receipt.clone()).await.expect("acked");
    assert_eq!(
        (store.acked(), store.status().acked_at),
        (3, Some(UnixMillis(5000)))
    );
    assert_eq!(store.status().backlog(), 1);
    assert_eq!(store.receipt().expect("receipt"), Some(receipt));

    // Entry 2 cannot be read back: one loss entry records it.
    drop(store);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    write_raw_entry(&path, 2, b"\xff not an entry").expect("damage");
    let (store, join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&key), device.clone()).expect("reopen");
    assert_eq!(store.record_loss(2).await.expect("loss"), Some((2, 2)));
    assert_eq!(
        store.record_loss(2).await.expect("again"),
        None,
        "recorded once"
    );
    let before = store.status();
    assert_eq!((before.len, before.lost), (5, 1));
    drop(store);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    let (store, _join) =
        StoreHandle::open(&path, SecretKey::from_bytes(&key), device).expect("reopen");
    assert_eq!(
        store.status(),
        before,
        "a restart reads the same status back"
    );
}
