//! The hub's benchmarks. This file is `alpr-bench hub ingest`: many
//! edges' signed reads through the hub's real ingest path — session, per-entry `verify_strict` on the blocking pool,
//! chain placement, the single writer with a durable commit per
//! transaction, signed receipts — and a table of what it sustained: reads
//! per second and the acknowledgement latency (a frame's submission to its
//! receipt). With `--quic`, the edges are real QUIC connections with real
//! certificates to `hub serve` running in this process; with
//! `--backend postgres --hubs N`, to N `hub serve` processes sharing one
//! PostgreSQL database, the edges spread over them.

pub mod console;
pub mod export;
pub mod hotlist;
mod hubs;
mod inproc;
mod limit;
mod login;
pub(crate) mod pg;
pub mod push;
mod quic;
mod report;
pub mod retention;
pub mod search;
pub(crate) mod served;

use inproc::{run_in_process, run_in_process_pg};
pub(crate) use inproc::{run_in_process_on, run_in_process_with};
pub use login::{login, LoginArgs};
use quic::{run_quic, run_quic_hubs};
pub(crate) use quic::{write_ca_and_hub, write_pki};
use report::print_report;
pub use report::{CpuUse, HubFigures, IngestReport, OpenLoop};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alpr_shared::crypto::{sha256, SecretKey};
use alpr_shared::log::LogWriter;
use alpr_shared::types::{DeviceId, DeviceKind, TimeSource, UnixMillis};
use alpr_shared::wire::{Entries, Frame, MAX_ENTRIES_PER_FRAME};
use anyhow::Context;
use serde::Serialize;

use alpr_hub::ingest::WriterConfig;
use alpr_hub::store::postgres::PgStore;
use alpr_hub::store::ChainStore;
use hubs::HubCounters;

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
    #[arg(long, default_value_t = alpr_hub::sync::PIPELINE)]
    pub in_flight: usize,
    /// Entries the hub admits at once over all edges (the hub's
    /// `sync::ADMITTED_ENTRIES`).
    #[arg(long, default_value_t = alpr_hub::sync::ADMITTED_ENTRIES)]
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
    /// After the run at most speed, the same again (fresh store) at this
    /// offered rate, reads per second over all edges (an open loop, e.g.
    /// 10000 from 100 edges): the acknowledgement time at that rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// At a fixed rate, each edge sends what it read in this many
    /// milliseconds as one frame.
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

pub use alpr_hub::sample::sample_read;

/// A simulated edge's key, derived from its name (the bench needs it twice:
/// to sign the log, and its checkpoints when framing).
pub(crate) fn node_key(name: &DeviceId) -> SecretKey {
    SecretKey::from_bytes(&sha256(name.as_str().as_bytes()).0)
}

pub use alpr_shared::health::filesystem_of;

/// The filesystem `dir` is on, refused when it is tmpfs (unless
/// `allow_tmpfs`): there a durable write costs nothing, and `why` says
/// which figure that would mislead.
pub(crate) fn on_disk(dir: &Path, allow_tmpfs: bool, why: &str) -> anyhow::Result<String> {
    let fs = filesystem_of(dir);
    anyhow::ensure!(
        fs != "tmpfs" || allow_tmpfs,
        "{} is on tmpfs: {why}. Choose a folder on disk with --dir, or pass --allow-tmpfs",
        dir.display()
    );
    Ok(fs)
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
    /// Each entry's signed message (tag and header) and signature, for the
    /// machine's limit.
    signed: Vec<(Vec<u8>, alpr_shared::crypto::Signature)>,
}

/// How the simulated edges offer their frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Offer {
    /// Each edge as fast as the hub takes its frames (its pipeline kept
    /// full): the most the hub sustains, and the latency of a queue.
    Closed,
    /// At a fixed rate: each edge sends a frame every `every`, the edges'
    /// frames spread evenly over that interval; a frame's latency counts
    /// from when it was due, sent late or not.
    Open { every: Duration },
}

impl Offer {
    /// When edge `e` of `edges` offers its first frame, and how often after.
    pub(crate) fn schedule(
        self,
        start: Instant,
        e: usize,
        edges: usize,
    ) -> Option<(Instant, Duration)> {
        match self {
            Offer::Closed => None,
            Offer::Open { every } => {
                Some((start + every.mul_f64(e as f64 / edges.max(1) as f64), every))
            }
        }
    }
}

/// The outcome of one run.
pub(crate) struct Run {
    pub(crate) stored: u64,
    /// Reads acknowledged before the run's stop fired (all of them
    /// without one).
    pub(crate) acked_before_stop: u64,
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

impl Run {
    /// A run through one hub in this process: all its reads are that
    /// hub's.
    fn one_hub(
        edges: usize,
        stored: u64,
        acked_before_stop: u64,
        latencies_ms: Vec<f64>,
        waits_ms: Vec<f64>,
        seconds: f64,
        commits: Option<(u64, f64)>,
    ) -> Run {
        Run {
            stored,
            acked_before_stop,
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
            commits,
            postgres_cpu_s: None,
        }
    }
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
            "\n{:<10} {:>5} {:>10} {:>10} {:>9} {:>9} {:>8} {:>12}",
            "BACKEND", "HUBS", "READS", "reads/s", "ack p50", "ack p99", "÷limit", "rate p99"
        );
        for r in &reports {
            println!(
                "{:<10} {:>5} {:>10} {:>10.0} {:>7.1}ms {:>7.1}ms {:>8} {:>12}",
                r.backend.name(),
                r.hubs,
                r.reads,
                r.reads_per_s,
                r.ack_p50_ms,
                r.ack_p99_ms,
                r.ratio_to_limit
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.2}")),
                r.open_loop
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |o| format!("{:.1}ms", o.ack_p99_ms)),
            );
        }
    }
    Ok(())
}

