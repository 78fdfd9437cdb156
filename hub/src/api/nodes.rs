//! Routes about nodes, moved from the QUIC admin protocol (the QUIC port
//! is for nodes only):
//!
//! - `GET  /api/v1/nodes` — nodes report ([`Permission::ViewNodes`]): link,
//!   counts and refusals, no read data;
//! - `POST /api/v1/revoke` — revoke a node certificate
//!   ([`Permission::Revoke`]).
//!
//! The logs themselves reach an auditor only as the bundle the hub builds
//! and signs ([`crate::api::audit`]).

use std::collections::HashMap;

use alpr_shared::log::AccessAction;
use alpr_shared::types::UnixMillis;
use alpr_shared::wire::RefusalCode;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::hub::Hub;
use crate::ingest::Metrics;
use crate::store::{RefusalRecord, SourceRefusalRecord};
use crate::users::{Caller, Permission};

/// Refusal records searched for identity conflicts by `hub nodes`.
const CONFLICT_SCAN: usize = 10_000;
/// An identity conflict counts as current this long after the node's
/// last contact (a node in conflict checks again every backoff cap).
const CONFLICT_CURRENT_MS: u64 = 5 * 60 * 1000;

/// Revoke a node certificate from `at` (now if absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub serial: String,
    pub at: Option<UnixMillis>,
    pub reason: String,
}

/// The answer to a revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeReport {
    /// As recorded (an earlier revocation of the same serial wins).
    pub revocation: alpr_shared::cert::Revocation,
    /// Nodes whose connection was closed.
    pub closed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRow {
    pub name: String,
    pub connected: bool,
    pub last_contact: UnixMillis,
    /// The hub holds entries 0..acked.
    pub acked: u64,
    /// Entries the node has that the hub does not; `None` while the node is
    /// in an identity conflict (its log is not what the hub holds).
    pub backlog: Option<u64>,
    pub refusals: u64,
    pub duplicates: u64,
    pub images: u64,
    /// Identity conflicts recorded for this node (a store replaced, or two
    /// devices with one certificate).
    pub identity_conflicts: u64,
    /// The latest one, while it is current: a person must resolve it.
    pub identity_conflict: Option<RefusalRecord>,
    /// Every certificate the node has held.
    #[serde(default)]
    pub certificates: Vec<CertRow>,
    /// The policy version the node enforces, as it last said.
    #[serde(default)]
    pub policy_version: Option<u64>,
    /// The bulk lists the node holds, (source, generation), as it last said.
    #[serde(default)]
    pub hotlists: Vec<(String, u64)>,
}

/// A certificate a node has held, as `hub nodes` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRow {
    pub serial: String,
    pub first_seen: UnixMillis,
    /// The first sequence number it signs; `None` while pending.
    pub effective_from: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesReport {
    pub nodes: Vec<NodeRow>,
    /// The most recent refusals, oldest first.
    pub recent_refusals: Vec<RefusalRecord>,
    pub entries_stored: u64,
    pub refusals: u64,
    pub refused_handshakes: u64,
    /// Why the database cannot commit now (it reopens itself); absent
    /// when healthy.
    #[serde(default)]
    pub storage_error: Option<String>,
    /// Free bytes where the database lives.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// What is wrong now; empty when healthy (`hub health`).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Refusals since start by kind: refusal codes (`revoked`, `fork`,
    /// `unknown-node`, …) and limits (`connection-limit`,
    /// `handshake-limit`, `handshake-timeout`).
    #[serde(default)]
    pub refusals_by_kind: std::collections::BTreeMap<String, u64>,
    /// Refusals of unauthenticated sources, aggregated per source; apart
    /// from `recent_refusals` so they never push a node's out.
    #[serde(default)]
    pub unauthenticated_refusals: Vec<SourceRefusalRecord>,
}

pub(crate) async fn revoke(
    hub: &Hub,
    serial: &str,
    at: Option<UnixMillis>,
    reason: String,
) -> anyhow::Result<RevokeReport> {
    let serial = crate::config::normalise_serial(serial);
    anyhow::ensure!(!serial.is_empty(), "a serial number is hex");
    let (revocation, closed) = hub
        .revoke(alpr_shared::cert::Revocation {
            serial,
            effective_at: at.unwrap_or_else(UnixMillis::now),
            reason,
        })
        .await?;
    Ok(RevokeReport { revocation, closed })
}

