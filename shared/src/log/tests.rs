//! Tamper tests: every way a log can be wrong must be named by the verifier.

use super::bundle::{verify_bundle, BundleWriter};
use super::verify::VerifyOptions;
use super::*;
use crate::cert::{CertError, TrustAnchor};
use crate::pki::{new_ca, Authority};
use crate::types::{DeviceKind, Location};
use proptest::prelude::*;

struct Fixture {
    anchor: TrustAnchor,
    authority: Authority,
    cert: crate::cert::DeviceCert,
    writer: LogWriter,
}

fn fixture() -> Fixture {
    let ca = new_ca("Test PD", 30).expect("ca");
    let authority = Authority::load(&ca.cert_pem, &ca.key_pem).expect("load ca");
    let name = DeviceId::new("pole-1").expect("name");
    let (issued, key) = authority
        .issue_device(&name, DeviceKind::Pole, 30)
        .expect("issue");
    let anchor = TrustAnchor::from_pem(ca.cert_pem.as_bytes()).expect("anchor");
    let cert = anchor
        .check_device_pem(issued.cert_pem.as_bytes())
        .expect("device cert");
    Fixture {
        anchor,
        authority,
        cert,
        writer: LogWriter::new(key, name),
    }
}

fn content(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Site {
            site_id: "main-st-north".into(),
        },
        camera: "cam0".into(),
        plate: plate.into(),
        confidence: 9_500,
        char_confidence: vec![9_000; plate.len()],
        issuer: crate::types::Issuer::Region("United States".into()),
        detector_model: "yolo-v9-t-416".into(),
        ocr_model: "cct-xs-v2".into(),
        crop_hash: Hash32([1; 32]),
        overview_hash: Hash32([2; 32]),
    }
}

fn write(f: &mut Fixture, n: usize) -> Vec<SignedEntry> {
    (0..n)
        .map(|i| {
            f.writer
                .append_read(
                    content(&format!("ABC{i}")),
                    UnixMillis::now(),
                    TimeSource::Ntp,
                )
                .expect("append")
        })
        .collect()
}

fn faults(f: &Fixture, entries: &[SignedEntry], cps: &[SignedCheckpoint]) -> Vec<Fault> {
    verify_log(&f.cert, entries, cps, VerifyOptions { from_start: true }).faults
}

#[test]
fn an_untouched_log_verifies() {
    let mut f = fixture();
    let log = write(&mut f, 20);
    let cp = f.writer.checkpoint(UnixMillis::now());
    let report = verify_log(&f.cert, &log, &[cp], VerifyOptions { from_start: true });
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.reads, 20);
    assert_eq!(report.size, 20);
}

#[test]
fn a_header_edit_breaks_the_signature() {
    let mut f = fixture();
    let mut log = write(&mut f, 5);
    log[2].header.captured_at = UnixMillis(log[2].header.captured_at.0 + 1);
    assert!(faults(&f, &log, &[]).contains(&Fault::BadSignature { seq: 2 }));
}

#[test]
fn a_content_edit_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 5);
    if let Some(b) = log[3].body.as_mut() {
        b.content.plate = "XYZ999".into();
    }
    assert_eq!(faults(&f, &log, &[]), vec![Fault::Edited { seq: 3 }]);
}

fn with_state(plate: &str, state: &str) -> ReadContent {
    ReadContent {
        issuer: crate::types::Issuer::Read {
            region: Some("United States".into()),
            state: crate::types::StateReading {
                state: Some(state.into()),
                confidence: 9_400,
                top: vec![(state.into(), 9_400), ("NV".into(), 300)],
                evidence: Some("printed \"California\"".into()),
                model: "ppocr-v4@971d7d5f".into(),
            },
        },
        ..content(plate)
    }
}

