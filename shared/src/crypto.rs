//! Node identity keys and the signing rules: every signature covers a
//! domain-separation tag followed by canonical bytes, and every check uses
//! `verify_strict`.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::types::Hash32;

/// Domain-separation tags. Each signed or hashed object has its own, so a
/// signature over one kind of object can never be replayed as another.
pub mod tag {
    pub const ENTRY_SIG: &[u8] = b"alpr/read-log/v1/entry-signature\0";
    pub const ENTRY_HASH: &[u8] = b"alpr/read-log/v1/entry-hash\0";
    pub const CONTENT_HASH: &[u8] = b"alpr/read-log/v1/content-hash\0";
    pub const CHECKPOINT_SIG: &[u8] = b"alpr/read-log/v1/checkpoint-signature\0";
    pub const BUNDLE_MANIFEST_SIG: &[u8] = b"alpr/log-bundle/v2/manifest-signature\0";
    pub const POLICY_SIG: &[u8] = b"alpr/control/v1/policy-signature\0";
    pub const EVIDENCE_MANIFEST_SIG: &[u8] = b"alpr/evidence/v1/manifest-signature\0";
    pub const HOTLIST_SIG: &[u8] = b"alpr/hotlist/v1/generation-signature\0";
    pub const HOTLIST_HASH: &[u8] = b"alpr/hotlist/v1/generation-content\0";
    pub const OFFICER_CHANGE_SIG: &[u8] = b"alpr/control/v1/officer-change-signature\0";
}

/// SHA-256 over a tag and the given parts.
pub fn tagged_hash(tag: &[u8], parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    Hash32(h.finalize().into())
}

/// Plain SHA-256 of a blob (images are addressed by it).
pub fn sha256(data: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(data).into())
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    Pkcs8(String),
    #[error("public key is not a valid Ed25519 point")]
    BadPublicKey,
    #[error("public key has small order and cannot be trusted")]
    WeakPublicKey,
}

/// A node's (or the hub's) Ed25519 secret key. Never printed; zeroed on drop
/// (ed25519-dalek's `SigningKey` zeroizes itself).
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn generate() -> Self {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(bytes))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(SecretKey)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    /// PKCS#8 PEM ("PRIVATE KEY"), in the v1 form of RFC 8410 without the
    /// optional public key: the form openssl, Python `cryptography`, rustls
    /// and ring all read (openssl 3 and `cryptography` refuse the v2 form
    /// ed25519-dalek writes by default). [`SecretKey::from_pkcs8_pem`] reads
    /// both. The returned string holds the secret: write it to a file with
    /// mode 0600 and drop it.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        let v1 = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        let pem = v1
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Pkcs8(e.to_string()));
        // KeypairBytes does not zeroize itself.
        let mut v1 = v1;
        zeroize::Zeroize::zeroize(&mut v1.secret_key);
        pem
    }

    /// PKCS#8 DER, for TLS configuration.
    pub fn to_pkcs8_der(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        self.0
            .to_pkcs8_der()
            .map(|d| zeroize::Zeroizing::new(d.as_bytes().to_vec()))
            .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign `tag || msg`.
    pub fn sign(&self, tag: &[u8], msg: &[u8]) -> Signature {
        let mut buf = Vec::with_capacity(tag.len() + msg.len());
        buf.extend_from_slice(tag);
        buf.extend_from_slice(msg);
        Signature(self.0.sign(&buf).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let k = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::BadPublicKey)?;
        if k.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(PublicKey(k))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Check a signature over `tag || msg` with `verify_strict`.
    pub fn verify(&self, tag: &[u8], msg: &[u8], sig: &Signature) -> bool {
        let mut buf = Vec::with_capacity(tag.len() + msg.len());
        buf.extend_from_slice(tag);
        buf.extend_from_slice(msg);
        self.0
            .verify_strict(&buf, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok()
    }

    pub fn inner(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.to_bytes()))
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "sig_bytes")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

/// serde has no impl for `[u8; 64]`: encode as a fixed-size tuple so the
/// canonical encoding is exactly 64 bytes.
mod sig_bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(64)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(64, V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_never_print() {
        let k = SecretKey::generate();
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
    }

    #[test]
    fn signatures_are_bound_to_their_tag() {
        let k = SecretKey::from_bytes(&[7; 32]);
        let sig = k.sign(tag::ENTRY_SIG, b"hello");
        assert!(k.public().verify(tag::ENTRY_SIG, b"hello", &sig));
        assert!(!k.public().verify(tag::CHECKPOINT_SIG, b"hello", &sig));
        assert!(!k.public().verify(tag::ENTRY_SIG, b"hellO", &sig));
    }

    #[test]
    fn pkcs8_round_trip() {
        let k = SecretKey::from_bytes(&[9; 32]);
        let pem = k.to_pkcs8_pem().expect("encode");
        let back = SecretKey::from_pkcs8_pem(&pem).expect("decode");
        assert_eq!(back.public(), k.public());
        assert!(SecretKey::from_pkcs8_pem("garbage").is_err());
    }

    #[test]
    fn pkcs8_pem_is_the_v1_form_and_v2_still_reads() {
        let k = SecretKey::generate();
        let pem = k.to_pkcs8_pem().expect("encode");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", &*pem);
        // v1: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING }, 48
        // bytes, no public key field (openssl 3 refuses the v2 form).
        let der = pem_body_der(&pem);
        assert_eq!(der.len(), 48, "v1 Ed25519 PKCS#8 is 48 bytes");
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
        // A key written in the v2 form (older files) still loads.
        let v2 = k.0.to_pkcs8_pem(Default::default()).expect("v2");
        assert!(pem_body_der(&v2).len() > 48);
        let back = SecretKey::from_pkcs8_pem(&v2).expect("v2 decodes");
        assert_eq!(back.public(), k.public());
    }

    fn pem_body_der(pem: &str) -> Vec<u8> {
        let (label, doc) = ed25519_dalek::pkcs8::SecretDocument::from_pem(pem).expect("pem");
        assert_eq!(label, "PRIVATE KEY");
        doc.as_bytes().to_vec()
    }
}