/// The runs on `backend`: at most speed (with the machine's own limit
/// measured on the same entries), then at `--rate` if given, each on a
/// fresh store.
async fn ingest_on(args: &IngestArgs, backend: BenchBackend) -> anyhow::Result<IngestReport> {
    let mut report = run_once(args, backend, Offer::Closed).await?;
    if let Some(rate) = args.rate {
        let open = open_offer(args, rate)?;
        let r = run_once(args, backend, open.offer).await?;
        report.open_loop = Some(OpenLoop {
            offered_per_s: open.per_s,
            frame_entries: open.frame_entries,
            every_ms: open.every.as_secs_f64() * 1e3,
            reads: r.reads,
            achieved_per_s: r.reads_per_s,
            ack_p50_ms: r.ack_p50_ms,
            ack_p99_ms: r.ack_p99_ms,
            ack_max_ms: r.ack_max_ms,
            seconds: r.seconds,
            path: r.path,
            database: r.database,
        });
    }
    Ok(report)
}

/// A fixed offered rate: each edge sends what it read in a tick.
struct OpenOffer {
    offer: Offer,
    per_s: f64,
    frame_entries: usize,
    every: Duration,
}

fn open_offer(args: &IngestArgs, rate: f64) -> anyhow::Result<OpenOffer> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "--rate wants reads per second above 0"
    );
    let tick = Duration::from_millis(args.tick_ms.max(1));
    let per_edge = rate / args.edges as f64;
    let frame_entries =
        ((per_edge * tick.as_secs_f64()).round() as usize).clamp(1, MAX_ENTRIES_PER_FRAME);
    // The interval that gives the rate asked with whole frames.
    let every = Duration::from_secs_f64(frame_entries as f64 / per_edge);
    Ok(OpenOffer {
        offer: Offer::Open { every },
        per_s: frame_entries as f64 * args.edges as f64 / every.as_secs_f64(),
        frame_entries,
        every,
    })
}

/// One run on `backend`: sign the edges' logs, upload them as `offer`
/// says, verify what was stored.
async fn run_once(
    args: &IngestArgs,
    backend: BenchBackend,
    offer: Offer,
) -> anyhow::Result<IngestReport> {
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
    let fs = on_disk(
        &dir,
        args.allow_tmpfs,
        "the durable commits would cost nothing",
    )?;
    let hubs = match backend {
        BenchBackend::Redb => 1,
        BenchBackend::Postgres => args.hubs,
    };
    let per_edge = args.reads / args.edges;
    let total = per_edge * args.edges;
    let batch = match offer {
        Offer::Closed => args.batch.clamp(1, MAX_ENTRIES_PER_FRAME),
        Offer::Open { .. } => open_offer(args, args.rate.unwrap_or(1.0))?.frame_entries,
    };

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
    // The machine's own limit on the same entries, before the run.
    let verify_limit_per_s = match offer {
        Offer::Closed => {
            let signed: Vec<_> = loads.iter().map(|l| (l.public, &l.signed[..])).collect();
            Some(tokio::task::block_in_place(|| {
                limit::verify_limit(&signed)
            })?)
        }
        Offer::Open { .. } => None,
    };
    let loads: Vec<EdgeLoad> = loads
        .into_iter()
        .map(|l| EdgeLoad {
            signed: Vec::new(),
            ..l
        })
        .collect();

    let database = match backend {
        BenchBackend::Redb => None,
        BenchBackend::Postgres => Some(
            pg::BenchDatabase::fresh(
                args.database_url.as_deref(),
                "alpr_bench_ingest",
                &parent,
                args.allow_tmpfs,
            )
            .await?,
        ),
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
            (None, true) => run_quic(args, &dir, &pki_dir, loads, offer).await?,
            (None, false) => run_in_process(args, &dir, loads, offer).await?,
            (Some(d), true) => run_quic_hubs(args, hubs, &dir, &pki_dir, loads, d, offer).await?,
            (Some(d), false) => run_in_process_pg(args, hubs, loads, d, offer).await?,
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
    let database_fs = database.as_ref().map(|d| d.fs.clone());
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
        database_fs,
        synchronous_commit,
        fsync,
        edges: args.edges,
        reads: total,
        reads_per_s: total as f64 / run.seconds,
        ack_p50_ms: percentile(&lat, 0.5),
        ack_p99_ms: percentile(&lat, 0.99),
        ack_max_ms: lat.last().copied().unwrap_or(0.0),
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
        verify_limit_per_s,
        ratio_to_limit: verify_limit_per_s.map(|l| total as f64 / run.seconds / l),
        open_loop: None,
    })
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
    let mut signed = Vec::with_capacity(per_edge);
    let mut chunk = Vec::with_capacity(batch);
    for i in 0..per_edge {
        let n = (e * per_edge + i) as u64;
        let entry = w
            .append_read(sample_read(n), UnixMillis(base + i as u64), TimeSource::Gps)
            .expect("valid read");
        canonical += entry.encode().len();
        let mut msg = alpr_shared::crypto::tag::ENTRY_SIG.to_vec();
        msg.extend_from_slice(&entry.header.encode());
        signed.push((msg, entry.signature));
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
            signed,
        },
        canonical,
    )
}
