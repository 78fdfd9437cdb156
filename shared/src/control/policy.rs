//! The policy document: one writer (the hub), signed, versioned.
//!
//! A [`Policy`] is signed as its canonical postcard bytes behind the
//! [`crate::crypto::tag::POLICY_SIG`] tag by the hub's policy key, and
//! travels with that key's certificate; [`SignedPolicy`] keeps exactly the
//! bytes that were signed, so what an edge verifies, stores and shows is
//! what the hub signed. [`SignedPolicy::verify`] checks the certificate
//! against the CA (issued for the policy purpose alone, valid when the
//! policy was issued), then the signature. A policy signed before the hub
//! had a key per purpose (no certificate with it) still decodes, so an
//! edge keeps enforcing the one it verified and stored then, but it no
//! longer verifies: the hub signs it again as the next version. Decoding
//! is bounded ([`MAX_POLICY_BYTES`] checked
//! before anything is decoded, no trailing bytes) and every decoded policy
//! passes [`Policy::validate`], whose messages say what is wrong and why.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::officer::OfficerKey;
use crate::cert::{CertError, KeyPurpose, Revocation, SignerCert, TrustAnchor};
use crate::crypto::{tag, Signature};
use crate::log::{decode_exact, DecodeError};
use crate::signer::{HubKey, PolicySigning};
use crate::types::UnixMillis;

/// Format of the policy's canonical bytes. Format 1 (before hotlists)
/// still decodes, with [`HotlistPolicy::default`]; formats 1 and 2 (before
/// officers' signing keys) with no officer key.
pub const POLICY_FORMAT: u8 = 3;
/// Largest signed policy (its canonical bytes and signature).
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// ALPR data the hub holds must be kept at least a year (Government Code
/// §34090.6, policy 426.4): no policy may set less.
pub const LEGAL_MIN_HUB_RETENTION_DAYS: u32 = 365;
/// Longest a policy may let an edge run without refreshing it.
pub const MAX_STALE_LIMIT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Longest text field of a policy (names, titles, labels).
pub const MAX_POLICY_TEXT: usize = 128;
/// Longest password hash (an argon2id PHC string is about 100 bytes).
pub const MAX_PASSWORD_HASH: usize = 256;
pub const MAX_OFFICERS: usize = 2000;
pub const MAX_AGENCIES: usize = 500;
pub const MAX_PURPOSES: usize = 200;
pub const MAX_REVOCATIONS: usize = 2000;

/// An officer who may log in on an edge, offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeOfficer {
    pub username: String,
    /// The officer's agency (its ORI).
    pub agency: String,
    pub title: String,
    /// argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
    /// Training lapses at this moment; no current training, no access.
    pub training_expires: UnixMillis,
    /// The officer's signing key (format 3 on): an edge derives it from
    /// the password at login and signs the officer's changes with it.
    /// `None` until the hub has learnt it (the officer's password has not
    /// passed through the hub since): such an officer changes nothing on
    /// an edge.
    pub key: Option<OfficerKey>,
}

/// An officer as formats 1 and 2 wrote one (no signing key).
#[derive(Deserialize)]
struct EdgeOfficerV2 {
    username: String,
    agency: String,
    title: String,
    password_hash: String,
    training_expires: UnixMillis,
}

impl From<EdgeOfficerV2> for EdgeOfficer {
    fn from(o: EdgeOfficerV2) -> EdgeOfficer {
        EdgeOfficer {
            username: o.username,
            agency: o.agency,
            title: o.title,
            password_hash: o.password_hash,
            training_expires: o.training_expires,
            key: None,
        }
    }
}

impl EdgeOfficer {
    pub fn trained_at(&self, t: UnixMillis) -> bool {
        t < self.training_expires
    }
}

/// Whom an agency answers to, which decides whether it may receive ALPR
/// data (§1798.90.55: public agencies only; by the Attorney General's
/// reading, not out-of-state or federal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgencyKind {
    /// A California public agency.
    InStatePublic,
    /// A public agency of another state: flagged, no exports.
    OutOfState,
    /// A federal agency: flagged, no exports.
    Federal,
}

