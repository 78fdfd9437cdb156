//! Rules of the deployment PKI, checked from the CA certificate alone.
//!
//! The CA is self-signed. A node certificate carries the node's name in its
//! common name, its kind (`pole` or `vehicle`) in its organisational unit,
//! an Ed25519 key (the same key signs the node's log and authenticates it in
//! mutual TLS), the client-authentication purpose and no CA rights. The hub
//! certificate for TLS carries the server-authentication purpose.
//!
//! The hub signs with one key per [`KeyPurpose`] (receipts, policy, hotlist
//! generations, its own log, export manifests). Each key's certificate
//! names its purpose, and nothing else, in its extended key usage (a
//! private OID under `2.25`, [`KeyPurpose::oid`]); a verifier accepts a
//! signature only under a certificate of the purpose it checks
//! ([`TrustAnchor::check_signer_der`]), so the network-facing TLS key, or
//! any key of another purpose, cannot sign policy or evidence.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ExtendedKeyUsage;
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::FromDer;

use crate::crypto::PublicKey;
use crate::types::{DeviceId, DeviceKind, UnixMillis};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no PEM certificate found")]
    NotPem,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("not issued by this deployment's CA")]
    UnknownIssuer,
    #[error("wrongly issued: {0}")]
    WronglyIssued(&'static str),
    #[error("the CA certificate is not a self-signed CA: {0}")]
    BadCa(&'static str),
    #[error("certified for {found}, not for signing {}", wanted.signs())]
    WrongPurpose { wanted: KeyPurpose, found: String },
}

/// What one of the hub's keys may sign. Each purpose has its own key and
/// certificate, so a key that leaks (the TLS key faces the network) signs
/// nothing of another purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// Receipts (acknowledgements) to nodes.
    Receipt,
    /// The policy edges enforce.
    Policy,
    /// Hotlist generations (and, within them, deltas).
    Hotlist,
    /// The hub's own hash-chained log: access entries and purge records.
    Log,
    /// Manifests of log bundles and evidence bundles.
    Export,
}

/// The arc under which the purposes' OIDs sit: `2.25.<UUID>` (X.667: a
/// UUID as an OID arc needs no registration), DER content bytes.
const PURPOSE_ARC: [u8; 20] = [
    0x69, 0x82, 0xc8, 0xaf, 0xf3, 0xc2, 0x81, 0x97, 0xb2, 0xb6, 0x8b, 0xb2, 0xc0, 0x91, 0xed, 0xb8,
    0xec, 0xa9, 0xe1, 0x66,
];
/// The UUID of [`PURPOSE_ARC`] as a decimal integer (for people and tools).
pub const PURPOSE_ARC_TEXT: &str = "2.25.218242115134449468128353057467070574822";

impl KeyPurpose {
    pub const ALL: [KeyPurpose; 5] = [
        KeyPurpose::Receipt,
        KeyPurpose::Policy,
        KeyPurpose::Hotlist,
        KeyPurpose::Log,
        KeyPurpose::Export,
    ];

    /// The purpose's name in file names and `hub.toml` (`receipt`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Receipt => "receipt",
            KeyPurpose::Policy => "policy",
            KeyPurpose::Hotlist => "hotlist",
            KeyPurpose::Log => "log",
            KeyPurpose::Export => "export",
        }
    }

    /// What a key of this purpose signs, for people.
    pub fn signs(self) -> &'static str {
        match self {
            KeyPurpose::Receipt => "receipts to nodes",
            KeyPurpose::Policy => "the policy",
            KeyPurpose::Hotlist => "hotlist generations",
            KeyPurpose::Log => "the hub's log (access entries and purge records)",
            KeyPurpose::Export => "bundle and evidence manifests",
        }
    }

    /// The last arc of the purpose's OID.
    fn arc(self) -> u8 {
        match self {
            KeyPurpose::Receipt => 1,
            KeyPurpose::Policy => 2,
            KeyPurpose::Hotlist => 3,
            KeyPurpose::Log => 4,
            KeyPurpose::Export => 5,
        }
    }

    /// The DER content bytes of the purpose's OID,
    /// `2.25.218242115134449468128353057467070574822.<n>` (n = 1 receipt,
    /// 2 policy, 3 hotlist, 4 log, 5 export).
    pub fn oid(self) -> [u8; 21] {
        let mut out = [0u8; 21];
        out[..20].copy_from_slice(&PURPOSE_ARC);
        out[20] = self.arc();
        out
    }

    /// The OID in dotted form.
    pub fn oid_text(self) -> String {
        format!("{PURPOSE_ARC_TEXT}.{}", self.arc())
    }

    fn from_oid(bytes: &[u8]) -> Option<KeyPurpose> {
        KeyPurpose::ALL.into_iter().find(|p| p.oid() == bytes)
    }
}

