//! `edge run` and `edge status`: the node process and its local status
//! socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::SecretKey;
use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::capture::gps::{GpsHandle, GpsStatus};
use crate::config::EdgeConfig;
use crate::health::{CaptureHealth, CaptureState};
use crate::store::StoreHandle;
use crate::sync::{SharedStatus, SyncStatus};
use alpr_shared::types::DeviceKind;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML). Without it, `edge.toml` if present, else defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The running node's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `edge status` prints.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Status {
    pub device: String,
    pub log_size: u64,
    /// What the hub holds (its latest receipt, checked against this log).
    pub acked: u64,
    /// When the hub signed that receipt.
    pub acked_at: Option<String>,
    /// Whether the hub confirmed it on the current connection (otherwise
    /// it is the receipt of an earlier one: the hub may hold less now).
    pub receipt_current: bool,
    /// Reads the hub does not hold yet; `None` while the hub's record of
    /// this node is not this node's log (an identity conflict): nothing
    /// is known to be held.
    pub backlog: Option<u64>,
    pub images_pending: u64,
    pub link: String,
    /// The hub connected to, or being tried.
    pub hub: String,
    /// Every hub configured, in the order they are tried.
    #[serde(default)]
    pub hubs: Vec<String>,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub metered: bool,
    /// What capture is doing ("off", "running", "failing", …).
    #[serde(default)]
    pub capture: CaptureState,
    /// Why the store cannot commit now (it retries); absent when healthy.
    #[serde(default)]
    pub store_error: Option<String>,
    /// Free bytes on the data folder's filesystem.
    #[serde(default)]
    pub disk_free: Option<u64>,
    /// What is wrong now; empty when healthy (`edge health`).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Why uploads stopped, when the hub's record is not this node's log.
    pub identity_conflict: Option<String>,
    /// The hub lost reads it had acknowledged (restored from a backup).
    pub hub_lost: Option<String>,
    /// Entries of this node's own log its store could not read back, and
    /// recorded as lost with a signed loss entry: the node's fault.
    pub lost_entries: u64,
    pub own_loss: Option<String>,
    /// The gpsd client's state (vehicles, or where `gpsd` is configured).
    #[serde(default)]
    pub gps: Option<GpsStatus>,
    /// The policy version this node enforces (none before the hub sent one).
    #[serde(default)]
    pub policy_version: Option<u64>,
    /// When the hub last confirmed that policy.
    #[serde(default)]
    pub policy_refreshed_at: Option<String>,
    /// Not refreshed for longer than the policy allows: logins are refused.
    #[serde(default)]
    pub policy_stale: bool,
    /// The last policy refused as not the hub's (or invalid), and why.
    #[serde(default)]
    pub policy_error: Option<String>,
    /// Legal holds in force on this node (retention purges nothing they
    /// cover).
    #[serde(default)]
    pub active_holds: usize,
    /// When this node last merged the hub's legal holds.
    #[serde(default)]
    pub holds_refreshed_at: Option<String>,
    /// Local hotlist entries active on this node now.
    #[serde(default)]
    pub active_local_entries: usize,
    /// What the last retention pass did, or why it purged nothing
    /// ([`crate::retention::Outcome`]).
    #[serde(default)]
    pub retention: Option<String>,
    /// The bulk lists this node matches against: (source, generation).
    #[serde(default)]
    pub hotlists: Vec<(String, u64)>,
    /// The last bulk list from the hub that could not be applied, and why.
    #[serde(default)]
    pub hotlist_error: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The running node's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn status_of(
    device: &str,
    store: &StoreHandle,
    sync: &SyncStatus,
    capture: &CaptureHealth,
) -> Status {
    let log = store.status();
    let capture = capture.get();
    let disk_free = store
        .path()
        .parent()
        .and_then(alpr_shared::health::disk_free);
    let problems = crate::health::problems(store, &capture, disk_free);
    let policy = store.policy().ok().flatten().map(|(p, at)| {
        crate::policy::PolicyView::of(&p, at, alpr_shared::types::UnixMillis::now())
    });
    let (holds, holds_refreshed_at) = store.holds().unwrap_or_default();
    Status {
        active_holds: holds.iter().filter(|h| h.active()).count(),
        active_local_entries: {
            let now = alpr_shared::types::UnixMillis::now();
            store
                .local_entries()
                .map(|e| e.iter().filter(|e| e.active(now)).count())
                .unwrap_or_default()
        },
        holds_refreshed_at: holds_refreshed_at.map(|t| t.to_string()),
        policy_version: policy.as_ref().map(|p| p.version),
        policy_refreshed_at: policy.as_ref().and_then(|p| p.refreshed_at.clone()),
        policy_stale: policy.as_ref().is_some_and(|p| p.stale),
        policy_error: sync.policy_error.clone(),
        hotlists: sync.hotlists.clone(),
        hotlist_error: sync.hotlist_error.clone(),
        retention: None,
        capture,
        store_error: store.failing(),
        disk_free,
        problems,
        device: device.to_owned(),
        log_size: log.len,
        acked: log.acked,
        acked_at: log.acked_at.map(|t| t.to_string()),
        receipt_current: sync.receipt_current,
        backlog: sync.identity_conflict.is_none().then(|| log.backlog()),
        images_pending: log.images_pending,
        link: sync.link.clone(),
        hub: sync.hub.clone(),
        hubs: sync.hubs.clone(),
        last_sync: sync.last_sync.map(|t| t.to_string()),
        last_error: sync.last_error.clone(),
        connects: sync.connects,
        metered: sync.metered,
        identity_conflict: sync.identity_conflict.clone(),
        hub_lost: sync.hub_lost.clone(),
        lost_entries: log.lost,
        own_loss: sync.own_loss.clone(),
        gps: None,
    }
}

