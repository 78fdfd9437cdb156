//! `hub bench ingest`: many edges' signed reads through the hub's real
//! ingest path — session, per-entry `verify_strict` on the blocking pool,
//! chain placement, the single writer with a durable commit per
//! transaction, signed receipts — and a table of what it sustained: reads
//! per second and the acknowledgement latency (a frame's submission to its
//! receipt). With `--quic`, the edges are real QUIC connections with real
//! certificates to `hub serve` running in this process; with
//! `--backend postgres --hubs N`, to N `hub serve` processes sharing one
//! PostgreSQL database, the edges spread over them.

mod hubs;
pub(crate) mod pg;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::sync::{HubOutput, HubSession, Progress};
use alpr_shared::types::{DeviceId, DeviceKind, Location, ReadContent, TimeSource, UnixMillis};
use alpr_shared::wire::quic::{self, Liveness};
use alpr_shared::wire::{
    Entries, Frame, Hello, Lane, ALPN, MAX_ENTRIES_FRAME, MAX_ENTRIES_PER_FRAME, PROTOCOL_VERSION,
};
use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::ingest::{Metrics, Writer, WriterConfig};
use crate::store::postgres::PgStore;
use crate::store::redb::RedbStore;
use crate::store::{HubStorage, WriteOp, WriteResult};
use hubs::{HubCounters, HubFiles, HubProcess};

/// Where the bench's hub keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchBackend {
    /// One file in the run's folder, one hub.
    Redb,
    /// A PostgreSQL database, one or more hubs.
    Postgres,
}

