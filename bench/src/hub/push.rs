//! `alpr-bench hub push`: how fast an operator's change to a bulk list is in
//! force on every edge. A real hub (`hub serve`'s code in this process:
//! QUIC, HotlistService, redb) and N simulated edges in a process of the
//! edge binary (`alpr-bench edge push-edges`), each a real QUIC connection with
//! its own node certificate that applies what it receives the way `edge
//! run` does — the edge's own code: the hub's key learnt from its
//! certificate, the list checked against it, stored durably in the edge's
//! own folder, and the matcher rebuilt and swapped in.
//!
//! A seed edge first fetches generation 1 whole over the protocol; every
//! edge starts from its own copy of that file. Then the operator imports
//! generation 2 over the HTTPS API, and the figures count from the
//! operator's request: the delta *delivered* to each edge, and the new
//! generation *applied* (in force) on each edge and on every edge (the
//! last one). The N edges share this machine's cores for their applies,
//! so the applied figures include waiting for a core; `alpr-bench edge hotlist`
//! times one edge's apply alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alpr_shared::hotlist::push_events::{now_us, PushEvent};
use alpr_shared::hotlist::{sample, Category, HotEntry};
use alpr_shared::types::{DeviceId, DeviceKind};
use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::hub::served::{loopback_config, ServedHub};
use alpr_hub::config::HubConfig;

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
    /// Simulated edges sharing one UDP socket (file descriptors: edges / this).
    #[arg(long, default_value_t = 4)]
    pub edges_per_socket: usize,
    /// The binary that runs the simulated edges as `BIN edge push-edges`
    /// (default: this `alpr-bench`).
    #[arg(long)]
    pub edge_bin: Option<PathBuf>,
    /// Where the temporary folder goes (the hub's database and every
    /// edge's lists; default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub allow_tmpfs: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub edges: usize,
    pub rows: u64,
    pub generation_bytes: u64,
    pub delta_bytes: u64,
    /// The whole generation to the seed edge over the protocol (chunks,
    /// check, durable store, matcher).
    pub whole_ms: f64,
    /// The operator's import over the API, from the request to its answer
    /// (parse, build, sign, durable store, publish).
    pub import_ms: f64,
    /// From the operator's request to the delta at each edge (its frames
    /// checked by the edge's sync core).
    pub delivered_p50_ms: f64,
    pub delivered_p99_ms: f64,
    pub delivered_max_ms: f64,
    /// From the operator's request to the new generation in force on each
    /// edge: signature checked, stored durably, matcher rebuilt.
    pub applied_p50_ms: f64,
    pub applied_p99_ms: f64,
    /// ... on every edge (the last one).
    pub applied_every_edge_ms: f64,
    /// Edges that applied the change (every one, or the run fails).
    pub applied_edges: usize,
    /// From delivered to applied on each edge, waiting for one of this
    /// machine's `cores` (which all the simulated edges share) included.
    pub apply_p50_ms: f64,
    pub apply_p99_ms: f64,
    pub cores: usize,
    /// An operator's local entry (a partial plate) through the API, from
    /// the request to its document delivered and loaded on each edge.
    pub local_p50_ms: f64,
    pub local_p99_ms: f64,
    /// The filesystem of the hub's database and the edges' lists.
    pub fs: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn list_rows(n: usize, seed: u64) -> Vec<HotEntry> {
    let mut rows = sample::entries(n, seed);
    rows.retain(|e| e.category != Category::Immigration);
    rows
}

/// The binary that runs the simulated edges: `--edge-bin`, else this one
/// (`alpr-bench edge push-edges`).
fn edge_binary(args: &PushArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.edge_bin {
        return Ok(p.clone());
    }
    std::env::current_exe().context("finding this binary")
}

