use proptest::prelude::*;

use super::*;
use crate::cert::CertError;
use crate::hotlist::generation::tests::{anchor, entries, entry, info, key};
use crate::hotlist::HotEntry;
use crate::signer::{HotlistSigning, HubKey};

fn build(number: u64, es: Vec<HotEntry>) -> Generation {
    Generation::build(info("ncic", number), es, &key()).expect("builds")
}

#[test]
fn a_delta_takes_the_held_generation_to_the_next_byte_for_byte() {
    let old = build(1, entries(0..2000));
    let mut next = entries(100..2100);
    next[5].note = "RECOVERED? CHECK".into();
    let new = build(2, next);
    let d = diff(&old, &new);
    let got = apply(&old, &d, &anchor()).expect("applies");
    assert_eq!(got.bytes(), new.bytes());
    assert_eq!(got.info(), new.info());
    // 100 removed, 100 added, one changed: far smaller than the list.
    assert!(d.len() * 10 < new.bytes().len(), "{} bytes", d.len());
}

#[test]
fn a_delta_from_another_generation_is_refused() {
    let g1 = build(1, entries(0..100));
    let g2 = build(2, entries(0..120));
    let g3 = build(3, entries(0..130));
    let d = diff(&g2, &g3);
    let err = apply(&g1, &d, &anchor()).expect_err("refused");
    assert!(err.to_string().contains("holds generation 1"), "{err}");
    // Same number and content but another list.
    let other = Generation::build(info("ca-svs", 2), entries(0..120), &key()).expect("builds");
    assert!(apply(&other, &d, &anchor()).is_err());
}

#[test]
fn a_forged_delta_is_refused() {
    let old = build(1, entries(0..200));
    let new = build(2, entries(0..210));
    let d = diff(&old, &new);
    // A delta from someone else's key: another deployment's hotlist key,
    // and another key under this deployment's hotlist certificate.
    let theirs = crate::signer::dev::Deployment::new().expect("deployment");
    let mallory: HubKey<HotlistSigning> = theirs.key("hub").expect("key");
    let forged_new = Generation::build(info("ncic", 2), entries(0..210), &mallory).expect("b");
    let d2 = diff(&old, &forged_new);
    assert!(matches!(
        apply(&old, &d2, &anchor()),
        Err(GenerationError::Certificate(CertError::UnknownIssuer))
    ));
    let (tls_key, _) = theirs.tls().expect("tls");
    let wrong: HubKey<HotlistSigning> =
        HubKey::unchecked(tls_key, key().cert_der()).expect("a certificate");
    let forged_new = Generation::build(info("ncic", 2), entries(0..210), &wrong).expect("b");
    assert!(matches!(
        apply(&old, &diff(&old, &forged_new), &anchor()),
        Err(GenerationError::BadSignature)
    ));
    // The hub's header with other records: decompress, change one plate
    // character of the added records, recompress.
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(&d[8..])
        .read_to_end(&mut raw)
        .expect("inflates");
    let pos = raw.len() - 200;
    raw[pos] ^= 1;
    let mut out = DELTA_MAGIC.to_vec();
    let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::fast());
    enc.write_all(&raw).expect("deflate");
    enc.finish().expect("deflate");
    assert!(apply(&old, &out, &anchor()).is_err());
}

#[test]
fn identical_generations_give_an_empty_change() {
    let g1 = build(1, entries(0..50));
    let g2 = build(2, entries(0..50));
    let d = diff(&g1, &g2);
    // The new generation's header, its certificate included, and little else.
    assert!(d.len() < 400 + key().cert_der().len(), "{}", d.len());
    assert_eq!(
        apply(&g1, &d, &anchor()).expect("applies").bytes(),
        g2.bytes()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn apply_of_diff_is_the_new_generation(
        old_ids in proptest::collection::btree_set(0u64..400, 0..120),
        new_ids in proptest::collection::btree_set(0u64..400, 0..120),
        edits in proptest::collection::vec((0usize..120, "[A-Z ]{0,12}"), 0..6),
    ) {
        let old = build(1, old_ids.into_iter().map(entry).collect());
        let mut next: Vec<HotEntry> = new_ids.into_iter().map(entry).collect();
        for (k, note) in edits {
            if let Some(e) = next.get_mut(k) {
                e.note = note;
            }
        }
        let new = build(2, next);
        let got = apply(&old, &diff(&old, &new), &anchor()).expect("applies");
        prop_assert_eq!(got.bytes(), new.bytes());
    }

    #[test]
    fn apply_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), raw in any::<bool>()) {
        let old = build(1, entries(0..20));
        let mut d = bytes;
        if raw {
            // Valid deflate of random content, so the parser sees it.
            let mut out = DELTA_MAGIC.to_vec();
            let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::fast());
            enc.write_all(&d).expect("deflate");
            enc.finish().expect("deflate");
            d = out;
        }
        let _ = apply(&old, &d, &anchor());
    }

    #[test]
    fn apply_never_panics_on_a_corrupted_real_delta(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let old = build(1, entries(0..60));
        let new = build(2, entries(10..75));
        let d = diff(&old, &new);
        let mut raw = Vec::new();
        flate2::read::DeflateDecoder::new(&d[8..]).read_to_end(&mut raw).expect("inflates");
        let n = raw.len();
        for (at, x) in flips {
            raw[at % n] ^= x;
        }
        let mut out = DELTA_MAGIC.to_vec();
        let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::fast());
        enc.write_all(&raw).expect("deflate");
        enc.finish().expect("deflate");
        let _ = apply(&old, &out, &anchor());
    }
}
