//! `edge recognize` and `edge bench recognize`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::fusion::edit_distance;
use super::pipeline::{self, FileResult};
use super::{PlateRead, Recogniser, RecogniserOptions, StageTimes, MODELS_ENV};

/// Arguments of `edge recognize`.
#[derive(Debug, clap::Args)]
pub struct RecognizeArgs {
    /// Print one JSON object per image.
    #[arg(long)]
    pub json: bool,
    /// Models directory (the pinned detector and OCR files).
    #[arg(long, env = MODELS_ENV, default_value = "models")]
    pub models: PathBuf,
    /// Worker threads (one recogniser each); default: all cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Image files, or folders of them, to read.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Arguments of `edge bench recognize`.
#[derive(Debug, clap::Args)]
pub struct BenchRecognizeArgs {
    /// Folder of NAME.jpg + NAME.txt.
    pub dir: PathBuf,
    /// Models directory (the pinned detector and OCR files).
    #[arg(long, env = MODELS_ENV, default_value = "models")]
    pub models: PathBuf,
    /// Worker threads for the throughput pass; default: all cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Python with fast-alpr installed (default: .runtime/peer-venv/bin/python
    /// above the current directory, else python3).
    #[arg(long)]
    pub peer_python: Option<PathBuf>,
    /// The peer script (default: shared/tools/peer-fastalpr.py in a folder
    /// above the current directory).
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
    /// ONNX Runtime threads of the latency pass (default 1: measured here,
    /// one thread is as fast on a quiet machine and much steadier when
    /// anything else runs on the cores).
    #[arg(long)]
    pub latency_threads: Option<usize>,
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
}

/// Images named on the command line, folders expanded (sorted by name).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_image(p))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Whether the file name looks like an image we decode.
pub fn is_image(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png" | "bmp"))
}

fn plate_json(r: &PlateRead) -> serde_json::Value {
    let b = &r.bbox;
    serde_json::json!({
        "text": r.text,
        "confidence": round4(r.confidence),
        "char_confidence": r.char_confidence.iter().map(|&c| round4(c)).collect::<Vec<_>>(),
        "box": [b.x1.round() as i64, b.y1.round() as i64, b.x2.round() as i64, b.y2.round() as i64],
        "detection_score": round4(b.score),
        "region": r.region.as_ref().map(|g| g.name.clone()),
        "region_confidence": r.region.as_ref().map(|g| round4(g.probability)),
        "alternatives": r.alternatives.iter().map(|a| serde_json::json!({
            "text": a.text, "probability": round4(a.probability)
        })).collect::<Vec<_>>(),
        "decisions": r.decisions,
        "detector_model": r.detector_model,
        "ocr_model": r.ocr_model,
    })
}

fn round4(v: f32) -> f64 {
    (f64::from(v) * 10_000.0).round() / 10_000.0
}

fn plate_line(r: &PlateRead) -> String {
    let b = &r.bbox;
    let mut s = format!(
        "{} {:.0}% box [{:.0},{:.0},{:.0},{:.0}]",
        r.text,
        r.confidence * 100.0,
        b.x1,
        b.y1,
        b.x2,
        b.y2
    );
    if let Some(g) = &r.region {
        s.push_str(&format!(" {} {:.0}%", g.name, g.probability * 100.0));
    }
    let alts: Vec<String> = r
        .alternatives
        .iter()
        .take(3)
        .map(|a| format!("{} {:.0}%", a.text, a.probability * 100.0))
        .collect();
    if !alts.is_empty() {
        s.push_str(&format!(" (or {})", alts.join(", ")));
    }
    if !r.decisions.is_empty() {
        s.push_str(&format!(" [{}]", r.decisions.join("; ")));
    }
    s
}

pub fn recognize(args: RecognizeArgs) -> anyhow::Result<ExitCode> {
    let files = expand(&args.paths);
    let workers = args.workers.unwrap_or_else(pipeline::default_workers);
    let mut failures = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    pipeline::recognise_files(
        &args.models,
        &RecogniserOptions::default(),
        workers,
        &files,
        |r: FileResult| {
            let file = r.path.display().to_string();
            let line = match r.result {
                Ok((plates, times)) => {
                    let ms = times.total().as_secs_f64() * 1e3;
                    // Where the photo's time comes from, as a read of it
                    // would record it.
                    let (taken, source) = crate::capture::capture_time(&r.path);
                    let taken = alpr_shared::types::UnixMillis(
                        taken
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    );
                    if args.json {
                        serde_json::json!({
                            "file": file,
                            "captured_at": taken.to_string(),
                            "time_source": source.as_str(),
                            "plates": plates.iter().map(plate_json).collect::<Vec<_>>(),
                            "ms": (ms * 10.0).round() / 10.0,
                        })
                        .to_string()
                    } else if plates.is_empty() {
                        format!("{file}: no plate ({ms:.0} ms)")
                    } else {
                        let p: Vec<String> = plates.iter().map(plate_line).collect();
                        format!(
                            "{file}: {} ({ms:.0} ms; taken {taken}, {})",
                            p.join("; "),
                            source.as_str()
                        )
                    }
                }
                Err(e) => {
                    failures += 1;
                    if args.json {
                        serde_json::json!({"file": file, "error": e.to_string()}).to_string()
                    } else {
                        format!("{file}: error: {e}")
                    }
                }
            };
            if let Err(e) = writeln!(out, "{line}") {
                write_err.get_or_insert(e);
            }
        },
    )
    .context("opening the recogniser")?;
    if let Some(e) = write_err {
        return Err(e).context("writing the results");
    }
    if failures > 0 {
        eprintln!("{failures} of {} files could not be read", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One labelled photo of a bench folder.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub image: PathBuf,
    pub plate: String,
}

/// Keeps A–Z and 0–9, upper-cased.
pub fn normalise(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Reads `NAME.txt` files (tab-separated, image file name first, plate last).
pub fn labelled_folder(dir: &Path) -> anyhow::Result<Vec<Labelled>> {
    let mut txts: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    txts.sort();
    let mut out = Vec::new();
    for t in txts {
        let s = std::fs::read_to_string(&t).with_context(|| format!("reading {}", t.display()))?;
        let line = s.lines().next().unwrap_or("");
        let fields: Vec<&str> = line.trim().split('\t').collect();
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            continue;
        };
        let image = dir.join(first);
        if fields.len() < 2 || !image.is_file() {
            continue;
        }
        out.push(Labelled {
            image,
            plate: normalise(last),
        });
    }
    Ok(out)
}

/// Accuracy and timing figures of one system on a folder.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub n: usize,
    pub exact: usize,
    pub in_top: usize,
    pub char_acc: f64,
    pub no_detection: usize,
    pub errors: usize,
    pub median_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub per_second: Option<f64>,
    pub stages: Option<[(f64, f64); 4]>,
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

pub fn bench(args: BenchRecognizeArgs) -> anyhow::Result<ExitCode> {
    let set = labelled_folder(&args.dir)?;
    anyhow::ensure!(
        !set.is_empty(),
        "no NAME.jpg + NAME.txt pairs in {}",
        args.dir.display()
    );
    let paths: Vec<PathBuf> = set.iter().map(|l| l.image.clone()).collect();
    let cores = pipeline::default_workers();
    let workers = args.workers.unwrap_or(cores);
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
    eprintln!(
        "bench: {} photos in {}, {} cores, {} workers",
        set.len(),
        args.dir.display(),
        cores,
        workers
    );

    let load_start = load_average();
    // Pass 1: one photo at a time, one recogniser using every core
    // (latency, accuracy).
    let mut lat = Recogniser::open(
        &args.models,
        RecogniserOptions {
            threads: args.latency_threads.unwrap_or(1),
            ..options.clone()
        },
    )
    .context("opening the recogniser")?;
    if let Some(first) = paths.first() {
        let _ = lat.recognise_file(first); // warm-up
    }
    let mut ours = Figures {
        n: set.len(),
        ..Figures::default()
    };
    let mut totals = Vec::new();
    let mut stages: [Vec<f64>; 4] = Default::default();
    for l in &set {
        match lat.recognise_file(&l.image) {
            Ok((reads, t)) => {
                record_stages(&mut stages, &t);
                totals.push(ms(t.total()));
                score(&mut ours, l, &reads, args.misses);
            }
            Err(e) => {
                ours.errors += 1;
                eprintln!("{}: error: {e}", l.image.display());
            }
        }
    }
    drop(lat);
    ours.median_ms = percentile(&totals, 0.5);
    ours.p95_ms = percentile(&totals, 0.95);
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

    // Pass 2: the whole folder on every core (throughput).
    let recs = (0..workers.max(1))
        .map(|_| Recogniser::open(&args.models, options.clone()))
        .collect::<Result<Vec<_>, _>>()
        .context("opening the recognisers")?;
    let t0 = Instant::now();
    let mut done = 0usize;
    pipeline::run_with(recs, &paths, |r| {
        if r.result.is_ok() {
            done += 1;
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    ours.per_second = (wall > 0.0).then(|| done as f64 / wall);

    // Pass 3: the peer, after ours so the two never share the cores.
    let peer = if args.no_peer {
        Err("not run (--no-peer)".to_string())
    } else {
        run_peer(&args, &set)
    };

    print_table(&ours, &peer, workers, args.latency_threads.unwrap_or(1));
    if let (Some(a), Some(b)) = (load_start, load_average()) {
        println!(
            "machine load average (1 min) at start {a:.2}, at end {b:.2}: other work on these {cores} cores skews every figure"
        );
    }
    Ok(ExitCode::SUCCESS)
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

fn score(f: &mut Figures, l: &Labelled, reads: &[PlateRead], misses: bool) {
    let first = reads.first();
    if first.is_none() {
        f.no_detection += 1;
    }
    let got = first.map_or("", |r| r.text.as_str());
    if got == l.plate {
        f.exact += 1;
    } else if misses {
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
            got,
            first.map_or(0.0, |r| r.confidence),
            alts,
            others
        );
    }
    let in_top = first
        .is_some_and(|r| r.text == l.plate || r.alternatives.iter().any(|a| a.text == l.plate))
        || reads.iter().any(|r| r.text == l.plate);
    if in_top {
        f.in_top += 1;
    }
    f.char_acc += char_accuracy(got, &l.plate);
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

fn run_peer(args: &BenchRecognizeArgs, set: &[Labelled]) -> Result<Figures, String> {
    let script = match &args.peer_script {
        Some(s) => s.clone(),
        None => find_up(Path::new("shared/tools/peer-fastalpr.py"))
            .ok_or("peer script shared/tools/peer-fastalpr.py not found (use --peer-script)")?,
    };
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
    eprintln!(
        "bench: running the peer ({} {})",
        python.display(),
        script.display()
    );
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&args.dir)
        .arg("cct_xs_v2_global")
        .arg(&args.models)
        .output()
        .map_err(|e| format!("not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "failed: {}",
            err.lines().last().unwrap_or("no output")
        ));
    }
    parse_peer(&stdout, set)
}

/// Parses the peer's per-file lines (`NAME.jpg WANT ['P1', 'P2']`) and its
/// `RESULT … median_ms=… mean_ms=…` line.
fn parse_peer(stdout: &str, set: &[Labelled]) -> Result<Figures, String> {
    let mut f = Figures::default();
    let mut mean_ms = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            for kv in rest.split_whitespace() {
                if let Some(v) = kv.strip_prefix("median_ms=") {
                    f.median_ms = v.parse().ok();
                }
                if let Some(v) = kv.strip_prefix("mean_ms=") {
                    mean_ms = v.parse::<f64>().ok();
                }
            }
            continue;
        }
        let Some((name, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(l) = set.iter().find(|l| {
            l.image
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == name)
        }) else {
            continue;
        };
        let preds: Vec<String> = rest.split('\'').skip(1).step_by(2).map(normalise).collect();
        f.n += 1;
        let got = preds.first().map_or("", String::as_str);
        if preds.is_empty() {
            f.no_detection += 1;
        }
        if got == l.plate {
            f.exact += 1;
        }
        if preds.contains(&l.plate) {
            f.in_top += 1;
        }
        f.char_acc += char_accuracy(got, &l.plate);
    }
    if f.n == 0 {
        return Err("gave no per-photo lines".into());
    }
    f.per_second = mean_ms.filter(|m| *m > 0.0).map(|m| 1000.0 / m);
    Ok(f)
}

fn print_table(ours: &Figures, peer: &Result<Figures, String>, workers: usize, threads: usize) {
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
            pct(f.in_top, f.n),
            if f.n == 0 {
                "-".into()
            } else {
                format!("{:.1}%", 100.0 * f.char_acc / f.n as f64)
            },
            f.no_detection.to_string(),
            opt(f.median_ms, " ms"),
            opt(f.p95_ms, " ms"),
            opt(f.per_second, "/s"),
        ]
    };
    let rows = [
        "photos",
        "exact plate (first guess)",
        "exact within alternatives",
        "character accuracy",
        "no plate found",
        "median per photo",
        "p95 per photo",
        "folder throughput",
    ];
    let o = col(ours);
    let p = match peer {
        Ok(f) => col(f),
        Err(_) => vec!["-".to_string(); rows.len()],
    };
    println!("{:<28} {:>20} {:>20}", "", "ours", "peer fast-alpr 0.4");
    for (i, r) in rows.iter().enumerate() {
        println!("{:<28} {:>20} {:>20}", r, o[i], p[i]);
    }
    if let Some(s) = ours.stages {
        println!(
            "our stages, median/p95 ms: decode {:.1}/{:.1}, detect {:.1}/{:.1}, OCR {:.1}/{:.1}, decide {:.2}/{:.2}",
            s[0].0, s[0].1, s[1].0, s[1].1, s[2].0, s[2].1, s[3].0, s[3].1
        );
    }
    println!(
        "ours: latency pass = one recogniser ({threads} ONNX Runtime thread(s)), one photo at a time (file read + decode + detect + OCR + decide); \
         throughput pass = {workers} workers over the folder, wall clock"
    );
    match peer {
        Ok(p) => {
            println!("peer: its own timing (imread + predict), one photo at a time; throughput = 1000 / mean ms");
            if let (Some(a), Some(b)) = (ours.median_ms, p.median_ms) {
                println!("median ratio ours/peer: {:.2}x (target <= 0.8x)", a / b);
            }
            if let (Some(a), Some(b)) = (ours.per_second, p.per_second) {
                println!("throughput ratio ours/peer: {:.2}x (target >= 1.5x)", a / b);
            }
        }
        Err(e) => println!("peer: {e}"),
    }
}
