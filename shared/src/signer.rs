//! The hub's signing keys: one per [`KeyPurpose`], each held with the
//! certificate that says what it may sign.
//!
//! A [`HubKey<P>`] is built only from a key whose certificate the deployment
//! CA issued for purpose `P` alone, and every signing function of the crate
//! takes the key of its own purpose (`Policy::sign` a
//! `HubKey<PolicySigning>`, a receipt a `HubKey<ReceiptSigning>`, …): a
//! key of one purpose cannot be handed to the signer of another, and the
//! certificate travels with (or is told beside) what it signed, so a
//! verifier checks the purpose before the signature.

use std::fmt;
use std::marker::PhantomData;

use crate::cert::{pem_certificates, CertError, KeyPurpose, SignerCert, TrustAnchor};
use crate::crypto::{PublicKey, SecretKey, Signature};

/// A purpose as a type, so a key's purpose is checked when it is built and
/// its use is checked by the compiler.
pub trait Purpose: Send + Sync + 'static {
    const PURPOSE: KeyPurpose;
}

macro_rules! purpose {
    ($name:ident, $p:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Purpose for $name {
            const PURPOSE: KeyPurpose = $p;
        }
    };
}

purpose!(
    ReceiptSigning,
    KeyPurpose::Receipt,
    "Signs receipts to nodes."
);
purpose!(PolicySigning, KeyPurpose::Policy, "Signs the policy.");
purpose!(
    HotlistSigning,
    KeyPurpose::Hotlist,
    "Signs hotlist generations."
);
purpose!(
    LogSigning,
    KeyPurpose::Log,
    "Signs the hub's log: access entries and purge records."
);
purpose!(
    ExportSigning,
    KeyPurpose::Export,
    "Signs the manifests of log and evidence bundles."
);

#[derive(Debug, thiserror::Error)]
pub enum HubKeyError {
    #[error("the {purpose} key's certificate is refused: {source}")]
    Certificate {
        purpose: KeyPurpose,
        source: CertError,
    },
    #[error("the {0} key is not the key of its certificate")]
    KeyMismatch(KeyPurpose),
    #[error("the {purpose} key: {why}")]
    Unreadable { purpose: KeyPurpose, why: String },
}

/// A signing key of purpose `P` and its certificate (checked against the
/// CA when built). The secret is zeroed on drop and never printed.
pub struct HubKey<P: Purpose> {
    key: SecretKey,
    cert: SignerCert,
    _purpose: PhantomData<fn() -> P>,
}

impl<P: Purpose> fmt::Debug for HubKey<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubKey")
            .field("purpose", &P::PURPOSE)
            .field("serial", &self.cert.serial)
            .finish_non_exhaustive()
    }
}

impl<P: Purpose> HubKey<P> {
    /// `key` under `cert_der`: the certificate must be issued by `anchor`
    /// for `P` alone, and be `key`'s.
    pub fn new(key: SecretKey, cert_der: &[u8], anchor: &TrustAnchor) -> Result<Self, HubKeyError> {
        let cert = anchor
            .check_signer_der(cert_der, P::PURPOSE)
            .map_err(|source| HubKeyError::Certificate {
                purpose: P::PURPOSE,
                source,
            })?;
        if cert.key != key.public() {
            return Err(HubKeyError::KeyMismatch(P::PURPOSE));
        }
        Ok(HubKey {
            key,
            cert,
            _purpose: PhantomData,
        })
    }

    /// From a PKCS#8 PEM key and a PEM certificate (its first one).
    pub fn from_pem(
        key_pem: &[u8],
        cert_pem: &[u8],
        anchor: &TrustAnchor,
    ) -> Result<Self, HubKeyError> {
        let unreadable = |why: String| HubKeyError::Unreadable {
            purpose: P::PURPOSE,
            why,
        };
        let text = std::str::from_utf8(key_pem).map_err(|_| unreadable("not PEM text".into()))?;
        let key = SecretKey::from_pkcs8_pem(text).map_err(|e| unreadable(e.to_string()))?;
        let der = pem_certificates(cert_pem)
            .map_err(|source| HubKeyError::Certificate {
                purpose: P::PURPOSE,
                source,
            })?
            .into_iter()
            .next()
            .ok_or_else(|| unreadable("no certificate".into()))?;
        Self::new(key, &der, anchor)
    }

