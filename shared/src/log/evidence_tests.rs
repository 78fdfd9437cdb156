//! Evidence tests: renewed and revoked certificates, and signed, complete
//! bundles where any dropped, added or changed byte is reported.

use super::bundle::{verify_bundle, BundleFault, BundleReport, BundleWriter};
use super::verify::{verify_node_log, NodeKeys, VerifyOptions};
use super::*;
use crate::cert::{DeviceCert, Revocation, TrustAnchor};
use crate::crypto::SecretKey;
use crate::pki::Authority;
use crate::signer::{dev::Deployment, ExportSigning, HubKey};
use crate::types::{DeviceKind, Location};

const FULL: VerifyOptions = VerifyOptions { from_start: true };

struct Pki {
    anchor: TrustAnchor,
    authority: Authority,
    /// The hub's export key and its certificate.
    hub_der: Vec<u8>,
    hub_key: HubKey<ExportSigning>,
    /// The hub's TLS key and certificate (which may sign nothing).
    tls: (SecretKey, Vec<u8>),
}

fn pki() -> Pki {
    let d = Deployment::new().expect("deployment");
    let hub_key: HubKey<ExportSigning> = d.key("hub").expect("export key");
    let tls = d.tls().expect("tls");
    Pki {
        anchor: d.anchor,
        authority: d.authority,
        hub_der: hub_key.cert_der().to_vec(),
        hub_key,
        tls,
    }
}

/// A fresh key certified by `p`'s CA for `purpose` alone, and its
/// certificate (DER).
fn certified(p: &Pki, purpose: crate::cert::KeyPurpose) -> (SecretKey, Vec<u8>) {
    let key = SecretKey::generate();
    let pem = p
        .authority
        .issue_usages_between(
            &key,
            "hub",
            &[purpose],
            &[],
            crate::signer::dev::since(),
            crate::signer::dev::until(),
        )
        .expect("certificate");
    let der = crate::cert::pem_certificates(pem.as_bytes())
        .expect("pem")
        .remove(0);
    (key, der)
}

/// A fresh certificate and key for `name` (a renewal makes a new key).
fn enroll(p: &Pki, name: &str) -> (DeviceCert, SecretKey) {
    let name = DeviceId::new(name).expect("name");
    let (issued, key) = p
        .authority
        .issue_device(&name, DeviceKind::Pole, 30)
        .expect("issue");
    let cert = p
        .anchor
        .check_device_pem(issued.cert_pem.as_bytes())
        .expect("device cert");
    (cert, key)
}

fn copy(key: &SecretKey) -> SecretKey {
    SecretKey::from_pkcs8_pem(&key.to_pkcs8_pem().expect("pem")).expect("key")
}

fn read(w: &mut LogWriter, i: usize, at: UnixMillis) -> SignedEntry {
    let plate = format!("ABC{i}");
    w.append_read(
        ReadContent {
            location: Location::Site {
                site_id: "main-st-north".into(),
            },
            camera: "cam0".into(),
            char_confidence: vec![9_000; plate.len()],
            plate,
            confidence: 9_500,
            issuer: Default::default(),
            detector_model: "d".into(),
            ocr_model: "o".into(),
            crop_hash: Hash32([1; 32]),
            overview_hash: Hash32([2; 32]),
        },
        at,
        TimeSource::Ntp,
    )
    .expect("append")
}

/// A node's log whose key changes at `switch`: entries before it are
/// signed by the first certificate, from it on by the second.
fn renewed_log(
    p: &Pki,
    name: &str,
    n: usize,
    switch: usize,
) -> (Vec<DeviceCert>, Vec<SignedEntry>, LogWriter) {
    let (old, old_key) = enroll(p, name);
    let (new, new_key) = enroll(p, name);
    let device = old.name.clone();
    let mut w = LogWriter::new(old_key, device.clone());
    let mut log = Vec::new();
    for i in 0..n {
        if i == switch {
            w = LogWriter::resume(copy(&new_key), device.clone(), w.len(), w.head());
        }
        log.push(read(&mut w, i, UnixMillis::now()));
    }
    (vec![old, new], log, w)
}

