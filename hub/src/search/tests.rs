//! The indexes answer exactly what a scan of every read answers; a
//! tampered read is reported, a configured position is never called
//! measured, and bad queries say what is wrong.

use std::collections::BTreeSet;
use std::path::Path;

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::sync::{NewKey, Verified};
use rand::{Rng, SeedableRng};

use super::*;
use crate::store::redb::RedbStore;
use crate::store::{ChainStore, SearchStore, WriteOp};

/// A read as the test wrote it: the brute-force scan's input.
#[derive(Debug, Clone)]
struct Written {
    node: DeviceId,
    seq: u64,
    plate: String,
    at: UnixMillis,
    location: Location,
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    anchor_pem: String,
    reads: Vec<Written>,
}

const LAT: i32 = 377_749_000;
const LON: i32 = -1_224_194_000;

fn location(rng: &mut impl Rng) -> Location {
    let jitter = |rng: &mut dyn rand::RngCore| rng.gen_range(-200_000..200_000);
    match rng.gen_range(0..10) {
        0..=3 => Location::Gps {
            lat_e7: LAT + jitter(rng),
            lon_e7: LON + jitter(rng),
            accuracy_cm: 300,
        },
        4..=7 => Location::Configured {
            lat_e7: LAT + jitter(rng),
            lon_e7: LON + jitter(rng),
            accuracy_cm: 1000,
        },
        8 => Location::Site {
            site_id: "site-1".into(),
        },
        _ => Location::Unknown,
    }
}

fn content(plate: &str, location: Location, seed: u64) -> ReadContent {
    ReadContent {
        location,
        camera: "cam-1".into(),
        plate: plate.into(),
        confidence: 9000,
        char_confidence: vec![9000; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: sha256(&seed.to_be_bytes()),
        overview_hash: sha256(&(!seed).to_be_bytes()),
    }
}

use alpr_shared::types::ReadContent;

/// A store of `n` reads from 4 nodes with real certificates, over 10 days,
/// plates from a small alphabet full of confusable characters.
fn fixture(n: usize, seed: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.redb");
    let ca = alpr_shared::pki::new_ca("Test Agency", 30).expect("ca");
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem).expect("load");
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
    let store = RedbStore::open(&db).expect("open");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut reads = Vec::new();
    for i in 0..4 {
        let name = DeviceId::new(format!("node-{i}")).expect("name");
        let key = SecretKey::generate();
        let pem = authority
            .issue_device_for(&key, &name, alpr_shared::types::DeviceKind::Pole, 30)
            .expect("issue");
        let der = alpr_shared::cert::pem_certificates(pem.as_bytes())
            .expect("pem")
            .remove(0);
        let serial = anchor.check_device_der(&der).expect("cert").serial;
        store
            .commit(vec![WriteOp::Contact {
                device: name.clone(),
                serial: serial.clone(),
                cert_der: der,
                reported_size: 0,
                at: UnixMillis(1),
            }])
            .expect("contact");
        let mut w = LogWriter::new(key, name.clone());
        let mut t = 1_700_000_000_000u64;
        let mut batch = Vec::new();
        for j in 0..n / 4 {
            t += rng.gen_range(0..4 * 3_600_000);
            let len = rng.gen_range(3..=6);
            let plate: String = (0..len)
                .map(|_| char::from(b"0OD18B5SZ2AX"[rng.gen_range(0..12)]))
                .collect();
            let loc = location(&mut rng);
            let e = w
                .append_read(
                    content(&plate, loc.clone(), (i * 100_000 + j) as u64),
                    UnixMillis(t),
                    TimeSource::Ntp,
                )
                .expect("read");
            reads.push(Written {
                node: name.clone(),
                seq: e.header.seq,
                plate,
                at: UnixMillis(t),
                location: loc,
            });
            batch.push(Verified {
                bytes: e.encode(),
                hash: e.hash(),
                entry: e,
            });
        }
        // Two commits per node: the second extends what the first stored.
        let rest = batch.split_off(batch.len() / 2);
        for (k, part) in [batch, rest].into_iter().enumerate() {
            store
                .commit(vec![WriteOp::Ingest {
                    device: name.clone(),
                    entries: part,
                    checkpoint: None,
                    new_key: (k == 0).then(|| NewKey {
                        serial: serial.clone(),
                        first_seq: 0,
                    }),
                    at: UnixMillis(1),
                }])
                .expect("ingest");
        }
    }
    Fixture {
        _dir: dir,
        db,
        anchor_pem: ca.cert_pem,
        reads,
    }
}

