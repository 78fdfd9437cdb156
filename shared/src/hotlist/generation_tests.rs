use proptest::prelude::*;

use super::*;
use crate::cert::{CertError, KeyPurpose};
use crate::hotlist::{AlertLevel, MatchStrategy};
use crate::signer::HotlistSigning;

/// The hotlist key of the test vectors' deployment.
pub(crate) fn key() -> HubKey<HotlistSigning> {
    crate::signer::fixture::key(7)
}

/// That deployment's CA.
pub(crate) fn anchor() -> TrustAnchor {
    crate::signer::fixture::anchor()
}

/// Where the body starts in `bytes` (format 2).
fn body_at(bytes: &[u8]) -> usize {
    let info_len = u32_at(bytes, MAGIC.len()).expect("len") as usize;
    let cert_at = MAGIC.len() + 4 + info_len + HASH_LEN;
    let cert_len = u32_at(bytes, cert_at).expect("cert len") as usize;
    cert_at + 4 + cert_len + SIG_LEN
}

pub(crate) fn info(source: &str, number: u64) -> GenerationInfo {
    GenerationInfo {
        source: source.into(),
        number,
        issued_at: UnixMillis(1_795_868_054_000 + number),
        source_sha256: Hash32([number as u8; 32]),
        source_rows: 0,
        rows: 0,
        categories: Vec::new(),
        settings: ListSettings {
            strategy: MatchStrategy::OcrEquivalent {
                max_substitutions: 1,
            },
            skip: vec!["000".into()],
            alert_level: AlertLevel::Standard,
            covert: false,
        },
    }
}

/// A deterministic entry: plate from `k`, fields filled.
pub(crate) fn entry(k: u64) -> HotEntry {
    const A: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
    let mut plate = String::new();
    for _ in 0..7 {
        plate.push(char::from(A[(x % A.len() as u64) as usize]));
        x /= A.len() as u64;
    }
    HotEntry {
        plate,
        state: ["CA", "NV", "OR", ""][(k % 4) as usize].into(),
        category: Category::ALL[(k % 13) as usize],
        plate_type: "PC".into(),
        plate_year: "2027".into(),
        vehicle_year: "2015".into(),
        make: "TOYT".into(),
        model: "CAM".into(),
        colour: "BLK".into(),
        vin: format!("1HGCM82633A{k:06}"),
        nic: format!("V{k:09}"),
        ori: "CA0194200".into(),
        oca: format!("24-{k}"),
        entered: "20250114".into(),
        note: if k.is_multiple_of(5) {
            "ARMED – CAUTION".into()
        } else {
            String::new()
        },
    }
}

pub(crate) fn entries(range: std::ops::Range<u64>) -> Vec<HotEntry> {
    range.map(entry).collect()
}

fn sorted(mut v: Vec<HotEntry>) -> Vec<HotEntry> {
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

fn all(g: &Generation) -> Vec<HotEntry> {
    (0..g.len()).map(|i| g.entry(i)).collect()
}

#[test]
fn build_then_open_gives_back_every_entry_and_counts() {
    let es = entries(0..500);
    let g = Generation::build(info("ncic", 1), es.clone(), &key()).expect("builds");
    assert_eq!(g.len(), 500);
    assert_eq!(g.info().rows, 500);
    let total: u64 = g.info().categories.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 500);
    let back = Generation::open(g.bytes().to_vec(), &anchor()).expect("opens");
    assert_eq!(back.info(), g.info());
    assert_eq!(sorted(all(&back)), sorted(es.clone()));
    for e in &es {
        assert!(
            back.lookup(&e.plate).contains(e),
            "lookup finds {}",
            e.plate
        );
    }
    assert!(back.lookup("ZZZZZZZZ").is_empty());
    assert!(back.get(500).is_none());
}

#[test]
fn same_entries_in_any_order_give_the_same_bytes_and_duplicates_go() {
    let es = entries(0..300);
    let a = Generation::build(info("ncic", 1), es.clone(), &key()).expect("builds");
    let mut shuffled = es.clone();
    shuffled.reverse();
    shuffled.extend(es[..50].iter().cloned());
    let b = Generation::build(info("ncic", 1), shuffled, &key()).expect("builds");
    assert_eq!(a.bytes(), b.bytes());
    assert_eq!(b.len(), 300);
}

#[test]
fn empty_list_is_a_valid_generation() {
    let g = Generation::build(info("ncic", 1), Vec::new(), &key()).expect("builds");
    let back = Generation::open(g.bytes().to_vec(), &anchor()).expect("opens");
    assert!(back.is_empty());
    assert!(back.lookup("ABC123").is_empty());
}

