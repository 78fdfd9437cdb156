//! `alpr-bench edge recognize`: this system against the fast-alpr peer, system
//! against system, on labelled folders (each reported on its own): our
//! recogniser as the edge runs it (its detector thresholds, its OCR
//! ensemble, its several crop margins per box) against fast-alpr 0.4's
//! own pipeline with its defaults (one crop per box, one OCR model, its
//! detector threshold), both on the same ONNX model files. The per-folder
//! difference in exact plates comes with a 95 % interval from the same
//! photos ([`super::paired`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::paired::{self, Paired};
use alpr_edge::recognise::batch;
use alpr_edge::recognise::fusion::edit_distance;
use alpr_edge::recognise::labelled::{labelled_folder, normalise, Labelled};
use alpr_edge::recognise::{PlateRead, Recogniser, RecogniserOptions, StageTimes, MODELS_ENV};

/// Arguments of `alpr-bench edge recognize`.
#[derive(Debug, clap::Args)]
pub struct BenchRecognizeArgs {
    /// Folders of NAME.jpg + NAME.txt, each reported on its own (say the
    /// US folder and the held-out Brazilian one).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Models directory (the pinned detector and OCR files).
    #[arg(long, env = MODELS_ENV, default_value = "models")]
    pub models: PathBuf,
    /// Worker threads for our extra throughput pass; default: all cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Python with fast-alpr installed (default: .runtime/peer-venv/bin/python
    /// above the current directory, else python3).
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
    /// The script that times the peer (default: the copy built into this
    /// binary of the repo's scripts/peer-bench.py).
    #[arg(long)]
    pub peer_script: Option<PathBuf>,
    /// Do not run the peer.
    #[arg(long)]
    pub no_peer: bool,
    /// Print every miss (file, truth, our read, alternatives).
    #[arg(long)]
    pub misses: bool,
    /// Crop margins to read per box, as "x:y,x:y" fractions (tuning).
    #[arg(long)]
    pub pads: Option<String>,
    /// ONNX Runtime intra-op threads per model session, for ours and the
    /// peer alike, both reading one photo at a time (default 1).
    #[arg(long, alias = "latency-threads", default_value_t = 1)]
    pub threads: usize,
    /// Detector score threshold (tuning).
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Leave out the v1 OCR (tuning).
    #[arg(long)]
    pub no_v1: bool,
    /// Confidence above which the first read of a box is final (tuning;
    /// 1.1 reads every box with every crop and model).
    #[arg(long)]
    pub sure: Option<f32>,
    /// Print one JSON object per folder (`ours` and `peer`, each with
    /// `exact`, `p50_ms`, `p95_ms`, `photos_per_s`; `difference`, ours −
    /// the peer's exact rate with its 95 % interval) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Accuracy and timing figures of one system on a folder.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub n: usize,
    /// First guess equals the label, O and 0 counted as one character.
    pub exact: usize,
    /// First guess equals the label character for character.
    pub exact_strict: usize,
    /// The label is among the guesses (O≡0).
    pub in_top: usize,
    pub char_acc: f64,
    pub no_detection: usize,
    pub errors: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// One photo at a time: photos / the sum of their times.
    pub photos_per_s: Option<f64>,
    /// Ours only: the folder over several workers, wall clock.
    pub folder_per_s: Option<f64>,
    pub stages: Option<[(f64, f64); 4]>,
    /// Each photo and whether the first guess was exact (O≡0), for the
    /// paired comparison.
    pub outcomes: Vec<(PathBuf, bool)>,
}

/// How both systems are scored: O and 0 are one character. Our recogniser
/// folds O into 0 on US-style plates and the peer does not; scoring both
/// modulo O≡0 takes that rule out of the comparison.
pub const O0_RULE: &str = "both scored modulo O≡0 (O and 0 count as the same character)";

fn o_as_zero(s: &str) -> String {
    s.replace('O', "0")
}

fn char_accuracy(got: &str, want: &str) -> f64 {
    if want.is_empty() {
        return 0.0;
    }
    let d = edit_distance(got, want) as f64;
    (1.0 - d / want.len() as f64).max(0.0)
}

fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p95 and serial photos/s from per-photo times.
fn timing(f: &mut Figures, times_ms: &[f64]) {
    f.p50_ms = percentile(times_ms, 0.5);
    f.p95_ms = percentile(times_ms, 0.95);
    let total: f64 = times_ms.iter().sum();
    f.photos_per_s = (total > 0.0).then(|| times_ms.len() as f64 * 1e3 / total);
}

/// Scores a first guess (and other guesses) for `photo` against its label.
fn score(f: &mut Figures, photo: &Path, want: &str, first: Option<&str>, others: &[&str]) {
    if first.is_none() {
        f.no_detection += 1;
    }
    let got = first.unwrap_or("");
    let want_o = o_as_zero(want);
    let got_o = o_as_zero(got);
    if got == want {
        f.exact_strict += 1;
    }
    if got_o == want_o {
        f.exact += 1;
    }
    f.outcomes.push((photo.to_path_buf(), got_o == want_o));
    if got_o == want_o || others.iter().any(|o| o_as_zero(o) == want_o) {
        f.in_top += 1;
    }
    f.char_acc += char_accuracy(&got_o, &want_o);
}

/// One folder's figures, ours and the peer's, and their difference on the
/// photos both read.
struct FolderReport {
    dir: PathBuf,
    ours: Figures,
    peer: Result<Figures, String>,
    paired: Option<Paired>,
    load: (Option<f64>, Option<f64>),
}

/// What is compared: two systems, each as it is set up.
pub const COMPARISON: &str = "system against system: ours as the edge runs it (detector boxes \
    from score 0.2, those under 0.3 kept only if they read as a plate; three crop margins per \
    box; the v1 and v2 OCR models fused) against fast-alpr 0.4's own pipeline with its \
    defaults (detector threshold 0.4, one crop per box, one OCR model: cct_xs_v2_global), \
    both on the same ONNX model files";

/// Pair each photo's outcome, ours and the peer's (photos both read).
fn pair(ours: &Figures, peer: &Figures) -> Option<Paired> {
    let theirs: std::collections::HashMap<&Path, bool> = peer
        .outcomes
        .iter()
        .map(|(p, ok)| (p.as_path(), *ok))
        .collect();
    let pairs: Vec<(bool, bool)> = ours
        .outcomes
        .iter()
        .filter_map(|(p, ok)| theirs.get(p.as_path()).map(|t| (*ok, *t)))
        .collect();
    paired::compare(&pairs)
}

