//! `[capture]` in `edge.toml`: where frames come from, where the camera
//! stands, and the recognition threshold.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
    /// … or a configured position: latitude, longitude in degrees, accuracy
    /// in metres. Reads carry it labelled as configured, never as a GPS fix.
    pub gps: Option<GpsFix>,
    /// gpsd's address (`host:port`) for a measured position. Vehicles use
    /// `127.0.0.1:2947` unless this says otherwise; `"off"` disables it.
    pub gpsd: Option<String>,
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
            gpsd: None,
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

    /// What kind of source this is, for logs (never its paths or
    /// address).
    pub(crate) fn source_kind(&self) -> &'static str {
        if self.video.is_some() {
            "video file"
        } else if self.camera_device.is_some() {
            "camera"
        } else {
            "image replay"
        }
    }

    pub(crate) fn fuse(&self) -> bool {
        self.fuse
            .unwrap_or(self.video.is_some() || self.camera_device.is_some())
    }

    /// The gpsd address to use, if any, for a node of this kind.
    pub fn gpsd_address(&self, vehicle: bool) -> Option<String> {
        match self.gpsd.as_deref() {
            Some("off") => None,
            Some(a) => Some(a.to_owned()),
            None if vehicle => Some(crate::capture::gps::DEFAULT_GPSD.to_owned()),
            None => None,
        }
    }
}
