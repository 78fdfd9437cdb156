use proptest::prelude::*;

use super::sample::{sample_case, SampleCase};
use super::*;

fn anchor(s: &SampleCase) -> TrustAnchor {
    TrustAnchor::from_pem(s.ca_pem.as_bytes()).expect("anchor")
}

fn verify(s: &SampleCase, bytes: &[u8]) -> Result<EvidenceReport, EvidenceError> {
    verify_evidence(bytes, &anchor(s), None)
}

fn case(reads: usize) -> (SampleCase, Vec<u8>) {
    let s = sample_case(reads, 2_000).expect("sample");
    let (bytes, report) = s.write().expect("write");
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    (s, bytes)
}

#[test]
fn an_exported_case_verifies_with_its_reads_photos_and_holds() {
    let (s, bytes) = case(5);
    let mut html = Vec::new();
    let r = verify_evidence(&bytes[..], &anchor(&s), Some(&mut html)).expect("verify");
    assert!(r.authentic(), "{:?}", r.faults);
    assert_eq!(r.reads.len(), 5);
    assert!(r.reads.iter().all(|r| r.plate == "7ABC123" && r.ok()));
    assert_eq!(r.reads[0].placed_by_checkpoint, Some(10));
    assert_eq!(r.holds.len(), 1);
    assert_eq!(r.accesses, 1);
    assert_eq!(r.hub.as_deref(), Some("hub"));
    let html = String::from_utf8(html).expect("utf-8");
    assert_eq!(html.matches("<img ").count(), 10);
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), 10);
    assert!(html.contains("Plate 7ABC123"));
    // Nothing from outside the file, and text is escaped.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<investigation>"));
    assert!(html.contains("homicide &lt;investigation&gt; &amp; &quot;evidence&quot;"));
}

#[test]
fn non_case_reads_carry_no_plate() {
    let (_, bytes) = case(3);
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("OTHER"), "a non-case plate is in the bundle");
    assert!(text.contains("7ABC123"));
}

#[test]
fn another_ca_is_refused() {
    let (_, bytes) = case(2);
    let other = sample_case(1, 100).expect("other");
    let r = verify_evidence(&bytes[..], &anchor(&other), None).expect("verify");
    assert!(!r.authentic());
    assert!(
        r.faults.contains(&EvidenceFault::CaMismatch),
        "{:?}",
        r.faults
    );
}

#[test]
fn a_dropped_header_breaks_the_chain_even_if_re_signed() {
    // A writer that leaves out one non-case entry: the hub signs it, but the
    // chain to the node's checkpoint is broken and says where.
    let s = sample_case(3, 100).expect("sample");
    let mut w = EvidenceWriter::new(
        Vec::new(),
        std::io::Cursor::new(Vec::new()),
        s.info.clone(),
        &s.ca_der,
        HubCertificates {
            export: &s.export_der,
            log: &s.log_der,
        },
    )
    .expect("w");
    w.node(std::slice::from_ref(&s.node_der), &s.checkpoint)
        .expect("node");
    for (i, (e, p)) in s.entries.iter().zip(&s.photos).enumerate() {
        if i == 3 {
            continue;
        }
        match p {
            Some((crop, overview)) => w
                .read(CaseRead {
                    entry: e,
                    crop,
                    overview,
                })
                .expect("read"),
            None => w.header(e).expect("header"),
        }
    }
    w.access(&s.access).expect("access");
    let (bytes, written) = w.finish(&s.export_key, s.info.created_at).expect("finish");
    assert!(!written.faults.is_empty());
    let r = verify(&s, &bytes).expect("verify");
    assert!(!r.authentic());
    assert!(
        r.faults
            .iter()
            .any(|f| matches!(f, EvidenceFault::Chain { seq: 4, .. })),
        "{:?}",
        r.faults
    );
}

