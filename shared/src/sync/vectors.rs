//! Signatures that a lax verifier accepts and the house rule
//! (`verify_strict`) refuses: ingest and the offline verifier must agree on
//! every one. Also the certificate schedule (renewal, revocation) and the
//! chain rules over a store whose reads fail.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

use super::*;
use crate::cert::DeviceCert;
use crate::crypto::{tag, PublicKey, SecretKey, Signature};
use crate::log::verify::VerifyOptions;
use crate::log::{verify_log, Fault, LogWriter, SignedCheckpoint, SignedEntry};
use crate::types::{DeviceId, DeviceKind, Hash32, Location, ReadContent, TimeSource, UnixMillis};
use crate::wire::{Entries, RefusalCode};

const SEED: [u8; 32] = [11; 32];

fn read(i: u64) -> ReadContent {
    ReadContent {
        location: Location::Site {
            site_id: "site-1".into(),
        },
        camera: "cam-a".into(),
        plate: format!("ABC{i:03}"),
        confidence: 9000,
        char_confidence: vec![9000; 6],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: Hash32([1; 32]),
        overview_hash: Hash32([2; 32]),
    }
}

fn device() -> DeviceId {
    DeviceId::new("pole-7").expect("valid")
}

fn log(w: &mut LogWriter, n: u64) -> Vec<SignedEntry> {
    let from = w.len();
    (from..from + n)
        .map(|i| {
            w.append_read(read(i), UnixMillis(1_000 + i), TimeSource::Ntp)
                .expect("valid")
        })
        .collect()
}

fn cert_for(key: PublicKey) -> DeviceCert {
    DeviceCert {
        name: device(),
        kind: DeviceKind::Pole,
        key,
        not_before: UnixMillis(0),
        not_after: UnixMillis(u64::MAX),
        serial: "01".into(),
        der: Vec::new(),
    }
}

/// The message an entry's signature covers.
fn message(e: &SignedEntry) -> Vec<u8> {
    let mut m = tag::ENTRY_SIG.to_vec();
    m.extend_from_slice(&e.header.encode());
    m
}

/// A signature with R the encoding `r` (a small-order point) and S chosen so
/// that the cofactorless equation [S]B = R + [k]A holds when R is the
/// identity: S = k·a with k = H(R ‖ A ‖ M). Lax verifiers (a batch
/// equation, cofactored checks) accept such signatures; `verify_strict`
/// refuses any small-order R.
fn small_order_r(e: &SignedEntry, r: [u8; 32]) -> Signature {
    let signing = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let a = signing.to_scalar();
    let public = signing.verifying_key().to_bytes();
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(public)
            .chain_update(message(e)),
    );
    let s = k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

/// The identity point's encoding (y = 1).
fn identity() -> [u8; 32] {
    let mut r = [0u8; 32];
    r[0] = 1;
    r
}

/// The point of order 2, (0, −1): y = p − 1.
fn order_two() -> [u8; 32] {
    let mut r = [0xff; 32];
    r[0] = 0xec;
    r[31] = 0x7f;
    r
}

/// S + ℓ: the same signature with a non-canonical S (still < 2^256).
fn non_canonical_s(sig: Signature) -> Signature {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10,
    ];
    let mut out = sig;
    let mut carry = 0u16;
    for (o, (s, l)) in out.0[32..].iter_mut().zip(sig.0[32..].iter().zip(L)) {
        let v = u16::from(*s) + u16::from(l) + carry;
        *o = (v & 0xff) as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + l fits in 32 bytes");
    out
}

/// Both sides refuse entry 2 of a 4-entry log when it carries `sig`.
fn assert_both_refuse(sig: Signature) {
    let key = SecretKey::from_bytes(&SEED);
    let public = key.public();
    let mut w = LogWriter::new(key, device());
    let mut entries = log(&mut w, 4);
    entries[2].signature = sig;
    // Ingest.
    let frame = Entries::from_log(entries.clone(), None).expect("consecutive");
    let r = verify_batch(&public, &device(), Validity::ALWAYS, frame).expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::BadSignature, Some(2)));
    // The offline verifier.
    let report = verify_log(
        &cert_for(public),
        &entries,
        &[],
        VerifyOptions { from_start: true },
    );
    assert!(
        report
            .faults
            .iter()
            .any(|f| matches!(f, Fault::BadSignature { seq: 2 })),
        "{:?}",
        report.faults
    );
}