impl Fixture {
    fn searcher(&self) -> Searcher {
        let store: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&self.db).expect("open"));
        Searcher::new(
            store,
            TrustAnchor::from_pem(self.anchor_pem.as_bytes()).expect("anchor"),
        )
    }

    /// What a scan of every read finds: (node, seq) and unplaced count.
    fn brute(&self, q: &SearchQuery) -> (BTreeSet<(String, u64)>, u64) {
        let pattern = q
            .plate
            .as_deref()
            .map(|p| PlatePattern::parse(p, q.tolerant).expect("pattern"));
        let from = q.from.unwrap_or(UnixMillis(0));
        let to = q.to.unwrap_or(UnixMillis(u64::MAX));
        let mut found = BTreeSet::new();
        let mut unplaced = 0;
        for r in &self.reads {
            if pattern.as_ref().is_some_and(|p| !p.matches(&r.plate))
                || r.at < from
                || r.at > to
                || q.node.as_deref().is_some_and(|n| n != r.node.as_str())
            {
                continue;
            }
            if let Some(n) = &q.near {
                match coordinates(&r.location) {
                    None => {
                        unplaced += 1;
                        continue;
                    }
                    Some((lat, lon)) => {
                        if distance_m(e7(n.lat), e7(n.lon), lat, lon) > n.radius_m {
                            continue;
                        }
                    }
                }
            }
            found.insert((r.node.to_string(), r.seq));
        }
        (found, unplaced)
    }
}

fn got(r: &SearchResults) -> BTreeSet<(String, u64)> {
    r.hits.iter().map(|h| (h.node.clone(), h.seq)).collect()
}

#[test]
fn every_kind_of_search_finds_what_a_scan_of_every_read_finds() {
    let f = fixture(800, 1);
    let s = f.searcher();
    // The same store, searching a plate with a place by place first.
    let by_place = s.clone().with_plate_first_max(1);
    let mut by_place_checked = 0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (t0, t1) = (
        f.reads.iter().map(|r| r.at).min().expect("reads"),
        f.reads.iter().map(|r| r.at).max().expect("reads"),
    );
    let mut checked = 0;
    let mut nonempty = 0;
    for i in 0..300 {
        let sample = &f.reads[rng.gen_range(0..f.reads.len())];
        let p = sample.plate.as_bytes();
        let plate = match i % 6 {
            0 => Some(sample.plate.clone()),
            1 => Some(format!("*{}?{}*", char::from(p[0]), char::from(p[2]))),
            2 => Some(format!(
                "{}*{}",
                char::from(p[0]),
                char::from(p[p.len() - 1])
            )),
            3 => Some(format!("?{}*", &sample.plate[1..])),
            4 => Some(sample.plate.replace('0', "O").replace('8', "B")),
            _ => None,
        };
        let tolerant = i % 6 == 4 || (i % 7 == 0 && plate.is_some());
        let near = (plate.is_none() || rng.gen_bool(0.2)).then(|| Near {
            lat: f64::from(LAT + rng.gen_range(-100_000..100_000)) / 1e7,
            lon: f64::from(LON + rng.gen_range(-100_000..100_000)) / 1e7,
            radius_m: rng.gen_range(100.0..3000.0),
        });
        let (from, to) = if rng.gen_bool(0.4) {
            let a = rng.gen_range(t0.0..=t1.0);
            let b = rng.gen_range(a..=t1.0);
            (Some(UnixMillis(a)), Some(UnixMillis(b)))
        } else {
            (None, None)
        };
        let node = rng
            .gen_bool(0.3)
            .then(|| format!("node-{}", rng.gen_range(0..4)));
        let q = SearchQuery {
            plate,
            tolerant,
            from,
            to,
            near,
            node,
            limit: Some(MAX_LIMIT),
        };
        let r = s.search(&q).expect("search");
        let (want, unplaced) = f.brute(&q);
        assert_eq!(got(&r), want, "{q:?}");
        assert_eq!(r.matched, want.len() as u64, "{q:?}");
        assert!(!r.truncated);
        if q.near.is_some() {
            assert_eq!(r.unplaced, Some(unplaced), "{q:?}");
        }
        assert!(r.hits.iter().all(|h| h.signature), "{q:?}");
        assert!(
            r.hits
                .windows(2)
                .all(|w| w[0].captured_at >= w[1].captured_at),
            "newest first"
        );
        checked += 1;
        nonempty += usize::from(!want.is_empty());
        if q.plate.is_some() && q.near.is_some() {
            let r2 = by_place.search(&q).expect("search by place");
            assert_eq!(got(&r2), want, "by place first: {q:?}");
            assert_eq!(r2.unplaced, Some(unplaced), "by place first: {q:?}");
            assert_eq!(r2.matched, r.matched);
            by_place_checked += 1;
        }
    }
    assert!(by_place_checked > 20, "{by_place_checked}");
    assert_eq!(checked, 300);
    assert!(nonempty > 100, "the queries found little: {nonempty}");
}