impl AgencyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgencyKind::InStatePublic => "in-state public",
            AgencyKind::OutOfState => "out-of-state",
            AgencyKind::Federal => "federal",
        }
    }
}

/// An agency named in policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    /// Originating Agency Identifier: nine letters and digits.
    pub ori: String,
    pub name: String,
    pub kind: AgencyKind,
}

impl Agency {
    /// Whether exports to this agency are allowed; if not, why.
    pub fn export_refusal(&self) -> Option<String> {
        match self.kind {
            AgencyKind::InStatePublic => None,
            k => Some(format!(
                "{} ({}) is a {} agency: California Civil Code §1798.90.55 allows sharing \
                 ALPR data only with California public agencies",
                self.name,
                self.ori,
                k.as_str()
            )),
        }
    }
}

/// A purpose a search or view may name (an offence type), and whether it
/// needs a case number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    pub code: String,
    pub label: String,
    pub case_required: bool,
}

/// The policy document. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub format: u8,
    /// Starts at 1; each change signs the next.
    pub version: u64,
    pub issued_at: UnixMillis,
    pub hub_retention_days: u32,
    pub edge_retention_days: u32,
    /// How long an edge may run on this policy without the hub confirming
    /// it (ms); after that it refuses logins until it reaches the hub.
    pub max_stale_ms: u64,
    pub officers: Vec<EdgeOfficer>,
    /// Agencies that may receive exports (out-of-state and federal ones are
    /// listed flagged, see [`Agency::export_refusal`]).
    pub agencies: Vec<Agency>,
    pub revoked_nodes: Vec<Revocation>,
    pub purposes: Vec<Purpose>,
    /// Hotlist rules (format 2 on).
    pub hotlists: HotlistPolicy,
}

/// Longest expiry a policy may allow a local hotlist entry.
pub const MAX_LOCAL_EXPIRY_DAYS: u32 = 365;

/// What policy says about hotlists and their alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HotlistPolicy {
    /// A local entry added without an expiry expires after this many days.
    pub local_default_expiry_days: u32,
    /// No local entry may be set to expire later than this many days
    /// after its last edit.
    pub local_max_expiry_days: u32,
    /// A node's copy of a bulk list older than this (from the generation's
    /// issue time) is flagged on every alert it raises.
    pub max_list_age_ms: u64,
    /// How far back a new entry is matched against stored reads (past
    /// matches), in days.
    pub back_match_days: u32,
    /// Categories no node loads or alerts on (California: immigration).
    pub excluded_categories: Vec<crate::hotlist::Category>,
}

impl Default for HotlistPolicy {
    fn default() -> Self {
        Self {
            local_default_expiry_days: 30,
            local_max_expiry_days: 100,
            max_list_age_ms: 24 * 3600 * 1000,
            back_match_days: 30,
            excluded_categories: vec![crate::hotlist::Category::Immigration],
        }
    }
}

/// Format 1: the policy before [`HotlistPolicy`]. Decoded as signed, then
/// given the default hotlist rules.
#[derive(Deserialize)]
struct PolicyV1 {
    format: u8,
    version: u64,
    issued_at: UnixMillis,
    hub_retention_days: u32,
    edge_retention_days: u32,
    max_stale_ms: u64,
    officers: Vec<EdgeOfficerV2>,
    agencies: Vec<Agency>,
    revoked_nodes: Vec<Revocation>,
    purposes: Vec<Purpose>,
}

impl From<PolicyV1> for Policy {
    fn from(p: PolicyV1) -> Policy {
        Policy {
            format: p.format,
            version: p.version,
            issued_at: p.issued_at,
            hub_retention_days: p.hub_retention_days,
            edge_retention_days: p.edge_retention_days,
            max_stale_ms: p.max_stale_ms,
            officers: p.officers.into_iter().map(EdgeOfficer::from).collect(),
            agencies: p.agencies,
            revoked_nodes: p.revoked_nodes,
            purposes: p.purposes,
            hotlists: HotlistPolicy::default(),
        }
    }
}