/// Open the node's store with the identity in its certificate.
pub fn open_store(
    config: &EdgeConfig,
) -> anyhow::Result<(StoreHandle, std::thread::JoinHandle<()>)> {
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let key = alpr_shared::private::read_key_file(&config.key)?;
    let key = std::str::from_utf8(&key)
        .with_context(|| format!("{} is not PEM text", config.key.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).context("the CA certificate")?;
    let dc = anchor
        .check_device_pem(&cert)
        .context("this node's certificate")?;
    let key = SecretKey::from_pkcs8_pem(key).context("this node's key")?;
    anyhow::ensure!(
        key.public() == dc.key,
        "the key does not match the certificate"
    );
    alpr_shared::private::create_private_dir(&config.data_dir)?;
    let opened = StoreHandle::open(&config.db_path(), key, dc.name).context("opening the store")?;
    alpr_shared::private::make_private(&config.db_path())?;
    Ok(opened)
}

/// The kind of node this certificate was issued to.
fn device_kind(config: &EdgeConfig) -> anyhow::Result<DeviceKind> {
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let cert = std::fs::read(&config.cert)
        .with_context(|| format!("reading {}", config.cert.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).context("the CA certificate")?;
    Ok(anchor
        .check_device_pem(&cert)
        .context("this node's certificate")?
        .kind)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(config))
}

async fn run_async(config: EdgeConfig) -> anyhow::Result<ExitCode> {
    let (store, store_thread) = open_store(&config)?;
    // The bulk lists held, loaded and checked now (a bad file is left out,
    // and the hub sends that list whole).
    let ca = std::fs::read(&config.ca_cert)
        .with_context(|| format!("reading {}", config.ca_cert.display()))?;
    let anchor =
        alpr_shared::cert::TrustAnchor::from_pem(&ca).context("the deployment's CA certificate")?;
    let generations = crate::hotlist::generations::Generations::open(&config.data_dir, anchor)
        .context("the bulk lists")?;
    let device = store.device().to_string();
    info!(node = %device, log = store.status().len, acked = store.acked(), "edge starting");
    let cancel = CancellationToken::new();
    alpr_shared::cli::cancel_on_signals(cancel.clone());
    let status: SharedStatus = Arc::new(Mutex::new(SyncStatus::default()));
    let capture_health = CaptureHealth::new("off");
    let gps = config
        .capture
        .gpsd_address(device_kind(&config)? == DeviceKind::Vehicle)
        .map(|addr| crate::capture::gps::spawn(addr, cancel.clone()));

    // Every task the node needs. One that fails, panics, or (for those that
    // must run until shutdown) ends on its own stops the node with a
    // non-zero exit and the reason, so a supervisor restarts it.
    let mut critical: tokio::task::JoinSet<(&'static str, anyhow::Result<()>)> =
        tokio::task::JoinSet::new();
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            alpr_shared::metrics::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint on {addr}"))?,
        ),
        None => None,
    };
    // Retention, hourly, sparing what the node's legal holds cover. Holds
    // it cannot read count as never refreshed: it then purges nothing, and
    // `edge status` says so.
    let retention_last: Arc<std::sync::Mutex<Option<crate::retention::Outcome>>> =
        Arc::new(std::sync::Mutex::new(None));
    {
        let held_by = store.clone();
        let holds: Arc<dyn crate::retention::HoldSource> = Arc::new(move || {
            match held_by.holds() {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "legal holds unreadable: retention keeps everything");
                    (Vec::new(), None)
                }
            }
        });
        tokio::spawn(crate::retention::schedule(
            store.clone(),
            holds,
            std::time::Duration::from_secs(3600),
            retention_last.clone(),
            cancel.clone(),
        ));
    }
    {
        let (store, status, cancel) = (store.clone(), status.clone(), cancel.clone());
        let retention = retention_last.clone();
        let socket = bind_status_socket(&config.socket_path())?;
        let (device, capture, gps) = (device.clone(), capture_health.clone(), gps.clone());
        let access = crate::policy::EdgeAccess::new(store.clone(), store.public_key());
        critical.spawn(async move {
            let r = serve_status(
                socket,
                device,
                store,
                status,
                capture,
                gps,
                access,
                retention,
                cancel.clone(),
            )
            .await;
            ("the status socket", must_run(r, &cancel))
        });
    }
    if let Some(listener) = metrics {
        info!(addr = %listener.local_addr()?, "metrics endpoint listening");
        let exporter = Arc::new(crate::health::EdgeExporter {
            store: store.clone(),
            sync: status.clone(),
            capture: capture_health.clone(),
        });
        let cancel = cancel.clone();
        critical.spawn(async move {
            let r = alpr_shared::metrics::serve(listener, exporter, cancel.clone())
                .await
                .map_err(anyhow::Error::from);
            ("the metrics endpoint", must_run(r, &cancel))
        });
    }
    {
        let (store, cancel) = (store.clone(), cancel.clone());
        critical.spawn(async move {
            let why = tokio::select! {
                _ = cancel.cancelled() => return ("the store writer", Ok(())),
                why = store.stopped() => why,
            };
            let why = why.unwrap_or_else(|| "it stopped".into());
            ("the store writer", Err(anyhow::anyhow!(why)))
        });
    }
    if config.sync.enabled {
        let (store, status, cancel, cfg, generations) = (
            store.clone(),
            status.clone(),
            cancel.clone(),
            config.clone(),
            generations.clone(),
        );
        critical.spawn(async move {
            let r = crate::sync::run(cfg, store, generations, status, cancel.clone()).await;
            ("sync", must_run(r, &cancel))
        });
    }
    // The node's lists, matched against every read: the policy's
    // exclusions, the bulk generations and the local entries.
    let matcher_source = crate::alert::MatcherSource::new();
    matcher_source.set_excluded(crate::alert::hotlist_policy(&store).excluded_categories);
    matcher_source.follow_bulk(generations.watch(), cancel.clone());
    {
        let s = store.clone();
        matcher_source.follow_local(
            store.watch_local_entries(),
            move || s.local_entries().map_err(|e| e.to_string()),
            cancel.clone(),
        );
    }
    tokio::spawn(crate::alert::back_match_loop(
        store.clone(),
        matcher_source.clone(),
        cancel.clone(),
    ));
    if config.capture.enabled() {
        let pipeline = crate::pipeline::Pipeline::open(&config.capture, &config.data_dir, &store)?
            .with_health(capture_health.clone())
            .with_gps(gps.clone())
            .with_alerter(Some(crate::alert::Alerter::new(
                store.clone(),
                &matcher_source,
            )));
        capture_health.update(|s| s.state = "running".into());
        let (store, cancel, health) = (store.clone(), cancel.clone(), capture_health.clone());
        critical.spawn_blocking(move || {
            let r = pipeline.run(&store, &cancel).map(|_| ());
            health.ended(r.as_ref().err().map(|e| format!("{e:#}")).as_deref());
            ("capture", r)
        });
    }
    if config.replay.file.is_some() || config.replay.generate > 0 {
        let (store, cancel, cfg) = (store.clone(), cancel.clone(), config.replay.clone());
        let health = capture_health.clone();
        health.update(|s| s.state = "running".into());
        critical.spawn(async move {
            let r = crate::replay::run(cfg, store, cancel).await;
            health.ended(r.as_ref().err().map(|e| format!("{e:#}")).as_deref());
            ("replay", r)
        });
    }
    let mut code = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = critical.join_next() => match r {
                // Capture or replay finished its source: the node goes on.
                Some(Ok((_, Ok(())))) => {}
                Some(Ok((task, Err(e)))) => {
                    // Capture, replay and sync fail when the store under
                    // them stops: name the cause, not the first to notice.
                    let mut why = store.stop_reason();
                    if why.is_none() {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        why = store.stop_reason();
                    }
                    let (task, e) = match why {
                        Some(why) if task != "the store writer" => ("the store writer", anyhow::anyhow!(why)),
                        _ => (task, e),
                    };
                    error!(task, reason = %format!("{e:#}"), "a critical task failed; the node stops so that its supervisor restarts it");
                    code = ExitCode::FAILURE;
                    cancel.cancel();
                    break;
                }
                Some(Err(e)) => {
                    error!(reason = %e, "a critical task panicked; the node stops so that its supervisor restarts it");
                    code = ExitCode::FAILURE;
                    cancel.cancel();
                    break;
                }
                None => cancel.cancelled().await,
            },
        }
    }
    store.close();
    while let Some(r) = critical.join_next().await {
        if let Ok((task, Err(e))) = r {
            error!(task, reason = %format!("{e:#}"), "failed while stopping");
        }
    }
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    info!("edge stopped");
    Ok(code)
}

