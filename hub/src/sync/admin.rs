//! The hub's administrative API on its QUIC endpoint (ALPN `alpr-admin/1`).
//! Commands such as `hub nodes` ask the running hub rather than opening its
//! database. For now the only caller allowed is the hub's own identity
//! (operator logins come with the accountability work).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use alpr_shared::types::UnixMillis;
use alpr_shared::wire::quic;
use alpr_shared::wire::{RefusalCode, ADMIN_ALPN};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Hub;
use crate::config::HubConfig;
use crate::ingest::Metrics;
use crate::store::{RefusalRecord, SourceRefusalRecord};

/// A request may carry a bundle manifest (hex).
const MAX_REQUEST: usize = 2 * alpr_shared::log::bundle::MAX_MANIFEST_BYTES + 4096;
/// Refusal records searched for identity conflicts by `hub nodes`.
const CONFLICT_SCAN: usize = 10_000;
/// An identity conflict counts as current this long after the node's
/// last contact (a node in conflict checks again every backoff cap).
const CONFLICT_CURRENT_MS: u64 = 5 * 60 * 1000;
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Nodes with last contact, acknowledged sequence, backlog, refusals.
    Nodes,
    /// One page of a node's stored log, for an audit ([`NodeLogPage`]).
    /// Without `size`, the page fixes a snapshot of the log (its size,
    /// checkpoint and certificates); later pages give that `size` and
    /// serve nothing beyond it, so a log still growing reads consistently.
    NodeLog {
        node: String,
        from: u64,
        limit: u32,
        #[serde(default)]
        size: Option<u64>,
    },
    /// Sign a bundle manifest (hex of its postcard encoding) with the hub's
    /// key, which never leaves the hub ([`SignedManifestReply`]).
    SignManifest { manifest: String },
    /// Reads of a node whose images the hub lacks ([`MissingImagesReport`]).
    MissingImages { node: String },
    /// Revoke a node certificate from `at` (now if absent); closes the
    /// live connection that authenticated with it ([`RevokeReport`]).
    Revoke {
        serial: String,
        at: Option<UnixMillis>,
        reason: String,
    },
}

/// The hub's signature over a bundle manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedManifestReply {
    /// Hex of the postcard [`alpr_shared::log::bundle::SignedManifest`].
    pub signed: String,
    /// The hub's certificate (DER, hex), whose key signed.
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

/// Most missing images one [`AdminRequest::MissingImages`] lists.
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

/// The answer to [`AdminRequest::Revoke`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeReport {
    /// As recorded (an earlier revocation of the same serial wins).
    pub revocation: alpr_shared::cert::Revocation,
    /// Nodes whose connection was closed.
    pub closed: Vec<String>,
}

/// Most entries one [`AdminRequest::NodeLog`] page holds.
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
    /// `handshake-limit`, `handshake-timeout`, `wrong-protocol`).
    #[serde(default)]
    pub refusals_by_kind: std::collections::BTreeMap<String, u64>,
    /// Refusals of unauthenticated sources, aggregated per source; apart
    /// from `recent_refusals` so they never push a node's out.
    #[serde(default)]
    pub unauthenticated_refusals: Vec<SourceRefusalRecord>,
}

pub(super) async fn serve(hub: Arc<Hub>, conn: quinn::Connection) {
    let peer = conn.remote_address();
    if quic::peer_certificate(&conn).as_deref() != Some(hub.hub_cert_der.as_slice()) {
        warn!(%peer, "admin connection without the hub's identity refused");
        conn.close(
            RefusalCode::UnknownNode.close_code().into(),
            b"admin API needs the hub identity",
        );
        return;
    }
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let req = match recv.read_to_end(MAX_REQUEST).await {
            Ok(b) => b,
            Err(_) => continue,
        };
        let reply = match serde_json::from_slice::<AdminRequest>(&req) {
            Ok(AdminRequest::Nodes) => nodes_report(&hub).map(|r| serde_json::to_vec(&r)),
            Ok(AdminRequest::NodeLog {
                node,
                from,
                limit,
                size,
            }) => node_log_page(&hub, &node, from, limit, size).map(|r| serde_json::to_vec(&r)),
            Ok(AdminRequest::SignManifest { manifest }) => {
                sign_manifest(&hub, &manifest).map(|r| serde_json::to_vec(&r))
            }
            Ok(AdminRequest::MissingImages { node }) => {
                missing_images(&hub, &node).map(|r| serde_json::to_vec(&r))
            }
            Ok(AdminRequest::Revoke { serial, at, reason }) => revoke(&hub, &serial, at, reason)
                .await
                .map(|r| serde_json::to_vec(&r)),
            Err(e) => Err(anyhow::anyhow!("bad request: {e}")),
        };
        match reply {
            Ok(Ok(bytes)) => {
                let _ = send.write_all(&bytes).await;
                let _ = send.finish();
            }
            Ok(Err(e)) => warn!(error = %e, "admin reply"),
            Err(e) => {
                warn!(error = %e, "admin request failed");
                let _ = send.reset(quic::STREAM_MALFORMED.into());
            }
        }
    }
}

async fn revoke(
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

fn nodes_report(hub: &Hub) -> anyhow::Result<NodesReport> {
    let connected: Vec<String> = hub
        .connections
        .lock()
        .map(|m| m.keys().map(ToString::to_string).collect())
        .unwrap_or_default();
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
    Ok(NodesReport {
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
    })
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
    let signed = m.sign(&hub.hub_key);
    Ok(SignedManifestReply {
        signed: hex::encode(signed.encode()),
        hub_certificate: hex::encode(&hub.hub_cert_der),
    })
}

/// How long a command waits for the hub to answer before saying it is
/// not running.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection to the running hub's admin API.
#[derive(Debug)]
pub struct AdminClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl AdminClient {
    /// Connect to the hub described by `config`, with its own identity.
    pub async fn connect(config: &HubConfig) -> anyhow::Result<Self> {
        let ca = std::fs::read(&config.ca_cert)
            .with_context(|| format!("reading {}", config.ca_cert.display()))?;
        let cert = std::fs::read(&config.cert)
            .with_context(|| format!("reading {}", config.cert.display()))?;
        let key = alpr_shared::private::read_key_file(&config.key)?;
        let liveness = quic::Liveness {
            keep_alive: config.keep_alive,
            idle_timeout: config.idle_timeout,
        };
        let client = quic::client_config(&ca, &cert, &key, ADMIN_ALPN, liveness)?;
        let mut target = config.listen;
        if target.ip().is_unspecified() {
            target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let bind: SocketAddr = if target.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(client);
        let connecting = endpoint.connect(target, "localhost")?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(c) => c.with_context(|| format!("connecting to the hub at {target}"))?,
            Err(_) => anyhow::bail!(
                "no answer from the hub at {target} within {} s: is `hub serve` running with this configuration?",
                CONNECT_TIMEOUT.as_secs()
            ),
        };
        Ok(AdminClient { endpoint, conn })
    }

    /// One request, one answer.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: &AdminRequest,
    ) -> anyhow::Result<T> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(&serde_json::to_vec(req)?).await?;
        send.finish()?;
        let bytes = recv
            .read_to_end(MAX_RESPONSE)
            .await
            .context("reading the hub's answer (is this the hub's own certificate?)")?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub async fn close(self) {
        self.conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// Ask the running hub described by `config` for its nodes.
pub async fn request(config: &HubConfig, req: &AdminRequest) -> anyhow::Result<NodesReport> {
    let client = AdminClient::connect(config).await?;
    let report = client.call(req).await;
    client.close().await;
    report
}