    /// A key under a certificate that was not checked at all: a test's hub
    /// that signs with a key of another purpose (its TLS key, say), to
    /// show the verifiers refuse it.
    #[doc(hidden)]
    pub fn unchecked(key: SecretKey, cert_der: &[u8]) -> Result<Self, CertError> {
        Ok(HubKey {
            cert: SignerCert::unchecked(cert_der, P::PURPOSE)?,
            key,
            _purpose: PhantomData,
        })
    }

    /// Sign `tag || msg`.
    pub fn sign(&self, tag: &[u8], msg: &[u8]) -> Signature {
        self.key.sign(tag, msg)
    }

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    pub fn cert(&self) -> &SignerCert {
        &self.cert
    }

    /// The certificate's DER, to send or store with what the key signs.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert.der
    }
}

impl HubKey<LogSigning> {
    /// The secret key, for the log writer that seals the hub's log (the
    /// log format signs with a plain key, as a node's does).
    pub fn into_log_key(self) -> (SecretKey, SignerCert) {
        (self.key, self.cert)
    }
}

/// A deployment made in memory for tests and benchmarks: a CA and one
/// key of each purpose, named `hub`, valid from 2020 for a century (test
/// documents are dated in the past).
#[doc(hidden)]
pub mod dev {
    use super::*;
    use crate::pki::{new_ca_with, Authority};

    /// 2020-01-01T00:00:00Z, when test certificates start.
    pub fn since() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_577_836_800)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// A century after [`since`].
    pub fn until() -> time::OffsetDateTime {
        since() + time::Duration::days(36_500)
    }

    /// A key of purpose `P` named `hub` from a deployment made for it:
    /// for tests and benchmarks that sign and check nothing against a CA
    /// of their own.
    pub fn throwaway<P: Purpose>() -> Result<HubKey<P>, String> {
        Deployment::new()?.key("hub")
    }

    /// The keys of [`Deployment`].
    pub struct Keys {
        pub receipt: HubKey<ReceiptSigning>,
        pub policy: HubKey<PolicySigning>,
        pub hotlist: HubKey<HotlistSigning>,
        pub log: HubKey<LogSigning>,
        pub export: HubKey<ExportSigning>,
    }

    pub struct Deployment {
        pub authority: Authority,
        pub ca_pem: String,
        pub anchor: TrustAnchor,
    }

    impl Deployment {
        pub fn new() -> Result<Self, String> {
            let ca = new_ca_with(SecretKey::generate(), "Test Agency", since(), 36_500)
                .map_err(|e| e.to_string())?;
            let authority =
                Authority::load(&ca.cert_pem, &ca.key_pem).map_err(|e| e.to_string())?;
            let anchor =
                TrustAnchor::from_pem(ca.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
            Ok(Deployment {
                authority,
                ca_pem: ca.cert_pem,
                anchor,
            })
        }

        /// A fresh key of purpose `P` named `name`.
        pub fn key<P: Purpose>(&self, name: &str) -> Result<HubKey<P>, String> {
            self.key_for(name, SecretKey::generate())
        }

        /// `key`, certified for purpose `P` under the name `name`.
        pub fn key_for<P: Purpose>(&self, name: &str, key: SecretKey) -> Result<HubKey<P>, String> {
            let pem = self
                .authority
                .issue_usages_between(&key, name, &[P::PURPOSE], &[], since(), until())
                .map_err(|e| e.to_string())?;
            HubKey::from_pem(
                key.to_pkcs8_pem().map_err(|e| e.to_string())?.as_bytes(),
                pem.as_bytes(),
                &self.anchor,
            )
            .map_err(|e| e.to_string())
        }

        /// A fresh key certified for `purpose` and its certificate (DER),
        /// loose: for tests that sign with it where it does not belong.
        pub fn secret_of(&self, purpose: KeyPurpose) -> Result<(SecretKey, Vec<u8>), String> {
            let key = SecretKey::generate();
            let pem = self
                .authority
                .issue_usages_between(&key, "hub", &[purpose], &[], since(), until())
                .map_err(|e| e.to_string())?;
            let der = pem_certificates(pem.as_bytes())
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or("no certificate")?;
            Ok((key, der))
        }

        /// One key of each purpose, all named `hub`.
        pub fn keys(&self) -> Result<Keys, String> {
            Ok(Keys {
                receipt: self.key("hub")?,
                policy: self.key("hub")?,
                hotlist: self.key("hub")?,
                log: self.key("hub")?,
                export: self.key("hub")?,
            })
        }

        /// The hub's TLS key and certificate (DER), for tests that sign
        /// with it where another purpose's key belongs.
        pub fn tls(&self) -> Result<(SecretKey, Vec<u8>), String> {
            let issued = self
                .authority
                .issue_hub(&["localhost".into()], 30)
                .map_err(|e| e.to_string())?;
            let key = SecretKey::from_pkcs8_pem(&issued.key_pem).map_err(|e| e.to_string())?;
            let der = pem_certificates(issued.cert_pem.as_bytes())
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or("no certificate")?;
            Ok((key, der))
        }
    }
}

