//! Accounts as the hub keeps them: roles and what each may do, user and
//! session records, passwords (argon2id) and usernames, the caller of a
//! request, and the errors people see.

use super::*;
pub use crate::store::{Role, SessionRecord, UserKey, UserRecord};

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Search reads and view them.
    Search,
    /// Handle alerts (dispositions).
    HandleAlerts,
    /// Manage hotlists.
    ManageLists,
    /// Manage legal holds.
    ManageHolds,
    /// See the nodes (`hub nodes`).
    ViewNodes,
    /// Read the access and training audits (supervisors: of their own
    /// agency only).
    ReadAudits,
    /// Read the stored logs to re-verify them and export evidence bundles
    /// (`hub audit verify`).
    VerifyLogs,
    /// Add, change and disable users.
    ManageUsers,
    /// Change the policy document.
    ManagePolicy,
    /// Revoke node certificates.
    Revoke,
    /// Export a case's reads as an evidence bundle to another agency.
    ExportEvidence,
}

impl Permission {
    /// What it allows, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::Search => "search reads",
            Permission::HandleAlerts => "handle alerts",
            Permission::ManageLists => "manage hotlists",
            Permission::ManageHolds => "manage holds",
            Permission::ViewNodes => "see the nodes",
            Permission::ReadAudits => "read the audits",
            Permission::VerifyLogs => "read and verify the stored logs",
            Permission::ManageUsers => "manage users",
            Permission::ManagePolicy => "change the policy",
            Permission::Revoke => "revoke node certificates",
            Permission::ExportEvidence => "export evidence",
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Administrator => "administrator",
            Role::Auditor => "auditor",
        }
    }

    /// The role → permissions matrix.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Officer => &[Search, HandleAlerts],
            Role::Operator => &[Search, HandleAlerts, ManageLists, ManageHolds, ViewNodes],
            Role::Supervisor => &[
                Search,
                HandleAlerts,
                ManageLists,
                ManageHolds,
                ViewNodes,
                ReadAudits,
                ExportEvidence,
            ],
            Role::Administrator => &[ManageUsers, ManagePolicy, Revoke, ViewNodes],
            Role::Auditor => &[ReadAudits, VerifyLogs, ViewNodes],
        }
    }

    pub fn may(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl UserRecord {
    /// Why this user may not act now, if they may not.
    pub fn refusal(&self, now: UnixMillis) -> Option<String> {
        if self.disabled {
            return Some(format!("user {} is disabled", self.username));
        }
        if self.training_expires <= now {
            return Some(format!(
                "no current training: {}'s ALPR training expired on {} (policy 426.3(d)); ask an administrator to record the renewal",
                self.username,
                date(self.training_expires)
            ));
        }
        None
    }

    /// What a listing shows (no hash).
    pub fn view(&self, now: UnixMillis) -> UserView {
        UserView {
            username: self.username.clone(),
            agency: self.agency.clone(),
            title: self.title.clone(),
            role: self.role,
            training_completed: date(self.training_completed),
            training_expires: date(self.training_expires),
            training_current: self.training_expires > now,
            disabled: self.disabled,
            created: self.created,
            updated: self.updated,
        }
    }
}

/// A password's hash and signing key, made together (argon2id twice:
/// slow on purpose, so on the blocking pool).
pub(super) async fn credentials(password: String) -> Result<(String, UserKey), UserError> {
    tokio::task::spawn_blocking(move || {
        let hash = hash_password(&password)?;
        let (key, _secret) = OfficerKey::generate(&password).map_err(|e| e.to_string())?;
        Ok((
            hash,
            UserKey {
                key,
                since: UnixMillis::now(),
            },
        ))
    })
    .await
    .map_err(|e| UserError::Invalid(e.to_string()))?
    .map_err(UserError::Invalid)
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    pub username: String,
    pub agency: String,
    pub title: String,
    pub role: Role,
    pub training_completed: String,
    pub training_expires: String,
    pub training_current: bool,
    pub disabled: bool,
    pub created: UnixMillis,
    pub updated: UnixMillis,
}

/// The date part of a time (YYYY-MM-DD).
pub fn date(t: UnixMillis) -> String {
    t.to_string().chars().take(10).collect()
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub fn parse_date(s: &str) -> Result<UnixMillis, String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    alpr_shared::cli::parse_time(&full).map_err(|e| format!("{:#}", anyhow::Error::from(e)))
}

/// Usernames: 1–64 of `a-z0-9._-`, starting with a letter or digit.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a username (1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"
        ))
    }
}

/// Passwords: at least 12 characters, at most 1024 bytes.
pub fn check_password(p: &str) -> Result<(), String> {
    if p.chars().count() < 12 {
        return Err("a password has at least 12 characters".into());
    }
    if p.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    Ok(())
}

/// argon2id with OWASP's parameters (m = 19456 KiB, t = 2, p = 1).
pub(super) fn argon2() -> argon2::Argon2<'static> {
    let params =
        argon2::Params::new(19_456, 2, 1, None).expect("OWASP argon2 parameters are valid");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hash a password (argon2id, random salt), PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Whether `password` matches the PHC `hash` (any argon2 variant it names).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Session lifetimes and throttling, from `hub.toml`.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub session_idle: Duration,
    pub session_max: Duration,
    pub throttle: ThrottleConfig,
}

/// An authenticated person making a request.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub username: String,
    pub agency: String,
    pub role: Role,
    pub title: String,
    /// Where the request came from (IP address).
    pub source: String,
}

impl Caller {
    /// An access record of this caller, allowed, without purpose or case.
    pub fn record(&self, action: AccessAction, query: impl Into<String>) -> AccessRecord {
        AccessRecord {
            user: self.username.clone(),
            agency: self.agency.clone(),
            action,
            purpose: None,
            case: None,
            query: query.into(),
            results: 0,
            outcome: AccessOutcome::Allowed,
            source: self.source.clone(),
        }
    }
}

/// Why a login or a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Locked {
        message: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// A fresh session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub token: String,
    pub expires: UnixMillis,
    pub user: UserView,
}

/// A new user, as an administrator asks for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    pub username: String,
    pub agency: String,
    pub title: String,
    pub role: Role,
    pub password: String,
    /// `YYYY-MM-DD` or RFC 3339.
    pub training_completed: String,
    pub training_expires: String,
}

/// The bootstrap file (`bootstrap.json` in the data folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapFile {
    pub token: String,
    /// Where the API listens.
    pub api: std::net::SocketAddr,
}

/// The name of the bootstrap file in the hub's data folder.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
