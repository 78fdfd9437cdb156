//! People who may use the hub: accounts, roles, passwords, sessions and
//! login throttling.
//!
//! - **Accounts** ([`UserRecord`]) live in the hub's storage (`users-v1`):
//!   username, agency (ORI), job title, [`Role`], an argon2id hash (OWASP
//!   parameters m = 19456 KiB, t = 2, p = 1), training completion and
//!   expiry, a disabled flag. No current training, no access (policy
//!   426.3(d), 426.7): a login is refused, and so is every request of an
//!   existing session once the training has lapsed, with the date.
//! - **Roles** decide what each may do ([`Role::permissions`]), on a need
//!   to know: an officer searches and handles alerts; an operator also
//!   manages lists and holds and sees the nodes; a supervisor is an
//!   operator who also reads the access and training audits of their own
//!   agency; an administrator manages users, policy and revocations; an
//!   auditor reads every access log and report and re-verifies the logs.
//! - **Sessions**: a login gives a random 256-bit token; the hub keeps only
//!   its SHA-256 (`sessions-v1`, so a restart keeps people logged in). A
//!   session ends after `session_idle` without use or `session_max` after
//!   login, whichever comes first. Idle time is counted in memory: after a
//!   restart it counts from the restart.
//! - Accounts and sessions in use are also held in memory (the hub is
//!   their only writer), so a request is authenticated without reading the
//!   database: `hub nodes` answers while the database fails.
//! - **Throttling** ([`Throttle`]): failures are counted per username and
//!   per source address over `login_window`; past the limit the name (or
//!   the source) is locked for `login_lockout`, and every attempt meanwhile
//!   is refused with when to retry, even with the right password. The
//!   counts and locks are kept in the store: every hub process sharing the
//!   database counts the same failures, and a restart keeps a lock.
//! - Every login, failure, lock-out and logout is sealed in the hub's
//!   access log ([`crate::access`]) before the answer.
//! - **Bootstrap**: while the hub has no user, it writes a one-time token
//!   into `bootstrap.json` (0600) in its data folder, with the API's
//!   address. `hub bootstrap` runs on the hub's machine as the hub's user,
//!   reads that file and creates the first administrator through the API
//!   on loopback. Why this design: the hub keeps running, the database is
//!   opened by one process only, and only someone who can read the hub's
//!   private data folder can claim the first account. Once any user
//!   exists the file is removed and bootstrap is refused.
//! - **Signing keys** ([`UserKey`]): each user has an Ed25519 key derived
//!   from their password ([`OfficerKey`], argon2id with a salt of its
//!   own), with which an officer signs the changes they make on an edge.
//!   The hub learns the public key when the password passes through it —
//!   a user added, a password set, and a login of a user who has none
//!   yet — and keeps every key a user has had (`user-keys-v1`): a change
//!   signed offline before a password change still verifies. The
//!   current key goes into the policy's officers.
//! - **Changes** (add, disable, train, password, a key learnt) bump a
//!   generation number that [`Users::subscribe`] watches, so the policy
//!   service can republish the officers allowed on edges.

mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpr_shared::control::officer::OfficerKey;
use alpr_shared::log::{AccessAction, AccessOutcome, AccessRecord};
use alpr_shared::types::UnixMillis;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::watch;

pub use throttle::{Throttle, ThrottleConfig};

use crate::access::{AccessError, AccessLog};
use crate::store::{HubStorage, StoreError, WriteOp};

/// What a person does, on a need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Officer,
    Operator,
    Supervisor,
    Administrator,
    Auditor,
}

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

/// A user account as the hub keeps it (`users-v1`, postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    /// The agency's ORI.
    pub agency: String,
    pub title: String,
    pub role: Role,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub training_completed: UnixMillis,
    pub training_expires: UnixMillis,
    pub disabled: bool,
    pub created: UnixMillis,
    pub updated: UnixMillis,
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

/// A signing key a user has had, and since when it is theirs
/// (`user-keys-v1`, postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKey {
    pub key: OfficerKey,
    pub since: UnixMillis,
}