/// Format 2: the policy before officers' signing keys: format 1's fields,
/// then the hotlist rules (postcard writes a struct's fields one after
/// another, so the nested struct reads the same bytes).
#[derive(Deserialize)]
struct PolicyV2 {
    v1: PolicyV1,
    hotlists: HotlistPolicy,
}

impl From<PolicyV2> for Policy {
    fn from(p: PolicyV2) -> Policy {
        Policy {
            hotlists: p.hotlists,
            ..Policy::from(p.v1)
        }
    }
}

/// Why a policy is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy: {0}")]
    Invalid(String),
    #[error("policy bytes: {0}")]
    Decode(#[from] DecodeError),
    #[error("unsupported policy format {0}")]
    Format(u8),
    #[error("the policy's signature is not the hub's")]
    BadSignature,
    #[error(
        "the policy carries no certificate: it was signed with the hub's single key, before \
         the hub had a key per purpose; the hub signs it again with its policy key"
    )]
    NoCertificate,
    #[error("the policy's certificate is refused: {0}")]
    Certificate(CertError),
    #[error("the policy was issued outside its certificate's validity")]
    OutsideValidity,
    #[error("the signed policy is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
}

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

fn text(field: &str, s: &str, max: usize, required: bool) -> Result<(), PolicyError> {
    if required && s.trim().is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    if s.len() > max {
        return Err(invalid(format!("{field} {s:?} is longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!("{field} has a control character")));
    }
    Ok(())
}

fn ori_ok(ori: &str) -> bool {
    ori.len() == 9
        && ori
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Policy {
    /// Check every rule; the message names the field and the reason.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(1..=POLICY_FORMAT).contains(&self.format) {
            return Err(PolicyError::Format(self.format));
        }
        let h = &self.hotlists;
        if h.local_max_expiry_days == 0 || h.local_max_expiry_days > MAX_LOCAL_EXPIRY_DAYS {
            return Err(invalid(format!(
                "local hotlist entries may expire after 1 to {MAX_LOCAL_EXPIRY_DAYS} days, not {}",
                h.local_max_expiry_days
            )));
        }
        if h.local_default_expiry_days == 0 || h.local_default_expiry_days > h.local_max_expiry_days
        {
            return Err(invalid(format!(
                "the default expiry of local hotlist entries ({} days) must be 1 day to the maximum ({} days)",
                h.local_default_expiry_days, h.local_max_expiry_days
            )));
        }
        if h.max_list_age_ms == 0 {
            return Err(invalid(
                "the longest a hotlist copy may age must be more than 0",
            ));
        }
        if self.version == 0 {
            return Err(invalid("version must be at least 1"));
        }
        if self.hub_retention_days < LEGAL_MIN_HUB_RETENTION_DAYS {
            return Err(invalid(format!(
                "hub retention of {} days is below the legal minimum of {} days \
                 (Government Code §34090.6, policy 426.4): ALPR data must be kept at least a year",
                self.hub_retention_days, LEGAL_MIN_HUB_RETENTION_DAYS
            )));
        }
        if self.edge_retention_days == 0 {
            return Err(invalid("edge retention must be at least 1 day"));
        }
        if self.edge_retention_days > self.hub_retention_days {
            return Err(invalid(format!(
                "edge retention of {} days is longer than the hub's {} days",
                self.edge_retention_days, self.hub_retention_days
            )));
        }
        if self.max_stale_ms == 0 || self.max_stale_ms > MAX_STALE_LIMIT_MS {
            return Err(invalid(format!(
                "max_stale must be more than 0 and at most 30 days (got {} ms)",
                self.max_stale_ms
            )));
        }
        if self.officers.len() > MAX_OFFICERS {
            return Err(invalid(format!("more than {MAX_OFFICERS} officers")));
        }
        if self.agencies.len() > MAX_AGENCIES {
            return Err(invalid(format!("more than {MAX_AGENCIES} agencies")));
        }
        if self.purposes.len() > MAX_PURPOSES {
            return Err(invalid(format!("more than {MAX_PURPOSES} purposes")));
        }
        if self.revoked_nodes.len() > MAX_REVOCATIONS {
            return Err(invalid(format!("more than {MAX_REVOCATIONS} revocations")));
        }
        // Officers are named by their place in the list, never by their
        // username: these messages reach logs (a policy refused), and no
        // log line names a person.
        let mut names = HashSet::new();
        for (n, o) in (1..).zip(&self.officers) {
            text("officer username", &o.username, MAX_POLICY_TEXT, true)?;
            if o.username.chars().any(char::is_whitespace) {
                return Err(invalid(format!("officer #{n}: the username has a space")));
            }
            if !names.insert(o.username.as_str()) {
                return Err(invalid(format!(
                    "officer #{n} is listed twice (an officer before it has its username)"
                )));
            }
            text("officer agency", &o.agency, MAX_POLICY_TEXT, true)?;
            text("officer title", &o.title, MAX_POLICY_TEXT, false)?;
            text(
                "officer password hash",
                &o.password_hash,
                MAX_PASSWORD_HASH,
                true,
            )?;
            if !o.password_hash.starts_with("$argon2id$") {
                return Err(invalid(format!(
                    "officer #{n}: the password hash is not an argon2id PHC string"
                )));
            }
            if let Some(key) = &o.key {
                key.validate()
                    .map_err(|e| invalid(format!("officer {:?}: {e}", o.username)))?;
            }
        }
        let mut oris = HashSet::new();
        for a in &self.agencies {
            if !ori_ok(&a.ori) {
                return Err(invalid(format!(
                    "agency ORI {:?} is not nine capital letters and digits",
                    a.ori
                )));
            }
            if !oris.insert(a.ori.as_str()) {
                return Err(invalid(format!("agency {} is listed twice", a.ori)));
            }
            text("agency name", &a.name, MAX_POLICY_TEXT, true)?;
        }
        if self.purposes.is_empty() {
            return Err(invalid(
                "no purposes: every search must name one from policy's list (policy 426.3)",
            ));
        }
        let mut codes = HashSet::new();
        for p in &self.purposes {
            text("purpose code", &p.code, MAX_POLICY_TEXT, true)?;
            if !codes.insert(p.code.as_str()) {
                return Err(invalid(format!("purpose {:?} is listed twice", p.code)));
            }
            text("purpose label", &p.label, MAX_POLICY_TEXT, true)?;
        }
        let mut serials = HashSet::new();
        for r in &self.revoked_nodes {
            if r.serial.is_empty()
                || r.serial.len() > 64
                || !r
                    .serial
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(invalid(format!(
                    "revoked serial {:?} is not lower-case hex",
                    r.serial
                )));
            }
            if !serials.insert(r.serial.as_str()) {
                return Err(invalid(format!("serial {} is revoked twice", r.serial)));
            }
            text(
                "revocation reason",
                &r.reason,
                crate::log::access::MAX_QUERY_LEN,
                false,
            )?;
        }
        Ok(())
    }

    /// The canonical bytes (what is signed).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a policy always serialises")
    }

    pub fn officer(&self, username: &str) -> Option<&EdgeOfficer> {
        self.officers.iter().find(|o| o.username == username)
    }

    pub fn purpose(&self, code: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.code == code)
    }

    /// Check and sign with the hub's policy key, in the current format (a
    /// version made from an older one is written in this one).
    pub fn sign(mut self, key: &HubKey<PolicySigning>) -> Result<SignedPolicy, PolicyError> {
        self.format = POLICY_FORMAT;
        self.validate()?;
        let bytes = self.canonical_bytes();
        let signature = key.sign(tag::POLICY_SIG, &bytes);
        let signed = SignedPolicy {
            bytes,
            signature,
            signer: Some(key.cert_der().to_vec()),
            policy: self,
        };
        let len = signed.encode().len();
        if len > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                len,
                max: MAX_POLICY_BYTES,
            });
        }
        Ok(signed)
    }
}