/// Node certificates for the seed (`bench-00000`) and the N edges, one
/// folder each under `dir`.
fn write_edges(
    dir: &Path,
    authority: &alpr_shared::pki::Authority,
    edges: usize,
) -> anyhow::Result<()> {
    for i in 0..=edges {
        let name = DeviceId::new(format!("bench-{i:05}"))?;
        let (issued, _) = authority.issue_device(&name, DeviceKind::Pole, 30)?;
        let folder = dir.join(name.as_str());
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("node.crt"), issued.cert_pem.as_bytes())?;
        std::io::Write::write_all(
            &mut alpr_shared::private::create_private_file(&folder.join("node.key"))?,
            issued.key_pem.as_bytes(),
        )?;
    }
    Ok(())
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.edges > 0, "need at least one edge");
    let edge_bin = edge_binary(&args)?;
    let base_dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hub-bench-push-")
        .tempdir_in(&base_dir)
        .with_context(|| format!("creating a folder in {}", base_dir.display()))?;
    crate::hub::on_disk(
        dir.path(),
        args.allow_tmpfs,
        "the edges' durable stores would cost nothing",
    )?;
    let pki = dir.path().join("pki");
    let authority = crate::hub::write_pki(&pki)?;
    let edges_dir = dir.path().join("edges");
    write_edges(&edges_dir, &authority, args.edges)?;
    let hotlist: alpr_hub::hotlist::HotlistConfig =
        toml::from_str("max_change = 0.5\n[[sources]]\nname = \"ncic\"\nformat = \"ncic\"\n")?;
    let config = HubConfig {
        max_connections: args.edges + 16,
        max_handshakes: args.edges + 16,
        hotlist,
        ..loopback_config(&dir.path().join("hub-data"), &pki)
    };
    let hub = ServedHub::start(config).await?;
    let result = measure(&args, &hub, &edge_bin, &pki, &edges_dir, dir.path()).await;
    let stopped = hub.stop().await;
    let report = result?;
    stopped?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &PushReport) {
    println!(
        "alpr-bench hub push: {} edges, {} rows ({} bytes), a change of {} delta bytes; on {}",
        r.edges, r.rows, r.generation_bytes, r.delta_bytes, r.fs
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        "from the operator's request (API) to", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:<52} {:>9.0}",
        "  the import's answer (parse, build, sign, store)", r.import_ms
    );
    println!(
        "{:<52} {:>9.0} {:>9.0} {:>9.0}",
        "  the delta delivered to each edge",
        r.delivered_p50_ms,
        r.delivered_p99_ms,
        r.delivered_max_ms
    );
    println!(
        "{:<52} {:>9.0} {:>9.0} {:>9.0}",
        "  applied on each edge (checked, stored, matcher)",
        r.applied_p50_ms,
        r.applied_p99_ms,
        r.applied_every_edge_ms
    );
    println!(
        "applied on every edge ({} of {}): {:.0} ms (target p99 ≤ 1000 ms)",
        r.applied_edges, r.edges, r.applied_every_edge_ms
    );
    println!(
        "one edge's apply, delivered to in force: p50 {:.0} ms, p99 {:.0} ms — the {} edges share \
         this machine's {} cores, so this includes waiting for a core",
        r.apply_p50_ms, r.apply_p99_ms, r.edges, r.cores
    );
    println!(
        "the whole list to the seed edge: {:.0} ms; a local entry (partial plate) through the API \
         to its document on each edge: p50 {:.0} ms, p99 {:.0} ms",
        r.whole_ms, r.local_p50_ms, r.local_p99_ms
    );
}

/// The edge process's event lines.
struct Edges {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

impl Edges {
    fn start(
        bin: &Path,
        hub: std::net::SocketAddr,
        ca: &Path,
        dir: &Path,
        log: PathBuf,
        per_socket: usize,
    ) -> anyhow::Result<Edges> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["edge", "push-edges", "--hub", &hub.to_string()])
            .arg("--ca")
            .arg(ca)
            .arg("--dir")
            .arg(dir)
            .args(["--edges-per-socket", &per_socket.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("the edges' output")?;
        Ok(Edges {
            child,
            lines: BufReader::new(stdout).lines(),
            log,
        })
    }

    /// The next event, within `within`.
    async fn next(&mut self, within: Duration) -> anyhow::Result<PushEvent> {
        loop {
            let line = tokio::time::timeout(within, self.lines.next_line())
                .await
                .map_err(|_| anyhow::anyhow!("no word from the edges for {within:?}"))
                .and_then(|l| l.context("reading the edges' output"))
                .and_then(|l| l.context("the edge process ended"))
                .map_err(|e| e.context(self.log_tail()))?;
            // (Anything else on stdout is not ours.)
            let Ok(event) = serde_json::from_str::<PushEvent>(&line) else {
                continue;
            };
            if let PushEvent::Failed { edge, error } = &event {
                anyhow::bail!("edge {edge} failed: {error}");
            }
            return Ok(event);
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "the edge process's last log lines:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    /// Close its input (it disconnects every edge and exits).
    async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status.success(), "the edge process: {status}");
            }
            Err(_) => {
                let _ = self.child.kill().await;
                anyhow::bail!("the edge process did not stop within 60 s");
            }
        }
        Ok(())
    }
}

/// What one run timed (milliseconds).
struct Timings {
    whole_ms: f64,
    generation_bytes: u64,
    import_ms: f64,
    delta_bytes: u64,
    delivered: Vec<f64>,
    applied: Vec<f64>,
    apply: Vec<f64>,
    local: Vec<f64>,
}

fn ms_since(t0_us: u64, at_us: u64) -> f64 {
    at_us.saturating_sub(t0_us) as f64 / 1e3
}

