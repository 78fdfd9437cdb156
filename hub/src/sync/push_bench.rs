//! `hub bench push`: how fast an operator's change to a bulk list is in
//! force on every edge. A real hub (`hub serve` in this process: QUIC,
//! HotlistService, redb) and N real QUIC connections on loopback, each
//! with its own node certificate; `--edges-per-socket` of them share one
//! client endpoint (a real edge has a socket of its own; one socket for all
//! overflows its kernel receive buffer when every edge gets its delta at
//! once, and QUIC's loss recovery then shows in the tail). Each simulated
//! edge runs the real edge sync core ([`EdgeSync`]); one edge first fetches
//! generation 1 whole over the protocol, which becomes every edge's base.
//! Then the operator imports generation 2 over the HTTPS API, and each
//! edge receives the delta, applies it (every `--apply-every`-th edge runs
//! the full [`delta::apply`] with its signature check; the others check
//! the frame and count it) and reports it applied. Figures: time from the
//! start of the import to applied on each edge, p50/p99/max.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::hotlist::generation::Generation;
use alpr_shared::hotlist::{delta, sample, Category, HotEntry};
use alpr_shared::sync::{EdgeEvent, EdgeSync, LinkState, LogSource, SyncTuning};
use alpr_shared::types::{DeviceId, DeviceKind, Hash32};
use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{Lane, ALPN};
use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Simulated edges connected at once.
    #[arg(long, default_value_t = 1000)]
    pub edges: usize,
    /// Rows of the list.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Rows the operator's change removes and adds.
    #[arg(long, default_value_t = 500)]
    pub change: usize,
    /// Every n-th edge applies the delta in full (signature check and all);
    /// 1 = every edge (all on this machine's cores).
    #[arg(long, default_value_t = 50)]
    pub apply_every: usize,
    /// Simulated edges sharing one UDP socket (file descriptors: edges / this).
    #[arg(long, default_value_t = 4)]
    pub edges_per_socket: usize,
    /// Where the temporary database folder goes (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub edges: usize,
    pub rows: u64,
    pub generation_bytes: usize,
    pub delta_bytes: usize,
    /// Edges that ran the full apply (the others checked and counted).
    pub full_applies: usize,
    /// The whole generation to one edge over the protocol (chunks, open, verify).
    pub whole_ms: f64,
    /// The operator's import over the API (parse, build, sign, durable).
    pub import_ms: f64,
    /// From the start of the import to applied, over the edges.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same, from the import's answer (the push alone).
    pub push_p50_ms: f64,
    pub push_p99_ms: f64,
    /// An operator's local entry (a partial plate) through the API, from
    /// the request to its document on each edge (loaded by those that
    /// apply in full).
    pub local_p50_ms: f64,
    pub local_p99_ms: f64,
}

struct NoLog;

