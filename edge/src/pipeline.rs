//! The node's front half: frames from a source are recognised and every
//! plate found becomes a signed read in the store, with its crop and the
//! overview frame as blobs.
//!
//! It runs on a thread of its own (inference is blocking work) and checks
//! for shutdown between frames. A frame that cannot be read or recognised
//! is logged and skipped; the node keeps running. A replay remembers how
//! many frames it has finished (`capture.cursor` in the data folder), so a
//! restarted node goes on where it stopped instead of reading the same
//! photos twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alpr_shared::types::{
    confidence_from_f32, Hash32, Location, ReadContent, TimeSource, UnixMillis,
};
use anyhow::Context;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::capture::{Frame, ImageReplay, Source};
use crate::recognise::{PlateRead, Recogniser, RecogniserOptions, MODELS_ENV};
use crate::store::StoreHandle;

/// `[capture]` in `edge.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Image files and folders replayed as this node's camera (empty: no
    /// replay).
    pub paths: Vec<PathBuf>,
    /// The models directory; else `$ALPR_MODELS`, else `./models`.
    pub models_dir: Option<PathBuf>,
    /// This camera's id, written in every read.
    pub camera: String,
    /// A fixed site (pole cameras) …
    pub site_id: Option<String>,
    /// … or a GPS fix (vehicles): latitude, longitude in degrees, accuracy in
    /// metres. Without a GPS receiver wired in, the configured fix is used.
    pub gps: Option<GpsFix>,
    /// Pause between replayed frames, to pace a replay like a camera.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stamp replayed frames with the node's clock (as a live camera would)
    /// rather than the files' own times.
    pub stamp_now: bool,
    /// Plates read with less confidence than this (0..1) are not recorded:
    /// below it the OCR is guessing and the read would only be noise.
    pub min_confidence: f32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpsFix {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            paths: Vec::new(),
            models_dir: None,
            camera: "cam0".into(),
            site_id: None,
            gps: None,
            interval: Duration::from_millis(0),
            stamp_now: true,
            min_confidence: 0.25,
        }
    }
}

impl CaptureConfig {
    pub fn enabled(&self) -> bool {
        !self.paths.is_empty()
    }

    fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .or_else(|| std::env::var_os(MODELS_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("models"))
    }

    fn location(&self) -> Location {
        match (&self.site_id, self.gps) {
            (_, Some(g)) => Location::Gps {
                lat_e7: (g.lat * 1e7).round() as i32,
                lon_e7: (g.lon * 1e7).round() as i32,
                accuracy_cm: (g.accuracy_m * 100.0).round().max(0.0) as u32,
            },
            (Some(site), None) => Location::Site {
                site_id: site.clone(),
            },
            (None, None) => Location::Site {
                site_id: "unsurveyed".into(),
            },
        }
    }
}

/// What the pipeline did, for its final log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct PipelineStats {
    pub frames: u64,
    pub frames_failed: u64,
    pub reads: u64,
}

/// A loaded recogniser and an opened source, ready to run.
pub struct Pipeline {
    cfg: CaptureConfig,
    recogniser: Recogniser,
    source: ImageReplay,
    cursor_path: PathBuf,
    position: u64,
}

impl Pipeline {
    /// Load the models (a clear error if they are missing or altered) and
    /// open the source, resuming after the frames already done.
    pub fn open(cfg: &CaptureConfig, data_dir: &Path) -> anyhow::Result<Pipeline> {
        let models = cfg.models_dir();
        let recogniser = Recogniser::open(&models, RecogniserOptions::default())
            .with_context(|| format!("loading the plate models from {}", models.display()))?;
        let mut source = ImageReplay::open(&cfg.paths).context("opening the replay")?;
        let cursor_path = data_dir.join("capture.cursor");
        let position = read_cursor(&cursor_path);
        source.skip(usize::try_from(position).unwrap_or(usize::MAX));
        Ok(Pipeline {
            cfg: cfg.clone(),
            recogniser,
            source,
            cursor_path,
            position,
        })
    }