/// The form a signed policy travels and is stored in: the policy's
/// canonical bytes, the signature, and the DER of the certificate whose key
/// signed them.
#[derive(Serialize, Deserialize)]
struct Envelope {
    policy: Vec<u8>,
    signature: Signature,
    signer: Vec<u8>,
}

/// The envelope before the hub had a key per purpose: no certificate (the
/// edge took the key from the hub's TLS certificate). Decoded, never made.
#[derive(Serialize, Deserialize)]
struct EnvelopeV1 {
    policy: Vec<u8>,
    signature: Signature,
}

/// A policy with the hub's signature over its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    bytes: Vec<u8>,
    signature: Signature,
    /// The signing key's certificate (DER); `None` in a policy signed
    /// before the hub had a key per purpose.
    signer: Option<Vec<u8>>,
    policy: Policy,
}

impl SignedPolicy {
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn version(&self) -> u64 {
        self.policy.version
    }

    /// Whether a key of the deployment certified for the policy signed
    /// exactly these bytes: the certificate that came with them is issued
    /// by `anchor` for the policy purpose alone and valid when the policy
    /// was issued, and its key's signature verifies. Returns it.
    pub fn verify(&self, anchor: &TrustAnchor) -> Result<SignerCert, PolicyError> {
        let der = self.signer.as_deref().ok_or(PolicyError::NoCertificate)?;
        let cert = anchor
            .check_signer_der(der, KeyPurpose::Policy)
            .map_err(PolicyError::Certificate)?;
        if !cert.valid_at(self.policy.issued_at) {
            return Err(PolicyError::OutsideValidity);
        }
        if cert
            .key
            .verify(tag::POLICY_SIG, &self.bytes, &self.signature)
        {
            Ok(cert)
        } else {
            Err(PolicyError::BadSignature)
        }
    }

