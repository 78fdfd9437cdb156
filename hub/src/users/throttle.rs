//! Failed logins, counted per username and per source address over a
//! sliding window; past the limit the name or the source is locked for a
//! while, and every attempt meanwhile is refused, right password or not.
//! Kept in memory and bounded: at most [`MAX_TRACKED`] names and sources.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use alpr_shared::types::UnixMillis;

/// Names and sources tracked at most each; the stalest go first.
pub const MAX_TRACKED: usize = 10_000;

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

#[derive(Debug, Default)]
struct Track {
    failures: VecDeque<UnixMillis>,
    locked_until: Option<UnixMillis>,
}

#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    users: HashMap<String, Track>,
    sources: HashMap<IpAddr, Track>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Track {
    fn locked(&self, now: UnixMillis) -> Option<UnixMillis> {
        self.locked_until.filter(|u| *u > now)
    }

    /// Count a failure; the time it locks until, if it locks now.
    fn fail(&mut self, now: UnixMillis, limit: u32, c: &ThrottleConfig) -> Option<UnixMillis> {
        let since = now.0.saturating_sub(ms(c.window));
        while self.failures.front().is_some_and(|t| t.0 < since) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= limit as usize && self.locked(now).is_none() {
            let until = UnixMillis(now.0.saturating_add(ms(c.lockout)));
            self.locked_until = Some(until);
            self.failures.clear();
            return Some(until);
        }
        None
    }
}

fn bound<K: std::hash::Hash + Eq + Clone>(m: &mut HashMap<K, Track>) {
    if m.len() < MAX_TRACKED {
        return;
    }
    let stalest = m
        .iter()
        .min_by_key(|(_, t)| t.failures.back().copied().or(t.locked_until))
        .map(|(k, _)| k.clone());
    if let Some(k) = stalest {
        m.remove(&k);
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            users: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// Until when this username or this source is locked, if it is.
    pub fn locked(&self, user: &str, source: IpAddr, now: UnixMillis) -> Option<UnixMillis> {
        let u = self.users.get(user).and_then(|t| t.locked(now));
        let s = self.sources.get(&source).and_then(|t| t.locked(now));
        u.max(s)
    }

    /// Count a failed login; what was locked and until when, if this
    /// failure locked something.
    pub fn failed(
        &mut self,
        user: &str,
        source: IpAddr,
        now: UnixMillis,
    ) -> Option<(String, UnixMillis)> {
        if !self.users.contains_key(user) {
            bound(&mut self.users);
        }
        if !self.sources.contains_key(&source) {
            bound(&mut self.sources);
        }
        let c = self.config.clone();
        let u = self
            .users
            .entry(user.to_owned())
            .or_default()
            .fail(now, c.user_failures, &c)
            .map(|t| (format!("user {user}"), t));
        let s = self
            .sources
            .entry(source)
            .or_default()
            .fail(now, c.source_failures, &c)
            .map(|t| (format!("source {source}"), t));
        u.or(s)
    }

    /// A successful login clears the name's failures (not the source's).
    pub fn succeeded(&mut self, user: &str) {
        self.users.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_name_until_the_lockout_ends() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = UnixMillis(1_000_000);
        for i in 0..4 {
            assert_eq!(t.failed("bob", ip, UnixMillis(now.0 + i)), None);
            assert_eq!(t.locked("bob", ip, now), None);
        }
        let (what, until) = t.failed("bob", ip, now).expect("locks");
        assert_eq!(what, "user bob");
        assert_eq!(until.0, now.0 + 15 * 60 * 1000);
        assert_eq!(t.locked("bob", ip, now), Some(until));
        // Another source does not get around the name's lock.
        assert_eq!(t.locked("bob", [10, 0, 0, 2].into(), now), Some(until));
        assert_eq!(t.locked("alice", ip, now), None);
        assert_eq!(t.locked("bob", ip, until), None);
    }

    #[test]
    fn one_source_guessing_many_names_is_locked() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = [10, 0, 0, 9].into();
        let now = UnixMillis(5_000);
        let mut locked = None;
        for i in 0..20 {
            locked = locked.or(t.failed(&format!("user{i}"), ip, now));
        }
        let (what, _) = locked.expect("the source locks");
        assert!(what.starts_with("source"), "{what}");
        assert!(t.locked("someone-else", ip, now).is_some());
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let c = ThrottleConfig::default();
        let mut t = Throttle::new(c.clone());
        let ip: IpAddr = [10, 0, 0, 1].into();
        for i in 0..4 {
            t.failed("bob", ip, UnixMillis(i));
        }
        let later = UnixMillis(ms(c.window) + 10);
        assert_eq!(t.failed("bob", ip, later), None);
    }
}
