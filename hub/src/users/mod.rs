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

mod account;
pub use account::*;

mod sessions;

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
mod tests;
