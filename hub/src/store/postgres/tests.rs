//! What only the PostgreSQL store has, against a real PostgreSQL: reads
//! spread over monthly partitions (made by whichever hub needs one first),
//! and searches and purges over them. Everything every store does is in
//! [`crate::store::contract`].

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::{LogWriter, SeqRange, SignedEntry};
use alpr_shared::sync::{verify_batch, Validity};
use alpr_shared::types::{DeviceId, Hash32, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, RefusalCode};

use super::cluster::{test_database, TestDatabase};
use super::{pg_err, PgConfig, PgStore};
use crate::store::*;

/// A store on a fresh database (fields drop in order: the store, then
/// the database).
struct Db {
    store: PgStore,
    config: PgConfig,
    _db: TestDatabase,
}

fn db() -> Db {
    let db = test_database().expect("a test database");
    let store = PgStore::open(&db.config).expect("open");
    Db {
        store,
        config: db.config.clone(),
        _db: db,
    }
}

/// 2026-11-01T00:00:00Z.
const NOV_2026: u64 = 1_793_491_200_000;
const HOUR: u64 = 3_600_000;

fn read(i: u64, plate: &str, place: Option<(i32, i32)>) -> ReadContent {
    ReadContent {
        location: match place {
            Some((lat_e7, lon_e7)) => Location::Gps {
                lat_e7,
                lon_e7,
                accuracy_cm: 300,
            },
            None => Location::Site {
                site_id: "gate".into(),
            },
        },
        camera: "cam-1".into(),
        plate: plate.into(),
        confidence: 9000,
        char_confidence: vec![9000; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: sha256(format!("crop {i}").as_bytes()),
        overview_hash: sha256(format!("overview {i}").as_bytes()),
    }
}

/// `n` reads of `sample_read` plates, one a minute from `at`.
fn batch(w: &mut LogWriter, n: u64, at: u64) -> Entries {
    let first = w.len();
    let log = (0..n)
        .map(|i| {
            w.append_read(
                crate::sample::sample_read(first + i),
                UnixMillis(at + (first + i) * 60_000),
                TimeSource::Ntp,
            )
            .expect("valid")
        })
        .collect();
    Entries::from_log(log, Some(w.checkpoint(UnixMillis(at)))).expect("consecutive")
}

fn ingest_op(device: &DeviceId, e: Entries, key: &alpr_shared::crypto::PublicKey) -> WriteOp {
    let v = verify_batch(key, device, Validity::ALWAYS, e).expect("verifies");
    WriteOp::Ingest {
        device: device.clone(),
        entries: v.entries,
        checkpoint: v.checkpoint,
        new_key: v.new_key,
        at: UnixMillis(1),
    }
}

fn ingest(
    store: &PgStore,
    device: &DeviceId,
    e: Entries,
    key: &alpr_shared::crypto::PublicKey,
) -> Result<Ingested, alpr_shared::wire::Refusal> {
    match store
        .commit(vec![ingest_op(device, e, key)])
        .expect("commit")
        .remove(0)
    {
        WriteResult::Ingested(r) => r,
        other => panic!("not an ingest result: {other:?}"),
    }
}

fn log_of(store: &PgStore, device: &DeviceId) -> Vec<SignedEntry> {
    store
        .entries(device, 0, 100_000)
        .expect("read")
        .iter()
        .map(|b| SignedEntry::decode(b).expect("canonical"))
        .collect()
}

#[test]
fn reads_over_two_months_are_placed_once_and_found_by_plate_and_time() {
    let db = db();
    let store = &db.store;
    let device = DeviceId::new("p-1").expect("valid");
    let key = SecretKey::from_bytes(&[3; 32]);
    let public = key.public();
    let mut w = LogWriter::new(key, device.clone());
    // A read a minute from 50 minutes before November: half the reads
    // go to October's partition, half to November's.
    let start = NOV_2026 - 50 * 60_000;
    let first = batch(&mut w, 100, start);
    let r = ingest(store, &device, first.clone(), &public).expect("placed");
    assert_eq!((r.appended, r.progress.next_seq), (100, 100));
    // The same batch again: nothing appended, all counted as duplicates.
    let r = ingest(store, &device, first, &public).expect("placed");
    assert_eq!((r.appended, r.duplicates), (0, 100));
    // A gap: entries 150.. while 100 is due.
    let _skipped = batch(&mut w, 50, start);
    let later = batch(&mut w, 10, start);
    let r = ingest(store, &device, later, &public).expect_err("a gap");
    assert_eq!(r.code, RefusalCode::Gap);
    // A fork: a different history from 0 with the same key.
    let mut fork = LogWriter::new(SecretKey::from_bytes(&[3; 32]), device.clone());
    let r = ingest(store, &device, batch(&mut fork, 5, start), &public).expect_err("a fork");
    assert_eq!(r.code, RefusalCode::Fork);
    // The checkpoint of the first batch is kept; one naming another head
    // at the same size (a second history) is refused.
    let kept = store.checkpoint(&device).expect("read").expect("kept");
    assert_eq!(kept.checkpoint.size, 100);
    let replay = verify_batch(
        &public,
        &device,
        Validity::ALWAYS,
        Entries::from_log(log_of(store, &device)[..10].to_vec(), None).expect("consecutive"),
    )
    .expect("verifies");
    let two_faced = alpr_shared::wire::sign_checkpoint(
        &SecretKey::from_bytes(&[3; 32]),
        device.clone(),
        100,
        Hash32([7; 32]),
        UnixMillis(2),
    );
    let r = store
        .commit(vec![WriteOp::Ingest {
            device: device.clone(),
            entries: replay.entries,
            checkpoint: Some(two_faced),
            new_key: None,
            at: UnixMillis(2),
        }])
        .expect("commit")
        .remove(0);
    assert!(matches!(r, WriteResult::Ingested(Err(ref f)) if f.code == RefusalCode::Fork));
    assert_eq!(store.checkpoint(&device).expect("read"), Some(kept));
    let rec = store.node(&device).expect("read").expect("known");
    assert_eq!((rec.next_seq, rec.duplicates), (100, 100));
    let log = log_of(store, &device);
    assert_eq!(log.len(), 100);
    assert!(log.iter().enumerate().all(|(i, e)| e.seq() == i as u64));

    // Every read is found by its plate, in time order; the plates are
    // numbered once each, in the order first stored.
    let plate = |e: &SignedEntry| e.read().expect("a read").plate.clone();
    let p7 = plate(&log[7]);
    assert_eq!(store.plate_count(&p7).expect("count"), 1);
    assert_eq!(
        store
            .reads_of_plate(&p7, UnixMillis(0), UnixMillis(u64::MAX))
            .expect("search"),
        vec![(device.clone(), 7)]
    );
    let at7 = log[7].header.captured_at;
    assert!(store
        .reads_of_plate(&p7, UnixMillis(at7.0 + 1), UnixMillis(u64::MAX))
        .expect("search")
        .is_empty());
    let plates = store.plates_from(0, 1000).expect("plates");
    assert_eq!(plates.len(), 100);
    assert!(plates.iter().enumerate().all(|(i, (o, _))| *o == i as u64));
    let mut names: Vec<String> = plates.into_iter().map(|(_, p)| p).collect();
    names.sort();
    let mut want: Vec<String> = log.iter().map(plate).collect();
    want.sort();
    assert_eq!(names, want);
    let found = store
        .reads_of_plates(
            &[plate(&log[9]), plate(&log[3])],
            UnixMillis(0),
            UnixMillis(u64::MAX),
            10,
        )
        .expect("search");
    let seqs: Vec<u64> = found.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![9, 3], "plate by plate, in the order asked");
    // 50 reads in October's last hour, 50 in November's first.
    let h0 = NOV_2026 / HOUR;
    assert_eq!(
        store.reads_per_hour(h0 - 5, h0 + 5).expect("hours"),
        vec![(h0 - 1, 50), (h0, 50)]
    );
    assert_eq!(
        store
            .reads_of_plate(&plate(&log[49]), UnixMillis(0), UnixMillis(NOV_2026 - 1))
            .expect("search"),
        vec![(device.clone(), 49)]
    );
    // Each month's rows are in its own partition, none in the default one
    // (where they would stop that month's partition from ever being made).
    let pool = store.pool().clone();
    let counts = store
        .spawn_wait(async move {
            let c = pool.get().await.map_err(pg_err)?;
            let mut n = Vec::new();
            for t in [
                "entries_2026_10",
                "entries_2026_11",
                "entries_default",
                "reads_default",
            ] {
                let row = c
                    .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                    .await
                    .map_err(pg_err)?;
                n.push(row.get::<_, i64>(0));
            }
            Ok(n)
        })
        .expect("counted");
    assert_eq!(counts, vec![50, 50, 0, 0]);
    let at = store
        .entries_at(&[
            (device.clone(), 5),
            (DeviceId::new("nobody").expect("valid"), 5),
            (device.clone(), 500),
            (device.clone(), 0),
        ])
        .expect("entries");
    assert_eq!(at.len(), 4);
    assert_eq!(at[0].as_deref(), Some(log[5].encode().as_slice()));
    assert_eq!((at[1].is_none(), at[2].is_none()), (true, true));
    assert_eq!(at[3].as_deref(), Some(log[0].encode().as_slice()));
}

