//! The hub's keys: its TLS identity and one signing key per purpose
//! (receipts, policy, hotlist generations, its own log, export manifests),
//! each certified by the deployment CA for that purpose alone.
//!
//! The configuration reads them from the files `hub.toml` names
//! (`HubConfig::hub_keys`) and refuses to start
//! the hub when a certificate is not the CA's, not for its purpose, not its
//! key's, or when two purposes (the TLS key among them) share a key: the
//! network-facing TLS key must not be able to sign policy or evidence.
//! Everything that signs takes the key of its own purpose
//! ([`alpr_shared::signer::HubKey`]); manifests of every kind are signed
//! with [`HubKeys::export`] alone.

use std::sync::Arc;

use alpr_shared::cert::SignerCert;
use alpr_shared::crypto::PublicKey;
use alpr_shared::signer::{
    ExportSigning, HotlistSigning, HubKey, PolicySigning, Purpose, ReceiptSigning,
};

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

/// A key of purpose `P` from a deployment made in memory, named `hub`: for
/// benchmarks and tests that need the hub to sign and check nothing
/// against a CA of their own.
#[doc(hidden)]
pub fn throwaway<P: Purpose>() -> anyhow::Result<HubKey<P>> {
    alpr_shared::signer::dev::throwaway().map_err(anyhow::Error::msg)
}