/// A task that must run until shutdown: ending early is a failure.
fn must_run(r: anyhow::Result<()>, cancel: &CancellationToken) -> anyhow::Result<()> {
    match r {
        Ok(()) if !cancel.is_cancelled() => Err(anyhow::anyhow!("it ended on its own")),
        r => r,
    }
}

/// Largest request on the local socket (a search with its token).
pub const MAX_LOCAL_REQUEST: usize = 16 * 1024;

/// A request on the node's local socket: one JSON line (`status` alone is
/// the status, as older clients ask).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum LocalRequest {
    Status,
    Policy,
    Login { user: String, password: String },
    Logout { token: String },
    Search(crate::search::SearchRequest),
    HoldAdd(crate::holds::HoldAddRequest),
    HoldList(crate::holds::HoldListRequest),
    AlertList(crate::alert::AlertListRequest),
    AlertShow(crate::alert::AlertShowRequest),
    AlertDispose(crate::alert::AlertDisposeRequest),
    HotlistAdd(crate::hotlist::local::LocalAddRequest),
    HotlistEdit(crate::hotlist::local::LocalEditRequest),
    HotlistRemove(crate::hotlist::local::LocalRemoveRequest),
    HotlistList(crate::hotlist::local::LocalListRequest),
}

/// The answer to a request other than `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalAnswer {
    Ok(serde_json::Value),
    Error(String),
}