#[test]
fn an_identity_r_signature_that_lax_verifiers_accept_is_refused_on_both_sides() {
    let key = SecretKey::from_bytes(&SEED);
    let mut w = LogWriter::new(key, device());
    let e = log(&mut w, 3).remove(2);
    let sig = small_order_r(&e, identity());
    // The cofactorless equation holds: a lax (non-strict) check accepts it,
    // and so did the Ed25519 batch equation ingest used before.
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&w.public_key().to_bytes()).expect("key");
    assert!(lax.verify_prehashed_or_plain(&message(&e), &sig).is_ok());
    assert!(!e
        .clone()
        .with_signature(sig)
        .signature_valid(&w.public_key()));
    assert_both_refuse(sig);
}

#[test]
fn a_torsion_r_signature_is_refused_on_both_sides() {
    let key = SecretKey::from_bytes(&SEED);
    let mut w = LogWriter::new(key, device());
    let e = log(&mut w, 3).remove(2);
    assert!(CompressedEdwardsY(order_two())
        .decompress()
        .is_some_and(|p| p.is_small_order()));
    assert_both_refuse(small_order_r(&e, order_two()));
}

#[test]
fn a_non_canonical_s_is_refused_on_both_sides() {
    let key = SecretKey::from_bytes(&SEED);
    let mut w = LogWriter::new(key, device());
    let e = log(&mut w, 3).remove(2);
    assert!(e.signature_valid(&w.public_key()));
    assert_both_refuse(non_canonical_s(e.signature));
}

trait WithSignature {
    fn with_signature(self, sig: Signature) -> Self;
}

impl WithSignature for SignedEntry {
    fn with_signature(mut self, sig: Signature) -> Self {
        self.signature = sig;
        self
    }
}

trait LaxVerify {
    fn verify_prehashed_or_plain(
        &self,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError>;
}

impl LaxVerify for ed25519_dalek::VerifyingKey {
    fn verify_prehashed_or_plain(
        &self,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError> {
        use ed25519_dalek::Verifier;
        self.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
    }
}

fn node_key(serial: &str, key: PublicKey, from: Option<u64>) -> NodeKey {
    NodeKey {
        serial: serial.into(),
        key,
        validity: Validity::ALWAYS,
        effective_from: from,
        revoked_at: None,
    }
}

#[test]
fn a_renewed_key_takes_over_and_old_keys_only_sign_what_came_before() {
    let old = SecretKey::from_bytes(&[21; 32]);
    let new = SecretKey::from_bytes(&[22; 32]);
    let (old_pub, new_pub) = (old.public(), new.public());
    let mut w = LogWriter::new(old, device());
    let before = log(&mut w, 5);
    let head = w.head();
    let mut w = LogWriter::resume(new, device(), 5, head);
    let after = log(&mut w, 5);
    let all: Vec<SignedEntry> = before.iter().chain(&after).cloned().collect();

    // Connected with the new certificate, the old one in force from 0.
    let keys = NodeKeys::new(
        vec![node_key("aa", old_pub, Some(0))],
        node_key("bb", new_pub, None),
    );
    let v = verify_frame(
        &keys,
        &device(),
        Entries::from_log(all.clone(), None).expect("consecutive"),
    )
    .expect("old entries verify with the old key, new ones with the new");
    assert_eq!(
        v.new_key,
        Some(NewKey {
            serial: "bb".into(),
            first_seq: 5
        })
    );
    // Once the new key took effect at 5, an entry the old key signed there
    // is refused: keys only move forward.
    let mut moved = keys.clone();
    moved.took_effect("bb", 5);
    let mut forged = LogWriter::resume(SecretKey::from_bytes(&[21; 32]), device(), 5, head);
    let r = verify_frame(
        &moved,
        &device(),
        Entries::from_log(log(&mut forged, 2), None).expect("consecutive"),
    )
    .expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::BadSignature, Some(5)));
    // Re-uploads of the old entries still verify after the change.
    verify_frame(
        &moved,
        &device(),
        Entries::from_log(before.clone(), None).expect("consecutive"),
    )
    .expect("history signed before the renewal");
    // A hello-only certificate vouches for nothing: without the old one in
    // force, the old entries are refused.
    let only_new = NodeKeys::new(vec![], node_key("bb", new_pub, None));
    let r = verify_frame(
        &only_new,
        &device(),
        Entries::from_log(before.clone(), None).expect("consecutive"),
    )
    .expect_err("refused");
    assert_eq!(r.code, RefusalCode::BadSignature);
    // Revoked at 1_003: entries captured at or after it are refused.
    let mut revoked = keys.clone();
    revoked.revoke("aa", UnixMillis(1_003));
    let r = verify_frame(
        &revoked,
        &device(),
        Entries::from_log(before, None).expect("consecutive"),
    )
    .expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::Revoked, Some(3)));
}

