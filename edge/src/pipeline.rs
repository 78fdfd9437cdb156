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

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alpr_shared::types::{
    confidence_from_f32, Hash32, Location, ReadContent, TimeSource, UnixMillis,
};
use anyhow::Context;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::capture::{Frame, ImageReplay, MjpegFile, Source};
use crate::health::CaptureHealth;
use crate::recognise::fusion::{PassRead, Tracker, TrackerConfig};
use crate::recognise::{PlateRead, Recogniser, RecogniserOptions, MODELS_ENV};
use crate::store::StoreHandle;

/// `[capture]` in `edge.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Image files and folders replayed as this node's camera, one vehicle
    /// per photo.
    pub paths: Vec<PathBuf>,
    /// A Motion-JPEG video file played as the camera (instead of `paths`).
    pub video: Option<PathBuf>,
    /// Its frame rate.
    pub video_fps: f64,
    /// A live V4L2 camera, `/dev/videoN` (needs the `camera` build feature).
    pub camera_device: Option<u32>,
    /// Fuse consecutive frames of one vehicle into one read per pass.
    /// Default: on for video and cameras, off for photo replays.
    pub fuse: Option<bool>,
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
            video: None,
            video_fps: 25.0,
            camera_device: None,
            fuse: None,
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
        !self.paths.is_empty() || self.video.is_some() || self.camera_device.is_some()
    }

    fn fuse(&self) -> bool {
        self.fuse
            .unwrap_or(self.video.is_some() || self.camera_device.is_some())
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

/// Overview frames kept for fused reads (the best frame of a pass is
/// usually recent; an older one falls back to the pass's last frame).
const OVERVIEW_RING: usize = 64;

/// A loaded recogniser and an opened source, ready to run.
pub struct Pipeline {
    cfg: CaptureConfig,
    recogniser: Recogniser,
    /// `None` for a live camera, opened on the capture thread.
    source: Option<Box<dyn Source + Send>>,
    cursor_path: PathBuf,
    position: u64,
    health: CaptureHealth,
}

impl Pipeline {
    /// Load the models (a clear error if they are missing or altered) and
    /// open the source, resuming after the frames already done.
    pub fn open(cfg: &CaptureConfig, data_dir: &Path) -> anyhow::Result<Pipeline> {
        let models = cfg.models_dir();
        let recogniser = Recogniser::open(&models, RecogniserOptions::default())
            .with_context(|| format!("loading the plate models from {}", models.display()))?;
        let cursor_path = data_dir.join("capture.cursor");
        let mut position = read_cursor(&cursor_path);
        let source: Option<Box<dyn Source + Send>> = if let Some(video) = &cfg.video {
            let mut v = MjpegFile::open(video, cfg.video_fps).context("opening the video")?;
            for _ in 0..position {
                if v.next_frame().is_none() {
                    break;
                }
            }
            Some(Box::new(v))
        } else if cfg.camera_device.is_some() {
            anyhow::ensure!(
                cfg!(feature = "camera"),
                "this edge was built without camera support (build with --features camera)"
            );
            position = 0;
            None
        } else {
            let mut replay = ImageReplay::open(&cfg.paths).context("opening the replay")?;
            replay.skip(usize::try_from(position).unwrap_or(usize::MAX));
            Some(Box::new(replay))
        };
        Ok(Pipeline {
            cfg: cfg.clone(),
            recogniser,
            source,
            cursor_path,
            position,
            health: CaptureHealth::default(),
        })
    }

    /// Report each frame's outcome to `health` (a failing source shows on
    /// `edge status` at once).
    pub fn with_health(mut self, health: CaptureHealth) -> Self {
        self.health = health;
        self
    }

    /// Run until the source ends or `cancel`.
    pub fn run(
        mut self,
        store: &StoreHandle,
        cancel: &CancellationToken,
    ) -> anyhow::Result<PipelineStats> {
        let mut source = match self.source.take() {
            Some(s) => s,
            None => live_camera(&self.cfg)?,
        };
        let live = self.cfg.camera_device.is_some();
        info!(source = %source.describe(), resumed_at = self.position, fuse = self.cfg.fuse(), "capture starting");
        let location = self.cfg.location();
        let mut tracker = self
            .cfg
            .fuse()
            .then(|| Tracker::new(TrackerConfig::default()));
        let mut overviews: VecDeque<(Duration, Vec<u8>)> = VecDeque::new();
        let mut stats = PipelineStats::default();
        while !cancel.is_cancelled() {
            let started = Instant::now();
            let Some(frame) = source.next_frame() else {
                break;
            };
            self.position += 1;
            stats.frames += 1;
            match frame {
                Err(e) => {
                    stats.frames_failed += 1;
                    self.health.frame_failed(&e.to_string());
                    warn!(error = %e, "frame skipped");
                }
                Ok(frame) => match self.recogniser.recognise(&frame.image) {
                    Err(e) => {
                        stats.frames_failed += 1;
                        self.health
                            .frame_failed(&format!("{}: recognition failed: {e}", frame.source));
                        warn!(source = %frame.source, error = %e, "recognition failed; frame skipped");
                    }
                    Ok(plates) => {
                        let plates: Vec<PlateRead> = plates
                            .into_iter()
                            .filter(|p| p.confidence >= self.cfg.min_confidence)
                            .collect();
                        self.health.frame_ok(plates.len() as u64);
                        match tracker.as_mut() {
                            None => {
                                let overview = overview_of(&frame)?;
                                for plate in &plates {
                                    store_read(
                                        &self.cfg,
                                        store,
                                        &location,
                                        &frame,
                                        plate,
                                        overview.clone(),
                                    )?;
                                    stats.reads += 1;
                                }
                            }
                            Some(t) => {
                                let at = since_epoch(frame.captured_at);
                                if !plates.is_empty() {
                                    overviews.push_back((at, overview_of(&frame)?));
                                    if overviews.len() > OVERVIEW_RING {
                                        overviews.pop_front();
                                    }
                                }
                                for pass in t.push(at, plates) {
                                    store_pass(
                                        &self.cfg, store, &location, &frame, &pass, &overviews,
                                    )?;
                                    stats.reads += 1;
                                }
                            }
                        }
                    }
                },
            }
            if !live {
                write_cursor(&self.cursor_path, self.position)?;
            }
            pace(self.cfg.interval.saturating_sub(started.elapsed()), cancel);
        }
        if let Some(t) = tracker.as_mut() {
            let last = Frame {
                source: source.describe(),
                seq: self.position,
                captured_at: SystemTime::now(),
                time_source: crate::capture::TimeSource::SystemClock,
                image: crate::recognise::RgbImage::from_raw(1, 1, vec![0; 3])
                    .context("a 1-pixel image")?,
                encoded: None,
            };
            for pass in t.flush() {
                store_pass(&self.cfg, store, &location, &last, &pass, &overviews)?;
                stats.reads += 1;
            }
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

#[cfg(feature = "camera")]
fn live_camera(cfg: &CaptureConfig) -> anyhow::Result<Box<dyn Source + Send>> {
    let index = cfg.camera_device.context("no camera configured")?;
    Ok(Box::new(crate::capture::camera::Camera::new(index)))
}

#[cfg(not(feature = "camera"))]
fn live_camera(_cfg: &CaptureConfig) -> anyhow::Result<Box<dyn Source + Send>> {
    anyhow::bail!("this edge was built without camera support (build with --features camera)")
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The frame as JPEG: the bytes captured when the source had them.
fn overview_of(frame: &Frame) -> anyhow::Result<Vec<u8>> {
    match &frame.encoded {
        Some(b) => Ok(b.clone()),
        None => frame
            .image
            .encode_jpeg(85)
            .map_err(|e| anyhow::anyhow!("encoding the overview: {e}")),
    }
}

/// Store one vehicle pass: the fused read, with the overview of its best
/// frame when still held.
fn store_pass(
    cfg: &CaptureConfig,
    store: &StoreHandle,
    location: &Location,
    frame: &Frame,
    pass: &PassRead,
    overviews: &VecDeque<(Duration, Vec<u8>)>,
) -> anyhow::Result<()> {
    let overview = overviews
        .iter()
        .find(|(at, _)| *at == pass.best_frame)
        .or_else(|| overviews.back())
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let mut at_best = frame.clone();
    at_best.captured_at = UNIX_EPOCH + pass.best_frame;
    store_read(cfg, store, location, &at_best, &pass.read, overview)
}

fn store_read(
    cfg: &CaptureConfig,
    store: &StoreHandle,
    location: &Location,
    frame: &Frame,
    plate: &PlateRead,
    overview: Vec<u8>,
) -> anyhow::Result<()> {
    let crop = plate
        .crop_jpeg()
        .map_err(|e| anyhow::anyhow!("encoding the plate crop: {e}"))?;
    let (captured_at, time_source) = if cfg.stamp_now && cfg.camera_device.is_none() {
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