#[cfg(unix)]
#[allow(clippy::too_many_arguments)]
async fn serve_status(
    (listener, _bound): (tokio::net::UnixListener, BoundSocket),
    device: String,
    store: StoreHandle,
    status: SharedStatus,
    capture: CaptureHealth,
    gps: Option<GpsHandle>,
    access: crate::policy::EdgeAccess,
    retention: Arc<std::sync::Mutex<Option<crate::retention::Outcome>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            a = listener.accept() => a?,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let st = status
            .lock()
            .map(|s| status_of(&device, &store, &s, &capture))
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))
            .map(|mut st| {
                st.gps = gps
                    .as_ref()
                    .map(|g| g.state().summary(std::time::Instant::now()));
                st.retention = retention
                    .lock()
                    .ok()
                    .and_then(|r| r.as_ref().map(ToString::to_string));
                st
            })?;
        let access = access.clone();
        tokio::spawn(async move {
            let request = read_request(&mut sock).await;
            let bytes = match request {
                Ok(LocalRequest::Status) => serde_json::to_vec(&st).ok(),
                Ok(r) => serde_json::to_vec(&answer(&access, r).await).ok(),
                Err(e) => serde_json::to_vec(&LocalAnswer::Error(e)).ok(),
            };
            if let Some(bytes) = bytes {
                let _ = sock.write_all(&bytes).await;
            }
            let _ = sock.shutdown().await;
            drop(permit);
        });
    }
}