#[test]
fn a_read_with_its_state_verifies_and_an_edited_state_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 2);
    for (i, state) in ["CA", "AZ"].iter().enumerate() {
        let e = f
            .writer
            .append_read(
                with_state(&format!("ST{i}"), state),
                UnixMillis::now(),
                TimeSource::Ntp,
            )
            .expect("append");
        let back = SignedEntry::decode(&e.encode()).expect("decodes");
        assert_eq!(back.read().and_then(|r| r.issuer.state()), Some(*state));
        log.push(back);
    }
    let report = verify_log(&f.cert, &log, &[], VerifyOptions { from_start: true });
    assert!(report.authentic(), "{:?}", report.faults);
    // Old reads (a region, no state) and new ones in one log; then the
    // state of one is changed after signing: that read is named.
    if let Some(b) = log[3].body.as_mut() {
        if let crate::types::Issuer::Read { state, .. } = &mut b.content.issuer {
            state.state = Some("NV".into());
            state.top[0].0 = "NV".into();
        }
    }
    assert_eq!(faults(&f, &log, &[]), vec![Fault::Edited { seq: 3 }]);
}

#[test]
fn a_gap_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 6);
    log.remove(2);
    log.remove(2);
    assert_eq!(
        faults(&f, &log, &[]),
        vec![Fault::Gap { first: 2, last: 3 }]
    );
}

#[test]
fn a_missing_start_is_a_gap() {
    let mut f = fixture();
    let log = write(&mut f, 4);
    assert_eq!(
        faults(&f, &log[1..], &[]),
        vec![Fault::Gap { first: 0, last: 0 }]
    );
    let partial = verify_log(&f.cert, &log[1..], &[], VerifyOptions::default());
    assert!(partial.authentic(), "a set of entries need not start at 0");
}

#[test]
fn a_reorder_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 5);
    log.swap(1, 3);
    let found = faults(&f, &log, &[]);
    assert!(
        found
            .iter()
            .any(|x| matches!(x, Fault::Reorder { seq: 2, .. })),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|x| matches!(x, Fault::Reorder { seq: 1, .. })));
}

#[test]
fn a_fork_is_named() {
    let mut f = fixture();
    let log = write(&mut f, 4);
    // The same key signs a different entry 2 on top of entry 1.
    let key_pem = f.writer.key.to_pkcs8_pem().expect("pem");
    let key = crate::crypto::SecretKey::from_pkcs8_pem(&key_pem).expect("key");
    let mut other = LogWriter::resume(key, f.cert.name.clone(), 2, log[1].hash());
    let alt = other
        .append_read(content("FORK1"), UnixMillis::now(), TimeSource::Ntp)
        .expect("append");
    let mut forked = log.clone();
    forked.push(alt);
    assert!(faults(&f, &forked, &[]).contains(&Fault::Fork { seq: 2 }));

    // A node that shows two histories is also caught by its checkpoints.
    let cp_a = f.writer.checkpoint(UnixMillis::now());
    let cp_b = other.checkpoint(UnixMillis::now());
    let found = faults(&f, &log, &[cp_a, cp_b]);
    assert!(
        found.contains(&Fault::ConflictingCheckpoints { size: 3 })
            || found.contains(&Fault::CheckpointMismatch { size: 3 }),
        "{found:?}"
    );
}

#[test]
fn a_duplicate_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 3);
    log.push(log[2].clone());
    assert_eq!(faults(&f, &log, &[]), vec![Fault::Duplicate { seq: 2 }]);
}

#[test]
fn purges_need_a_record() {
    let mut f = fixture();
    let mut log = write(&mut f, 5);
    log[1].purge_content();
    assert_eq!(
        faults(&f, &log, &[]),
        vec![Fault::PurgedWithoutRecord { seq: 1 }]
    );

    log[0].purge_content();
    let record = f
        .writer
        .append_purge(
            vec![SeqRange { first: 0, last: 1 }],
            "retention 365d",
            UnixMillis::now(),
            TimeSource::Ntp,
        )
        .expect("purge");
    log.push(record);
    let report = verify_log(&f.cert, &log, &[], VerifyOptions { from_start: true });
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(
        (report.reads, report.purged, report.purge_records),
        (3, 2, 1)
    );
}

