//! The hub's QUIC driver around [`alpr_shared::sync::HubSession`]: accept
//! connections (with a limit), authenticate nodes by their certificate
//! (deployment CA, node rules, revocation), keep one connection per node,
//! and run each stream's frames through the session, the verifier and the
//! writer. Refusals are logged with their reason, counted, and stored.

pub mod follow;
mod held;
pub mod hotlists;
pub mod limits;
pub mod push_bench;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_shared::cert::{DeviceCert, Revocation, TrustAnchor};
use alpr_shared::sync::{HubOutput, HubSession, NodeKey, NodeKeys, Validity};
use alpr_shared::types::{DeviceId, UnixMillis};
use alpr_shared::wire::quic::{self, ReadFrameError};
use alpr_shared::wire::{Frame, Lane, Refusal, RefusalCode, ALPN};
use anyhow::Context;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::config::{normalise_serial, HubConfig};
use crate::ingest::{Metrics, Pending, Writer, WriterConfig};
use crate::refusals::{self, kind, SourceRefusals};
use crate::store::{HubStorage, RefusalRecord, WriteOp, WriteResult};

/// Everything a connection task needs; shared by all of them.
pub struct Hub {
    pub storage: Arc<dyn HubStorage>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    /// Refusals by kind, the database's state.
    pub health: Arc<crate::health::HubHealth>,
    anchor: TrustAnchor,
    /// The hub's signing keys (one per purpose) and certificates.
    pub(crate) keys: crate::keys::HubKeys,
    /// Revocations by serial (also kept in the store).
    revoked: Mutex<HashMap<String, Revocation>>,
    connections: Mutex<HashMap<DeviceId, Live>>,
    /// Frames being verified at once, at most: one per core, so signature
    /// checks of many connections do not crowd out the writer's thread.
    pub verify_slots: Arc<Semaphore>,
    /// Entries admitted (being verified, queued or committed) at once, at
    /// most ([`ADMITTED_ENTRIES`]): beyond it frames wait in their streams,
    /// so what is admitted is acknowledged promptly.
    pub admission: Arc<Semaphore>,
    /// When each node's connections replaced one another lately: two live
    /// devices with one certificate keep doing it.
    replacements: Mutex<HashMap<DeviceId, VecDeque<Instant>>>,
    cancel: CancellationToken,
    /// Unauthenticated sources' refusals, aggregated before they are stored.
    pub sources: SourceRefusals,
    /// How long unauthenticated sources' refusals are kept.
    refusal_retention: std::time::Duration,
    /// Each node's share of the hub's memory and writer queue.
    pub budgets: limits::Budgets,
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

/// This many replacements of one identity's connection within
/// [`REPLACEMENT_WINDOW`] mean two devices share it.
pub const REPLACEMENTS_FOR_CONFLICT: usize = 3;
pub const REPLACEMENT_WINDOW: Duration = Duration::from_secs(60);

/// Entries the hub admits at once, over all connections. Ingest is bound
/// by signature checks, not by the writer, so a short queue costs no
/// throughput (`hub bench ingest --admit N`: 4k to 32k gave the same
/// reads/s) and keeps the acknowledgement of an admitted frame prompt.
pub const ADMITTED_ENTRIES: usize = 4_096;

/// A node's live connection.
struct Live {
    conn: quinn::Connection,
    /// The serial of the certificate it authenticated with.
    serial: String,
    session: Arc<Mutex<HubSession>>,
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