#[test]
fn a_purge_deletes_content_search_rows_and_images_and_the_log_records_it() {
    let db = db();
    let store = &db.store;
    let device = DeviceId::new("p-purge").expect("valid");
    let key = SecretKey::from_bytes(&[6; 32]);
    let public = key.public();
    let mut w = LogWriter::new(key, device.clone());
    // Reads far apart (more than the neighbours an image may be shared
    // with), so each read's images are its own.
    let spot = (377_749_000, -1_224_194_000);
    let log: Vec<SignedEntry> = (0..80u64)
        .map(|i| {
            let place = (i % 2 == 0).then_some(spot);
            w.append_read(
                read(i, &format!("PLT{i}"), place),
                UnixMillis(NOV_2026 + i * 1000),
                TimeSource::Ntp,
            )
            .expect("valid")
        })
        .collect();
    let entries = Entries::from_log(log.clone(), None).expect("consecutive");
    ingest(store, &device, entries, &public).expect("placed");
    let crop = |i: usize| log[i].read().expect("a read").crop_hash;
    let image = |seq: u64, hash: Hash32| WriteOp::Image {
        device: device.clone(),
        seq,
        hash,
        bytes: b"jpeg".to_vec(),
    };
    let r = store
        .commit(vec![
            image(40, crop(40)),
            image(70, crop(70)),
            image(41, crop(40)),
        ])
        .expect("images");
    assert_eq!(
        r,
        vec![
            WriteResult::Image(true),
            WriteResult::Image(true),
            WriteResult::Image(false)
        ],
        "an image no entry names is not stored"
    );
    assert_eq!(store.node(&device).expect("read").expect("known").images, 2);
    let area = GeoBox {
        lat_min_e7: spot.0 - 1000,
        lat_max_e7: spot.0 + 1000,
        lon_min_e7: spot.1 - 1000,
        lon_max_e7: spot.1 + 1000,
    };
    let window = (UnixMillis(NOV_2026), UnixMillis(NOV_2026 + HOUR));
    let found = store
        .reads_in_box(&area, window.0, window.1, None, 1000, false)
        .expect("canvass");
    assert_eq!(
        (found.placed.len(), found.unplaced, found.complete),
        (40, 40, true)
    );
    let few = store
        .reads_in_box(&area, window.0, window.1, Some(&device), 5, true)
        .expect("canvass");
    assert_eq!((few.placed.len(), few.complete), (5, false));
    assert_eq!(few.placed[0].read.seq, 0);
    assert_eq!(
        (few.unplaced_reads.len(), few.unplaced_reads[0].seq),
        (5, 1)
    );

    let hub = DeviceId::new("hub").expect("valid");
    let mut hub_log = LogWriter::new(SecretKey::from_bytes(&[9; 32]), hub);
    let ranges = vec![SeqRange {
        first: 38,
        last: 42,
    }];
    let record = hub_log
        .append_node_purge(
            device.clone(),
            ranges.clone(),
            "retention",
            UnixMillis(NOV_2026),
            TimeSource::Ntp,
        )
        .expect("valid");
    let r = store
        .commit(vec![
            WriteOp::Purge {
                device: device.clone(),
                ranges,
                record: Box::new(record.clone()),
            },
            WriteOp::PrunePlates,
        ])
        .expect("purged");
    assert_eq!(
        r,
        vec![
            WriteResult::Purged(Purged {
                reads: 5,
                images: 1,
                plates: 0
            }),
            WriteResult::Purged(Purged {
                reads: 0,
                images: 0,
                plates: 5
            })
        ]
    );
    assert!(!store.has_image(&crop(40)).expect("read"));
    assert!(store.has_image(&crop(70)).expect("read"));
    let after = log_of(store, &device);
    assert_eq!(after.len(), 80);
    assert!(after[38..=42].iter().all(|e| e.read().is_none()));
    assert!(after[37].read().is_some() && after[43].read().is_some());
    assert_eq!(store.plate_count("PLT40").expect("count"), 0);
    assert!(store
        .reads_of_plate("PLT40", UnixMillis(0), UnixMillis(u64::MAX))
        .expect("search")
        .is_empty());
    assert!(!store
        .plates_from(0, 1000)
        .expect("plates")
        .iter()
        .any(|(_, p)| p == "PLT40"));
    let found = store
        .reads_in_box(&area, window.0, window.1, None, 1000, false)
        .expect("canvass");
    assert_eq!((found.placed.len(), found.unplaced), (37, 38));
    assert_eq!(store.hub_access_head().expect("head"), (1, record.hash()));
}