    /// Bytes to send or store.
    pub fn encode(&self) -> Vec<u8> {
        match &self.signer {
            Some(signer) => postcard::to_allocvec(&Envelope {
                policy: self.bytes.clone(),
                signature: self.signature,
                signer: signer.clone(),
            }),
            None => postcard::to_allocvec(&EnvelopeV1 {
                policy: self.bytes.clone(),
                signature: self.signature,
            }),
        }
        .expect("a policy always serialises")
    }

    /// Decode and validate (the signature is checked by [`Self::verify`]).
    /// An envelope without a certificate (signed before the hub had a key
    /// per purpose) decodes too; it does not verify.
    pub fn decode(bytes: &[u8]) -> Result<SignedPolicy, PolicyError> {
        // The two envelopes cannot both decode the same bytes exactly: the
        // newer one has a field after the signature.
        let (bytes_signed, signature, signer) =
            match decode_exact::<Envelope>(bytes, MAX_POLICY_BYTES) {
                Ok(env) => (env.policy, env.signature, Some(env.signer)),
                Err(newer) => match decode_exact::<EnvelopeV1>(bytes, MAX_POLICY_BYTES) {
                    Ok(env) => (env.policy, env.signature, None),
                    Err(_) => return Err(newer.into()),
                },
            };
        let policy: Policy = match bytes_signed.first() {
            Some(1) => decode_exact::<PolicyV1>(&bytes_signed, MAX_POLICY_BYTES)?.into(),
            Some(2) => decode_exact::<PolicyV2>(&bytes_signed, MAX_POLICY_BYTES)?.into(),
            _ => decode_exact(&bytes_signed, MAX_POLICY_BYTES)?,
        };
        policy.validate()?;
        Ok(SignedPolicy {
            bytes: bytes_signed,
            signature,
            signer,
            policy,
        })
    }

    /// Decode, validate and verify ([`Self::verify`]).
    pub fn decode_verified(
        bytes: &[u8],
        anchor: &TrustAnchor,
    ) -> Result<SignedPolicy, PolicyError> {
        let p = Self::decode(bytes)?;
        p.verify(anchor)?;
        Ok(p)
    }

    /// The certificate (DER) of the key that signed it, if it came with one.
    pub fn signer_certificate(&self) -> Option<&[u8]> {
        self.signer.as_deref()
    }
}

#[cfg(test)]
pub(crate) mod tests;
