//! A source of reads until the recognition pipeline is plugged in: replay a
//! JSON-lines file and/or generate plausible reads, each through the same
//! [`StoreHandle::append_read`] the pipeline will call. Restart-safe: the
//! n-th line (or generated read) is skipped when the log already holds n+1
//! reads, so a restarted node does not record a read twice.

use std::path::PathBuf;

use alpr_shared::types::{
    confidence_from_f32, normalise_plate, Confidence, Hash32, Issuer, Location, ReadContent,
    StateReading, TimeSource, UnixMillis,
};
use anyhow::Context;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::ReplayConfig;
use crate::store::StoreHandle;

/// One line of a replay file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayLine {
    pub plate: String,
    #[serde(default = "default_confidence")]
    pub confidence: f32,
    pub camera: Option<String>,
    pub site_id: Option<String>,
    pub region: Option<String>,
    /// The issuing state as the recogniser would give it (two letters),
    /// for replays that exercise state matching.
    pub state: Option<String>,
    /// Capture time (ms since the epoch); now if absent.
    pub captured_at: Option<u64>,
    /// Image files, relative to the replay file.
    pub crop: Option<PathBuf>,
    pub overview: Option<PathBuf>,
}

fn default_confidence() -> f32 {
    0.9
}

/// A generated read number `i` (plates cycle through a small space).
pub fn generated_read(cfg: &ReplayConfig, i: u64) -> ReadContent {
    let plate = format!("GEN{:05}", i % 100_000);
    ReadContent {
        location: Location::Site {
            site_id: cfg.site_id.clone(),
        },
        camera: cfg.camera.clone(),
        char_confidence: vec![9000; plate.len()],
        plate,
        confidence: 9000,
        issuer: Default::default(),
        detector_model: "replay".into(),
        ocr_model: "replay".into(),
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    }
}

/// A replayed line's issuer: its region, and its state given as sure as
/// the line's confidence (a code that is no US state is refused when the
/// read is validated).
fn replay_issuer(region: Option<String>, state: Option<&str>, c: Confidence) -> Issuer {
    match state {
        None => Issuer::from_region(region),
        Some(code) => {
            let code = code.trim().to_ascii_uppercase();
            Issuer::Read {
                region,
                state: StateReading {
                    state: Some(code.clone()),
                    confidence: c,
                    top: vec![(code, c)],
                    evidence: None,
                    model: "replay".into(),
                },
            }
        }
    }
}

fn line_read(cfg: &ReplayConfig, l: &ReplayLine) -> ReadContent {
    let plate = normalise_plate(&l.plate);
    let c = confidence_from_f32(l.confidence);
    ReadContent {
        location: Location::Site {
            site_id: l.site_id.clone().unwrap_or_else(|| cfg.site_id.clone()),
        },
        camera: l.camera.clone().unwrap_or_else(|| cfg.camera.clone()),
        char_confidence: vec![c; plate.len()],
        plate,
        confidence: c,
        issuer: replay_issuer(l.region.clone(), l.state.as_deref(), c),
        detector_model: "replay".into(),
        ocr_model: "replay".into(),
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    }
}

/// Feed the store until done or cancelled.
pub async fn run(
    cfg: ReplayConfig,
    store: StoreHandle,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut index = 0u64;
    if let Some(file) = &cfg.file {
        let text = tokio::fs::read_to_string(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let base = file.parent().map(PathBuf::from).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: ReplayLine = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", file.display(), n + 1))?;
            if store.status().len <= index {
                let read = |p: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
                    match p {
                        Some(p) => std::fs::read(base.join(p))
                            .with_context(|| format!("reading {}", p.display())),
                        None => Ok(Vec::new()),
                    }
                };
                let at = l.captured_at.map_or_else(UnixMillis::now, UnixMillis);
                store
                    .append_read(
                        line_read(&cfg, &l),
                        at,
                        TimeSource::LocalClock,
                        read(&l.crop)?,
                        read(&l.overview)?,
                    )
                    .await
                    .with_context(|| format!("{}:{}", file.display(), n + 1))?;
                if pause(&cfg, &cancel).await {
                    return Ok(());
                }
            }
            index += 1;
        }
    }
    while store.status().len < index + cfg.generate {
        let i = store.status().len;
        let (crop, overview) = if cfg.images {
            (
                format!("synthetic crop of read {i}").into_bytes(),
                format!("synthetic overview of read {i}").into_bytes(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        store
            .append_read(
                generated_read(&cfg, i),
                UnixMillis::now(),
                TimeSource::Ntp,
                crop,
                overview,
            )
            .await?;
        if pause(&cfg, &cancel).await {
            return Ok(());
        }
    }
    Ok(())
}

/// Wait the configured interval; true if cancelled.
async fn pause(cfg: &ReplayConfig, cancel: &CancellationToken) -> bool {
    if cfg.interval.is_zero() {
        return cancel.is_cancelled();
    }
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(cfg.interval) => false,
    }
}
