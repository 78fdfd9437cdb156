//! Issuing the deployment PKI: the CA, the hub's TLS certificate, the
//! certificates of the hub's signing keys (one per [`KeyPurpose`]) and node
//! certificates. Every key is Ed25519 (but the console's, for browsers).
//! The checks that go with these rules live in [`crate::cert`].

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::cert::KeyPurpose;
use crate::crypto::SecretKey;
use crate::types::{DeviceId, DeviceKind};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("key encoding failed: {0}")]
    Key(#[from] crate::crypto::KeyError),
}

/// A certificate and its private key, both PEM. The key is zeroed on drop.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("key_pem", &"..")
            .finish_non_exhaustive()
    }
}

fn random_serial() -> SerialNumber {
    let mut s = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s);
    s[0] &= 0x7f; // positive INTEGER
    s[0] |= 0x01; // and no leading zero byte
    SerialNumber::from_slice(&s)
}

fn params(cn: &str, ou: Option<&str>, org: &str, days: i64) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    params_from(
        cn,
        ou,
        org,
        now - Duration::minutes(5),
        now + Duration::days(days),
    )
}

fn params_from(
    cn: &str,
    ou: Option<&str>,
    org: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    p
}

fn ed25519_keypair(key: &SecretKey) -> Result<KeyPair, PkiError> {
    let pem = key.to_pkcs8_pem()?;
    Ok(KeyPair::from_pem_and_sign_algo(&pem, &PKCS_ED25519)?)
}

/// Create a deployment CA named `org`, valid for `days`.
pub fn new_ca(org: &str, days: i64) -> Result<Issued, PkiError> {
    let now = OffsetDateTime::now_utc();
    new_ca_with(SecretKey::generate(), org, now - Duration::minutes(5), days)
}

/// A CA with a given key, valid from `not_before` for `days` (test vectors
/// keep theirs fixed).
#[doc(hidden)]
pub fn new_ca_with(
    key: SecretKey,
    org: &str,
    not_before: OffsetDateTime,
    days: i64,
) -> Result<Issued, PkiError> {
    let kp = ed25519_keypair(&key)?;
    let mut p = params(&format!("{org} deployment CA"), None, org, days);
    p.not_before = not_before;
    p.not_after = not_before + Duration::days(days);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&kp)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.to_pkcs8_pem()?,
    })
}

/// The CA, loaded to issue certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    org: String,
}

impl Authority {
    pub fn load(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, PkiError> {
        let key = SecretKey::from_pkcs8_pem(ca_key_pem)?;
        let kp = ed25519_keypair(&key)?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, kp)?;
        let org = x509_org(ca_cert_pem).unwrap_or_else(|| "ALPR".to_owned());
        Ok(Authority { issuer, org })
    }

    /// Issue a node certificate for a fresh Ed25519 key. That key is both the
    /// node's TLS client identity and the key that signs its read log.
    pub fn issue_device(
        &self,
        name: &DeviceId,
        kind: DeviceKind,
        days: i64,
    ) -> Result<(Issued, SecretKey), PkiError> {
        let key = SecretKey::generate();
        let cert_pem = self.issue_device_for(&key, name, kind, days)?;
        Ok((
            Issued {
                cert_pem,
                key_pem: key.to_pkcs8_pem()?,
            },
            key,
        ))
    }

    /// Issue a node certificate for an existing key.
    pub fn issue_device_for(
        &self,
        key: &SecretKey,
        name: &DeviceId,
        kind: DeviceKind,
        days: i64,
    ) -> Result<String, PkiError> {
        let p = params(name.as_str(), Some(kind.as_str()), &self.org, days);
        self.sign_device(key, p)
    }

    /// A node certificate for a fresh key, issued as if `days_ago` days
    /// ago (valid from then, for `days` from now): a node whose reads are
    /// a year old, for tests of retention on a running hub.
    #[doc(hidden)]
    pub fn issue_device_enrolled_days_ago(
        &self,
        name: &DeviceId,
        kind: DeviceKind,
        days_ago: i64,
        days: i64,
    ) -> Result<(Issued, SecretKey), PkiError> {
        let key = SecretKey::generate();
        let now = OffsetDateTime::now_utc();
        let p = params_from(
            name.as_str(),
            Some(kind.as_str()),
            &self.org,
            now - Duration::days(days_ago),
            now + Duration::days(days),
        );
        let cert_pem = self.sign_device(&key, p)?;
        Ok((
            Issued {
                cert_pem,
                key_pem: key.to_pkcs8_pem()?,
            },
            key,
        ))
    }