async fn measure(
    args: &PushArgs,
    hub: &ServedHub,
    edge_bin: &Path,
    pki: &Path,
    edges_dir: &Path,
    dir: &Path,
) -> anyhow::Result<PushReport> {
    let import_path = "/api/v1/hotlists/ncic/import?format=ncic";
    let mut op = hub.operator().await?;
    let mut rows = list_rows(args.rows, 1);
    let _: serde_json::Value = op.post_bytes(import_path, sample::ncic(&rows)).await?;

    let mut edges = Edges::start(
        edge_bin,
        hub.addr,
        &pki.join("ca.crt"),
        edges_dir,
        dir.join("edges.log"),
        args.edges_per_socket,
    )?;
    let outcome = async {
        // Setting up takes a while with many edges: each opens its store.
        let setup = Duration::from_secs(600);
        let (whole_ms, generation_bytes) = loop {
            if let PushEvent::Whole { ms, bytes, .. } = edges.next(setup).await? {
                break (ms, bytes);
            }
        };
        loop {
            if let PushEvent::Ready { edges: n } = edges.next(setup).await? {
                anyhow::ensure!(n == args.edges, "{n} of {} edges connected", args.edges);
                break;
            }
        }

        // The operator's change, timed from the request.
        let change = args.change.min(rows.len() / 4).max(1);
        rows.truncate(rows.len() - change);
        rows.extend(list_rows(change, 2));
        let file = sample::ncic(&rows);
        // A fresh API connection: the first may have idled out meanwhile.
        let mut op = hub.login("op").await?;
        let t0 = now_us();
        let _: serde_json::Value = op.post_bytes(import_path, file).await?;
        let import_ms = ms_since(t0, now_us());
        let mut delivered = vec![None; args.edges];
        let mut applied = vec![None; args.edges];
        let mut delta_bytes = 0;
        let mut pending = 2 * args.edges;
        while pending > 0 {
            match edges.next(setup).await? {
                PushEvent::Delivered {
                    edge, at_us, bytes, ..
                } => {
                    delta_bytes = bytes;
                    if let Some(d) = delivered.get_mut(edge) {
                        pending -= usize::from(d.replace(at_us).is_none());
                    }
                }
                PushEvent::Applied {
                    edge,
                    at_us,
                    generation,
                } => {
                    anyhow::ensure!(
                        generation == 2,
                        "edge {edge} applied generation {generation}"
                    );
                    if let Some(a) = applied.get_mut(edge) {
                        pending -= usize::from(a.replace(at_us).is_none());
                    }
                }
                _ => {}
            }
        }
        let mut apply = Vec::new();
        for (d, a) in delivered.iter().zip(&applied) {
            if let (Some(d), Some(a)) = (d, a) {
                apply.push(ms_since(*d, *a));
            }
        }
        let delivered: Vec<f64> = delivered
            .iter()
            .flatten()
            .map(|&at| ms_since(t0, at))
            .collect();
        let applied: Vec<f64> = applied
            .iter()
            .flatten()
            .map(|&at| ms_since(t0, at))
            .collect();

        // An operator's local entry: a partial plate from a witness.
        let fields = alpr_shared::hotlist::local::EntryFields {
            plate: Some("7AB*".into()),
            reason: Some("bench: hit and run".into()),
            ..Default::default()
        };
        let t1 = now_us();
        let _: serde_json::Value = op.post("/api/v1/hotlist/local", &fields).await?;
        let mut local = vec![None; args.edges];
        let mut waiting = args.edges;
        while waiting > 0 {
            // (Documents sent at welcome came before the entry.)
            if let PushEvent::Local { edge, at_us } = edges.next(setup).await? {
                if at_us >= t1 {
                    if let Some(l) = local.get_mut(edge) {
                        waiting -= usize::from(l.replace(ms_since(t1, at_us)).is_none());
                    }
                }
            }
        }
        let local: Vec<f64> = local.into_iter().flatten().collect();
        anyhow::Ok(Timings {
            whole_ms,
            generation_bytes,
            import_ms,
            delta_bytes,
            delivered,
            applied,
            apply,
            local,
        })
    };
    let outcome = outcome.await;
    let stopped = edges.stop().await;
    let t = outcome?;
    stopped?;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let (delivered, applied, apply, local) = (
        sorted(t.delivered),
        sorted(t.applied),
        sorted(t.apply),
        sorted(t.local),
    );
    Ok(PushReport {
        edges: args.edges,
        rows: rows.len() as u64,
        generation_bytes: t.generation_bytes,
        delta_bytes: t.delta_bytes,
        whole_ms: t.whole_ms,
        import_ms: t.import_ms,
        delivered_p50_ms: percentile(&delivered, 0.50),
        delivered_p99_ms: percentile(&delivered, 0.99),
        delivered_max_ms: delivered.last().copied().unwrap_or(0.0),
        applied_p50_ms: percentile(&applied, 0.50),
        applied_p99_ms: percentile(&applied, 0.99),
        applied_every_edge_ms: applied.last().copied().unwrap_or(0.0),
        applied_edges: applied.len(),
        apply_p50_ms: percentile(&apply, 0.50),
        apply_p99_ms: percentile(&apply, 0.99),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        local_p50_ms: percentile(&local, 0.50),
        local_p99_ms: percentile(&local, 0.99),
        fs: crate::hub::filesystem_of(dir),
    })
}
