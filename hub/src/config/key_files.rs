//! Where the hub's keys are: the signing key of each purpose
//! (`[keys.<purpose>]`, by default beside the TLS `cert`), and the check
//! that the deployment CA's private key lies apart from all of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alpr_shared::cert::{pem_certificates, KeyPurpose, TrustAnchor};
use alpr_shared::signer::{
    ExportSigning, HotlistSigning, HubKey, LogSigning, PolicySigning, Purpose, ReceiptSigning,
};
use anyhow::Context;
use serde::Deserialize;

use super::HubConfig;
use crate::keys::HubKeys;

/// `[keys]`: a certificate and key per signing purpose; unset ones are
/// `<purpose>.crt` and `<purpose>.key` beside the TLS `cert`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SigningKeys {
    pub receipt: KeyFiles,
    pub policy: KeyFiles,
    pub hotlist: KeyFiles,
    pub log: KeyFiles,
    pub export: KeyFiles,
}

/// One signing key's files.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KeyFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl SigningKeys {
    fn files(&self, purpose: KeyPurpose) -> &KeyFiles {
        match purpose {
            KeyPurpose::Receipt => &self.receipt,
            KeyPurpose::Policy => &self.policy,
            KeyPurpose::Hotlist => &self.hotlist,
            KeyPurpose::Log => &self.log,
            KeyPurpose::Export => &self.export,
        }
    }

    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.receipt,
            &mut self.policy,
            &mut self.hotlist,
            &mut self.log,
            &mut self.export,
        ]
        .into_iter()
        .flat_map(|f| [f.cert.as_mut(), f.key.as_mut()])
        .flatten()
    }
}

impl HubConfig {
    /// The certificate and key files of the signing key for `purpose`:
    /// as `[keys.<purpose>]` names them, else `<purpose>.crt` and
    /// `<purpose>.key` beside the TLS certificate.
    pub fn signing_files(&self, purpose: KeyPurpose) -> (PathBuf, PathBuf) {
        let dir = match self.cert.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let f = self.keys.files(purpose);
        (
            f.cert
                .clone()
                .unwrap_or_else(|| dir.join(format!("{purpose}.crt"))),
            f.key
                .clone()
                .unwrap_or_else(|| dir.join(format!("{purpose}.key"))),
        )
    }

    /// The hub refuses to run with the deployment CA's private key in the
    /// folder of its own key: whoever reads the hub's files must not be able
    /// to enroll nodes (`hub pki init` keeps it in `ca-private/`). The key is
    /// found by its name (`ca.key`) or, under any name, by matching the
    /// public key of `ca_cert`.
    pub fn check_ca_key_apart(&self) -> anyhow::Result<()> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for key in std::iter::once(self.key.clone())
            .chain(KeyPurpose::ALL.iter().map(|p| self.signing_files(*p).1))
        {
            let dir = match key.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in &dirs {
            self.check_ca_key_not_in(dir)?;
        }
        Ok(())
    }

    /// [`Self::check_ca_key_apart`] for one folder of the hub's keys.
    fn check_ca_key_not_in(&self, dir: &Path) -> anyhow::Result<()> {
        let own_keys: Vec<PathBuf> = std::iter::once(self.key.clone())
            .chain(KeyPurpose::ALL.iter().map(|p| self.signing_files(*p).1))
            .collect();
        let refuse = |found: &Path| {
            anyhow::anyhow!(
                "the CA private key {} is beside the hub's key {}: move it out of what the hub reads \
                 (hub pki init keeps it in ca-private/; enrolling needs it, serving does not)",
                found.display(),
                self.key.display()
            )
        };
        let by_name = dir.join("ca.key");
        if by_name.exists() {
            return Err(refuse(&by_name));
        }
        // Under another name: a private key whose public half is the CA's.
        let Ok(ca_pem) = std::fs::read(&self.ca_cert) else {
            return Ok(()); // reported where the certificate is loaded
        };
        let Ok(ca_der) = alpr_shared::cert::pem_certificates(&ca_pem) else {
            return Ok(());
        };
        let Some(ca_der) = ca_der.first() else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let small_file = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= 64 * 1024);
            if !small_file || own_keys.contains(&path) {
                continue;
            }
            let Ok(text) = std::fs::read(&path).map(zeroize::Zeroizing::new) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&text) else {
                continue;
            };
            if !text.contains("PRIVATE KEY") {
                continue;
            }
            if let Ok(key) = alpr_shared::crypto::SecretKey::from_pkcs8_pem(text) {
                if holds_ed25519_key(ca_der, &key.public().to_bytes()) {
                    return Err(refuse(&path));
                }
            }
        }
        Ok(())
    }
}

