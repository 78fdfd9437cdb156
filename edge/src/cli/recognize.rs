//! `edge recognize`: the plates in image files (`alpr-bench edge recognize`
//! is in the `alpr-bench` crate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::recognise::batch::{self, FileResult};
use crate::recognise::state::{StateOptions, StateRead, StateReader};
use crate::recognise::{PlateRead, RecogniserOptions, MODELS_ENV};

pub use crate::recognise::labelled::{labelled_folder, normalise, Labelled};

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
    /// Do not read which state issued each plate.
    #[arg(long)]
    pub no_state: bool,
    /// Image files, or folders of them, to read.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
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

/// A state reading as `edge recognize` shows it: the state given (null
/// when not sure), the confidence, the top three and the evidence.
fn state_json(s: &StateRead, model: &str) -> serde_json::Value {
    serde_json::json!({
        "state": s.state,
        "confidence": round4(s.confidence),
        "top3": s.top3.iter().map(|(c, p)| serde_json::json!([c, round4(*p)])).collect::<Vec<_>>(),
        "evidence": s.evidence,
        "model": model,
    })
}

fn state_line(s: &StateRead) -> String {
    match &s.state {
        Some(code) => format!(" state {code} {:.0}%", s.confidence * 100.0),
        None => " state not read".into(),
    }
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
    let workers = args.workers.unwrap_or_else(batch::default_workers);
    let mut failures = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let mut state = match args.no_state {
        true => None,
        false => {
            let reader = StateReader::load(StateOptions::default()).context(
                "loading the state reader's models (scripts/setup.sh installs them; or pass \
                 --no-state)",
            )?;
            Some((reader.model_id(), reader))
        }
    };
    batch::recognise_files(
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
                    // The state of each plate, read on its crop (here, on
                    // this thread: once per plate, as a read does).
                    let states: Vec<Option<StateRead>> = plates
                        .iter()
                        .map(|p| state.as_mut().and_then(|(_, s)| s.read(&p.crop).ok()))
                        .collect();
                    let model = state.as_ref().map(|(m, _)| m.as_str()).unwrap_or_default();
                    if args.json {
                        let plates: Vec<serde_json::Value> = plates
                            .iter()
                            .zip(&states)
                            .map(|(p, s)| {
                                let mut v = plate_json(p);
                                v["state"] = s
                                    .as_ref()
                                    .map_or(serde_json::Value::Null, |s| state_json(s, model));
                                v
                            })
                            .collect();
                        serde_json::json!({
                            "file": file,
                            "captured_at": taken.to_string(),
                            "time_source": source.as_str(),
                            "plates": plates,
                            "ms": (ms * 10.0).round() / 10.0,
                        })
                        .to_string()
                    } else if plates.is_empty() {
                        format!("{file}: no plate ({ms:.0} ms)")
                    } else {
                        let p: Vec<String> = plates
                            .iter()
                            .zip(&states)
                            .map(|(p, s)| {
                                plate_line(p) + &s.as_ref().map(state_line).unwrap_or_default()
                            })
                            .collect();
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