    /// Cancelled when the hub shuts down: an answer that streams until
    /// then (the console's live alerts) ends, so the API can stop.
    pub fn shutdown(&self) -> CancellationToken {
        self.cancel.child_token()
    }
}

impl Hub {
    /// Nodes connected now.
    pub fn connected_count(&self) -> usize {
        self.connections.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// When `serial` was revoked, if it is.
    fn revoked_at(&self, serial: &str) -> Option<UnixMillis> {
        self.revoked
            .lock()
            .ok()
            .and_then(|m| m.get(&normalise_serial(serial)).map(|r| r.effective_at))
    }

    /// Names of the nodes connected now.
    pub fn connected(&self) -> Vec<String> {
        self.connections
            .lock()
            .map(|m| m.keys().map(ToString::to_string).collect())
            .unwrap_or_default()
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
    fn revocation_is_new(&self, r: &Revocation) -> bool {
        self.revoked.lock().is_ok_and(|m| {
            m.get(&r.serial)
                .is_none_or(|known| r.effective_at < known.effective_at)
        })
    }

    /// Apply a revocation in memory (the earliest time wins): live
    /// sessions refuse what it covers, and the connections that
    /// authenticated with that certificate close once it is in effect.
    /// Returns the revocation as it now stands and the nodes closed.
    async fn apply_revocation(&self, r: Revocation) -> anyhow::Result<(Revocation, Vec<String>)> {
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
        let now = UnixMillis::now();
        let mut closed = Vec::new();
        let live: Vec<(DeviceId, quinn::Connection, String, Arc<Mutex<HubSession>>)> = self
            .connections
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(d, l)| {
                        (
                            d.clone(),
                            l.conn.clone(),
                            l.serial.clone(),
                            l.session.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (device, conn, serial, session) in live {
            if let Ok(mut s) = session.lock() {
                s.revoke(&recorded.serial, recorded.effective_at);
            }
            if normalise_serial(&serial) == recorded.serial && recorded.effective_at <= now {
                warn!(node = %device, serial = %recorded.serial, reason = %recorded.reason, "certificate revoked: closing the node's connection");
                let r = Refusal {
                    code: RefusalCode::Revoked,
                    seq: None,
                    detail: format!(
                        "certificate {} revoked from {} ({}); connection closed",
                        recorded.serial, recorded.effective_at, recorded.reason
                    ),
                };
                conn.close(
                    RefusalCode::Revoked.close_code().into(),
                    r.detail.as_bytes(),
                );
                self.refuse(Some(&device), conn.remote_address(), &r).await;
                closed.push(device.to_string());
            }
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

/// Run the hub until `cancel` fires: open the store, start the writer,
/// listen, and on shutdown stop accepting, close connections, and let the
/// writer commit what it holds.
pub async fn serve(
    config: HubConfig,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    config.check_ca_key_apart()?;
    limits::check(&config).context("hub configuration")?;
    alpr_shared::private::create_private_dir(&config.data_dir)?;
    let (storage, recovering) = config.open_storage()?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            alpr_shared::metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint on {addr}"))?,
        ),
        None => None,
    };
    let ca_pem = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert_pem = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key_pem = alpr_shared::private::read_key_file(&config.key)?;
    let anchor = TrustAnchor::from_pem(&ca_pem).context("the CA certificate")?;
    let (keys, log_key) = crate::keys::load(&config, &anchor)?;
    let liveness = quic::Liveness {
        keep_alive: config.keep_alive,
        idle_timeout: config.idle_timeout,
    };
    // The API for people is bound before the hub says it listens, so a
    // command run right after finds it.
    let api_listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("binding the API on {}", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let api_tls = {
        let (cert, key) = config.api_tls_files();
        let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key = alpr_shared::private::read_key_file(key)?;
        crate::api::tls_config(&cert, &key)?
    };
    let mut server = quic::server_config(&ca_pem, &cert_pem, &key_pem, &[ALPN], liveness)?;
    quic::bound_receive(&mut server, liveness, limits::WINDOWS);
    let endpoint = quinn::Endpoint::server(server, config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = endpoint.local_addr()?;

    // Revocations from the configuration join those recorded: a bare
    // serial takes effect when first loaded, a table at its time.
    let now = UnixMillis::now();
    let mut revoked: HashMap<String, Revocation> = storage
        .revocations()
        .context("reading revocations")?
        .into_iter()
        .map(|r| (r.serial.clone(), r))
        .collect();
    let mut new_revocations = Vec::new();
    for entry in &config.revoked {
        let serial = entry.serial();
        let at = entry.at()?;
        let known = revoked.get(&serial).map(|r| r.effective_at);
        if known.is_none() || at.is_some_and(|t| Some(t) < known) {
            let r = Revocation {
                serial: serial.clone(),
                effective_at: at.unwrap_or(now),
                reason: entry.reason(),
            };
            revoked.insert(serial, r.clone());
            new_revocations.push(WriteOp::Revoke(r));
        }
    }
    if !new_revocations.is_empty() {
        storage
            .commit(new_revocations)
            .context("recording the configured revocations")?;
    }

    let policy = crate::policy::PolicyService::open(
        storage.clone(),
        keys.policy.clone(),
        anchor.clone(),
        &config.policy,
        Vec::new(),
    )
    .context("the hub's policy ([policy] in hub.toml)")?;
    policy
        .set_revocations(revoked.values().cloned().collect())
        .await
        .context("putting the revocations in the policy")?;
    info!(version = policy.current().version(), "policy in force");
    let holds = crate::holds::HoldsService::open(storage.clone()).context("the legal holds")?;
    info!(active = holds.active().len(), "legal holds loaded");
    let hotlists = crate::hotlist::HotlistService::open(
        storage.clone(),
        crate::hotlist::HotlistKeys {
            key: keys.hotlist.clone(),
            anchor: anchor.clone(),
            legacy: Some(keys.tls_public),
        },
        config.hotlist.clone(),
    )
    .context("the hotlists ([hotlist] in hub.toml)")?;
    info!(
        lists = hotlists.current().len(),
        "hotlist generations loaded"
    );
    let local_entries = crate::hotlist::local::LocalEntriesService::open(storage.clone())
        .context("the local hotlist entries")?;
    info!(
        entries = local_entries.entries().len(),
        "local hotlist entries loaded"
    );

    // The hub's own access log, signed with its log key under that key's
    // certificate's name; users and sessions; the API for people.
    let access = crate::access::AccessLog::start(storage.clone(), log_key)
        .context("starting the access log")?;
    let users = Arc::new(
        crate::users::Users::new(storage.clone(), access.clone(), config.users())
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let node_writes = crate::node_writes::NodeWrites::new(access.clone(), users.clone());

    let metrics = Arc::new(Metrics::default());
    let (writer, writer_thread) =
        Writer::spawn(storage.clone(), metrics.clone(), WriterConfig::default());
    let hub = Arc::new(Hub {
        storage,
        writer,
        metrics,
        health: Arc::new(crate::health::HubHealth::new(recovering)),
        anchor,
        keys,
        revoked: Mutex::new(revoked),
        connections: Mutex::new(HashMap::new()),
        replacements: Mutex::new(HashMap::new()),
        verify_slots: Arc::new(Semaphore::new(verify_slots())),
        admission: Arc::new(Semaphore::new(ADMITTED_ENTRIES)),
        cancel: cancel.child_token(),
        sources: SourceRefusals::default(),
        refusal_retention: config.refusal_retention,
        budgets: limits::Budgets::new(&config),
        policy,
        holds,
        local_entries,
        hotlists,
        node_writes,
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
    if let Some(listener) = metrics_listener {
        info!(addr = %listener.local_addr()?, "metrics endpoint listening");
        let exporter = Arc::new(crate::health::HubExporter(hub.clone()));
        let cancel = hub.cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = alpr_shared::metrics::serve(listener, exporter, cancel).await {
                warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    if users.prepare_bootstrap(&config.data_dir, api_addr)? {
        info!(
            file = %config.data_dir.join(crate::users::BOOTSTRAP_FILE).display(),
            "no users yet: run `hub bootstrap` on this machine to create the first administrator"
        );
    }
    let seeded = config
        .policy
        .seeded_officers()
        .context("the officers in [policy]")?;
    // Other hub processes on the same database: their changes to the
    // shared documents reach this one's nodes and people.
    if let Some(changes) = hub.storage.watch_changes() {
        tokio::spawn(follow::follow(
            hub.clone(),
            users.clone(),
            changes,
            cancel.child_token(),
        ));
    }
    tokio::spawn(crate::policy::officers::follow_users(
        users.clone(),
        hub.policy.clone(),
        seeded,
        cancel.child_token(),
    ));
    // Local hotlist entries removed or expired, and legal holds released,
    // longer than the grace period leave their documents: at start, then
    // hourly.
    {
        let local = hub.local_entries.clone();
        let holds = hub.holds.clone();
        let stop = cancel.child_token();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let now = UnixMillis::now();
                        match local.compact(now).await {
                            Ok(true) => info!("compacted the local hotlist entries"),
                            Ok(false) => {}
                            Err(e) => warn!(error = %e, "compacting the local hotlist entries"),
                        }
                        match holds.compact(now).await {
                            Ok(true) => info!("compacted the legal holds"),
                            Ok(false) => {}
                            Err(e) => warn!(error = %e, "compacting the legal holds"),
                        }
                    }
                }
            }
        });
    }
    // Retention, every `retention_interval`, sparing what the legal holds
    // in force cover.
    let held_now = hub.holds.clone();
    let holds: Arc<dyn crate::retention::HoldSource> = Arc::new(move || held_now.active());
    let retention = Arc::new(crate::retention::Retention::new(
        hub.storage.clone(),
        access.clone(),
        holds,
        Arc::new(alpr_shared::types::UnixMillis::now),
    ));
    tokio::spawn(crate::retention::schedule(
        retention.clone(),
        hub.policy.clone(),
        config.retention_interval,
        cancel.child_token(),
    ));
    let search = crate::search::Searcher::new(hub.storage.clone(), hub.anchor.clone());
    // Past matches: each new generation's new rows and each new local
    // entry searched in the reads held (the system's access is logged).
    let back_matcher = crate::alerts::back_match::BackMatcher {
        storage: hub.storage.clone(),
        searcher: search.clone(),
        access: access.clone(),
    };
    tokio::spawn(
        back_matcher
            .clone()
            .follow_bulk(hub.clone(), cancel.child_token()),
    );
    {
        let local = hub.local_entries.clone();
        tokio::spawn(back_matcher.follow_local(
            hub.clone(),
            hub.local_entries.watch_entries(),
            move || local.entries(),
            cancel.child_token(),
        ));
    }
    let api_state = crate::api::ApiState {
        hub: hub.clone(),
        users,
        access,
        data_dir: config.data_dir.clone(),
        search,
        retention,
        retention_interval: config.retention_interval,
        console: Arc::new(crate::console::ConsoleState::new(config.console.clone())),
    };
    // Routes of other rooms (search, policy) merge here:
    // `.merge(search::routes().with_state(api_state.clone()))`.
    let app = crate::api::router(api_state, config.api_body_limit);
    info!(addr = %api_addr, "api listening");
    let mut api_task = tokio::spawn(crate::api::serve(
        api_listener,
        api_tls,
        app,
        crate::api::ApiLimits {
            max_connections: config.api_max_connections,
            request_timeout: config.api_request_timeout,
        },
        hub.cancel.clone(),
    ));
    // Both ports are ready: nodes and people may come.
    info!(%addr, "hub listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let writer_closed = hub.writer.clone();
    let mut failure = None;
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            r = &mut api_task => {
                if cancel.is_cancelled() {
                    break;
                }
                tracing::error!("the API stopped; the hub stops so that its supervisor restarts it");
                failure = Some(match r {
                    Ok(Err(e)) => e.context("the API stopped"),
                    Ok(Ok(())) => anyhow::anyhow!("the API stopped"),
                    Err(e) => anyhow::anyhow!("the API panicked: {e}"),
                });
                break;
            }
            _ = writer_closed.closed() => {
                // The writer is gone: nothing could be stored or
                // acknowledged. Stop, so that a supervisor restarts the hub.
                tracing::error!("the writer stopped; the hub stops so that its supervisor restarts it");
                failure = Some(anyhow::anyhow!("the hub's writer stopped"));
                break;
            }
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
    if !api_task.is_finished() {
        let _ = api_task.await;
    }
    tasks.close();
    tasks.wait().await;
    endpoint.wait_idle().await;
    drop(hub);
    drop(writer_closed);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .ok();
    info!("hub stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
    if let Some(at) = hub
        .revoked_at(&cert.serial)
        .filter(|at| *at <= UnixMillis::now())
    {
        let detail = format!("certificate {} is revoked since {at}", cert.serial);
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

/// How many frames are verified at once: one per core.
pub fn verify_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The keys ingest checks this node's entries with: every certificate the
/// hub holds for it that took effect, and the one it connected with
/// (pending until its first entry lands on the stored chain), each with its
/// revocation time.
fn node_keys(hub: &Hub, cert: &DeviceCert) -> anyhow::Result<NodeKeys> {
    let key_of = |c: &DeviceCert, effective_from: Option<u64>| NodeKey {
        serial: normalise_serial(&c.serial),
        key: c.key,
        validity: Validity {
            not_before: c.not_before,
            not_after: c.not_after,
        },
        effective_from,
        revoked_at: hub.revoked_at(&c.serial),
    };
    let mut held = Vec::new();
    for c in hub.storage.certificates(&cert.name)? {
        if c.effective_from.is_none() {
            continue;
        }
        match hub.anchor.check_device_der(&c.der) {
            Ok(d) if d.name == cert.name => held.push(key_of(&d, c.effective_from)),
            // A certificate that no longer checks vouches for nothing.
            Ok(_) | Err(_) => {
                warn!(serial = %c.serial, "a stored certificate of this node does not check; ignored")
            }
        }
    }
    Ok(NodeKeys::new(held, key_of(cert, None)))
}

/// Connection close code: the hub is at its connection limit; try later.
pub const CLOSE_BUSY: u32 = quic::CLOSE_BUSY;

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
    // One hub process at a time places a node's entries: its lease is
    // taken before its progress is read, and held while it is connected.
    let storage = hub.storage.clone();
    let leased = name.clone();
    let lease = match tokio::task::spawn_blocking(move || storage.lease_node(&leased)).await {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) => {
            info!(%peer, "the node is connected to another hub: sent there");
            conn.close(
                quic::CLOSE_HELD_ELSEWHERE.into(),
                b"node is connected to another hub",
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "taking the node's lease");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "taking the node's lease");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub error");
            return;
        }
    };
    let progress = match hub.storage.node(&name) {
        Ok(r) => r.map(|r| r.progress()).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "reading the node's progress");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
    };
    let keys = match node_keys(&hub, &cert) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "reading the node's certificates");
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub storage error");
            return;
        }
    };
    info!(%peer, acked = progress.next_seq, serial = %cert.serial, "node connected");
    let mut policy_rx = hub.policy.subscribe();
    let policy = policy_rx.borrow_and_update().clone();
    let mut holds_rx = hub.holds.watch();
    let holds = holds_rx.borrow_and_update().clone();
    let mut local_rx = hub.local_entries.watch();
    let local_entries = local_rx.borrow_and_update().clone();
    let mut lists_rx = hub.hotlists.watch();
    let lists = hotlists::summary(&lists_rx.borrow_and_update());
    let session = Arc::new(Mutex::new(
        HubSession::new(name.clone(), cert.key, hub.keys.receipt.clone(), progress)
            .with_keys(keys)
            .with_policy(policy.version(), Arc::new(policy.encode()))
            .with_holds(holds)
            .with_local_entries(local_entries)
            .with_hotlists(lists),
    ));
    let replaced = hub.connections.lock().ok().and_then(|mut m| {
        m.insert(
            name.clone(),
            Live {
                conn: conn.clone(),
                serial: normalise_serial(&cert.serial),
                session: session.clone(),
            },
        )
    });
    if let Some(old) = replaced {
        old.conn.close(
            RefusalCode::Replaced.close_code().into(),
            b"a newer connection of this node",
        );
        if let Some(n) = count_replacement(&hub, &name) {
            let r = Refusal {
                code: RefusalCode::IdentityConflict,
                seq: None,
                detail: format!(
                    "two devices share one identity: {n} connections replaced each other within {} s",
                    REPLACEMENT_WINDOW.as_secs()
                ),
            };
            hub.refuse(Some(&name), peer, &r).await;
        }
    }
    let ctx = Arc::new(StreamCtx {
        budget: hub.budgets.node(&name),
        hub: hub.clone(),
        session,
        device: name.clone(),
        kind: cert.kind,
        serial: normalise_serial(&cert.serial),
        cert_der: cert.der.clone(),
        peer,
        control: Mutex::new(None),
        hotlist_turn: tokio::sync::Mutex::new(()),
    });
    let streams = tokio_util::task::TaskTracker::new();
    let mut policy_open = true;
    let mut holds_open = true;
    let mut local_open = true;
    let mut lists_open = true;
    let reason = loop {
        tokio::select! {
            _ = hub.cancel.cancelled() => {
                conn.close(quic::CLOSE_SHUTDOWN.into(), b"hub shutting down");
                break "hub shutting down".to_string();
            }
            // The database let go of this process's hold on the node:
            // another hub may take it now.
            _ = lease.lost() => {
                warn!("the node's lease was lost (the database connection ended): closing");
                conn.close(
                    quic::CLOSE_SHUTDOWN.into(),
                    b"the hub lost its hold on this node; connect again",
                );
                break "lease lost".to_string();
            }
            changed = policy_rx.changed(), if policy_open => {
                if changed.is_err() {
                    policy_open = false;
                    continue;
                }
                let p = policy_rx.borrow_and_update().clone();
                ctx.push_policy(&p).await;
            }
            changed = holds_rx.changed(), if holds_open => {
                if changed.is_err() {
                    holds_open = false;
                    continue;
                }
                let doc = holds_rx.borrow_and_update().clone();
                ctx.push_holds(doc).await;
            }
            changed = local_rx.changed(), if local_open => {
                if changed.is_err() {
                    local_open = false;
                    continue;
                }
                let doc = local_rx.borrow_and_update().clone();
                ctx.push_local_entries(doc).await;
            }
            changed = lists_rx.changed(), if lists_open => {
                if changed.is_err() {
                    lists_open = false;
                    continue;
                }
                let lists = hotlists::summary(&lists_rx.borrow_and_update());
                // Sent from their own task (a whole list is many frames),
                // one list at a time per node.
                for o in ctx.with_session(|s| s.set_hotlists(lists)).unwrap_or_default() {
                    if let HubOutput::SendHotlist { source, from, to } = o {
                        let ctx = ctx.clone();
                        streams.spawn(async move { ctx.push_hotlist(source, from, to).await }.in_current_span());
                    }
                }
            }
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    let ctx = ctx.clone();
                    streams.spawn(async move { ctx.run_stream(send, recv).await }.in_current_span());
                }
                Err(e) => {
                    node_reported_conflict(&hub, &name, peer, &e).await;
                    break e.to_string();
                }
            }
        }
    };
    streams.close();
    streams.wait().await;
    if let Ok(mut m) = hub.connections.lock() {
        if m.get(&name)
            .is_some_and(|l| l.conn.stable_id() == conn.stable_id())
        {
            m.remove(&name);
        }
    }
    drop(lease);
    info!(%reason, "node disconnected");
}

/// Count one replacement of `name`'s connection; `Some(count)` when they
/// come often enough to mean two devices (then the count starts again).
fn count_replacement(hub: &Hub, name: &DeviceId) -> Option<usize> {
    let mut m = hub.replacements.lock().ok()?;
    let now = Instant::now();
    let times = m.entry(name.clone()).or_default();
    times.push_back(now);
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > REPLACEMENT_WINDOW)
    {
        times.pop_front();
    }
    (times.len() >= REPLACEMENTS_FOR_CONFLICT).then(|| {
        let n = times.len();
        times.clear();
        n
    })
}

/// A node that found the hub's record is not its own log closes its
/// connection saying so: record it as the node's identity conflict.
async fn node_reported_conflict(
    hub: &Hub,
    name: &DeviceId,
    peer: SocketAddr,
    e: &quinn::ConnectionError,
) {
    let quinn::ConnectionError::ApplicationClosed(ac) = e else {
        return;
    };
    let Some(r) = Refusal::from_close(ac.error_code.into_inner(), &ac.reason) else {
        return;
    };
    if r.code == RefusalCode::IdentityConflict {
        let r = Refusal {
            detail: format!("the node reports: {}", r.detail),
            ..r
        };
        hub.refuse(Some(name), peer, &r).await;
    }
}

struct StreamCtx {
    /// The node's share of the hub's memory and writer queue.
    budget: Arc<limits::NodeBudget>,
    hub: Arc<Hub>,
    session: Arc<Mutex<HubSession>>,
    device: DeviceId,
    /// A pole or a patrol vehicle, by its certificate.
    kind: alpr_shared::types::DeviceKind,
    serial: String,
    /// The certificate the node authenticated with, kept for audits.
    cert_der: Vec<u8>,
    peer: SocketAddr,
    /// The answering half of the node's control stream, once it opened
    /// one: policy changes are pushed through it.
    /// Weak: the stream ends when its reading half does.
    control: Mutex<Option<mpsc::WeakSender<Job>>>,
    /// Held while one bulk list's frames are queued: a whole list's chunks
    /// are never interleaved with another send of the same node.
    hotlist_turn: tokio::sync::Mutex<()>,
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
        /// Released once the commit is answered.
        _admitted: Option<tokio::sync::OwnedSemaphorePermit>,
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
    /// Take the changes in a node's copy of a shared document.
    async fn take_node_doc(&self, which: crate::node_writes::NodeDoc, doc: Vec<u8>) {
        if let Err(e) = self
            .hub
            .node_writes
            .take(&self.hub, &self.device, self.kind, which, doc)
            .await
        {
            warn!(node = %self.device, ?which, error = %e, "a node's document was not taken");
        }
    }