#[test]
fn reads_of_any_time_are_kept_whichever_hub_makes_their_month() {
    let db = db();
    let other = PgStore::open(&db.config).expect("second hub");
    // Two hubs, each a node of its own, both first into the same months:
    // each makes the partitions it needs, or finds them made.
    let times = [
        NOV_2026 + 40 * 24 * HOUR,
        5_000,
        9_999 * 366 * 24 * HOUR,
        u64::MAX,
    ];
    std::thread::scope(|s| {
        for (i, hub) in [&db.store, &other].into_iter().enumerate() {
            s.spawn(move || {
                let device = DeviceId::new(format!("p-time-{i}")).expect("valid");
                let key = SecretKey::from_bytes(&[20 + i as u8; 32]);
                let public = key.public();
                let mut w = LogWriter::new(key, device.clone());
                let log: Vec<SignedEntry> = times
                    .iter()
                    .enumerate()
                    .map(|(j, at)| {
                        w.append_read(
                            read(j as u64, &format!("T{i}X{j}"), None),
                            UnixMillis(*at),
                            TimeSource::Ntp,
                        )
                        .expect("valid")
                    })
                    .collect();
                let entries = Entries::from_log(log, None).expect("consecutive");
                let r = ingest(hub, &device, entries, &public).expect("placed");
                assert_eq!(r.appended, times.len());
            });
        }
    });
    for i in 0..2 {
        let device = DeviceId::new(format!("p-time-{i}")).expect("valid");
        assert_eq!(log_of(&db.store, &device).len(), times.len());
        for j in 0..times.len() {
            assert_eq!(
                db.store
                    .reads_of_plate(&format!("T{i}X{j}"), UnixMillis(0), UnixMillis(u64::MAX))
                    .expect("search"),
                vec![(device.clone(), j as u64)]
            );
        }
    }
}
