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
use crate::store::RefusalRecord;

const MAX_REQUEST: usize = 64 * 1024;
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Nodes with last contact, acknowledged sequence, backlog, refusals.
    Nodes,
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
    })
}

/// Ask the running hub described by `config`.
pub async fn request(config: &HubConfig, req: &AdminRequest) -> anyhow::Result<NodesReport> {
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key =
        std::fs::read(&config.key).with_context(|| format!("reading {}", config.key.display()))?;
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
    let conn = endpoint
        .connect(target, "localhost")?
        .await
        .with_context(|| format!("connecting to the hub at {target}"))?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&serde_json::to_vec(req)?).await?;
    send.finish()?;
    let bytes = recv
        .read_to_end(MAX_RESPONSE)
        .await
        .context("reading the hub's answer (is this the hub's own certificate?)")?;
    conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
    endpoint.wait_idle().await;
    Ok(serde_json::from_slice(&bytes)?)
}