/// A password's hash and signing key, made together (argon2id twice:
/// slow on purpose, so on the blocking pool).
async fn credentials(password: String) -> Result<(String, UserKey), UserError> {
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

/// A session as the hub keeps it (`sessions-v1`, by the token's SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub username: String,
    pub created: UnixMillis,
    /// The absolute end.
    pub expires: UnixMillis,
    pub source: String,
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
fn argon2() -> argon2::Argon2<'static> {
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

/// Sessions in use, by token hash: the record and when it was last used
/// (in memory; records are also kept in storage).
type Live = HashMap<[u8; 32], (SessionRecord, UnixMillis)>;

/// Users, sessions and throttling; cheap to share (`Arc`).
pub struct Users {
    storage: Arc<dyn HubStorage>,
    access: AccessLog,
    config: UsersConfig,
    throttle: Throttle,
    /// Accounts, as stored: a request is authenticated without the
    /// database, so `hub nodes` and `hub health` answer while it fails.
    /// Other hub processes sharing the database change them too:
    /// [`Users::reload`] reads them again.
    accounts: Mutex<HashMap<String, UserRecord>>,
    /// Every signing key of each user, oldest first.
    keys: Mutex<HashMap<String, Vec<UserKey>>>,
    sessions: Mutex<Live>,
    /// The store is shared with other hub processes: a session kept in
    /// memory is checked against the store at each use, so a logout on
    /// another hub ends it here too.
    shared: bool,
    changes: watch::Sender<u64>,
    /// One change of accounts at a time (check-then-write).
    write: tokio::sync::Mutex<()>,
    bootstrap: Mutex<Option<[u8; 32]>>,
    dummy_hash: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Users {
    pub fn new(
        storage: Arc<dyn HubStorage>,
        access: AccessLog,
        config: UsersConfig,
    ) -> Result<Self, String> {
        let (changes, _) = watch::channel(0);
        let accounts = storage
            .users()
            .map_err(|e| format!("reading the users: {e}"))?
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect();
        let keys = keys_by_user(
            storage
                .user_keys()
                .map_err(|e| format!("reading the users' keys: {e}"))?,
        );
        Ok(Users {
            shared: storage.watch_changes().is_some(),
            accounts: Mutex::new(accounts),
            keys: Mutex::new(keys),
            throttle: Throttle::new(config.throttle.clone(), storage.clone()),
            storage,
            access,
            config,
            sessions: Mutex::new(HashMap::new()),
            changes,
            write: tokio::sync::Mutex::new(()),
            bootstrap: Mutex::new(None),
            dummy_hash: hash_password("not a password of anyone here")?,
        })
    }

    /// The hub's access log (for routes that record accesses).
    pub fn access(&self) -> &AccessLog {
        &self.access
    }

    /// A generation number bumped on every change of an account (add,
    /// disable, training, password): the policy service republishes the
    /// officers allowed on edges when it moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    /// Read the accounts again: another hub process on the same database
    /// may have added or changed one. Returns whether any changed (then
    /// subscribers are told, as for a change made here).
    pub fn reload(&self) -> Result<bool, UserError> {
        let stored: HashMap<String, UserRecord> = self
            .storage
            .users()?
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect();
        let keys = keys_by_user(self.storage.user_keys()?);
        {
            let mut accounts = self.accounts()?;
            let mut known = self.key_table()?;
            if *accounts == stored && *known == keys {
                return Ok(false);
            }
            *accounts = stored;
            *known = keys;
        }
        self.changed();
        Ok(true)
    }

    /// Every signing key `username` has had, oldest first.
    pub fn keys(&self, username: &str) -> Vec<UserKey> {
        self.key_table()
            .map(|k| k.get(username).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Each user's current signing key (their latest), by username.
    pub fn current_keys(&self) -> HashMap<String, OfficerKey> {
        self.key_table()
            .map(|k| {
                k.iter()
                    .filter_map(|(name, keys)| Some((name.clone(), keys.last()?.key.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn key_table(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Vec<UserKey>>>, UserError> {
        self.keys
            .lock()
            .map_err(|_| UserError::Invalid("keys poisoned".into()))
    }

    /// Keep a key learnt for `username` (stored first).
    fn keep_key(&self, username: &str, key: UserKey) -> Result<(), UserError> {
        self.storage.commit(vec![WriteOp::UserKey {
            username: username.into(),
            key: key.clone(),
        }])?;
        let mut keys = self.key_table()?;
        let theirs = keys.entry(username.into()).or_default();
        if !theirs.iter().any(|k| k.key.public == key.key.public) {
            theirs.push(key);
        }
        Ok(())
    }

    /// Every account, by username.
    pub fn list(&self) -> Result<Vec<UserRecord>, UserError> {
        let mut all: Vec<UserRecord> = self.accounts()?.values().cloned().collect();
        all.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(all)
    }

    /// One account.
    pub fn get(&self, username: &str) -> Result<Option<UserRecord>, UserError> {
        Ok(self.accounts()?.get(username).cloned())
    }

    fn accounts(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, UserRecord>>, UserError> {
        self.accounts
            .lock()
            .map_err(|_| UserError::Invalid("accounts poisoned".into()))
    }

    /// Store `rec` and keep it.
    fn put(&self, rec: &UserRecord) -> Result<(), UserError> {
        self.storage.commit(vec![WriteOp::User(rec.clone())])?;
        self.accounts()?.insert(rec.username.clone(), rec.clone());
        Ok(())
    }

    /// While no user exists, make a bootstrap token, write it (0600) into
    /// `dir` with the API's address, and return true. With users, remove
    /// any such file.
    pub fn prepare_bootstrap(
        &self,
        dir: &std::path::Path,
        api: std::net::SocketAddr,
    ) -> anyhow::Result<bool> {
        let path = dir.join(BOOTSTRAP_FILE);
        if !self
            .accounts()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_empty()
        {
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        let token = new_token();
        let _ = std::fs::remove_file(&path);
        let mut f = alpr_shared::private::create_private_file(&path)?;
        std::io::Write::write_all(
            &mut f,
            &serde_json::to_vec_pretty(&BootstrapFile {
                token: token.clone(),
                api,
            })?,
        )?;
        if let Ok(mut b) = self.bootstrap.lock() {
            *b = Some(token_hash(&token));
        }
        Ok(true)
    }

    /// Create the first administrator with the bootstrap token; refused
    /// once any user exists.
    pub async fn bootstrap(
        &self,
        token: &str,
        new: NewUser,
        source: IpAddr,
        dir: &std::path::Path,
    ) -> Result<UserView, UserError> {
        let expected = self.bootstrap.lock().ok().and_then(|b| *b);
        let given = token_hash(token);
        let ok = expected.is_some_and(|e| constant_eq(&e, &given));
        if !ok {
            return Err(UserError::Forbidden(
                "bootstrap refused: the hub already has users, or the token is not the one in its data folder".into(),
            ));
        }
        if new.role != Role::Administrator {
            return Err(UserError::Invalid(
                "the first user is an administrator".into(),
            ));
        }
        let bootstrapper = Caller {
            username: new.username.clone(),
            agency: new.agency.clone(),
            role: Role::Administrator,
            title: new.title.clone(),
            source: source.to_string(),
        };
        let view = self.add_checked(&bootstrapper, new, true).await?;
        if let Ok(mut b) = self.bootstrap.lock() {
            *b = None;
        }
        let _ = std::fs::remove_file(dir.join(BOOTSTRAP_FILE));
        Ok(view)
    }

    /// Add a user (the caller must hold [`Permission::ManageUsers`]).
    pub async fn add(&self, by: &Caller, new: NewUser) -> Result<UserView, UserError> {
        self.add_checked(by, new, false).await
    }

    async fn add_checked(
        &self,
        by: &Caller,
        new: NewUser,
        first: bool,
    ) -> Result<UserView, UserError> {
        check_username(&new.username).map_err(UserError::Invalid)?;
        check_password(&new.password).map_err(UserError::Invalid)?;
        for (what, v) in [("agency", &new.agency), ("title", &new.title)] {
            if v.trim().is_empty() || v.len() > 128 {
                return Err(UserError::Invalid(format!("{what} is 1 to 128 characters")));
            }
        }
        let completed = parse_date(&new.training_completed).map_err(UserError::Invalid)?;
        let expires = parse_date(&new.training_expires).map_err(UserError::Invalid)?;
        if expires <= completed {
            return Err(UserError::Invalid(
                "training expires after it was completed".into(),
            ));
        }
        let (hash, key) = credentials(new.password.clone()).await?;
        let _guard = self.write.lock().await;
        if first && !self.accounts()?.is_empty() {
            return Err(UserError::Forbidden(
                "bootstrap refused: the hub already has users".into(),
            ));
        }
        if self.get(&new.username)?.is_some() {
            return Err(UserError::Conflict(format!("user {} exists", new.username)));
        }
        let now = UnixMillis::now();
        let rec = UserRecord {
            username: new.username.clone(),
            agency: new.agency.trim().to_owned(),
            title: new.title.trim().to_owned(),
            role: new.role,
            password_hash: hash,
            training_completed: completed,
            training_expires: expires,
            disabled: false,
            created: now,
            updated: now,
        };
        let query = format!(
            "user add {} role={} agency={} training-expires={}",
            rec.username,
            rec.role,
            rec.agency,
            date(expires)
        );
        self.access
            .record(by.record(AccessAction::UserAdmin, query))
            .await?;
        self.put(&rec)?;
        self.keep_key(&rec.username, key)?;
        self.changed();
        Ok(rec.view(now))
    }

    /// Change one account with `f` (logged as `what`).
    async fn change(
        &self,
        by: &Caller,
        username: &str,
        what: String,
        f: impl FnOnce(&mut UserRecord),
    ) -> Result<UserView, UserError> {
        self.change_keyed(by, username, what, f, None).await
    }

    /// [`Users::change`], keeping `key` as the user's new signing key in
    /// the same step.
    async fn change_keyed(
        &self,
        by: &Caller,
        username: &str,
        what: String,
        f: impl FnOnce(&mut UserRecord),
        key: Option<UserKey>,
    ) -> Result<UserView, UserError> {
        let _guard = self.write.lock().await;
        let mut rec = self
            .get(username)?
            .ok_or_else(|| UserError::NotFound(format!("no user {username}")))?;
        f(&mut rec);
        let now = UnixMillis::now();
        rec.updated = now;
        self.access
            .record(by.record(AccessAction::UserAdmin, format!("user {what} {username}")))
            .await?;
        self.put(&rec)?;
        if let Some(key) = key {
            self.keep_key(username, key)?;
        }
        self.changed();
        Ok(rec.view(now))
    }

    pub async fn disable(&self, by: &Caller, username: &str) -> Result<UserView, UserError> {
        if by.username == username {
            return Err(UserError::Invalid("you cannot disable yourself".into()));
        }
        self.change(by, username, "disable".into(), |r| r.disabled = true)
            .await
    }

    pub async fn train(
        &self,
        by: &Caller,
        username: &str,
        completed: &str,
        expires: &str,
    ) -> Result<UserView, UserError> {
        let c = parse_date(completed).map_err(UserError::Invalid)?;
        let e = parse_date(expires).map_err(UserError::Invalid)?;
        if e <= c {
            return Err(UserError::Invalid(
                "training expires after it was completed".into(),
            ));
        }
        self.change(
            by,
            username,
            format!("train completed={} expires={}", date(c), date(e)),
            |r| {
                r.training_completed = c;
                r.training_expires = e;
            },
        )
        .await
    }

    pub async fn passwd(
        &self,
        by: &Caller,
        username: &str,
        password: String,
    ) -> Result<UserView, UserError> {
        check_password(&password).map_err(UserError::Invalid)?;
        let (hash, key) = credentials(password).await?;
        self.change_keyed(
            by,
            username,
            "passwd".into(),
            |r| r.password_hash = hash,
            Some(key),
        )
        .await
    }

    fn refused(&self, username: &str, agency: &str, source: IpAddr, reason: &str) -> AccessRecord {
        AccessRecord {
            user: printable(username),
            agency: agency.to_owned(),
            action: AccessAction::LoginFailed,
            purpose: None,
            case: None,
            query: "login".into(),
            results: 0,
            outcome: AccessOutcome::Refused {
                reason: reason.chars().take(512).collect(),
            },
            source: source.to_string(),
        }
    }

    /// Log in: checks throttling, the password, the account and its
    /// training; every outcome is in the access log before the answer.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<Login, UserError> {
        let now = UnixMillis::now();
        // Throttled and recorded under what can be recorded of it.
        let username = &printable(username);
        let locked = self.throttle.locked(username, source, now)?;
        if let Some(until) = locked {
            let message = format!("too many failed logins: locked until {until}; try again then",);
            self.access
                .record(self.refused(username, "", source, &message))
                .await?;
            return Err(UserError::Locked {
                message,
                retry_after: Duration::from_millis(until.0.saturating_sub(now.0).max(1000)),
            });
        }
        let user = self.get(username)?;
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let pw = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        let user = match user {
            Some(u) if matches => u,
            other => {
                let agency = other.map(|u| u.agency).unwrap_or_default();
                let lock = self.throttle.failed(username, source, now)?;
                self.access
                    .record(self.refused(username, &agency, source, "wrong username or password"))
                    .await?;
                if let Some((what, until)) = lock {
                    let mut r = self.refused(
                        username,
                        &agency,
                        source,
                        &format!("{what} locked until {until} after repeated failures"),
                    );
                    r.action = AccessAction::Lockout;
                    self.access.record(r).await?;
                }
                return Err(UserError::Unauthorized("wrong username or password".into()));
            }
        };
        if let Some(reason) = user.refusal(now) {
            self.access
                .record(self.refused(username, &user.agency, source, &reason))
                .await?;
            return Err(UserError::Forbidden(reason));
        }
        self.throttle.succeeded(username)?;
        if self.keys(&user.username).is_empty() {
            self.learn_key(&user.username, password).await;
        }
        let token = new_token();
        let session = SessionRecord {
            username: user.username.clone(),
            created: now,
            expires: UnixMillis(now.0.saturating_add(millis(self.config.session_max))),
            source: source.to_string(),
        };
        let caller = Caller {
            username: user.username.clone(),
            agency: user.agency.clone(),
            role: user.role,
            title: user.title.clone(),
            source: source.to_string(),
        };
        self.access
            .record(caller.record(AccessAction::Login, "login"))
            .await?;
        let hash = token_hash(&token);
        // Sessions that ended unused go with this one's commit.
        let idle = millis(self.config.session_idle);
        let ended: Vec<[u8; 32]> = self
            .sessions
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, (s, last))| now > s.expires || now.0.saturating_sub(last.0) > idle)
                    .map(|(h, _)| *h)
                    .collect()
            })
            .unwrap_or_default();
        let mut ops: Vec<WriteOp> = ended
            .iter()
            .map(|h| WriteOp::Session {
                hash: *h,
                session: None,
            })
            .collect();
        ops.push(WriteOp::Session {
            hash,
            session: Some(session.clone()),
        });
        self.storage.commit(ops)?;
        if let Ok(mut l) = self.sessions.lock() {
            for h in &ended {
                l.remove(h);
            }
        }
        if let Ok(mut l) = self.sessions.lock() {
            l.insert(hash, (session.clone(), now));
        }
        Ok(Login {
            token,
            expires: session.expires,
            user: user.view(now),
        })
    }

    /// The signing key of `username` (who has none yet), from the password
    /// that just logged them in. A failure costs the login nothing: the
    /// next login tries again.
    async fn learn_key(&self, username: &str, password: &str) {
        let pw = password.to_owned();
        let made = tokio::task::spawn_blocking(move || OfficerKey::generate(&pw)).await;
        let key = match made {
            Ok(Ok((key, _secret))) => UserKey {
                key,
                since: UnixMillis::now(),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deriving a user's signing key at login");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "deriving a user's signing key at login");
                return;
            }
        };
        let _guard = self.write.lock().await;
        match self.keep_key(username, key) {
            Ok(()) => self.changed(),
            Err(e) => tracing::warn!(error = %e, "storing a signing key learnt at login"),
        }
    }

    /// The caller a bearer token stands for, or why not: unknown, expired
    /// (idle or absolute), user disabled or training lapsed.
    pub fn authenticate(&self, token: &str, source: IpAddr) -> Result<Caller, UserError> {
        self.caller_of(token, source, true)
    }

    /// [`Users::authenticate`] without counting as activity: for a page
    /// that keeps itself up to date (the console's live alerts), which
    /// must end with its session but not keep it from idling out.
    pub fn still_authenticated(&self, token: &str, source: IpAddr) -> Result<Caller, UserError> {
        self.caller_of(token, source, false)
    }

    fn caller_of(&self, token: &str, source: IpAddr, activity: bool) -> Result<Caller, UserError> {
        let now = UnixMillis::now();
        let hash = token_hash(token);
        let expired = || {
            UserError::Unauthorized(
                "no session or session expired: log in again (`hub login`)".into(),
            )
        };
        let cached = self
            .sessions
            .lock()
            .map_err(|_| UserError::Invalid("sessions poisoned".into()))?
            .get(&hash)
            .cloned();
        // Sessions from before a restart are read once; idle time then
        // counts from now.
        let (session, last) = match cached {
            Some(c) if !self.shared => c,
            Some((_, last)) => match self.storage.session(&hash)? {
                Some(stored) => (stored, last),
                None => {
                    if let Ok(mut l) = self.sessions.lock() {
                        l.remove(&hash);
                    }
                    return Err(expired());
                }
            },
            None => (self.storage.session(&hash)?.ok_or_else(expired)?, now),
        };
        let idle = millis(self.config.session_idle);
        let fresh = now <= session.expires && now.0.saturating_sub(last.0) <= idle;
        if !fresh {
            if let Ok(mut l) = self.sessions.lock() {
                l.remove(&hash);
            }
            let _ = self.storage.commit(vec![WriteOp::Session {
                hash,
                session: None,
            }]);
            return Err(expired());
        }
        if activity {
            if let Ok(mut l) = self.sessions.lock() {
                l.insert(hash, (session.clone(), now));
            }
        }
        let user = self.get(&session.username)?.ok_or_else(expired)?;
        if let Some(reason) = user.refusal(now) {
            return Err(UserError::Forbidden(reason));
        }
        Ok(Caller {
            username: user.username,
            agency: user.agency,
            role: user.role,
            title: user.title,
            source: source.to_string(),
        })
    }

    /// End the session of `token`.
    pub async fn logout(&self, caller: &Caller, token: &str) -> Result<(), UserError> {
        let hash = token_hash(token);
        self.access
            .record(caller.record(AccessAction::Logout, "logout"))
            .await?;
        if let Ok(mut l) = self.sessions.lock() {
            l.remove(&hash);
        }
        self.storage.commit(vec![WriteOp::Session {
            hash,
            session: None,
        }])?;
        Ok(())
    }
}

/// Stored keys by username, each user's oldest first.
fn keys_by_user(rows: Vec<(String, UserKey)>) -> HashMap<String, Vec<UserKey>> {
    let mut out: HashMap<String, Vec<UserKey>> = HashMap::new();
    for (name, key) in rows {
        out.entry(name).or_default().push(key);
    }
    for keys in out.values_mut() {
        keys.sort_by_key(|k| (k.since, k.key.public));
    }
    out
}

/// What a person typed, fit for a record: control characters dropped, at
/// most 100 bytes.
fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 100 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("(empty)");
    }
    out
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_in(dir: &std::path::Path, config: UsersConfig) -> (Users, Arc<dyn HubStorage>) {
        let storage: Arc<dyn HubStorage> =
            Arc::new(crate::store::redb::RedbStore::open(&dir.join("hub.redb")).expect("open"));
        users_of(storage, config)
    }

    fn users_of(storage: Arc<dyn HubStorage>, config: UsersConfig) -> (Users, Arc<dyn HubStorage>) {
        let access = AccessLog::start(
            storage.clone(),
            crate::keys::throwaway().expect("a log key"),
        )
        .expect("access log");
        (
            Users::new(storage.clone(), access, config).expect("users"),
            storage,
        )
    }

    fn config() -> UsersConfig {
        UsersConfig {
            session_idle: Duration::from_secs(600),
            session_max: Duration::from_secs(3600),
            throttle: ThrottleConfig::default(),
        }
    }

    fn new_user(name: &str, role: Role) -> NewUser {
        NewUser {
            username: name.into(),
            agency: "CA0000001".into(),
            title: "t".into(),
            role,
            password: format!("password-of-{name}"),
            training_completed: "2026-01-01".into(),
            training_expires: "2099-01-01".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logout_on_one_hub_ends_the_session_on_another_sharing_the_database() {
        let db = crate::store::postgres::cluster::test_database().expect("database");
        let open = || -> Arc<dyn HubStorage> {
            Arc::new(crate::store::postgres::PgStore::open(&db.config).expect("open"))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, _) = users_of(open(), config());
        let (b, _) = users_of(open(), config());
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(a
            .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
            .expect("bootstrap file"));
        let file: BootstrapFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
                .expect("json");
        a.bootstrap(
            &file.token,
            new_user("admin", Role::Administrator),
            ip,
            dir.path(),
        )
        .await
        .expect("bootstrap");
        assert!(b.reload().expect("reload"), "hub b sees the new account");
        let login = a
            .login("admin", "password-of-admin", ip)
            .await
            .expect("login");
        // Hub b serves the session (and keeps it in memory)…
        let caller = b.authenticate(&login.token, ip).expect("a session on b");
        assert_eq!(caller.username, "admin");
        assert!(b.authenticate(&login.token, ip).is_ok());
        // …until it ends on hub a.
        let on_a = a.authenticate(&login.token, ip).expect("a session on a");
        a.logout(&on_a, &login.token).await.expect("logout");
        assert!(
            matches!(
                b.authenticate(&login.token, ip),
                Err(UserError::Unauthorized(_))
            ),
            "a session ended on one hub is refused by the other"
        );
    }

    #[tokio::test]
    async fn the_hub_learns_each_signing_key_when_the_password_passes_and_keeps_them_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (users, storage) = users_in(dir.path(), config());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let admin = Caller {
            username: "admin".into(),
            agency: "CA0000001".into(),
            role: Role::Administrator,
            title: "t".into(),
            source: "127.0.0.1".into(),
        };
        // Added: the key of the password set.
        users
            .add(&admin, new_user("ofc", Role::Officer))
            .await
            .expect("add");
        let first = users.keys("ofc");
        assert_eq!(first.len(), 1);
        first[0]
            .key
            .unlock("password-of-ofc")
            .expect("the key is the password's");
        // A new password: a new key, and the old one is kept.
        let mut changes = users.subscribe();
        changes.mark_unchanged();
        users
            .passwd(&admin, "ofc", "a brand new password".into())
            .await
            .expect("passwd");
        assert!(changes.has_changed().expect("watch"), "the policy follows");
        let both = users.keys("ofc");
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], first[0], "the old key stays known");
        both[1]
            .key
            .unlock("a brand new password")
            .expect("the current key is the new password's");
        assert_eq!(
            users.current_keys().get("ofc"),
            Some(&both[1].key),
            "the current key is the latest"
        );
        // A user without a key (made before keys) gets one at login.
        let mut old = storage.user("ofc").expect("read").expect("kept");
        old.username = "old.timer".into();
        storage.commit(vec![WriteOp::User(old)]).expect("commit");
        assert!(users.reload().expect("reload"));
        assert!(users.keys("old.timer").is_empty());
        users
            .login("old.timer", "a brand new password", ip)
            .await
            .expect("login");
        let learnt = users.keys("old.timer");
        assert_eq!(learnt.len(), 1);
        learnt[0]
            .key
            .unlock("a brand new password")
            .expect("learnt from the password");
        // All of it is durable.
        drop(users);
        let (again, _) = users_of(storage, config());
        assert_eq!(again.keys("ofc"), both);
        assert_eq!(again.keys("old.timer"), learnt);
    }

    #[tokio::test]
    async fn sessions_follow_the_account_and_changes_notify_subscribers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (users, storage) = users_in(dir.path(), config());
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(users
            .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
            .expect("bootstrap file"));
        let file: BootstrapFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
                .expect("json");
        let mut changes = users.subscribe();
        let admin = users
            .bootstrap(
                &file.token,
                new_user("admin", Role::Administrator),
                ip,
                dir.path(),
            )
            .await
            .expect("bootstrap");
        assert_eq!(admin.role, Role::Administrator);
        assert!(!dir.path().join(BOOTSTRAP_FILE).exists());
        assert!(changes.has_changed().expect("watch"));
        changes.mark_unchanged();
        // Once is all.
        assert!(users
            .bootstrap(
                &file.token,
                new_user("again", Role::Administrator),
                ip,
                dir.path()
            )
            .await
            .is_err());

        let login = users
            .login("admin", "password-of-admin", ip)
            .await
            .expect("login");
        // Only the token's hash is kept.
        assert!(storage
            .session(&token_hash(&login.token))
            .expect("read")
            .is_some());
        let stored = format!("{:?}", storage.users().expect("users"));
        assert!(!stored.contains(&login.token));
        let caller = users.authenticate(&login.token, ip).expect("a session");
        assert_eq!(caller.username, "admin");

        users
            .add(&caller, new_user("ofc", Role::Officer))
            .await
            .expect("add");
        assert!(changes.has_changed().expect("watch"));
        changes.mark_unchanged();
        let ofc = users
            .login("ofc", "password-of-ofc", ip)
            .await
            .expect("login");
        users.authenticate(&ofc.token, ip).expect("a session");
        users
            .train(&caller, "ofc", "2024-01-01", "2025-01-01")
            .await
            .expect("train");
        assert!(changes.has_changed().expect("watch"));
        assert!(matches!(
            users.authenticate(&ofc.token, ip),
            Err(UserError::Forbidden(m)) if m.contains("2025-01-01")
        ));

        users.logout(&caller, &login.token).await.expect("logout");
        assert!(matches!(
            users.authenticate(&login.token, ip),
            Err(UserError::Unauthorized(_))
        ));
        assert!(matches!(
            users.authenticate("not a token", ip),
            Err(UserError::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn a_session_past_its_absolute_end_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config();
        c.session_max = Duration::from_millis(1);
        let storage: Arc<dyn HubStorage> = Arc::new(
            crate::store::redb::RedbStore::open(&dir.path().join("hub.redb")).expect("open"),
        );
        let ip: IpAddr = [127, 0, 0, 1].into();
        let now = UnixMillis::now();
        storage
            .commit(vec![WriteOp::User(UserRecord {
                username: "a".into(),
                agency: "X".into(),
                title: "t".into(),
                role: Role::Auditor,
                password_hash: hash_password("password-of-a").expect("hash"),
                training_completed: UnixMillis(0),
                training_expires: UnixMillis(u64::MAX),
                disabled: false,
                created: now,
                updated: now,
            })])
            .expect("user");
        // Accounts stored before the start are known.
        let (users, storage) = users_of(storage, c);
        let login = users.login("a", "password-of-a", ip).await.expect("login");
        while UnixMillis::now() <= login.expires {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(matches!(
            users.authenticate(&login.token, ip),
            Err(UserError::Unauthorized(_))
        ));
        // And it is gone from storage.
        assert!(storage
            .session(&token_hash(&login.token))
            .expect("read")
            .is_none());

        // A session that ends unused is removed at the next login.
        let unused = users.login("a", "password-of-a", ip).await.expect("login");
        while UnixMillis::now() <= unused.expires {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _next = users.login("a", "password-of-a", ip).await.expect("login");
        assert!(storage
            .session(&token_hash(&unused.token))
            .expect("read")
            .is_none());
    }

    #[tokio::test]
    async fn a_session_left_idle_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config();
        c.session_idle = Duration::from_millis(1);
        let (users, _) = users_in(dir.path(), c);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let file = {
            users
                .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
                .expect("bootstrap file");
            let f: BootstrapFile = serde_json::from_slice(
                &std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"),
            )
            .expect("json");
            f
        };
        users
            .bootstrap(
                &file.token,
                new_user("a", Role::Administrator),
                ip,
                dir.path(),
            )
            .await
            .expect("bootstrap");
        let login = users.login("a", "password-of-a", ip).await.expect("login");
        let start = UnixMillis::now();
        while UnixMillis::now().0 <= start.0 + 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(matches!(
            users.authenticate(&login.token, ip),
            Err(UserError::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn a_page_that_keeps_itself_up_to_date_does_not_keep_its_session_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config();
        c.session_idle = Duration::from_millis(1000);
        let (users, _) = users_in(dir.path(), c);
        let ip: IpAddr = [127, 0, 0, 1].into();
        users
            .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
            .expect("bootstrap file");
        let file: BootstrapFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
                .expect("json");
        users
            .bootstrap(
                &file.token,
                new_user("a", Role::Administrator),
                ip,
                dir.path(),
            )
            .await
            .expect("bootstrap");
        let login = users.login("a", "password-of-a", ip).await.expect("login");
        users.authenticate(&login.token, ip).expect("used");
        users
            .still_authenticated(&login.token, ip)
            .expect("still a session");
        tokio::time::sleep(Duration::from_millis(600)).await;
        users
            .still_authenticated(&login.token, ip)
            .expect("still within the idle time");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            matches!(
                users.still_authenticated(&login.token, ip),
                Err(UserError::Unauthorized(_))
            ),
            "the checks were not activity: idle since the last use"
        );
    }

    #[test]
    fn passwords_hash_with_argon2id_owasp_parameters_and_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn roles_follow_need_to_know() {
        assert!(Role::Officer.may(Permission::Search));
        assert!(!Role::Officer.may(Permission::ManageUsers));
        assert!(!Role::Officer.may(Permission::ViewNodes));
        assert!(Role::Administrator.may(Permission::ManageUsers));
        assert!(!Role::Administrator.may(Permission::Search));
        assert!(Role::Auditor.may(Permission::VerifyLogs));
        assert!(!Role::Auditor.may(Permission::Search));
        assert!(Role::Supervisor.may(Permission::ReadAudits));
        assert!(!Role::Operator.may(Permission::ReadAudits));
    }

    #[test]
    fn lapsed_training_and_disabled_users_are_refused_with_the_reason() {
        let mut u = UserRecord {
            username: "ofc".into(),
            agency: "CA0000000".into(),
            title: "Officer".into(),
            role: Role::Officer,
            password_hash: String::new(),
            training_completed: parse_date("2024-01-01").expect("date"),
            training_expires: parse_date("2025-01-01").expect("date"),
            disabled: false,
            created: UnixMillis(0),
            updated: UnixMillis(0),
        };
        let now = parse_date("2026-01-01").expect("date");
        let why = u.refusal(now).expect("refused");
        assert!(
            why.contains("training") && why.contains("2025-01-01"),
            "{why}"
        );
        u.training_expires = parse_date("2027-01-01").expect("date");
        assert_eq!(u.refusal(now), None);
        u.disabled = true;
        assert!(u.refusal(now).expect("refused").contains("disabled"));
    }
}