impl LogSource for NoLog {
    fn log_len(&self) -> u64 {
        0
    }
    fn entries(&self, _: u64, _: usize, _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn pending_images(&self, _: u64, _: usize) -> Vec<(u64, Hash32)> {
        Vec::new()
    }
    fn image(&self, _: &Hash32) -> Option<Vec<u8>> {
        None
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What one simulated edge does with a list from the hub.
#[derive(Clone)]
struct EdgeRole {
    /// The base it holds (None: it holds nothing and takes the list whole).
    base: Option<Arc<Generation>>,
    apply_full: bool,
    /// The deployment's CA, which the hub's signing keys chain to.
    anchor: TrustAnchor,
}

/// What a simulated edge reports.
enum Outcome {
    /// Generation received whole (the seed edge).
    Whole(Arc<Generation>),
    /// The delta applied at this instant.
    Applied { at: Instant, delta_bytes: usize },
    /// A local entries document received (and, for the edges that apply
    /// in full, loaded) at this instant.
    Local { at: Instant },
}

/// One simulated edge: connect, hello (saying what it holds), run the
/// edge core until a list arrives and is applied; then stay connected
/// until `done` fires.
#[allow(clippy::too_many_arguments)]
async fn edge(
    endpoint: quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    name: DeviceId,
    role: EdgeRole,
    ready: tokio::sync::mpsc::Sender<()>,
    result: tokio::sync::mpsc::Sender<anyhow::Result<Outcome>>,
    done: CancellationToken,
    connecting: Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<()> {
    // Connections are made a few at a time, as edges come online; the
    // measure is of the push, not of 1,000 simultaneous handshakes.
    let permit = connecting.acquire_owned().await?;
    let conn = endpoint
        .connect_with(cfg, addr, "localhost")?
        .await
        .with_context(|| format!("{name}: connecting"))?;
    drop(permit);
    let anchor = role.anchor.clone();
    let start = Instant::now();
    let now = || start.elapsed();
    let mut core = EdgeSync::new(name.clone(), SyncTuning::default(), 0, 7, anchor.clone());
    if let Some(b) = &role.base {
        core.set_hotlist_held(&b.info().source, b.info().number);
    }
    core.link_up(now(), 0);
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[Lane::Control.tag()]).await?;
    let mut greeted = false;
    let mut outcomes = Vec::new();
    loop {
        while let Some(o) = core.poll_transmit(now(), &NoLog) {
            quic::write_frame(&mut send, &o.frame).await?;
        }
        if !greeted && core.state() == LinkState::Ready {
            greeted = true;
            let _ = ready.send(()).await;
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                EdgeEvent::HotlistFull {
                    source,
                    generation,
                    bytes,
                } => {
                    let anchor = anchor.clone();
                    let g = tokio::task::spawn_blocking(move || Generation::open(bytes, &anchor))
                        .await??;
                    core.hotlist_applied(&source, generation);
                    outcomes.push(Outcome::Whole(Arc::new(g)));
                }
                EdgeEvent::HotlistDelta {
                    source,
                    from: _,
                    to,
                    delta,
                } => {
                    let delta_bytes = delta.len();
                    if role.apply_full {
                        let base = role.base.clone().context("a delta without a base")?;
                        let anchor = anchor.clone();
                        let g = tokio::task::spawn_blocking(move || {
                            delta::apply(&base, &delta, &anchor)
                        })
                        .await??;
                        anyhow::ensure!(
                            g.info().number == to,
                            "the delta made the wrong generation"
                        );
                    }
                    core.hotlist_applied(&source, to);
                    outcomes.push(Outcome::Applied {
                        at: Instant::now(),
                        delta_bytes,
                    });
                }
                EdgeEvent::LocalEntries(doc) => {
                    if role.apply_full {
                        tokio::task::spawn_blocking(move || {
                            alpr_shared::hotlist::local::LocalEntriesDoc::load(&doc)
                        })
                        .await??;
                    }
                    outcomes.push(Outcome::Local { at: Instant::now() });
                }
                EdgeEvent::Refused(r) => anyhow::bail!("{name}: refused: {r:?}"),
                EdgeEvent::HotlistRefused { why, .. } => {
                    anyhow::bail!("{name}: list refused: {why}")
                }
                _ => {}
            }
        }
        if !outcomes.is_empty() {
            while let Some(o) = core.poll_transmit(now(), &NoLog) {
                quic::write_frame(&mut send, &o.frame).await?;
            }
            let whole = outcomes.iter().any(|o| matches!(o, Outcome::Whole(_)));
            for o in outcomes.drain(..) {
                let _ = result.send(Ok(o)).await;
            }
            if whole {
                // The seed edge's work is done: it leaves.
                break;
            }
        }
        let frame = tokio::select! {
            _ = done.cancelled() => break,
            f = quic::read_frame(&mut recv, Lane::Control.max_frame_from_hub()) => f?,
        };
        core.handle_frame(frame, now(), &NoLog);
    }
    conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
    Ok(())
}

fn list_rows(n: usize, seed: u64) -> Vec<HotEntry> {
    let mut rows = sample::entries(n, seed);
    rows.retain(|e| e.category != Category::Immigration);
    rows
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let base_dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hub-bench-push-")
        .tempdir_in(&base_dir)
        .with_context(|| format!("creating a folder in {}", base_dir.display()))?;
    let pki = dir.path().join("pki");
    let authority = crate::bench::write_pki(&pki)?;
    let edges = args.edges.max(1);
    // Node certificates: the seed edge and the N edges.
    let mut creds = Vec::with_capacity(edges + 1);
    for i in 0..=edges {
        let name = DeviceId::new(format!("bench-{i:05}"))?;
        let (issued, _) = authority.issue_device(&name, DeviceKind::Pole, 30)?;
        creds.push((
            name,
            issued.cert_pem.into_bytes(),
            issued.key_pem.as_bytes().to_vec(),
        ));
    }
    let hotlist: crate::hotlist::HotlistConfig =
        toml::from_str("max_change = 0.5\n[[sources]]\nname = \"ncic\"\nformat = \"ncic\"\n")?;
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("hub-data"),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        max_connections: edges + 16,
        max_handshakes: edges + 16,
        hotlist,
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
    let bootstrap = config.data_dir.join(crate::users::BOOTSTRAP_FILE);
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::sync::serve(config, cancel.clone(), Some(tx)));
    let Ok(addr) = rx.await else {
        let why = match server.await {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(())) => "it stopped".into(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("the hub did not start: {why}");
    };
    let done = CancellationToken::new();
    let result = measure(&args, addr, &ca, &bootstrap, creds, done.clone()).await;
    done.cancel();
    cancel.cancel();
    let _ = server.await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:>6} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "edges",
            "rows",
            "delta B",
            "whole ms",
            "import ms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "push p99"
        );
        println!(
            "{:>6} {:>8} {:>10} {:>9.0} {:>9.0} {:>9.0} {:>8.0} {:>8.0} {:>8.0}",
            report.edges,
            report.rows,
            report.delta_bytes,
            report.whole_ms,
            report.import_ms,
            report.p50_ms,
            report.p99_ms,
            report.max_ms,
            report.push_p99_ms
        );
        println!(
            "(from the start of the import to applied on each edge; {} edges applied in full; target p99 ≤ 1000 ms)",
            report.full_applies
        );
        println!(
            "local entry (partial plate) added through the API, to its document on each edge (every --apply-every-th loads it): p50 {:.0} ms, p99 {:.0} ms",
            report.local_p50_ms, report.local_p99_ms
        );
    }
    Ok(())
}

