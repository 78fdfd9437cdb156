//! The edge's QUIC driver around [`alpr_shared::sync::EdgeSync`]: one
//! connection to the hub at a time (mutual TLS, ALPN `alpr-sync/8`,
//! keep-alives), reconnects with the core's jittered exponential backoff,
//! one stream per lane with QUIC priorities control > entries > images,
//! the image window sized from the connection's congestion window,
//! and the store's receipts and image queue kept up to date.
//!
//! The hub's signed policy arrives on the control lane; the core checks it
//! against the CA (a key certified for the policy alone signed it) and
//! offers only a newer version, which
//! is stored (with the time it was refreshed) before the core reports it
//! as enforced.
//!
//! An address change (a vehicle moving between networks) is QUIC
//! connection migration: the connection survives it without a reconnect.
//!
//! Several hubs (`hubs` in `edge.toml`, processes sharing one database):
//! the node connects to one at a time, in the order listed, and stays
//! with it while it works. When it cannot be reached, drops the link, is
//! at its limit, or says another hub holds this node's chain, the next
//! one is tried (after the same backoff). Nothing is lost or sent twice
//! by moving: every hub's welcome says what the database holds of this
//! node's log, and the node resumes from there.
//!
//! Bulk lists: the hello says which generation of each list the node holds;
//! the hub sends what is newer (a delta, or the list whole in chunks)
//! before its welcome, and pushes each new generation while connected. Each
//! is checked against the CA (the hotlist key's certificate it carries), stored and swapped in
//! ([`crate::hotlist::generations`]) before the core lets the backlog go.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alpr_shared::crypto::SecretKey;
use alpr_shared::sync::{EdgeEvent, EdgeSync, LinkState, LogSource};
use alpr_shared::types::UnixMillis;
use alpr_shared::wire::quic::{self, ReadFrameError};
use alpr_shared::wire::{Frame, Lane, Refusal, RefusalCode, ALPN};
use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::EdgeConfig;
use crate::hotlist::generations::Generations;
use crate::store::StoreHandle;

/// What `edge status` shows about the link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// "connected", "connecting", "offline (retry in …)", "refused: …".
    pub link: String,
    /// The hub connected to, or being tried.
    pub hub: String,
    /// Every hub configured, in the order they are tried.
    pub hubs: Vec<String>,
    /// Last time the hub acknowledged something.
    pub last_sync: Option<UnixMillis>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub metered: bool,
    /// The hub's record of this node is not this node's log (its store was
    /// replaced, or another device uses its identity): uploads have
    /// stopped until a person resolves it.
    pub identity_conflict: Option<String>,
    /// The hub once acknowledged more than it holds now (restored from a
    /// backup): what it lost, being sent again.
    pub hub_lost: Option<String>,
    /// Entries of this node's own log that its store could no longer read
    /// (the node's fault, not the hub's), recorded as lost.
    pub own_loss: Option<String>,
    /// The hub confirmed what it holds on the current connection (else
    /// the acknowledged count is the receipt stored from an earlier one).
    pub receipt_current: bool,
    /// The last policy refused (not the hub's signature, or invalid), and why.
    pub policy_error: Option<String>,
    /// The bulk lists held: (source, generation).
    pub hotlists: Vec<(String, u64)>,
    /// The last bulk list that could not be applied, and why.
    pub hotlist_error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<SyncStatus>>;

fn set_status(s: &SharedStatus, f: impl FnOnce(&mut SyncStatus)) {
    if let Ok(mut g) = s.lock() {
        f(&mut g);
    }
}