/// One request line, bounded in size and time.
#[cfg(unix)]
async fn read_request(sock: &mut tokio::net::UnixStream) -> Result<LocalRequest, String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = sock.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&b'\n') {
                break;
            }
            if buf.len() > MAX_LOCAL_REQUEST {
                return Err(format!("request over {MAX_LOCAL_REQUEST} bytes"));
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
        Ok(r) => r?,
        // An old client that sends nothing gets the status.
        Err(_) => return Ok(LocalRequest::Status),
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() || text == "status" {
        return Ok(LocalRequest::Status);
    }
    serde_json::from_str(text).map_err(|e| format!("bad request: {e}"))
}

async fn answer(access: &crate::policy::EdgeAccess, r: LocalRequest) -> LocalAnswer {
    let to_value = |v: Result<serde_json::Value, String>| match v {
        Ok(v) => LocalAnswer::Ok(v),
        Err(e) => LocalAnswer::Error(e),
    };
    match r {
        LocalRequest::Status => LocalAnswer::Error("status is answered apart".into()),
        LocalRequest::Policy => to_value(access.policy().and_then(|p| {
            match p {
                None => Err("this edge holds no policy yet".into()),
                Some((p, at)) => serde_json::to_value(crate::policy::PolicyView::of(
                    &p,
                    at,
                    alpr_shared::types::UnixMillis::now(),
                ))
                .map_err(|e| e.to_string()),
            }
        })),
        LocalRequest::Login { user, password } => to_value(
            access
                .login(&user, &password)
                .await
                .and_then(|ok| serde_json::to_value(ok).map_err(|e| e.to_string())),
        ),
        LocalRequest::Logout { token } => match access.logout(&token).await {
            Ok(()) => LocalAnswer::Ok(serde_json::Value::Null),
            Err(e) => LocalAnswer::Error(e),
        },
        LocalRequest::HoldAdd(req) => to_value(
            crate::holds::add(access, req)
                .await
                .and_then(|h| serde_json::to_value(h).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistAdd(req) => to_value(
            crate::hotlist::local::add(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistEdit(req) => to_value(
            crate::hotlist::local::edit(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistRemove(req) => to_value(
            crate::hotlist::local::remove(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HotlistList(req) => to_value(
            crate::hotlist::local::list(access, req)
                .await
                .and_then(|e| serde_json::to_value(e).map_err(|e| e.to_string())),
        ),
        LocalRequest::HoldList(req) => to_value(
            crate::holds::list(access, &req)
                .and_then(|l| serde_json::to_value(l).map_err(|e| e.to_string())),
        ),
        LocalRequest::Search(req) => to_value(
            crate::search::search(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertList(req) => to_value(
            crate::alert::list(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertShow(req) => to_value(
            crate::alert::show(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
        LocalRequest::AlertDispose(req) => to_value(
            crate::alert::dispose(access, req)
                .await
                .and_then(|a| serde_json::to_value(a).map_err(|e| e.to_string())),
        ),
    }
}

/// The status socket while it is bound: removed when the listener stops.
#[cfg(unix)]
struct BoundSocket(PathBuf);

#[cfg(unix)]
impl Drop for BoundSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bind the status socket, owner-only (0600). A stale socket of an earlier
/// run is replaced; anything else at that path (a file, a folder, a socket
/// another process answers on) is left alone and refused.
#[cfg(unix)]
fn bind_status_socket(
    path: &std::path::Path,
) -> anyhow::Result<(tokio::net::UnixListener, BoundSocket)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{} is the socket of a running process: is another edge using this data_dir?",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "refusing to replace {}: it is not the edge's status socket (move it away)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    let bound = BoundSocket(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok((listener, bound))
}

#[cfg(not(unix))]
fn bind_status_socket(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
#[allow(clippy::too_many_arguments)]
async fn serve_status(
    _socket: (),
    _device: String,
    _store: StoreHandle,
    _status: SharedStatus,
    _capture: CaptureHealth,
    _gps: Option<GpsHandle>,
    _access: crate::policy::EdgeAccess,
    _retention: Arc<std::sync::Mutex<Option<crate::retention::Outcome>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    cancel.cancelled().await;
    Ok(())
}

/// Ask the running node for its status.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    let st = query_status(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        println!("node         {}", st.device);
        let of = match st.hubs.iter().position(|h| *h == st.hub) {
            Some(i) if st.hubs.len() > 1 => format!(", {} of {} hubs", i + 1, st.hubs.len()),
            _ => String::new(),
        };
        println!(
            "link         {}  (hub {}{of}{})",
            st.link,
            st.hub,
            if st.metered { ", metered" } else { "" }
        );
        println!("log          {} reads", st.log_size);
        match st.policy_version {
            Some(v) => println!(
                "policy       v{v} (refreshed {}){}",
                st.policy_refreshed_at.as_deref().unwrap_or("never"),
                if st.policy_stale {
                    "; STALE: logins are refused until the hub is reached"
                } else {
                    ""
                }
            ),
            None => println!("policy       none yet (logins are refused until the hub sends one)"),
        }
        if let Some(e) = &st.policy_error {
            println!("POLICY REFUSED {e}");
        }
        println!(
            "holds        {} active (hub's merged {})",
            st.active_holds,
            st.holds_refreshed_at.as_deref().unwrap_or("never")
        );
        println!("local hotlist {} active entries", st.active_local_entries);
        if st.hotlists.is_empty() {
            println!("lists        none yet");
        } else {
            let lists: Vec<String> = st
                .hotlists
                .iter()
                .map(|(s, g)| format!("{s} #{g}"))
                .collect();
            println!("lists        {}", lists.join(", "));
        }
        if let Some(e) = &st.hotlist_error {
            println!("LIST REFUSED {e}");
        }
        if let Some(r) = &st.retention {
            println!("retention    {r}");
        }
        if let Some(c) = &st.identity_conflict {
            println!("IDENTITY CONFLICT: uploads stopped; a person must resolve it");
            println!("             {c}");
            println!("acknowledged nothing of this log (the hub's record is another)");
            println!(
                "backlog      unknown ({} reads, {} images not confirmed held)",
                st.log_size, st.images_pending
            );
        } else {
            println!(
                "acknowledged {} by the hub ({})",
                st.acked,
                match (&st.acked_at, st.receipt_current) {
                    (Some(at), true) => format!("confirmed on this connection, receipt of {at}"),
                    (Some(at), false) => {
                        format!("receipt of {at}, not yet confirmed on a current connection")
                    }
                    (None, _) => "no receipt yet".to_string(),
                }
            );
            println!(
                "backlog      {} reads, {} images",
                st.backlog.unwrap_or(st.log_size),
                st.images_pending
            );
        }
        if let Some(l) = &st.hub_lost {
            println!("hub lost     {l}");
        }
        if st.lost_entries > 0 {
            println!(
                "LOST         {} entries unreadable in this node's own store (this node's fault); signed loss records sent",
                st.lost_entries
            );
        }
        println!(
            "last sync    {}",
            st.last_sync.as_deref().unwrap_or("never")
        );
        if let Some(e) = &st.last_error {
            println!("last error   {e}");
        }
        let c = &st.capture;
        println!(
            "capture      {} ({} frames, {} failed)",
            c.state, c.frames, c.frames_failed
        );
        if let Some(e) = &c.last_error {
            println!("capture err  {e}");
        }
        if let Some(e) = &st.store_error {
            println!("store        failing, retrying: {e}");
        }
        if let Some(b) = st.disk_free {
            println!("disk free    {} MiB", b / (1 << 20));
        }
        for p in &st.problems {
            println!("PROBLEM      {p}");
        }
        if let Some(g) = &st.gps {
            let age = g
                .fix_age_ms
                .map(|ms| format!(", last fix {:.1} s ago", ms as f64 / 1000.0))
                .unwrap_or_default();
            println!("gps          {} (gpsd {}{age})", g.state, g.gpsd);
            if let Some(p) = &g.position {
                println!("position     {p}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For a service manager: exit 0 when the node runs and is healthy, 1 with
/// the reason otherwise (not running, the store cannot commit, the capture
/// source fails).
pub fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load_or_default(args.config.as_deref())?;
    match query_status(&config) {
        Err(e) => {
            println!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Ok(st) if st.problems.is_empty() => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Ok(st) => {
            println!("unhealthy: {}", st.problems.join("; "));
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(unix)]
pub fn query_status(config: &EdgeConfig) -> anyhow::Result<Status> {
    let out = local_call(config, b"status\n")?;
    serde_json::from_slice(&out).context("the node's answer")
}

/// Send a request to the running node's local socket.
#[cfg(unix)]
pub fn local_request(config: &EdgeConfig, r: &LocalRequest) -> anyhow::Result<serde_json::Value> {
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    let out = local_call(config, &line)?;
    match serde_json::from_slice::<LocalAnswer>(&out).context("the node's answer")? {
        LocalAnswer::Ok(v) => Ok(v),
        LocalAnswer::Error(e) => Err(anyhow::anyhow!(e)),
    }
}

#[cfg(not(unix))]
pub fn local_request(_config: &EdgeConfig, _r: &LocalRequest) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("the edge's local socket needs Unix")
}

#[cfg(unix)]
fn local_call(config: &EdgeConfig, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let path = config.socket_path();
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        use std::io::ErrorKind;
        match e.kind() {
            // The socket and its folder are the node's user's alone.
            ErrorKind::PermissionDenied => anyhow::anyhow!(
                "permission denied on {}: run `edge status` as the user the node runs as",
                path.display()
            ),
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow::anyhow!(
                "the node is not running (no status socket answers at {})",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot reach the node at {}: {e}", path.display()),
        }
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.take(64 << 20).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(not(unix))]
pub fn query_status(_config: &EdgeConfig) -> anyhow::Result<Status> {
    anyhow::bail!("edge status needs a Unix socket")
}
