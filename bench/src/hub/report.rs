//! What `alpr-bench hub ingest` reports: the figures `--json` prints, and the
//! same as a table for people.

use serde::Serialize;

use super::hubs::{self, HubCounters};
use super::{BenchBackend, IngestArgs};

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
    pub(super) fn since(before: CpuMark) -> Self {
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
    /// The filesystem of the PostgreSQL cluster's data folder ("unknown"
    /// for a server the bench cannot see).
    pub database_fs: Option<String>,
    /// As the PostgreSQL server ran them.
    pub synchronous_commit: Option<String>,
    pub fsync: Option<String>,
    pub edges: usize,
    pub reads: usize,
    pub reads_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
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
    /// The machine's own limit, measured in the same run: the same
    /// entries' signatures checked with `verify_strict` on every core and
    /// nothing else, per second.
    pub verify_limit_per_s: Option<f64>,
    /// reads_per_s ÷ verify_limit_per_s: the share of the machine's limit
    /// the whole ingest path reaches (goal ≥ 0.7). The machines' speed
    /// varies between runs; this ratio is the figure that travels.
    pub ratio_to_limit: Option<f64>,
    /// The same path at a fixed offered rate (`--rate`), on a fresh store.
    pub open_loop: Option<OpenLoop>,
}

/// `alpr-bench hub ingest --rate R`: the acknowledgement time at an offered
/// rate the hub keeps up with, beside the closed loop's maximum.
#[derive(Debug, Serialize)]
pub struct OpenLoop {
    /// Reads per second offered over all edges.
    pub offered_per_s: f64,
    /// Entries in each edge's frame, and how often each edge sends one.
    pub frame_entries: usize,
    pub every_ms: f64,
    pub reads: usize,
    /// Reads acknowledged per second (below the offer: the hub fell behind).
    pub achieved_per_s: f64,
    /// From when each frame was due (sent late or not) to its receipt.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub seconds: f64,
    pub path: String,
    pub database: Option<String>,
}

/// The table for people.
pub(super) fn print_report(args: &IngestArgs, report: &IngestReport) {
    let per_edge = report.reads / args.edges;
    println!(
        "alpr-bench hub ingest ({}, {}, {} hub{}): {} edges × {} reads = {} reads",
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
    if let (Some(limit), Some(ratio)) = (report.verify_limit_per_s, report.ratio_to_limit) {
        println!(
            "the machine's limit, same entries, verify_strict alone on {} cores: {limit:.0} reads/s; \
             ratio_to_limit {ratio:.2} (goal ≥ 0.7)",
            report.cpu.cores
        );
    }
    if let Some(o) = &report.open_loop {
        println!(
            "at a fixed rate (fresh store): {:.0} reads/s offered ({} edges, {} entries every \
             {:.0} ms each), {:.0} acknowledged per second; ack p50 {:.1} ms, p99 {:.1} ms, max \
             {:.1} ms (from when each frame was due)",
            o.offered_per_s,
            args.edges,
            o.frame_entries,
            o.every_ms,
            o.achieved_per_s,
            o.ack_p50_ms,
            o.ack_p99_ms,
            o.ack_max_ms
        );
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