/// Run sync until `cancel` fires.
pub async fn run(
    config: EdgeConfig,
    store: StoreHandle,
    generations: Generations,
    status: SharedStatus,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key = alpr_shared::private::read_key_file(&config.key)?;
    let liveness = quic::Liveness {
        keep_alive: config.sync.keep_alive,
        idle_timeout: config.sync.idle_timeout,
    };
    let client = quic::client_config(&ca, &cert, &key, ALPN, liveness)?;
    // What the hub signs is checked against the CA, each kind under a key
    // certified for it alone.
    let anchor =
        alpr_shared::cert::TrustAnchor::from_pem(&ca).context("the deployment's CA certificate")?;
    let hubs = config.hub_addresses();
    // The hub tried next: the first, and then the one that last worked.
    let mut at = 0usize;
    let bind: SocketAddr = if hubs.iter().all(SocketAddr::is_ipv4) {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("opening the UDP socket")?;
    endpoint.set_default_client_config(client);

    // The log key signs the checkpoint that goes with each upload.
    let log_key = std::str::from_utf8(&key)
        .ok()
        .and_then(|pem| SecretKey::from_pkcs8_pem(pem).ok())
        .with_context(|| format!("{} is not a PKCS#8 PEM key", config.key.display()))?;

    let start = Instant::now();
    let wall_at_start = UnixMillis::now();
    let now = move || start.elapsed();
    let seed = rand::random::<u64>();
    let mut core = EdgeSync::new(
        store.device().clone(),
        config.core(),
        store.acked(),
        seed,
        anchor,
    )
    .with_checkpoints(log_key, wall_at_start);
    match store.policy() {
        Ok(Some((p, _))) => {
            core.set_policy_version(p.version());
            core.set_policy_refresh(refresh_every(&p));
        }
        Ok(None) => {}
        Err(e) => error!(error = %e, "cannot read the stored policy; asking the hub for it"),
    }
    // The node's local hotlist entries go to the hub after every welcome.
    send_local_entries(&mut core, &store);
    // The node's legal holds go to the hub after every welcome.
    match store.holds_doc() {
        Ok(Some(doc)) => core.set_holds(doc),
        Ok(None) => {}
        Err(e) => error!(error = %e, "cannot read the stored legal holds"),
    }
    // The hub is told which lists are held; it sends what is newer.
    for (source, generation) in generations.held() {
        core.set_hotlist_held(&source, generation);
    }
    set_status(&status, |s| {
        s.hotlists = generations.held();
        s.hub = hubs.first().map(ToString::to_string).unwrap_or_default();
        s.hubs = hubs.iter().map(ToString::to_string).collect();
        s.metered = config.sync.metered;
        s.link = "starting".into();
    });
    loop {
        if cancel.is_cancelled() {
            break;
        }
        if core.wants_link(now()) {
            let Some(&hub) = hubs.get(at % hubs.len().max(1)) else {
                anyhow::bail!("no hub address configured");
            };
            set_status(&status, |s| {
                s.link = "connecting".into();
                s.hub = hub.to_string();
            });
            let attempt = async {
                let connecting = endpoint.connect(hub, &config.hub_name)?;
                anyhow::Ok(tokio::time::timeout(config.sync.idle_timeout, connecting).await??)
            };
            let conn = tokio::select! {
                _ = cancel.cancelled() => break,
                c = attempt => c,
            };
            match conn {
                Ok(conn) => {
                    set_status(&status, |s| s.connects += 1);
                    // Holds placed while offline go after the welcome.
                    send_local_holds(&mut core, &store);
                    // So do local entries added or edited while offline.
                    send_local_entries(&mut core, &store);
                    let link = Link {
                        store: &store,
                        generations: &generations,
                        status: &status,
                        cancel: &cancel,
                    };
                    if session(&mut core, conn, &link, &now).await == Ended::TryNext {
                        at = next_hub(at, &hubs);
                    }
                }
                Err(e) => {
                    info!(%hub, error = %e, "cannot reach the hub");
                    set_status(&status, |s| s.last_error = Some(e.to_string()));
                    core.link_down(now());
                    at = next_hub(at, &hubs);
                }
            }
            continue;
        }
        let wait = core
            .poll_timeout()
            .map_or(Duration::from_secs(1), |t| t.saturating_sub(now()));
        if let LinkState::Down { .. } = core.state() {
            set_status(&status, |s| {
                s.link = format!("offline (retry in {} ms)", wait.as_millis())
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    endpoint.close(quic::CLOSE_SHUTDOWN.into(), b"edge shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

/// The index of the hub to try after the one at `at` failed (the same
/// when there is only one).
fn next_hub(at: usize, hubs: &[SocketAddr]) -> usize {
    let next = (at + 1) % hubs.len().max(1);
    if hubs.len() > 1 {
        info!(from = %hubs[at % hubs.len()], to = %hubs[next], "trying the next hub");
    }
    next
}

/// How a connection ended, for the choice of the next hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Stay with this hub: the node stops, or was refused for a reason
    /// every hub shares (its certificate, its log).
    Stay,
    /// The link failed, or the hub sent the node elsewhere: try the next.
    TryNext,
}

/// Give the core the stored local hotlist entries document (sent now if
/// connected, and after every welcome).
fn send_local_entries(core: &mut EdgeSync, store: &StoreHandle) {
    match store.local_entries_doc() {
        Ok(Some(doc)) => core.set_local_entries(doc),
        Ok(None) => {}
        Err(e) => error!(error = %e, "cannot read the stored local hotlist entries"),
    }
}

/// Give the core the stored holds document (sent now if connected, and
/// after every welcome).
fn send_local_holds(core: &mut EdgeSync, store: &StoreHandle) {
    match store.holds_doc() {
        Ok(Some(doc)) => core.set_holds(doc),
        Ok(None) => {}
        Err(e) => error!(error = %e, "cannot read the stored legal holds"),
    }
}

type Incoming = (Lane, Result<Frame, String>);

fn spawn_reader(lane: Lane, mut recv: quinn::RecvStream, tx: mpsc::Sender<Incoming>) {
    tokio::spawn(async move {
        loop {
            let r = quic::read_frame(&mut recv, lane.max_frame_from_hub()).await;
            let stop = r.is_err();
            let item = r.map_err(|e| match e {
                ReadFrameError::Finished => "stream finished".to_string(),
                e => e.to_string(),
            });
            if tx.send((lane, item)).await.is_err() || stop {
                return;
            }
        }
    });
}

/// What a connection works with.
struct Link<'a> {
    store: &'a StoreHandle,
    generations: &'a Generations,
    status: &'a SharedStatus,
    cancel: &'a CancellationToken,
}

/// Apply a bulk list from the hub (delta or whole) off the async workers:
/// checked against the CA (a hotlist key's certificate, its signature),
/// stored, swapped in; the core is told either way (a failure makes the
/// hub send the list whole). `alpr-bench hub push`'s simulated edges apply
/// through it too.
pub async fn apply_hotlist(
    core: &mut EdgeSync,
    generations: &Generations,
    status: &SharedStatus,
    source: String,
    update: HotlistUpdate,
) {
    let g = generations.clone();
    let src = source.clone();
    let r = tokio::task::spawn_blocking(move || match update {
        HotlistUpdate::Delta { from, to, delta } => g.apply_delta(&src, from, to, &delta),
        HotlistUpdate::Full { generation, bytes } => g.apply_full(&src, generation, bytes),
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the apply task failed: {e}")));
    match r {
        Ok(generation) => {
            info!(source, generation, "bulk list from the hub in force");
            core.hotlist_applied(&source, generation);
            set_status(status, |s| s.hotlists = generations.held());
        }
        Err(e) => {
            let why = format!("{e:#}");
            error!(source, reason = %why, "a bulk list from the hub was not applied; keeping the one held");
            core.hotlist_failed(&source);
            set_status(status, |s| {
                s.hotlist_error = Some(format!("{}: {source}: {why}", UnixMillis::now()))
            });
        }
    }
}

/// A bulk list as the hub sends it: a delta from the held generation, or whole.
pub enum HotlistUpdate {
    Delta { from: u64, to: u64, delta: Vec<u8> },
    Full { generation: u64, bytes: Vec<u8> },
}

/// One connection's life: greet, upload, until it drops or we stop.
async fn session(
    core: &mut EdgeSync,
    conn: quinn::Connection,
    link: &Link<'_>,
    now: &impl Fn() -> Duration,
) -> Ended {
    let (store, status, cancel) = (link.store, link.status, link.cancel);
    let (tx, mut rx) = mpsc::channel::<Incoming>(64);
    let mut streams: HashMap<Lane, quinn::SendStream> = HashMap::new();
    let mut changes = store.watch();
    let mut placed = store.watch_holds_placed();
    let mut local_changed = store.watch_local_entries();
    core.link_up(now(), store.log_len());
    set_status(status, |s| s.receipt_current = false);
    set_status(status, |s| s.link = "handshake".into());
    let outcome: Result<(), String> = loop {
        // The image window follows the transport's estimate of the path.
        core.set_congestion_window(conn.stats().path.cwnd);
        // Send all the core has, each frame on its lane's stream.
        let mut failed = None;
        while let Some(o) = core.poll_transmit(now(), store) {
            if let std::collections::hash_map::Entry::Vacant(slot) = streams.entry(o.lane) {
                match conn.open_bi().await {
                    Ok((mut send, recv)) => {
                        let _ = send.set_priority(o.lane.priority());
                        if let Err(e) = send.write_all(&[o.lane.tag()]).await {
                            failed = Some(e.to_string());
                            break;
                        }
                        spawn_reader(o.lane, recv, tx.clone());
                        slot.insert(send);
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(send) = streams.get_mut(&o.lane) {
                if let Err(e) = quic::write_frame(send, &o.frame).await {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                EdgeEvent::Acked(r) => {
                    let next = r.receipt.next_seq;
                    if let Err(e) = store.set_acked(r).await {
                        error!(error = %e, "cannot record the hub's receipt");
                    }
                    set_status(status, |s| {
                        s.last_sync = Some(UnixMillis::now());
                        s.link = "connected".into();
                        s.identity_conflict = None;
                        s.receipt_current = true;
                    });
                    tracing::debug!(acked = next, "hub acknowledged");
                }
                EdgeEvent::ImageAcked { seq, hash } => {
                    if let Err(e) = store.image_done(seq, hash).await {
                        error!(error = %e, "cannot update the image queue");
                    }
                }
                EdgeEvent::Refused(r) => report_refusal(&r, status),
                EdgeEvent::Protocol(p) => warn!(problem = %p, "the hub broke the protocol"),
                EdgeEvent::IdentityConflict(why) => {
                    error!(problem = %why, "identity conflict: uploads stopped; a person must resolve it");
                    set_status(status, |s| {
                        s.link = "identity conflict: uploads stopped".into();
                        s.identity_conflict = Some(why.clone());
                        s.receipt_current = false;
                        s.last_error = Some(format!("identity conflict: {why}"));
                    });
                }
                EdgeEvent::LocalLoss { seq } => {
                    error!(
                        seq,
                        "entry {seq} of this node's own log cannot be read from its store (damaged): \
                         this node's fault, not the hub's; recording a signed loss and carrying on"
                    );
                    match store.record_loss(seq).await {
                        Ok(Some((first, last))) => set_status(status, |s| {
                            s.own_loss = Some(format!(
                                "entries {first}..={last} of this node's log were unreadable in its own store; \
                                 a signed loss record went to the hub in their place"
                            ))
                        }),
                        Ok(None) => {}
                        Err(e) => error!(error = %e, "cannot record the loss"),
                    }
                }
                EdgeEvent::Policy(p) => {
                    let version = p.version();
                    match store.store_policy(&p, UnixMillis::now()).await {
                        Ok(()) => {
                            info!(version, "new policy from the hub in force");
                            core.set_policy_refresh(refresh_every(&p));
                            core.policy_applied(version, now());
                        }
                        Err(e) => error!(error = %e, version, "cannot store the hub's policy"),
                    }
                }
                EdgeEvent::PolicyRefreshed { version } => {
                    if let Err(e) = store.policy_refreshed(UnixMillis::now()).await {
                        error!(error = %e, "cannot record the policy's refresh");
                    }
                    tracing::debug!(version, "the hub confirmed the policy");
                }
                EdgeEvent::Holds(doc) => {
                    let change = crate::store::HoldsChange::Merge {
                        doc,
                        from_hub: true,
                    };
                    match store.change_holds(change).await {
                        // Changed: the hub lacks what this node added.
                        Ok(Some(saved)) => {
                            info!("merged the hub's legal holds");
                            core.set_holds(saved);
                        }
                        Ok(None) => tracing::debug!("the hub's legal holds are known here"),
                        Err(e) => error!(error = %e, "cannot merge the hub's legal holds"),
                    }
                }
                EdgeEvent::LocalEntries(doc) => {
                    let change = crate::store::LocalEntriesChange::Merge { doc };
                    match store.change_local_entries(change).await {
                        // Changed: the hub may lack what this node added
                        // (the watch sends the document back).
                        Ok(Some(_)) => info!("merged the hub's local hotlist entries"),
                        Ok(None) => {
                            tracing::debug!("the hub's local hotlist entries are known here")
                        }
                        Err(e) => {
                            error!(error = %e, "cannot merge the hub's local hotlist entries")
                        }
                    }
                }
                EdgeEvent::HotlistDelta {
                    source,
                    from,
                    to,
                    delta,
                } => {
                    let update = HotlistUpdate::Delta { from, to, delta };
                    apply_hotlist(core, link.generations, status, source, update).await;
                }
                EdgeEvent::HotlistFull {
                    source,
                    generation,
                    bytes,
                } => {
                    let update = HotlistUpdate::Full { generation, bytes };
                    apply_hotlist(core, link.generations, status, source, update).await;
                }
                EdgeEvent::HotlistRefused { source, why } => {
                    warn!(source, reason = %why, "bulk list frames from the hub refused; nothing applied");
                    set_status(status, |s| {
                        s.hotlist_error = Some(format!("{}: {source}: {why}", UnixMillis::now()))
                    });
                }
                // The hub holds older numbers than this node (restored
                // from a backup): show it what it signed, so its next
                // policy and lists go past what this node holds.
                EdgeEvent::ShowHeld { policy, sources } => {
                    let policy = if policy {
                        match store.policy() {
                            Ok(held) => held.map(|(p, _)| p.encode()),
                            Err(e) => {
                                error!(error = %e, "cannot read the policy held to show the hub");
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let headers: Vec<Vec<u8>> = sources
                        .iter()
                        .filter_map(|s| link.generations.get(s))
                        .map(|g| g.signed_header().to_vec())
                        .collect();
                    warn!(
                        policy = policy.is_some(),
                        lists = headers.len(),
                        "the hub holds older numbers than this node (restored from a backup?): showing it what it signed"
                    );
                    core.show_held(policy, headers);
                }
                EdgeEvent::PolicyIgnored { held, offered } => warn!(
                    held,
                    offered, "the hub offered an older policy than this node enforces; not applied"
                ),
                EdgeEvent::PolicyRefused(why) => {
                    error!(
                        reason = %why,
                        "a policy that is not the hub's, or not valid, was refused"
                    );
                    set_status(status, |s| {
                        s.policy_error = Some(format!("{}: {why}", UnixMillis::now()))
                    });
                }
                EdgeEvent::HubBehind { had, now_holds } => {
                    warn!(
                        had,
                        now_holds,
                        "the hub holds less than it acknowledged (restored from a backup?): sending entries and images again"
                    );
                    match store.requeue_images(now_holds, had).await {
                        Ok(n) => info!(images = n, "images queued again for the hub"),
                        Err(e) => error!(error = %e, "cannot queue the images again"),
                    }
                    set_status(status, |s| {
                        s.hub_lost = Some(format!(
                            "the hub had acknowledged {had} reads but holds {now_holds} (at {}): the rest is sent again",
                            UnixMillis::now()
                        ))
                    });
                }
            }
        }
        if matches!(core.state(), LinkState::Refused { .. }) {
            conn.close(quic::CLOSE_SHUTDOWN.into(), b"refused");
            return Ended::Stay;
        }
        if matches!(core.state(), LinkState::Conflict { .. }) {
            let why = status
                .lock()
                .ok()
                .and_then(|s| s.identity_conflict.clone())
                .unwrap_or_default();
            let reason: String = why.chars().take(300).collect();
            conn.close(
                RefusalCode::IdentityConflict.close_code().into(),
                reason.as_bytes(),
            );
            return Ended::Stay;
        }
        // Answers to events (a list applied) go out before waiting.
        if core.has_control_to_send() {
            continue;
        }
        let deadline = core.poll_timeout().map(|t| t.saturating_sub(now()));
        tokio::select! {
            _ = cancel.cancelled() => {
                conn.close(quic::CLOSE_SHUTDOWN.into(), b"edge shutting down");
                return Ended::Stay;
            }
            m = rx.recv() => match m {
                Some((_, Ok(frame))) => core.handle_frame(frame, now(), store),
                Some((lane, Err(e))) => break Err(format!("{lane:?} stream: {e}")),
                None => break Err("streams closed".into()),
            },
            r = changes.changed() => {
                if r.is_err() {
                    break Err("the store stopped".into());
                }
            }
            r = placed.changed() => {
                if r.is_err() {
                    break Err("the store stopped".into());
                }
                placed.borrow_and_update();
                send_local_holds(core, store);
            }
            r = local_changed.changed() => {
                if r.is_err() {
                    break Err("the store stopped".into());
                }
                local_changed.borrow_and_update();
                // The same bytes as last sent are not sent again.
                send_local_entries(core, store);
            }
            _ = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(3600))) => {
                core.handle_timeout(now(), store.log_len());
            }
            e = conn.closed() => break Err(e.to_string()),
        }
    };
    // Why did it end? A refusal by the hub is an application close.
    let reason = conn.close_reason();
    let mut why = outcome.err().unwrap_or_default();
    if let Some(quinn::ConnectionError::ApplicationClosed(ac)) = &reason {
        let code = ac.error_code.into_inner();
        if let Some(r) = Refusal::from_close(code, &ac.reason) {
            report_refusal(&r, status);
            core.connection_refused(now(), r);
            return Ended::Stay;
        }
        if code == u64::from(quic::CLOSE_HELD_ELSEWHERE) {
            why = format!(
                "the node is connected to another hub ({})",
                String::from_utf8_lossy(&ac.reason)
            );
        }
    }
    info!(reason = %why, "link to the hub lost");
    set_status(status, |s| {
        s.last_error = Some(why);
        s.link = "offline".into();
        s.receipt_current = false;
    });
    conn.close(quic::CLOSE_SHUTDOWN.into(), b"");
    core.link_down(now());
    Ended::TryNext
}

/// How often a connected node has its policy confirmed: often enough that
/// it never goes stale while the link is up.
fn refresh_every(p: &alpr_shared::control::SignedPolicy) -> Duration {
    (Duration::from_millis(p.policy().max_stale_ms) / 4).min(Duration::from_secs(600))
}

fn report_refusal(r: &Refusal, status: &SharedStatus) {
    if r.code.is_permanent() {
        error!(code = %r.code, seq = r.seq, reason = %r.detail, "the hub refused this node; a person must look");
        set_status(status, |s| {
            s.link = format!("refused: {} ({})", r.code, r.detail)
        });
    } else {
        info!(code = %r.code, reason = %r.detail, "the hub asked to resume elsewhere");
    }
    set_status(status, |s| {
        s.last_error = Some(format!("{}: {}", r.code, r.detail))
    });
}