    fn with_session<T>(&self, f: impl FnOnce(&mut HubSession) -> T) -> Option<T> {
        self.session.lock().ok().map(|mut s| f(&mut s))
    }

    /// A new policy version: the session sends it on the control stream if
    /// the node holds an older one (or keeps it for the node's hello).
    async fn push_policy(&self, p: &alpr_shared::control::SignedPolicy) {
        let encoded = Arc::new(p.encode());
        let outs = self
            .with_session(|s| s.set_policy(p.version(), encoded))
            .unwrap_or_default();
        let control = self
            .control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|w| w.upgrade()));
        for o in outs {
            if let (HubOutput::Send(f), Some(tx)) = (o, control.as_ref()) {
                info!(version = p.version(), "pushing the new policy to the node");
                let _ = tx.send(Job::Send(f)).await;
            }
        }
    }

    /// The hub's local hotlist entries changed: send them to the node.
    async fn push_local_entries(&self, doc: Arc<Vec<u8>>) {
        let outs = self
            .with_session(|s| s.set_local_entries(doc))
            .unwrap_or_default();
        let control = self
            .control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|w| w.upgrade()));
        for o in outs {
            if let (HubOutput::Send(f), Some(tx)) = (o, control.as_ref()) {
                let _ = tx.send(Job::Send(f)).await;
            }
        }
    }

    /// A new generation while connected: send it on the control stream
    /// (nothing if the node has not opened one: its hello gets it).
    async fn push_hotlist(&self, source: String, from: Option<u64>, to: u64) {
        let control = self
            .control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|w| w.upgrade()));
        if let Some(tx) = control {
            self.send_hotlist(&tx, source, from, to).await;
        }
    }

    /// Queue bulk list `source` at generation `to` for the node: the delta
    /// from `from` when the hub has one that fits a frame, else the list
    /// whole. `false` if the stream is gone.
    async fn send_hotlist(
        &self,
        jobs: &mpsc::Sender<Job>,
        source: String,
        from: Option<u64>,
        to: u64,
    ) -> bool {
        let _turn = self.hotlist_turn.lock().await;
        let plan = match hotlists::Plan::make(&self.hub.hotlists, &source, from, to).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                warn!(
                    source,
                    generation = to,
                    "the hub no longer holds that generation; not sent"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(
                    source,
                    generation = to,
                    error = %e,
                    "reading a bulk list to send"
                );
                return true;
            }
        };
        let how = match &plan {
            hotlists::Plan::Delta(_) => "delta",
            hotlists::Plan::Whole(_) => "whole",
        };
        info!(source, from, to, how, "sending a bulk list to the node");
        plan.send(&source, to, |f| {
            let jobs = jobs.clone();
            async move { jobs.send(Job::Send(f)).await.map_err(|_| ()) }
        })
        .await
        .is_ok()
    }

    /// The hub's holds changed: send them to the node.
    async fn push_holds(&self, doc: Arc<Vec<u8>>) {
        let outs = self.with_session(|s| s.set_holds(doc)).unwrap_or_default();
        let control = self
            .control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|w| w.upgrade()));
        for o in outs {
            if let (HubOutput::Send(f), Some(tx)) = (o, control.as_ref()) {
                let _ = tx.send(Job::Send(f)).await;
            }
        }
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
        if lane == Lane::Control {
            if let Ok(mut c) = self.control.lock() {
                *c = Some(jobs.downgrade());
            }
        }
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
            // Admission: a frame of entries waits (in its stream) until the
            // entries ahead of it are few enough to be acknowledged soon.
            let mut admitted = match &frame {
                Frame::Entries(e) => {
                    let n = u32::try_from(e.entries.len().clamp(1, ADMITTED_ENTRIES)).unwrap_or(1);
                    match self.hub.admission.clone().acquire_many_owned(n).await {
                        Ok(p) => Some(p),
                        Err(_) => return,
                    }
                }
                _ => None,
            };
            // Verifying a frame's signatures is CPU work: it runs on the
            // blocking pool (and on several threads for a large frame),
            // never on the async workers.
            let Ok(slot) = self.hub.verify_slots.clone().acquire_owned().await else {
                return;
            };
            let session = self.session.clone();
            let outs = match tokio::task::spawn_blocking(move || {
                let outs = session.lock().ok().map(|mut s| s.handle_frame(frame, now));
                drop(slot);
                outs
            })
            .await
            {
                Ok(Some(outs)) => outs,
                _ => return,
            };
            if let Some(size) = hello_size {
                let held = self.with_session(|s| s.progress().next_seq).unwrap_or(0);
                if size < held {
                    let r = Refusal {
                        code: RefusalCode::IdentityConflict,
                        seq: Some(size),
                        detail: format!(
                            "the node says its log has {size} entries but the hub holds {held}: \
                             its store was replaced, or another device uses its identity"
                        ),
                    };
                    self.hub.refuse(Some(&self.device), self.peer, &r).await;
                }
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
            let mut work: VecDeque<HubOutput> = outs.into();
            while let Some(o) = work.pop_front() {
                let job = match o {
                    HubOutput::FindMissingImages { from, to } => {
                        work.extend(self.find_missing_images(from, to));
                        continue;
                    }
                    HubOutput::Send(f) => Job::Send(f),
                    HubOutput::Refused(r) => Job::Refused(r),
                    // In order: after hello these go before the welcome.
                    HubOutput::SendHotlist { source, from, to } => {
                        if !self.send_hotlist(&jobs, source, from, to).await {
                            return;
                        }
                        continue;
                    }
                    HubOutput::NodeHotlists { held } => {
                        let op = WriteOp::NodeHotlists {
                            device: self.device.clone(),
                            held,
                        };
                        if self.hub.writer.submit(op).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Shown when asked: the hub learns how far its
                    // numbers had gone.
                    HubOutput::NodeHeldPolicy { policy } => {
                        self.held_policy(policy).await;
                        continue;
                    }
                    HubOutput::NodeHeldList { header } => {
                        self.held_list(header).await;
                        continue;
                    }
                    HubOutput::NodePolicy { version } => {
                        let op = WriteOp::NodePolicy {
                            device: self.device.clone(),
                            version,
                        };
                        if self.hub.writer.submit(op).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Taken change by change (each checked and in the
                    // access log, never merged wholesale); what is taken
                    // is published on the holds watch, which pushes it to
                    // every node.
                    HubOutput::NodeHolds { doc } => {
                        self.take_node_doc(crate::node_writes::NodeDoc::Holds, doc)
                            .await;
                        continue;
                    }
                    // Likewise for the local hotlist entries.
                    HubOutput::NodeLocalEntries { doc } => {
                        self.take_node_doc(crate::node_writes::NodeDoc::LocalEntries, doc)
                            .await;
                        continue;
                    }
                    HubOutput::Ingest(batch) => {
                        let (first, count) =
                            (batch.entries.first().map(|v| v.seq()), batch.entries.len());
                        let op = WriteOp::Ingest {
                            device: self.device.clone(),
                            entries: batch.entries,
                            checkpoint: batch.checkpoint,
                            new_key: batch.new_key,
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
                            _admitted: admitted.take(),
                        }
                    }
                    HubOutput::Skip {
                        first,
                        last,
                        head,
                        statement,
                    } => {
                        warn!(
                            first,
                            last,
                            recorded_at = statement.seq(),
                            "the node signed that it lost entries of its own log; moving past them"
                        );
                        let op = WriteOp::Skip {
                            device: self.device.clone(),
                            first,
                            last,
                            head,
                            at: now,
                        };
                        let Ok(pending) = self.hub.writer.enqueue(op).await else {
                            return;
                        };
                        Job::Ingest {
                            pending,
                            first: Some(first),
                            count: 0,
                            _admitted: None,
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
                    _admitted,
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
            let mut work: VecDeque<HubOutput> = outs.into();
            while let Some(o) = work.pop_front() {
                match o {
                    HubOutput::FindMissingImages { from, to } => {
                        work.extend(self.find_missing_images(from, to));
                    }
                    HubOutput::Send(f) => {
                        if quic::write_frame(&mut send, &f).await.is_err() {
                            return;
                        }
                    }
                    HubOutput::Refused(r) => {
                        self.hub.refuse(Some(&self.device), self.peer, &r).await
                    }
                    // The session asks for writes only in answer to frames.
                    HubOutput::Ingest(_)
                    | HubOutput::StoreImage { .. }
                    | HubOutput::NodePolicy { .. }
                    | HubOutput::NodeHolds { .. }
                    | HubOutput::NodeLocalEntries { .. }
                    | HubOutput::SendHotlist { .. }
                    | HubOutput::NodeHotlists { .. }
                    | HubOutput::NodeHeldPolicy { .. }
                    | HubOutput::NodeHeldList { .. }
                    | HubOutput::Skip { .. } => {}
                }
            }
        }
    }

    /// Ask the store which images of this node's entries `from..to` it
    /// lacks, and tell the session (which asks the node for them).
    fn find_missing_images(&self, from: u64, to: u64) -> Vec<HubOutput> {
        match self.hub.storage.missing_images(
            &self.device,
            from,
            to,
            alpr_shared::wire::MAX_WANTED_IMAGES,
        ) {
            Ok(m) => {
                if !m.images.is_empty() {
                    warn!(
                        count = m.images.len(),
                        first_seq = m.images.first().map(|(s, _)| *s),
                        "images missing for stored entries (restored from a backup?): asking the node"
                    );
                }
                self.with_session(|s| s.images_missing(m.images, m.scanned_to, to))
                    .unwrap_or_default()
            }
            Err(e) => {
                tracing::error!(error = %e, "looking for missing images");
                Vec::new()
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