pub fn bench(args: BenchRecognizeArgs) -> anyhow::Result<ExitCode> {
    let cores = batch::default_workers();
    let workers = args.workers.unwrap_or(cores);
    let threads = args.threads.max(1);
    let mut options = RecogniserOptions::default();
    if let Some(p) = &args.pads {
        options.crop_pads = parse_pads(p)?;
    }
    options.use_v1 = !args.no_v1;
    if let Some(m) = args.min_score {
        options.min_detection_score = m;
    }
    if let Some(s) = args.sure {
        options.sure_confidence = (s <= 1.0).then_some(s);
    }
    let peer = if args.no_peer {
        Err("not run (--no-peer)".to_string())
    } else {
        peer_command(&args)
    };
    let mut reports = Vec::new();
    for dir in &args.dirs {
        let set = labelled_folder(dir)?;
        anyhow::ensure!(
            !set.is_empty(),
            "no NAME.jpg + NAME.txt pairs in {}",
            dir.display()
        );
        eprintln!(
            "bench: {} photos in {}, {cores} cores, {threads} ONNX thread(s)",
            set.len(),
            dir.display(),
        );
        let load_start = load_average();
        let ours = bench_ours(&args, &options, &set, threads, workers)?;
        // The peer after ours, so the two never share the cores.
        let peer = match &peer {
            Ok((python, script)) => run_peer(python, script, &args, &set, threads),
            Err(e) => Err(e.clone()),
        };
        let paired = peer.as_ref().ok().and_then(|p| pair(&ours, p));
        reports.push(FolderReport {
            dir: dir.clone(),
            ours,
            peer,
            paired,
            load: (load_start, load_average()),
        });
    }
    for r in &reports {
        if args.json {
            println!("{}", report_json(r, threads, workers, cores));
        } else {
            print_table(r, threads, workers, cores);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ours on one folder: a warm-up, then one photo at a time with one
/// recogniser (accuracy, latency, serial photos/s), then the folder over
/// `workers` recognisers (throughput on every core; ours only).
fn bench_ours(
    args: &BenchRecognizeArgs,
    options: &RecogniserOptions,
    set: &[Labelled],
    threads: usize,
    workers: usize,
) -> anyhow::Result<Figures> {
    let mut lat = Recogniser::open(
        &args.models,
        RecogniserOptions {
            threads,
            ..options.clone()
        },
    )
    .context("opening the recogniser")?;
    if let Some(first) = set.first() {
        let _ = lat.recognise_file(&first.image); // warm-up, not timed
    }
    let mut ours = Figures {
        n: set.len(),
        ..Figures::default()
    };
    let mut totals = Vec::new();
    let mut stages: [Vec<f64>; 4] = Default::default();
    for l in set {
        match lat.recognise_file(&l.image) {
            Ok((reads, t)) => {
                record_stages(&mut stages, &t);
                totals.push(ms(t.total()));
                let first = reads.first();
                let others: Vec<&str> = first
                    .into_iter()
                    .flat_map(|r| r.alternatives.iter().map(|a| a.text.as_str()))
                    .chain(reads.iter().skip(1).map(|r| r.text.as_str()))
                    .collect();
                let got = first.map(|r| r.text.as_str());
                if args.misses && got.map(o_as_zero) != Some(o_as_zero(&l.plate)) {
                    print_miss(l, &reads);
                }
                score(&mut ours, &l.image, &l.plate, got, &others);
            }
            Err(e) => {
                ours.errors += 1;
                score(&mut ours, &l.image, &l.plate, None, &[]);
                eprintln!("{}: error: {e}", l.image.display());
            }
        }
    }
    drop(lat);
    timing(&mut ours, &totals);
    let st = |v: &[f64]| {
        (
            percentile(v, 0.5).unwrap_or(0.0),
            percentile(v, 0.95).unwrap_or(0.0),
        )
    };
    ours.stages = Some([
        st(&stages[0]),
        st(&stages[1]),
        st(&stages[2]),
        st(&stages[3]),
    ]);

    let recs = (0..workers.max(1))
        .map(|_| Recogniser::open(&args.models, options.clone()))
        .collect::<Result<Vec<_>, _>>()
        .context("opening the recognisers")?;
    let paths: Vec<PathBuf> = set.iter().map(|l| l.image.clone()).collect();
    let t0 = Instant::now();
    let mut done = 0usize;
    batch::run_with(recs, &paths, |r| {
        if r.result.is_ok() {
            done += 1;
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    ours.folder_per_s = (wall > 0.0).then(|| done as f64 / wall);
    Ok(ours)
}

fn print_miss(l: &Labelled, reads: &[PlateRead]) {
    let first = reads.first();
    let alts: Vec<String> = first
        .map(|r| {
            r.alternatives
                .iter()
                .take(4)
                .map(|a| format!("{}:{:.2}", a.text, a.probability))
                .collect()
        })
        .unwrap_or_default();
    let others: Vec<&str> = reads.iter().skip(1).map(|r| r.text.as_str()).collect();
    eprintln!(
        "miss {} want {} got {} ({:.2}) alts {:?} other boxes {:?}",
        l.image
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        l.plate,
        first.map_or("", |r| r.text.as_str()),
        first.map_or(0.0, |r| r.confidence),
        alts,
        others
    );
}

/// The 1-minute load average (Linux), to show how quiet the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_pads(s: &str) -> anyhow::Result<Vec<(f32, f32)>> {
    s.split(',')
        .map(|p| {
            let (x, y) = p.split_once(':').unwrap_or((p, p));
            Ok((x.trim().parse()?, y.trim().parse()?))
        })
        .collect::<Result<Vec<_>, std::num::ParseFloatError>>()
        .context("--pads wants x:y,x:y fractions")
}

fn record_stages(stages: &mut [Vec<f64>; 4], t: &StageTimes) {
    stages[0].push(ms(t.decode));
    stages[1].push(ms(t.detect));
    stages[2].push(ms(t.ocr));
    stages[3].push(ms(t.decide));
}

/// The peer's python: explicit, else the project venv, else python3.
fn peer_python(args: &BenchRecognizeArgs) -> PathBuf {
    if let Some(p) = &args.peer_python {
        return p.clone();
    }
    find_up(Path::new(".runtime/peer-venv/bin/python")).unwrap_or_else(|| PathBuf::from("python3"))
}

fn find_up(rel: &Path) -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(c) = std::env::current_dir() {
        starts.push(c);
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(d);
    }
    starts
        .iter()
        .flat_map(|s| s.ancestors())
        .map(|a| a.join(rel))
        .find(|p| p.exists())
}

/// The repo's scripts/peer-bench.py, built in so the bench runs anywhere.
const PEER_SCRIPT: &str = include_str!("../../../scripts/peer-bench.py");

/// Which script times the peer: a file, or the built-in copy.
enum PeerScript {
    File(PathBuf),
    BuiltIn,
}

/// The peer's python and script, once it is known to have fast-alpr.
fn peer_command(args: &BenchRecognizeArgs) -> Result<(PathBuf, PeerScript), String> {
    let python = peer_python(args);
    let probe = std::process::Command::new(&python)
        .args(["-c", "import fast_alpr, onnxruntime, cv2"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            return Err(format!(
                "not run: {} lacks fast-alpr (run `bash scripts/install-peer.sh`)",
                python.display()
            ))
        }
    }
    let script = match &args.peer_script {
        Some(s) => PeerScript::File(s.clone()),
        None => PeerScript::BuiltIn,
    };
    Ok((python, script))
}

fn run_peer(
    python: &Path,
    script: &PeerScript,
    args: &BenchRecognizeArgs,
    set: &[Labelled],
    threads: usize,
) -> Result<Figures, String> {
    let mut cmd = std::process::Command::new(python);
    match script {
        PeerScript::File(f) => cmd.arg(f),
        PeerScript::BuiltIn => cmd.arg("-c").arg(PEER_SCRIPT),
    };
    cmd.arg(&args.models)
        .arg(threads.to_string())
        .arg("cct_xs_v2_global")
        .args(set.iter().map(|l| &l.image))
        // Its numeric libraries would otherwise start a thread per core.
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("OPENBLAS_NUM_THREADS", "1");
    eprintln!("bench: running the peer ({})", python.display());
    let out = cmd.output().map_err(|e| format!("not run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "failed: {}",
            err.lines().last().unwrap_or("no output")
        ));
    }
    parse_peer(&String::from_utf8_lossy(&out.stdout), set)
}

/// Parses the peer script's lines, one JSON object per photo:
/// `{"file": PATH, "ms": TIME, "plates": [best first], "error": null}`.
fn parse_peer(stdout: &str, set: &[Labelled]) -> Result<Figures, String> {
    let mut f = Figures::default();
    let mut times = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(file) = v["file"].as_str() else {
            continue;
        };
        let Some(l) = set.iter().find(|l| l.image.as_os_str() == file) else {
            continue;
        };
        let preds: Vec<String> = v["plates"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).map(normalise).collect())
            .unwrap_or_default();
        if !v["error"].is_null() {
            f.errors += 1;
        }
        if let Some(t) = v["ms"].as_f64() {
            times.push(t);
        }
        f.n += 1;
        let others: Vec<&str> = preds.iter().skip(1).map(String::as_str).collect();
        score(
            &mut f,
            &l.image,
            &l.plate,
            preds.first().map(String::as_str),
            &others,
        );
    }
    if f.n == 0 {
        return Err("gave no per-photo lines".into());
    }
    timing(&mut f, &times);
    Ok(f)
}

fn figures_json(f: &Figures, threads: usize) -> serde_json::Value {
    let frac = |k: usize| (f.n > 0).then(|| k as f64 / f.n as f64);
    serde_json::json!({
        "n": f.n,
        "exact": frac(f.exact),
        "exact_count": f.exact,
        "exact_strict": frac(f.exact_strict),
        "in_top": frac(f.in_top),
        "char_accuracy": (f.n > 0).then(|| f.char_acc / f.n as f64),
        "no_detection": f.no_detection,
        "errors": f.errors,
        "p50_ms": f.p50_ms,
        "p95_ms": f.p95_ms,
        "photos_per_s": f.photos_per_s,
        "photos_per_s_per_core": f.photos_per_s.map(|p| p / threads as f64),
        "folder_photos_per_s": f.folder_per_s,
    })
}

fn report_json(
    r: &FolderReport,
    threads: usize,
    workers: usize,
    cores: usize,
) -> serde_json::Value {
    serde_json::json!({
        "folder": r.dir.display().to_string(),
        "comparison": COMPARISON,
        "o0_rule": O0_RULE,
        "onnx_threads": threads,
        "parallelism": "serial: one photo at a time for both, after one untimed warm-up photo",
        "ours_folder_workers": workers,
        "cores": cores,
        "load_average_1min": [r.load.0, r.load.1],
        "ours": figures_json(&r.ours, threads),
        "peer": match &r.peer {
            Ok(p) => figures_json(p, threads),
            Err(e) => serde_json::json!({ "error": e }),
        },
        "difference": r.paired.as_ref().map(|d| serde_json::json!({
            "exact_diff": d.diff,
            "exact_diff_ci95": [d.ci95.0, d.ci95.1],
            "photos": d.n,
            "both": d.both,
            "ours_only": d.ours_only,
            "peer_only": d.peer_only,
            "neither": d.neither,
            "mcnemar_exact_p": d.mcnemar_p,
            "method": paired::METHOD,
        })),
    })
}

fn print_table(r: &FolderReport, threads: usize, workers: usize, cores: usize) {
    let pct = |k: usize, n: usize| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{k}/{n} ({:.1}%)", 100.0 * k as f64 / n as f64)
        }
    };
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.1}{unit}"));
    let col = |f: &Figures| -> Vec<String> {
        vec![
            f.n.to_string(),
            pct(f.exact, f.n),
            pct(f.exact_strict, f.n),
            pct(f.in_top, f.n),
            if f.n == 0 {
                "-".into()
            } else {
                format!("{:.1}%", 100.0 * f.char_acc / f.n as f64)
            },
            f.no_detection.to_string(),
            opt(f.p50_ms, " ms"),
            opt(f.p95_ms, " ms"),
            opt(f.photos_per_s, "/s"),
            opt(f.photos_per_s.map(|p| p / threads as f64), "/s"),
            opt(f.folder_per_s, "/s"),
        ]
    };
    let rows = [
        "photos",
        "exact plate, O≡0 (first guess)",
        "exact plate, strict",
        "exact within alternatives",
        "character accuracy (O≡0)",
        "no plate found",
        "p50 per photo",
        "p95 per photo",
        "photos/s (one at a time)",
        "photos/s per core",
        "folder throughput (workers)",
    ];
    let o = col(&r.ours);
    let p = match &r.peer {
        Ok(f) => col(f),
        Err(_) => vec!["-".to_string(); rows.len()],
    };
    println!("folder {}", r.dir.display());
    println!("{COMPARISON}");
    println!(
        "{:<32} {:>20} {:>20}",
        "", "our system", "fast-alpr 0.4 system"
    );
    for (i, row) in rows.iter().enumerate() {
        println!("{:<32} {:>20} {:>20}", row, o[i], p[i]);
    }
    if let Some(s) = r.ours.stages {
        println!(
            "our stages, p50/p95 ms: decode {:.1}/{:.1}, detect {:.1}/{:.1}, OCR {:.1}/{:.1}, decide {:.2}/{:.2}",
            s[0].0, s[0].1, s[1].0, s[1].1, s[2].0, s[2].1, s[3].0, s[3].1
        );
    }
    if let Some(d) = &r.paired {
        println!(
            "exact plates, ours − peer: {:+.1} points, 95 % interval [{:+.1}, {:+.1}] on the same \
             {} photos ({} read right by ours only, {} by the peer only; exact McNemar p = {:.3})",
            100.0 * d.diff,
            100.0 * d.ci95.0,
            100.0 * d.ci95.1,
            d.n,
            d.ours_only,
            d.peer_only,
            d.mcnemar_p
        );
        println!("interval: {}", paired::METHOD);
    }
    println!("scoring: {O0_RULE}");
    println!(
        "timing: both one photo at a time after one untimed warm-up photo, {threads} ONNX Runtime \
         intra-op thread(s) per model session, each photo timed from file read to result \
         (ours: read + decode + detect + OCR + decide; peer: imread + predict); per core = \
         photos/s ÷ {threads}. Folder throughput is ours only ({workers} workers, wall clock)."
    );
    match &r.peer {
        Ok(p) => {
            if let (Some(a), Some(b)) = (r.ours.p50_ms, p.p50_ms) {
                println!("p50 ratio ours/peer: {:.2}x", a / b);
            }
            if let (Some(a), Some(b)) = (r.ours.photos_per_s, p.photos_per_s) {
                println!("photos/s ratio ours/peer (both serial): {:.2}x", a / b);
            }
        }
        Err(e) => println!("peer: {e}"),
    }
    if let (Some(a), Some(b)) = r.load {
        println!(
            "machine load average (1 min) at start {a:.2}, at end {b:.2}: other work on these {cores} cores skews every figure"
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(plate: &str) -> Labelled {
        Labelled {
            image: PathBuf::from(format!("/photos/{plate}.jpg")),
            plate: plate.into(),
        }
    }

    #[test]
    fn the_difference_pairs_the_photos_both_systems_read() {
        let mut ours = Figures::default();
        let mut peer = Figures::default();
        for (i, (o, p)) in [(true, true), (true, false), (false, true), (true, false)]
            .into_iter()
            .enumerate()
        {
            let photo = PathBuf::from(format!("/photos/{i}.jpg"));
            let got = |right: bool| if right { "ABC123" } else { "XYZ999" };
            score(&mut ours, &photo, "ABC123", Some(got(o)), &[]);
            // The peer has no line for the last photo.
            if i < 3 {
                score(&mut peer, &photo, "ABC123", Some(got(p)), &[]);
            }
        }
        let d = pair(&ours, &peer).expect("photos in common");
        assert_eq!(d.n, 3);
        assert_eq!((d.both, d.ours_only, d.peer_only, d.neither), (1, 1, 1, 0));
        assert_eq!(d.diff, 0.0);
        assert!(d.ci95.0 < 0.0 && d.ci95.1 > 0.0, "{:?}", d.ci95);
    }

    #[test]
    fn both_systems_are_scored_modulo_o_and_zero() {
        let mut f = Figures::default();
        score(&mut f, Path::new("/p.jpg"), "ABC0123", Some("ABCO123"), &[]);
        assert_eq!((f.exact, f.exact_strict), (1, 0));
        // The peer's output goes through the same rule.
        let set = vec![labelled("7OKD210")];
        let line =
            r#"{"file": "/photos/7OKD210.jpg", "ms": 10.0, "plates": ["70KD210"], "error": null}"#;
        let p = parse_peer(line, &set).expect("one photo");
        assert_eq!((p.n, p.exact, p.exact_strict), (1, 1, 0));
    }

    #[test]
    fn peer_lines_give_percentiles_and_serial_rate() {
        let set: Vec<Labelled> = (0..20).map(|i| labelled(&format!("P{i:03}"))).collect();
        let out: String = set
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "{}\n",
                    serde_json::json!({
                        "file": l.image.display().to_string(),
                        "ms": (i + 1) as f64 * 10.0,
                        "plates": if i == 0 { vec![] } else { vec![l.plate.clone()] },
                        "error": null,
                    })
                )
            })
            .collect();
        let p = parse_peer(&format!("warming up\n{out}"), &set).expect("twenty photos");
        assert_eq!(p.n, 20);
        assert_eq!(p.exact, 19);
        assert_eq!(p.no_detection, 1);
        assert_eq!(p.p50_ms, Some(110.0));
        assert_eq!(p.p95_ms, Some(190.0));
        // 20 photos in 2.1 s.
        let rate = p.photos_per_s.expect("timed");
        assert!((rate - 20.0 / 2.1).abs() < 1e-9);
    }
}
