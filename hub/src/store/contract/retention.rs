//! The store's contract, by concern: Retention: what a purge deletes, and what it refuses.

use super::*;

contract_tests!(
    a_purge_deletes_content_index_rows_and_images_and_records_itself,
    a_purge_that_does_not_extend_the_hub_log_changes_nothing,
);

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