#[test]
fn a_purge_is_refused_beyond_its_own_log_but_a_node_purge_names_the_nodes_numbers() {
    let mut f = fixture();
    write(&mut f, 3);
    let purge = |w: &mut LogWriter, first, last| {
        w.append_purge(
            vec![SeqRange { first, last }],
            "retention 365d",
            UnixMillis::now(),
            TimeSource::Ntp,
        )
    };
    // The log holds entries 0..=2: its own purge may not name 3.
    assert!(matches!(
        purge(&mut f.writer, 2, 3),
        Err(InvalidValue::OutOfRange {
            field: "purge ranges"
        })
    ));
    assert!(matches!(
        purge(&mut f.writer, 2, 1),
        Err(InvalidValue::OutOfRange { .. })
    ));
    assert!(purge(&mut f.writer, 0, 2).is_ok());
    // The hub's record of a node's purge names the node's numbers, far
    // past the hub's own log.
    let mut hub = LogWriter::new(
        crate::crypto::SecretKey::generate(),
        DeviceId::new("hub").expect("name"),
    );
    let node_purge = |w: &mut LogWriter, ranges: Vec<SeqRange>| {
        w.append_node_purge(
            f.writer.device().clone(),
            ranges,
            "hub retention 365d",
            UnixMillis::now(),
            TimeSource::Ntp,
        )
    };
    let far = SeqRange {
        first: 1_000,
        last: 2_000,
    };
    assert!(node_purge(&mut hub, vec![far]).is_ok());
    assert!(matches!(
        node_purge(&mut hub, Vec::new()),
        Err(InvalidValue::OutOfRange {
            field: "node purge ranges"
        })
    ));
}

#[test]
fn a_hub_signed_node_purge_records_the_purge() {
    let mut f = fixture();
    let mut log = write(&mut f, 5);
    log[1].purge_content();
    log[2].purge_content();
    // The hub's own log, signed by the hub's key, says what it purged.
    let hub_key = crate::crypto::SecretKey::generate();
    let mut hub = LogWriter::new(hub_key, DeviceId::new("hub").expect("name"));
    let record = hub
        .append_node_purge(
            f.writer.device().clone(),
            vec![SeqRange { first: 1, last: 1 }],
            "hub retention 365d",
            UnixMillis::now(),
            TimeSource::Ntp,
        )
        .expect("node purge");
    assert!(SignedEntry::decode(&record.encode()).is_ok());
    let EntryKind::NodePurge { ranges, .. } = &record.header.kind else {
        panic!("a node purge")
    };
    let verify = |ranges: &[SeqRange]| {
        let mut v = verify::LogVerifier::new(
            f.writer.device().clone(),
            NodeKeys::single(&f.cert),
            VerifyOptions { from_start: true },
        );
        v.hub_purged(ranges);
        for e in &log {
            v.entry(e);
        }
        v.finish()
    };
    // Entry 2 is not covered by the hub's record: still a fault.
    assert_eq!(
        verify(ranges).faults,
        vec![Fault::PurgedWithoutRecord { seq: 2 }]
    );
    let report = verify(&[SeqRange { first: 1, last: 2 }]);
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!((report.reads, report.purged), (3, 2));
    // Without any hub record, both are faults.
    assert_eq!(verify(&[]).faults.len(), 2);
    // A bundle meets the hub's log after the node's: the same ranges,
    // given once the node's log is finished, clear exactly what they cover.
    let late = |hub: &[SeqRange]| {
        let mut v = verify::LogVerifier::new(
            f.writer.device().clone(),
            NodeKeys::single(&f.cert),
            VerifyOptions { from_start: true },
        );
        for e in &log {
            v.entry(e);
        }
        let waiting = v.finish_awaiting_hub();
        let mut set = verify::RangeSet::default();
        for r in hub {
            set.insert(r.first, r.last);
        }
        waiting.resolve(Some(&set))
    };
    assert_eq!(
        late(ranges).faults,
        vec![Fault::PurgedWithoutRecord { seq: 2 }]
    );
    let report = late(&[SeqRange { first: 1, last: 2 }]);
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.purged, 2);
}

#[test]
fn a_purged_entry_keeps_no_trace_of_its_plate() {
    let mut f = fixture();
    let mut log = write(&mut f, 1);
    let plate = log[0].read().expect("read").plate.clone();
    log[0].purge_content();
    let bytes = log[0].encode();
    assert!(!bytes.windows(plate.len()).any(|w| w == plate.as_bytes()));
    // Without the salt, hashing the candidate plate does not find the commitment.
    let guess = content(&plate);
    let EntryKind::Read { content: committed } = &log[0].header.kind else {
        panic!("a read")
    };
    assert_ne!(content_commitment(&[0; 32], &guess), *committed);
}

