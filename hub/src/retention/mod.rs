//! Retention at the hub (§1798.90.51 keeps reads no longer than policy
//! says, unless a legal hold covers them): every `retention_interval`, and
//! on `hub retention run`, purge the content of reads captured before now
//! − `policy.hub_retention_days` that no active hold covers.
//!
//! The hub cannot write into a node's log, so for each batch it signs a
//! [`alpr_shared::log::EntryKind::NodePurge`] into its own log, committed
//! with the purge itself ([`crate::access::AccessLog::purge`]): the
//! verifier accepts a node's read purged at the hub only when such a
//! record covers it. Batches are small (one page of a node's log) so the
//! single writer keeps ingesting between them.
//!
//! Seams: where the active holds come from ([`HoldSource`]) and what time
//! it is (`now`), so tests can run "a year and a day later".

use std::sync::{Arc, Mutex};

use alpr_shared::control::holds::Hold;
use alpr_shared::log::retention::{cutoff, plan, Candidate};
use alpr_shared::log::SignedEntry;
use alpr_shared::types::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::access::{AccessError, AccessLog};
use crate::store::{HubStorage, StoreError, WriteOp, WriteResult};

/// Entries read (and at most purged) per batch: one durable transaction
/// each, which ingest waits behind. `alpr-bench hub retention` (1M reads, 100
/// edges ingesting): 4096 purged in 42.6 s but left ingest 35 % of its
/// rate; 1024 takes 57.5 s and leaves it 62 %.
const PAGE: usize = 1024;

/// Where the active legal holds come from.
pub trait HoldSource: Send + Sync {
    fn active(&self) -> Vec<Hold>;
}

impl<F: Fn() -> Vec<Hold> + Send + Sync> HoldSource for F {
    fn active(&self) -> Vec<Hold> {
        self()
    }
}

/// The time retention measures from.
pub type Clock = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("purging: {0}")]
    Purge(#[from] AccessError),
    #[error("the retention task failed: {0}")]
    Task(String),
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// When it ran, by the retention clock.
    pub at: UnixMillis,
    /// Reads captured before this were past retention.
    pub cutoff: UnixMillis,
    pub retention_days: u32,
    /// Reads past retention that were purged.
    pub purged: u64,
    /// Reads past retention kept because a hold covers them.
    pub held: u64,
    pub images: u64,
    /// Plates no longer named by any read, dropped from the plate list.
    pub plates: u64,
    /// Purge records signed into the hub's log.
    pub records: u64,
}

/// The hub's retention job.
pub struct Retention {
    storage: Arc<dyn HubStorage>,
    access: AccessLog,
    holds: Arc<dyn HoldSource>,
    now: Clock,
    last: Mutex<Option<RunReport>>,
}

impl Retention {
    pub fn new(
        storage: Arc<dyn HubStorage>,
        access: AccessLog,
        holds: Arc<dyn HoldSource>,
        now: Clock,
    ) -> Self {
        Retention {
            storage,
            access,
            holds,
            now,
            last: Mutex::new(None),
        }
    }