#[test]
fn a_renewed_nodes_whole_history_verifies() {
    let p = pki();
    let (certs, log, w) = renewed_log(&p, "pole-1", 6, 3);
    let cp = w.checkpoint(UnixMillis::now());
    let device = certs[0].name.clone();
    let report = verify_node_log(
        device.clone(),
        NodeKeys::new(certs.clone(), &[]),
        &log,
        [&cp],
        FULL,
    );
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.reads, 6);

    // With only the certificate it holds now, the history before fails.
    let report = verify_node_log(
        device,
        NodeKeys::new(vec![certs[1].clone()], &[]),
        &log,
        [&cp],
        FULL,
    );
    assert!(report.faults.contains(&Fault::BadSignature { seq: 0 }));
}

#[test]
fn an_older_key_after_a_newer_one_is_a_fault() {
    let p = pki();
    let (old, old_key) = enroll(&p, "pole-1");
    let (new, new_key) = enroll(&p, "pole-1");
    let device = old.name.clone();
    let mut w = LogWriter::new(copy(&old_key), device.clone());
    let mut log = vec![read(&mut w, 0, UnixMillis::now())];
    let mut w = LogWriter::resume(new_key, device.clone(), 1, w.head());
    log.push(read(&mut w, 1, UnixMillis::now()));
    let mut w = LogWriter::resume(old_key, device.clone(), 2, w.head());
    log.push(read(&mut w, 2, UnixMillis::now()));
    let report = verify_node_log(
        device,
        NodeKeys::new(vec![old.clone(), new], &[]),
        &log,
        [],
        FULL,
    );
    assert_eq!(
        report.faults,
        vec![Fault::KeyWentBack {
            seq: 2,
            serial: old.serial
        }]
    );
}

#[test]
fn entries_signed_after_revocation_are_reported() {
    let p = pki();
    let (cert, key) = enroll(&p, "pole-1");
    let mut w = LogWriter::new(key, cert.name.clone());
    let t = UnixMillis::now().0;
    let log: Vec<SignedEntry> = (0..5)
        .map(|i| read(&mut w, i, UnixMillis(t + 1000 * i as u64)))
        .collect();
    let revoked = Revocation {
        serial: cert.serial.to_ascii_uppercase(),
        effective_at: UnixMillis(t + 3000),
        reason: "stolen".into(),
    };
    let report = verify_node_log(
        cert.name.clone(),
        NodeKeys::new(vec![cert.clone()], &[revoked]),
        &log,
        [],
        FULL,
    );
    assert_eq!(
        report.faults,
        vec![
            Fault::SignedAfterRevocation {
                seq: 3,
                serial: cert.serial.clone()
            },
            Fault::SignedAfterRevocation {
                seq: 4,
                serial: cert.serial.clone()
            }
        ]
    );
}

/// Records of a bundle: (kind, bytes), the manifest last.
fn records(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at < bytes.len() {
        let kind = bytes[at];
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        out.push((kind, bytes[at + 5..at + 5 + len].to_vec()));
        at += 5 + len;
    }
    out
}

fn assemble(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = super::bundle::MAGIC.to_vec();
    for (kind, b) in records {
        out.push(*kind);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// A real bundle: pole-1 renewed halfway, pole-2 with one certificate,
/// each with its checkpoint, and a revocation of another serial.
fn bundle(p: &Pki, n: usize) -> Vec<u8> {
    bundle_signed(p, n, &p.hub_key)
}

/// [`bundle`] whose manifest `key` signs, under its certificate.
fn bundle_signed(p: &Pki, n: usize, key: &HubKey<ExportSigning>) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new()).expect("writer");
    w.hub_certificate(key.cert_der()).expect("hub cert");
    w.revocation(&Revocation {
        serial: "0badc0de".into(),
        effective_at: UnixMillis(1),
        reason: "lost".into(),
    })
    .expect("revocation");
    for (name, switch) in [("pole-1", n / 2), ("pole-2", n)] {
        let (certs, log, lw) = renewed_log(p, name, n, switch);
        let used = if switch < n { &certs[..] } else { &certs[..1] };
        for c in used {
            w.certificate(&c.der).expect("cert");
        }
        w.checkpoint(&lw.checkpoint(UnixMillis::now()))
            .expect("checkpoint");
        for e in &log {
            w.entry(e).expect("entry");
        }
    }
    w.finish_signed(key, UnixMillis::now()).expect("finish")
}

fn verdict(p: &Pki, bytes: &[u8]) -> Result<BundleReport, String> {
    verify_bundle(bytes, &p.anchor, FULL).map_err(|e| e.to_string())
}

