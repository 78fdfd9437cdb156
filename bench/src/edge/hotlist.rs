//! `alpr-bench edge hotlist`: how fast an edge loads, matches and updates a
//! bulk list, through the edge's own list store and matcher.
//!
//! The run builds an N-row list (`alpr_shared::hotlist::sample`, seeded)
//! as the hub would, signs it, stores it in an edge's data folder the way
//! the edge does ([`Generations::apply_full`]: checked, written, synced),
//! writes the delta to the next day's list (`--changes` rows replaced),
//! then measures in a fresh process of this binary (so the build's memory
//! does not hide the list's), after dropping the file from the page cache
//! (`posix_fadvise(DONTNEED)` once it is synced; `fincore` says what was
//! still cached, where it is installed): a real cold start as `edge run`
//! does it — [`Generations::open`] reads and checks every list, then a
//! [`MatcherSource`] builds the matcher (`cold_start_ms`) — the resident
//! memory that added (`rss_mb`), the time to match one read (best text +
//! 8 alternatives, a mix of hits and misses, after a warm-up), and the
//! delta applied as a running edge applies it: checked, stored durably,
//! swapped in, and the matcher rebuilt (`delta_apply_ms`), with the peak
//! resident memory of that swap, both generations held (`swap_peak_rss_mb`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use alpr_shared::cert::TrustAnchor;
use alpr_shared::hotlist::generation::{Generation, GenerationInfo};
use alpr_shared::hotlist::{delta, sample, Category, ListSettings, LocalEntry};
use alpr_shared::signer::{dev::Deployment, HotlistSigning, HubKey};
use alpr_shared::types::{Confidence, Hash32, UnixMillis};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use alpr_edge::alert::MatcherSource;
use alpr_edge::hotlist::generations::Generations;

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
    /// Folder for the edge's data folder and the delta (a new folder in
    /// it; default: the current folder, so the cold start reads a disk).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run even if the folder is on tmpfs (a cold start there reads memory).
    #[arg(long)]
    pub allow_tmpfs: bool,
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
    /// Where the edge's data folder was, and its filesystem.
    pub path: String,
    pub fs: String,
    /// Sorting, encoding and signing at the hub.
    pub build_ms: f64,
    /// Bytes of the list file still in the page cache when the cold start
    /// began (after `posix_fadvise(DONTNEED)`; from `fincore`, where
    /// installed).
    pub cached_bytes_at_start: Option<u64>,
    /// The edge's store opened (every list read from disk and checked:
    /// signature, hash, offsets) + the matcher built.
    pub cold_start_ms: f64,
    /// The same on the CPU only (what it costs a core; the wall time also
    /// counts waiting for the disk and for a core on a busy machine).
    pub cold_start_cpu_ms: Option<f64>,
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
    /// The delta as a running edge applies it: checked against the hub's
    /// key, the new generation stored durably (written, synced, renamed)
    /// and swapped in, the matcher rebuilt over it and published.
    pub delta_apply_ms: f64,
    pub delta_apply_cpu_ms: Option<f64>,
    /// Peak resident memory during that swap (both generations and both
    /// matchers held), over the process's memory before the list loaded.
    pub swap_peak_rss_mb: f64,
    /// Whether the peak was measured from just before the swap (the
    /// kernel's peak reset, `/proc/self/clear_refs`); else it is the
    /// process's peak so far, which the swap is.
    pub swap_peak_reset: bool,
}

/// What the fresh process measures.
#[derive(Debug, Serialize, Deserialize)]
struct LoadReport {
    rows: usize,
    cached_bytes_at_start: Option<u64>,
    cold_start_ms: f64,
    cold_start_cpu_ms: Option<f64>,
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
    swap_peak_rss_mb: f64,
    swap_peak_reset: bool,
}