impl std::fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyPurpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a key purpose (receipt, policy, hotlist, log, export)")
            })
    }
}

/// The purposes a certificate's extended key usage names, for messages and
/// checks: (the hub purposes it carries, every other usage by name).
fn usages(eku: Option<&ExtendedKeyUsage<'_>>) -> (Vec<KeyPurpose>, Vec<String>) {
    let Some(e) = eku else {
        return (Vec::new(), Vec::new());
    };
    let mut ours = Vec::new();
    let mut others = Vec::new();
    for (set, name) in [
        (e.any, "any purpose"),
        (e.server_auth, "server authentication (a TLS certificate)"),
        (e.client_auth, "client authentication (a node certificate)"),
        (e.code_signing, "code signing"),
        (e.email_protection, "e-mail protection"),
        (e.time_stamping, "time stamping"),
        (e.ocsp_signing, "OCSP signing"),
    ] {
        if set {
            others.push(name.to_owned());
        }
    }
    for oid in &e.other {
        match KeyPurpose::from_oid(oid.as_bytes()) {
            Some(p) => ours.push(p),
            None => others.push(format!("usage {oid}")),
        }
    }
    (ours, others)
}

/// A verified certificate of one of the hub's signing keys: issued by the
/// CA for `purpose` and nothing else.
#[derive(Debug, Clone)]
pub struct SignerCert {
    pub purpose: KeyPurpose,
    /// Its common name (the hub's log is kept under it).
    pub name: String,
    pub key: PublicKey,
    pub not_before: UnixMillis,
    pub not_after: UnixMillis,
    pub serial: String,
    pub der: Vec<u8>,
}

impl SignerCert {
    pub fn valid_at(&self, t: UnixMillis) -> bool {
        self.not_before <= t && t <= self.not_after
    }

    /// The hub's log key as the signer of its chain, for the log verifier:
    /// its key, validity and serial under its common name. The kind is not
    /// a claim about the hub: the verifier does not read it.
    pub fn as_log_signer(&self) -> Result<DeviceCert, CertError> {
        if self.purpose != KeyPurpose::Log {
            return Err(CertError::WrongPurpose {
                wanted: KeyPurpose::Log,
                found: format!("the {} purpose", self.purpose),
            });
        }
        let name = DeviceId::new(&self.name)
            .map_err(|_| CertError::WronglyIssued("common name is not a log name"))?;
        Ok(DeviceCert {
            name,
            kind: DeviceKind::Pole,
            key: self.key,
            not_before: self.not_before,
            not_after: self.not_after,
            serial: self.serial.clone(),
            der: self.der.clone(),
        })
    }

    /// A certificate's facts without any check of issuer or purpose: what
    /// a test needs to play a hub that signs with the wrong key.
    #[doc(hidden)]
    pub fn unchecked(der: &[u8], purpose: KeyPurpose) -> Result<SignerCert, CertError> {
        SignerCert::of(&parse(der)?, der, purpose)
    }

    /// The facts of the parsed certificate `c` (whose DER is `der`), for
    /// `purpose`.
    fn of(c: &X509Certificate<'_>, der: &[u8], purpose: KeyPurpose) -> Result<Self, CertError> {
        Ok(SignerCert {
            purpose,
            name: common_name(c).unwrap_or("").to_owned(),
            key: ed25519_key(c)?,
            not_before: millis(c.validity().not_before),
            not_after: millis(c.validity().not_after),
            serial: c.raw_serial_as_string().replace(':', ""),
            der: der.to_vec(),
        })
    }
}

/// A verified node certificate.
#[derive(Debug, Clone)]
pub struct DeviceCert {
    pub name: DeviceId,
    pub kind: DeviceKind,
    pub key: PublicKey,
    pub not_before: UnixMillis,
    pub not_after: UnixMillis,
    /// Serial number in hex, as listed for revocation.
    pub serial: String,
    pub der: Vec<u8>,
}