impl BenchBackend {
    fn name(self) -> &'static str {
        match self {
            BenchBackend::Redb => "redb",
            BenchBackend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Simulated edges uploading at once.
    #[arg(long, default_value_t = 100)]
    pub edges: usize,
    /// Reads in total (split evenly between edges).
    #[arg(long, default_value_t = 200_000)]
    pub reads: usize,
    /// Entries per frame, as edges send them.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Most entries one durable commit takes.
    #[arg(long, default_value_t = WriterConfig::default().max_batch)]
    pub max_commit: usize,
    /// A commit with fewer entries waits for more (see --linger-ms).
    #[arg(long, default_value_t = WriterConfig::default().min_batch)]
    pub min_commit: usize,
    /// How long a small commit may wait for more, in milliseconds.
    #[arg(long, default_value_t = WriterConfig::default().linger.as_millis() as u64)]
    pub linger_ms: u64,
    /// Frames of each edge queued for the writer ahead of their commits
    /// (the hub's stream pipeline).
    #[arg(long, default_value_t = crate::sync::PIPELINE)]
    pub in_flight: usize,
    /// Entries the hub admits at once over all edges (the hub's
    /// `sync::ADMITTED_ENTRIES`).
    #[arg(long, default_value_t = crate::sync::ADMITTED_ENTRIES)]
    pub admit: usize,
    /// Where the run's fresh, temporary database folder goes (default: the
    /// current folder, so the figure is for a real disk).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run even if the folder is on tmpfs (the figure then says nothing
    /// about durable storage).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Through `hub serve` over QUIC on loopback, one connection per edge,
    /// with real certificates.
    #[arg(long)]
    pub quic: bool,
    /// Where the hub keeps its records: `redb`, `postgres`, or both one
    /// after the other in the same run (`redb,postgres`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "redb")]
    pub backend: Vec<BenchBackend>,
    /// Hubs sharing the PostgreSQL database (with --quic, `hub serve`
    /// processes), the edges spread over them; redb has one.
    #[arg(long, default_value_t = 1)]
    pub hubs: usize,
    /// A PostgreSQL server to make the run's fresh database in (dropped
    /// after); without it the bench starts a throwaway cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Connections in each hub's PostgreSQL pool.
    #[arg(long, default_value_t = 8)]
    pub pool_size: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// One hub's share of a run, in `--json`.
#[derive(Debug, Serialize)]
pub struct HubFigures {
    pub hub: usize,
    pub edges: usize,
    pub reads: u64,
    pub reads_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// From the hub's metrics endpoint (hub processes only).
    pub counters: Option<HubCounters>,
    /// CPU seconds the hub process used during the run.
    pub cpu_s: Option<f64>,
}

/// Where the CPU went during the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// Busy share of all the machine's cores (other work on the machine
    /// counts too).
    pub machine_busy: f64,
    pub cores: usize,
    /// This process: the edges (and the hub, when it runs here).
    pub bench_s: f64,
    /// The hub processes.
    pub hubs_s: Option<f64>,
    /// The PostgreSQL backends serving the run's database.
    pub postgres_s: Option<f64>,
}

type CpuMark = (Option<(u64, u64)>, Option<f64>);

impl CpuUse {
    /// From the marks taken before the run (machine, this process) to now.
    fn since(before: CpuMark) -> Self {
        let machine_busy = match (before.0, hubs::machine_cpu()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => 0.0,
        };
        let me = hubs::process_cpu_seconds("/proc/self/stat");
        CpuUse {
            machine_busy,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            bench_s: me.zip(before.1).map_or(0.0, |(a, b)| a - b),
            hubs_s: None,
            postgres_s: None,
        }
    }
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub mode: &'static str,
    pub backend: BenchBackend,
    pub hubs: usize,
    pub path: String,
    pub fs: String,
    /// Which PostgreSQL database (made for the run).
    pub database: Option<String>,
    /// As the PostgreSQL server ran them.
    pub synchronous_commit: Option<String>,
    pub fsync: Option<String>,
    pub edges: usize,
    pub reads: usize,
    pub reads_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// From a frame ready at the edge (before the hub admits it) to its
    /// receipt (in process only; over QUIC `ack_*` already count from the
    /// edge's write).
    pub ready_to_ack_p99_ms: Option<f64>,
    pub seconds: f64,
    /// Durable commits (in-process only).
    pub commits: Option<u64>,
    /// Seconds the writers spent in commits (in-process only).
    pub commit_s: Option<f64>,
    /// Reads the PostgreSQL database holds after the run, checked edge by
    /// edge.
    pub stored_in_database: Option<u64>,
    pub per_hub: Vec<HubFigures>,
    pub cpu: CpuUse,
    /// Seconds the edges took to sign their logs (not hub work).
    pub sign_s: f64,
    pub wire_bytes_per_read: f64,
    pub stored_bytes_per_read: f64,
}

/// A plausible read: a plate from a small space, a site, model names.
pub fn sample_read(i: u64) -> ReadContent {
    const L: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let plate = format!(
        "{}{}{}{:04}",
        L[(i % 23) as usize] as char,
        L[(i / 23 % 23) as usize] as char,
        L[(i / 529 % 23) as usize] as char,
        i % 10_000
    );
    ReadContent {
        location: Location::Site {
            site_id: format!("site-{}", i % 50),
        },
        camera: "cam-1".into(),
        char_confidence: vec![9500; plate.len()],
        plate,
        confidence: 9400,
        region: Some("US-CA".into()),
        detector_model: "plate-det-v1".into(),
        ocr_model: "plate-ocr-v1".into(),
        crop_hash: sha256(&i.to_be_bytes()),
        overview_hash: sha256(&(i ^ u64::MAX).to_be_bytes()),
    }
}

/// A simulated edge's key, derived from its name (the bench needs it twice:
/// to sign the log, and its checkpoints when framing).
pub(crate) fn node_key(name: &DeviceId) -> SecretKey {
    SecretKey::from_bytes(&sha256(name.as_str().as_bytes()).0)
}

/// The filesystem type holding `path` (from /proc/self/mountinfo: the
/// longest mount point that contains it), or "unknown".
pub fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let Some(fs) = fields.get(dash + 1) else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(l, _)| mount.len() >= *l) {
            best = Some((mount.len(), (*fs).to_owned()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// A QUIC edge's certificate and key (PEM).
pub(crate) type EdgeFiles = Option<(Vec<u8>, Vec<u8>)>;

/// An edge ready to upload: its name, its certificate (QUIC), and its
/// frames, encoded as it sends them.
pub(crate) struct EdgeLoad {
    name: DeviceId,
    public: alpr_shared::crypto::PublicKey,
    files: EdgeFiles,
    reads: u64,
    frames: Vec<Vec<u8>>,
}

/// The outcome of one run.
pub(crate) struct Run {
    pub(crate) stored: u64,
    /// Admission to receipt.
    latencies_ms: Vec<f64>,
    /// Ready (waiting for admission) to receipt, in process only.
    waits_ms: Vec<f64>,
    pub(crate) seconds: f64,
    commits: Option<(u64, f64)>,
    /// Each hub's share.
    hubs: Vec<HubRun>,
    /// CPU seconds of the PostgreSQL backends serving the run's database,
    /// measured while the hubs are still connected.
    postgres_cpu_s: Option<f64>,
}

/// One hub's share of a run.
struct HubRun {
    edges: usize,
    stored: u64,
    latencies_ms: Vec<f64>,
    /// From its metrics endpoint (hub processes only).
    counters: Option<HubCounters>,
    /// CPU seconds the hub process used during the run (hub processes only).
    cpu_s: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.reads >= args.edges,
        "need at least one read per edge"
    );
    anyhow::ensure!(args.hubs >= 1, "need at least one hub");
    let mut backends = args.backend.clone();
    backends.dedup();
    if backends.is_empty() {
        backends.push(BenchBackend::Redb);
    }
    anyhow::ensure!(
        args.hubs == 1 || backends.contains(&BenchBackend::Postgres),
        "several hubs share a PostgreSQL database: --backend postgres (redb's file is held \
         by one hub process)"
    );
    anyhow::ensure!(
        args.hubs == 1 || args.quic || args.edges >= args.hubs,
        "need at least one edge per hub"
    );
    let mut reports = Vec::new();
    for backend in backends {
        reports.push(ingest_on(&args, backend).await?);
    }
    if args.json {
        match reports.as_slice() {
            [one] => println!("{}", serde_json::to_string_pretty(one)?),
            all => println!("{}", serde_json::to_string_pretty(all)?),
        }
        return Ok(());
    }
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_report(&args, r);
    }
    if reports.len() > 1 {
        println!(
            "\n{:<10} {:>5} {:>10} {:>10} {:>9} {:>9}",
            "BACKEND", "HUBS", "READS", "reads/s", "ack p50", "ack p99"
        );
        for r in &reports {
            println!(
                "{:<10} {:>5} {:>10} {:>10.0} {:>7.1}ms {:>7.1}ms",
                r.backend.name(),
                r.hubs,
                r.reads,
                r.reads_per_s,
                r.ack_p50_ms,
                r.ack_p99_ms
            );
        }
    }
    Ok(())
}

/// One run on `backend`: sign the edges' logs, upload them, verify what
/// was stored.
async fn ingest_on(args: &IngestArgs, backend: BenchBackend) -> anyhow::Result<IngestReport> {
    // A fresh folder for every run (inside `--dir`, else the current
    // folder): a database left by an earlier run would hold other logs.
    let parent = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("hub-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("a temporary folder in {}", parent.display()))?;
    let dir = tmp.path().to_path_buf();
    let dir = dir.canonicalize().unwrap_or(dir);
    let fs = filesystem_of(&dir);
    anyhow::ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs: a durable commit there costs nothing, so the figure would mislead. \
         Choose a folder on disk with --dir, or pass --allow-tmpfs",
        dir.display()
    );
    let hubs = match backend {
        BenchBackend::Redb => 1,
        BenchBackend::Postgres => args.hubs,
    };
    let per_edge = args.reads / args.edges;
    let total = per_edge * args.edges;
    let batch = args.batch.clamp(1, MAX_ENTRIES_PER_FRAME);

    // Identities: with --quic, a deployment CA, the hub's certificate and
    // one certificate per edge; in process, keys derived from the names.
    let pki_dir = dir.join("pki");
    let mut identities: Vec<(DeviceId, SecretKey, EdgeFiles)> = Vec::new();
    let authority = if args.quic {
        Some(write_pki(&pki_dir)?)
    } else {
        None
    };
    for e in 0..args.edges {
        let name = DeviceId::new(format!("bench-{e:03}")).expect("valid name");
        match &authority {
            Some(a) => {
                let (issued, key) = a.issue_device(&name, DeviceKind::Pole, 30)?;
                let files = (
                    issued.cert_pem.into_bytes(),
                    issued.key_pem.as_bytes().to_vec(),
                );
                identities.push((name, key, Some(files)));
            }
            None => {
                let key = node_key(&name);
                identities.push((name, key, None));
            }
        }
    }

    // Sign every edge's log and frame it (the edges' work, not the hub's).
    let t0 = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let base = UnixMillis::now().0;
    let mut shares: Vec<Vec<(usize, DeviceId, SecretKey, EdgeFiles)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (e, (name, key, files)) in identities.into_iter().enumerate() {
        shares[e % threads].push((e, name, key, files));
    }
    let (loads, canonical_bytes): (Vec<EdgeLoad>, Vec<usize>) = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                s.spawn(move || {
                    share
                        .into_iter()
                        .map(|(e, name, key, files)| {
                            sign_edge(e, name, key, files, per_edge, batch, base)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .unzip()
    });
    anyhow::ensure!(loads.len() == args.edges, "an edge's log failed to sign");
    let sign_s = t0.elapsed().as_secs_f64();
    let canonical_bytes: usize = canonical_bytes.iter().sum();
    let wire_bytes: usize = loads
        .iter()
        .flat_map(|l| l.frames.iter().map(Vec::len))
        .sum();

    let database = match backend {
        BenchBackend::Redb => None,
        BenchBackend::Postgres => {
            Some(pg::BenchDatabase::fresh(args.database_url.as_deref(), "alpr_bench_ingest").await?)
        }
    };
    let cpu_before = (
        hubs::machine_cpu(),
        hubs::process_cpu_seconds("/proc/self/stat"),
    );
    let outcome = async {
        let durability = match &database {
            Some(d) => Some(d.durability().await?),
            None => None,
        };
        let run = match (&database, args.quic) {
            (None, true) => run_quic(args, &dir, &pki_dir, loads).await?,
            (None, false) => run_in_process(args, &dir, loads).await?,
            (Some(d), true) => run_quic_hubs(args, hubs, &dir, &pki_dir, loads, d).await?,
            (Some(d), false) => run_in_process_pg(args, hubs, loads, d).await?,
        };
        let stored_in_database = match &database {
            Some(d) => Some(stored_in_postgres(d, args.edges, per_edge as u64).await?),
            None => None,
        };
        anyhow::Ok((run, durability, stored_in_database))
    }
    .await;
    let cpu = CpuUse::since(cpu_before);
    let described = database.as_ref().map(|d| d.described.clone());
    if let Some(d) = database {
        if let Err(e) = d.finish().await {
            tracing::warn!("the bench's database: {e:#}");
        }
    }
    let (run, durability, stored_in_database) = outcome?;
    anyhow::ensure!(
        run.stored as usize == total,
        "acknowledged {} of {total}",
        run.stored
    );
    let lat = sorted(run.latencies_ms.clone());
    let waits = sorted(run.waits_ms);
    let per_hub = run
        .hubs
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let lat = sorted(h.latencies_ms);
            HubFigures {
                hub: i,
                edges: h.edges,
                reads: h.stored,
                reads_per_s: h.stored as f64 / run.seconds,
                ack_p50_ms: percentile(&lat, 0.5),
                ack_p99_ms: percentile(&lat, 0.99),
                counters: h.counters,
                cpu_s: h.cpu_s,
            }
        })
        .collect::<Vec<_>>();
    let hubs_cpu: Option<f64> = per_hub.iter().map(|h| h.cpu_s).sum();
    let (synchronous_commit, fsync) = durability.unzip();
    Ok(IngestReport {
        mode: if args.quic { "quic" } else { "in-process" },
        backend,
        hubs,
        path: dir.display().to_string(),
        fs,
        database: described,
        synchronous_commit,
        fsync,
        edges: args.edges,
        reads: total,
        reads_per_s: total as f64 / run.seconds,
        ack_p50_ms: percentile(&lat, 0.5),
        ack_p99_ms: percentile(&lat, 0.99),
        ready_to_ack_p99_ms: (!waits.is_empty()).then(|| percentile(&waits, 0.99)),
        seconds: run.seconds,
        commits: run.commits.map(|c| c.0),
        commit_s: run.commits.map(|c| c.1),
        stored_in_database,
        per_hub,
        cpu: CpuUse {
            hubs_s: hubs_cpu,
            postgres_s: run.postgres_cpu_s,
            ..cpu
        },
        sign_s,
        wire_bytes_per_read: wire_bytes as f64 / total as f64,
        stored_bytes_per_read: canonical_bytes as f64 / total as f64,
    })
}

/// The table for people.
fn print_report(args: &IngestArgs, report: &IngestReport) {
    let per_edge = report.reads / args.edges;
    println!(
        "hub bench ingest ({}, {}, {} hub{}): {} edges × {} reads = {} reads",
        report.mode,
        report.backend.name(),
        report.hubs,
        if report.hubs == 1 { "" } else { "s" },
        args.edges,
        per_edge,
        report.reads
    );
    println!("run folder {} ({})", report.path, report.fs);
    if let Some(d) = &report.database {
        println!("PostgreSQL: {d}");
    }
    if let (Some(s), Some(f)) = (&report.synchronous_commit, &report.fsync) {
        println!("PostgreSQL synchronous_commit = {s}, fsync = {f}");
    }
    println!(
        "{:<40} {:>10} {:>9} {:>10} {:>9} {:>9}",
        "phase", "reads", "seconds", "reads/s", "ack p50", "ack p99"
    );
    println!(
        "{:<40} {:>10} {:>9.2} {:>10.0}",
        "edges sign their logs (not hub work)",
        report.reads,
        report.sign_s,
        report.reads as f64 / report.sign_s
    );
    println!(
        "{:<40} {:>10} {:>9.2} {:>10.0} {:>7.1}ms {:>7.1}ms",
        "verify_strict + chain + durable + ack",
        report.reads,
        report.seconds,
        report.reads_per_s,
        report.ack_p50_ms,
        report.ack_p99_ms
    );
    if let Some(w) = report.ready_to_ack_p99_ms {
        println!(
            "{:<40} {:>10} {:>9} {:>10} {:>9} {:>7.1}ms",
            "  the same from ready (incl. admission)", "", "", "", "", w
        );
    }
    if report.per_hub.len() > 1 {
        for h in &report.per_hub {
            println!(
                "{:<40} {:>10} {:>9} {:>10.0} {:>7.1}ms {:>7.1}ms",
                format!("  hub {} ({} edges)", h.hub, h.edges),
                h.reads,
                "",
                h.reads_per_s,
                h.ack_p50_ms,
                h.ack_p99_ms
            );
        }
    }
    println!(
        "\n{:.0} bytes per entry on the wire ({:.0} stored)",
        report.wire_bytes_per_read, report.stored_bytes_per_read,
    );
    if args.quic {
        println!("ack latency: from the edge's write of a frame to the receipt it reads back");
    } else {
        println!(
            "ack latency: from the hub's admission of a frame (at most {} entries admitted at once) to its receipt",
            args.admit
        );
    }
    if let (Some(commits), Some(commit_s)) = (report.commits, report.commit_s) {
        println!(
            "{} durable commits ({:.0} reads per commit); the writer spent {commit_s:.2} s of {:.2} s in commits",
            commits,
            report.reads as f64 / commits.max(1) as f64,
            report.seconds
        );
    }
    for h in &report.per_hub {
        if let Some(c) = &h.counters {
            println!(
                "hub {}: {} durable commits ({:.0} reads per commit), {:.2} s in commits, {} duplicates",
                h.hub,
                c.commits,
                c.entries_stored as f64 / c.commits.max(1) as f64,
                c.commit_s,
                c.duplicates
            );
        }
    }
    if let Some(n) = report.stored_in_database {
        println!("the database holds {n} reads, every edge's chain complete");
    }
    let c = &report.cpu;
    println!(
        "CPU during the run: machine {:.0}% busy of {} cores; this process (edges{}) {:.1} s{}{}",
        c.machine_busy * 100.0,
        c.cores,
        if report.per_hub.iter().any(|h| h.cpu_s.is_some()) {
            ""
        } else {
            " and hub"
        },
        c.bench_s,
        c.hubs_s
            .map(|s| format!(", hub processes {s:.1} s"))
            .unwrap_or_default(),
        c.postgres_s
            .map(|s| format!(", PostgreSQL backends {s:.1} s"))
            .unwrap_or_default(),
    );
}

/// Whether the database holds every edge's `per_edge` reads: each edge's
/// chain is complete, none longer. Returns the reads held.
async fn stored_in_postgres(
    db: &pg::BenchDatabase,
    edges: usize,
    per_edge: u64,
) -> anyhow::Result<u64> {
    let config = pg::config(&db.url, 2);
    let nodes = tokio::task::spawn_blocking(move || {
        let store = PgStore::open(&config)?;
        anyhow::Ok(store.nodes()?)
    })
    .await??;
    let bench: Vec<_> = nodes
        .iter()
        .filter(|(d, _)| d.as_str().starts_with("bench-"))
        .collect();
    anyhow::ensure!(
        bench.len() == edges,
        "the database knows {} of {edges} edges",
        bench.len()
    );
    if let Some((d, r)) = bench.iter().find(|(_, r)| r.next_seq != per_edge) {
        anyhow::bail!(
            "{d}'s chain in the database holds {} reads, not {per_edge}",
            r.next_seq
        );
    }
    Ok(bench.iter().map(|(_, r)| r.next_seq).sum())
}

/// Sign one edge's log and cut it into frames, each with the checkpoint
/// at its end. Returns the load and its canonical bytes.
pub(crate) fn sign_edge(
    e: usize,
    name: DeviceId,
    key: SecretKey,
    files: EdgeFiles,
    per_edge: usize,
    batch: usize,
    base: u64,
) -> (EdgeLoad, usize) {
    let public = key.public();
    let mut w = LogWriter::new(key, name.clone());
    let mut frames = Vec::new();
    let mut canonical = 0;
    let mut chunk = Vec::with_capacity(batch);
    for i in 0..per_edge {
        let n = (e * per_edge + i) as u64;
        let entry = w
            .append_read(sample_read(n), UnixMillis(base + i as u64), TimeSource::Gps)
            .expect("valid read");
        canonical += entry.encode().len();
        chunk.push(entry);
        if chunk.len() == batch || i + 1 == per_edge {
            let cp = w.checkpoint(UnixMillis::now());
            if let Some(f) = Entries::from_log(std::mem::take(&mut chunk), Some(cp)) {
                frames.push(Frame::Entries(f).encode());
            }
        }
    }
    (
        EdgeLoad {
            name,
            public,
            files,
            reads: per_edge as u64,
            frames,
        },
        canonical,
    )
}

/// The hub's path without sockets: session, verification on the blocking
/// pool, the writer.
async fn run_in_process(
    args: &IngestArgs,
    dir: &Path,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&dir.join("bench.redb"))?);
    run_in_process_on(args, storage, loads).await
}

