use proptest::prelude::*;

use super::*;
use crate::control::officer::OfficerKey;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0d8yTe0vb1b+fcZkBO0wdDWW+NVqJvvgLULRTxGe8mc";

/// A fixed officer key (salt and public key of "correct horse", m = 64,
/// t = 1).
fn officer_key() -> OfficerKey {
    crate::control::officer::OfficerKey::derive("correct horse", [3; 16], 64, 1)
        .expect("derive")
        .0
}

/// [`sample`] as formats 1 and 2 knew it: officers without a key.
fn sample_without_keys(version: u64, format: u8) -> Policy {
    let mut p = sample(version);
    p.format = format;
    for o in &mut p.officers {
        o.key = None;
    }
    p
}

pub(crate) fn sample(version: u64) -> Policy {
    Policy {
        format: POLICY_FORMAT,
        version,
        issued_at: UnixMillis(1_780_000_000_000),
        hub_retention_days: 365,
        edge_retention_days: 30,
        max_stale_ms: 72 * 3600 * 1000,
        officers: vec![EdgeOfficer {
            username: "jdoe".into(),
            agency: "CA0190000".into(),
            title: "Officer".into(),
            password_hash: HASH.into(),
            training_expires: UnixMillis(1_800_000_000_000),
            key: Some(officer_key()),
        }],
        agencies: vec![
            Agency {
                ori: "CA0190000".into(),
                name: "Fresno Police Department".into(),
                kind: AgencyKind::InStatePublic,
            },
            Agency {
                ori: "NV0020000".into(),
                name: "Las Vegas Metropolitan PD".into(),
                kind: AgencyKind::OutOfState,
            },
        ],
        revoked_nodes: vec![Revocation {
            serial: "0a1b2c".into(),
            effective_at: UnixMillis(1_779_000_000_000),
            reason: "stolen vehicle".into(),
        }],
        hotlists: HotlistPolicy::default(),
        purposes: vec![
            Purpose {
                code: "stolen-vehicle".into(),
                label: "Stolen vehicle".into(),
                case_required: false,
            },
            Purpose {
                code: "homicide".into(),
                label: "Homicide".into(),
                case_required: true,
            },
        ],
    }
}

/// The policy key of the test vectors' deployment.
fn key() -> HubKey<PolicySigning> {
    crate::signer::fixture::key(7)
}

fn anchor() -> TrustAnchor {
    crate::signer::fixture::anchor()
}

fn msg(p: Policy) -> String {
    match p.validate() {
        Err(e) => e.to_string(),
        Ok(()) => panic!("the policy was accepted"),
    }
}

#[test]
fn signed_policy_round_trips_and_verifies() {
    let k = key();
    let s = sample(3).sign(&k).expect("valid");
    let back = SignedPolicy::decode_verified(&s.encode(), &anchor()).expect("decodes");
    assert_eq!(back, s);
    assert_eq!(back.version(), 3);
    assert_eq!(
        back.policy().officer("jdoe").map(|o| o.title.as_str()),
        Some("Officer")
    );
}

#[test]
fn another_deployment_or_edited_bytes_fail_verification() {
    let s = sample(1).sign(&key()).expect("valid");
    let other = crate::signer::dev::Deployment::new().expect("deployment");
    assert!(matches!(
        s.verify(&other.anchor),
        Err(PolicyError::Certificate(CertError::UnknownIssuer))
    ));
    // Edit the retention inside the signed bytes: still a valid policy,
    // no longer the hub's.
    let mut forged = sample(1);
    forged.hub_retention_days = 3650;
    let env = Envelope {
        policy: forged.canonical_bytes(),
        signature: s.signature,
        signer: key().cert_der().to_vec(),
    };
    let bytes = postcard::to_allocvec(&env).expect("encodes");
    let decoded = SignedPolicy::decode(&bytes).expect("well formed");
    assert!(matches!(
        decoded.verify(&anchor()),
        Err(PolicyError::BadSignature)
    ));
}

