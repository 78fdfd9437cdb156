//! Failed logins, counted per username and per source address over a
//! sliding window; past the limit the name or the source is locked for a
//! while, and every attempt meanwhile is refused, right password or not.
//!
//! The failures and locks are kept in the hub's store ([`HubStorage`]):
//! every hub process sharing a database counts the same failures (an
//! attacker gets no more guesses by spreading them over the hubs), and a
//! restart forgets no lock. The rules live here; the store keeps rows,
//! bounded: at most [`MAX_FAILURES`] failures and [`MAX_LOCKS`] locks, the
//! oldest failures and the soonest-ending locks going first.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use alpr_shared::types::UnixMillis;

use crate::store::{HubStorage, StoreError, WriteOp};

/// Names and sources locked at once, at most.
pub const MAX_LOCKS: u64 = 10_000;
/// Failures kept, at most (within the window): ten thousand names' and
/// sources' worth at the default limits.
pub const MAX_FAILURES: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures of one username within `window` that lock it.
    pub user_failures: u32,
    /// Failures from one source address within `window` that lock it.
    pub source_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            user_failures: 5,
            source_failures: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// The throttle's rules over the store's rows. Cheap to share.
pub struct Throttle {
    config: ThrottleConfig,
    storage: Arc<dyn HubStorage>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The store's key of a username's failures and lock.
fn user_key(user: &str) -> String {
    format!("user:{user}")
}

/// The store's key of a source address's failures and lock.
fn source_key(source: IpAddr) -> String {
    format!("source:{source}")
}

impl Throttle {
    pub fn new(config: ThrottleConfig, storage: Arc<dyn HubStorage>) -> Self {
        Throttle { config, storage }
    }

    /// Until when `key` is locked, if it is at `now`.
    fn lock_of(&self, key: &str, now: UnixMillis) -> Result<Option<UnixMillis>, StoreError> {
        Ok(self.storage.login_lock(key)?.filter(|u| *u > now))
    }

    /// Until when this username or this source is locked, if it is.
    pub fn locked(
        &self,
        user: &str,
        source: IpAddr,
        now: UnixMillis,
    ) -> Result<Option<UnixMillis>, StoreError> {
        let u = self.lock_of(&user_key(user), now)?;
        let s = self.lock_of(&source_key(source), now)?;
        Ok(u.max(s))
    }

    /// Count a failed login; what was locked and until when, if this
    /// failure locked something.
    pub fn failed(
        &self,
        user: &str,
        source: IpAddr,
        now: UnixMillis,
    ) -> Result<Option<(String, UnixMillis)>, StoreError> {
        let c = &self.config;
        let since = UnixMillis(now.0.saturating_sub(ms(c.window)));
        let keys = [
            (user_key(user), format!("user {user}"), c.user_failures),
            (
                source_key(source),
                format!("source {source}"),
                c.source_failures,
            ),
        ];
        self.storage.commit(vec![WriteOp::LoginFailure {
            keys: keys.iter().map(|(k, _, _)| k.clone()).collect(),
            at: now,
            keep_after: since,
            max_rows: MAX_FAILURES,
        }])?;
        let mut locked = None;
        for (key, what, limit) in keys {
            if self.lock_of(&key, now)?.is_some()
                || self.storage.login_failures(&key, since)? < u64::from(limit)
            {
                continue;
            }
            let until = UnixMillis(now.0.saturating_add(ms(c.lockout)));
            self.storage.commit(vec![WriteOp::LoginLock {
                key,
                until,
                at: now,
                max_rows: MAX_LOCKS,
            }])?;
            locked = locked.or(Some((what, until)));
        }
        Ok(locked)
    }

    /// A successful login clears the name's failures (not the source's).
    pub fn succeeded(&self, user: &str) -> Result<(), StoreError> {
        self.storage
            .commit(vec![WriteOp::LoginCleared {
                key: user_key(user),
            }])
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;

    fn store(dir: &std::path::Path) -> Arc<dyn HubStorage> {
        Arc::new(RedbStore::open(&dir.join("hub.redb")).expect("open"))
    }

    #[test]
    fn five_failures_lock_the_name_until_the_lockout_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Throttle::new(ThrottleConfig::default(), store(dir.path()));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = UnixMillis(1_000_000);
        for i in 0..4 {
            assert_eq!(
                t.failed("bob", ip, UnixMillis(now.0 + i)).expect("count"),
                None
            );
            assert_eq!(t.locked("bob", ip, now).expect("read"), None);
        }
        let (what, until) = t.failed("bob", ip, now).expect("count").expect("locks");
        assert_eq!(what, "user bob");
        assert_eq!(until.0, now.0 + 15 * 60 * 1000);
        assert_eq!(t.locked("bob", ip, now).expect("read"), Some(until));
        // Another source does not get around the name's lock.
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(t.locked("bob", other, now).expect("read"), Some(until));
        assert_eq!(t.locked("alice", ip, now).expect("read"), None);
        assert_eq!(t.locked("bob", ip, until).expect("read"), None);
    }

    #[test]
    fn one_source_guessing_many_names_is_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Throttle::new(ThrottleConfig::default(), store(dir.path()));
        let ip: IpAddr = [10, 0, 0, 9].into();
        let now = UnixMillis(5_000);
        let mut locked = None;
        for i in 0..20 {
            locked = locked.or(t.failed(&format!("user{i}"), ip, now).expect("count"));
        }
        let (what, _) = locked.expect("the source locks");
        assert!(what.starts_with("source"), "{what}");
        assert!(t.locked("someone-else", ip, now).expect("read").is_some());
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ThrottleConfig::default();
        let t = Throttle::new(c.clone(), store(dir.path()));
        let ip: IpAddr = [10, 0, 0, 1].into();
        for i in 0..4 {
            t.failed("bob", ip, UnixMillis(i)).expect("count");
        }
        let later = UnixMillis(ms(c.window) + 10);
        assert_eq!(t.failed("bob", ip, later).expect("count"), None);
    }

    #[test]
    fn a_success_clears_the_names_failures_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ThrottleConfig {
            source_failures: 6,
            ..ThrottleConfig::default()
        };
        let t = Throttle::new(c, store(dir.path()));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = UnixMillis(1_000);
        for _ in 0..4 {
            t.failed("bob", ip, now).expect("count");
        }
        t.succeeded("bob").expect("clear");
        // The name's fifth failure locks nothing: the first four went…
        assert_eq!(t.failed("bob", ip, now).expect("count"), None);
        // …but the source's sixth failure locks the source.
        let (what, _) = t.failed("bob", ip, now).expect("count").expect("locks");
        assert_eq!(what, format!("source {ip}"));
    }

    #[test]
    fn the_counts_and_the_lock_are_the_stores_shared_and_kept_over_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = UnixMillis(1_000);
        let until = {
            let storage = store(dir.path());
            // Two throttles over one store (two hub processes on one
            // database): their failures add up.
            let a = Throttle::new(ThrottleConfig::default(), storage.clone());
            let b = Throttle::new(ThrottleConfig::default(), storage);
            for i in 0..4 {
                let t = if i % 2 == 0 { &a } else { &b };
                assert_eq!(t.failed("bob", ip, now).expect("count"), None);
            }
            let (_, until) = a.failed("bob", ip, now).expect("count").expect("locks");
            assert_eq!(b.locked("bob", ip, now).expect("read"), Some(until));
            until
        };
        // Reopened (the hub restarted): still locked.
        let t = Throttle::new(ThrottleConfig::default(), store(dir.path()));
        assert_eq!(t.locked("bob", ip, now).expect("read"), Some(until));
    }
}
