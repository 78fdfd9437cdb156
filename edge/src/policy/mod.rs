//! Lawful access at the edge: the policy this node enforces (pushed by the
//! hub, see [`crate::sync`]), officer login offline against the officers in
//! it, and the sessions that searches need.
//!
//! A login is refused, with the reason, when the node holds no policy yet,
//! when it has not reached the hub for longer than the policy's
//! `max_stale` (the credential cache may be out of date: a removed officer
//! could still log in), for an officer not in the policy, with lapsed
//! training, with a wrong password (failures are throttled per user), or
//! while the user is locked out. Every login and every refusal is sealed
//! into this node's own signed log as an access entry — durable before the
//! answer — and so reaches the hub with the reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpr_shared::control::{EdgeOfficer, SignedPolicy};
use alpr_shared::crypto::{sha256, PublicKey};
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use alpr_shared::types::{Hash32, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::store::StoreHandle;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(2 * 3600);
/// Failed logins of one user before it is locked out for a while.
pub const FAILURES_BEFORE_LOCKOUT: u32 = 5;
/// The first lock-out; each further failure doubles it, up to the cap.
pub const LOCKOUT: Duration = Duration::from_secs(30);
pub const LOCKOUT_MAX: Duration = Duration::from_secs(15 * 60);
/// Sessions held at once, at most (oldest go first).
const MAX_SESSIONS: usize = 256;
/// Users whose failures are remembered, at most.
const MAX_TRACKED_USERS: usize = 4096;

/// The policy as `edge policy` and `edge status` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    pub version: u64,
    pub issued_at: String,
    /// When the hub last confirmed this policy.
    pub refreshed_at: Option<String>,
    /// Past `max_stale` since the last refresh: logins are refused.
    pub stale: bool,
    pub max_stale_ms: u64,
    pub hub_retention_days: u32,
    pub edge_retention_days: u32,
    pub officers: Vec<OfficerView>,
    pub purposes: Vec<alpr_shared::control::Purpose>,
    pub agencies: Vec<alpr_shared::control::Agency>,
    pub revoked_serials: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficerView {
    pub username: String,
    pub agency: String,
    pub title: String,
    pub training_expires: String,
}

impl PolicyView {
    pub fn of(p: &SignedPolicy, refreshed_at: Option<UnixMillis>, now: UnixMillis) -> Self {
        let d = p.policy();
        PolicyView {
            version: d.version,
            issued_at: d.issued_at.to_string(),
            refreshed_at: refreshed_at.map(|t| t.to_string()),
            stale: is_stale(p, refreshed_at, now),
            max_stale_ms: d.max_stale_ms,
            hub_retention_days: d.hub_retention_days,
            edge_retention_days: d.edge_retention_days,
            officers: d
                .officers
                .iter()
                .map(|o| OfficerView {
                    username: o.username.clone(),
                    agency: o.agency.clone(),
                    title: o.title.clone(),
                    training_expires: o.training_expires.to_string(),
                })
                .collect(),
            purposes: d.purposes.clone(),
            agencies: d.agencies.clone(),
            revoked_serials: d.revoked_nodes.iter().map(|r| r.serial.clone()).collect(),
        }
    }
}

fn is_stale(p: &SignedPolicy, refreshed_at: Option<UnixMillis>, now: UnixMillis) -> bool {
    let since = refreshed_at.unwrap_or(UnixMillis(0));
    now.0.saturating_sub(since.0) > p.policy().max_stale_ms
}

/// A successful login, as the CLI keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOk {
    /// The session token (only its hash stays in the node).
    pub token: String,
    pub user: String,
    pub agency: String,
    pub expires_at: String,
    pub policy_version: u64,
}

#[derive(Debug, Clone)]
struct Session {
    user: String,
    agency: String,
    expires: UnixMillis,
    /// The officer's signing key for the session, derived from the
    /// password at login (none if the policy names no key for them: the
    /// hub then takes none of their changes).
    signer: Option<Arc<alpr_shared::control::officer::OfficerSigner>>,
}

#[derive(Debug, Clone, Default)]
struct Failures {
    count: u32,
    locked_until: Option<UnixMillis>,
}

/// The node's officer sessions and login throttle; cheap to clone.
#[derive(Clone)]
pub struct EdgeAccess {
    store: StoreHandle,
    /// This node's log key, to check its own entries in search results.
    pub node_key: PublicKey,
    sessions: Arc<Mutex<HashMap<Hash32, Session>>>,
    failures: Arc<Mutex<HashMap<String, Failures>>>,
}

/// Where local requests come from (the node's own socket).
pub const LOCAL_SOURCE: &str = "edge-local-socket";

