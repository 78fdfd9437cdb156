//! An officer's own signing key, and what it signs: the changes an officer
//! makes on a node to the replicated documents (a hold placed, a local
//! hotlist entry added, edited or removed).
//!
//! The key is derived from the officer's password with argon2id and a
//! salt of its own (not the password hash's), so only someone who knows
//! the password can sign — also on an edge with no link to the hub. The
//! hub learns the public key when the password passes through it (a user
//! added, a password set, a login) and keeps every key an officer has
//! had; the signed policy carries each officer's current [`OfficerKey`]
//! (public key, salt, parameters), so an edge derives the same key at
//! login and checks it before signing anything. The secret key lives only
//! in the edge process for the session ([`OfficerSigner`]), is never
//! printed and is zeroed on drop.
//!
//! A signature covers the tagged canonical bytes of the change
//! ([`tag::OFFICER_CHANGE_SIG`]): the document, the key written, the exact
//! value bytes, the node it was made on and the officer. It is kept in
//! the document beside the value ([`ChangeSignature`]), so it survives
//! merges and compactions until the hub has checked it.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::{tag, PublicKey, SecretKey, Signature};

/// Bytes of a key's salt.
pub const KEY_SALT_LEN: usize = 16;
/// argon2id memory (KiB) and passes of a new key: OWASP's parameters, as
/// for the password hash.
pub const KEY_M_KIB: u32 = 19_456;
pub const KEY_T: u32 = 2;
/// Bounds on the parameters a key may name (a policy is signed by the
/// hub, but an edge still refuses one that would exhaust it).
pub const MAX_KEY_M_KIB: u32 = 256 * 1024;
pub const MAX_KEY_T: u32 = 16;
/// Longest officer and node names a signature carries.
pub const MAX_SIGNER_NAME: usize = 128;

const TEXT_PREFIX: &str = "$alpr-officer-key$v=1$";

/// Why a key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfficerKeyError {
    #[error("officer key parameters out of range (m = {m_kib} KiB, t = {t})")]
    Parameters { m_kib: u32, t: u32 },
    #[error("officer key derivation failed: {0}")]
    Derive(String),
    #[error("officer key public part is not a valid Ed25519 key")]
    Public,
    #[error("not an officer key ({TEXT_PREFIX}m=…,t=…$SALT$PUBLIC): {0}")]
    Text(String),
    #[error("the password does not give this officer's signing key")]
    Mismatch,
}

/// An officer's signing key as the policy and the hub keep it: the
/// public key, and how to derive its secret from the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerKey {
    pub public: [u8; 32],
    pub salt: [u8; KEY_SALT_LEN],
    pub m_kib: u32,
    pub t: u32,
}

impl fmt::Debug for OfficerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfficerKey({})", hex::encode(self.public))
    }
}

impl OfficerKey {
    /// A new key for `password`: a fresh random salt, OWASP parameters.
    /// Returns the key and its secret. Slow on purpose (argon2id).
    pub fn generate(password: &str) -> Result<(OfficerKey, SecretKey), OfficerKeyError> {
        Self::derive(password, rand::random(), KEY_M_KIB, KEY_T)
    }