/// Whether a DER certificate carries `public` as its Ed25519 subject key.
fn holds_ed25519_key(cert_der: &[u8], public: &[u8; 32]) -> bool {
    // SubjectPublicKeyInfo { AlgorithmIdentifier { id-Ed25519 }, BIT STRING }
    const SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(public);
    cert_der.windows(spki.len()).any(|w| w == spki.as_slice())
}

impl HubConfig {
    /// Load and check the hub's keys ([`crate::keys`]); the log key is
    /// returned apart.
    pub fn hub_keys(&self, anchor: &TrustAnchor) -> anyhow::Result<(HubKeys, HubKey<LogSigning>)> {
        let config = self;
        let tls_pem = std::fs::read(&config.cert)
            .with_context(|| format!("reading {}", config.cert.display()))?;
        let tls_cert_der = pem_certificates(&tls_pem)
            .context("the hub's TLS certificate")?
            .into_iter()
            .next()
            .context("no TLS certificate")?;
        let tls = anchor.check_tls_der(&tls_cert_der).with_context(|| {
            format!(
                "the hub's TLS certificate {} is refused",
                config.cert.display()
            )
        })?;
        let receipt: HubKey<ReceiptSigning> = config.signing_key(anchor)?;
        let policy: HubKey<PolicySigning> = config.signing_key(anchor)?;
        let hotlist: HubKey<HotlistSigning> = config.signing_key(anchor)?;
        let log: HubKey<LogSigning> = config.signing_key(anchor)?;
        let export: HubKey<ExportSigning> = config.signing_key(anchor)?;
        let publics = [
            ("TLS", tls.key),
            ("receipt", receipt.public()),
            ("policy", policy.public()),
            ("hotlist", hotlist.public()),
            ("log", log.public()),
            ("export", export.public()),
        ];
        for (i, (a, ka)) in publics.iter().enumerate() {
            for (b, kb) in &publics[i + 1..] {
                if ka == kb {
                    anyhow::bail!(
                        "the {a} and {b} keys are one key: each purpose needs its own \
                         (hub pki init issues them)"
                    );
                }
            }
        }
        Ok((
            HubKeys {
                receipt: Arc::new(receipt),
                policy: Arc::new(policy),
                hotlist: Arc::new(hotlist),
                export: Arc::new(export),
                log_cert: log.cert().clone(),
                tls_cert_der,
                tls_public: tls.key,
            },
            log,
        ))
    }

    /// The key of purpose `P` from its files, checked against `anchor`.
    pub(crate) fn signing_key<P: Purpose>(
        &self,
        anchor: &TrustAnchor,
    ) -> anyhow::Result<HubKey<P>> {
        let config = self;
        let (cert, key) = config.signing_files(P::PURPOSE);
        let hint = |path: &Path| {
            format!(
                "reading {} (the hub's {} key, [keys.{}] in hub.toml; hub pki init writes it)",
                path.display(),
                P::PURPOSE,
                P::PURPOSE
            )
        };
        let cert_pem = std::fs::read(&cert).with_context(|| hint(&cert))?;
        let key_pem = alpr_shared::private::read_key_file(&key).with_context(|| hint(&key))?;
        HubKey::from_pem(&key_pem, &cert_pem, anchor)
            .with_context(|| format!("{} and {}", cert.display(), key.display()))
    }
}
