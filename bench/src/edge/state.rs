//! `alpr-bench edge state DIR`: how well and how fast the edge's state
//! reader tells which state issued a plate, on a folder of crops labelled in
//! `labels.csv` (`file,state,plate`). Figures are fractions 0..1: `given`
//! (crops given a state), `right_of_given` (of those, the ones right),
//! `top1` (right over all crops), `top3` (the label among the top three),
//! and `ms_p50` / `ms_p99` per crop (the read alone, one crop at a time,
//! decoding not counted). `--sweep` shows `given` and `right_of_given` at
//! each threshold, which is how the default threshold is chosen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use alpr_edge::recognise::labelled::{labelled_folder, state_labels};
use alpr_edge::recognise::state::matching::Line;
use alpr_edge::recognise::state::{
    decide, decide_settled, Mode, StateOptions, StateRead, StateReader,
};
use alpr_edge::recognise::{decode, Recogniser, RecogniserOptions, MODELS_ENV};

/// Arguments of `alpr-bench edge state`.
#[derive(Debug, clap::Args)]
pub struct StateBenchArgs {
    /// Folder of plate crops with `labels.csv` (`file,state,plate`).
    pub dir: PathBuf,
    /// How the words are found: `bands` (fixed bands, no detection) or
    /// `detect` (PP-OCR text detection first).
    #[arg(long, default_value = "bands")]
    pub mode: String,
    /// Confidence from which a state is given (default: the reader's own).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Bands read in `bands` mode, as "top:bottom,…" fractions of the
    /// crop's height (tuning).
    #[arg(long)]
    pub bands: Option<String>,
    /// ONNX Runtime intra-op threads (default 1, as the edge runs it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print each crop's lines of text and outcome.
    #[arg(long)]
    pub dump: bool,
    /// Print given and right_of_given at thresholds 0.05 .. 0.95.
    #[arg(long)]
    pub sweep: bool,
    /// The horizontal extent of every band, as "left:right" fractions of
    /// the crop's width (tuning).
    #[arg(long)]
    pub band_x: Option<String>,
    /// DIR holds photos of cars (NAME.jpg + NAME.txt, as `edge
    /// recognize` benches them) without state labels: the edge's
    /// recogniser finds each plate and the state is read on its crop, as
    /// the edge would. Prints how many reads got a state, and which.
    #[arg(long)]
    pub photos: bool,
    /// With `--photos`: read the state on the detector's box grown by this
    /// fraction of its width and height on each side, cut from the photo,
    /// instead of on the read's own crop.
    #[arg(long)]
    pub margin: Option<f32>,
    /// Models directory for `--photos` (the plate detector and OCR).
    #[arg(long, env = MODELS_ENV, default_value = "models")]
    pub models: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_bands(s: &str) -> anyhow::Result<Vec<(f32, f32)>> {
    s.split(',')
        .map(|b| {
            let (t, d) = b
                .split_once(':')
                .with_context(|| format!("band {b:?} is not top:bottom"))?;
            Ok((t.trim().parse()?, d.trim().parse()?))
        })
        .collect()
}

/// The reader's outcome at threshold `t` replayed on a crop's lines: band by
/// band (one line per band), stopping at the first band that settles the
/// state (as `StateReader::read` does); with `bands == 0` (detection) all
/// lines at once.
fn replay(lines: &[Line], bands: usize, t: f32) -> StateRead {
    if bands == 0 {
        return decide(lines, t);
    }
    let mut read = decide(&[], t);
    for upto in 1..=lines.len().min(bands) {
        let settled;
        (read, settled) = decide_settled(&lines[..upto], t);
        if settled {
            break;
        }
    }
    read
}

/// `(threshold, given, right)` at thresholds 0.05 .. 0.95.
fn threshold_sweep(
    outcomes: &[Outcome],
    lines: &[Vec<Line>],
    bands: usize,
) -> Vec<(f32, usize, usize)> {
    (1..20)
        .map(|k| {
            let t = k as f32 * 0.05;
            let (mut given, mut right) = (0, 0);
            for (o, l) in outcomes.iter().zip(lines) {
                if let Some(g) = replay(l, bands, t).state {
                    given += 1;
                    right += usize::from(g == o.truth);
                }
            }
            (t, given, right)
        })
        .collect()
}

/// One crop's outcome.
struct Outcome {
    truth: String,
    given: Option<String>,
    top3: Vec<String>,
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn frac(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn bench(args: StateBenchArgs) -> anyhow::Result<ExitCode> {
    let mut options = StateOptions {
        threads: args.threads.max(1),
        ..StateOptions::default()
    };
    options.mode = match args.mode.as_str() {
        "bands" => Mode::Bands,
        "detect" => Mode::Detect,
        other => anyhow::bail!("--mode is bands or detect, not {other:?}"),
    };
    if let Some(t) = args.threshold {
        options.threshold = t;
    }
    if let Some(b) = &args.bands {
        options.bands = parse_bands(b)?;
    }
    if let Some(x) = &args.band_x {
        options.band_x = parse_bands(x)?
            .first()
            .copied()
            .context("--band-x is left:right")?;
    }
    // A sweep reads every band of every crop (no threshold stops it), then
    // replays the reader's band-by-band stop at each threshold.
    let threshold = options.threshold;
    if args.sweep {
        options.threshold = f32::INFINITY;
    }
    let bands_read = match options.mode {
        Mode::Bands => options.bands.len(),
        Mode::Detect => 0,
    };
    if args.photos {
        return photos(&args, options);
    }
    let set = state_labels(&args.dir)?;
    anyhow::ensure!(
        !set.is_empty(),
        "no labelled crops in {}",
        args.dir.display()
    );
    let mut reader = StateReader::load(options).context("loading the state reader")?;
    let crops = set
        .iter()
        .map(|l| {
            let bytes = std::fs::read(&l.image)
                .with_context(|| format!("reading {}", l.image.display()))?;
            decode(&bytes).with_context(|| format!("decoding {}", l.image.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(first) = crops.first() {
        let _ = reader.read(first); // warm-up, not timed
    }
    let mut times = Vec::new();
    let mut outcomes = Vec::new();
    let mut all_lines = Vec::new();
    for (l, crop) in set.iter().zip(&crops) {
        let t0 = Instant::now();
        let (read, lines) = reader.read_with_lines(crop)?;
        // A sweep read every band; the figures are those of the threshold.
        let read = if args.sweep {
            replay(&lines, bands_read, threshold)
        } else {
            read
        };
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        if args.dump {
            let texts: Vec<String> = lines
                .iter()
                .map(|x| format!("{:?}@{:.2}", x.text, x.confidence))
                .collect();
            eprintln!(
                "{} {} -> {:?} {:.2} {:?} {:?} | {}",
                l.image
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into()),
                l.state,
                read.state,
                read.confidence,
                read.top3,
                read.evidence,
                texts.join(" ")
            );
        }
        outcomes.push(Outcome {
            truth: l.state.clone(),
            given: read.state.clone(),
            top3: read.top3.iter().map(|(c, _)| c.clone()).collect(),
        });
        all_lines.push(lines);
    }
    let n = outcomes.len();
    let given = outcomes.iter().filter(|o| o.given.is_some()).count();
    let right = outcomes
        .iter()
        .filter(|o| o.given.as_deref() == Some(o.truth.as_str()))
        .count();
    let top1 = outcomes
        .iter()
        .filter(|o| o.top3.first() == Some(&o.truth))
        .count();
    let top3 = outcomes
        .iter()
        .filter(|o| o.top3.contains(&o.truth))
        .count();
    let mut confusions: BTreeMap<(String, String), usize> = BTreeMap::new();
    for o in &outcomes {
        if let Some(g) = &o.given {
            if *g != o.truth {
                *confusions.entry((o.truth.clone(), g.clone())).or_default() += 1;
            }
        }
    }
    let sweep = if args.sweep {
        threshold_sweep(&outcomes, &all_lines, bands_read)
    } else {
        Vec::new()
    };
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    if args.json {
        let conf: Vec<serde_json::Value> = confusions
            .iter()
            .map(|((t, g), c)| serde_json::json!({"truth": t, "given": g, "count": c}))
            .collect();
        let mut obj = serde_json::json!({
            "dir": args.dir.display().to_string(),
            "mode": args.mode,
            "threshold": threshold,
            "crops": n,
            "given": frac(given, n),
            "right_of_given": frac(right, given),
            "top1": frac(top1, n),
            "top3": frac(top3, n),
            "ms_p50": p50,
            "ms_p99": p99,
            "confusions": conf,
        });
        if !sweep.is_empty() {
            obj["sweep"] = sweep
                .iter()
                .map(|(t, g, r)| {
                    serde_json::json!({"threshold": t, "given": frac(*g, n), "right_of_given": frac(*r, *g)})
                })
                .collect();
        }
        println!("{obj}");
    } else {
        println!(
            "state reader on {} ({} mode, threshold {threshold})",
            args.dir.display(),
            args.mode
        );
        println!("  crops           {n}");
        println!("  given           {:.3}  ({given})", frac(given, n));
        println!("  right_of_given  {:.3}  ({right})", frac(right, given));
        println!("  top1            {:.3}  ({top1})", frac(top1, n));
        println!("  top3            {:.3}  ({top3})", frac(top3, n));
        println!("  ms_p50          {p50:.1}");
        println!("  ms_p99          {p99:.1}");
        if confusions.is_empty() {
            println!("  confusions      none");
        } else {
            println!("  confusions (truth -> given):");
            for ((t, g), c) in &confusions {
                println!("    {t} -> {g}  {c}");
            }
        }
        if !sweep.is_empty() {
            println!("  threshold  given  right_of_given");
            for (t, g, r) in &sweep {
                println!("  {t:>9.2}  {:.3}  {:.3}", frac(*g, n), frac(*r, *g));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--photos`: the state read on the crop of each photo's first plate.
fn photos(args: &StateBenchArgs, options: StateOptions) -> anyhow::Result<ExitCode> {
    let set = labelled_folder(&args.dir)?;
    anyhow::ensure!(
        !set.is_empty(),
        "no NAME.jpg + NAME.txt pairs in {}",
        args.dir.display()
    );
    let mut rec = Recogniser::open(&args.models, RecogniserOptions::default())
        .context("opening the recogniser")?;
    let mut reader = StateReader::load(options).context("loading the state reader")?;
    let (mut reads, mut given) = (0usize, 0usize);
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut times = Vec::new();
    for l in &set {
        let bytes =
            std::fs::read(&l.image).with_context(|| format!("reading {}", l.image.display()))?;
        let photo = decode(&bytes).with_context(|| format!("decoding {}", l.image.display()))?;
        let plates = rec.recognise(&photo)?;
        let Some(first) = plates.first() else {
            continue;
        };
        let crop = match args.margin {
            Some(m) => {
                let b = first.bbox;
                let (dx, dy) = (b.width() * m, b.height() * m);
                photo.crop(b.x1 - dx, b.y1 - dy, b.x2 + dx, b.y2 + dy)
            }
            None => None,
        };
        reads += 1;
        let t0 = Instant::now();
        let read = reader.read(crop.as_ref().unwrap_or(&first.crop))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        if args.dump {
            eprintln!(
                "{} -> {:?} {:.2} {:?}",
                l.image
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into()),
                read.state,
                read.confidence,
                read.evidence
            );
        }
        if let Some(s) = read.state {
            given += 1;
            *states.entry(s).or_default() += 1;
        }
    }
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "dir": args.dir.display().to_string(),
                "photos": set.len(),
                "reads": reads,
                "given": frac(given, reads),
                "ms_p50": p50,
                "ms_p99": p99,
                "states": states,
            })
        );
    } else {
        println!(
            "state read on the recogniser's crops of {}",
            args.dir.display()
        );
        println!("  photos          {}", set.len());
        println!("  reads           {reads}");
        println!("  given           {:.3}  ({given})", frac(given, reads));
        println!("  ms_p50          {p50:.1}");
        println!("  ms_p99          {p99:.1}");
        let list: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("  states          {}", list.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
