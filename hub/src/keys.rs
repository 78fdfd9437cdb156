//! The hub's keys: its TLS identity and one signing key per purpose
//! (receipts, policy, hotlist generations, its own log, export manifests),
//! each certified by the deployment CA for that purpose alone.
//!
//! [`load`] reads them from the files `hub.toml` names and refuses to start
//! the hub when a certificate is not the CA's, not for its purpose, not its
//! key's, or when two purposes (the TLS key among them) share a key: the
//! network-facing TLS key must not be able to sign policy or evidence.
//! Everything that signs takes the key of its own purpose
//! ([`alpr_shared::signer::HubKey`]); manifests of every kind are signed
//! with [`HubKeys::export`] alone.

use std::path::Path;
use std::sync::Arc;

use alpr_shared::cert::{pem_certificates, SignerCert, TrustAnchor};
use alpr_shared::crypto::PublicKey;
use alpr_shared::signer::{
    ExportSigning, HotlistSigning, HubKey, LogSigning, PolicySigning, Purpose, ReceiptSigning,
};
use anyhow::Context;

use crate::config::HubConfig;

/// The hub's keys but its log key (which the access log's writer owns).
pub struct HubKeys {
    pub receipt: Arc<HubKey<ReceiptSigning>>,
    pub policy: Arc<HubKey<PolicySigning>>,
    pub hotlist: Arc<HubKey<HotlistSigning>>,
    /// Signs every manifest: log bundles and evidence bundles.
    pub export: Arc<HubKey<ExportSigning>>,
    /// The log key's certificate: auditors verify the hub's log with it.
    pub log_cert: SignerCert,
    /// The TLS certificate (DER) and its key: what signed everything
    /// before the hub had a key per purpose (its stored hotlist
    /// generations are checked under it once, then signed again).
    pub tls_cert_der: Vec<u8>,
    pub tls_public: PublicKey,
}

impl std::fmt::Debug for HubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubKeys(..)")
    }
}

/// Load and check the hub's keys (see the module docs); the log key is
/// returned apart.
pub fn load(
    config: &HubConfig,
    anchor: &TrustAnchor,
) -> anyhow::Result<(HubKeys, HubKey<LogSigning>)> {
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
    let receipt: HubKey<ReceiptSigning> = one(config, anchor)?;
    let policy: HubKey<PolicySigning> = one(config, anchor)?;
    let hotlist: HubKey<HotlistSigning> = one(config, anchor)?;
    let log: HubKey<LogSigning> = one(config, anchor)?;
    let export: HubKey<ExportSigning> = one(config, anchor)?;
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
pub(crate) fn one<P: Purpose>(
    config: &HubConfig,
    anchor: &TrustAnchor,
) -> anyhow::Result<HubKey<P>> {
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

/// A key of purpose `P` from a deployment made in memory, named `hub`: for
/// benchmarks and tests that need the hub to sign and check nothing
/// against a CA of their own.
#[doc(hidden)]
pub fn throwaway<P: Purpose>() -> anyhow::Result<HubKey<P>> {
    alpr_shared::signer::dev::throwaway().map_err(anyhow::Error::msg)
}
