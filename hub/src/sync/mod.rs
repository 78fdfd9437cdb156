//! The hub's QUIC driver around [`alpr_shared::sync::HubSession`]: accept
//! connections (with a limit), authenticate nodes by their certificate
//! (deployment CA, node rules, revocation), keep one connection per node,
//! and run each stream's frames through the session, the verifier and the
//! writer. Refusals are logged with their reason, counted, and stored.

pub mod admin;
pub mod limits;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::{DeviceCert, TrustAnchor};
use alpr_shared::crypto::SecretKey;
use alpr_shared::sync::{HubOutput, HubSession, Validity};
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::quic::{self, ReadFrameError};
use alpr_shared::wire::{Frame, Lane, Refusal, RefusalCode, ADMIN_ALPN, ALPN};
use anyhow::Context;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::config::{normalise_serial, HubConfig};
use crate::ingest::{Metrics, Pending, Writer, WriterConfig};
use crate::refusals::{self, kind, SourceRefusals};
use crate::store::redb::RedbStore;
use crate::store::{HubStorage, RefusalRecord, WriteOp, WriteResult};

/// Everything a connection task needs; shared by all of them.
pub struct Hub {
    pub storage: Arc<dyn HubStorage>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    anchor: TrustAnchor,
    hub_key: Arc<SecretKey>,
    hub_cert_der: Vec<u8>,
    revoked: HashSet<String>,
    connections: Mutex<HashMap<DeviceId, quinn::Connection>>,
    cancel: CancellationToken,
    /// Unauthenticated sources' refusals, aggregated before they are stored.
    pub sources: SourceRefusals,
    /// How long unauthenticated sources' refusals are kept.
    refusal_retention: std::time::Duration,
    /// Each node's share of the hub's memory and writer queue.
    pub budgets: limits::Budgets,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub(..)")
    }
}

