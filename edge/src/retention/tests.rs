//! An edge whose hold state is stale purges nothing; with fresh holds it
//! purges only acknowledged reads past retention and under no hold, its
//! log still verifies, and no purged plate is left in it.

use std::sync::Mutex;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::control::holds::HoldScope;
use alpr_shared::control::{Policy, SignedPolicy, POLICY_FORMAT};
use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::retention::DAY_MS;
use alpr_shared::log::verify::VerifyOptions;
use alpr_shared::log::{verify_log, EntryKind};
use alpr_shared::types::{DeviceId, DeviceKind, Hash32, Location, ReadContent, TimeSource};
use alpr_shared::wire::Receipt;

use super::*;

const PLATES: [&str; 5] = ["AAA111", "HELD1", "BBB222", "CCC333", "UNACK9"];

fn policy() -> SignedPolicy {
    Policy {
        format: POLICY_FORMAT,
        version: 1,
        issued_at: UnixMillis::now(),
        hub_retention_days: 365,
        edge_retention_days: 30,
        max_stale_ms: 3_600_000,
        officers: Vec::new(),
        agencies: Vec::new(),
        revoked_nodes: Vec::new(),
        hotlists: Default::default(),
        purposes: vec![alpr_shared::control::Purpose {
            code: "stolen-vehicle".into(),
            label: "Stolen vehicle".into(),
            case_required: false,
        }],
    }
    .sign(&alpr_shared::signer::dev::throwaway().expect("a policy key"))
    .expect("valid")
}

fn content(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Unknown,
        camera: "cam-1".into(),
        plate: plate.into(),
        confidence: 9000,
        char_confidence: vec![9000; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    }
}

fn hold() -> Hold {
    Hold {
        id: "hold-1".into(),
        case: "2026-0042".into(),
        reason: "homicide investigation".into(),
        placed_by: "sgt".into(),
        agency: "CA0000000".into(),
        placed_at: UnixMillis::now(),
        placed_on: "hub".into(),
        scope: HoldScope {
            plates: vec!["HELD1".into()],
            ..HoldScope::default()
        },
        released: None,
    }
}

fn image(plate: &str, what: &str) -> Vec<u8> {
    format!("{what} of {plate}").into_bytes()
}

#[tokio::test]
async fn stale_holds_purge_nothing_and_fresh_ones_purge_what_is_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = alpr_shared::pki::new_ca("Test PD", 30).expect("ca");
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem).expect("load");
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
    let name = DeviceId::new("veh-1").expect("name");
    let key = SecretKey::generate();
    let pem = authority
        .issue_device_for(&key, &name, DeviceKind::Vehicle, 800)
        .expect("issue");
    let cert = anchor.check_device_pem(pem.as_bytes()).expect("cert");
    let (store, _join) =
        StoreHandle::open(&dir.path().join("edge.redb"), key, name.clone()).expect("store");
    store
        .store_policy(&policy(), UnixMillis::now())
        .await
        .expect("policy");
    for plate in PLATES {
        store
            .append_read(
                content(plate),
                UnixMillis::now(),
                TimeSource::Ntp,
                image(plate, "crop"),
                image(plate, "overview"),
            )
            .await
            .expect("read");
    }
    // The hub acknowledged all but the last read, and holds their images.
    let head = store.entries_from(3, 1).expect("entry")[0].hash();
    store
        .set_acked(
            Receipt {
                format: 1,
                device: name.clone(),
                next_seq: 4,
                head,
                at: UnixMillis::now(),
            }
            .sign(&alpr_shared::signer::dev::throwaway().expect("a receipt key")),
        )
        .await
        .expect("acked");
    for (seq, plate) in PLATES.iter().enumerate().take(4) {
        for what in ["crop", "overview"] {
            store
                .image_done(seq as u64, sha256(&image(plate, what)))
                .await
                .expect("image done");
        }
    }

    let later = UnixMillis(UnixMillis::now().0 + 31 * DAY_MS);
    // Holds last refreshed two hours before: stale, nothing is purged.
    let refreshed = Arc::new(Mutex::new(Some(UnixMillis(later.0 - 2 * 3_600_000))));
    let r = refreshed.clone();
    let holds = move || (vec![hold()], *r.lock().expect("refreshed"));
    let o = run(&store, &holds, later).await.expect("run");
    assert!(matches!(o, Outcome::StaleHolds { .. }), "{o:?}");
    assert!(o.to_string().contains("keeping everything"), "{o}");
    let log = store.entries_from(0, 100).expect("entries");
    assert!(log.iter().all(|e| e.read().is_some()));

    // Fresh holds: the acknowledged reads under no hold go.
    *refreshed.lock().expect("refreshed") = Some(UnixMillis(later.0 - 60_000));
    let o = run(&store, &holds, later).await.expect("run");
    assert_eq!(
        o,
        Outcome::Ran {
            at: later,
            purged: 3,
            held: 1,
            images: 6,
            unacknowledged: 1,
        }
    );
    let log = store.entries_from(0, 100).expect("entries");
    let kept: Vec<&str> = log
        .iter()
        .filter_map(|e| e.read().map(|c| c.plate.as_str()))
        .collect();
    assert_eq!(kept, vec!["HELD1", "UNACK9"]);
    assert!(matches!(
        log.last().map(|e| &e.header.kind),
        Some(EntryKind::Purge { .. })
    ));
    let report = verify_log(&cert, &log, &[], VerifyOptions { from_start: true });
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(
        (report.reads, report.purged, report.purge_records),
        (2, 3, 1)
    );
    for plate in ["AAA111", "BBB222", "CCC333"] {
        for e in &log {
            assert!(!e
                .encode()
                .windows(plate.len())
                .any(|w| w == plate.as_bytes()));
        }
        assert!(store
            .reads_of_plate(plate, UnixMillis(0), UnixMillis(u64::MAX))
            .expect("plate")
            .is_empty());
        for what in ["crop", "overview"] {
            assert_eq!(
                store
                    .image_bytes(&sha256(&image(plate, what)))
                    .expect("image"),
                None
            );
        }
    }
    assert!(store
        .image_bytes(&sha256(&image("HELD1", "crop")))
        .expect("image")
        .is_some());
}