    /// The key `password` gives with this salt and these parameters.
    pub fn derive(
        password: &str,
        salt: [u8; KEY_SALT_LEN],
        m_kib: u32,
        t: u32,
    ) -> Result<(OfficerKey, SecretKey), OfficerKeyError> {
        check_parameters(m_kib, t)?;
        let params = argon2::Params::new(m_kib, t, 1, Some(32))
            .map_err(|e| OfficerKeyError::Derive(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password.as_bytes(), &salt, seed.as_mut())
            .map_err(|e| OfficerKeyError::Derive(e.to_string()))?;
        let secret = SecretKey::from_bytes(&seed);
        let key = OfficerKey {
            public: secret.public().to_bytes(),
            salt,
            m_kib,
            t,
        };
        Ok((key, secret))
    }

    /// The secret of this key, from the officer's password; an error if
    /// the password gives another key. Slow on purpose (argon2id).
    pub fn unlock(&self, password: &str) -> Result<SecretKey, OfficerKeyError> {
        let (key, secret) = Self::derive(password, self.salt, self.m_kib, self.t)?;
        if key.public != self.public {
            return Err(OfficerKeyError::Mismatch);
        }
        Ok(secret)
    }

    /// The public key, checked (a weak or invalid point is refused).
    pub fn public_key(&self) -> Result<PublicKey, OfficerKeyError> {
        PublicKey::from_bytes(&self.public).map_err(|_| OfficerKeyError::Public)
    }

    /// Whether the key can be used: parameters in range, public key valid.
    pub fn validate(&self) -> Result<(), OfficerKeyError> {
        check_parameters(self.m_kib, self.t)?;
        self.public_key().map(|_| ())
    }
}

fn check_parameters(m_kib: u32, t: u32) -> Result<(), OfficerKeyError> {
    if !(8..=MAX_KEY_M_KIB).contains(&m_kib) || !(1..=MAX_KEY_T).contains(&t) {
        return Err(OfficerKeyError::Parameters { m_kib, t });
    }
    Ok(())
}

/// The text form, for configuration files:
/// `$alpr-officer-key$v=1$m=19456,t=2$SALT$PUBLIC` (base64, no padding).
impl fmt::Display for OfficerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        write!(
            f,
            "{TEXT_PREFIX}m={},t={}${}${}",
            self.m_kib,
            self.t,
            b64.encode(self.salt),
            b64.encode(self.public)
        )
    }
}

impl FromStr for OfficerKey {
    type Err = OfficerKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| OfficerKeyError::Text(why.into());
        let rest = s.strip_prefix(TEXT_PREFIX).ok_or_else(|| bad("prefix"))?;
        let mut parts = rest.split('$');
        let (Some(params), Some(salt), Some(public), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("parts"));
        };
        let (m, t) = params.split_once(',').ok_or_else(|| bad("parameters"))?;
        let num = |p: &str, name: &str| -> Result<u32, OfficerKeyError> {
            p.strip_prefix(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("parameters"))
        };
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let salt: [u8; KEY_SALT_LEN] = b64
            .decode(salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("salt"))?;
        let public: [u8; 32] = b64
            .decode(public)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("public key"))?;
        let key = OfficerKey {
            public,
            salt,
            m_kib: num(m, "m=")?,
            t: num(t, "t=")?,
        };
        key.validate()?;
        Ok(key)
    }
}

/// The signature of one change, as the document keeps it beside the
/// value it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSignature {
    /// The officer's username.
    pub officer: String,
    /// The node the change was made on.
    pub node: String,
    /// The officer's public key that signed.
    pub public: [u8; 32],
    pub signature: Signature,
}

/// What a signature covers, in its canonical encoding.
#[derive(Serialize)]
struct Signed<'a> {
    doc: &'a str,
    key: &'a str,
    value: &'a [u8],
    node: &'a str,
    officer: &'a str,
}

fn signed_bytes(doc: &str, key: &str, value: &[u8], node: &str, officer: &str) -> Vec<u8> {
    postcard::to_allocvec(&Signed {
        doc,
        key,
        value,
        node,
        officer,
    })
    .expect("strings and bytes always serialise")
}

impl ChangeSignature {
    /// Whether this signature is `public`'s over writing `value` at `key`
    /// of document `doc`, by its officer on its node.
    pub fn verifies(&self, doc: &str, key: &str, value: &[u8]) -> bool {
        let Ok(public) = PublicKey::from_bytes(&self.public) else {
            return false;
        };
        let bytes = signed_bytes(doc, key, value, &self.node, &self.officer);
        public.verify(tag::OFFICER_CHANGE_SIG, &bytes, &self.signature)
    }

    /// Whether the names fit (what a document accepts from a peer).
    pub fn well_formed(&self) -> bool {
        [&self.officer, &self.node].iter().all(|s| {
            !s.is_empty() && s.len() <= MAX_SIGNER_NAME && !s.chars().any(char::is_control)
        })
    }
}

