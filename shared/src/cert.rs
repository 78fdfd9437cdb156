//! Rules of the deployment PKI, checked from the CA certificate alone.
//!
//! The CA is self-signed. A node certificate carries the node's name in its
//! common name, its kind (`pole` or `vehicle`) in its organisational unit,
//! an Ed25519 key (the same key signs the node's log and authenticates it in
//! mutual TLS), the client-authentication purpose and no CA rights. The hub
//! certificate carries the server-authentication purpose.

use x509_parser::certificate::X509Certificate;
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

/// A verified hub certificate: the key that signs bundle manifests.
#[derive(Debug, Clone)]
pub struct HubCert {
    pub name: String,
    pub key: PublicKey,
    pub not_before: UnixMillis,
    pub not_after: UnixMillis,
    pub serial: String,
}

impl HubCert {
    pub fn valid_at(&self, t: UnixMillis) -> bool {
        self.not_before <= t && t <= self.not_after
    }

    /// The hub as the signer of its own access log, for the log verifier:
    /// its key, validity and serial under `name` (its common name). The
    /// kind is not a claim about the hub: the verifier does not read it.
    pub fn as_signer(&self, name: DeviceId, der: Vec<u8>) -> DeviceCert {
        DeviceCert {
            name,
            kind: crate::types::DeviceKind::Pole,
            key: self.key,
            not_before: self.not_before,
            not_after: self.not_after,
            serial: self.serial.clone(),
            der,
        }
    }
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

    /// Verify the hub's certificate (DER): issued by this CA for server
    /// authentication, with an Ed25519 key.
    pub fn check_hub_der(&self, der: &[u8]) -> Result<HubCert, CertError> {
        let c = self.check_issued(der)?;
        let eku_server = c
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|e| e.value.server_auth);
        if !eku_server {
            return Err(CertError::WronglyIssued(
                "not issued for server authentication",
            ));
        }
        let name = common_name(&c).unwrap_or("").to_owned();
        Ok(HubCert {
            name,
            key: ed25519_key(&c)?,
            not_before: millis(c.validity().not_before),
            not_after: millis(c.validity().not_after),
            serial: c.raw_serial_as_string().replace(':', ""),
        })
    }

    /// Verify a node certificate (PEM) against this CA and the node rules.
    pub fn check_device_pem(&self, pem: &[u8]) -> Result<DeviceCert, CertError> {
        self.check_device_der(&first_certificate(pem)?)
    }

    /// Verify a node certificate (DER) against this CA and the node rules.
    pub fn check_device_der(&self, der: &[u8]) -> Result<DeviceCert, CertError> {
        let c = self.check_issued(der)?;
        let eku_client = c
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|e| e.value.client_auth);
        if !eku_client {
            return Err(CertError::WronglyIssued(
                "not issued for client authentication",
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