#[test]
fn altered_or_foreign_generations_are_refused() {
    let g = Generation::build(info("ncic", 1), entries(0..100), &key()).expect("builds");
    let other = crate::signer::dev::Deployment::new().expect("deployment");
    assert!(matches!(
        Generation::open(g.bytes().to_vec(), &other.anchor),
        Err(GenerationError::Certificate(CertError::UnknownIssuer))
    ));
    // Another deployment's hotlist key, under its own certificate.
    let theirs: HubKey<HotlistSigning> = other.key("hub").expect("key");
    let forged = Generation::build(info("ncic", 1), entries(0..100), &theirs).expect("builds");
    assert!(Generation::open(forged.bytes().to_vec(), &anchor()).is_err());
    // One bit of one record's text.
    let mut body = g.bytes().to_vec();
    let last = body.len() - 3;
    body[last] ^= 1;
    let err = Generation::open(body, &anchor()).expect_err("refused");
    assert!(err.to_string().contains("signed hash"), "{err}");
    // One bit of the header (the list's settings).
    let mut head = g.bytes().to_vec();
    head[MAGIC.len() + 6] ^= 1;
    assert!(Generation::open(head, &anchor()).is_err());
    let mut short = g.bytes().to_vec();
    short.truncate(short.len() - 1);
    assert!(Generation::open(short, &anchor()).is_err());
}

/// A generation signed with a key of the deployment that is not certified
/// for hotlists — the hub's TLS key, its policy key — is refused, though
/// the CA issued that key's certificate.
#[test]
fn a_generation_signed_with_a_key_of_another_purpose_is_refused() {
    let d = crate::signer::dev::Deployment::new().expect("deployment");
    let (tls_key, tls_der) = d.tls().expect("tls");
    let (policy_key, policy_der) = d.secret_of(KeyPurpose::Policy).expect("policy key");
    for (key, der) in [(tls_key, tls_der), (policy_key, policy_der)] {
        let wrong: HubKey<HotlistSigning> = HubKey::unchecked(key, &der).expect("a certificate");
        let g = Generation::build(info("ncic", 1), entries(0..20), &wrong).expect("builds");
        let e = Generation::open(g.bytes().to_vec(), &d.anchor).expect_err("refused");
        assert!(
            matches!(
                e,
                GenerationError::Certificate(CertError::WrongPurpose { .. })
            ),
            "{e}"
        );
    }
    let right: HubKey<HotlistSigning> = d.key("hub").expect("key");
    let g = Generation::build(info("ncic", 1), entries(0..20), &right).expect("builds");
    assert!(Generation::open(g.bytes().to_vec(), &d.anchor).is_ok());
}

/// A generation issued when its key's certificate was not valid is refused.
#[test]
fn a_generation_issued_outside_its_certificate_is_refused() {
    let mut i = info("ncic", 1);
    i.issued_at = UnixMillis(1_000_000_000_000); // 2001
    let g = Generation::build(i, entries(0..5), &key()).expect("builds");
    assert!(matches!(
        Generation::open(g.bytes().to_vec(), &anchor()),
        Err(GenerationError::OutsideValidity)
    ));
}

#[test]
fn the_signed_header_alone_proves_the_number_and_nothing_forged_passes() {
    let g = Generation::build(info("ncic", 7), entries(0..100), &key()).expect("builds");
    let header = g.signed_header();
    assert!(header.len() < g.bytes().len() && header.len() <= MAX_HEADER_BYTES);
    let shown = verify_header(header, &anchor()).expect("the hub's own header");
    assert_eq!(shown, *g.info());
    assert_eq!(shown.number, 7);
    // Another deployment's hotlist key, an altered number, or the header
    // with bytes after it.
    let other = crate::signer::dev::Deployment::new().expect("deployment");
    let theirs: HubKey<HotlistSigning> = other.key("hub").expect("key");
    let huge = GenerationInfo {
        number: u64::MAX,
        ..info("ncic", 8)
    };
    let forged = Generation::build(huge, entries(0..1), &theirs).expect("builds");
    assert!(matches!(
        verify_header(forged.signed_header(), &anchor()),
        Err(GenerationError::Certificate(CertError::UnknownIssuer))
    ));
    let mut altered = header.to_vec();
    altered[MAGIC.len() + 6] ^= 1;
    assert!(verify_header(&altered, &anchor()).is_err());
    let mut longer = header.to_vec();
    longer.push(0);
    assert!(verify_header(&longer, &anchor()).is_err());
    assert!(verify_header(&header[..header.len() - 1], &anchor()).is_err());
}

