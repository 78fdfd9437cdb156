//! Retention at the edge: purge reads older than
//! `policy.edge_retention_days` — only those the hub has acknowledged with
//! a receipt this node verified ([`StoreHandle::acked`]), under no legal
//! hold the node knows of, and only while its hold state is fresh
//! (refreshed within `policy.max_stale_ms`). With stale holds, or no
//! policy, it keeps everything and says why ([`Outcome`]).
//!
//! Each batch deletes content, salt, plate rows and images locally and
//! appends a signed purge entry to the node's own log through the store's
//! single writer ([`StoreHandle::purge`]); it syncs to the hub like any
//! entry, and the hub's copy keeps the content until its own retention.

use std::sync::Arc;

use alpr_shared::control::holds::Hold;
use alpr_shared::log::retention::{cutoff, plan, Candidate};
use alpr_shared::types::UnixMillis;
use serde::Serialize;

use crate::store::{StoreError, StoreHandle};

/// Entries read (and at most purged) per batch.
const PAGE: usize = 2048;

/// Where the holds this node knows of come from, and when they were last
/// refreshed from the hub (`None`: never).
pub trait HoldSource: Send + Sync {
    fn holds(&self) -> (Vec<Hold>, Option<UnixMillis>);
}

impl<F: Fn() -> (Vec<Hold>, Option<UnixMillis>) + Send + Sync> HoldSource for F {
    fn holds(&self) -> (Vec<Hold>, Option<UnixMillis>) {
        self()
    }
}

/// What a retention pass did, for `edge status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Reads purged and kept under a hold.
    Ran {
        at: UnixMillis,
        purged: u64,
        held: u64,
        images: u64,
        /// Reads past retention the hub has not acknowledged yet: kept.
        unacknowledged: u64,
    },
    /// The node's holds were last refreshed at `refreshed_at` (or never),
    /// longer ago than the policy allows: nothing is purged.
    StaleHolds {
        at: UnixMillis,
        refreshed_at: Option<UnixMillis>,
    },
    /// No policy from the hub yet: nothing is purged.
    NoPolicy { at: UnixMillis },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ran {
                at,
                purged,
                held,
                unacknowledged,
                ..
            } => write!(
                f,
                "retention at {at}: {purged} reads purged, {held} kept under a hold, \
                 {unacknowledged} past retention kept until the hub acknowledges them"
            ),
            Outcome::StaleHolds { refreshed_at, .. } => match refreshed_at {
                Some(t) => write!(
                    f,
                    "retention paused: legal holds last refreshed from the hub at {t}; keeping everything"
                ),
                None => write!(
                    f,
                    "retention paused: legal holds never refreshed from the hub; keeping everything"
                ),
            },
            Outcome::NoPolicy { .. } => {
                write!(f, "retention paused: no policy from the hub yet; keeping everything")
            }
        }
    }
}

/// One retention pass over the node's log at `now`.
pub async fn run(
    store: &StoreHandle,
    holds: &dyn HoldSource,
    now: UnixMillis,
) -> Result<Outcome, StoreError> {
    let s = store.clone();
    let Some((policy, _)) = tokio::task::spawn_blocking(move || s.policy())
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??
    else {
        return Ok(Outcome::NoPolicy { at: now });
    };
    let policy = policy.policy().clone();
    let (holds, refreshed_at) = holds.holds();
    let fresh = refreshed_at.is_some_and(|t| now.0.saturating_sub(t.0) <= policy.max_stale_ms);
    if !fresh {
        return Ok(Outcome::StaleHolds {
            at: now,
            refreshed_at,
        });
    }
    let before = cutoff(now, policy.edge_retention_days);
    let acked = store.acked();
    let node = store.device().to_string();
    let (mut purged, mut held, mut images, mut unacknowledged) = (0u64, 0u64, 0u64, 0u64);
    let mut from = 0u64;
    loop {
        let s = store.clone();
        let page = tokio::task::spawn_blocking(move || s.entries_from(from, PAGE))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))??;
        let Some(last) = page.last().map(|e| e.seq()) else {
            break;
        };
        let (acknowledged, rest): (Vec<_>, Vec<_>) = page.iter().partition(|e| e.seq() < acked);
        unacknowledged += rest
            .iter()
            .filter(|e| e.read().is_some() && e.header.captured_at < before)
            .count() as u64;
        let p = plan(
            &node,
            acknowledged.iter().map(|e| Candidate {
                seq: e.seq(),
                captured_at: e.header.captured_at,
                content: e.read(),
            }),
            before,
            &holds,
        );
        held += p.held;
        for ranges in p.records() {
            let reason = format!("edge retention {} days", policy.edge_retention_days);
            let done = store.purge(ranges.to_vec(), &reason).await?;
            purged += done.reads;
            images += done.images;
        }
        if page.len() < PAGE || last < from {
            break;
        }
        from = last + 1;
    }
    Ok(Outcome::Ran {
        at: now,
        purged,
        held,
        images,
        unacknowledged,
    })
}

/// Run retention every `interval` until `cancel`, keeping the last
/// outcome in `last` for `edge status`.
pub async fn schedule(
    store: StoreHandle,
    holds: Arc<dyn HoldSource>,
    interval: std::time::Duration,
    last: Arc<std::sync::Mutex<Option<Outcome>>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match run(&store, &*holds, UnixMillis::now()).await {
            Ok(o) => {
                if let Ok(mut g) = last.lock() {
                    *g = Some(o);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "edge retention failed; retrying at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests;