fn faults_of(p: &Pki, bytes: &[u8]) -> Vec<BundleFault> {
    let r = verdict(p, bytes).expect("readable");
    assert!(!r.authentic(), "verified as authentic");
    r.faults
}

#[test]
fn a_signed_bundle_verifies() {
    let p = pki();
    let r = verdict(&p, &bundle(&p, 4)).expect("readable");
    assert!(r.authentic(), "{:?} {:?}", r.faults, r.logs);
    assert_eq!(r.logs.len(), 2);
    assert_eq!(r.logs.iter().map(|l| l.reads).sum::<u64>(), 8);
    assert_eq!(r.hub.as_deref(), Some("hub"));
}

#[test]
fn a_dropped_node_is_reported() {
    let p = pki();
    let recs = records(&bundle(&p, 4));
    let pole2: Vec<(u8, Vec<u8>)> = recs
        .into_iter()
        .filter(|(k, b)| {
            let of_pole2 = match k {
                1 => crate::cert::claimed_name(b).is_ok_and(|n| n.as_str() == "pole-2"),
                2 => SignedEntry::decode(b).is_ok_and(|e| e.header.device.as_str() == "pole-2"),
                3 => SignedCheckpoint::decode(b)
                    .is_ok_and(|c| c.checkpoint.device.as_str() == "pole-2"),
                _ => false,
            };
            !of_pole2
        })
        .collect();
    let f = faults_of(&p, &assemble(&pole2));
    assert!(
        f.contains(&BundleFault::MissingNode {
            device: "pole-2".into()
        }),
        "{f:?}"
    );
    assert!(f.contains(&BundleFault::Altered), "{f:?}");
}

#[test]
fn a_dropped_tail_with_its_checkpoint_is_reported() {
    let p = pki();
    let mut recs = records(&bundle(&p, 4));
    // pole-2's records are last before the manifest: its last two entries,
    // and its checkpoint.
    let manifest = recs.pop().expect("manifest");
    recs.truncate(recs.len() - 2);
    let cp = recs
        .iter()
        .rposition(|(k, _)| *k == 3)
        .expect("a checkpoint");
    recs.remove(cp);
    recs.push(manifest);
    let f = faults_of(&p, &assemble(&recs));
    assert!(
        f.contains(&BundleFault::NodeSize {
            device: "pole-2".into(),
            signed: 4,
            found: 2
        }),
        "{f:?}"
    );
    assert!(
        f.contains(&BundleFault::MissingCheckpoint {
            device: "pole-2".into()
        }),
        "{f:?}"
    );
}

#[test]
fn dropped_checkpoints_are_reported() {
    let p = pki();
    let recs: Vec<_> = records(&bundle(&p, 4))
        .into_iter()
        .filter(|(k, _)| *k != 3)
        .collect();
    let f = faults_of(&p, &assemble(&recs));
    for device in ["pole-1", "pole-2"] {
        assert!(
            f.contains(&BundleFault::MissingCheckpoint {
                device: device.into()
            }),
            "{f:?}"
        );
    }
    assert!(f.contains(&BundleFault::Altered), "{f:?}");
}

#[test]
fn an_added_record_is_reported() {
    let p = pki();
    let mut recs = records(&bundle(&p, 4));
    let signed = recs.len() as u64 - 1;
    // A copy of an entry placed right after it: a duplicate the node's
    // own log would not show as a fault of the hub.
    let at = recs.iter().position(|(k, _)| *k == 2).expect("an entry");
    recs.insert(at + 1, recs[at].clone());
    let f = faults_of(&p, &assemble(&recs));
    assert!(f.contains(&BundleFault::Altered), "{f:?}");
    assert!(
        f.contains(&BundleFault::RecordCount {
            signed,
            found: signed + 1
        }),
        "{f:?}"
    );
}

#[test]
fn a_manifest_not_signed_by_the_hub_is_reported() {
    let p = pki();
    let bytes = bundle(&p, 2);
    let mut recs = records(&bytes);
    let manifest = recs.pop().expect("manifest");
    let signed = super::bundle::SignedManifest::decode(&manifest.1).expect("manifest");
    let (_, device_key) = enroll(&p, "pole-1");
    let device_key: HubKey<ExportSigning> =
        HubKey::unchecked(device_key, &p.hub_der).expect("a certificate");
    recs.push((5, signed.manifest.sign(&device_key).encode()));
    let f = faults_of(&p, &assemble(&recs));
    assert_eq!(f, vec![BundleFault::ManifestSignature]);
}

