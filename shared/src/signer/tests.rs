use super::dev::Deployment;
use super::*;
use crate::cert::CertError;
use crate::pki::StandardUsage;

fn der(pem: &str) -> Vec<u8> {
    pem_certificates(pem.as_bytes())
        .expect("pem")
        .into_iter()
        .next()
        .expect("one certificate")
}

/// An OID's content bytes in dotted form (arcs up to 128 bits).
fn dotted(bytes: &[u8]) -> String {
    let mut arcs: Vec<u128> = Vec::new();
    let mut v: u128 = 0;
    for b in bytes {
        v = (v << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    let first = arcs.remove(0);
    let (a, b) = if first >= 80 {
        (2, first - 80)
    } else {
        (first / 40, first % 40)
    };
    std::iter::once(a.to_string())
        .chain(std::iter::once(b.to_string()))
        .chain(arcs.iter().map(ToString::to_string))
        .collect::<Vec<_>>()
        .join(".")
}

/// The purpose OIDs are what the docs and `openssl x509 -text` show.
#[test]
fn each_purpose_is_its_own_oid_under_the_uuid_arc() {
    let d = Deployment::new().expect("deployment");
    for p in KeyPurpose::ALL {
        let (issued, _) = d.authority.issue_signer(p, "hub", 30).expect("issued");
        let der = der(&issued.cert_pem);
        let (_, c) = x509_parser::parse_x509_certificate(&der).expect("parses");
        let eku = c.extended_key_usage().expect("one EKU").expect("an EKU");
        assert!(eku.critical);
        let oids: Vec<String> = eku
            .value
            .other
            .iter()
            .map(|o| dotted(o.as_bytes()))
            .collect();
        assert_eq!(oids, [p.oid_text()]);
        assert_eq!(eku.value.other[0].as_bytes(), p.oid());
        assert!(!eku.value.server_auth && !eku.value.client_auth && !eku.value.any);
        let back = d.anchor.check_signer_der(&der, p).expect("accepted");
        assert_eq!((back.purpose, back.name.as_str()), (p, "hub"));
    }
}

/// A verifier accepts a key only under a certificate of its own purpose:
/// not another purpose's, not the TLS certificate, not a node's, not one
/// that names two purposes or a purpose and TLS.
#[test]
fn a_certificate_of_another_purpose_is_refused() {
    let d = Deployment::new().expect("deployment");
    let keys = d.keys().expect("keys");
    let wrong = d
        .anchor
        .check_signer_der(keys.receipt.cert_der(), KeyPurpose::Policy)
        .expect_err("a receipt key may not sign the policy");
    assert!(
        matches!(&wrong, CertError::WrongPurpose { wanted: KeyPurpose::Policy, found } if found.contains("receipts")),
        "{wrong}"
    );
    let (_, tls) = d.tls().expect("tls");
    let e = d
        .anchor
        .check_signer_der(&tls, KeyPurpose::Export)
        .expect_err("the TLS key may not sign manifests");
    assert!(e.to_string().contains("server authentication"), "{e}");
    let (node, _) = d
        .authority
        .issue_device(
            &crate::types::DeviceId::new("pole-1").expect("id"),
            crate::types::DeviceKind::Pole,
            30,
        )
        .expect("node");
    assert!(d
        .anchor
        .check_signer_der(&der(&node.cert_pem), KeyPurpose::Log)
        .is_err());

    let key = SecretKey::generate();
    let two = d
        .authority
        .issue_usages_for(
            &key,
            "hub",
            &[KeyPurpose::Policy, KeyPurpose::Hotlist],
            &[],
            30,
        )
        .expect("issued");
    let e = d
        .anchor
        .check_signer_der(&der(&two), KeyPurpose::Policy)
        .expect_err("a key for two purposes");
    assert!(e.to_string().contains("hotlist"), "{e}");
    let tls_too = d
        .authority
        .issue_usages_for(
            &key,
            "hub",
            &[KeyPurpose::Log],
            &[StandardUsage::ServerAuth],
            30,
        )
        .expect("issued");
    let tls_too = der(&tls_too);
    assert!(d
        .anchor
        .check_signer_der(&tls_too, KeyPurpose::Log)
        .is_err());
    // Nor is such a certificate a TLS certificate.
    assert!(d.anchor.check_tls_der(&tls_too).is_err());
    let node_too = d
        .authority
        .issue_usages_for(
            &key,
            "pole-2",
            &[KeyPurpose::Log],
            &[StandardUsage::ClientAuth],
            30,
        )
        .expect("issued");
    assert!(d.anchor.check_device_der(&der(&node_too)).is_err());
    // The TLS certificate itself is one.
    assert!(d.anchor.check_tls_der(&tls).is_ok());
}

/// Another CA's certificate of the right purpose is not this deployment's.
#[test]
fn another_deployments_signer_is_refused() {
    let ours = Deployment::new().expect("deployment");
    let theirs = Deployment::new().expect("deployment");
    let k: HubKey<PolicySigning> = theirs.key("hub").expect("key");
    assert!(matches!(
        ours.anchor
            .check_signer_der(k.cert_der(), KeyPurpose::Policy),
        Err(CertError::UnknownIssuer)
    ));
    assert!(matches!(
        HubKey::<PolicySigning>::new(SecretKey::generate(), k.cert_der(), &theirs.anchor),
        Err(HubKeyError::KeyMismatch(KeyPurpose::Policy))
    ));
}
