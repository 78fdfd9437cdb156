//! The hub's policy: one signed, versioned document ([`SignedPolicy`]) that
//! every edge enforces — retention, the officers who may log in on edges,
//! agencies that may receive exports, revoked nodes, purposes, and how long
//! an edge may run on a policy it could not refresh.
//!
//! [`PolicyService`] holds the current version (cheap to clone). Every
//! change makes the next version, signs it with the hub's policy key and stores it
//! durably through [`HubStorage`] before anyone sees it; an invalid change
//! is refused with the reason and changes nothing. Connected nodes learn of
//! a new version through [`PolicyService::subscribe`] (the sync side pushes
//! it on each node's control lane).
//!
//! Version 1 comes from `[policy]` in `hub.toml`; when that section changes
//! (its hash differs from the one the stored policy was last made from), the
//! hub makes a new version from it at start. Changes made through the API
//! survive restarts as long as the file is left alone.

pub mod officers;

use std::sync::Arc;
use std::time::Duration;

use alpr_shared::cert::Revocation;
use alpr_shared::cert::TrustAnchor;
use alpr_shared::control::{
    Agency, AgencyKind, EdgeOfficer, HotlistPolicy, Policy, PolicyError as DocError, Purpose,
    SignedPolicy, POLICY_FORMAT,
};
use alpr_shared::signer::{HubKey, PolicySigning};
use alpr_shared::types::{Hash32, UnixMillis};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use crate::store::{HubStorage, StoreError, WriteOp};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The change breaks a rule; nothing changed.
    #[error("{0}")]
    Refused(#[from] DocError),
    #[error("the policy could not be stored, so it did not change: {0}")]
    Store(#[from] StoreError),
    #[error("the stored policy is unreadable: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// A policy a node showed is not one this hub signed.
    #[error("the policy the node shows is not this hub's: {0}")]
    NotOurs(DocError),
}

/// An officer as `[[policy.officers]]` in `hub.toml` writes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerSetting {
    pub username: String,
    /// The officer's agency ORI.
    pub agency: String,
    #[serde(default)]
    pub title: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// RFC 3339 UTC (`2027-06-30T00:00:00Z`).
    pub training_expires: String,
    /// The officer's signing key (`$alpr-officer-key$v=1$…`, as `hub user
    /// credential` prints it); without one the officer changes nothing on
    /// an edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

impl OfficerSetting {
    /// Officer number `n` of `[[policy.officers]]` (a bad one is named by
    /// its number, never its username: the error reaches the logs).
    pub fn to_officer(&self, n: usize) -> Result<EdgeOfficer, PolicyError> {
        let training_expires = alpr_shared::cli::parse_time(&self.training_expires)
            .map_err(anyhow::Error::from)
            .map_err(|e| PolicyError::Config(format!("officer #{n}: {e:#}")))?;
        let key = self
            .signing_key
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| PolicyError::Config(format!("officer #{n}: {e}")))?;
        Ok(EdgeOfficer {
            username: self.username.clone(),
            agency: self.agency.clone(),
            title: self.title.clone(),
            password_hash: self.password_hash.clone(),
            training_expires,
            key,
        })
    }

    pub fn from_officer(o: &EdgeOfficer) -> Self {
        OfficerSetting {
            username: o.username.clone(),
            agency: o.agency.clone(),
            title: o.title.clone(),
            password_hash: o.password_hash.clone(),
            training_expires: o.training_expires.to_string(),
            signing_key: o.key.as_ref().map(ToString::to_string),
        }
    }
}

/// What an administrator sets (`hub policy set FILE`, the `[policy]`
/// section of `hub.toml`). Officers come from the hub's users
/// ([`PolicyService::set_officers`]) or, for deployments without the API,
/// from `[[policy.officers]]`; revocations from the hub's revocation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// Days the hub keeps reads; never below 365.
    pub hub_retention_days: u32,
    /// Days an edge keeps reads.
    pub edge_retention_days: u32,
    /// How long an edge may run on a policy it could not refresh; after
    /// that it refuses logins until it reaches the hub.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    pub purposes: Vec<Purpose>,
    /// Agencies that may receive exports.
    pub agencies: Vec<Agency>,
    /// Officers seeded from the configuration (TOML only: `hub policy
    /// set` leaves the officers as they are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub officers: Vec<OfficerSetting>,
    /// Hotlist rules: local entry expiry, list age, back-matching,
    /// excluded categories.
    pub hotlists: HotlistPolicy,
}