/// A bundle whose manifest was signed with a key of the deployment not
/// certified for exports — the hub's TLS key (a bundle made before the hub
/// had a key per purpose), its log key — is refused and says why; so is
/// one whose access entry the export key signed in the log key's place.
#[test]
fn a_manifest_or_access_entry_signed_with_a_key_of_another_purpose_is_refused() {
    let s = sample_case(2, 1_000).expect("sample");
    let (tls_key, tls_der) = s.deployment.tls().expect("tls");
    let as_export = |key, der: &[u8]| -> HubKey<ExportSigning> {
        HubKey::unchecked(key, der).expect("a certificate")
    };
    let tls = as_export(tls_key, &tls_der);
    let certs = HubCertificates {
        export: &tls_der,
        log: &s.log_der,
    };
    let (bytes, _) = s.write_signed(certs, &tls).expect("written");
    let r = verify(&s, &bytes).expect("verify");
    assert!(!r.authentic());
    let text: Vec<String> = r.faults.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t.contains("server authentication")),
        "{text:?}"
    );
    assert!(
        r.faults.contains(&EvidenceFault::ManifestSignature),
        "{text:?}"
    );

    // The log key's certificate given for the export key's, and the export
    // key's for the log key's.
    let certs = HubCertificates {
        export: &s.log_der,
        log: &s.export_der,
    };
    let (bytes, _) = s.write_signed(certs, &s.export_key).expect("written");
    let r = verify(&s, &bytes).expect("verify");
    assert!(!r.authentic());
    let text: Vec<String> = r.faults.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("not for signing bundle and evidence manifests")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("not signed by the hub's log key")),
        "{text:?}"
    );
    // The right ones verify.
    let (bytes, _) = s.write().expect("written");
    assert!(verify(&s, &bytes).expect("verify").authentic());
}

#[test]
fn a_changed_photo_is_named() {
    let (s, mut bytes) = case(2);
    // The first photo follows the first read: find it by its JPEG start.
    let at = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xD8])
        .expect("a photo");
    bytes[at + 10] ^= 1;
    let r = verify(&s, &bytes).expect("verify");
    assert!(!r.authentic());
    let text: Vec<String> = r.faults.iter().map(|f| f.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("crop photo is not the one the node signed")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("photos")), "{text:?}");
}

#[test]
fn truncation_is_reported() {
    let (s, bytes) = case(2);
    for cut in [0, 10, 16, bytes.len() / 2, bytes.len() - 1] {
        let r = verify(&s, &bytes[..cut]);
        assert!(
            r.as_ref().map_or(true, |r| !r.authentic()),
            "cut at {cut} verified"
        );
    }
}

fn small() -> &'static (SampleCase, Vec<u8>) {
    static CASE: std::sync::OnceLock<(SampleCase, Vec<u8>)> = std::sync::OnceLock::new();
    CASE.get_or_init(|| {
        let s = sample_case(2, 64).expect("sample");
        let (bytes, _) = s.write().expect("write");
        (s, bytes)
    })
}

fn never_authentic(bytes: &[u8]) -> bool {
    let (s, _) = small();
    verify(s, bytes).map_or(true, |r| !r.authentic())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_flipped_byte_is_never_authentic(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (_, bytes) = small();
        let mut b = bytes.clone();
        let i = at.index(b.len());
        b[i] ^= 1 << bit;
        prop_assert!(never_authentic(&b), "flip at {i}");
    }

    #[test]
    fn a_dropped_byte_is_never_authentic(at in any::<prop::sample::Index>()) {
        let (_, bytes) = small();
        let mut b = bytes.clone();
        let i = at.index(b.len());
        b.remove(i);
        prop_assert!(never_authentic(&b), "drop at {i}");
    }

    #[test]
    fn an_inserted_byte_is_never_authentic(at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let (_, bytes) = small();
        let mut b = bytes.clone();
        let i = at.index(b.len() + 1);
        b.insert(i, v);
        prop_assert!(never_authentic(&b), "insert at {i}");
    }
}