impl Hub {
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

/// Run the hub until `cancel` fires: open the store, start the writer,
/// listen, and on shutdown stop accepting, close connections, and let the
/// writer commit what it holds.
pub async fn serve(
    config: HubConfig,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    limits::check(&config).context("hub configuration")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let storage: Arc<dyn HubStorage> = Arc::new(
        RedbStore::open_with_cache(&config.db_path(), config.db_cache_bytes)
            .context("opening the hub database")?,
    );
    let ca_pem = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert_pem = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key_pem =
        std::fs::read(&config.key).with_context(|| format!("reading {}", config.key.display()))?;
    let anchor = TrustAnchor::from_pem(&ca_pem).context("the CA certificate")?;
    let key_text = String::from_utf8(key_pem.clone()).context("hub key is not PEM text")?;
    let hub_key = Arc::new(SecretKey::from_pkcs8_pem(&key_text).context("the hub key")?);
    let hub_cert_der = alpr_shared::cert::pem_certificates(&cert_pem)
        .context("the hub certificate")?
        .into_iter()
        .next()
        .context("no hub certificate")?;
    let liveness = quic::Liveness {
        keep_alive: config.keep_alive,
        idle_timeout: config.idle_timeout,
    };
    let mut server =
        quic::server_config(&ca_pem, &cert_pem, &key_pem, &[ALPN, ADMIN_ALPN], liveness)?;
    quic::bound_receive(&mut server, liveness, limits::WINDOWS);
    let endpoint = quinn::Endpoint::server(server, config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = endpoint.local_addr()?;
    info!(%addr, "hub listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }

    let metrics = Arc::new(Metrics::default());
    let (writer, writer_thread) =
        Writer::spawn(storage.clone(), metrics.clone(), WriterConfig::default());
    let hub = Arc::new(Hub {
        storage,
        writer,
        metrics,
        anchor,
        hub_key,
        hub_cert_der,
        revoked: config.revoked.iter().map(|s| normalise_serial(s)).collect(),
        connections: Mutex::new(HashMap::new()),
        cancel: cancel.child_token(),
        sources: SourceRefusals::default(),
        refusal_retention: config.refusal_retention,
        budgets: limits::Budgets::new(&config),
    });
    // Handshakes take from their own budget, and only for as long as they
    // last; a node's permit is taken once it has authenticated, so peers
    // that never finish a handshake cannot lock enrolled nodes out.
    let handshakes = Arc::new(Semaphore::new(config.max_handshakes));
    let gate = Gate {
        nodes: Arc::new(Semaphore::new(config.max_connections)),
        handshake_timeout: config.handshake_timeout,
    };
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let hub = hub.clone();
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            let peer = incoming.remote_address();
            incoming.refuse();
            tasks.spawn(async move {
                let detail = "too many handshakes in progress";
                hub.refuse_as(None, peer, kind::HANDSHAKE_LIMIT, None, detail)
                    .await;
            });
            continue;
        };
        let gate = gate.clone();
        tasks.spawn(async move {
            handle_incoming(hub, incoming, handshake, gate).await;
        });
    }
    info!("shutting down: closing connections");
    endpoint.close(quic::CLOSE_SHUTDOWN.into(), b"hub shutting down");
    hub.cancel.cancel();
    tasks.close();
    tasks.wait().await;
    endpoint.wait_idle().await;
    drop(hub);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .ok();
    info!("hub stopped");
    Ok(())
}

/// The accept loop's limits on what passed the handshake.
#[derive(Clone)]
struct Gate {
    /// Permits of authenticated node connections (`max_connections`).
    nodes: Arc<Semaphore>,
    handshake_timeout: std::time::Duration,
}

async fn handle_incoming(
    hub: Arc<Hub>,
    incoming: quinn::Incoming,
    handshake: tokio::sync::OwnedSemaphorePermit,
    gate: Gate,
) {
    let peer = incoming.remote_address();
    let conn = match tokio::time::timeout(gate.handshake_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            drop(handshake);
            Metrics::add(&hub.metrics.refused_handshakes, 1);
            let detail = format!("TLS handshake failed: {e}");
            let code = RefusalCode::UnknownNode.as_str();
            hub.refuse_as(None, peer, code, None, &detail).await;
            return;
        }
        Err(_) => {
            // Dropping the handshake's future abandons the connection.
            drop(handshake);
            Metrics::add(&hub.metrics.refused_handshakes, 1);
            let detail = format!("handshake not finished within {:?}", gate.handshake_timeout);
            hub.refuse_as(None, peer, kind::HANDSHAKE_TIMEOUT, None, &detail)
                .await;
            return;
        }
    };
    drop(handshake);
    if quic::negotiated_alpn(&conn).as_deref() == Some(ADMIN_ALPN) {
        if quic::peer_certificate(&conn).as_deref() != Some(hub.hub_cert_der.as_slice()) {
            // A node's (or any other) certificate on the admin API.
            let device = quic::peer_certificate(&conn)
                .and_then(|der| hub.anchor.check_device_der(&der).ok())
                .map(|c| c.name);
            let detail = "the admin API needs the hub's identity";
            hub.refuse_as(device.as_ref(), peer, kind::WRONG_PROTOCOL, None, detail)
                .await;
            conn.close(
                RefusalCode::UnknownNode.close_code().into(),
                detail.as_bytes(),
            );
            return;
        }
        admin::serve(hub, conn).await;
        return;
    }
    let Some(der) = quic::peer_certificate(&conn) else {
        close_refused(
            &hub,
            &conn,
            None,
            peer,
            RefusalCode::UnknownNode,
            "no client certificate",
        )
        .await;
        return;
    };
    let cert = match hub.anchor.check_device_der(&der) {
        Ok(c) => c,
        Err(e) => {
            close_refused(
                &hub,
                &conn,
                None,
                peer,
                RefusalCode::UnknownNode,
                &e.to_string(),
            )
            .await;
            return;
        }
    };
    if hub.revoked.contains(&normalise_serial(&cert.serial)) {
        let detail = format!("certificate {} is revoked", cert.serial);
        close_refused(
            &hub,
            &conn,
            Some(&cert.name),
            peer,
            RefusalCode::Revoked,
            &detail,
        )
        .await;
        return;
    }
    let Ok(permit) = gate.nodes.clone().try_acquire_owned() else {
        let detail = "the hub's connection limit is reached";
        hub.refuse_as(Some(&cert.name), peer, kind::CONNECTION_LIMIT, None, detail)
            .await;
        conn.close(CLOSE_BUSY.into(), detail.as_bytes());
        return;
    };
    let span = tracing::info_span!("node", node = %cert.name);
    node_connection(hub, conn, cert, peer)
        .instrument(span)
        .await;
    drop(permit);
}

/// Connection close code: the hub is at its connection limit; try later.
pub const CLOSE_BUSY: u32 = 2;

async fn close_refused(
    hub: &Hub,
    conn: &quinn::Connection,
    device: Option<&DeviceId>,
    peer: SocketAddr,
    code: RefusalCode,
    detail: &str,
) {
    let r = Refusal {
        code,
        seq: None,
        detail: detail.to_owned(),
    };
    hub.refuse(device, peer, &r).await;
    conn.close(code.close_code().into(), detail.as_bytes());
}

