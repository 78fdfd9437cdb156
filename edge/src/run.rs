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
use crate::store::{LogStatus, StoreHandle};
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
    pub acked: u64,
    pub backlog: u64,
    pub images_pending: u64,
    pub link: String,
    pub hub: String,
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub metered: bool,
    /// The gpsd client's state (vehicles, or where `gpsd` is configured).
    #[serde(default)]
    pub gps: Option<GpsStatus>,
}

fn status_of(device: &str, log: LogStatus, sync: &SyncStatus) -> Status {
    Status {
        device: device.to_owned(),
        log_size: log.len,
        acked: log.acked,
        backlog: log.backlog(),
        images_pending: log.images_pending,
        link: sync.link.clone(),
        hub: sync.hub.clone(),
        last_sync: sync.last_sync.map(|t| t.to_string()),
        last_error: sync.last_error.clone(),
        connects: sync.connects,
        metered: sync.metered,
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
    let device = store.device().to_string();
    info!(node = %device, log = store.status().len, acked = store.acked(), "edge starting");
    let cancel = CancellationToken::new();
    alpr_shared::cli::cancel_on_signals(cancel.clone());
    let status: SharedStatus = Arc::new(Mutex::new(SyncStatus::default()));
    let gps = config
        .capture
        .gpsd_address(device_kind(&config)? == DeviceKind::Vehicle)
        .map(|addr| crate::capture::gps::spawn(addr, cancel.clone()));

    let mut critical = tokio::task::JoinSet::new();
    {
        let (store, status, cancel) = (store.clone(), status.clone(), cancel.clone());
        let gps = gps.clone();
        let path = config.socket_path();
        let device = device.clone();
        critical.spawn(async move {
            serve_status(path, device, store, status, gps, cancel)
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
        let pipeline = crate::pipeline::Pipeline::open(&config.capture, &config.data_dir, &store)?
            .with_gps(gps.clone());
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
    gps: Option<GpsHandle>,
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
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))
            .map(|mut st| {
                st.gps = gps
                    .as_ref()
                    .map(|g| g.state().summary(std::time::Instant::now()));
                st
            })?;
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
    _gps: Option<GpsHandle>,
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
        println!("acknowledged {} by the hub", st.acked);
        println!(
            "backlog      {} reads, {} images",
            st.backlog, st.images_pending
        );
        println!(
            "last sync    {}",
            st.last_sync.as_deref().unwrap_or("never")
        );
        if let Some(e) = &st.last_error {
            println!("last error   {e}");
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