/// As [`run_in_process`], into `storage` (which may hold other logs).
pub(crate) async fn run_in_process_on(
    args: &IngestArgs,
    storage: Arc<dyn HubStorage>,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let edges = loads.len();
    let metrics = Arc::new(Metrics::default());
    let writer_config = WriterConfig {
        max_batch: args.max_commit.max(1),
        min_batch: args.min_commit,
        linger: Duration::from_millis(args.linger_ms),
        ..WriterConfig::default()
    };
    let (writer, join) = Writer::spawn(storage.clone(), metrics.clone(), writer_config);
    let receipt_key: Arc<alpr_shared::signer::HubKey<alpr_shared::signer::ReceiptSigning>> =
        Arc::new(
            alpr_shared::signer::dev::Deployment::new()
                .and_then(|d| d.key("hub"))
                .map_err(anyhow::Error::msg)?,
        );
    let slots = Arc::new(tokio::sync::Semaphore::new(crate::sync::verify_slots()));
    let admit = args.admit.max(MAX_ENTRIES_PER_FRAME);
    let admission = Arc::new(tokio::sync::Semaphore::new(admit));

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for load in loads {
        let writer = writer.clone();
        let receipt_key = receipt_key.clone();
        let slots = slots.clone();
        let admission = admission.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move {
            let EdgeLoad {
                name,
                public,
                reads,
                frames,
                ..
            } = load;
            let mut session =
                HubSession::new(name.clone(), public, receipt_key, Progress::default());
            let now = UnixMillis::now();
            session.handle_frame(
                Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    device: name.clone(),
                    log_size: reads,
                    // Says it holds every policy: the hub pushes none.
                    policy_version: u64::MAX,
                    hotlists: Vec::new(),
                }),
                now,
            );
            let mut latencies = Vec::with_capacity(frames.len());
            let mut waits = Vec::with_capacity(frames.len());
            let mut pending: VecDeque<(tokio::task::JoinHandle<_>, Instant, Instant)> =
                VecDeque::new();
            let mut frames = frames.into_iter();
            loop {
                // Keep `in_flight` frames queued for the writer, as a hub
                // reading a node's stream ahead of its commits would.
                let next = if pending.len() < in_flight {
                    frames.next()
                } else {
                    None
                };
                let Some(bytes) = next else {
                    let Some((p, sent, ready)) = pending.pop_front() else {
                        break;
                    };
                    let (res, done): (Result<WriteResult, crate::ingest::IngestError>, Instant) =
                        p.await.context("commit waiter")?;
                    let WriteResult::Ingested(r) = res? else {
                        anyhow::bail!("unexpected writer answer");
                    };
                    for o in session.ingested(r.map(|i| i.progress), now) {
                        match o {
                            HubOutput::Send(Frame::Ack(_)) => {
                                latencies.push((done - sent).as_secs_f64() * 1e3);
                                waits.push((done - ready).as_secs_f64() * 1e3);
                            }
                            HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                            _ => {}
                        }
                    }
                    continue;
                };
                // The frame is ready; the hub admits it when the entries
                // ahead of it are few enough (see `sync::ADMITTED_ENTRIES`).
                let ready = Instant::now();
                // The hub's path from the bytes a stream delivers.
                let frame = match Frame::decode_prefixed(&bytes, MAX_ENTRIES_FRAME) {
                    Ok(Some((f, _))) => f,
                    other => anyhow::bail!("a frame that does not decode: {other:?}"),
                };
                let weight = match &frame {
                    Frame::Entries(e) => e.entries.len(),
                    _ => 1,
                };
                let weight = u32::try_from(weight.clamp(1, admit)).unwrap_or(1);
                let admitted = admission.clone().acquire_many_owned(weight).await?;
                let sent = Instant::now();
                // The signature checks on the blocking pool, a frame per core.
                let slot = slots.clone().acquire_owned().await?;
                let (back, outs) = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    let outs = session.handle_frame(frame, now);
                    (session, outs)
                })
                .await
                .context("verification task")?;
                session = back;
                for out in outs {
                    match out {
                        HubOutput::Ingest(v) => {
                            let p = writer
                                .enqueue(WriteOp::Ingest {
                                    device: name.clone(),
                                    entries: v.entries,
                                    checkpoint: v.checkpoint,
                                    new_key: v.new_key,
                                    at: now,
                                })
                                .await?;
                            // As the hub's answering half does: wait for
                            // the commit, then release the admission.
                            let p = tokio::spawn(async move {
                                let r = p.committed().await;
                                let done = Instant::now();
                                drop(admitted);
                                (r, done)
                            });
                            pending.push_back((p, sent, ready));
                            break;
                        }
                        HubOutput::Refused(r) => anyhow::bail!("refused: {r:?}"),
                        _ => {}
                    }
                }
            }
            anyhow::Ok((session.progress().next_seq, latencies, waits))
        });
    }
    let mut stored = 0;
    let mut latencies_ms = Vec::new();
    let mut waits_ms = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (n, l, w) = r.context("edge task")??;
        stored += n;
        latencies_ms.extend(l);
        waits_ms.extend(w);
    }
    let seconds = t1.elapsed().as_secs_f64();
    drop(writer);
    tokio::task::spawn_blocking(move || join.join()).await.ok();
    Ok(Run {
        stored,
        hubs: vec![HubRun {
            edges,
            stored,
            latencies_ms: latencies_ms.clone(),
            counters: None,
            cpu_s: None,
        }],
        latencies_ms,
        waits_ms,
        seconds,
        commits: Some((
            Metrics::get(&metrics.commits),
            Metrics::get(&metrics.commit_micros) as f64 / 1e6,
        )),
        postgres_cpu_s: None,
    })
}