    /// Run until the source ends or `cancel`.
    pub fn run(
        mut self,
        store: &StoreHandle,
        cancel: &CancellationToken,
    ) -> anyhow::Result<PipelineStats> {
        info!(source = %self.source.describe(), frames = self.source.len(), resumed_at = self.position, "capture starting");
        let location = self.cfg.location();
        let mut stats = PipelineStats::default();
        while !cancel.is_cancelled() {
            let started = Instant::now();
            let Some(frame) = self.source.next_frame() else {
                break;
            };
            self.position += 1;
            stats.frames += 1;
            match frame {
                Err(e) => {
                    stats.frames_failed += 1;
                    warn!(error = %e, "frame skipped");
                }
                Ok(frame) => match self.recogniser.recognise(&frame.image) {
                    Err(e) => {
                        stats.frames_failed += 1;
                        warn!(source = %frame.source, error = %e, "recognition failed; frame skipped");
                    }
                    Ok(plates) => {
                        for plate in plates
                            .iter()
                            .filter(|p| p.confidence >= self.cfg.min_confidence)
                        {
                            store_read(&self.cfg, store, &location, &frame, plate)?;
                            stats.reads += 1;
                        }
                    }
                },
            }
            write_cursor(&self.cursor_path, self.position)?;
            pace(self.cfg.interval.saturating_sub(started.elapsed()), cancel);
        }
        // `frames` counts every frame finished, across restarts.
        info!(
            frames = self.position,
            failed = stats.frames_failed,
            reads = stats.reads,
            "capture finished"
        );
        Ok(stats)
    }
}

fn store_read(
    cfg: &CaptureConfig,
    store: &StoreHandle,
    location: &Location,
    frame: &Frame,
    plate: &PlateRead,
) -> anyhow::Result<()> {
    let crop = plate
        .crop_jpeg()
        .map_err(|e| anyhow::anyhow!("encoding the plate crop: {e}"))?;
    let overview = match &frame.encoded {
        Some(b) => b.clone(),
        None => frame
            .image
            .encode_jpeg(85)
            .map_err(|e| anyhow::anyhow!("encoding the overview: {e}"))?,
    };
    let (captured_at, time_source) = if cfg.stamp_now {
        (UnixMillis::now(), TimeSource::LocalClock)
    } else {
        (millis(frame.captured_at), TimeSource::LocalClock)
    };
    let content = ReadContent {
        location: location.clone(),
        camera: cfg.camera.clone(),
        plate: plate.text.clone(),
        confidence: confidence_from_f32(plate.confidence),
        char_confidence: plate
            .char_confidence
            .iter()
            .map(|&c| confidence_from_f32(c))
            .collect(),
        region: plate.region.as_ref().map(|r| r.name.clone()),
        detector_model: plate.detector_model.clone(),
        ocr_model: plate.ocr_model.clone(),
        // The store computes both hashes from the bytes it keeps.
        crop_hash: Hash32::ZERO,
        overview_hash: Hash32::ZERO,
    };
    let appended = store
        .append_read_blocking(content, captured_at, time_source, crop, overview)
        .context("storing a read")?;
    let file = Path::new(&frame.source).file_name().map_or_else(
        || frame.source.clone(),
        |f| f.to_string_lossy().into_owned(),
    );
    info!(
        plate = %plate.text,
        confidence = format_args!("{:.1}%", plate.confidence * 100.0),
        file = %file,
        entry = appended.seq,
        "plate read"
    );
    Ok(())
}

fn millis(t: SystemTime) -> UnixMillis {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    UnixMillis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn pace(wait: Duration, cancel: &CancellationToken) {
    let until = Instant::now() + wait;
    while !cancel.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Durably record that `n` frames are done (write, sync, rename).
fn write_cursor(path: &Path, n: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("cursor.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    writeln!(f, "{n}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