/// An officer logged in on a node, able to sign their changes there.
/// Held only in the node's process for the session.
pub struct OfficerSigner {
    officer: String,
    node: String,
    key: SecretKey,
}

impl fmt::Debug for OfficerSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfficerSigner")
            .field("officer", &self.officer)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl OfficerSigner {
    pub fn new(officer: &str, node: &str, key: SecretKey) -> Self {
        OfficerSigner {
            officer: officer.into(),
            node: node.into(),
            key,
        }
    }

    pub fn officer(&self) -> &str {
        &self.officer
    }

    /// Sign writing `value` at `key` of document `doc`.
    pub fn sign(&self, doc: &str, key: &str, value: &[u8]) -> ChangeSignature {
        let bytes = signed_bytes(doc, key, value, &self.node, &self.officer);
        ChangeSignature {
            officer: self.officer.clone(),
            node: self.node.clone(),
            public: self.key.public().to_bytes(),
            signature: self.key.sign(tag::OFFICER_CHANGE_SIG, &bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(password: &str, salt: u8) -> (OfficerKey, SecretKey) {
        OfficerKey::derive(password, [salt; KEY_SALT_LEN], 64, 1).expect("derive")
    }

    #[test]
    fn the_password_and_salt_give_the_key_and_nothing_else_does() {
        let (key, secret) = fast("correct horse", 1);
        assert_eq!(key.public, secret.public().to_bytes());
        assert_eq!(
            key.unlock("correct horse").expect("unlock").public(),
            secret.public()
        );
        assert!(matches!(
            key.unlock("wrong horse"),
            Err(OfficerKeyError::Mismatch)
        ));
        let (other, _) = fast("correct horse", 2);
        assert_ne!(other.public, key.public, "the salt changes the key");
        assert!(OfficerKey::derive("x", [0; KEY_SALT_LEN], 4, 1).is_err());
        assert!(OfficerKey::derive("x", [0; KEY_SALT_LEN], 64, 0).is_err());
    }

    #[test]
    fn the_text_form_round_trips_and_junk_is_refused() {
        let (key, _) = fast("correct horse", 3);
        let text = key.to_string();
        assert!(
            text.starts_with("$alpr-officer-key$v=1$m=64,t=1$"),
            "{text}"
        );
        assert_eq!(text.parse::<OfficerKey>(), Ok(key.clone()));
        for junk in [
            "",
            "$argon2id$v=19$m=64,t=1$c2FsdA$aGFzaA",
            &text.replace("m=64", "m=1"),
            &text.replace("t=1", "t=x"),
            &format!("{text}$extra"),
            &text[..text.len() - 4],
        ] {
            assert!(junk.parse::<OfficerKey>().is_err(), "{junk}");
        }
        assert_eq!(
            format!("{key:?}"),
            format!("OfficerKey({})", hex::encode(key.public))
        );
    }

    #[test]
    fn a_signature_covers_document_key_value_node_and_officer() {
        let (_, secret) = fast("correct horse", 4);
        let signer = OfficerSigner::new("jdoe", "car-7", secret);
        assert!(
            !format!("{signer:?}").contains("key:"),
            "the key never prints"
        );
        let sig = signer.sign("holds", "hold/a", b"value");
        assert!(sig.well_formed());
        assert!(sig.verifies("holds", "hold/a", b"value"));
        assert!(!sig.verifies("local-entries", "hold/a", b"value"));
        assert!(!sig.verifies("holds", "hold/b", b"value"));
        assert!(!sig.verifies("holds", "hold/a", b"valuE"));
        let mut moved = sig.clone();
        moved.node = "car-8".into();
        assert!(!moved.verifies("holds", "hold/a", b"value"));
        let mut other = sig.clone();
        other.officer = "asmith".into();
        assert!(!other.verifies("holds", "hold/a", b"value"));
        let (_, stranger) = fast("correct horse", 5);
        let mut forged = sig;
        forged.public = stranger.public().to_bytes();
        assert!(!forged.verifies("holds", "hold/a", b"value"));
    }
}