/// The edge's data folder inside the run's folder.
const DATA: &str = "edge-data";
const SOURCE: &str = "ncic";
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
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let fs = alpr_shared::health::filesystem_of(&base);
    anyhow::ensure!(
        fs != "tmpfs" || args.allow_tmpfs,
        "{} is on tmpfs: a cold start there reads memory, not a disk. Choose a folder on disk \
         with --dir, or pass --allow-tmpfs",
        base.display()
    );
    let dir = base.join(format!("edge-hotlist-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = build_and_measure(&args, &dir, fs);
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
        source: SOURCE.into(),
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

fn build_and_measure(
    args: &HotlistBenchArgs,
    dir: &Path,
    fs: String,
) -> anyhow::Result<HotlistBenchReport> {
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
    // The list stored as an edge stores what the hub sends it.
    let data = dir.join(DATA);
    let store = Generations::open(&data, deployment.anchor.clone())?;
    store.apply_full(SOURCE, 1, g1.bytes().to_vec())?;
    drop(store);
    std::fs::write(dir.join(DELTA_FILE), &d).context("writing the delta")?;
    std::fs::write(dir.join(CA_FILE), &deployment.ca_pem)?;
    std::fs::write(dir.join(NEXT_HASH_FILE), g2.content_hash().to_hex())?;
    let (generation_bytes, delta_bytes) = (g1.bytes().len(), d.len());
    drop((g1, g2, d));

    eprintln!("measuring in a fresh process…");
    let exe = std::env::current_exe().context("finding this binary")?;
    let out = Command::new(exe)
        .args(["edge", "hotlist", "--load"])
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
        path: data.display().to_string(),
        fs,
        build_ms,
        cached_bytes_at_start: l.cached_bytes_at_start,
        cold_start_ms: l.cold_start_ms,
        cold_start_cpu_ms: l.cold_start_cpu_ms,
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
        swap_peak_rss_mb: l.swap_peak_rss_mb,
        swap_peak_reset: l.swap_peak_reset,
    })
}

/// Memory figures of this process from /proc/self/status (VmRSS, VmHWM),
/// in bytes.
fn status_bytes(field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kb * 1024)
}

fn rss_bytes() -> anyhow::Result<u64> {
    status_bytes("VmRSS:")
}

/// Reset the kernel's peak resident memory of this process to its current
/// one (Linux ≥ 4.0); whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
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

