//! `edge bench hotlist`: how fast an edge loads and matches a bulk list.
//!
//! The run builds an N-row list (`alpr_shared::hotlist::sample`, seeded)
//! as the hub would, signs it, writes the generation file and the delta
//! to the next day's list (`--changes` rows replaced), then measures in a
//! fresh process of this binary (so the build's memory does not hide the
//! list's): reading the file, opening it (signature, content hash, every
//! offset) and building the matcher (`cold_start_ms`), the resident memory
//! that added (`rss_mb`), the time to match one read (best text + 8
//! alternatives, a mix of hits and misses, after a warm-up), and applying
//! the delta (`delta_apply_ms`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use alpr_shared::cert::TrustAnchor;
use alpr_shared::hotlist::generation::{Generation, GenerationInfo};
use alpr_shared::hotlist::matcher::Matcher;
use alpr_shared::hotlist::{delta, sample, Category, ListSettings, LocalEntry};
use alpr_shared::signer::{dev::Deployment, HotlistSigning, HubKey};
use alpr_shared::types::{Hash32, UnixMillis};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Args)]
pub struct HotlistBenchArgs {
    /// Rows of the generated list.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Local entries with wildcards matched beside the list.
    #[arg(long, default_value_t = 1_000)]
    pub wildcards: usize,
    /// Rows replaced in the next day's list (the delta).
    #[arg(long, default_value_t = 5_000)]
    pub changes: usize,
    /// Reads matched (after as many again of warm-up).
    #[arg(long, default_value_t = 20_000)]
    pub reads: usize,
    /// Folder for the generation and delta files (a new folder in it;
    /// default: the system's temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// Internal: measure the files in this folder (the fresh process).
    #[arg(long, hide = true)]
    pub load: Option<PathBuf>,
}

/// What `--json` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct HotlistBenchReport {
    pub entries: usize,
    pub rows: usize,
    pub wildcards: usize,
    pub generation_bytes: usize,
    /// Sorting, encoding and signing at the hub.
    pub build_ms: f64,
    /// Read the file + open (signature, hash, offsets) + matcher ready.
    pub cold_start_ms: f64,
    /// The same on the CPU only (what it costs a core; the wall time also
    /// counts waiting for a core on a busy machine).
    pub cold_start_cpu_ms: Option<f64>,
    pub read_ms: f64,
    pub open_ms: f64,
    pub matcher_ms: f64,
    /// Resident memory the loaded list and matcher added.
    pub rss_mb: f64,
    pub match_p50_us: f64,
    pub match_p99_us: f64,
    pub match_max_us: f64,
    /// Reads matched and how many of them hit.
    pub reads: usize,
    pub hit_reads: usize,
    pub changes: usize,
    pub delta_bytes: usize,
    pub diff_ms: f64,
    pub delta_apply_ms: f64,
    pub delta_apply_cpu_ms: Option<f64>,
}

/// What the fresh process measures.
#[derive(Debug, Serialize, Deserialize)]
struct LoadReport {
    rows: usize,
    cold_start_ms: f64,
    cold_start_cpu_ms: Option<f64>,
    read_ms: f64,
    open_ms: f64,
    matcher_ms: f64,
    rss_mb: f64,
    match_p50_us: f64,
    match_p99_us: f64,
    match_max_us: f64,
    reads: usize,
    hit_reads: usize,
    delta_apply_ms: f64,
    delta_apply_cpu_ms: Option<f64>,
}

