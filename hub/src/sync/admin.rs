//! The hub's administrative API on its QUIC endpoint (ALPN `alpr-admin/1`).
//! Commands such as `hub nodes` ask the running hub rather than opening its
//! database. For now the only caller allowed is the hub's own identity
//! (operator logins come with the accountability work).

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

const MAX_REQUEST: usize = 64 * 1024;
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Nodes with last contact, acknowledged sequence, backlog, refusals.
    Nodes,
    /// One page of a node's stored log, for an audit ([`NodeLogPage`]).
    NodeLog { node: String, from: u64, limit: u32 },
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
    /// The latest checkpoint the node signed (postcard [`SignedCheckpoint`]).
    ///
    /// [`SignedCheckpoint`]: alpr_shared::log::SignedCheckpoint
    pub checkpoints: Vec<String>,
    /// The hub holds entries `0..acked`.
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
    pub backlog: u64,
    pub refusals: u64,
    pub duplicates: u64,
    pub images: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesReport {
    pub nodes: Vec<NodeRow>,
    /// The most recent refusals, oldest first.
    pub recent_refusals: Vec<RefusalRecord>,
    pub entries_stored: u64,
    pub refusals: u64,
    pub refused_handshakes: u64,
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
            Ok(AdminRequest::NodeLog { node, from, limit }) => {
                node_log_page(&hub, &node, from, limit).map(|r| serde_json::to_vec(&r))
            }
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

fn nodes_report(hub: &Hub) -> anyhow::Result<NodesReport> {
    let connected: Vec<String> = hub
        .connections
        .lock()
        .map(|m| m.keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    let nodes = hub
        .storage
        .nodes()?
        .into_iter()
        .map(|(name, r)| NodeRow {
            connected: connected.contains(&name.to_string()),
            name: name.to_string(),
            last_contact: r.last_contact,
            acked: r.next_seq,
            backlog: r.backlog(),
            refusals: r.refusals,
            duplicates: r.duplicates,
            images: r.images,
        })
        .collect();
    Ok(NodesReport {
        nodes,
        recent_refusals: hub.storage.refusals(50)?,
        entries_stored: Metrics::get(&hub.metrics.entries_stored),
        refusals: Metrics::get(&hub.metrics.refusals),
        refused_handshakes: Metrics::get(&hub.metrics.refused_handshakes),
        refusals_by_kind: hub.metrics.refusals_by_kind(),
        unauthenticated_refusals: hub.storage.source_refusals(50)?,
    })
}

fn node_log_page(hub: &Hub, node: &str, from: u64, limit: u32) -> anyhow::Result<NodeLogPage> {
    let device = alpr_shared::types::DeviceId::new(node)?;
    let rec = hub
        .storage
        .node(&device)?
        .with_context(|| format!("no node {node}"))?;
    let limit = limit.clamp(1, MAX_LOG_PAGE) as usize;
    let entries = hub.storage.entries(&device, from, limit)?;
    let end = from.saturating_add(entries.len() as u64);
    Ok(NodeLogPage {
        node: node.to_owned(),
        certificate: hub.storage.certificate(&device)?.map(hex::encode),
        checkpoints: hub
            .storage
            .checkpoint(&device)?
            .map(|c| hex::encode(c.encode()))
            .into_iter()
            .collect(),
        acked: rec.next_seq,
        next: (entries.len() == limit && end < rec.next_seq).then_some(end),
        entries: entries.into_iter().map(hex::encode).collect(),
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
        let key = std::fs::read(&config.key)
            .with_context(|| format!("reading {}", config.key.display()))?;
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