#[test]
fn a_deleted_tail_is_caught_by_a_checkpoint() {
    let mut f = fixture();
    let log = write(&mut f, 6);
    let cp = f.writer.checkpoint(UnixMillis::now());
    assert_eq!(
        faults(&f, &log[..4], &[cp]),
        vec![Fault::MissingTail {
            checkpoint_size: 6,
            log_size: 4
        }]
    );
}

#[test]
fn a_rewritten_history_is_caught_by_a_checkpoint() {
    let mut f = fixture();
    let log = write(&mut f, 3);
    let cp = f.writer.checkpoint(UnixMillis::now());
    // The node rewrites entry 2 and re-signs it.
    let key_pem = f.writer.key.to_pkcs8_pem().expect("pem");
    let key = crate::crypto::SecretKey::from_pkcs8_pem(&key_pem).expect("key");
    let mut w = LogWriter::resume(key, f.cert.name.clone(), 2, log[1].hash());
    let mut rewritten = log[..2].to_vec();
    rewritten.push(
        w.append_read(content("NEW1"), UnixMillis::now(), TimeSource::Ntp)
            .expect("append"),
    );
    assert_eq!(
        faults(&f, &rewritten, &[cp]),
        vec![Fault::CheckpointMismatch { size: 3 }]
    );
}

#[test]
fn a_forged_checkpoint_is_named() {
    let mut f = fixture();
    let log = write(&mut f, 2);
    let mut cp = f.writer.checkpoint(UnixMillis::now());
    cp.checkpoint.size = 1;
    assert_eq!(
        faults(&f, &log, &[cp]),
        vec![Fault::CheckpointBadSignature { size: 1 }]
    );
}

#[test]
fn entries_from_another_key_fail() {
    let mut f = fixture();
    let log = write(&mut f, 2);
    let stranger = crate::crypto::SecretKey::generate();
    let mut w = LogWriter::new(stranger, f.cert.name.clone());
    let forged = w
        .append_read(content("FAKE1"), UnixMillis::now(), TimeSource::Ntp)
        .expect("append");
    let mut mixed = vec![forged];
    mixed.extend(log[1..].iter().cloned());
    assert!(faults(&f, &mixed, &[]).contains(&Fault::BadSignature { seq: 0 }));
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let f = fixture();
    let other = new_ca("Other PD", 30).expect("ca");
    let other_auth = Authority::load(&other.cert_pem, &other.key_pem).expect("load");
    let (issued, _) = other_auth
        .issue_device(&f.cert.name, DeviceKind::Pole, 30)
        .expect("issue");
    assert_eq!(
        f.anchor.check_device_pem(issued.cert_pem.as_bytes()).err(),
        Some(CertError::UnknownIssuer)
    );
}

#[test]
fn a_wrongly_issued_certificate_is_refused() {
    let f = fixture();
    let (pem, _) = f
        .authority
        .issue_wrong_purpose(&DeviceId::new("odd").expect("id"))
        .expect("issue");
    assert!(matches!(
        f.anchor.check_device_pem(pem.as_bytes()),
        Err(CertError::WronglyIssued(_))
    ));
    // The CA certificate itself is not a node certificate.
    assert!(f.anchor.check_device_der(f.anchor.der()).is_err());
}

#[test]
fn bundles_round_trip_and_verify() {
    let mut f = fixture();
    let log = write(&mut f, 10);
    let cp = f.writer.checkpoint(UnixMillis::now());
    let (key, _) = f
        .authority
        .issue_signer(crate::cert::KeyPurpose::Export, "hub", 30)
        .expect("export key");
    let hub_key: crate::signer::HubKey<crate::signer::ExportSigning> =
        crate::signer::HubKey::from_pem(key.key_pem.as_bytes(), key.cert_pem.as_bytes(), &f.anchor)
            .expect("export key");
    let hub_der = hub_key.cert_der().to_vec();
    let mut w = BundleWriter::new(Vec::new()).expect("writer");
    w.hub_certificate(&hub_der).expect("hub cert");
    w.certificate(&f.cert.der).expect("cert");
    w.checkpoint(&cp).expect("cp");
    for e in &log {
        w.entry(e).expect("entry");
    }
    let bytes = w
        .finish_signed(&hub_key, UnixMillis::now())
        .expect("finish");
    let opts = VerifyOptions { from_start: true };
    let b = verify_bundle(&bytes[..], &f.anchor, opts).expect("read");
    let reports = b.logs;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].authentic(), "{:?}", reports[0].faults);
    assert!(b.faults.is_empty(), "{:?}", b.faults);

    // Truncation and garbage are errors, not panics.
    assert!(verify_bundle(&bytes[..bytes.len() - 3], &f.anchor, opts).is_err());
    assert!(verify_bundle(&b"not a bundle"[..], &f.anchor, opts).is_err());
}