/// A bundle whose manifest the hub's TLS key signed, under the TLS
/// certificate (as bundles were before the hub had a key per purpose), is
/// refused for it: that key may sign no manifest.
#[test]
fn a_manifest_signed_with_the_tls_key_is_refused() {
    let p = pki();
    let (tls_key, tls_der) = (copy(&p.tls.0), p.tls.1.clone());
    let tls: HubKey<ExportSigning> = HubKey::unchecked(tls_key, &tls_der).expect("a certificate");
    let bytes = bundle_signed(&p, 2, &tls);
    let f = faults_of(&p, &bytes);
    assert!(
        matches!(&f[..], [BundleFault::HubCertificate { reason }] if reason.contains("server authentication")),
        "{f:?}"
    );
}

/// The hub's own log in a bundle is verified under its log key's
/// certificate; under the TLS certificate (whose key signed it before the
/// hub had a key per purpose) or its export key's it is refused.
#[test]
fn the_hubs_log_verifies_under_its_log_key_only() {
    let p = pki();
    let (key, log_der) = certified(&p, crate::cert::KeyPurpose::Log);
    let (export, export_der) = certified(&p, crate::cert::KeyPurpose::Export);
    for (signer, cert, ok) in [
        (key, log_der, true),
        (copy(&p.tls.0), p.tls.1.clone(), false),
        (export, export_der, false),
    ] {
        let mut lw = LogWriter::new(signer, DeviceId::new("hub").expect("name"));
        let mut w = BundleWriter::new(Vec::new()).expect("writer");
        w.hub_certificate(&p.hub_der).expect("hub cert");
        w.certificate(&cert).expect("cert");
        for i in 0..3 {
            let e = lw
                .append_access(
                    AccessRecord {
                        user: "auditor".into(),
                        agency: "CA0010000".into(),
                        action: AccessAction::Search,
                        purpose: Some("audit".into()),
                        case: None,
                        query: format!("search {i}"),
                        results: 0,
                        outcome: AccessOutcome::Allowed,
                        source: "127.0.0.1".into(),
                    },
                    UnixMillis::now(),
                    TimeSource::Ntp,
                )
                .expect("entry");
            w.entry(&e).expect("entry");
        }
        let bytes = w
            .finish_signed(&p.hub_key, UnixMillis::now())
            .expect("finish");
        let r = verdict(&p, &bytes).expect("readable");
        assert_eq!(r.authentic(), ok, "{:?} {:?}", r.faults, r.logs);
    }
}

#[test]
fn every_single_byte_flip_is_reported() {
    let p = pki();
    let bytes = bundle(&p, 2);
    assert!(verdict(&p, &bytes).expect("readable").authentic());
    let mut passed = Vec::new();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0xff] {
            let mut flipped = bytes.clone();
            flipped[at] ^= mask;
            match verdict(&p, &flipped) {
                Err(reason) => assert!(!reason.is_empty()),
                Ok(r) if !r.authentic() => {}
                Ok(_) => passed.push((at, mask)),
            }
        }
    }
    assert!(
        passed.is_empty(),
        "{} of {} flips verified: {passed:?}",
        passed.len(),
        bytes.len() * 2
    );
}

#[test]
fn crafted_bundles_are_clear_errors() {
    let p = pki();
    let v1 = b"ALPR-LOG-BUNDLE1\x02\x00\x00\x00\x01\x00";
    let err = verdict(&p, v1).expect_err("v1");
    assert!(err.contains("version 1"), "{err}");
    let huge = b"ALPR-LOG-BUNDLE2\x02\xff\xff\xff\xff";
    let err = verdict(&p, huge).expect_err("huge");
    assert!(err.contains("over the limit"), "{err}");
    let bytes = bundle(&p, 2);
    let err = verdict(&p, &bytes[..bytes.len() - 1]).expect_err("truncated");
    assert!(err.contains("truncated"), "{err}");
    let recs = records(&bytes);
    let err = verdict(&p, &assemble(&recs[..recs.len() - 1])).expect_err("no manifest");
    assert!(err.contains("manifest"), "{err}");
    let mut extra = bytes.clone();
    extra.push(0);
    let err = verdict(&p, &extra).expect_err("trailing");
    assert!(err.contains("after the manifest"), "{err}");
}