async fn node_connection(
    hub: Arc<Hub>,
    conn: quinn::Connection,
    cert: DeviceCert,
    peer: SocketAddr,
) {
    let name = cert.name.clone();
    let replaced = hub
        .connections
        .lock()
        .ok()
        .and_then(|mut m| m.insert(name.clone(), conn.clone()));
    if let Some(old) = replaced {
        old.close(
            RefusalCode::Replaced.close_code().into(),
            b"a newer connection of this node",
        );
    }
    let progress = match hub.storage.node(&name) {
        Ok(r) => r.map(|r| r.progress()).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "reading the node's progress");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
    };
    info!(%peer, acked = progress.next_seq, "node connected");
    let session = Arc::new(Mutex::new(
        HubSession::new(name.clone(), cert.key, hub.hub_key.clone(), progress).with_validity(
            Validity {
                not_before: cert.not_before,
                not_after: cert.not_after,
            },
        ),
    ));
    let ctx = Arc::new(StreamCtx {
        budget: hub.budgets.node(&name),
        hub: hub.clone(),
        session,
        device: name.clone(),
        serial: cert.serial.clone(),
        cert_der: cert.der.clone(),
        peer,
    });
    let streams = tokio_util::task::TaskTracker::new();
    let reason = loop {
        tokio::select! {
            _ = hub.cancel.cancelled() => {
                conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub shutting down");
                break "hub shutting down".to_string();
            }
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    let ctx = ctx.clone();
                    streams.spawn(async move { ctx.run_stream(send, recv).await }.in_current_span());
                }
                Err(e) => break e.to_string(),
            }
        }
    };
    streams.close();
    streams.wait().await;
    if let Ok(mut m) = hub.connections.lock() {
        if m.get(&name)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            m.remove(&name);
        }
    }
    info!(%reason, "node disconnected");
}

struct StreamCtx {
    /// The node's share of the hub's memory and writer queue.
    budget: Arc<limits::NodeBudget>,
    hub: Arc<Hub>,
    session: Arc<Mutex<HubSession>>,
    device: DeviceId,
    serial: String,
    /// The certificate the node authenticated with, kept for audits.
    cert_der: Vec<u8>,
    peer: SocketAddr,
}

/// Frames of one stream whose writes are queued ahead of their commits: a
/// node's next batch is verified while the previous one is written.
pub const PIPELINE: usize = 4;

/// What the answering half of a stream does, in the order the frames came.
enum Job {
    Send(Frame),
    Refused(Refusal),
    /// Wait for this batch's commit, then acknowledge it (or refuse it).
    Ingest {
        pending: Pending,
        first: Option<u64>,
        count: usize,
    },
    /// Wait for this image's commit, then acknowledge it.
    Image {
        pending: Pending,
        seq: u64,
        hash: alpr_shared::types::Hash32,
    },
    /// The stream broke the protocol: refuse and reset it.
    Malformed(String),
}

impl StreamCtx {
    fn with_session<T>(&self, f: impl FnOnce(&mut HubSession) -> T) -> Option<T> {
        self.session.lock().ok().map(|mut s| f(&mut s))
    }

    /// One stream: its reading half verifies frames and queues their writes
    /// (at most [`PIPELINE`] ahead); its answering half waits for each
    /// commit in order and only then acknowledges.
    async fn run_stream(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let mut tag = [0u8; 1];
        if recv.read_exact(&mut tag).await.is_err() {
            return;
        }
        let Some(lane) = Lane::from_tag(tag[0]) else {
            self.malformed(&mut send, &mut recv, "unknown stream kind")
                .await;
            return;
        };
        let _ = send.set_priority(lane.priority());
        let (jobs, queue) = mpsc::channel::<Job>(PIPELINE);
        tokio::join!(
            self.read_half(lane, recv, jobs),
            self.answer_half(send, queue)
        );
    }

