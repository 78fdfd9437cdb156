//! The node's front half: frames from a source are recognised and every
//! plate found becomes a signed read in the store, with its crop and the
//! overview frame as blobs.
//!
//! It runs on a thread of its own (inference is blocking work) and checks
//! for shutdown between frames. A frame that cannot be read or recognised
//! is logged and skipped; the node keeps running.
//!
//! The source's position is committed in the store's transaction with the
//! reads of the frame that moved it ([`CaptureCursor`]), so a node killed
//! at any point goes on where it stopped: no photo read twice, no read
//! lost. When frames are fused into vehicle passes, the position committed
//! is the first frame of the earliest pass not yet stored: a restart reads
//! those frames again, and passes that had been stored before the kill are
//! not stored twice.
//!
//! Each read says where its facts came from: its time from the photo's EXIF
//! capture time, the file's modification time, the system clock (NTP
//! synchronised or not, as the kernel says when the read is taken) or GPS;
//! its place from a measured GPS fix (gpsd), a configured site, a configured
//! position (labelled as configured), or none.

mod overviews;
mod state;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alpr_shared::types::{
    confidence_from_f32, Confidence, Hash32, Issuer, Location, ReadContent, TimeSource, UnixMillis,
};

use crate::capture::gps::GpsHandle;
pub use crate::config::{CaptureConfig, GpsFix};
use crate::store::{CaptureCursor, NewRead};
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::capture::live::motion::{Motion, MotionGate};
use crate::capture::live::CameraStats;
use crate::capture::{CapturedFrame, ImageReplay, MjpegFile, Source};
use crate::config::CameraConfig;
use crate::health::CaptureHealth;
use crate::recognise::fusion::{PassRead, Tracker, TrackerConfig};
use crate::recognise::{PlateRead, Recogniser, RecogniserOptions, MODELS_ENV};
use crate::store::StoreHandle;
use overviews::Overviews;
use state::StateReading;

/// What the pipeline takes from `[capture]` beyond its settings: where
/// the models are, and where a read was taken.
impl CaptureConfig {
    fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .or_else(|| std::env::var_os(MODELS_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("models"))
    }

