//! The hub's health for machines: the metrics endpoint's figures (reads
//! stored, backlog, refusals by kind, commit latency, nodes connected,
//! disk free) and whether the hub does its job (`/healthz`, `hub health`).

use std::sync::Arc;

use alpr_shared::metrics::{Exporter, MetricsText};

use crate::ingest::Metrics;
use crate::store::recovering::Recovering;
use crate::sync::Hub;

/// What the hub tracks for its health beyond the ingest counters.
#[derive(Debug, Default)]
pub struct HubHealth {
    /// The database, when it can reopen itself (the served hub).
    storage: Option<Arc<Recovering>>,
}

impl HubHealth {
    pub fn new(storage: Option<Arc<Recovering>>) -> Self {
        HubHealth { storage }
    }

    /// Why the database cannot be used now (it reopens itself).
    pub fn storage_error(&self) -> Option<String> {
        self.storage.as_ref().and_then(|s| s.failing())
    }

    /// Free bytes where the database lives.
    pub fn disk_free(&self) -> Option<u64> {
        self.storage
            .as_ref()
            .and_then(|s| s.path().parent().map(std::path::Path::to_owned))
            .and_then(|p| alpr_shared::health::disk_free(&p))
    }

    /// What is wrong now; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = self.storage_error() {
            out.push(format!("the database cannot commit: {e}"));
        }
        if self.disk_free() == Some(0) {
            out.push("the data folder's disk is full".into());
        }
        out
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