/// The policy signed by a key of the deployment that is not certified for
/// the policy — the hub's TLS key above all, or its receipt key — is
/// refused, though the key is the hub's and the CA issued its certificate.
#[test]
fn a_policy_signed_with_a_key_of_another_purpose_is_refused() {
    let d = crate::signer::dev::Deployment::new().expect("deployment");
    let (tls_key, tls_der) = d.tls().expect("tls");
    let (receipt_key, receipt_der) = d.secret_of(KeyPurpose::Receipt).expect("receipt key");
    for (key, der, what) in [
        (tls_key, tls_der, "server authentication"),
        (receipt_key, receipt_der, "receipts"),
    ] {
        let k: HubKey<PolicySigning> = HubKey::unchecked(key, &der).expect("a certificate");
        let s = sample(2).sign(&k).expect("signs");
        let e = SignedPolicy::decode_verified(&s.encode(), &d.anchor)
            .expect_err("a policy signed with the wrong key");
        assert!(
            matches!(&e, PolicyError::Certificate(CertError::WrongPurpose { .. })),
            "{e}"
        );
        assert!(e.to_string().contains(what), "{e}");
    }
    // The deployment's policy key is accepted.
    let policy: HubKey<PolicySigning> = d.key("hub").expect("key");
    let s = sample(2).sign(&policy).expect("signs");
    assert!(SignedPolicy::decode_verified(&s.encode(), &d.anchor).is_ok());
}

/// A policy issued when its key's certificate was not valid is refused.
#[test]
fn a_policy_issued_outside_its_certificate_is_refused() {
    let mut p = sample(1);
    p.issued_at = UnixMillis(1_000_000_000_000); // 2001, before the certificate
    let s = p.sign(&key()).expect("signs");
    assert!(matches!(
        s.verify(&anchor()),
        Err(PolicyError::OutsideValidity)
    ));
}

#[test]
fn retention_below_a_year_is_refused_naming_the_law() {
    let mut p = sample(1);
    p.hub_retention_days = 364;
    let m = msg(p.clone());
    assert!(m.contains("365"), "{m}");
    assert!(m.contains("34090.6"), "{m}");
    assert!(p.sign(&key()).is_err());
}

#[test]
fn each_rule_has_its_message() {
    let mut p = sample(1);
    p.officers.push(p.officers[0].clone());
    let username = p.officers[0].username.clone();
    let m = msg(p);
    assert!(m.contains("listed twice"), "{m}");
    assert!(
        !m.contains(&username),
        "the message reaches logs: it names no person: {m}"
    );

    let mut p = sample(1);
    p.purposes.clear();
    assert!(msg(p).contains("no purposes"));

    let mut p = sample(1);
    p.officers[0].password_hash = "plaintext".into();
    assert!(msg(p).contains("argon2id"));

    let mut p = sample(1);
    p.agencies[0].ori = "fresno".into();
    assert!(msg(p).contains("ORI"));

    let mut p = sample(1);
    p.edge_retention_days = 400;
    assert!(msg(p).contains("edge retention"));

    let mut p = sample(1);
    p.max_stale_ms = 0;
    assert!(msg(p).contains("max_stale"));

    let mut p = sample(1);
    p.version = 0;
    assert!(msg(p).contains("version"));

    let mut p = sample(1);
    p.purposes[1].code = "stolen-vehicle".into();
    assert!(msg(p).contains("listed twice"));
}

#[test]
fn out_of_state_agencies_are_flagged() {
    let p = sample(1);
    assert!(p.agencies[0].export_refusal().is_none());
    let why = p.agencies[1].export_refusal().expect("flagged");
    assert!(why.contains("1798.90.55"), "{why}");
}

#[test]
fn oversized_or_trailing_bytes_are_refused_before_decoding() {
    let s = sample(1).sign(&key()).expect("valid");
    let mut bytes = s.encode();
    bytes.push(0);
    assert!(matches!(
        SignedPolicy::decode(&bytes),
        Err(PolicyError::Decode(DecodeError::Trailing(1)))
    ));
    let huge = vec![0u8; MAX_POLICY_BYTES + 1];
    assert!(matches!(
        SignedPolicy::decode(&huge),
        Err(PolicyError::Decode(DecodeError::TooLarge { .. }))
    ));
}

#[test]
fn an_invalid_policy_inside_a_valid_signature_is_refused() {
    let k = key();
    let mut p = sample(1);
    p.hub_retention_days = 30;
    let bytes = p.canonical_bytes();
    let env = Envelope {
        signature: k.sign(tag::POLICY_SIG, &bytes),
        policy: bytes,
        signer: k.cert_der().to_vec(),
    };
    let enc = postcard::to_allocvec(&env).expect("encodes");
    assert!(matches!(
        SignedPolicy::decode(&enc),
        Err(PolicyError::Invalid(_))
    ));
}