fn purpose(code: &str, label: &str, case_required: bool) -> Purpose {
    Purpose {
        code: code.into(),
        label: label.into(),
        case_required,
    }
}

/// Typical purposes (offence types) of an ALPR search; serious crimes ask
/// for a case number.
pub fn default_purposes() -> Vec<Purpose> {
    vec![
        purpose("stolen-vehicle", "Stolen vehicle", false),
        purpose("amber-alert", "AMBER alert / abducted child", false),
        purpose("missing-person", "Missing or at-risk person", false),
        purpose("wanted-person", "Wanted person (warrant)", false),
        purpose("homicide", "Homicide", true),
        purpose("robbery", "Robbery", true),
        purpose("assault", "Assault / battery", true),
        purpose("sex-offence", "Sex offence", true),
        purpose("burglary", "Burglary", true),
        purpose("hit-and-run", "Hit and run", true),
        purpose("narcotics", "Narcotics investigation", true),
        purpose("fraud", "Fraud / identity theft", true),
        purpose("other-investigation", "Other criminal investigation", true),
    ]
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            hub_retention_days: 365,
            edge_retention_days: 30,
            max_stale: Duration::from_secs(72 * 3600),
            purposes: default_purposes(),
            agencies: Vec::new(),
            officers: Vec::new(),
            hotlists: HotlistPolicy::default(),
        }
    }
}

impl PolicySettings {
    /// The settings of a policy (officers left out).
    pub fn of(p: &Policy) -> Self {
        PolicySettings {
            hub_retention_days: p.hub_retention_days,
            edge_retention_days: p.edge_retention_days,
            max_stale: Duration::from_millis(p.max_stale_ms),
            purposes: p.purposes.clone(),
            agencies: p.agencies.clone(),
            officers: Vec::new(),
            hotlists: p.hotlists.clone(),
        }
    }

    /// Read a TOML file of settings (`hub policy set FILE`).
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Config(format!("policy settings: {e}")))
    }

    /// The officers of `[[policy.officers]]`.
    pub fn seeded_officers(&self) -> Result<Vec<EdgeOfficer>, PolicyError> {
        (1..)
            .zip(&self.officers)
            .map(|(n, o)| o.to_officer(n))
            .collect()
    }

    /// A hash of these settings, to notice when the configuration changed.
    fn seed_hash(&self) -> Hash32 {
        let text = toml::to_string(self).unwrap_or_default();
        alpr_shared::crypto::tagged_hash(b"alpr/hub/policy-config-seed\0", &[text.as_bytes()])
    }

    fn max_stale_ms(&self) -> u64 {
        u64::try_from(self.max_stale.as_millis()).unwrap_or(u64::MAX)
    }
}

/// An agency of the hub's own (for a default list).
pub fn own_agency(ori: &str, name: &str) -> Agency {
    Agency {
        ori: ori.into(),
        name: name.into(),
        kind: AgencyKind::InStatePublic,
    }
}

struct Inner {
    storage: Arc<dyn HubStorage>,
    key: Arc<HubKey<PolicySigning>>,
    /// The deployment's CA: a stored version counts if a policy key it
    /// certified signed it (another hub's on the same database too).
    anchor: TrustAnchor,
    /// Serialises changes: one version at a time.
    change: Mutex<()>,
    tx: watch::Sender<Arc<SignedPolicy>>,
}

/// The hub's current policy and its changes. See the module docs.
#[derive(Clone)]
pub struct PolicyService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PolicyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyService(v{})", self.current().version())
    }
}