    /// The last run's report, if any ran since the hub started.
    pub fn last(&self) -> Option<RunReport> {
        self.last.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// Purge every node's reads past `retention_days` that no active hold
    /// covers.
    pub async fn run(&self, retention_days: u32) -> Result<RunReport, RetentionError> {
        self.pass(retention_days, true).await
    }

    /// What a run would purge now (`purged`: reads due) and keep under a
    /// hold, purging nothing.
    pub async fn survey(&self, retention_days: u32) -> Result<RunReport, RetentionError> {
        self.pass(retention_days, false).await
    }

    async fn pass(&self, retention_days: u32, purge: bool) -> Result<RunReport, RetentionError> {
        let at = (self.now)();
        let before = cutoff(at, retention_days);
        let holds = self.holds.active();
        let mut report = RunReport {
            at,
            cutoff: before,
            retention_days,
            ..RunReport::default()
        };
        let nodes = self.blocking(|s| s.nodes()).await?;
        for (device, rec) in nodes {
            let mut from = 0u64;
            while from < rec.next_seq {
                let dev = device.clone();
                let page = self.blocking(move |s| s.entries(&dev, from, PAGE)).await?;
                if page.is_empty() {
                    break;
                }
                let entries: Vec<SignedEntry> = page
                    .iter()
                    .filter_map(|b| SignedEntry::decode(b).ok())
                    .collect();
                let next = entries
                    .last()
                    .map_or(from + page.len() as u64, |e| e.seq() + 1);
                // Entries are in sequence order: once one is recent, so is
                // every later read (capture times only move forward on a
                // node's clock, near enough; later pages are checked anyway).
                let p = plan(
                    device.as_str(),
                    entries.iter().map(|e| Candidate {
                        seq: e.seq(),
                        captured_at: e.header.captured_at,
                        content: e.read(),
                    }),
                    before,
                    &holds,
                );
                report.held += p.held;
                if !purge {
                    report.purged += p.due;
                }
                for ranges in p.records().filter(|_| purge) {
                    let reason = format!("hub retention {retention_days} days");
                    // The record is dated when the purge ran, by the
                    // system clock (the retention clock decides what is due).
                    let (_, done) = self
                        .access
                        .purge(device.clone(), ranges.to_vec(), &reason, UnixMillis::now())
                        .await?;
                    report.purged += done.reads;
                    report.images += done.images;
                    report.records += 1;
                }
                if next <= from {
                    break;
                }
                from = next;
            }
        }
        if !purge {
            return Ok(report);
        }
        let pruned = self
            .blocking(|s| s.commit(vec![WriteOp::PrunePlates]))
            .await?;
        if let Some(WriteResult::Purged(p)) = pruned.first() {
            report.plates = p.plates;
        }
        if let Ok(mut g) = self.last.lock() {
            *g = Some(report.clone());
        }
        // Counts only; the plate list's rows dropped are named as index
        // rows (no log line names, or seems to name, a plate).
        tracing::info!(
            purged = report.purged,
            held = report.held,
            images = report.images,
            index_rows_dropped = report.plates,
            "retention run"
        );
        Ok(report)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn HubStorage) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, RetentionError> {
        let s = self.storage.clone();
        tokio::task::spawn_blocking(move || f(&*s))
            .await
            .map_err(|e| RetentionError::Task(e.to_string()))?
            .map_err(RetentionError::from)
    }
}

/// Run retention every `interval` until `cancel`, with the retention days
/// of the policy in force at each run. A failed run is logged and retried
/// at the next tick: nothing is lost by waiting.
pub async fn schedule(
    retention: Arc<Retention>,
    policy: crate::policy::PolicyService,
    interval: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let days = policy.current().policy().hub_retention_days;
        if let Err(e) = retention.run(days).await {
            tracing::error!(error = %e, "retention run failed; retrying at the next interval");
        }
    }
}

/// One purge the hub signed into its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeDone {
    /// Its sequence number in the hub's log.
    pub record: u64,
    pub at: UnixMillis,
    pub node: String,
    pub ranges: Vec<alpr_shared::log::SeqRange>,
    pub reads: u64,
    pub reason: String,
}

/// Every purge the hub recorded in its own log, oldest first.
pub fn purges(storage: &dyn HubStorage) -> Result<Vec<PurgeDone>, StoreError> {
    let mut out = Vec::new();
    let mut from = 0u64;
    loop {
        let page = storage.hub_access_entries(from, PAGE)?;
        if page.is_empty() {
            return Ok(out);
        }
        from += page.len() as u64;
        for b in &page {
            let Ok(e) = SignedEntry::decode(b) else {
                continue;
            };
            if let alpr_shared::log::EntryKind::NodePurge {
                node,
                ranges,
                reason,
            } = &e.header.kind
            {
                out.push(PurgeDone {
                    record: e.seq(),
                    at: e.header.captured_at,
                    node: node.to_string(),
                    reads: ranges.iter().map(|r| r.last - r.first + 1).sum(),
                    ranges: ranges.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