impl EdgeAccess {
    pub fn new(store: StoreHandle, node_key: PublicKey) -> Self {
        EdgeAccess {
            store,
            node_key,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            failures: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// The policy held, if any, and when it was last refreshed.
    pub fn policy(&self) -> Result<Option<(SignedPolicy, Option<UnixMillis>)>, String> {
        self.store
            .policy()
            .map_err(|e| format!("cannot read this node's policy: {e}"))
    }

    /// The policy in force, or why there is none usable.
    pub fn usable_policy(&self, now: UnixMillis) -> Result<SignedPolicy, String> {
        let Some((p, refreshed)) = self.policy()? else {
            return Err(
                "this edge holds no policy yet: it has not reached the hub since it was set up; \
                 logins are refused until it does"
                    .into(),
            );
        };
        if is_stale(&p, refreshed, now) {
            let since = refreshed.map_or_else(|| "it was set up".to_string(), |t| t.to_string());
            return Err(format!(
                "this edge has not reached the hub since {since}: logins are refused until it does \
                 (policy v{} allows {} without a refresh)",
                p.version(),
                humantime::format_duration(Duration::from_millis(p.policy().max_stale_ms))
            ));
        }
        Ok(p)
    }

    /// Seal an access record into this node's log; durable when it returns.
    pub async fn record(&self, record: AccessRecord) -> Result<(), String> {
        self.store
            .append_access(record)
            .await
            .map(|_| ())
            .map_err(|e| {
                format!("the access log could not be written, so the access is refused: {e}")
            })
    }

    /// Log in `user` with `password`. Every outcome is recorded first.
    pub async fn login(&self, user: &str, password: &str) -> Result<LoginOk, String> {
        let now = UnixMillis::now();
        let user = user.trim().to_string();
        let decided = self.decide_login(&user, password, now).await;
        let (action, outcome, agency) = match &decided {
            Ok((o, _)) => (
                AccessAction::Login,
                AccessOutcome::Allowed,
                o.agency.clone(),
            ),
            Err((why, lockout, agency)) => (
                if *lockout {
                    AccessAction::Lockout
                } else {
                    AccessAction::LoginFailed
                },
                AccessOutcome::Refused {
                    reason: truncate(why, 1000),
                },
                agency.clone().unwrap_or_default(),
            ),
        };
        let version = decided.as_ref().map(|(_, v)| *v).unwrap_or(0);
        self.record(AccessRecord {
            user: truncate(&user, 128),
            agency,
            action,
            purpose: None,
            case: None,
            query: format!("login policy=v{version}"),
            results: 0,
            outcome,
            source: LOCAL_SOURCE.into(),
        })
        .await?;
        let (officer, version) = decided.map_err(|(why, _, _)| why)?;
        let signer = self.derive_signer(&officer, password).await;
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut raw);
        let token = hex::encode(raw);
        let expires = UnixMillis(now.0 + SESSION_TTL.as_millis() as u64);
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, v| v.expires > now);
            if s.len() >= MAX_SESSIONS {
                if let Some(k) = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| *k) {
                    s.remove(&k);
                }
            }
            s.insert(
                sha256(token.as_bytes()),
                Session {
                    user: officer.username.clone(),
                    agency: officer.agency.clone(),
                    expires,
                    signer,
                },
            );
        }
        Ok(LoginOk {
            token,
            user: officer.username,
            agency: officer.agency,
            expires_at: expires.to_string(),
            policy_version: version,
        })
    }

    /// Err: (reason, whether this failure locked the user out, agency).
    async fn decide_login(
        &self,
        user: &str,
        password: &str,
        now: UnixMillis,
    ) -> Result<(EdgeOfficer, u64), (String, bool, Option<String>)> {
        if user.is_empty() {
            return Err(("no username given".into(), false, None));
        }
        let policy = self.usable_policy(now).map_err(|e| (e, false, None))?;
        if let Some(until) = self.locked_until(user, now) {
            return Err((
                format!(
                    "too many failed logins for {user}: locked until {until} (throttled per user)"
                ),
                false,
                None,
            ));
        }
        let Some(officer) = policy.policy().officer(user).cloned() else {
            let locked = self.failed(user, now);
            return Err((
                format!(
                    "{user} may not log in on this edge: not an officer in policy v{} \
                     (unknown, or removed from the policy)",
                    policy.version()
                ),
                locked,
                None,
            ));
        };
        if !officer.trained_at(now) {
            return Err((
                format!(
                    "{user}'s ALPR training lapsed on {}: no current training, no access \
                     (policy 426.3(d), 426.7)",
                    officer.training_expires
                ),
                false,
                Some(officer.agency.clone()),
            ));
        }
        let hash = officer.password_hash.clone();
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &pw))
            .await
            .unwrap_or(false);
        if !ok {
            let locked = self.failed(user, now);
            return Err((
                "wrong password".into(),
                locked,
                Some(officer.agency.clone()),
            ));
        }
        if let Ok(mut f) = self.failures.lock() {
            f.remove(user);
        }
        Ok((officer, policy.version()))
    }

    /// The officer's signing key from `password` (already checked), for
    /// the session; none if the policy names no key for them or the
    /// password does not give it.
    async fn derive_signer(
        &self,
        officer: &EdgeOfficer,
        password: &str,
    ) -> Option<Arc<alpr_shared::control::officer::OfficerSigner>> {
        let key = officer.key.clone()?;
        let password = zeroize::Zeroizing::new(password.to_string());
        let secret = tokio::task::spawn_blocking(move || key.unlock(&password))
            .await
            .ok()?;
        match secret {
            Ok(secret) => Some(Arc::new(alpr_shared::control::officer::OfficerSigner::new(
                &officer.username,
                &self.store.device().to_string(),
                secret,
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "a login gave no signing key: the officer's changes will not count at the hub");
                None
            }
        }
    }

    /// The signing key of a live session, if it has one.
    pub fn signer(&self, token: &str) -> Option<Arc<alpr_shared::control::officer::OfficerSigner>> {
        let key = sha256(token.trim().as_bytes());
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(&key).and_then(|s| s.signer.clone()))
    }

    fn locked_until(&self, user: &str, now: UnixMillis) -> Option<UnixMillis> {
        let f = self.failures.lock().ok()?;
        f.get(user)
            .and_then(|f| f.locked_until)
            .filter(|until| *until > now)
    }

    /// Count a failure; true if it locked the user out.
    fn failed(&self, user: &str, now: UnixMillis) -> bool {
        let Ok(mut all) = self.failures.lock() else {
            return false;
        };
        if all.len() >= MAX_TRACKED_USERS && !all.contains_key(user) {
            all.retain(|_, f| f.locked_until.is_some_and(|t| t > now));
        }
        let f = all.entry(user.to_string()).or_default();
        f.count = f.count.saturating_add(1);
        if f.count >= FAILURES_BEFORE_LOCKOUT {
            let doublings = (f.count - FAILURES_BEFORE_LOCKOUT).min(10);
            let lock = LOCKOUT.saturating_mul(1 << doublings).min(LOCKOUT_MAX);
            f.locked_until = Some(UnixMillis(now.0 + lock.as_millis() as u64));
            return true;
        }
        false
    }

    /// The officer of a live session, still allowed by the policy in force.
    pub fn session(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Result<(String, String, SignedPolicy), String> {
        let key = sha256(token.trim().as_bytes());
        let session = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.get(&key).cloned())
            .filter(|s| s.expires > now)
            .ok_or("not logged in, or the session expired: run `edge login`")?;
        let policy = self.usable_policy(now)?;
        match policy.policy().officer(&session.user) {
            None => {
                let _ = self.end_session(token);
                Err(format!(
                    "{} is no longer an officer in policy v{}: the session ended",
                    session.user,
                    policy.version()
                ))
            }
            Some(o) if !o.trained_at(now) => Err(format!(
                "{}'s ALPR training lapsed on {}: no current training, no access",
                o.username, o.training_expires
            )),
            Some(_) => Ok((session.user, session.agency, policy)),
        }
    }

    /// End a session; returns its officer and agency if it was live.
    pub fn end_session(&self, token: &str) -> Option<(String, String)> {
        self.sessions
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&sha256(token.trim().as_bytes())))
            .map(|s| (s.user, s.agency))
    }

    /// `edge logout`: end the session and record it.
    pub async fn logout(&self, token: &str) -> Result<(), String> {
        let Some((user, agency)) = self.end_session(token) else {
            return Ok(());
        };
        self.record(AccessRecord {
            user,
            agency,
            action: AccessAction::Logout,
            purpose: None,
            case: None,
            query: "logout".into(),
            results: 0,
            outcome: AccessOutcome::Allowed,
            source: LOCAL_SOURCE.into(),
        })
        .await
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).collect();
    while out.len() > max {
        out.pop();
    }
    out
}

/// Check a password against an argon2id PHC string.
pub fn verify_password(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// An argon2id PHC string for `password` (OWASP parameters: 19 MiB, t=2,
/// p=1), for tests and tools.
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_password_with(password, 19 * 1024, 2)
}

/// An argon2id PHC string with `m_kib` KiB of memory and `t` passes (tests
/// use small ones; the check reads them from the string).
pub fn hash_password_with(password: &str, m_kib: u32, t: u32) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let params = argon2::Params::new(m_kib, t, 1, None).map_err(|e| e.to_string())?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