#[test]
fn a_large_frame_is_checked_on_several_threads_with_the_same_answer() {
    let key = SecretKey::from_bytes(&SEED);
    let public = key.public();
    let mut w = LogWriter::new(key, device());
    let mut entries = log(&mut w, 300);
    let ok = verify_batch(
        &public,
        &device(),
        Validity::ALWAYS,
        Entries::from_log(entries.clone(), None).expect("consecutive"),
    )
    .expect("verifies");
    assert_eq!(ok.entries.len(), 300);
    entries[250].signature = non_canonical_s(entries[250].signature);
    let r = verify_batch(
        &public,
        &device(),
        Validity::ALWAYS,
        Entries::from_log(entries, None).expect("consecutive"),
    )
    .expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::BadSignature, Some(250)));
}

/// A store whose reads fail (a disk error, an undecodable record).
struct Failing {
    entries: bool,
    checkpoint: bool,
}

impl ChainState for Failing {
    type Error = &'static str;
    fn stored_hash(&mut self, _seq: u64) -> Result<Option<Hash32>, &'static str> {
        if self.entries {
            Err("read error")
        } else {
            Ok(None)
        }
    }
    fn checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, &'static str> {
        if self.checkpoint {
            Err("checkpoint does not decode")
        } else {
            Ok(None)
        }
    }
}

#[test]
fn a_storage_read_error_refuses_the_batch() {
    let key = SecretKey::from_bytes(&SEED);
    let public = key.public();
    let mut w = LogWriter::new(key, device());
    let first = log(&mut w, 4);
    let stored = Progress {
        next_seq: 4,
        head: w.head(),
    };
    let more = log(&mut w, 2);
    let cp = w.checkpoint(UnixMillis(9_000));
    // A replay of entries 0..4 then 4..6: the replayed ones must be read.
    let frame = Entries::from_log(first.into_iter().chain(more).collect(), Some(cp.clone()))
        .expect("consecutive");
    let v = verify_batch(&public, &device(), Validity::ALWAYS, frame).expect("verifies");
    let r = decide(
        &v.entries,
        v.checkpoint.as_ref(),
        stored,
        &mut Failing {
            entries: true,
            checkpoint: false,
        },
    );
    assert_eq!(r, Err(ChainError::Storage("read error")));
    // The entries place, but the kept checkpoint cannot be read.
    let r = decide(
        &v.entries[4..],
        v.checkpoint.as_ref(),
        stored,
        &mut Failing {
            entries: false,
            checkpoint: true,
        },
    );
    assert_eq!(r, Err(ChainError::Storage("checkpoint does not decode")));
    // Readable and empty of conflicts: placed, the checkpoint kept.
    let d = decide(
        &v.entries[4..],
        v.checkpoint.as_ref(),
        stored,
        &mut Failing {
            entries: false,
            checkpoint: false,
        },
    )
    .expect("placed");
    assert_eq!(d.placement.after.next_seq, 6);
    assert!(d.keep_checkpoint);
}