impl DeviceCert {
    pub fn valid_at(&self, t: UnixMillis) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// The hub's verified TLS certificate.
#[derive(Debug, Clone)]
pub struct TlsCert {
    pub name: String,
    pub key: PublicKey,
    pub not_after: UnixMillis,
}

/// The common name a certificate claims, without checking who issued it
/// (to file a refused certificate under the node it names).
pub fn claimed_name(der: &[u8]) -> Result<DeviceId, CertError> {
    device_name(&parse(der)?)
}

/// The organisation of a certificate's issuer (the agency that runs the
/// deployment CA), if it names one: what the public transparency page
/// calls the agency.
pub fn issuer_organization(der: &[u8]) -> Option<String> {
    let c = parse(der).ok()?;
    let org = c.issuer().iter_organization().next()?.as_str().ok()?;
    Some(org.to_owned())
}

/// The common name of a certificate's subject, if it has a readable one.
fn common_name<'a>(c: &'a X509Certificate<'_>) -> Option<&'a str> {
    c.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
}

/// A node certificate's name: its common name, which must be a device id.
fn device_name(c: &X509Certificate<'_>) -> Result<DeviceId, CertError> {
    let name = common_name(c).ok_or(CertError::WronglyIssued("no common name"))?;
    DeviceId::new(name).map_err(|_| CertError::WronglyIssued("common name is not a device id"))
}

fn ed25519_key(c: &X509Certificate<'_>) -> Result<PublicKey, CertError> {
    let spki = c.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(CertError::WronglyIssued("key is not Ed25519"));
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertError::WronglyIssued("Ed25519 key of the wrong length"))?;
    PublicKey::from_bytes(&raw).map_err(|_| CertError::WronglyIssued("unusable Ed25519 key"))
}

/// A revoked node certificate and the moment revocation took effect:
/// entries that certificate's key signed at or after `effective_at` are not
/// to be trusted (the hub refuses them; audits report them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// Serial number as lower-case hex without separators.
    pub serial: String,
    pub effective_at: UnixMillis,
    pub reason: String,
}

/// The deployment's trust anchor.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    der: Vec<u8>,
}

/// All DER certificates in a PEM bundle, in order.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| CertError::Malformed(e.to_string()))?;
        if p.label == "CERTIFICATE" {
            out.push(p.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError::NotPem);
    }
    Ok(out)
}

fn first_certificate(pem: &[u8]) -> Result<Vec<u8>, CertError> {
    pem_certificates(pem)?
        .into_iter()
        .next()
        .ok_or(CertError::NotPem)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, c) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::Malformed("trailing bytes".into()));
    }
    Ok(c)
}

fn millis(t: x509_parser::time::ASN1Time) -> UnixMillis {
    UnixMillis(
        u64::try_from(t.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000),
    )
}

impl TrustAnchor {
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertError> {
        Self::from_der(first_certificate(pem)?)
    }

    pub fn from_der(der: Vec<u8>) -> Result<Self, CertError> {
        let c = parse(&der)?;
        let is_ca = c
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        if !is_ca {
            return Err(CertError::BadCa("basic constraints do not allow signing"));
        }
        if c.verify_signature(None).is_err() {
            return Err(CertError::BadCa("not self-signed"));
        }
        drop(c);
        Ok(TrustAnchor { der })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn ca(&self) -> X509Certificate<'_> {
        parse(&self.der).expect("checked when the anchor was built")
    }

