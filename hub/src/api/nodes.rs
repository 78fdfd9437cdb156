//! Routes about nodes and their logs, moved from the QUIC admin protocol
//! (the QUIC port is for nodes only):
//!
//! - `GET  /api/v1/nodes` — nodes report ([`Permission::ViewNodes`]);
//! - `GET  /api/v1/nodes/{node}/log?from=&limit=&size=` — a page of a
//!   node's stored log, for an audit ([`Permission::VerifyLogs`]);
//! - `GET  /api/v1/nodes/{node}/missing-images` ([`Permission::VerifyLogs`]);
//! - `POST /api/v1/bundle/sign` — the hub signs a bundle manifest with its
//!   key, which never leaves it ([`Permission::VerifyLogs`]);
//! - `POST /api/v1/revoke` — revoke a node certificate
//!   ([`Permission::Revoke`]).
//!
//! Reading logs is itself an access (an audit query) and is recorded
//! before the answer.

use std::collections::HashMap;

use alpr_shared::log::AccessAction;
use alpr_shared::types::UnixMillis;
use alpr_shared::wire::RefusalCode;
use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::ingest::Metrics;
use crate::store::{RefusalRecord, SourceRefusalRecord};
use crate::sync::Hub;
use crate::users::{Caller, Permission};

/// Refusal records searched for identity conflicts by `hub nodes`.
const CONFLICT_SCAN: usize = 10_000;
/// An identity conflict counts as current this long after the node's
/// last contact (a node in conflict checks again every backoff cap).
const CONFLICT_CURRENT_MS: u64 = 5 * 60 * 1000;

/// A request for one page of a node's log. Without `size`, the page fixes
/// a snapshot of the log (its size, checkpoint and certificates); later
/// pages give that `size` and serve nothing beyond it, so a log still
/// growing reads consistently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLogQuery {
    pub from: u64,
    pub limit: u32,
    #[serde(default)]
    pub size: Option<u64>,
}

/// A bundle manifest to sign (hex of its postcard encoding).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignManifestRequest {
    pub manifest: String,
}

/// Revoke a node certificate from `at` (now if absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub serial: String,
    pub at: Option<UnixMillis>,
    pub reason: String,
}

/// The hub's signature over a bundle manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedManifestReply {
    /// Hex of the postcard [`alpr_shared::log::bundle::SignedManifest`].
    pub signed: String,
    /// The certificate (DER, hex) of the hub's export key, which signed.
    pub hub_certificate: String,
}

/// A certificate a node has held, as served to an auditor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServedCert {
    pub serial: String,
    /// DER, hex.
    pub der: String,
    /// The first sequence number it signed; `None` while it vouches for
    /// nothing yet (the node has not proved it extends the same log).
    pub effective_from: Option<u64>,
}

/// Most missing images one request lists.
pub const MAX_MISSING_LISTED: usize = 100_000;

/// Reads of one node whose images the hub does not hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MissingImagesReport {
    pub node: String,
    /// Distinct reads (sequence numbers) with at least one image missing.
    pub reads: u64,
    /// Images missing (capped at [`MAX_MISSING_LISTED`]).
    pub images: u64,
    /// The first few, (entry seq, image hash hex).
    pub first: Vec<(u64, String)>,
}

/// The answer to a revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeReport {
    /// As recorded (an earlier revocation of the same serial wins).
    pub revocation: alpr_shared::cert::Revocation,
    /// Nodes whose connection was closed.
    pub closed: Vec<String>,
}

/// Most entries one log page holds.
pub const MAX_LOG_PAGE: u32 = 4096;

/// A page of a node's log as the hub holds it: what an auditor needs to
/// re-verify it from the CA certificate alone. Bytes are hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLogPage {
    pub node: String,
    /// The DER certificate the node last connected with.
    pub certificate: Option<String>,
    /// Every certificate the node has held, oldest first (snapshot pages).
    #[serde(default)]
    pub certificates: Vec<ServedCert>,
    /// The deployment's revocations (snapshot pages).
    #[serde(default)]
    pub revocations: Vec<alpr_shared::cert::Revocation>,
    /// The latest checkpoint the node signed (postcard [`SignedCheckpoint`]).
    ///
    /// [`SignedCheckpoint`]: alpr_shared::log::SignedCheckpoint
    pub checkpoints: Vec<String>,
    /// The snapshot holds entries `0..acked`.
    pub acked: u64,
    /// Canonical entries from the requested sequence number, in order.
    pub entries: Vec<String>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<u64>,
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

fn missing_images(hub: &Hub, node: &str) -> anyhow::Result<MissingImagesReport> {
    let device = alpr_shared::types::DeviceId::new(node)?;
    let held = hub.storage.node(&device)?.map_or(0, |r| r.next_seq);
    let m = hub
        .storage
        .missing_images(&device, 0, held, MAX_MISSING_LISTED)?;
    let mut seqs: Vec<u64> = m.images.iter().map(|(s, _)| *s).collect();
    seqs.dedup();
    Ok(MissingImagesReport {
        node: node.to_owned(),
        reads: seqs.len() as u64,
        images: m.images.len() as u64,
        first: m
            .images
            .iter()
            .take(10)
            .map(|(s, h)| (*s, h.to_hex()))
            .collect(),
    })
}