/// A deployment whose certificates are kept in `src/signer/testdata`, so
/// what test vectors sign stays the same bytes: the CA and one certificate
/// per purpose, each for a fixed key. `ALPR_WRITE_VECTORS=1` issues them
/// again (valid for a century from then).
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/signer/testdata");

    fn write() -> bool {
        std::env::var_os("ALPR_WRITE_VECTORS").is_some()
    }

    /// The fixture's CA.
    pub fn anchor() -> TrustAnchor {
        let path = format!("{DIR}/ca.pem");
        if write() && !std::path::Path::new(&path).exists() {
            let ca = crate::pki::new_ca_with(
                SecretKey::from_bytes(&[1; 32]),
                "Vector Agency",
                super::dev::since(),
                36_500,
            )
            .expect("the CA");
            std::fs::create_dir_all(DIR).expect("dir");
            std::fs::write(&path, &ca.cert_pem).expect("write");
        }
        let pem = std::fs::read(&path).expect("the fixture CA (ALPR_WRITE_VECTORS=1 makes it)");
        TrustAnchor::from_pem(&pem).expect("a CA")
    }

    /// The key `SecretKey::from_bytes(&[seed; 32])` of purpose `P`, under
    /// its kept certificate.
    pub fn key<P: Purpose>(seed: u8) -> HubKey<P> {
        let anchor = anchor();
        let path = format!("{DIR}/{}-{seed}.pem", P::PURPOSE);
        let secret = SecretKey::from_bytes(&[seed; 32]);
        if write() && !std::path::Path::new(&path).exists() {
            let ca_pem = std::fs::read_to_string(format!("{DIR}/ca.pem")).expect("ca");
            let key_pem = SecretKey::from_bytes(&[1; 32]).to_pkcs8_pem().expect("pem");
            let auth = crate::pki::Authority::load(&ca_pem, &key_pem).expect("loads");
            let pem = auth
                .issue_usages_between(
                    &secret,
                    "hub",
                    &[P::PURPOSE],
                    &[],
                    super::dev::since(),
                    super::dev::until(),
                )
                .expect("issued");
            std::fs::write(&path, pem).expect("write");
        }
        let pem = std::fs::read(&path).expect("the fixture certificate (ALPR_WRITE_VECTORS=1)");
        HubKey::from_pem(
            secret.to_pkcs8_pem().expect("pem").as_bytes(),
            &pem,
            &anchor,
        )
        .expect("the fixture key")
    }
}

#[cfg(test)]
mod tests;