    /// Check that `cert` was issued by this CA (signature and issuer name).
    fn check_issued<'a>(&self, der: &'a [u8]) -> Result<X509Certificate<'a>, CertError> {
        let c = parse(der)?;
        let ca = self.ca();
        if c.issuer() != ca.subject() || c.verify_signature(Some(ca.public_key())).is_err() {
            return Err(CertError::UnknownIssuer);
        }
        if c.basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca)
        {
            return Err(CertError::WronglyIssued(
                "a CA certificate used as an end entity",
            ));
        }
        Ok(c)
    }

    /// Verify the hub's TLS certificate (DER): issued by this CA for
    /// server authentication, with an Ed25519 key, and for no signing
    /// purpose of the hub's.
    pub fn check_tls_der(&self, der: &[u8]) -> Result<TlsCert, CertError> {
        let c = self.check_issued(der)?;
        let eku = c.extended_key_usage().ok().flatten().map(|e| e.value);
        if !eku.is_some_and(|e| e.server_auth) {
            return Err(CertError::WronglyIssued(
                "not issued for server authentication",
            ));
        }
        if let Some(p) = usages(eku).0.first() {
            return Err(CertError::WronglyIssued(match p {
                KeyPurpose::Receipt => "a TLS certificate that may also sign receipts",
                KeyPurpose::Policy => "a TLS certificate that may also sign the policy",
                KeyPurpose::Hotlist => "a TLS certificate that may also sign hotlists",
                KeyPurpose::Log => "a TLS certificate that may also sign the hub's log",
                KeyPurpose::Export => "a TLS certificate that may also sign manifests",
            }));
        }
        Ok(TlsCert {
            name: common_name(&c).unwrap_or("").to_owned(),
            key: ed25519_key(&c)?,
            not_after: millis(c.validity().not_after),
        })
    }

    /// Verify the certificate (DER) of one of the hub's signing keys:
    /// issued by this CA, with an Ed25519 key, for `purpose` alone (its
    /// extended key usage names that purpose and nothing else).
    pub fn check_signer_der(
        &self,
        der: &[u8],
        purpose: KeyPurpose,
    ) -> Result<SignerCert, CertError> {
        let c = self.check_issued(der)?;
        let eku = c.extended_key_usage().ok().flatten().map(|e| e.value);
        let (ours, others) = usages(eku);
        if ours != [purpose] || !others.is_empty() {
            let mut found: Vec<String> = ours
                .iter()
                .filter(|p| **p != purpose)
                .map(|p| format!("signing {}", p.signs()))
                .collect();
            found.extend(others);
            let found = if found.is_empty() {
                "no purpose of the hub's".to_owned()
            } else {
                found.join(" and ")
            };
            return Err(CertError::WrongPurpose {
                wanted: purpose,
                found,
            });
        }
        SignerCert::of(&c, der, purpose)
    }

    /// Verify a certificate (DER) that may sign a chain of the log format:
    /// a node's (the node rules) or the hub's log key's (the log purpose,
    /// its common name naming the chain). Which one it claims to be is
    /// read from its extended key usage.
    pub fn check_chain_signer_der(&self, der: &[u8]) -> Result<DeviceCert, CertError> {
        let claims_hub_purpose = parse(der)
            .ok()
            .and_then(|c| {
                c.extended_key_usage()
                    .ok()
                    .flatten()
                    .map(|e| usages(Some(e.value)).0)
            })
            .is_some_and(|ours| !ours.is_empty());
        if claims_hub_purpose {
            self.check_signer_der(der, KeyPurpose::Log)?.as_log_signer()
        } else {
            self.check_device_der(der)
        }
    }

    /// Verify a node certificate (PEM) against this CA and the node rules.
    pub fn check_device_pem(&self, pem: &[u8]) -> Result<DeviceCert, CertError> {
        self.check_device_der(&first_certificate(pem)?)
    }

    /// Verify a node certificate (DER) against this CA and the node rules.
    pub fn check_device_der(&self, der: &[u8]) -> Result<DeviceCert, CertError> {
        let c = self.check_issued(der)?;
        let eku = c.extended_key_usage().ok().flatten().map(|e| e.value);
        if !eku.is_some_and(|e| e.client_auth) {
            return Err(CertError::WronglyIssued(
                "not issued for client authentication",
            ));
        }
        if !usages(eku).0.is_empty() {
            return Err(CertError::WronglyIssued(
                "a node certificate that may also sign for the hub",
            ));
        }
        let name = device_name(&c)?;
        let kind = c
            .subject()
            .iter_organizational_unit()
            .next()
            .and_then(|ou| ou.as_str().ok())
            .and_then(|s| s.parse::<DeviceKind>().ok())
            .ok_or(CertError::WronglyIssued(
                "organisational unit is not pole or vehicle",
            ))?;
        let key = ed25519_key(&c)?;
        Ok(DeviceCert {
            name,
            kind,
            key,
            not_before: millis(c.validity().not_before),
            not_after: millis(c.validity().not_after),
            serial: c.raw_serial_as_string().replace(':', ""),
            der: der.to_vec(),
        })
    }
}