/// The in-process path into one PostgreSQL database, through `hubs`
/// stores and writers of their own (as `hubs` processes would), the
/// edges spread over them.
async fn run_in_process_pg(
    args: &IngestArgs,
    hubs: usize,
    loads: Vec<EdgeLoad>,
    db: &pg::BenchDatabase,
) -> anyhow::Result<Run> {
    let mut groups: Vec<Vec<EdgeLoad>> = (0..hubs).map(|_| Vec::new()).collect();
    for (i, load) in loads.into_iter().enumerate() {
        groups[i % hubs].push(load);
    }
    let mut stores = Vec::new();
    for _ in 0..hubs {
        let config = pg::config(&db.url, args.pool_size);
        let store = tokio::task::spawn_blocking(move || PgStore::open(&config)).await??;
        stores.push(Arc::new(store) as Arc<dyn HubStorage>);
    }
    // The stores stay open (their backends alive) until measured.
    let open = stores.clone();
    let pg0 = hubs::postgres_cpu_seconds(&db.name);
    let t = Instant::now();
    let runs = futures_util::future::try_join_all(
        stores
            .into_iter()
            .zip(groups)
            .map(|(store, group)| run_in_process_on(args, store, group)),
    )
    .await?;
    let seconds = t.elapsed().as_secs_f64();
    let postgres_cpu_s = Some(hubs::postgres_cpu_seconds(&db.name) - pg0);
    drop(open);
    let mut all = Run {
        stored: 0,
        latencies_ms: Vec::new(),
        waits_ms: Vec::new(),
        seconds,
        commits: Some((0, 0.0)),
        hubs: Vec::new(),
        postgres_cpu_s,
    };
    for r in runs {
        all.stored += r.stored;
        all.latencies_ms.extend(r.latencies_ms);
        all.waits_ms.extend(r.waits_ms);
        if let (Some(a), Some(b)) = (all.commits.as_mut(), r.commits) {
            a.0 += b.0;
            a.1 += b.1;
        }
        all.hubs.extend(r.hubs);
    }
    Ok(all)
}