#[test]
fn bad_bytes_give_errors() {
    let mut f = fixture();
    let e = write(&mut f, 1).remove(0);
    let bytes = e.encode();
    assert!(matches!(
        SignedEntry::decode(&bytes[..bytes.len() / 2]),
        Err(DecodeError::Malformed(_))
    ));
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 2;
    assert!(matches!(
        SignedEntry::decode(&wrong_version),
        Err(DecodeError::Version(2))
    ));
    assert!(matches!(
        SignedEntry::decode(&vec![0u8; MAX_ENTRY_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    let mut long = e.clone();
    if let Some(b) = long.body.as_mut() {
        b.content.plate = "A".repeat(40);
        b.content.char_confidence = vec![1; 40];
    }
    assert!(matches!(
        SignedEntry::decode(&long.encode()),
        Err(DecodeError::Invalid(_))
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        SignedEntry::decode(&trailing),
        Err(DecodeError::Trailing(1))
    ));
}

/// `content` sealed with the test vectors' fixed key, node, time and salt.
fn vector_entry(content: ReadContent) -> SignedEntry {
    let key = crate::crypto::SecretKey::from_bytes(&[0x42; 32]);
    let mut w = LogWriter::new(key, DeviceId::new("pole-7").expect("id"));
    w.append_read_salted(
        content,
        UnixMillis(1_795_868_054_123),
        TimeSource::Gps,
        [0x11; 32],
    )
    .expect("append")
}

/// The format is a contract: a fixed key, entry and salt give fixed bytes
/// and a fixed signature. If this test fails, the wire and storage format
/// changed: bump FORMAT_VERSION and keep a decoder for the old one.
#[test]
fn test_vector() {
    let e = vector_entry(content("7ABC123"));
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/log/testdata");
        std::fs::write(format!("{dir}/entry-v1.hex"), hex::encode(e.encode())).expect("write");
        std::fs::write(format!("{dir}/entry-v1.sig"), hex::encode(e.signature.0)).expect("write");
        std::fs::write(format!("{dir}/entry-v1.hash"), e.hash().to_hex()).expect("write");
        return;
    }
    assert_eq!(
        hex::encode(e.encode()),
        include_str!("testdata/entry-v1.hex").trim()
    );
    assert_eq!(
        hex::encode(e.signature.0),
        include_str!("testdata/entry-v1.sig").trim()
    );
    assert_eq!(
        e.hash().to_hex(),
        include_str!("testdata/entry-v1.hash").trim()
    );
}

/// The same for a read that carries a state reading (issuer tag 2): its
/// bytes are fixed too.
#[test]
fn state_test_vector() {
    let e = vector_entry(with_state("7ABC123", "CA"));
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/log/testdata");
        std::fs::write(format!("{dir}/entry-v1-state.hex"), hex::encode(e.encode()))
            .expect("write");
        return;
    }
    assert_eq!(
        hex::encode(e.encode()),
        include_str!("testdata/entry-v1-state.hex").trim()
    );
}

fn arb_content() -> impl Strategy<Value = ReadContent> {
    (
        "[A-Z0-9]{1,12}",
        any::<u16>(),
        any::<i32>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(plate, c, lat, h)| {
            let mut r = content(&plate);
            r.confidence = c % 10_001;
            r.location = Location::Gps {
                lat_e7: lat % 900_000_000,
                lon_e7: 0,
                accuracy_cm: 500,
            };
            r.crop_hash = Hash32(h);
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedEntry::decode(&bytes);
        let _ = SignedCheckpoint::decode(&bytes);
    }

    #[test]
    fn entries_round_trip(c in arb_content(), t in any::<u64>()) {
        let key = crate::crypto::SecretKey::from_bytes(&[3; 32]);
        let mut w = LogWriter::new(key, DeviceId::new("v-1").expect("id"));
        let e = w.append_read(c, UnixMillis(t), TimeSource::LocalClock).expect("append");
        let back = SignedEntry::decode(&e.encode()).expect("decode");
        prop_assert_eq!(&back, &e);
        prop_assert!(back.signature_valid(&w.public_key()));
    }

    /// Flipping any one byte of an encoded entry is either refused by the
    /// decoder or caught by the signature or the content commitment.
    #[test]
    fn any_bit_flip_is_detected(c in arb_content(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = crate::crypto::SecretKey::from_bytes(&[5; 32]);
        let mut w = LogWriter::new(key, DeviceId::new("v-2").expect("id"));
        let e = w.append_read(c, UnixMillis(1), TimeSource::Ntp).expect("append");
        let mut bytes = e.encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(d) = SignedEntry::decode(&bytes) {
            prop_assert!(d == e || !d.signature_valid(&w.public_key()) || !d.body_matches());
            prop_assert!(d != e);
        }
    }
}

fn access(user: &str) -> AccessRecord {
    AccessRecord {
        user: user.into(),
        agency: "CA0194200".into(),
        action: AccessAction::Search,
        purpose: Some("stolen-vehicle".into()),
        case: Some("24-001".into()),
        query: "plate=7ABC123 mode=exact".into(),
        results: 1,
        outcome: AccessOutcome::Allowed,
        source: "10.0.0.5".into(),
    }
}

#[test]
fn access_records_share_the_read_chain_and_an_edit_is_named() {
    let mut f = fixture();
    let mut log = write(&mut f, 2);
    log.push(
        f.writer
            .append_access(access("officer1"), UnixMillis::now(), TimeSource::Ntp)
            .expect("access"),
    );
    log.extend(write(&mut f, 1));
    let report = verify_log(&f.cert, &log, &[], VerifyOptions { from_start: true });
    assert!(report.authentic(), "{report:?}");
    assert_eq!((report.reads, report.accesses), (3, 1));
    // The record survives a purge of the log's content: it is in the header.
    log[2].purge_content();
    assert_eq!(log[2].access().map(|r| r.user.as_str()), Some("officer1"));
    // Editing who searched breaks the entry's signature.
    let mut edited = log.clone();
    if let EntryKind::Access(r) = &mut edited[2].header.kind {
        r.user = "someone-else".into();
    }
    assert!(faults(&f, &edited, &[]).contains(&Fault::BadSignature { seq: 2 }));
    // An access entry never carries a read body.
    let mut smuggled = log[2].clone();
    smuggled.body = log[0].body.clone();
    assert!(SignedEntry::decode(&smuggled.encode()).is_err());
}

/// An alert and a disposition, as in the alert vector.
fn alert_entries() -> Vec<SignedEntry> {
    use crate::hotlist::{AlertLevel, Category, HotEntry, ListRef, MatchKind, Substitution};
    use alert::{ActionTaken, ReadCheck, Stage};
    let key = crate::crypto::SecretKey::from_bytes(&[0x42; 32]);
    let mut w = LogWriter::new(key, DeviceId::new("pole-7").expect("id"));
    let read = w
        .append_read_salted(
            content("7ABC123"),
            UnixMillis(1_795_868_054_123),
            TimeSource::Gps,
            [0x11; 32],
        )
        .expect("read");
    let alert = w
        .append_alert(
            AlertRecord {
                read_seq: read.seq(),
                list: ListRef::Bulk {
                    source: "ncic".into(),
                    generation: 4,
                    issued_at: UnixMillis(1_795_860_000_000),
                },
                entry: HotEntry {
                    plate: "7ABC123".into(),
                    state: "CA".into(),
                    category: Category::StolenVehicle,
                    make: "HOND".into(),
                    model: "CIV".into(),
                    colour: "BLU".into(),
                    nic: "V123456789".into(),
                    ..HotEntry::default()
                },
                kind: MatchKind::OcrEquivalent {
                    substitutions: vec![Substitution {
                        position: 3,
                        read: '8',
                        listed: 'B',
                    }],
                },
                matched_text: "7A8C123".into(),
                level: AlertLevel::Urgent,
                covert: false,
                list_age_ms: 8_054_123,
                list_stale: false,
                past_match: false,
            },
            UnixMillis(1_795_868_054_200),
            TimeSource::Gps,
        )
        .expect("alert");
    let disposed = w
        .append_disposition(
            DispositionRecord {
                alert_seq: alert.seq(),
                stage: Stage::Read(ReadCheck::Correct),
                user: "ofc.diaz".into(),
                agency: "CA0010000".into(),
                note: String::new(),
            },
            UnixMillis(1_795_868_060_000),
            TimeSource::Gps,
        )
        .expect("disposition");
    let acted = w
        .append_disposition(
            DispositionRecord {
                alert_seq: alert.seq(),
                stage: Stage::Action(ActionTaken::NoStop),
                user: "ofc.diaz".into(),
                agency: "CA0010000".into(),
                note: "owner recovered it".into(),
            },
            UnixMillis(1_795_868_070_000),
            TimeSource::Gps,
        )
        .expect("disposition");
    vec![read, alert, disposed, acted]
}

/// The alert kinds are a contract too (they were appended to `EntryKind`,
/// so older entries keep their bytes): fixed inputs give fixed bytes.
#[test]
fn alert_vector() {
    let entries = alert_entries();
    let hex: Vec<String> = entries.iter().map(|e| hex::encode(e.encode())).collect();
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/log/testdata");
        std::fs::write(format!("{dir}/alert-v1.hex"), hex.join("\n")).expect("write");
        return;
    }
    let want: Vec<&str> = include_str!("testdata/alert-v1.hex")
        .lines()
        .map(str::trim)
        .collect();
    assert_eq!(hex, want);
    // The read keeps the bytes of the read vector: nothing before the new
    // kinds moved.
    assert_eq!(want[0], include_str!("testdata/entry-v1.hex").trim());
    for (e, h) in entries.iter().zip(&want) {
        let decoded = SignedEntry::decode(&hex::decode(h).expect("hex")).expect("decodes");
        assert_eq!(&decoded, e);
    }
    assert!(entries[1].alert().is_some() && entries[2].disposition().is_some());
}

/// An alert raised by an alternative reading (`YG9*` listed, YG8E4F
/// read, its first alternative YG9E4F), as in its vector.
fn alternative_alert() -> SignedEntry {
    use crate::hotlist::{AlertLevel, Category, HotEntry, ListRef, MatchKind};
    let key = crate::crypto::SecretKey::from_bytes(&[0x42; 32]);
    let mut w = LogWriter::new(key, DeviceId::new("pole-7").expect("id"));
    w.append_read_salted(
        content("YG8E4F"),
        UnixMillis(1_795_868_054_123),
        TimeSource::Gps,
        [0x11; 32],
    )
    .expect("read");
    w.append_alert(
        AlertRecord {
            read_seq: 0,
            list: ListRef::Local { id: "w-17".into() },
            entry: HotEntry {
                plate: "YG9*".into(),
                category: Category::Suspect,
                note: "hit and run".into(),
                ..HotEntry::default()
            },
            kind: MatchKind::Alternative {
                best: "YG8E4F".into(),
                rank: 1,
                probability: 2_100,
                how: Box::new(MatchKind::Wildcard {
                    pattern: "YG9*".into(),
                }),
            },
            matched_text: "YG9E4F".into(),
            level: AlertLevel::Urgent,
            covert: false,
            list_age_ms: 0,
            list_stale: false,
            past_match: false,
        },
        UnixMillis(1_795_868_054_200),
        TimeSource::Gps,
    )
    .expect("alert")
}

/// The alternative kind was appended to the kinds: the alert vector above
/// keeps its bytes, and an alternative's alert has fixed bytes too.
#[test]
fn alternative_alert_vector() {
    let alert = alternative_alert();
    let hex = hex::encode(alert.encode());
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/log/testdata");
        std::fs::write(format!("{dir}/alert-alternative-v1.hex"), &hex).expect("write");
        return;
    }
    assert_eq!(
        hex,
        include_str!("testdata/alert-alternative-v1.hex").trim()
    );
    let decoded = SignedEntry::decode(&alert.encode()).expect("decodes");
    let record = decoded.alert().expect("an alert");
    assert_eq!(record.plate_read(), "YG8E4F", "the plate as read");
    let alt = record.alternative().expect("an alternative matched");
    assert_eq!(
        (alt.text.as_str(), alt.rank, alt.probability),
        ("YG9E4F", 1, 2_100)
    );
    assert!(
        alt.notice().contains("compare the crop") && record.kind_text().contains("#1 (21.0%)"),
        "{}",
        record.kind_text()
    );
}

/// An alternative inside an alternative, or out of its bounds, is never
/// signed; and bytes that nest one never decode.
#[test]
fn an_alternative_alert_out_of_bounds_is_refused() {
    use crate::hotlist::MatchKind;
    let mut f = fixture();
    let read = f
        .writer
        .append_read(content("YG8E4F"), UnixMillis::now(), TimeSource::Ntp)
        .expect("read");
    let template = alternative_alert().alert().cloned().expect("alert");
    let MatchKind::Alternative { how, .. } = &template.kind else {
        panic!("an alternative")
    };
    let bad = |kind: MatchKind| AlertRecord {
        read_seq: read.seq(),
        kind,
        ..template.clone()
    };
    let nested = MatchKind::Alternative {
        best: "YG8E4F".into(),
        rank: 1,
        probability: 2_100,
        how: Box::new(template.kind.clone()),
    };
    for kind in [
        nested.clone(),
        MatchKind::Alternative {
            best: "YG8E4F".into(),
            rank: 0,
            probability: 2_100,
            how: how.clone(),
        },
        MatchKind::Alternative {
            best: "YG8E4F".into(),
            rank: 9,
            probability: 2_100,
            how: how.clone(),
        },
        MatchKind::Alternative {
            best: "YG8E4F".into(),
            rank: 1,
            probability: 10_001,
            how: how.clone(),
        },
    ] {
        assert!(
            f.writer
                .append_alert(bad(kind.clone()), UnixMillis::now(), TimeSource::Ntp)
                .is_err(),
            "{kind:?}"
        );
    }
    // Written by hand: the kind's tag 5 (alternative) again where the
    // alternative's own match goes.
    let bytes = postcard::to_allocvec(&bad(MatchKind::Exact)).expect("encodes");
    let mut nested_bytes = postcard::to_allocvec(&bad(template.kind.clone())).expect("encodes");
    assert!(postcard::from_bytes::<AlertRecord>(&bytes).is_ok());
    assert!(postcard::from_bytes::<AlertRecord>(&nested_bytes).is_ok());
    let wildcard_tag = nested_bytes
        .windows(5)
        .position(|w| w == [4, 4, b'Y', b'G', b'9'])
        .expect("the wildcard inside the alternative");
    nested_bytes[wildcard_tag] = 5;
    assert!(postcard::from_bytes::<AlertRecord>(&nested_bytes).is_err());
    assert!(postcard::to_allocvec(&bad(nested)).is_err());
}

#[test]
fn alert_entries_verify_and_are_never_content() {
    let mut f = fixture();
    let read = f
        .writer
        .append_read(content("7ABC123"), UnixMillis::now(), TimeSource::Ntp)
        .expect("read");
    let mut template = alert_entries()[1].alert().cloned().expect("alert");
    template.read_seq = read.seq();
    let alert = f
        .writer
        .append_alert(template.clone(), UnixMillis::now(), TimeSource::Ntp)
        .expect("alert");
    assert!(alert.body_matches());
    // An alert naming a read that is not before it is refused.
    template.read_seq = 99;
    assert!(f
        .writer
        .append_alert(template.clone(), UnixMillis::now(), TimeSource::Ntp)
        .is_err());
    // Unbounded text is refused.
    template.read_seq = 0;
    template.entry.note = "x".repeat(500);
    assert!(f
        .writer
        .append_alert(template, UnixMillis::now(), TimeSource::Ntp)
        .is_err());
    let entries = vec![read, alert];
    let report = verify_log(&f.cert, &entries, &[], VerifyOptions { from_start: true });
    assert!(report.faults.is_empty(), "{:?}", report.faults);
}

proptest! {
    #[test]
    fn alert_bytes_never_panic_the_decoder(cut in 0usize..2000, flip in any::<(usize, u8)>()) {
        for bytes in [alert_entries()[1].encode(), alternative_alert().encode()] {
            let mut b = bytes[..cut.min(bytes.len())].to_vec();
            if !b.is_empty() {
                let i = flip.0 % b.len();
                b[i] ^= flip.1;
            }
            let _ = SignedEntry::decode(&b);
        }
    }
}