/// Policies signed before the hub had a key per purpose, with its single
/// key (format 1, before hotlists; format 2, before officers' keys; format
/// 3): they still decode, with the default hotlist rules for format 1 and
/// officers without keys before format 3, so an edge keeps the one it
/// stored; they carry no certificate, so they no longer verify (the hub
/// signs the next version, in the current format).
#[test]
fn policies_signed_with_the_single_hub_key_decode_and_do_not_verify() {
    for (vector, format) in [
        (include_str!("../testdata/policy-v1.hex"), 1),
        (include_str!("../testdata/policy-v2.hex"), 2),
        (include_str!("../testdata/policy-v3.hex"), 3),
    ] {
        let stored = hex::decode(vector.trim()).expect("hex");
        let back = SignedPolicy::decode(&stored).expect("old policy decodes");
        let want = if format < 3 {
            sample_without_keys(5, format)
        } else {
            sample(5)
        };
        assert_eq!(back.policy(), &want, "format {format}");
        assert_eq!(back.encode(), stored, "the signed bytes are kept as signed");
        assert!(back.signer_certificate().is_none());
        assert!(matches!(
            back.verify(&anchor()),
            Err(PolicyError::NoCertificate)
        ));
        let mut next = back.policy().clone();
        next.version += 1;
        let signed = next.sign(&key()).expect("sign");
        assert_eq!(signed.policy().format, POLICY_FORMAT);
        let again = SignedPolicy::decode_verified(&signed.encode(), &anchor()).expect("decodes");
        assert_eq!(again.policy().officers, back.policy().officers);
    }
}

/// A policy signed by this version (format 3, in the envelope that carries
/// the policy key's certificate) decodes and verifies in every later one.
#[test]
fn certified_format_v3_vector_still_decodes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/control/testdata/policy-v3-certified.hex"
    );
    let s = sample(5).sign(&key()).expect("valid");
    if std::env::var_os("ALPR_WRITE_VECTORS").is_some() {
        std::fs::write(path, hex::encode(s.encode()) + "\n").expect("write vector");
    }
    let stored =
        hex::decode(include_str!("../testdata/policy-v3-certified.hex").trim()).expect("hex");
    let back = SignedPolicy::decode_verified(&stored, &anchor()).expect("old policy decodes");
    assert_eq!(back.policy(), &sample(5));
    assert_eq!(stored, s.encode(), "the canonical encoding changed");
}

#[test]
fn an_officer_key_out_of_range_is_refused() {
    let mut p = sample(1);
    if let Some(k) = p.officers[0].key.as_mut() {
        k.m_kib = 1;
    }
    assert!(msg(p).contains("jdoe"));
    let mut p = sample(1);
    if let Some(k) = p.officers[0].key.as_mut() {
        k.public = [0; 32];
    }
    assert!(msg(p).contains("jdoe"));
}

#[test]
fn hotlist_expiry_beyond_the_limit_is_refused() {
    let mut p = sample(2);
    p.hotlists.local_max_expiry_days = MAX_LOCAL_EXPIRY_DAYS + 1;
    assert!(matches!(p.sign(&key()), Err(PolicyError::Invalid(m)) if m.contains("expire")));
    let mut p = sample(2);
    p.hotlists.local_default_expiry_days = p.hotlists.local_max_expiry_days + 1;
    assert!(p.sign(&key()).is_err());
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedPolicy::decode(&bytes);
    }

    #[test]
    fn any_valid_change_round_trips(
        version in 1u64..u64::MAX,
        hub in 365u32..5000,
        edge in 1u32..365,
        stale in 1u64..MAX_STALE_LIMIT_MS,
        case in any::<bool>(),
    ) {
        let mut p = sample(version);
        p.hub_retention_days = hub;
        p.edge_retention_days = edge;
        p.max_stale_ms = stale;
        p.purposes[0].case_required = case;
        let s = p.clone().sign(&key()).expect("valid");
        let back = SignedPolicy::decode_verified(&s.encode(), &anchor()).expect("decodes");
        prop_assert_eq!(back.policy(), &p);
    }

    #[test]
    fn retention_under_a_year_never_signs(hub in 0u32..365) {
        let mut p = sample(1);
        p.hub_retention_days = hub;
        p.edge_retention_days = 1;
        prop_assert!(p.sign(&key()).is_err());
    }
}
