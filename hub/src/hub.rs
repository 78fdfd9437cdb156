//! The running hub: what its adapters share once the composition root
//! has built it. The store and its one writer, the ingest counters and health, the
//! deployment's CA and the hub's signing keys, the revocations in force,
//! and the services of the shared documents (policy, legal holds, bulk
//! lists, local entries, nodes' changes). The QUIC driver (`sync`), the
//! API (`api`) and the console reach the domain through it;
//! the domain's rooms are given the parts they need, never the hub.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::{Revocation, TrustAnchor};
use alpr_shared::metrics::{Exporter, MetricsText};
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::Refusal;
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::normalise_serial;
use crate::ingest::{Metrics, Writer};
use crate::refusals::{self, SourceRefusals};
use crate::store::{HubStorage, RefusalRecord, WriteOp};

/// Everything the hub's adapters share.
pub struct Hub {
    pub storage: Arc<dyn HubStorage>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// Refusals by kind, the database's state.
    pub health: Arc<crate::health::HubHealth>,
    pub(crate) anchor: TrustAnchor,
    /// The hub's signing keys (one per purpose) and certificates.
    pub(crate) keys: crate::keys::HubKeys,
    /// Revocations by serial (also kept in the store).
    pub(crate) revoked: Mutex<HashMap<String, Revocation>>,
    /// The nodes connected now, as the QUIC driver keeps them.
    pub(crate) live: Arc<dyn LiveNodes>,
    pub(crate) cancel: CancellationToken,
    /// Unauthenticated sources' refusals, aggregated before they are stored.
    pub sources: SourceRefusals,
    /// How long unauthenticated sources' refusals are kept.
    pub(crate) refusal_retention: std::time::Duration,
    /// The signed policy, pushed to every connected node when it changes.
    pub policy: crate::policy::PolicyService,
    /// The legal holds, merged with every node's.
    pub holds: crate::holds::HoldsService,
    /// The bulk hotlists' signed generations, pushed to every node.
    pub hotlists: crate::hotlist::HotlistService,
    /// The local hotlist entries, merged with every node's.
    pub local_entries: crate::hotlist::local::LocalEntriesService,
    /// Takes nodes' changes to the holds and local entries, change by
    /// change, into the access log.
    pub node_writes: crate::node_writes::NodeWrites,
}

/// The nodes connected now, as the driver that holds their connections
/// (`sync`) sees them.
pub trait LiveNodes: Send + Sync {
    /// Names of the nodes connected now.
    fn names(&self) -> Vec<String>;
    /// How many nodes are connected now.
    fn count(&self) -> usize;
    /// Apply revocation `r` to the live sessions (they refuse what it
    /// covers), and close the connections that authenticated with its
    /// certificate if it is in effect at `now`. Returns, for each closed
    /// connection, its node, its address and the refusal it was closed with.
    fn revoke(&self, r: &Revocation, now: UnixMillis) -> Vec<(DeviceId, SocketAddr, Refusal)>;
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub(..)")
    }
}

impl Hub {
    /// The deployment's CA, as the hub trusts it.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// The hub's signing keys (one per purpose) and certificates.
    pub fn keys(&self) -> &crate::keys::HubKeys {
        &self.keys
    }

