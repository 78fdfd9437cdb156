//! A read under hold survives a purge run a year and a day later and goes
//! once the hold is released; after each purge every log still verifies
//! and nothing left names a purged plate.

use std::sync::Mutex;

use alpr_shared::cert::{pem_certificates, TrustAnchor};
use alpr_shared::control::holds::{HoldScope, Release};
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::retention::DAY_MS;
use alpr_shared::log::verify::{LogReport, LogVerifier, NodeKeys, VerifyOptions};
use alpr_shared::log::{EntryKind, LogWriter, SeqRange};
use alpr_shared::sync::{NewKey, Verified};
use alpr_shared::types::{DeviceId, DeviceKind, Location, ReadContent, TimeSource};

use super::*;
use crate::store::redb::RedbStore;

/// When the test's reads were captured: now, so the node's certificate
/// (valid for 800 days) covers them and the "recent" read 200 days on.
fn day0() -> u64 {
    static DAY0: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *DAY0.get_or_init(|| UnixMillis::now().0)
}
const PLATES: [&str; 6] = ["AAA111", "BBB222", "HELD1", "CCC333", "DDD444", "RECENT9"];

fn content(plate: &str, i: u64) -> ReadContent {
    ReadContent {
        location: Location::Gps {
            lat_e7: 377_749_000,
            lon_e7: -1_224_194_000,
            accuracy_cm: 300,
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

fn hold(plate: &str) -> Hold {
    Hold {
        id: "hold-1".into(),
        case: "2026-0042".into(),
        reason: "homicide investigation".into(),
        placed_by: "sgt".into(),
        agency: "CA0000000".into(),
        placed_at: UnixMillis(day0()),
        placed_on: "hub".into(),
        scope: HoldScope {
            plates: vec![plate.into()],
            ..HoldScope::default()
        },
        released: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn HubStorage>,
    anchor: TrustAnchor,
    node: DeviceId,
    hub: DeviceId,
    retention: Retention,
    holds: Arc<Mutex<Vec<Hold>>>,
    now: Arc<Mutex<UnixMillis>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = alpr_shared::pki::new_ca("Test Agency", 30).expect("ca");
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem).expect("load");
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
    let redb = RedbStore::open(&dir.path().join("hub.redb")).expect("open");
    let store: Arc<dyn HubStorage> = Arc::new(redb);

    let node = DeviceId::new("pole-1").expect("name");
    let key = SecretKey::generate();
    let pem = authority
        .issue_device_for(&key, &node, DeviceKind::Pole, 800)
        .expect("issue");
    let der = pem_certificates(pem.as_bytes()).expect("pem").remove(0);
    let serial = anchor.check_device_der(&der).expect("cert").serial;
    store
        .commit(vec![WriteOp::Contact {
            device: node.clone(),
            serial: serial.clone(),
            cert_der: der,
            reported_size: 0,
            at: UnixMillis(1),
        }])
        .expect("contact");
    let mut w = LogWriter::new(key, node.clone());
    let mut batch = Vec::new();
    let mut images = Vec::new();
    for (i, plate) in PLATES.iter().enumerate() {
        let i = i as u64;
        // The last read is recent: 200 days after the others.
        let at = if *plate == "RECENT9" {
            day0() + 200 * DAY_MS
        } else {
            day0() + i * 60_000
        };
        let c = content(plate, i);
        for h in [c.crop_hash, c.overview_hash] {
            images.push(WriteOp::Image {
                device: node.clone(),
                seq: i,
                hash: h,
                bytes: format!("image of {plate} {}", h.to_hex()).into_bytes(),
            });
        }
        let e = w
            .append_read(c, UnixMillis(at), TimeSource::Ntp)
            .expect("read");
        batch.push(Verified {
            bytes: e.encode(),
            hash: e.hash(),
            entry: e,
        });
    }
    store
        .commit(vec![WriteOp::Ingest {
            device: node.clone(),
            entries: batch,
            checkpoint: None,
            new_key: Some(NewKey {
                serial,
                first_seq: 0,
            }),
            at: UnixMillis(1),
        }])
        .expect("ingest");
    let stored = store.commit(images).expect("images");
    assert!(stored.iter().all(|r| *r == WriteResult::Image(true)));

    // The hub signs its log with its log key, certified by the same CA.
    let hub = DeviceId::new("hub").expect("name");
    let (issued, _) = authority
        .issue_signer(alpr_shared::cert::KeyPurpose::Log, "hub", 30)
        .expect("issue the log key");
    std::fs::write(dir.path().join("hub.pem"), &issued.cert_pem).expect("write");
    let log_key = alpr_shared::signer::HubKey::from_pem(
        issued.key_pem.as_bytes(),
        issued.cert_pem.as_bytes(),
        &anchor,
    )
    .expect("the log key");
    let access = AccessLog::start(store.clone(), log_key).expect("access log");

    let holds = Arc::new(Mutex::new(vec![hold("HELD1")]));
    let now = Arc::new(Mutex::new(UnixMillis(day0())));
    let (h, n) = (holds.clone(), now.clone());
    let retention = Retention::new(
        store.clone(),
        access,
        Arc::new(move || h.lock().expect("holds").clone()),
        Arc::new(move || *n.lock().expect("now")),
    );
    Fixture {
        _dir: dir,
        store,
        anchor,
        node,
        hub,
        retention,
        holds,
        now,
    }
}

impl Fixture {
    fn hub_cert(&self) -> alpr_shared::cert::DeviceCert {
        let pem = std::fs::read(self._dir.path().join("hub.pem")).expect("read");
        let der = alpr_shared::cert::pem_certificates(&pem)
            .expect("pem")
            .remove(0);
        self.anchor
            .check_signer_der(&der, alpr_shared::cert::KeyPurpose::Log)
            .and_then(|c| c.as_log_signer())
            .expect("hub cert")
    }

    fn hub_log(&self) -> Vec<alpr_shared::log::SignedEntry> {
        self.store
            .hub_access_entries(0, 1000)
            .expect("hub log")
            .iter()
            .map(|b| alpr_shared::log::SignedEntry::decode(b).expect("decode"))
            .collect()
    }

    /// Verify the hub's log, and the node's log with the ranges the hub's
    /// verified purge records name.
    fn verify(&self) -> (LogReport, LogReport) {
        let hub_cert = self.hub_cert();
        let hub_log = self.hub_log();
        let hub_report = alpr_shared::log::verify_log(
            &hub_cert,
            &hub_log,
            &[],
            VerifyOptions { from_start: true },
        );
        let mut ranges: Vec<SeqRange> = Vec::new();
        for e in &hub_log {
            if let EntryKind::NodePurge {
                node, ranges: r, ..
            } = &e.header.kind
            {
                if *node == self.node && e.signature_valid(&hub_cert.key) {
                    ranges.extend(r);
                }
            }
        }
        let certs: Vec<_> = self
            .store
            .certificates(&self.node)
            .expect("certs")
            .iter()
            .map(|c| self.anchor.check_device_der(&c.der).expect("cert"))
            .collect();
        let mut v = LogVerifier::new(
            self.node.clone(),
            NodeKeys::new(certs, &[]),
            VerifyOptions { from_start: true },
        );
        v.hub_purged(&ranges);
        for b in self.store.entries(&self.node, 0, 1000).expect("entries") {
            v.entry(&alpr_shared::log::SignedEntry::decode(&b).expect("decode"));
        }
        (hub_report, v.finish())
    }

    /// Whether anything the hub keeps still names `plate`, or holds the
    /// images of read `i`.
    fn recoverable(&self, plate: &str, i: u64) -> Vec<String> {
        let mut found = Vec::new();
        for b in self.store.entries(&self.node, 0, 1000).expect("entries") {
            if b.windows(plate.len()).any(|w| w == plate.as_bytes()) {
                found.push("an entry".to_owned());
            }
        }
        let all = (UnixMillis(0), UnixMillis(u64::MAX));
        if !self
            .store
            .reads_of_plate(plate, all.0, all.1)
            .expect("plate-time")
            .is_empty()
        {
            found.push("plate-time-v1".to_owned());
        }
        let listed = self.store.plates_from(0, usize::MAX).expect("plate-order");
        if listed.iter().any(|(_, p)| p == plate) {
            found.push("plate-order-v1".to_owned());
        }
        let c = content(plate, i);
        for h in [c.crop_hash, c.overview_hash] {
            if self.store.has_image(&h).expect("image") {
                found.push(format!("image {}", h.to_hex()));
            }
        }
        found
    }

    fn reads_in_area(&self) -> usize {
        let area = crate::store::GeoBox {
            lat_min_e7: 377_000_000,
            lat_max_e7: 378_000_000,
            lon_min_e7: -1_225_000_000,
            lon_max_e7: -1_224_000_000,
        };
        self.store
            .reads_in_box(
                &area,
                UnixMillis(0),
                UnixMillis(u64::MAX),
                None,
                1000,
                false,
            )
            .expect("geo")
            .placed
            .len()
    }
}

#[tokio::test]
async fn a_held_read_survives_a_year_and_a_day_and_goes_once_released() {
    let f = fixture();
    // A day after capture nothing is due.
    *f.now.lock().expect("now") = UnixMillis(day0() + DAY_MS);
    let r = f.retention.run(365).await.expect("run");
    assert_eq!((r.purged, r.held, r.records), (0, 0, 0));
    assert_eq!(f.reads_in_area(), 6);

    // A year and a day later: everything but the held and the recent read.
    *f.now.lock().expect("now") = UnixMillis(day0() + 366 * DAY_MS);
    let due = f.retention.survey(365).await.expect("survey");
    assert_eq!((due.purged, due.held, due.records), (4, 1, 0));
    assert_eq!(f.reads_in_area(), 6, "a survey purges nothing");
    let r = f.retention.run(365).await.expect("run");
    assert_eq!((r.purged, r.held, r.records), (4, 1, 1));
    assert_eq!(r.images, 8);
    assert_eq!(r.plates, 4);
    for (i, plate) in PLATES.iter().enumerate() {
        let left = f.recoverable(plate, i as u64);
        match *plate {
            "HELD1" | "RECENT9" => assert_eq!(left.len(), 5, "{plate} must be intact: {left:?}"),
            _ => assert!(left.is_empty(), "{plate} recoverable from {left:?}"),
        }
    }
    assert_eq!(f.reads_in_area(), 2);
    let (hub, node) = f.verify();
    assert!(hub.authentic(), "hub log: {:?}", hub.faults);
    assert!(node.authentic(), "node log: {:?}", node.faults);
    assert_eq!((node.reads, node.purged), (2, 4));
    assert_eq!(hub.device, f.hub.as_str());

    // Without the hub's records, the node's log would not verify.
    let mut bare = LogVerifier::new(
        f.node.clone(),
        NodeKeys::new(
            vec![f
                .anchor
                .check_device_der(&f.store.certificates(&f.node).expect("c")[0].der)
                .expect("cert")],
            &[],
        ),
        VerifyOptions { from_start: true },
    );
    for b in f.store.entries(&f.node, 0, 1000).expect("entries") {
        bare.entry(&alpr_shared::log::SignedEntry::decode(&b).expect("decode"));
    }
    assert_eq!(bare.finish().faults.len(), 4);

    // The hold is released: the next run purges the held read.
    f.holds.lock().expect("holds")[0].released = Some(Release {
        by: "sgt".into(),
        at: UnixMillis(day0() + 366 * DAY_MS),
        reason: "case closed".into(),
    });
    let r = f.retention.run(365).await.expect("run");
    assert_eq!((r.purged, r.held, r.records, r.plates), (1, 0, 1, 1));
    assert!(f.recoverable("HELD1", 2).is_empty());
    assert_eq!(f.recoverable("RECENT9", 5).len(), 5);
    let (hub, node) = f.verify();
    assert!(hub.authentic(), "hub log: {:?}", hub.faults);
    assert!(node.authentic(), "node log: {:?}", node.faults);
    assert_eq!((node.reads, node.purged, hub.purge_records), (1, 5, 2));
    assert_eq!(f.retention.last().map(|r| r.purged), Some(1));
    let done = purges(&*f.store).expect("purges");
    let reads: Vec<u64> = done.iter().map(|p| p.reads).collect();
    assert_eq!(reads, vec![4, 1]);
    assert!(done.iter().all(|p| p.node == "pole-1"));
}
