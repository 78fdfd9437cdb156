//! Refusals of sources that never proved an enrolled identity (failed or
//! stalled handshakes, limits hit before authentication). Anyone who can
//! reach the port can cause them, so they are aggregated per source IP and
//! rate-limited: at most one durable row per source per
//! [`SourceRefusals::interval`], carrying the count since the source's
//! previous row; between rows the count is kept in memory. At most
//! `max_sources` sources are tracked; beyond that, sources share one
//! aggregate (`*`). The writer prunes the durable rows by age and count,
//! and they live in their own table: a node's refusals are never pushed
//! out by them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use alpr_shared::types::UnixMillis;

use crate::store::SourceRefusalRecord;

/// Kinds of refusal that are not wire refusal codes.
pub mod kind {
    /// Too many handshakes in progress: refused before any work.
    pub const HANDSHAKE_LIMIT: &str = "handshake-limit";
    /// The handshake did not finish within the hub's handshake timeout.
    pub const HANDSHAKE_TIMEOUT: &str = "handshake-timeout";
    /// An authenticated node over the hub's connection limit.
    pub const CONNECTION_LIMIT: &str = "connection-limit";
}

/// Most unauthenticated sources whose counts are kept apart.
pub const MAX_SOURCES: usize = 4096;
/// Most durable rows of unauthenticated sources.
pub const MAX_SOURCE_ROWS: u64 = 10_000;
/// One durable row per source per this interval, at most.
pub const SOURCE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
struct Aggregate {
    /// When the source's last durable row was written.
    last_row: UnixMillis,
    /// Refusals since then.
    pending: u64,
}

/// The in-memory aggregate of unauthenticated sources' refusals.
#[derive(Debug)]
pub struct SourceRefusals {
    interval: Duration,
    max_sources: usize,
    /// `None`: the shared aggregate of sources beyond the cap.
    sources: Mutex<HashMap<Option<IpAddr>, Aggregate>>,
}

impl Default for SourceRefusals {
    fn default() -> Self {
        SourceRefusals::new(SOURCE_INTERVAL, MAX_SOURCES)
    }
}

impl SourceRefusals {
    pub fn new(interval: Duration, max_sources: usize) -> Self {
        SourceRefusals {
            interval,
            max_sources: max_sources.max(1),
            sources: Mutex::new(HashMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Count one refusal of `ip`. Returns the row to store when the source
    /// is due one (its first, or the first after the interval), with every
    /// refusal since its previous row; `None` while it is being aggregated.
    pub fn note(
        &self,
        ip: IpAddr,
        code: &str,
        detail: &str,
        now: UnixMillis,
    ) -> Option<SourceRefusalRecord> {
        let Ok(mut sources) = self.sources.lock() else {
            return None;
        };
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let mut key = Some(ip);
        if !sources.contains_key(&key) && sources.len() >= self.max_sources {
            // Forget sources that are quiet and owe no count.
            sources.retain(|_, a| a.pending > 0 || now.0.saturating_sub(a.last_row.0) < interval);
            if sources.len() >= self.max_sources {
                key = None;
            }
        }
        let due = match sources.get_mut(&key) {
            Some(a) => {
                a.pending += 1;
                now.0.saturating_sub(a.last_row.0) >= interval
            }
            None => {
                sources.insert(
                    key,
                    Aggregate {
                        last_row: UnixMillis(0),
                        pending: 1,
                    },
                );
                true
            }
        };
        if !due {
            return None;
        }
        let a = sources.get_mut(&key)?;
        let count = std::mem::take(&mut a.pending);
        a.last_row = now;
        Some(SourceRefusalRecord {
            at: now,
            source: key.map_or_else(|| "*".to_owned(), |ip| ip.to_string()),
            code: code.to_owned(),
            count,
            detail: detail.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_source_per_interval_with_the_count_since_the_last() {
        let s = SourceRefusals::new(Duration::from_secs(60), 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let t0 = UnixMillis(1_000_000);
        let first = s.note(a, "unknown-node", "x", t0).expect("first row");
        assert_eq!(first.count, 1);
        for i in 1..1000 {
            assert!(s
                .note(a, "unknown-node", "x", UnixMillis(t0.0 + i))
                .is_none());
        }
        let next = s
            .note(a, "handshake-timeout", "y", UnixMillis(t0.0 + 60_000))
            .expect("a row after the interval");
        assert_eq!(next.count, 1000, "every refusal in between is counted");
        assert_eq!(next.code, "handshake-timeout");
    }

    #[test]
    fn sources_beyond_the_cap_share_one_aggregate() {
        let s = SourceRefusals::new(Duration::from_secs(60), 2);
        let now = UnixMillis(5_000_000);
        let rows: Vec<_> = (1..=100u8)
            .filter_map(|i| s.note([10, 0, 0, i].into(), "unknown-node", "x", now))
            .collect();
        // Two sources of their own, then one shared row.
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].source, "*");
        assert!(s.sources.lock().map(|m| m.len()).unwrap_or(0) <= 3);
    }
}
