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

use crate::config::EdgeConfig;
use crate::store::{LogStatus, StoreHandle};
use crate::sync::{SharedStatus, SyncStatus};

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
    pub hub: String,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub metered: bool,
    /// Why uploads stopped, when the hub's record is not this node's log.
    pub identity_conflict: Option<String>,
    /// The hub lost reads it had acknowledged (restored from a backup).
    pub hub_lost: Option<String>,
    /// Entries of this node's own log its store could not read back, and
    /// recorded as lost with a signed loss entry: the node's fault.
    pub lost_entries: u64,
    pub own_loss: Option<String>,
}

fn status_of(device: &str, log: LogStatus, sync: &SyncStatus) -> Status {
    Status {
        device: device.to_owned(),
        log_size: log.len,
        acked: log.acked,
        acked_at: log.acked_at.map(|t| t.to_string()),
        receipt_current: sync.receipt_current,
        backlog: sync.identity_conflict.is_none().then(|| log.backlog()),
        images_pending: log.images_pending,
        link: sync.link.clone(),
        hub: sync.hub.clone(),
        last_sync: sync.last_sync.map(|t| t.to_string()),
        last_error: sync.last_error.clone(),
        connects: sync.connects,
        metered: sync.metered,
        identity_conflict: sync.identity_conflict.clone(),
        hub_lost: sync.hub_lost.clone(),
        lost_entries: log.lost,
        own_loss: sync.own_loss.clone(),
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
    let key = std::fs::read_to_string(&config.key)
        .with_context(|| format!("reading {}", config.key.display()))?;
    let anchor = TrustAnchor::from_pem(&ca).context("the CA certificate")?;
    let dc = anchor
        .check_device_pem(&cert)
        .context("this node's certificate")?;
    let key = SecretKey::from_pkcs8_pem(&key).context("this node's key")?;
    anyhow::ensure!(
        key.public() == dc.key,
        "the key does not match the certificate"
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    StoreHandle::open(&config.db_path(), key, dc.name).context("opening the store")
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
    let device = store.device().to_string();
    info!(node = %device, log = store.status().len, acked = store.acked(), "edge starting");
    let cancel = CancellationToken::new();
    alpr_shared::cli::cancel_on_signals(cancel.clone());
    let status: SharedStatus = Arc::new(Mutex::new(SyncStatus::default()));

    let mut critical = tokio::task::JoinSet::new();
    {
        let (store, status, cancel) = (store.clone(), status.clone(), cancel.clone());
        let path = config.socket_path();
        let device = device.clone();
        critical.spawn(async move {
            serve_status(path, device, store, status, cancel)
                .await
                .context("status socket")
        });
    }
    if config.sync.enabled {
        let (store, status, cancel, cfg) = (
            store.clone(),
            status.clone(),
            cancel.clone(),
            config.clone(),
        );
        critical.spawn(async move {
            crate::sync::run(cfg, store, status, cancel)
                .await
                .context("sync")
        });
    }
    let capture = if config.capture.enabled() {
        let pipeline = crate::pipeline::Pipeline::open(&config.capture, &config.data_dir)?;
        let (store, cancel) = (store.clone(), cancel.clone());
        Some(tokio::task::spawn_blocking(move || {
            pipeline.run(&store, &cancel)
        }))
    } else {
        None
    };
    let replay = if config.replay.file.is_some() || config.replay.generate > 0 {
        let (store, cancel, cfg) = (store.clone(), cancel.clone(), config.replay.clone());
        Some(tokio::spawn(async move {
            crate::replay::run(cfg, store, cancel).await
        }))
    } else {
        None
    };
    let mut code = ExitCode::SUCCESS;
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = critical.join_next(), if !cancel.is_cancelled() => {
            // A critical task ended on its own: that is a failure.
            match r {
                Some(Ok(Ok(()))) if cancel.is_cancelled() => {}
                Some(Ok(Err(e))) => error!(error = %format!("{e:#}"), "a critical task failed"),
                _ => error!("a critical task ended"),
            }
            if !cancel.is_cancelled() {
                code = ExitCode::FAILURE;
            }
            cancel.cancel();
        }
    }
    if let Some(c) = capture {
        match c.await {
            Ok(Err(e)) => error!(error = %format!("{e:#}"), "capture failed"),
            Err(e) => error!(error = %e, "capture task"),
            Ok(Ok(_)) => {}
        }
    }
    if let Some(r) = replay {
        match r.await {
            Ok(Err(e)) => error!(error = %format!("{e:#}"), "replay failed"),
            Err(e) => error!(error = %e, "replay task"),
            Ok(Ok(())) => {}
        }
    }
    while critical.join_next().await.is_some() {}
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    let _ = std::fs::remove_file(config.socket_path());
    info!("edge stopped");
    Ok(code)
}

#[cfg(unix)]
async fn serve_status(
    path: PathBuf,
    device: String,
    store: StoreHandle,
    status: SharedStatus,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
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
            .map(|s| status_of(&device, store.status(), &s))
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))?;
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), sock.read(&mut buf)).await;
            if let Ok(bytes) = serde_json::to_vec(&st) {
                let _ = sock.write_all(&bytes).await;
            }
            let _ = sock.shutdown().await;
            drop(permit);
        });
    }
}

#[cfg(not(unix))]
async fn serve_status(
    _path: PathBuf,
    _device: String,
    _store: StoreHandle,
    _status: SharedStatus,
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
        println!(
            "link         {}  (hub {}{})",
            st.link,
            st.hub,
            if st.metered { ", metered" } else { "" }
        );
        println!("log          {} reads", st.log_size);
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
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
pub fn query_status(config: &EdgeConfig) -> anyhow::Result<Status> {
    use std::io::{Read, Write};
    let path = config.socket_path();
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "the node is not running (no status socket at {})",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(b"status\n")?;
    let mut out = Vec::new();
    s.take(1 << 20).read_to_end(&mut out)?;
    serde_json::from_slice(&out).context("the node's answer")
}

#[cfg(not(unix))]
pub fn query_status(_config: &EdgeConfig) -> anyhow::Result<Status> {
    anyhow::bail!("edge status needs a Unix socket")
}