/// A deployment CA and the hub's keys in `dir`.
pub(crate) fn write_pki(dir: &Path) -> anyhow::Result<alpr_shared::pki::Authority> {
    let ca = write_ca_and_hub(dir, 30)?;
    Ok(alpr_shared::pki::Authority::load(
        &ca.cert_pem,
        &ca.key_pem,
    )?)
}

/// A deployment CA valid `days` and the hub's keys in `dir`; the
/// CA (its key too, for benches that sign reads as its nodes).
pub(crate) fn write_ca_and_hub(dir: &Path, days: i64) -> anyhow::Result<alpr_shared::pki::Issued> {
    std::fs::create_dir_all(dir)?;
    let ca = alpr_shared::pki::new_ca("Bench Agency", days)?;
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem)?;
    let authority = alpr_shared::pki::Authority::load(&ca.cert_pem, &ca.key_pem)?;
    crate::pki::write_hub_keys(
        &authority,
        dir,
        &["localhost".into(), "127.0.0.1".into()],
        days,
    )?;
    Ok(ca)
}

/// `hub serve` in this process, and one QUIC connection per edge.
async fn run_quic(
    args: &IngestArgs,
    dir: &Path,
    pki: &Path,
    loads: Vec<EdgeLoad>,
) -> anyhow::Result<Run> {
    let edges = loads.len();
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("hub-data"),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        max_connections: args.edges + 16,
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
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

    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for load in loads {
        let ca = ca.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move { quic_edge(addr, &ca, load, in_flight).await });
    }
    let mut stored = 0;
    let mut latencies_ms = Vec::new();
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        match r.context("edge task").and_then(|r| r) {
            Ok((n, l)) => {
                stored += n;
                latencies_ms.extend(l);
            }
            Err(e) => failed = Some(e),
        }
    }
    let seconds = t1.elapsed().as_secs_f64();
    cancel.cancel();
    server.await.context("the hub task")??;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Run {
        stored,
        hubs: vec![HubRun {
            edges,
            stored,
            latencies_ms: latencies_ms.clone(),
            counters: None,
            cpu_s: None,
        }],
        latencies_ms,
        waits_ms: Vec::new(),
        seconds,
        commits: None,
        postgres_cpu_s: None,
    })
}