    async fn read_half(&self, lane: Lane, mut recv: quinn::RecvStream, jobs: mpsc::Sender<Job>) {
        loop {
            let (frame, hold) = match self.budget.read_frame(&mut recv, lane.max_frame()).await {
                Ok(f) => f,
                Err(ReadFrameError::Wire(e)) => {
                    let _ = recv.stop(quic::STREAM_MALFORMED.into());
                    let _ = jobs.send(Job::Malformed(e.to_string())).await;
                    return;
                }
                Err(_) => return,
            };
            if frame.lane() != lane && !matches!(frame, Frame::Ping { .. }) {
                let _ = recv.stop(quic::STREAM_MALFORMED.into());
                let _ = jobs
                    .send(Job::Malformed("frame on the wrong stream".into()))
                    .await;
                return;
            }
            let now = UnixMillis::now();
            let hello_size = match &frame {
                Frame::Hello(h) => Some(h.log_size),
                _ => None,
            };
            let Some(outs) = self.with_session(|s| s.handle_frame(frame, now)) else {
                return;
            };
            if let Some(size) = hello_size {
                let op = WriteOp::Contact {
                    device: self.device.clone(),
                    serial: self.serial.clone(),
                    cert_der: self.cert_der.clone(),
                    reported_size: size,
                    at: now,
                };
                if self.hub.writer.submit(op).await.is_err() {
                    return;
                }
            }
            // The frame's bytes stay reserved until its first write commits.
            let mut hold = Some(hold);
            for o in outs {
                let job = match o {
                    HubOutput::Send(f) => Job::Send(f),
                    HubOutput::Refused(r) => Job::Refused(r),
                    HubOutput::Ingest(batch) => {
                        let (first, count) =
                            (batch.entries.first().map(|v| v.seq()), batch.entries.len());
                        let op = WriteOp::Ingest {
                            device: self.device.clone(),
                            entries: batch.entries,
                            checkpoint: batch.checkpoint,
                            at: now,
                        };
                        let held = hold.take().unwrap_or_default();
                        let held = held.with(self.budget.op_slot().await).boxed();
                        let Ok(pending) = self.hub.writer.enqueue_holding(op, held).await else {
                            return;
                        };
                        Job::Ingest {
                            pending,
                            first,
                            count,
                        }
                    }
                    HubOutput::StoreImage { seq, image } => {
                        let hash = image.hash;
                        let op = WriteOp::Image {
                            device: self.device.clone(),
                            seq,
                            hash,
                            bytes: image.bytes,
                        };
                        let held = hold.take().unwrap_or_default();
                        let held = held.with(self.budget.op_slot().await).boxed();
                        let Ok(pending) = self.hub.writer.enqueue_holding(op, held).await else {
                            return;
                        };
                        Job::Image { pending, seq, hash }
                    }
                };
                if jobs.send(job).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn answer_half(&self, mut send: quinn::SendStream, mut queue: mpsc::Receiver<Job>) {
        while let Some(job) = queue.recv().await {
            let outs = match job {
                Job::Send(f) => vec![HubOutput::Send(f)],
                Job::Refused(r) => vec![HubOutput::Refused(r)],
                Job::Malformed(detail) => {
                    self.refuse_malformed(&detail).await;
                    let _ = send.reset(quic::STREAM_MALFORMED.into());
                    return;
                }
                Job::Ingest {
                    pending,
                    first,
                    count,
                } => {
                    let res = match pending.committed().await {
                        Ok(WriteResult::Ingested(r)) => r,
                        Ok(other) => {
                            tracing::error!(
                                ?other,
                                "the writer answered an ingest with something else"
                            );
                            return;
                        }
                        Err(e) => {
                            warn!(error = %e, "batch not stored; not acknowledged");
                            return;
                        }
                    };
                    if let Ok(i) = &res {
                        if i.duplicates > 0 {
                            warn!(
                                first_seq = first,
                                count,
                                duplicates = i.duplicates,
                                "replayed entries ignored: already stored"
                            );
                        }
                    }
                    let now = UnixMillis::now();
                    match self.with_session(|s| s.ingested(res.map(|i| i.progress), now)) {
                        Some(outs) => outs,
                        None => return,
                    }
                }
                Job::Image { pending, seq, hash } => match pending.committed().await {
                    Ok(WriteResult::Image(true)) => {
                        match self.with_session(|s| s.image_stored(hash)) {
                            Some(outs) => outs,
                            None => return,
                        }
                    }
                    Ok(_) => {
                        let r = Refusal {
                            code: RefusalCode::Malformed,
                            seq: Some(seq),
                            detail: "image not named by that entry".into(),
                        };
                        vec![
                            HubOutput::Send(Frame::Refused(r.clone())),
                            HubOutput::Refused(r),
                        ]
                    }
                    Err(e) => {
                        warn!(error = %e, "image not stored; not acknowledged");
                        return;
                    }
                },
            };
            for o in outs {
                match o {
                    HubOutput::Send(f) => {
                        if quic::write_frame(&mut send, &f).await.is_err() {
                            return;
                        }
                    }
                    HubOutput::Refused(r) => {
                        self.hub.refuse(Some(&self.device), self.peer, &r).await
                    }
                    // The session asks for writes only in answer to frames.
                    HubOutput::Ingest(_) | HubOutput::StoreImage { .. } => {}
                }
            }
        }
    }

    async fn malformed(
        &self,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
        detail: &str,
    ) {
        self.refuse_malformed(detail).await;
        let _ = recv.stop(quic::STREAM_MALFORMED.into());
        let _ = send.reset(quic::STREAM_MALFORMED.into());
    }

    /// Log, count and record a malformed frame from this node.
    async fn refuse_malformed(&self, detail: &str) {
        let r = Refusal {
            code: RefusalCode::Malformed,
            seq: None,
            detail: format!("{detail}; closing the stream"),
        };
        self.hub.refuse(Some(&self.device), self.peer, &r).await;
    }
}
