//! `edge run`, `edge status` and `edge health`: the node's composition
//! root (it opens the store, starts capture, recognition, matching, sync,
//! retention and the local socket, [`crate::local`]) and the commands that
//! ask the running node how it is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::crypto::SecretKey;
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::EdgeConfig;
use crate::health::CaptureHealth;
use crate::local::{bind_status_socket, query_status, serve_status};
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

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The running node's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
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
    for cam in &config.capture.cameras {
        let pipeline = crate::pipeline::Pipeline::open_camera(&config.capture, cam, &cancel)?
            .with_health(capture_health.clone())
            .with_gps(gps.clone())
            .with_alerter(Some(crate::alert::Alerter::new(
                store.clone(),
                &matcher_source,
            )));
        if let Some(stats) = pipeline.camera_stats() {
            capture_health.add_camera(stats);
        }
        capture_health.update(|s| s.state = "running".into());
        let (store, cancel, health) = (store.clone(), cancel.clone(), capture_health.clone());
        critical.spawn_blocking(move || {
            let r = pipeline.run(&store, &cancel).map(|_| ());
            if let Err(e) = &r {
                health.ended(Some(&format!("{e:#}")));
            }
            ("camera", r)
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
        for cam in &c.cameras {
            println!(
                "camera       {} {} ({} s): {} received, {} decoded, {} analysed, {} dropped, {} still, {} corrupt, {} reconnects",
                cam.name,
                cam.link,
                cam.for_secs,
                cam.frames_received,
                cam.frames_decoded,
                cam.frames_analysed,
                cam.frames_dropped,
                cam.frames_still,
                cam.frames_corrupt,
                cam.reconnects
            );
            if let Some(e) = &cam.error {
                println!("camera err   {}: {e}", cam.name);
            }
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