    fn sign_device(&self, key: &SecretKey, mut p: CertificateParams) -> Result<String, PkiError> {
        let kp = ed25519_keypair(key)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&kp, &self.issuer)?.pem())
    }

    /// Issue the hub's server certificate for the given DNS names / IPs.
    pub fn issue_hub(&self, names: &[String], days: i64) -> Result<Issued, PkiError> {
        let key = SecretKey::generate();
        let kp = ed25519_keypair(&key)?;
        let mut p = params("hub", Some("hub"), &self.org, days);
        p.subject_alt_names = CertificateParams::new(names.to_vec())?.subject_alt_names;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        Ok(Issued {
            cert_pem: p.signed_by(&kp, &self.issuer)?.pem(),
            key_pem: key.to_pkcs8_pem()?,
        })
    }

    /// Issue the certificate of one of the hub's signing keys, for `purpose`
    /// alone, named `name` (the hub's log is kept under its log key's
    /// name), for a fresh Ed25519 key.
    pub fn issue_signer(
        &self,
        purpose: KeyPurpose,
        name: &str,
        days: i64,
    ) -> Result<(Issued, SecretKey), PkiError> {
        let key = SecretKey::generate();
        let cert_pem = self.issue_usages_for(&key, name, &[purpose], &[], days)?;
        Ok((
            Issued {
                cert_pem,
                key_pem: key.to_pkcs8_pem()?,
            },
            key,
        ))
    }

    /// Issue a certificate for `key` whose extended key usage names the
    /// hub purposes `purposes` and the standard usages `standard`: one
    /// purpose and nothing else for a signing key. More (or a TLS usage
    /// beside a purpose) only for tests of the refusal paths.
    #[doc(hidden)]
    pub fn issue_usages_for(
        &self,
        key: &SecretKey,
        name: &str,
        purposes: &[KeyPurpose],
        standard: &[StandardUsage],
        days: i64,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.issue_usages_between(
            key,
            name,
            purposes,
            standard,
            now - Duration::minutes(5),
            now + Duration::days(days),
        )
    }

    /// [`Self::issue_usages_for`] valid from `not_before` to `not_after`
    /// (test vectors and test deployments sign at fixed past times).
    #[doc(hidden)]
    pub fn issue_usages_between(
        &self,
        key: &SecretKey,
        name: &str,
        purposes: &[KeyPurpose],
        standard: &[StandardUsage],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let kp = ed25519_keypair(key)?;
        let ou = match purposes {
            [p] => format!("hub {p} signing"),
            _ => "hub".to_owned(),
        };
        let mut p = params(name, Some(&ou), &self.org, 1);
        p.not_before = not_before;
        p.not_after = not_after;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // rcgen writes only OIDs whose arcs fit in u64; the purposes sit
        // under a UUID arc, so the extension is written here.
        let mut eku =
            CustomExtension::from_oid_content(&[2, 5, 29, 37], eku_der(purposes, standard));
        eku.set_criticality(true);
        p.custom_extensions = vec![eku];
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&kp, &self.issuer)?.pem())
    }

    /// Issue the certificate of the hub's HTTPS port for people (the API
    /// and the web console) for a fresh ECDSA P-256 key: browsers refuse
    /// Ed25519 server keys, so the port that browsers use cannot serve
    /// [`Self::issue_hub`]'s. Server authentication only; the `hub`
    /// commands verify it from the CA as before.
    pub fn issue_console(&self, names: &[String], days: i64) -> Result<Issued, PkiError> {
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = params("hub console", Some("hub"), &self.org, days);
        p.subject_alt_names = CertificateParams::new(names.to_vec())?.subject_alt_names;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        Ok(Issued {
            cert_pem: p.signed_by(&kp, &self.issuer)?.pem(),
            key_pem: Zeroizing::new(kp.serialize_pem()),
        })
    }

    /// Issue a certificate that breaks the node rules on purpose (a CA-less
    /// server certificate used as a node). For tests of the refusal paths.
    #[doc(hidden)]
    pub fn issue_wrong_purpose(&self, name: &DeviceId) -> Result<(String, SecretKey), PkiError> {
        let key = SecretKey::generate();
        let kp = ed25519_keypair(&key)?;
        let mut p = params(name.as_str(), Some("pole"), &self.org, 30);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok((p.signed_by(&kp, &self.issuer)?.pem(), key))
    }
}

/// A standard extended key usage, for [`Authority::issue_usages_for`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum StandardUsage {
    ServerAuth,
    ClientAuth,
}

/// DER of an ExtKeyUsageSyntax (a SEQUENCE of OIDs) naming `purposes`
/// and `standard`.
fn eku_der(purposes: &[KeyPurpose], standard: &[StandardUsage]) -> Vec<u8> {
    const SERVER_AUTH: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    const CLIENT_AUTH: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    let mut oids: Vec<Vec<u8>> = purposes.iter().map(|p| p.oid().to_vec()).collect();
    oids.extend(standard.iter().map(|s| match s {
        StandardUsage::ServerAuth => SERVER_AUTH.to_vec(),
        StandardUsage::ClientAuth => CLIENT_AUTH.to_vec(),
    }));
    let mut body = Vec::new();
    for oid in oids {
        body.push(0x06);
        body.push(oid.len() as u8);
        body.extend_from_slice(&oid);
    }
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// A DER length: short form under 128, else long form.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn x509_org(pem: &str) -> Option<String> {
    let der = crate::cert::pem_certificates(pem.as_bytes())
        .ok()?
        .into_iter()
        .next()?;
    let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
    let org = c
        .subject()
        .iter_organization()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(org)
}