#[test]
fn faults_are_capped_and_counted() {
    let p = pki();
    let (cert, _) = enroll(&p, "pole-1");
    let (_, other_key) = enroll(&p, "pole-1");
    let mut w = LogWriter::new(other_key, cert.name.clone());
    let n = super::verify::MAX_FAULTS + 200;
    let log: Vec<SignedEntry> = (0..n).map(|i| read(&mut w, i, UnixMillis::now())).collect();
    let report = verify_node_log(cert.name.clone(), NodeKeys::single(&cert), &log, [], FULL);
    assert_eq!(report.faults.len(), super::verify::MAX_FAULTS);
    assert_eq!(report.faults_omitted, 200);
    assert!(!report.authentic());
}

#[test]
fn a_node_in_two_places_is_a_clear_error() {
    let p = pki();
    let mut recs = records(&bundle(&p, 2));
    // Move pole-1's last entry after pole-2's records.
    let manifest = recs.pop().expect("manifest");
    let at = recs
        .iter()
        .rposition(|(k, b)| {
            *k == 2 && SignedEntry::decode(b).is_ok_and(|e| e.header.device.as_str() == "pole-1")
        })
        .expect("an entry of pole-1");
    let moved = recs.remove(at);
    recs.push(moved);
    recs.push(manifest);
    let err = verdict(&p, &assemble(&recs)).expect_err("scattered");
    assert!(err.contains("in two places"), "{err}");
}

/// A node log with `purged` of its `n` reads purged at the hub, in a
/// bundle whose hub log (after the node's, as the hub writes it) holds the
/// hub's purge records in batches of `batch`, or none.
fn purged_at_hub(p: &Pki, n: usize, purged: usize, batch: usize, recorded: bool) -> Vec<u8> {
    let (cert, key) = enroll(p, "pole-1");
    let mut w = LogWriter::new(key, cert.name.clone());
    let mut log: Vec<SignedEntry> = (0..n).map(|i| read(&mut w, i, UnixMillis::now())).collect();
    for e in &mut log[..purged] {
        e.purge_content();
    }
    let (log_key, log_der) = certified(p, crate::cert::KeyPurpose::Log);
    let mut hub = LogWriter::new(log_key, DeviceId::new("hub").expect("name"));
    let mut out = BundleWriter::new(Vec::new()).expect("writer");
    out.hub_certificate(&p.hub_der).expect("hub cert");
    out.certificate(&cert.der).expect("cert");
    for e in &log {
        out.entry(e).expect("entry");
    }
    out.certificate(&log_der).expect("hub's log certificate");
    let mut first = 0u64;
    while recorded && (first as usize) < purged {
        let last = (first + batch as u64).min(purged as u64) - 1;
        let record = hub
            .append_node_purge(
                cert.name.clone(),
                vec![SeqRange { first, last }],
                "hub retention 365 days",
                UnixMillis::now(),
                TimeSource::LocalClock,
            )
            .expect("purge record");
        out.entry(&record).expect("hub entry");
        first = last + 1;
    }
    out.finish_signed(&p.hub_key, UnixMillis::now())
        .expect("finish")
}

#[test]
fn reads_the_hub_purged_verify_under_its_log_after_the_nodes_whatever_their_number() {
    let p = pki();
    // More purged reads than a report keeps faults, in retention's batches.
    let (n, purged) = (
        3 * super::verify::MAX_FAULTS,
        2 * super::verify::MAX_FAULTS + 7,
    );
    let r = verdict(&p, &purged_at_hub(&p, n, purged, 1024, true)).expect("readable");
    assert!(r.authentic(), "{:?} {:?}", r.faults, r.logs);
    let pole = |r: &BundleReport| r.logs.iter().find(|l| l.device == "pole-1").cloned();
    let node = pole(&r).expect("pole-1");
    assert_eq!(
        (node.reads, node.purged),
        ((n - purged) as u64, purged as u64)
    );
    assert_eq!(r.hub_log.as_deref(), Some("hub"));
    // Without the hub's records, every purged read is a fault (counted
    // beyond those kept).
    let r = verdict(&p, &purged_at_hub(&p, n, purged, 1024, false)).expect("readable");
    assert!(!r.authentic());
    let node = pole(&r).expect("pole-1");
    assert_eq!(
        node.faults.len() as u64 + node.faults_omitted,
        purged as u64
    );
}