#[test]
fn plates_stored_after_the_index_loaded_are_found() {
    let f = fixture(40, 3);
    let s = f.searcher();
    let q = SearchQuery {
        plate: Some("*XXX9*".into()),
        ..SearchQuery::default()
    };
    assert_eq!(s.search(&q).expect("search").matched, 0);
    // A new node stores a new plate through the same database.
    drop(s);
    let store = RedbStore::open(&f.db).expect("open");
    let name = DeviceId::new("late-node").expect("name");
    let mut w = LogWriter::new(SecretKey::generate(), name.clone());
    let e = w
        .append_read(
            content("AXXXX9", Location::Unknown, 9),
            UnixMillis(5),
            TimeSource::Gps,
        )
        .expect("read");
    store
        .commit(vec![WriteOp::Ingest {
            device: name,
            entries: vec![Verified {
                bytes: e.encode(),
                hash: e.hash(),
                entry: e,
            }],
            checkpoint: None,
            new_key: None,
            at: UnixMillis(1),
        }])
        .expect("ingest");
    drop(store);
    let s = f.searcher();
    s.refresh_plates().expect("load");
    let r = s.search(&q).expect("search");
    assert_eq!(r.matched, 1);
    // No certificate took effect for that node: the hit says so.
    assert!(!r.hits[0].signature);
    assert_eq!(r.plates_matched, Some(1));
}

/// Rewrite one stored entry in the database file, as an intruder with
/// the disk would.
fn tamper(
    db: &Path,
    node_id: u32,
    seq: u64,
    edit: impl FnOnce(&mut alpr_shared::log::SignedEntry),
) {
    use redb::{ReadableDatabase, TableDefinition};
    const ENTRIES: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("entries-v1");
    let db = redb::Database::open(db).expect("open");
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&node_id.to_be_bytes());
    key[4..].copy_from_slice(&seq.to_be_bytes());
    let bytes = {
        let tx = db.begin_read().expect("read");
        let t = tx.open_table(ENTRIES).expect("table");
        let v = t.get(&key).expect("get").expect("stored");
        v.value().to_vec()
    };
    let mut e = alpr_shared::log::SignedEntry::decode(&bytes).expect("decode");
    edit(&mut e);
    let tx = db.begin_write().expect("write");
    {
        let mut t = tx.open_table(ENTRIES).expect("table");
        t.insert(&key, e.encode().as_slice()).expect("insert");
    }
    tx.commit().expect("commit");
}

#[test]
fn a_tampered_read_is_reported_with_a_bad_signature() {
    let f = fixture(40, 4);
    // node-0 has id 0: its first two reads.
    let (a, b) = (f.reads[0].clone(), f.reads[1].clone());
    assert_eq!(a.node.as_str(), "node-0");
    tamper(&f.db, 0, a.seq, |e| {
        if let Some(body) = e.body.as_mut() {
            body.content.camera = "cam-9".into();
        }
    });
    tamper(&f.db, 0, b.seq, |e| e.header.time_source = TimeSource::Gps);
    let s = f.searcher();
    let tampered = [a.seq, b.seq];
    for (w, why) in [(a, "content"), (b, "signature")] {
        let r = s
            .search(&SearchQuery {
                plate: Some(w.plate.clone()),
                node: Some("node-0".into()),
                limit: Some(MAX_LIMIT),
                ..SearchQuery::default()
            })
            .expect("search");
        let hit = r.hits.iter().find(|h| h.seq == w.seq).expect("found");
        assert!(!hit.signature, "{hit:?}");
        assert!(
            hit.signature_problem
                .as_deref()
                .is_some_and(|p| p.contains(why)),
            "{hit:?}"
        );
        assert!(crate::cli::search::format_results(&r).contains("BAD"));
        // The others of that plate still verify.
        assert!(r
            .hits
            .iter()
            .filter(|h| !tampered.contains(&h.seq))
            .all(|h| h.signature));
    }
}