    /// Where a read taken now was taken, and only what is known of it: a
    /// current GPS fix, else the configured site, else the configured
    /// position (labelled configured), else nothing.
    pub fn location(&self, gps: Option<&GpsHandle>) -> Location {
        if let Some(fix) = gps.and_then(GpsHandle::fix) {
            return fix.location();
        }
        if let Some(site) = &self.site_id {
            return Location::Site {
                site_id: site.clone(),
            };
        }
        match self.gps {
            Some(g) => Location::Configured {
                lat_e7: (g.lat * 1e7).round() as i32,
                lon_e7: (g.lon * 1e7).round() as i32,
                accuracy_cm: (g.accuracy_m * 100.0).round().max(0.0) as u32,
            },
            None => Location::Unknown,
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

/// A live camera's pass ends when its plate has been unseen this long:
/// the read is stored well within a second of the vehicle's leaving.
const LIVE_PASS_GAP: Duration = Duration::from_millis(600);

/// A live camera's pass gap: [`LIVE_PASS_GAP`], or three times the
/// recent interval between the frames looked at when that is longer (a
/// loaded machine looks less often; a pass must not split between two
/// looks).
#[derive(Debug, Default)]
struct PassGap {
    last: Option<Duration>,
    mean_secs: Option<f64>,
}

impl PassGap {
    /// The gap after a frame captured at `at`, when it changed.
    fn next(&mut self, at: Duration) -> Option<Duration> {
        let step = at.checked_sub(self.last.replace(at)?)?.as_secs_f64();
        let mean = match self.mean_secs {
            Some(m) => 0.8 * m + 0.2 * step.min(5.0),
            None => step.min(5.0),
        };
        self.mean_secs = Some(mean);
        Some(LIVE_PASS_GAP.max(Duration::from_secs_f64(3.0 * mean)))
    }
}

/// A loaded recogniser and an opened source, ready to run.
pub struct Pipeline {
    cfg: CaptureConfig,
    recogniser: Recogniser,
    /// `None` for a live camera, opened on the capture thread.
    source: Option<Box<dyn Source + Send>>,
    /// Where the source resumed (`None` for a live camera).
    cursor: Option<CaptureCursor>,
    gps: Option<GpsHandle>,
    health: CaptureHealth,
    /// Matches each stored read against the node's lists.
    alerter: Option<crate::alert::Alerter>,
    /// What a read names as its camera.
    camera: String,
    /// For a live camera from `[[capture.cameras]]`: its figures, and the
    /// motion gate in front of the detector.
    live: Option<LiveParts>,
    /// Reads the issuing state on each read's crop (`read_state`).
    state: Option<StateReading>,
}

/// What a live camera adds to the loop.
struct LiveParts {
    stats: Option<std::sync::Arc<CameraStats>>,
    gate: MotionGate,
    /// The last frame's plates, for a frame in which nothing moved.
    last: Vec<PlateRead>,
}

/// A read ready to store: the read, the frame it came from (its position
/// in the source, which is what the log says of it), and the recogniser's
/// alternatives with their probabilities, for matching.
struct Pending {
    read: NewRead,
    frame: u64,
    alternatives: Vec<(String, Confidence)>,
}

impl Pipeline {
    /// Load the models (a clear error if they are missing or altered) and
    /// open the source, resuming where the store's cursor says.
    pub fn open(
        cfg: &CaptureConfig,
        data_dir: &Path,
        store: &StoreHandle,
    ) -> anyhow::Result<Pipeline> {
        let models = cfg.models_dir();
        let recogniser = Recogniser::open(&models, RecogniserOptions::default())
            .with_context(|| format!("loading the plate models from {}", models.display()))?;
        let cursor = resume_cursor(store, &data_dir.join("capture.cursor"))?;
        let position = cursor.resume_at;
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
            None
        } else {
            let mut replay = ImageReplay::open(&cfg.paths).context("opening the replay")?;
            replay.skip(usize::try_from(position).unwrap_or(usize::MAX));
            Some(Box::new(replay))
        };
        Ok(Pipeline {
            cfg: cfg.clone(),
            recogniser,
            cursor: cfg.camera_device.is_none().then_some(cursor),
            source,
            gps: None,
            health: CaptureHealth::default(),
            alerter: None,
            camera: cfg.camera.clone(),
            live: None,
            state: StateReading::open(cfg)?,
        })
    }

    /// A pipeline for one live camera of `[[capture.cameras]]`: its own
    /// recogniser (one thread: a camera per core), its receiving thread
    /// started, passes fused with a short gap so a read follows the
    /// vehicle's leaving within a second.
    pub fn open_camera(
        cfg: &CaptureConfig,
        cam: &CameraConfig,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Pipeline> {
        let models = cfg.models_dir();
        let options = RecogniserOptions {
            threads: 1,
            ..RecogniserOptions::default()
        };
        let recogniser = Recogniser::open(&models, options)
            .with_context(|| format!("loading the plate models from {}", models.display()))?;
        let (source, stats) =
            open_live(cam, cancel).with_context(|| format!("camera {}", cam.name))?;
        let mut cfg = cfg.clone();
        cfg.fuse = Some(cfg.fuse.unwrap_or(true));
        cfg.stamp_now = false;
        let state = StateReading::open(&cfg)?;
        Ok(Pipeline {
            cfg,
            recogniser,
            source: Some(source),
            cursor: None,
            gps: None,
            health: CaptureHealth::default(),
            alerter: None,
            camera: cam.label(),
            live: Some(LiveParts {
                stats,
                gate: MotionGate::new(&cam.roi, cam.motion_threshold),
                last: Vec::new(),
            }),
            state,
        })
    }

    /// A live camera's figures, for status and metrics.
    pub fn camera_stats(&self) -> Option<std::sync::Arc<CameraStats>> {
        self.live.as_ref().and_then(|l| l.stats.clone())
    }

    /// Report each frame's outcome to `health` (a failing source shows on
    /// `edge status` at once).
    pub fn with_health(mut self, health: CaptureHealth) -> Self {
        self.health = health;
        self
    }

    /// Match every stored read with this alerter.
    pub fn with_alerter(mut self, alerter: Option<crate::alert::Alerter>) -> Self {
        self.alerter = alerter;
        self
    }

    /// Take positions (and, without NTP, time) from this gpsd client.
    pub fn with_gps(mut self, gps: Option<GpsHandle>) -> Self {
        self.gps = gps;
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
        let live = self.cursor.is_none();
        let tracker_config = if self.live.is_some() {
            TrackerConfig {
                max_gap: LIVE_PASS_GAP,
                ..TrackerConfig::default()
            }
        } else {
            TrackerConfig::default()
        };
        let start = self.cursor.unwrap_or_default();
        // Frames below this completed passes that were stored before a
        // restart: re-reading them must not store those passes again.
        let suppress_below = start.emitted_through;
        let mut position = start.resume_at;
        // Not the source's paths or address: a log line names no place.
        info!(
            source = if self.live.is_some() { "live camera" } else { self.cfg.source_kind() },
            camera = %self.camera,
            resumed_at = position,
            fuse = self.cfg.fuse(),
            "capture starting"
        );
        let mut tracker = self.cfg.fuse().then(|| Tracker::new(tracker_config));
        let mut overviews = Overviews::default();
        let mut pace_gap = self.live.is_some().then(PassGap::default);
        // (capture time, frame index) of frames an open pass may have begun at.
        let mut recent: VecDeque<(Duration, u64)> = VecDeque::new();
        let mut stats = PipelineStats::default();
        let mut ended = false;
        while !cancel.is_cancelled() {
            let started = Instant::now();
            let Some(frame) = source.next_frame() else {
                ended = true;
                break;
            };
            let index = position;
            position += 1;
            stats.frames += 1;
            let mut reads: Vec<Pending> = Vec::new();
            match frame {
                Err(e) => {
                    stats.frames_failed += 1;
                    self.health.frame_failed(&e.to_string());
                    warn!(frame = index, error = %e.cause(), "frame skipped");
                }
                Ok(frame) => match self.look(&frame) {
                    Err(e) => {
                        stats.frames_failed += 1;
                        self.health
                            .frame_failed(&format!("{}: recognition failed: {e}", frame.source));
                        warn!(frame = index, error = %e, "recognition failed; frame skipped");
                    }
                    Ok(plates) => {
                        let plates: Vec<PlateRead> = plates
                            .into_iter()
                            .filter(|p| p.confidence >= self.cfg.min_confidence)
                            .collect();
                        self.health.frame_ok(plates.len() as u64);
                        match tracker.as_mut() {
                            None => {
                                let overview = overviews::jpeg_of(&frame)?;
                                for plate in &plates {
                                    reads.push(self.new_read(&frame, plate, overview.clone())?);
                                }
                            }
                            Some(t) => {
                                let at = since_epoch(frame.captured_at);
                                recent.push_back((at, index));
                                if !plates.is_empty() {
                                    overviews.keep(at, &frame)?;
                                }
                                if let Some(gap) = pace_gap.as_mut().and_then(|g| g.next(at)) {
                                    t.set_max_gap(gap);
                                }
                                for pass in t.push(at, plates) {
                                    if index < suppress_below {
                                        info!(
                                            frame = index,
                                            "pass stored before the restart; not stored again"
                                        );
                                        continue;
                                    }
                                    reads.push(self.pass_read(&frame, &pass, &overviews)?);
                                }
                                overviews.retain(&t.candidate_frames());
                                match t.earliest_open() {
                                    Some(first) => {
                                        while recent.front().is_some_and(|(a, _)| *a < first) {
                                            recent.pop_front();
                                        }
                                    }
                                    None => recent.clear(),
                                }
                            }
                        }
                    }
                },
            }
            let cursor = (!live).then(|| {
                let resume_at = match tracker.as_ref().and_then(Tracker::earliest_open) {
                    Some(_) => recent.front().map_or(position, |(_, i)| *i),
                    None => position,
                };
                CaptureCursor {
                    resume_at,
                    emitted_through: position.max(suppress_below),
                }
            });
            stats.reads += self.commit(store, reads, cursor)?;
            pace(self.cfg.interval.saturating_sub(started.elapsed()), cancel);
        }
        // At the end of a file the open passes are complete; on shutdown
        // they are left for the restart to read again (a live camera cannot
        // be read again, so it stores them now).
        if let Some(t) = tracker.as_mut().filter(|_| ended || live) {
            let last = CapturedFrame {
                source: source.describe(),
                seq: position,
                captured_at: SystemTime::now(),
                time_source: crate::capture::FrameClock::SystemClock,
                image: crate::recognise::RgbImage::from_raw(1, 1, vec![0; 3])
                    .context("a 1-pixel image")?,
                encoded: None,
            };
            let mut reads = Vec::new();
            for pass in t.flush() {
                reads.push(self.pass_read(&last, &pass, &overviews)?);
            }
            let cursor = (!live).then(|| CaptureCursor::at(position.max(suppress_below)));
            stats.reads += self.commit(store, reads, cursor)?;
        }
        // `frames` counts every frame finished, across restarts.
        info!(
            frames = position,
            failed = stats.frames_failed,
            reads = stats.reads,
            "capture finished"
        );
        Ok(stats)
    }

    /// The plates in a frame. Before a live camera's frame goes to the
    /// detector, the motion gate looks: when nothing moved in the region
    /// of interest, the last frame's plates stand (the scene is as it
    /// was), and the detector does not run.
    fn look(
        &mut self,
        frame: &CapturedFrame,
    ) -> Result<Vec<PlateRead>, crate::recognise::InferenceError> {
        let Some(live) = self.live.as_mut() else {
            return self.recogniser.recognise(&frame.image);
        };
        let motion = live.gate.check(&frame.image);
        if let Some(stats) = &live.stats {
            if live.gate.frozen() {
                stats
                    .frozen
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if motion == Motion::Still {
            if let Some(stats) = &live.stats {
                CameraStats::count(&stats.still);
            }
            return Ok(live.last.clone());
        }
        let plates = self.recogniser.recognise(&frame.image)?;
        if let Some(stats) = &live.stats {
            CameraStats::count(&stats.analysed);
        }
        live.last = plates.clone();
        Ok(plates)
    }

    /// Store one step's reads with the source's new position, in one
    /// transaction; then log each read.
    fn commit(
        &self,
        store: &StoreHandle,
        reads: Vec<Pending>,
        cursor: Option<CaptureCursor>,
    ) -> anyhow::Result<u64> {
        if reads.is_empty() && cursor.is_none() {
            return Ok(0);
        }
        // What is matched and logged of each read once stored: its plate
        // and alternatives go to the matcher; the log gets the frame, the
        // entry's number, the confidence and the time's source, never the
        // plate or the place (logs outlive retention and the access log).
        let (reads, rest): (Vec<NewRead>, Vec<_>) = reads
            .into_iter()
            .map(|p| {
                let shown = (
                    p.read.content.plate.clone(),
                    p.frame,
                    f32::from(p.read.content.confidence) / 100.0,
                    p.read.time_source,
                );
                let state = p.read.content.issuer.state().map(str::to_owned);
                (p.read, (shown, (p.alternatives, state)))
            })
            .unzip();
        let results = store
            .commit_capture_blocking(reads, cursor)
            .context("storing the reads")?;
        let mut stored = 0;
        let mut to_match = Vec::new();
        for (r, ((best, frame, pct, ts), (alternatives, state))) in results.into_iter().zip(rest) {
            match r {
                Ok(appended) => {
                    stored += 1;
                    to_match.push(crate::alert::StoredRead {
                        seq: appended.seq,
                        best,
                        alternatives,
                        state,
                    });
                    info!(
                        entry = appended.seq,
                        frame,
                        confidence = format_args!("{pct:.1}%"),
                        time_source = %ts,
                        "read stored"
                    );
                }
                Err(e) => warn!(frame, error = %e, "read refused by the store"),
            }
        }
        // After the reads are durable: an alert names a stored read. A
        // failure to sign an alert is logged; the reads stay stored.
        if let Some(alerter) = &self.alerter {
            if let Err(e) = alerter.check_blocking(&to_match) {
                tracing::error!(error = %format!("{e:#}"), "alerts for these reads could not be recorded");
            }
        }
        Ok(stored)
    }

    /// One vehicle pass as a read, with the overview of its best frame when
    /// still held.
    fn pass_read(
        &self,
        frame: &CapturedFrame,
        pass: &PassRead,
        overviews: &Overviews,
    ) -> anyhow::Result<Pending> {
        let (clock, overview) = overviews.overview(pass.best_frame)?;
        let mut at_best = frame.clone();
        at_best.captured_at = UNIX_EPOCH + pass.best_frame;
        // The best frame's time says where it came from, not the frame
        // that closed the pass.
        if let Some(clock) = clock {
            at_best.time_source = clock;
        }
        self.new_read(&at_best, &pass.read, overview)
    }

    fn new_read(
        &self,
        frame: &CapturedFrame,
        plate: &PlateRead,
        overview: Vec<u8>,
    ) -> anyhow::Result<Pending> {
        let cfg = &self.cfg;
        let crop = plate
            .crop_jpeg()
            .map_err(|e| anyhow::anyhow!("encoding the plate crop: {e}"))?;
        let (captured_at, time_source) = capture_time(
            frame,
            cfg.stamp_now && cfg.camera_device.is_none(),
            self.gps.as_ref(),
        );
        let content = ReadContent {
            location: cfg.location(self.gps.as_ref()),
            camera: self.camera.clone(),
            plate: plate.text.clone(),
            confidence: confidence_from_f32(plate.confidence),
            char_confidence: plate
                .char_confidence
                .iter()
                .map(|&c| confidence_from_f32(c))
                .collect(),
            issuer: match &self.state {
                Some(s) => s.issuer(plate),
                None => Issuer::from_region(plate.region.as_ref().map(|r| r.name.clone())),
            },
            detector_model: plate.detector_model.clone(),
            ocr_model: plate.ocr_model.clone(),
            // The store computes both hashes from the bytes it keeps.
            crop_hash: Hash32::ZERO,
            overview_hash: Hash32::ZERO,
        };
        Ok(Pending {
            read: NewRead {
                content,
                captured_at,
                time_source,
                crop,
                overview,
            },
            frame: frame.seq,
            alternatives: plate
                .alternatives
                .iter()
                .map(|a| (a.text.clone(), confidence_from_f32(a.probability)))
                .collect(),
        })
    }
}

/// The capture time of a read and where it came from. `stamp_now` stamps
/// it with the node's clock (a replay paced like a live camera).
fn capture_time(
    frame: &CapturedFrame,
    stamp_now: bool,
    gps: Option<&GpsHandle>,
) -> (UnixMillis, TimeSource) {
    use crate::capture::FrameClock as Clock;
    match (stamp_now, frame.time_source) {
        (false, Clock::Exif) => (millis(frame.captured_at), TimeSource::Exif),
        (false, Clock::FileTime) => (millis(frame.captured_at), TimeSource::FileTime),
        (false, Clock::SystemClock) => clock_time(frame.captured_at, gps),
        (false, Clock::CameraClock) => (millis(frame.captured_at), TimeSource::CameraClock),
        (true, _) => clock_time(SystemTime::now(), gps),
    }
}

/// A time read from the system clock: labelled NTP when the kernel says an
/// NTP daemon holds the clock; else, with a current GPS fix, the receiver's
/// time; else the unsynchronised local clock.
fn clock_time(at: SystemTime, gps: Option<&GpsHandle>) -> (UnixMillis, TimeSource) {
    if crate::capture::clock::system_clock_synced() == Some(true) {
        return (millis(at), TimeSource::Ntp);
    }
    let now = Instant::now();
    let gps_now = gps
        .and_then(|g| g.state().fix(now))
        .and_then(|f| f.time_now(now));
    match gps_now {
        Some(t) => {
            // `at` was that long ago on the system clock.
            let ago = SystemTime::now().duration_since(at).unwrap_or_default();
            let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
            (UnixMillis(t.0.saturating_sub(ago)), TimeSource::Gps)
        }
        None => (millis(at), TimeSource::LocalClock),
    }
}

/// The cursor the store holds; else, once, the one an older version left
/// in `capture.cursor` (moved into the store, then the file is removed).
fn resume_cursor(store: &StoreHandle, legacy: &Path) -> anyhow::Result<CaptureCursor> {
    if let Some(c) = store
        .capture_cursor()
        .context("reading the capture cursor")?
    {
        if legacy.exists() {
            std::fs::remove_file(legacy)
                .with_context(|| format!("removing the old {}", legacy.display()))?;
        }
        return Ok(c);
    }
    let Some(done) = read_cursor(legacy) else {
        return Ok(CaptureCursor::default());
    };
    let cursor = CaptureCursor::at(done);
    store
        .commit_capture_blocking(Vec::new(), Some(cursor))
        .context("moving the capture cursor into the store")?;
    std::fs::remove_file(legacy)
        .with_context(|| format!("removing the old {}", legacy.display()))?;
    info!(
        frames = done,
        "took the capture position from the old cursor file"
    );
    Ok(cursor)
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

/// The frame count an older version wrote to `capture.cursor`, if any.
fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// An opened camera: its frames, and its figures (none for a V4L2
/// device).
type Opened = (Box<dyn Source + Send>, Option<std::sync::Arc<CameraStats>>);

/// Open a camera of `[[capture.cameras]]`: its credentials read and its
/// receiving thread started. The stats are `None` for a V4L2 device
/// (its own thread reopens it).
fn open_live(
    cam: &crate::config::CameraConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<Opened> {
    use crate::config::CameraUrl;
    let url = cam.parsed_url().map_err(|e| anyhow::anyhow!(e))?;
    let credentials = match (&cam.credentials_file, &cam.credentials_env) {
        (Some(f), _) => Some(
            crate::capture::live::credentials::from_file(f)
                .map_err(|e| anyhow::anyhow!("credentials: {e}"))?,
        ),
        (None, Some(v)) => Some(
            crate::capture::live::credentials::from_env(v)
                .map_err(|e| anyhow::anyhow!("credentials: {e}"))?,
        ),
        (None, None) => None,
    };
    let cancel = cancel.child_token();
    match url {
        CameraUrl::Rtsp(url) => {
            let c = crate::capture::live::rtsp::open(
                crate::capture::live::rtsp::RtspCamera {
                    name: cam.name.clone(),
                    url,
                    udp: cam.transport == crate::config::RtspTransport::Udp,
                    credentials,
                    stall: cam.stall_timeout,
                },
                cancel,
            )?;
            let stats = c.stats.clone();
            Ok((Box::new(c), Some(stats)))
        }
        CameraUrl::Mjpeg(url) => {
            let tls = match &cam.ca_file {
                Some(f) if url.scheme() == "https" => Some(
                    crate::capture::live::mjpeg_http::tls_config(f)
                        .map_err(|e| anyhow::anyhow!("ca_file: {e}"))?,
                ),
                _ => None,
            };
            let c = crate::capture::live::mjpeg_http::open(
                crate::capture::live::mjpeg_http::MjpegCamera {
                    name: cam.name.clone(),
                    url,
                    credentials,
                    tls,
                    stall: cam.stall_timeout,
                },
                cancel,
            )?;
            let stats = c.stats.clone();
            Ok((Box::new(c), Some(stats)))
        }
        CameraUrl::V4l2(index) => v4l2(index),
    }
}

#[cfg(feature = "camera")]
fn v4l2(index: u32) -> anyhow::Result<Opened> {
    Ok((Box::new(crate::capture::camera::Camera::new(index)), None))
}

#[cfg(not(feature = "camera"))]
fn v4l2(_index: u32) -> anyhow::Result<Opened> {
    anyhow::bail!("this edge was built without USB camera support (build with --features camera)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::SecretKey;
    use alpr_shared::types::DeviceId;

    #[test]
    fn an_old_cursor_file_is_taken_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let legacy = dir.path().join("capture.cursor");
        std::fs::write(&legacy, "12\n").expect("write");
        let (store, join) = StoreHandle::open(
            &dir.path().join("e.redb"),
            SecretKey::from_bytes(&[2; 32]),
            DeviceId::new("p").expect("valid"),
        )
        .expect("open");
        assert_eq!(
            resume_cursor(&store, &legacy).expect("cursor"),
            CaptureCursor::at(12)
        );
        assert!(!legacy.exists(), "the file is taken once");
        assert_eq!(
            store.capture_cursor().expect("cursor"),
            Some(CaptureCursor::at(12))
        );
        // A stale file beside a store that has its own cursor is not taken.
        std::fs::write(&legacy, "3\n").expect("write");
        assert_eq!(
            resume_cursor(&store, &legacy).expect("cursor"),
            CaptureCursor::at(12)
        );
        drop(store);
        join.join().expect("writer");
    }

    #[test]
    fn a_live_pass_waits_longer_when_frames_are_looked_at_less_often() {
        let mut g = PassGap::default();
        let ms = Duration::from_millis;
        assert_eq!(g.next(ms(0)), None);
        // 10 looks a second: the short gap.
        let mut gap = None;
        for i in 1..20 {
            gap = g.next(ms(100 * i));
        }
        assert_eq!(gap, Some(LIVE_PASS_GAP));
        // One look every 700 ms (a loaded machine): longer than two looks.
        for i in 1..30 {
            gap = g.next(ms(1_900 + 700 * i));
        }
        assert!(gap.is_some_and(|g| g >= ms(1_400)), "{gap:?}");
    }

    #[test]
    fn a_configured_position_is_labelled_configured() {
        let mut cfg = CaptureConfig {
            gps: Some(GpsFix {
                lat: 37.5,
                lon: -122.25,
                accuracy_m: 10.0,
            }),
            ..CaptureConfig::default()
        };
        assert_eq!(
            cfg.location(None),
            Location::Configured {
                lat_e7: 375_000_000,
                lon_e7: -1_222_500_000,
                accuracy_cm: 1000
            }
        );
        // gpsd running but without a fix: still not a measured position.
        let no_fix = GpsHandle::fixed(crate::capture::gps::GpsState::default());
        assert!(!cfg.location(Some(&no_fix)).is_measured());
        cfg.gps = None;
        assert_eq!(cfg.location(Some(&no_fix)), Location::Unknown);
        cfg.site_id = Some("pole-3".into());
        assert!(matches!(cfg.location(None), Location::Site { .. }));
        assert_eq!(cfg.gpsd_address(true).as_deref(), Some("127.0.0.1:2947"));
        assert_eq!(cfg.gpsd_address(false), None);
        cfg.gpsd = Some("off".into());
        assert_eq!(cfg.gpsd_address(true), None);
    }

    #[test]
    fn a_photos_time_says_where_it_came_from() {
        let frame = |ts| CapturedFrame {
            source: "a.jpg".into(),
            seq: 0,
            captured_at: UNIX_EPOCH + Duration::from_secs(1_000),
            time_source: ts,
            image: crate::recognise::RgbImage::from_raw(1, 1, vec![0; 3]).expect("1 px"),
            encoded: None,
        };
        use crate::capture::FrameClock as F;
        assert_eq!(
            capture_time(&frame(F::Exif), false, None),
            (UnixMillis(1_000_000), TimeSource::Exif)
        );
        assert_eq!(
            capture_time(&frame(F::FileTime), false, None),
            (UnixMillis(1_000_000), TimeSource::FileTime)
        );
        let (_, now) = capture_time(&frame(F::Exif), true, None);
        let expected = match crate::capture::clock::system_clock_synced() {
            Some(true) => TimeSource::Ntp,
            _ => TimeSource::LocalClock,
        };
        assert_eq!(now, expected);
    }
}