async fn measure(
    args: &PushArgs,
    addr: SocketAddr,
    ca: &[u8],
    bootstrap: &std::path::Path,
    creds: Vec<(DeviceId, Vec<u8>, Vec<u8>)>,
    done: CancellationToken,
) -> anyhow::Result<PushReport> {
    use crate::api::client::ApiClient;
    let anchor = TrustAnchor::from_pem(ca)?;
    // An administrator, then an operator who may import.
    let b: crate::users::BootstrapFile = serde_json::from_slice(&std::fs::read(bootstrap)?)?;
    let url = format!("https://{}", b.api);
    let user = |name: &str, role| crate::users::NewUser {
        username: name.into(),
        agency: "BENCH0000".into(),
        title: "bench".into(),
        role,
        password: "bench-password-0123".into(),
        training_completed: "2026-01-01".into(),
        training_expires: "2099-01-01".into(),
    };
    let _: crate::users::UserView = ApiClient::connect(&url, ca)
        .await?
        .post(
            "/api/v1/bootstrap",
            &crate::api::users::BootstrapRequest {
                token: b.token,
                user: user("admin", crate::users::Role::Administrator),
            },
        )
        .await?;
    let login = |name: &'static str| {
        let url = url.clone();
        async move {
            let mut c = ApiClient::connect(&url, ca).await?;
            let l: crate::users::Login = c
                .post(
                    "/api/v1/login",
                    &crate::api::users::LoginRequest {
                        username: name.into(),
                        password: "bench-password-0123".into(),
                    },
                )
                .await?;
            c.token = Some(l.token);
            anyhow::Ok(c)
        }
    };
    let mut admin = login("admin").await?;
    let _: serde_json::Value = admin
        .post("/api/v1/users", &user("op", crate::users::Role::Operator))
        .await?;
    let mut op = login("op").await?;
    let import_path = "/api/v1/hotlists/ncic/import?format=ncic";

    let mut rows = list_rows(args.rows, 1);
    let _: serde_json::Value = op.post_bytes(import_path, sample::ncic(&rows)).await?;

    let liveness = Liveness {
        keep_alive: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(120),
    };
    let per_socket = args.edges_per_socket.max(1);
    let mut endpoints: Vec<quinn::Endpoint> = Vec::new();
    for _ in 0..(args.edges + 1).div_ceil(per_socket) {
        endpoints.push(quinn::Endpoint::client(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        )))?);
    }
    let mut spawned = 0usize;
    let connecting = Arc::new(tokio::sync::Semaphore::new(32));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.edges + 1);
    // Room for each edge's outcomes of every phase (documents at welcome,
    // the delta, the local entry).
    let (res_tx, mut res_rx) = tokio::sync::mpsc::channel(4 * (args.edges + 1));
    let mut tasks = tokio::task::JoinSet::new();
    let mut creds = creds.into_iter();
    let mut spawn = |tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
                     (name, cert, key): (DeviceId, Vec<u8>, Vec<u8>),
                     role: EdgeRole|
     -> anyhow::Result<()> {
        let cfg = quic::client_config(ca, &cert, &key, ALPN, liveness)?;
        let endpoint = endpoints
            .get(spawned / per_socket)
            .context("no endpoint left")?
            .clone();
        spawned += 1;
        tasks.spawn(edge(
            endpoint,
            cfg,
            addr,
            name,
            role,
            ready_tx.clone(),
            res_tx.clone(),
            done.clone(),
            connecting.clone(),
        ));
        Ok(())
    };

    // The seed edge holds nothing: generation 1 comes whole.
    let t = Instant::now();
    spawn(
        &mut tasks,
        creds.next().context("no seed edge")?,
        EdgeRole {
            base: None,
            apply_full: true,
            anchor: anchor.clone(),
        },
    )?;
    let base = loop {
        match res_rx.recv().await.context("the seed edge stopped")?? {
            Outcome::Whole(g) => break g,
            Outcome::Applied { .. } => anyhow::bail!("the seed edge got a delta"),
            Outcome::Local { .. } => {}
        }
    };
    // (It leaves before its welcome: the list comes first.)
    let whole_ms = t.elapsed().as_secs_f64() * 1e3;

    // N edges holding generation 1, all connected and welcomed.
    let every = args.apply_every.max(1);
    for (i, c) in creds.enumerate() {
        spawn(
            &mut tasks,
            c,
            EdgeRole {
                base: Some(base.clone()),
                apply_full: i % every == 0,
                anchor: anchor.clone(),
            },
        )?;
    }
    let mut welcomed = 0;
    while welcomed < args.edges {
        tokio::select! {
            r = ready_rx.recv() => {
                r.context("edges stopped")?;
                welcomed += 1;
            }
            // (The seed edge's task ends; another's error ends the run.)
            Some(r) = tasks.join_next() => r.context("an edge task")??,
        }
    }

    // The operator's change.
    let change = args.change.min(rows.len() / 4).max(1);
    rows.truncate(rows.len() - change);
    rows.extend(list_rows(change, 2));
    let file = sample::ncic(&rows);
    // A fresh API connection: the first may have idled out meanwhile.
    let mut op = login("op").await?;
    let started = Instant::now();
    let t0: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let _ = t0.set(started);
    let _: serde_json::Value = op.post_bytes(import_path, file).await?;
    let imported = started.elapsed();
    let mut lat = Vec::with_capacity(args.edges);
    let mut push = Vec::with_capacity(args.edges);
    let mut delta_bytes = 0;
    while lat.len() < args.edges {
        let r = tokio::select! {
            r = res_rx.recv() => r.context("edges stopped")?,
            Some(r) = tasks.join_next() => {
                r.context("an edge task")??;
                continue;
            }
            _ = tokio::time::sleep(Duration::from_secs(120)) => {
                anyhow::bail!("{} of {} edges applied the change after 120 s", lat.len(), args.edges)
            }
        };
        match r? {
            Outcome::Applied { at, delta_bytes: d } => {
                delta_bytes = d;
                let since = at.duration_since(started);
                lat.push(since.as_secs_f64() * 1e3);
                push.push(since.saturating_sub(imported).as_secs_f64() * 1e3);
            }
            Outcome::Whole(_) | Outcome::Local { .. } => {}
        }
    }

    // An operator's local entry: a partial plate from a witness.
    let fields = alpr_shared::hotlist::local::EntryFields {
        plate: Some("7AB*".into()),
        reason: Some("bench: hit and run".into()),
        ..Default::default()
    };
    let local_started = Instant::now();
    let _: serde_json::Value = op.post("/api/v1/hotlist/local", &fields).await?;
    let mut local = Vec::with_capacity(args.edges);
    while local.len() < args.edges {
        let r = tokio::select! {
            r = res_rx.recv() => r.context("edges stopped")?,
            Some(r) = tasks.join_next() => {
                r.context("an edge task")??;
                continue;
            }
            _ = tokio::time::sleep(Duration::from_secs(120)) => {
                anyhow::bail!("{} of {} edges had the local entry after 120 s", local.len(), args.edges)
            }
        };
        // (Documents sent at welcome came before the entry.)
        if let Outcome::Local { at } = r? {
            if at >= local_started {
                local.push(at.duration_since(local_started).as_secs_f64() * 1e3);
            }
        }
    }
    done.cancel();
    while let Some(r) = tasks.join_next().await {
        r.context("an edge task")??;
    }
    for e in &endpoints {
        e.wait_idle().await;
    }
    lat.sort_by(f64::total_cmp);
    push.sort_by(f64::total_cmp);
    local.sort_by(f64::total_cmp);
    Ok(PushReport {
        edges: args.edges,
        rows: base.info().rows,
        generation_bytes: base.bytes().len(),
        delta_bytes,
        full_applies: args.edges.div_ceil(every),
        whole_ms,
        import_ms: imported.as_secs_f64() * 1e3,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        push_p50_ms: percentile(&push, 0.50),
        push_p99_ms: percentile(&push, 0.99),
        local_p50_ms: percentile(&local, 0.50),
        local_p99_ms: percentile(&local, 0.99),
    })
}