/// The measuring process: an edge starting with the list on disk, then
/// taking the next day's delta.
fn load(dir: &Path, args: &HotlistBenchArgs) -> anyhow::Result<LoadReport> {
    let anchor = TrustAnchor::from_pem(&std::fs::read(dir.join(CA_FILE))?).context("the CA")?;
    let data = dir.join(DATA);
    let file = data.join("hotlists").join(format!("{SOURCE}.gen"));
    alpr_shared::health::drop_from_page_cache(&file)
        .with_context(|| format!("dropping {} from the page cache", file.display()))?;
    let cached_bytes_at_start = alpr_shared::health::cached_bytes(&file);
    // The matcher follows the store on a runtime, as in `edge run`; one
    // thread, so the CPU time of this thread is all of it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let _entered = runtime.enter();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut rng = sample::Rng::new(7);
    let rss0 = rss_bytes()?;

    // The cold start: the store reads and checks every list …
    let cpu0 = cpu_ms();
    let t0 = Instant::now();
    let generations = Generations::open(&data, anchor)?;
    let open_ms = ms(t0);
    let g = generations.get(SOURCE).context("the list did not load")?;
    // (The wildcard entries come from the officers' document, not from
    // the list: making them is not timed.)
    let cpu_a = cpu_ms();
    let local = wildcards(&g, args.wildcards, &mut rng);
    drop(g);
    let cpu_b = cpu_ms();
    // … and the matcher follows its inputs as `edge run` wires them.
    let t = Instant::now();
    let source = MatcherSource::new();
    source.set_excluded(vec![Category::Immigration]);
    source.follow_bulk(generations.watch(), cancel.clone());
    source.set_local(local);
    let matcher_ms = ms(t);
    let cold_start_ms = open_ms + matcher_ms;
    let cold_start_cpu_ms = cpu_since(cpu0)
        .zip(cpu_since(cpu_a))
        .zip(cpu_since(cpu_b))
        .map(|((all, from_a), from_b)| all - (from_a - from_b));
    let rss_mb = rss_bytes()?.saturating_sub(rss0) as f64 / (1024.0 * 1024.0);

    // Reads: one in five of a listed plate (as read or with a confusable
    // character), the others of plates not listed.
    let g = generations.get(SOURCE).context("the list did not load")?;
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
    let rows = g.len();
    drop(g);
    let matcher = source.current();
    let now = UnixMillis::now();
    let mut out = Vec::new();
    let mut times = Vec::with_capacity(args.reads);
    let mut hit_reads = 0;
    for (k, read) in texts.iter().enumerate() {
        // The alternatives, each with a probability below the best's.
        let alternatives: Vec<(&str, Confidence)> = read
            .iter()
            .enumerate()
            .skip(1)
            .map(|(rank, t)| (t.as_str(), (5_000 / (rank + 1)) as Confidence))
            .collect();
        out.clear();
        let t = Instant::now();
        matcher.match_read(&read[0], &alternatives, None, now, &mut out);
        let us = t.elapsed().as_secs_f64() * 1e6;
        if k >= args.reads {
            times.push(us);
            hit_reads += usize::from(!out.is_empty());
        }
    }
    times.sort_by(f64::total_cmp);
    drop((matcher, texts, misses));

    // The delta, as the edge's sync applies it: checked, stored durably,
    // swapped in; then the matcher rebuilt over the new set.
    let d = std::fs::read(dir.join(DELTA_FILE)).context("reading the delta")?;
    let want = std::fs::read_to_string(dir.join(NEXT_HASH_FILE))?;
    let mut rebuilt = source.watch();
    rebuilt.borrow_and_update();
    let swap_peak_reset = reset_peak_rss();
    let cpu = cpu_ms();
    let t = Instant::now();
    generations.apply_delta(SOURCE, 1, 2, &d)?;
    runtime
        .block_on(tokio::time::timeout(
            Duration::from_secs(120),
            rebuilt.changed(),
        ))
        .context("the matcher was not rebuilt within 120 s")??;
    let delta_apply_ms = ms(t);
    let delta_apply_cpu_ms = cpu_since(cpu);
    let swap_peak_rss_mb = status_bytes("VmHWM:")?.saturating_sub(rss0) as f64 / (1024.0 * 1024.0);
    cancel.cancel();
    let held = generations.get(SOURCE).context("the list is gone")?;
    if held.info().number != 2 || held.content_hash().to_hex() != want.trim() {
        bail!("the delta gave another generation than the hub's");
    }

    Ok(LoadReport {
        rows,
        cached_bytes_at_start,
        cold_start_ms,
        cold_start_cpu_ms,
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
        swap_peak_rss_mb,
        swap_peak_reset,
    })
}

fn print_table(r: &HotlistBenchReport) {
    let mb = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "hotlist: {} rows ({} listed), {} wildcard entries; the edge's data folder {} ({})",
        r.entries, r.rows, r.wildcards, r.path, r.fs
    );
    println!("  {:<16} {:>10.1} MB", "generation", mb(r.generation_bytes));
    println!(
        "  {:<16} {:>10.1} ms   (hub: sort, encode, sign)",
        "build", r.build_ms
    );
    let cpu = |c: Option<f64>| c.map_or_else(|| "?".to_string(), |c| format!("{c:.1}"));
    println!(
        "  {:<16} {:>10.1} ms   (store opened, list read from disk and checked {:.1} + matcher {:.1}; \
         on a CPU {} ms)   target ≤ 250",
        "cold start",
        r.cold_start_ms,
        r.open_ms,
        r.matcher_ms,
        cpu(r.cold_start_cpu_ms)
    );
    println!(
        "  {:<16} {:>10}      (of the list file, after posix_fadvise(DONTNEED); fincore)",
        "cached at start",
        r.cached_bytes_at_start
            .map_or_else(|| "unknown".to_string(), |b| format!("{b} B"))
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
        "  {:<16} {:>10.1} ms   (checked, stored durably, swapped, matcher rebuilt; on a CPU {} ms)   \
         target ≤ 100",
        "delta apply",
        r.delta_apply_ms,
        cpu(r.delta_apply_cpu_ms)
    );
    println!(
        "  {:<16} {:>10.1} MB   (both generations held; {})",
        "swap peak",
        r.swap_peak_rss_mb,
        if r.swap_peak_reset {
            "peak reset just before the swap"
        } else {
            "the process's peak so far: the kernel's peak could not be reset"
        }
    );
}