impl PolicyService {
    /// Load the stored policy, or make version 1 from `seed` (the `[policy]`
    /// section); if `seed` changed since the stored policy was last made
    /// from it, make the next version from it. `revoked` is the hub's
    /// revocation list. Blocking (reads and commits the store). Hubs
    /// sharing a database that start together may both make a version:
    /// the one that stored second loads the other's and looks again.
    pub fn open(
        storage: Arc<dyn HubStorage>,
        key: Arc<HubKey<PolicySigning>>,
        anchor: TrustAnchor,
        seed: &PolicySettings,
        revoked: Vec<Revocation>,
    ) -> Result<Self, PolicyError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::open_once(
                storage.clone(),
                key.clone(),
                anchor.clone(),
                seed,
                revoked.clone(),
            ) {
                Err(PolicyError::Store(StoreError::Conflict(why))) if tries < 3 => {
                    tracing::info!(reason = %why, "another hub stored a policy version first; loading it");
                }
                r => return r,
            }
        }
    }

    fn open_once(
        storage: Arc<dyn HubStorage>,
        key: Arc<HubKey<PolicySigning>>,
        anchor: TrustAnchor,
        seed: &PolicySettings,
        revoked: Vec<Revocation>,
    ) -> Result<Self, PolicyError> {
        let stored = match storage.policy()? {
            Some(bytes) => Some(
                SignedPolicy::decode(&bytes).map_err(|e| PolicyError::Corrupt(e.to_string()))?,
            ),
            None => None,
        };
        let seed_hash = seed.seed_hash();
        let seed_changed = storage.policy_seed()? != Some(seed_hash);
        let current = match stored {
            Some(p) if !seed_changed && p.verify(&anchor).is_ok() => p,
            Some(p) if !seed_changed => {
                // No policy key of this deployment signed it (it was
                // signed with the hub's single key before it had one per
                // purpose, or under another CA): the same policy, signed
                // again as the next version, so edges accept it.
                let mut next = p.policy().clone();
                next.version += 1;
                next.issued_at = UnixMillis::now();
                let signed = next.sign(&key)?;
                storage.commit(vec![WriteOp::Policy {
                    version: signed.version(),
                    encoded: signed.encode(),
                    seed: None,
                }])?;
                tracing::warn!(
                    version = signed.version(),
                    "the stored policy was not signed by a policy key of this deployment: signed again with the hub's policy key"
                );
                signed
            }
            stored => {
                let version = stored.as_ref().map_or(1, |p| p.version() + 1);
                let doc = build(
                    version,
                    seed,
                    seed.seeded_officers()?,
                    revoked,
                    UnixMillis::now(),
                );
                let signed = doc.sign(&key)?;
                storage.commit(vec![WriteOp::Policy {
                    version,
                    encoded: signed.encode(),
                    seed: Some(seed_hash),
                }])?;
                tracing::info!(version, "policy made from the hub configuration");
                signed
            }
        };
        let (tx, _) = watch::channel(Arc::new(current));
        Ok(PolicyService {
            inner: Arc::new(Inner {
                storage,
                key,
                anchor,
                change: Mutex::new(()),
                tx,
            }),
        })
    }

    /// The version in force.
    pub fn current(&self) -> Arc<SignedPolicy> {
        self.inner.tx.borrow().clone()
    }

    /// Each new version, as it is made (after it is durable).
    pub fn subscribe(&self) -> watch::Receiver<Arc<SignedPolicy>> {
        self.inner.tx.subscribe()
    }

    /// The current settings (what `hub policy show` prints and `set` takes).
    pub fn settings(&self) -> PolicySettings {
        PolicySettings::of(self.current().policy())
    }

    /// New settings: the next version, with the officers and revocations
    /// as they are. An invalid change is refused and changes nothing.
    pub async fn update(&self, settings: PolicySettings) -> Result<Arc<SignedPolicy>, PolicyError> {
        self.change(move |cur| {
            let mut p = build(
                cur.version + 1,
                &settings,
                cur.officers.clone(),
                cur.revoked_nodes.clone(),
                UnixMillis::now(),
            );
            // Officers seeded by the settings file join (TOML only).
            if !settings.officers.is_empty() {
                p.officers = settings.seeded_officers()?;
            }
            Ok(Some(p))
        })
        .await
        .map(|p| p.unwrap_or_else(|| self.current()))
    }

    /// The officers who may log in on edges (from the hub's users): a new
    /// version if they differ from the current ones. Returns the new
    /// version, or `None` if nothing changed.
    pub async fn set_officers(
        &self,
        mut officers: Vec<EdgeOfficer>,
    ) -> Result<Option<Arc<SignedPolicy>>, PolicyError> {
        officers.sort_by(|a, b| a.username.cmp(&b.username));
        self.set_if_changed(move |p| &mut p.officers, officers)
            .await
    }

    /// The hub's revocation list changed: a new version if it differs.
    pub async fn set_revocations(
        &self,
        mut revoked: Vec<Revocation>,
    ) -> Result<Option<Arc<SignedPolicy>>, PolicyError> {
        revoked.sort_by(|a, b| a.serial.cmp(&b.serial));
        self.set_if_changed(move |p| &mut p.revoked_nodes, revoked)
            .await
    }

    /// The next version with the field `field` picks set to `value`, if it
    /// differs from the current one's.
    async fn set_if_changed<T: PartialEq + Clone + Send + Sync + 'static>(
        &self,
        field: impl Fn(&mut Policy) -> &mut T + Send + Sync + 'static,
        value: T,
    ) -> Result<Option<Arc<SignedPolicy>>, PolicyError> {
        self.change(move |cur| {
            let mut p = cur.clone();
            if *field(&mut p) == value {
                return Ok(None);
            }
            p.version += 1;
            p.issued_at = UnixMillis::now();
            *field(&mut p) = value.clone();
            Ok(Some(p))
        })
        .await
    }

    /// Another hub process on the same database may have stored a newer
    /// version: if so, it is put in force and published (the sync side
    /// pushes it to this hub's nodes). Returns its version.
    pub async fn reload(&self) -> Result<Option<u64>, PolicyError> {
        let _one_at_a_time = self.inner.change.lock().await;
        self.load_newer().await
    }

    /// The stored version, made current if newer than the current one.
    /// The caller holds `change`.
    async fn load_newer(&self) -> Result<Option<u64>, PolicyError> {
        let storage = self.inner.storage.clone();
        let stored = tokio::task::spawn_blocking(move || storage.policy())
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("reading the policy did not finish: {e}"))
            })??;
        let Some(bytes) = stored else {
            return Ok(None);
        };
        let p = SignedPolicy::decode(&bytes).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        let version = p.version();
        if version <= self.current().version() {
            return Ok(None);
        }
        p.verify(&self.inner.anchor).map_err(|e| {
            PolicyError::Corrupt(format!(
                "stored version {version} was not signed by a policy key of this deployment: {e}"
            ))
        })?;
        self.inner.tx.send_replace(Arc::new(p));
        tracing::info!(version, "policy changed by another hub process: in force");
        Ok(Some(version))
    }

    /// A node showed the signed policy it holds (`shown`, encoded), having
    /// said it holds a newer version than the one in force here: the hub
    /// was restored from a backup and lost the versions it made since.
    /// If the deployment's policy key signed it (certified by the CA for
    /// the policy alone) and it is newer, it becomes the version in
    /// force again (stored as it was signed, and published): the edges
    /// keep what they enforce — an officer removed or a node revoked after
    /// the backup does not come back — and every later version goes past
    /// it. Returns it when taken. A policy no policy key of this
    /// deployment signed changes nothing ([`PolicyError::NotOurs`]): a
    /// node can only move the numbers to where the hub once put them.
    pub async fn learn(&self, shown: &[u8]) -> Result<Option<Arc<SignedPolicy>>, PolicyError> {
        let shown = SignedPolicy::decode(shown).map_err(PolicyError::NotOurs)?;
        shown
            .verify(&self.inner.anchor)
            .map_err(PolicyError::NotOurs)?;
        let version = shown.version();
        let _one_at_a_time = self.inner.change.lock().await;
        // Another hub process on the database may have stored it already.
        self.load_newer().await?;
        if version <= self.current().version() {
            return Ok(None);
        }
        match self.store_version(version, shown.encode()).await {
            Ok(()) => {
                let shown = Arc::new(shown);
                self.inner.tx.send_replace(shown.clone());
                Ok(Some(shown))
            }
            // Another process stored this version or a newer one first.
            Err(StoreError::Conflict(_)) => self.load_newer().await.map(|_| None),
            Err(e) => Err(e.into()),
        }
    }

    /// Store signed version `version` (`encoded`) durably; a conflict when
    /// the store holds it or a newer one (another process stored first).
    async fn store_version(&self, version: u64, encoded: Vec<u8>) -> Result<(), StoreError> {
        let storage = self.inner.storage.clone();
        tokio::task::spawn_blocking(move || {
            storage.commit(vec![WriteOp::Policy {
                version,
                encoded,
                seed: None,
            }])
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the policy commit did not finish: {e}")))?
        .map(|_| ())
    }

    /// Make, sign and store the next version from the current one; publish
    /// it once durable. When another hub process stored a version first,
    /// that one is loaded and the change is made again on top of it.
    async fn change(
        &self,
        make: impl Fn(&Policy) -> Result<Option<Policy>, PolicyError> + Send + 'static,
    ) -> Result<Option<Arc<SignedPolicy>>, PolicyError> {
        /// Tries while other processes keep storing versions first.
        const TRIES: usize = 5;
        let _one_at_a_time = self.inner.change.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let cur = self.current();
            let Some(next) = make(cur.policy())? else {
                return Ok(None);
            };
            let signed = next.sign(&self.inner.key)?;
            let version = signed.version();
            match self.store_version(version, signed.encode()).await {
                Ok(()) => {
                    let signed = Arc::new(signed);
                    self.inner.tx.send_replace(signed.clone());
                    tracing::info!(version, "policy changed");
                    return Ok(Some(signed));
                }
                Err(StoreError::Conflict(why)) if tries < TRIES => {
                    tracing::debug!(reason = %why, "another hub stored a policy version first; changing that one");
                    self.load_newer().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn build(
    version: u64,
    s: &PolicySettings,
    mut officers: Vec<EdgeOfficer>,
    mut revoked: Vec<Revocation>,
    now: UnixMillis,
) -> Policy {
    officers.sort_by(|a, b| a.username.cmp(&b.username));
    revoked.sort_by(|a, b| a.serial.cmp(&b.serial));
    Policy {
        format: POLICY_FORMAT,
        version,
        issued_at: now,
        hub_retention_days: s.hub_retention_days,
        edge_retention_days: s.edge_retention_days,
        max_stale_ms: s.max_stale_ms(),
        officers,
        agencies: s.agencies.clone(),
        revoked_nodes: revoked,
        purposes: s.purposes.clone(),
        hotlists: s.hotlists.clone(),
    }
}

#[cfg(test)]
mod tests;

/// The policy for scripts (no password hashes).
pub fn summary(p: &SignedPolicy) -> serde_json::Value {
    let d = p.policy();
    serde_json::json!({
        "version": d.version,
        "issued_at": d.issued_at.to_string(),
        "hub_retention_days": d.hub_retention_days,
        "edge_retention_days": d.edge_retention_days,
        "max_stale_ms": d.max_stale_ms,
        "officers": d.officers.iter().map(|o| serde_json::json!({
            "username": o.username,
            "agency": o.agency,
            "title": o.title,
            "training_expires": o.training_expires.to_string(),
        })).collect::<Vec<_>>(),
        "agencies": d.agencies.iter().map(|a| serde_json::json!({
            "ori": a.ori,
            "name": a.name,
            "kind": a.kind.as_str(),
            "exports_allowed": a.export_refusal().is_none(),
        })).collect::<Vec<_>>(),
        "purposes": d.purposes.iter().map(|p| serde_json::json!({
            "code": p.code,
            "label": p.label,
            "case_required": p.case_required,
        })).collect::<Vec<_>>(),
        "revoked_nodes": d.revoked_nodes.iter().map(|r| serde_json::json!({
            "serial": r.serial,
            "effective_at": r.effective_at.to_string(),
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}