/// `hubs` `hub serve` processes on the PostgreSQL database `db`, and one
/// QUIC connection per edge, edge `i` to hub `i % hubs`.
async fn run_quic_hubs(
    args: &IngestArgs,
    hubs: usize,
    dir: &Path,
    pki: &Path,
    loads: Vec<EdgeLoad>,
    db: &pg::BenchDatabase,
) -> anyhow::Result<Run> {
    let files = HubFiles {
        dir: dir.to_path_buf(),
        pki: pki.to_path_buf(),
        database_url: db.url.clone(),
        pool_size: args.pool_size,
        max_connections: args.edges + 16,
    };
    // One after the other: the first makes the deployment's first policy
    // version, the others load it.
    let mut procs = Vec::new();
    for n in 0..hubs {
        let files = files.clone();
        procs.push(
            tokio::task::spawn_blocking(move || HubProcess::start(n, &files))
                .await
                .context("starting a hub")??,
        );
    }
    let ca = std::fs::read(pki.join("ca.crt"))?;
    let cpu0: Vec<Option<f64>> = procs.iter().map(HubProcess::cpu_seconds).collect();
    let pg0 = hubs::postgres_cpu_seconds(&db.name);
    let mut per_hub: Vec<HubRun> = (0..hubs)
        .map(|_| HubRun {
            edges: 0,
            stored: 0,
            latencies_ms: Vec::new(),
            counters: None,
            cpu_s: None,
        })
        .collect();
    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, load) in loads.into_iter().enumerate() {
        let h = i % hubs;
        per_hub[h].edges += 1;
        let addr = procs[h].addr;
        let ca = ca.clone();
        let in_flight = args.in_flight.max(1);
        tasks.spawn(async move { (h, quic_edge(addr, &ca, load, in_flight).await) });
    }
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        match r.context("edge task") {
            Ok((h, Ok((n, l)))) => {
                per_hub[h].stored += n;
                per_hub[h].latencies_ms.extend(l);
            }
            Ok((h, Err(e))) => failed = Some(e.context(format!("an edge of hub {h}"))),
            Err(e) => failed = Some(e),
        }
    }
    let seconds = t1.elapsed().as_secs_f64();
    let postgres_cpu_s = Some(hubs::postgres_cpu_seconds(&db.name) - pg0);
    for ((h, p), c0) in per_hub.iter_mut().zip(&procs).zip(cpu0) {
        h.counters = p.counters().ok();
        h.cpu_s = p.cpu_seconds().zip(c0).map(|(a, b)| a - b);
    }
    if let Some(e) = failed {
        let logs: Vec<String> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| format!("hub {i}'s last log lines:\n{}", p.log_tail()))
            .collect();
        return Err(e.context(logs.join("\n")));
    }
    tokio::task::spawn_blocking(move || {
        procs
            .into_iter()
            .enumerate()
            .try_for_each(|(i, p)| p.stop().with_context(|| format!("stopping hub {i}")))
    })
    .await??;
    let stored = per_hub.iter().map(|h| h.stored).sum();
    let latencies_ms = per_hub
        .iter()
        .flat_map(|h| h.latencies_ms.iter().copied())
        .collect();
    Ok(Run {
        stored,
        latencies_ms,
        waits_ms: Vec::new(),
        seconds,
        commits: None,
        hubs: per_hub,
        postgres_cpu_s,
    })
}