fn node_log_page(
    hub: &Hub,
    node: &str,
    from: u64,
    limit: u32,
    size: Option<u64>,
) -> anyhow::Result<NodeLogPage> {
    let device = alpr_shared::types::DeviceId::new(node)?;
    let limit = limit.clamp(1, MAX_LOG_PAGE) as usize;
    let mut page = NodeLogPage {
        node: node.to_owned(),
        certificate: None,
        certificates: Vec::new(),
        revocations: Vec::new(),
        checkpoints: Vec::new(),
        acked: 0,
        entries: Vec::new(),
        next: None,
    };
    let size = match size {
        Some(size) => size,
        None => {
            // The snapshot. The log is append-only and a checkpoint is
            // stored in the same transaction as the entries it covers, so
            // reading the checkpoint first, then the size, then the
            // certificates gives a consistent view without holding one
            // read transaction across pages: every entry below the size,
            // and every certificate that signed them, is already there.
            let checkpoint = hub.storage.checkpoint(&device)?;
            let rec = hub
                .storage
                .node(&device)?
                .with_context(|| format!("no node {node}"))?;
            page.certificate = hub.storage.certificate(&device)?.map(hex::encode);
            page.certificates = hub
                .storage
                .certificates(&device)?
                .into_iter()
                .map(|c| ServedCert {
                    serial: c.serial,
                    der: hex::encode(c.der),
                    effective_from: c.effective_from,
                })
                .collect();
            page.revocations = hub.storage.revocations()?;
            page.checkpoints = checkpoint
                .map(|c| hex::encode(c.encode()))
                .into_iter()
                .collect();
            rec.next_seq
        }
    };
    let want = usize::try_from(size.saturating_sub(from))
        .unwrap_or(usize::MAX)
        .min(limit);
    // A signed loss leaves a hole in the sequence numbers: serve nothing
    // at or past the snapshot's size, and continue after the last entry
    // served (not after the count).
    let mut entries = if want == 0 {
        Vec::new()
    } else {
        hub.storage.entries(&device, from, want)?
    };
    let seq_of = |b: &Vec<u8>| alpr_shared::log::SignedEntry::decode(b).map(|e| e.seq());
    while entries
        .last()
        .is_some_and(|b| seq_of(b).is_ok_and(|s| s >= size))
    {
        entries.pop();
    }
    let end = entries
        .last()
        .and_then(|b| seq_of(b).ok())
        .map_or(from.saturating_add(entries.len() as u64), |s| s + 1);
    page.acked = size;
    page.next = (!entries.is_empty() && end < size).then_some(end);
    page.entries = entries.into_iter().map(hex::encode).collect();
    Ok(page)
}

fn sign_manifest(hub: &Hub, manifest: &str) -> anyhow::Result<SignedManifestReply> {
    use alpr_shared::log::bundle::Manifest;
    let bytes = hex::decode(manifest).context("manifest is not hex")?;
    let m = Manifest::decode(&bytes).context("not a bundle manifest")?;
    tracing::info!(
        nodes = m.nodes.len(),
        records = m.records,
        "signing an evidence bundle manifest"
    );
    let signed = m.sign(&hub.keys.export);
    Ok(SignedManifestReply {
        signed: hex::encode(signed.encode()),
        hub_certificate: hex::encode(hub.keys.export.cert_der()),
    })
}

/// The routes of this module.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/nodes", get(get_nodes))
        .route("/api/v1/nodes/{node}/log", get(get_node_log))
        .route(
            "/api/v1/nodes/{node}/missing-images",
            get(get_missing_images),
        )
        .route("/api/v1/bundle/sign", post(post_sign_manifest))
        .route("/api/v1/revoke", post(post_revoke))
}

pub(crate) async fn get_nodes(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<NodesReport>, ApiError> {
    caller.require(Permission::ViewNodes)?;
    Ok(Json(nodes_report(&state.hub)))
}

pub(crate) async fn get_node_log(
    State(state): State<ApiState>,
    caller: Caller,
    Path(node): Path<String>,
    Query(q): Query<NodeLogQuery>,
) -> Result<Json<NodeLogPage>, ApiError> {
    caller.require(Permission::VerifyLogs)?;
    if q.size.is_none() {
        // The first page of each node's log is one audit access.
        state
            .access
            .record(caller.record(
                AccessAction::AuditQuery,
                format!("audit verify node={node}"),
            ))
            .await?;
    }
    let hub = state.hub.clone();
    let page =
        tokio::task::spawn_blocking(move || node_log_page(&hub, &node, q.from, q.limit, q.size))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?;
    Ok(Json(page))
}

pub(crate) async fn get_missing_images(
    State(state): State<ApiState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<MissingImagesReport>, ApiError> {
    caller.require(Permission::VerifyLogs)?;
    let hub = state.hub.clone();
    let r = tokio::task::spawn_blocking(move || missing_images(&hub, &node))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?;
    Ok(Json(r))
}

pub(crate) async fn post_sign_manifest(
    State(state): State<ApiState>,
    caller: Caller,
    Json(req): Json<SignManifestRequest>,
) -> Result<Json<SignedManifestReply>, ApiError> {
    caller.require(Permission::VerifyLogs)?;
    state
        .access
        .record(caller.record(
            AccessAction::Export,
            "audit verify --export (bundle manifest signed)",
        ))
        .await?;
    sign_manifest(&state.hub, &req.manifest)
        .map(Json)
        .map_err(|e| ApiError::BadRequest(format!("{e:#}")))
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