#[test]
fn bad_rows_are_named() {
    let mut es = entries(0..3);
    es[1].plate = "AB-12".into();
    let err = Generation::build(info("ncic", 1), es, &key()).expect_err("refused");
    assert!(err.to_string().contains("entry 2"), "{err}");
    let mut e = entry(1);
    e.state = "Cal".into();
    assert!(check_entry(&e).is_err());
    e.state = String::new();
    assert!(check_entry(&e).is_ok());
    e.note = "x".repeat(MAX_ENTRY_TEXT + 1);
    assert!(check_entry(&e).is_err());
}

/// Plates an OCR engine confuses land in one run of one bucket.
#[test]
fn ocr_equivalent_plates_are_one_probe() {
    let mut es = entries(0..200);
    for p in ["8OB5I2", "B0B5IZ", "80B5I2"] {
        es.push(HotEntry {
            plate: p.into(),
            ..entry(9)
        });
    }
    let g = Generation::build(info("ncic", 1), es, &key()).expect("builds");
    let folded: Vec<u8> = b"8OB5I2".iter().map(|&b| fold_char(b)).collect();
    let r = g.probe(&folded);
    let mut plates: Vec<&[u8]> = r.map(|i| g.plate(i)).collect();
    plates.sort();
    assert_eq!(plates, vec![&b"80B5I2"[..], b"8OB5I2", b"B0B5IZ"]);
}

/// A generation signed before the hub had a key per purpose (format 1,
/// signed by what was then the hub's only key, `[7; 32]`): readers refuse
/// it with the reason; the hub that kept it checks it under its old key and
/// signs it again with its hotlist key, the content unchanged.
#[test]
fn format_v1_vector_is_refused_and_signed_again_by_the_hub() {
    let stored = hex::decode(include_str!("testdata/generation-v1.hex").trim()).expect("hex");
    let e = Generation::open(stored.clone(), &anchor()).expect_err("format 1 refused");
    assert!(matches!(e, GenerationError::Format1), "{e}");
    assert!(e.to_string().contains("sends the list again"), "{e}");
    let legacy = crate::crypto::SecretKey::from_bytes(&[7; 32]).public();
    let again = Generation::resign_format1(&stored, &legacy, &key()).expect("signed again");
    let back = Generation::open(again.bytes().to_vec(), &anchor()).expect("opens");
    assert_eq!(back.info(), again.info());
    assert_eq!(back.info().number, 3);
    assert_eq!(sorted(all(&back)), sorted(entries(0..6)));
    // Under any other key the old generation is not the hub's.
    let other = crate::crypto::SecretKey::from_bytes(&[8; 32]).public();
    assert!(Generation::resign_format1(&stored, &other, &key()).is_err());
}

/// A generation written by this version opens in every later one.
#[test]
fn format_v2_vector_still_opens() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/hotlist/testdata/generation-v2.hex"
    );
    let g = Generation::build(info("ncic", 3), entries(0..6), &key()).expect("builds");
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        std::fs::write(path, hex::encode(g.bytes()) + "\n").expect("write vector");
    }
    let stored = hex::decode(include_str!("testdata/generation-v2.hex").trim()).expect("hex");
    let back = Generation::open(stored.clone(), &anchor()).expect("old generation opens");
    assert_eq!(sorted(all(&back)), sorted(entries(0..6)));
    assert_eq!(stored, g.bytes(), "the canonical encoding changed");
}

fn resign(bytes: &mut [u8]) {
    // Recompute the hash and signature as a (buggy) hub would.
    let info_len = u32_at(bytes, MAGIC.len()).expect("len") as usize;
    let hash_at = MAGIC.len() + 4 + info_len;
    let body_at = body_at(bytes);
    let sig_at = body_at - SIG_LEN;
    let h = tagged_hash(tag::HOTLIST_HASH, &[&bytes[body_at..]]);
    bytes[hash_at..hash_at + HASH_LEN].copy_from_slice(&h.0);
    let sig = key().sign(tag::HOTLIST_SIG, &bytes[..sig_at]);
    bytes[sig_at..body_at].copy_from_slice(&sig.0);
}

proptest! {
    #[test]
    fn open_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Generation::open(bytes, &anchor());
    }

    /// Even signed garbage (a hub bug) gives an error, never a panic, and
    /// whatever opens can be read in full.
    #[test]
    fn open_never_panics_on_signed_corruption(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<Option<usize>>(),
    ) {
        let g = Generation::build(info("ncic", 1), entries(0..40), &key()).expect("builds");
        let body_at = body_at(g.bytes());
        let mut bytes = g.bytes().to_vec();
        let body_len = bytes.len() - body_at;
        for (at, x) in flips {
            bytes[body_at + at % body_len] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(body_at + c % body_len);
        }
        resign(&mut bytes);
        if let Ok(g) = Generation::open(bytes, &anchor()) {
            for i in 0..g.len() {
                let e = g.entry(i);
                let _ = g.lookup(&e.plate);
            }
        }
    }
}