/// One edge over QUIC: hello, then its frames on the entries lane with
/// `in_flight` unacknowledged at most; returns what the hub acknowledged
/// and each frame's acknowledgement latency.
async fn quic_edge(
    addr: SocketAddr,
    ca: &[u8],
    load: EdgeLoad,
    in_flight: usize,
) -> anyhow::Result<(u64, Vec<f64>)> {
    let (cert, key) = load.files.context("an edge without a certificate")?;
    let cfg = quic::client_config(
        ca,
        &cert,
        &key,
        ALPN,
        Liveness {
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        },
    )?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(cfg);
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[Lane::Control.tag()]).await?;
    quic::write_frame(
        &mut send,
        &Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            device: load.name.clone(),
            log_size: load.reads,
            // Says it holds every policy: the hub pushes none. (The
            // largest version a PostgreSQL bigint keeps.)
            policy_version: i64::MAX as u64,
            hotlists: Vec::new(),
        }),
    )
    .await?;
    match quic::read_frame(&mut recv, Lane::Control.max_frame()).await? {
        Frame::Welcome(_) => {}
        other => anyhow::bail!("{}: no welcome: {other:?}", load.name),
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[Lane::Entries.tag()]).await?;
    let window = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::new()));
    let frames = load.frames;
    let writer = {
        let window = window.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            for f in frames {
                window.acquire().await?.forget();
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(Instant::now());
                }
                send.write_all(&f).await?;
            }
            anyhow::Ok(send)
        })
    };
    let mut latencies = Vec::new();
    let mut acked = 0;
    while acked < load.reads {
        match quic::read_frame(&mut recv, Lane::Entries.max_frame()).await? {
            Frame::Ack(r) => {
                acked = r.receipt.next_seq;
                let sent = sent_at.lock().ok().and_then(|mut q| q.pop_front());
                if let Some(t) = sent {
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                window.add_permits(1);
            }
            Frame::Refused(r) => anyhow::bail!("{}: refused: {r:?}", load.name),
            _ => {}
        }
    }
    let _send = writer.await.context("the edge's writer")??;
    conn.close(quic::CLOSE_SHUTDOWN.into(), b"done");
    endpoint.wait_idle().await;
    Ok((acked, latencies))
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Logins to time.
    #[arg(long, default_value_t = 50)]
    pub logins: usize,
    /// Where the run's temporary folder goes (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What `hub bench login --json` prints.
#[derive(Debug, Serialize)]
pub struct LoginReport {
    pub logins: usize,
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    /// argon2id parameters.
    pub argon2: &'static str,
}

/// `hub bench login`: logins through the API of a hub served in this
/// process (HTTPS on loopback, argon2id, the access-log entry committed
/// before each answer), one at a time, each on a new connection.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let dir = tempfile::Builder::new()
        .prefix("hub-bench-login-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a folder in {}", base.display()))?;
    let pki = dir.path().join("pki");
    write_pki(&pki)?;
    let config = HubConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("hub-data"),
        ca_cert: pki.join("ca.crt"),
        cert: pki.join("hub.crt"),
        key: pki.join("hub.key"),
        // The bench logs in many times as one user: no lock-out.
        login_failures: 1000,
        login_source_failures: 100_000,
        ..HubConfig::default()
    };
    let ca = std::fs::read(&config.ca_cert)?;
    let bootstrap = config.data_dir.join(crate::users::BOOTSTRAP_FILE);
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::sync::serve(config, cancel.clone(), Some(tx)));
    if rx.await.is_err() {
        let why = match server.await {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(())) => "it stopped".into(),
            Err(e) => e.to_string(),
        };
        anyhow::bail!("the hub did not start: {why}");
    }
    let result = async {
        let b: crate::users::BootstrapFile = serde_json::from_slice(&std::fs::read(&bootstrap)?)?;
        let url = format!("https://{}", b.api);
        let password = "bench-password-0123".to_string();
        let _: crate::users::UserView = crate::api::client::ApiClient::connect(&url, &ca)
            .await?
            .post(
                "/api/v1/bootstrap",
                &crate::api::users::BootstrapRequest {
                    token: b.token,
                    user: crate::users::NewUser {
                        username: "bench".into(),
                        agency: "BENCH0000".into(),
                        title: "bench".into(),
                        role: crate::users::Role::Administrator,
                        password: password.clone(),
                        training_completed: "2026-01-01".into(),
                        training_expires: "2099-01-01".into(),
                    },
                },
            )
            .await?;
        let mut lat = Vec::with_capacity(args.logins);
        for _ in 0..args.logins.max(1) {
            let mut c = crate::api::client::ApiClient::connect(&url, &ca).await?;
            let t = Instant::now();
            let _: crate::users::Login = c
                .post(
                    "/api/v1/login",
                    &crate::api::users::LoginRequest {
                        username: "bench".into(),
                        password: password.clone(),
                    },
                )
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(lat)
    }
    .await;
    cancel.cancel();
    let _ = server.await;
    let mut lat = result?;
    lat.sort_by(f64::total_cmp);
    let report = LoginReport {
        logins: lat.len(),
        login_p50_ms: percentile(&lat, 0.50),
        login_p99_ms: percentile(&lat, 0.99),
        argon2: "argon2id m=19456 KiB t=2 p=1",
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:<8} {:>10} {:>10}", "logins", "p50 ms", "p99 ms");
        println!(
            "{:<8} {:>10.1} {:>10.1}",
            report.logins, report.login_p50_ms, report.login_p99_ms
        );
        println!("({}; target p99 ≤ 100 ms)", report.argon2);
    }
    Ok(())
}