#[test]
fn a_configured_position_is_reported_as_configured_and_a_view_returns_the_crop() {
    let f = fixture(200, 5);
    let w = f
        .reads
        .iter()
        .find(|r| matches!(r.location, Location::Configured { .. }))
        .expect("a configured read");
    let (lat, lon) = coordinates(&w.location).expect("coordinates");
    // Store the crop of that read.
    {
        let store = RedbStore::open(&f.db).expect("open");
        let bytes = store.entries(&w.node, w.seq, 1).expect("entries").remove(0);
        let e = alpr_shared::log::SignedEntry::decode(&bytes).expect("decode");
        let crop = e.read().expect("content").crop_hash;
        let jpeg = b"\xff\xd8 a crop \xff\xd9".to_vec();
        store
            .commit(vec![WriteOp::Image {
                device: w.node.clone(),
                seq: w.seq,
                hash: crop,
                bytes: jpeg,
            }])
            .expect("image");
    }
    let s = f.searcher();
    let r = s
        .search(&SearchQuery {
            near: Some(Near {
                lat: f64::from(lat) / 1e7,
                lon: f64::from(lon) / 1e7,
                radius_m: 1.0,
            }),
            from: Some(w.at),
            to: Some(w.at),
            ..SearchQuery::default()
        })
        .expect("canvass");
    let hit = r
        .hits
        .iter()
        .find(|h| h.seq == w.seq && h.node == w.node.as_str())
        .expect("found");
    assert_eq!(hit.place_source, PlaceSource::Configured);
    assert!(hit.crop_held);
    let table = crate::cli::search::format_results(&r);
    assert!(table.contains("configured"), "{table}");
    assert!(!table.contains(" gps"), "{table}");
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["hits"][0]["place_source"], "configured", "{json}");

    let detail = s.read(w.node.as_str(), w.seq).expect("read").expect("held");
    assert_eq!(
        detail.crop_jpeg.as_deref(),
        Some(&b"\xff\xd8 a crop \xff\xd9"[..])
    );
    assert_eq!(detail.overview_jpeg, None);
    let json = serde_json::to_value(&detail).expect("json");
    assert!(json["crop_jpeg"].is_string(), "base64 in JSON: {json}");
    let back: ReadDetail = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, detail);
    assert!(s.read(w.node.as_str(), 1_000_000).expect("read").is_none());
}

#[test]
fn a_canvass_says_how_many_reads_it_could_not_place() {
    let f = fixture(200, 6);
    let s = f.searcher();
    let q = SearchQuery {
        near: Some(Near {
            lat: f64::from(LAT) / 1e7,
            lon: f64::from(LON) / 1e7,
            radius_m: 500.0,
        }),
        ..SearchQuery::default()
    };
    let r = s.search(&q).expect("canvass");
    let unplaced = f
        .reads
        .iter()
        .filter(|r| coordinates(&r.location).is_none())
        .count() as u64;
    assert!(unplaced > 0);
    assert_eq!(r.unplaced, Some(unplaced));
    assert!(crate::cli::search::format_results(&r)
        .contains(&format!("{unplaced} read(s) in the time window")));
    assert!(r
        .hits
        .iter()
        .all(|h| h.distance_m.is_some_and(|d| d <= 500.0)));
}

#[test]
fn bad_queries_say_what_is_wrong_and_are_told_from_storage_errors() {
    let f = fixture(8, 7);
    let s = f.searcher();
    let near = |radius_m| {
        Some(Near {
            lat: 37.0,
            lon: -122.0,
            radius_m,
        })
    };
    let cases = [
        (
            SearchQuery {
                plate: Some("AB".into()),
                from: Some(UnixMillis(2)),
                to: Some(UnixMillis(1)),
                ..SearchQuery::default()
            },
            "after",
        ),
        (
            SearchQuery {
                near: near(MAX_RADIUS_M + 1.0),
                ..SearchQuery::default()
            },
            "radius",
        ),
        (
            SearchQuery {
                near: near(0.0),
                ..SearchQuery::default()
            },
            "radius",
        ),
        (
            SearchQuery {
                node: Some("node-0".into()),
                ..SearchQuery::default()
            },
            "plate pattern or a place",
        ),
        (
            SearchQuery {
                plate: Some("*".into()),
                ..SearchQuery::default()
            },
            "at least",
        ),
        (
            SearchQuery {
                plate: Some("AB$".into()),
                ..SearchQuery::default()
            },
            "letters, digits",
        ),
        (
            SearchQuery {
                plate: Some("AB".into()),
                limit: Some(MAX_LIMIT + 1),
                ..SearchQuery::default()
            },
            "limit",
        ),
    ];
    for (q, says) in cases {
        let e = s.search(&q).expect_err("refused");
        assert!(e.is_bad_query(), "{e}");
        assert!(e.to_string().contains(says), "{e} (wanted {says:?})");
    }
    let e = SearchError::Store(StoreError::Unavailable("disk".into()));
    assert!(!e.is_bad_query());
}