const GEN_FILE: &str = "ncic-1.gen";
const DELTA_FILE: &str = "ncic-1-2.delta";
/// The CA the generation's hotlist key chains to.
const CA_FILE: &str = "ca.crt";
const NEXT_HASH_FILE: &str = "ncic-2.hash";

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn hotlist(args: HotlistBenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.load {
        let report = load(dir, &args)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("edge-hotlist-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = build_and_measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn info(number: u64) -> GenerationInfo {
    GenerationInfo {
        source: "ncic".into(),
        number,
        issued_at: UnixMillis::now(),
        source_sha256: Hash32([number as u8; 32]),
        source_rows: 0,
        rows: 0,
        categories: Vec::new(),
        settings: ListSettings {
            skip: vec!["0".into(), "000".into()],
            ..ListSettings::default()
        },
    }
}

fn build_and_measure(args: &HotlistBenchArgs, dir: &Path) -> anyhow::Result<HotlistBenchReport> {
    let deployment = Deployment::new().map_err(anyhow::Error::msg)?;
    let key: HubKey<HotlistSigning> = deployment.key("hub").map_err(anyhow::Error::msg)?;
    eprintln!("generating {} rows…", args.entries);
    let rows = sample::entries(args.entries, 1);
    let next = sample::change(&rows, args.changes, 2);
    let mut first = info(1);
    first.source_rows = rows.len() as u64;
    let t = Instant::now();
    let g1 = Generation::build(first, rows, &key).context("building the list")?;
    let build_ms = ms(t);
    let mut second = info(2);
    second.source_rows = next.len() as u64;
    let g2 = Generation::build(second, next, &key).context("building the next list")?;
    let t = Instant::now();
    let d = delta::diff(&g1, &g2);
    let diff_ms = ms(t);
    std::fs::write(dir.join(GEN_FILE), g1.bytes()).context("writing the generation")?;
    std::fs::write(dir.join(DELTA_FILE), &d).context("writing the delta")?;
    std::fs::write(dir.join(CA_FILE), &deployment.ca_pem)?;
    std::fs::write(dir.join(NEXT_HASH_FILE), g2.content_hash().to_hex())?;
    let (generation_bytes, delta_bytes) = (g1.bytes().len(), d.len());
    drop((g1, g2, d));

    eprintln!("measuring in a fresh process…");
    let exe = std::env::current_exe().context("finding this binary")?;
    let out = Command::new(exe)
        .args(["bench", "hotlist", "--load"])
        .arg(dir)
        .args(["--wildcards", &args.wildcards.to_string()])
        .args(["--reads", &args.reads.to_string()])
        .output()
        .context("running the measuring process")?;
    if !out.status.success() {
        bail!(
            "the measuring process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let l: LoadReport =
        serde_json::from_slice(&out.stdout).context("reading the measuring process's report")?;
    Ok(HotlistBenchReport {
        entries: args.entries,
        rows: l.rows,
        wildcards: args.wildcards,
        generation_bytes,
        build_ms,
        cold_start_ms: l.cold_start_ms,
        cold_start_cpu_ms: l.cold_start_cpu_ms,
        read_ms: l.read_ms,
        open_ms: l.open_ms,
        matcher_ms: l.matcher_ms,
        rss_mb: l.rss_mb,
        match_p50_us: l.match_p50_us,
        match_p99_us: l.match_p99_us,
        match_max_us: l.match_max_us,
        reads: l.reads,
        hit_reads: l.hit_reads,
        changes: args.changes,
        delta_bytes,
        diff_ms,
        delta_apply_ms: l.delta_apply_ms,
        delta_apply_cpu_ms: l.delta_apply_cpu_ms,
    })
}

/// Time this thread has spent on a CPU, in ms (`None` where the kernel
/// does not say). Yielding first makes the scheduler account the time up
/// to now.
fn cpu_ms() -> Option<f64> {
    std::thread::yield_now();
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e6)
}

fn cpu_since(start: Option<f64>) -> Option<f64> {
    Some(cpu_ms()? - start?)
}

/// Resident memory of this process (VmRSS), in bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Partial plates as officers enter them: a stretch of a listed plate
/// with `*` or `?` around it.
fn wildcards(g: &Generation, n: usize, rng: &mut sample::Rng) -> Vec<LocalEntry> {
    let now = UnixMillis::now();
    (0..n)
        .filter_map(|k| {
            let plate = String::from_utf8_lossy(g.plate(rng.below(g.len().max(1)))).into_owned();
            if plate.len() < 5 {
                return None;
            }
            let pattern = match k % 4 {
                0 => format!("{}*", &plate[..4]),
                1 => format!("*{}", &plate[plate.len() - 4..]),
                2 => format!("{}?{}", &plate[..2], &plate[3..]),
                _ => format!("{}*{}", &plate[..3], &plate[plate.len() - 1..]),
            };
            Some(LocalEntry {
                id: format!("w{k}"),
                plate: pattern,
                state: String::new(),
                category: Category::Suspect,
                reason: "bench".into(),
                case: String::new(),
                level: Default::default(),
                make: String::new(),
                model: String::new(),
                colour: String::new(),
                expires_at: UnixMillis(now.0 + 86_400_000),
                author: "bench".into(),
                agency: "bench".into(),
                created_at: now,
                updated_at: now,
                removed: None,
            })
        })
        .collect()
}

/// One read as the recogniser gives it: the best text and 8 alternatives
/// (confusable characters swapped, one character changed or dropped).
fn read_texts(best: &str, rng: &mut sample::Rng) -> Vec<String> {
    const SWAP: [(u8, u8); 8] = [
        (b'0', b'O'),
        (b'O', b'0'),
        (b'1', b'I'),
        (b'8', b'B'),
        (b'B', b'8'),
        (b'5', b'S'),
        (b'2', b'Z'),
        (b'D', b'0'),
    ];
    let mut out = vec![best.to_string()];
    let b = best.as_bytes();
    while out.len() < 9 {
        let mut v = b.to_vec();
        let at = rng.below(v.len().max(1));
        match rng.below(3) {
            0 => {
                if let Some(c) = v.get_mut(at) {
                    *c = SWAP
                        .iter()
                        .find(|(from, _)| from == c)
                        .map(|(_, to)| *to)
                        .unwrap_or(b'A' + rng.below(26) as u8);
                }
            }
            1 => {
                if let Some(c) = v.get_mut(at) {
                    *c = b'0' + rng.below(10) as u8;
                }
            }
            _ => {
                if v.len() > 2 {
                    v.remove(at);
                }
            }
        }
        out.push(String::from_utf8_lossy(&v).into_owned());
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The measuring process.
fn load(dir: &Path, args: &HotlistBenchArgs) -> anyhow::Result<LoadReport> {
    let hub = TrustAnchor::from_pem(&std::fs::read(dir.join(CA_FILE))?).context("the CA")?;
    let mut rng = sample::Rng::new(7);
    let rss0 = rss_bytes()?;

    let cpu0 = cpu_ms();
    let t0 = Instant::now();
    let bytes = std::fs::read(dir.join(GEN_FILE)).context("reading the generation")?;
    let read_ms = ms(t0);
    let t = Instant::now();
    let g = Arc::new(Generation::open(bytes, &hub).context("opening the generation")?);
    let open_ms = ms(t);
    // The wildcard entries come from the officers' document, not from
    // the list: making them is not timed.
    let cpu_a = cpu_ms();
    let l = wildcards(&g, args.wildcards, &mut rng);
    let cpu_b = cpu_ms();
    let t = Instant::now();
    let matcher = Matcher::new(vec![g.clone()], l, &[Category::Immigration]);
    let matcher_ms = ms(t);
    let cold_start_ms = read_ms + open_ms + matcher_ms;
    let cold_start_cpu_ms = cpu_since(cpu0)
        .zip(cpu_since(cpu_a))
        .zip(cpu_since(cpu_b))
        .map(|((all, from_a), from_b)| all - (from_a - from_b));
    let rss_mb = rss_bytes()?.saturating_sub(rss0) as f64 / (1024.0 * 1024.0);

    // Reads: one in five of a listed plate (as read or with a confusable
    // character), the others of plates not listed.
    let misses = sample::entries(args.reads.max(1), 99);
    let texts: Vec<Vec<String>> = (0..args.reads * 2)
        .map(|k| {
            let best = if k % 5 == 0 {
                String::from_utf8_lossy(g.plate(rng.below(g.len().max(1)))).into_owned()
            } else {
                misses[k % misses.len()].plate.clone()
            };
            read_texts(&best, &mut rng)
        })
        .collect();
    let now = UnixMillis::now();
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(args.reads);
    let mut hit_reads = 0;
    for (k, read) in texts.iter().enumerate() {
        let refs: Vec<&str> = read.iter().map(String::as_str).collect();
        out.clear();
        let t = Instant::now();
        matcher.match_read(&refs, None, now, &mut out);
        let us = t.elapsed().as_secs_f64() * 1e6;
        if k >= args.reads {
            times.push(us);
            hit_reads += usize::from(!out.is_empty());
        }
    }
    times.sort_by(f64::total_cmp);

    let d = std::fs::read(dir.join(DELTA_FILE)).context("reading the delta")?;
    let want = std::fs::read_to_string(dir.join(NEXT_HASH_FILE))?;
    let cpu = cpu_ms();
    let t = Instant::now();
    let g2 = delta::apply(&g, &d, &hub).context("applying the delta")?;
    let delta_apply_ms = ms(t);
    let delta_apply_cpu_ms = cpu_since(cpu);
    if g2.content_hash().to_hex() != want.trim() {
        bail!("the delta gave another generation than the hub's");
    }

    Ok(LoadReport {
        rows: g.len(),
        cold_start_ms,
        cold_start_cpu_ms,
        read_ms,
        open_ms,
        matcher_ms,
        rss_mb,
        match_p50_us: percentile(&times, 0.50),
        match_p99_us: percentile(&times, 0.99),
        match_max_us: times.last().copied().unwrap_or(0.0),
        reads: times.len(),
        hit_reads,
        delta_apply_ms,
        delta_apply_cpu_ms,
    })
}

fn print_table(r: &HotlistBenchReport) {
    let mb = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "hotlist: {} rows ({} listed), {} wildcard entries",
        r.entries, r.rows, r.wildcards
    );
    println!("  {:<16} {:>10.1} MB", "generation", mb(r.generation_bytes));
    println!(
        "  {:<16} {:>10.1} ms   (hub: sort, encode, sign)",
        "build", r.build_ms
    );
    let cpu = |c: Option<f64>| c.map_or_else(|| "?".to_string(), |c| format!("{c:.1}"));
    println!(
        "  {:<16} {:>10.1} ms   (read {:.1} + open {:.1} + matcher {:.1}; on a CPU {} ms)   target ≤ 250",
        "cold start",
        r.cold_start_ms,
        r.read_ms,
        r.open_ms,
        r.matcher_ms,
        cpu(r.cold_start_cpu_ms)
    );
    println!("  {:<16} {:>10.1} MB   target ≤ 120", "resident", r.rss_mb);
    println!(
        "  {:<16} {:>10.2} µs   p99 {:.2} µs (target ≤ 10), max {:.1} µs; {} reads, {} hit",
        "match p50", r.match_p50_us, r.match_p99_us, r.match_max_us, r.reads, r.hit_reads
    );
    println!(
        "  {:<16} {:>10.1} KB   ({} rows changed; diff {:.0} ms)   target ≤ 100",
        "delta",
        r.delta_bytes as f64 / 1024.0,
        r.changes,
        r.diff_ms
    );
    println!(
        "  {:<16} {:>10.1} ms   (on a CPU {} ms)   target ≤ 100",
        "delta apply",
        r.delta_apply_ms,
        cpu(r.delta_apply_cpu_ms)
    );
}