/// What `hub nodes` shows (and `hub health` checks).
pub fn nodes_report(hub: &Hub) -> NodesReport {
    let connected = hub.connected();
    // A failing database is reported, not an error: the report says why.
    // Identity conflicts are refusal records with their own code.
    let mut conflicts: HashMap<String, (u64, RefusalRecord)> = HashMap::new();
    for r in hub.storage.refusals(CONFLICT_SCAN).unwrap_or_default() {
        if r.code != RefusalCode::IdentityConflict.as_str() {
            continue;
        }
        if let Some(d) = r.device.clone() {
            let e = conflicts.entry(d).or_insert((0, r.clone()));
            e.0 += 1;
            e.1 = r;
        }
    }
    let policies: HashMap<String, u64> = hub
        .storage
        .node_policies()
        .unwrap_or_default()
        .into_iter()
        .map(|(d, v)| (d.to_string(), v))
        .collect();
    let mut hotlists: HashMap<String, Vec<(String, u64)>> = hub
        .storage
        .node_hotlists()
        .unwrap_or_default()
        .into_iter()
        .map(|(d, h)| (d.to_string(), h))
        .collect();
    let nodes = hub
        .storage
        .nodes()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, r)| {
            let (count, last) = conflicts
                .remove(name.as_str())
                .map_or((0, None), |(n, rec)| (n, Some(rec)));
            // Current while nothing newer than it happened, give or take
            // the node's retry: the other device may keep uploading.
            let current = last.filter(|c| {
                c.at.0.saturating_add(CONFLICT_CURRENT_MS) >= r.last_contact.0
                    || r.reported_size < r.next_seq
            });
            NodeRow {
                policy_version: policies.get(name.as_str()).copied(),
                hotlists: hotlists.remove(name.as_str()).unwrap_or_default(),
                connected: connected.contains(&name.to_string()),
                name: name.to_string(),
                last_contact: r.last_contact,
                acked: r.next_seq,
                backlog: current.is_none().then(|| r.backlog()),
                refusals: r.refusals,
                duplicates: r.duplicates,
                images: r.images,
                identity_conflicts: count,
                identity_conflict: current,
                certificates: hub
                    .storage
                    .certificates(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| CertRow {
                        serial: c.serial,
                        first_seen: c.first_seen,
                        effective_from: c.effective_from,
                    })
                    .collect(),
            }
        })
        .collect();
    NodesReport {
        nodes,
        recent_refusals: hub.storage.refusals(50).unwrap_or_default(),
        storage_error: hub.health.storage_error(),
        disk_free: hub.health.disk_free(),
        problems: hub.health.problems(),
        entries_stored: Metrics::get(&hub.metrics.entries_stored),
        refusals: Metrics::get(&hub.metrics.refusals),
        refused_handshakes: Metrics::get(&hub.metrics.refused_handshakes),
        refusals_by_kind: hub.metrics.refusals_by_kind(),
        unauthenticated_refusals: hub.storage.source_refusals(50).unwrap_or_default(),
    }
}

/// The routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/nodes", get(get_nodes))
        .route("/api/v1/revoke", post(post_revoke))
}

pub(crate) async fn get_nodes(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<NodesReport>, ApiError> {
    caller.require(Permission::ViewNodes)?;
    Ok(Json(nodes_report(&state.hub)))
}

pub(crate) async fn post_revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<RevokeRequest>,
) -> Result<Json<RevokeReport>, ApiError> {
    caller.require(Permission::Revoke)?;
    state
        .access
        .record(caller.record(
            AccessAction::UserAdmin,
            format!("revoke serial={} reason={}", req.serial, req.reason),
        ))
        .await?;
    revoke(&state.hub, &req.serial, req.at, req.reason)
        .await
        .map(Json)
        .map_err(|e| ApiError::BadRequest(format!("{e:#}")))
}