#[test]
fn the_query_is_described_in_one_line_for_the_access_log() {
    let q = SearchQuery {
        plate: Some("*4?21*".into()),
        from: Some(UnixMillis(0)),
        near: Some(Near {
            lat: 37.5,
            lon: -122.25,
            radius_m: 500.0,
        }),
        node: Some("pole-1".into()),
        ..SearchQuery::default()
    };
    let d = q.describe().expect("describe");
    assert_eq!(
        d,
        "plate=*4?21* mode=wildcard from=1970-01-01T00:00:00.000Z near=37.500000,-122.250000 r=500m node=pole-1 limit=100"
    );
    let json: SearchQuery =
        serde_json::from_str(r#"{"plate":"7abc123","tolerant":true,"limit":5}"#).expect("json");
    assert!(json
        .describe()
        .expect("ok")
        .starts_with("plate=7ABC123 mode=tolerant"));
    assert!(serde_json::from_str::<SearchQuery>(r#"{"plates":"x"}"#).is_err());
}

#[test]
fn a_database_written_before_the_search_indexes_is_indexed_when_opened() {
    use redb::TableDefinition;
    let f = fixture(120, 8);
    {
        // Make the file what an older hub left: reads and `plate-time-v1`
        // only.
        let db = redb::Database::open(&f.db).expect("open");
        let tx = db.begin_write().expect("write");
        for name in ["plate-order-v1", "geo-time-v1"] {
            let t: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            assert!(tx.delete_table(t).expect("delete"), "{name} existed");
        }
        {
            let meta: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");
            let mut m = tx.open_table(meta).expect("meta");
            m.remove("search-index-version").expect("remove");
            m.remove("next-plate-ordinal").expect("remove");
        }
        tx.commit().expect("commit");
    }
    let s = f.searcher();
    let sample = &f.reads[7];
    for q in [
        SearchQuery {
            plate: Some(format!("*{}", &sample.plate[1..])),
            limit: Some(MAX_LIMIT),
            ..SearchQuery::default()
        },
        SearchQuery {
            near: Some(Near {
                lat: f64::from(LAT) / 1e7,
                lon: f64::from(LON) / 1e7,
                radius_m: 2000.0,
            }),
            limit: Some(MAX_LIMIT),
            ..SearchQuery::default()
        },
    ] {
        let r = s.search(&q).expect("search");
        let (want, _) = f.brute(&q);
        assert!(!want.is_empty());
        assert_eq!(got(&r), want, "{q:?}");
    }
}

#[test]
fn the_distinct_plates_are_counted_and_listed_once_each_in_order() {
    let f = fixture(400, 9);
    let store = RedbStore::open(&f.db).expect("open");
    let listed = store.plates_from(0, usize::MAX).expect("plates");
    let ordinals: Vec<u64> = listed.iter().map(|(o, _)| *o).collect();
    assert_eq!(ordinals, (0..listed.len() as u64).collect::<Vec<_>>());
    let distinct: BTreeSet<&str> = f.reads.iter().map(|r| r.plate.as_str()).collect();
    let names: BTreeSet<&str> = listed.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(names, distinct);
    assert_eq!(listed.len(), distinct.len(), "each plate once");
    for p in distinct {
        let n = f.reads.iter().filter(|r| r.plate == p).count() as u64;
        assert_eq!(store.plate_count(p).expect("count"), n, "{p}");
    }
    assert_eq!(store.plate_count("NOSUCH").expect("count"), 0);
    // Loading from the middle gives the rest.
    let rest = store.plates_from(5, usize::MAX).expect("plates");
    assert_eq!(rest.as_slice(), &listed[5..]);
}