    /// Cancelled when the hub shuts down: an answer that streams until
    /// then (the console's live alerts) ends, so the API can stop.
    pub fn shutdown(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Nodes connected now.
    pub fn connected_count(&self) -> usize {
        self.live.count()
    }

    /// When `serial` was revoked, if it is.
    pub(crate) fn revoked_at(&self, serial: &str) -> Option<UnixMillis> {
        self.revoked
            .lock()
            .ok()
            .and_then(|m| m.get(&normalise_serial(serial)).map(|r| r.effective_at))
    }

    /// Names of the nodes connected now.
    pub fn connected(&self) -> Vec<String> {
        self.live.names()
    }

    /// Record a revocation durably, apply it to live sessions, and close
    /// the connections that authenticated with that certificate once it is
    /// in effect. Returns the revocation as recorded and the nodes whose
    /// connection was closed.
    pub async fn revoke(&self, r: Revocation) -> anyhow::Result<(Revocation, Vec<String>)> {
        // Applied in memory first, so no entry captured after it is
        // verified while it is being written; the earliest time wins.
        let (recorded, closed) = self.apply_revocation(r).await?;
        self.writer
            .submit(WriteOp::Revoke(recorded.clone()))
            .await
            .context("recording the revocation")?;
        let all: Vec<Revocation> = self
            .revoked
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        self.policy
            .set_revocations(all)
            .await
            .context("putting the revocation in the policy")?;
        Ok((recorded, closed))
    }

    /// Whether `r` is news: a serial not revoked here yet, or revoked from
    /// an earlier time.
    pub(crate) fn revocation_is_new(&self, r: &Revocation) -> bool {
        self.revoked.lock().is_ok_and(|m| {
            m.get(&r.serial)
                .is_none_or(|known| r.effective_at < known.effective_at)
        })
    }
    /// Apply a revocation in memory (the earliest time wins): live
    /// sessions refuse what it covers, and the connections that
    /// authenticated with that certificate close once it is in effect.
    /// Returns the revocation as it now stands and the nodes closed.
    pub(crate) async fn apply_revocation(
        &self,
        r: Revocation,
    ) -> anyhow::Result<(Revocation, Vec<String>)> {
        let recorded = match self.revoked.lock() {
            Ok(mut m) => {
                let e = m.entry(r.serial.clone()).or_insert_with(|| r.clone());
                if r.effective_at < e.effective_at {
                    *e = r.clone();
                }
                e.clone()
            }
            Err(_) => anyhow::bail!("the revocation list is poisoned"),
        };
        let mut closed = Vec::new();
        for (device, peer, refusal) in self.live.revoke(&recorded, UnixMillis::now()) {
            self.refuse(Some(&device), peer, &refusal).await;
            closed.push(device.to_string());
        }
        Ok((recorded, closed))
    }

    /// Log, count and store a refusal.
    pub async fn refuse(&self, device: Option<&DeviceId>, peer: SocketAddr, r: &Refusal) {
        self.refuse_as(device, peer, r.code.as_str(), r.seq, &r.detail)
            .await;
    }

    /// Log, count (by `kind`: a refusal code or a [`refusals::kind`]) and
    /// store a refusal. A node's refusal is one row of its own; an
    /// unauthenticated source's are aggregated ([`SourceRefusals`]), and
    /// logged when a row is due.
    pub async fn refuse_as(
        &self,
        device: Option<&DeviceId>,
        peer: SocketAddr,
        kind: &str,
        seq: Option<u64>,
        detail: &str,
    ) {
        self.metrics.count_refusal(kind);
        let now = UnixMillis::now();
        let op = match device {
            Some(d) => {
                warn!(node = %d, %peer, code = %kind, seq, reason = %detail, "refused");
                WriteOp::Refusal(RefusalRecord {
                    at: now,
                    device: Some(d.to_string()),
                    peer: peer.to_string(),
                    code: kind.to_owned(),
                    seq,
                    detail: detail.to_owned(),
                })
            }
            None => {
                let Some(record) = self.sources.note(peer.ip(), kind, detail, now) else {
                    tracing::debug!(%peer, code = %kind, reason = %detail, "refused (aggregated)");
                    return;
                };
                warn!(
                    node = "?",
                    %peer,
                    code = %kind,
                    count = record.count,
                    reason = %detail,
                    "refused"
                );
                let retention =
                    u64::try_from(self.refusal_retention.as_millis()).unwrap_or(u64::MAX);
                WriteOp::SourceRefusal {
                    record,
                    keep_after: UnixMillis(now.0.saturating_sub(retention)),
                    max_rows: refusals::MAX_SOURCE_ROWS,
                }
            }
        };
        if let Err(e) = self.writer.submit(op).await {
            warn!(error = %e, "could not store the refusal");
        }
    }
}

/// The hub's metrics endpoint.
pub struct HubExporter(pub Arc<Hub>);

impl Exporter for HubExporter {
    fn metrics(&self) -> String {
        let hub = &self.0;
        let m = &hub.metrics;
        let g = |c: &std::sync::atomic::AtomicU64| Metrics::get(c) as f64;
        let nodes = hub.storage.nodes().unwrap_or_default();
        let backlog: u64 = nodes.iter().map(|(_, r)| r.backlog()).sum();
        let mut t = MetricsText::new();
        t.counter(
            "alpr_hub_entries_stored_total",
            "Entries verified and durably stored since start.",
            g(&m.entries_stored),
        )
        .counter(
            "alpr_hub_duplicates_total",
            "Entries received again (harmless replays).",
            g(&m.duplicates),
        )
        .counter(
            "alpr_hub_images_stored_total",
            "Images stored since start.",
            g(&m.images_stored),
        )
        .counter(
            "alpr_hub_refusals_total",
            "Refusals since start.",
            g(&m.refusals),
        )
        .counter(
            "alpr_hub_refused_handshakes_total",
            "TLS handshakes refused since start.",
            g(&m.refused_handshakes),
        )
        .labelled(
            "alpr_hub_refusals_by_kind_total",
            "counter",
            "Refusals since start, by kind (refusal codes and limits).",
            "kind",
            &m.refusals_by_kind()
                .into_iter()
                .map(|(k, n)| (k, n as f64))
                .collect::<Vec<_>>(),
        )
        .counter("alpr_hub_commits_total", "Durable commits.", g(&m.commits))
        .counter(
            "alpr_hub_commit_seconds_total",
            "Time spent in durable commits.",
            g(&m.commit_micros) / 1e6,
        )
        .gauge("alpr_hub_nodes", "Nodes the hub knows.", nodes.len() as f64)
        .gauge(
            "alpr_hub_nodes_connected",
            "Nodes connected now.",
            hub.connected_count() as f64,
        )
        .gauge(
            "alpr_hub_backlog_entries",
            "Entries nodes reported that the hub does not hold yet.",
            backlog as f64,
        )
        .gauge(
            "alpr_hub_storage_failing",
            "1 while the database cannot commit (it reopens itself).",
            if hub.health.storage_error().is_some() {
                1.0
            } else {
                0.0
            },
        );
        if let Some(free) = hub.health.disk_free() {
            t.gauge(
                "alpr_hub_disk_free_bytes",
                "Free bytes on the database's filesystem.",
                free as f64,
            );
        }
        t.finish()
    }

    fn health(&self) -> Result<(), String> {
        let p = self.0.health.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(p.join("; "))
        }
    }
}
