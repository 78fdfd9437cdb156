//! The store's contract, by concern: Search indexes: by plate, by place, plates in order first seen, reads
//! per hour.

use super::*;

contract_tests!(
    reads_are_found_by_plate_and_time,
    plates_get_ordinals_in_the_order_first_seen,
    a_canvass_finds_placed_reads_and_counts_the_unplaced,
    reads_are_counted_per_hour_of_capture_once,
);

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
