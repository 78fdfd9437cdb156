//! `edge recognize`: the plates in image files (`alpr-bench edge recognize`
//! is in the `alpr-bench` crate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::recognise::batch::{self, FileResult};
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
