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
    /// Live cameras (`[[capture.cameras]]`), each read on its own: RTSP,
    /// MJPEG over HTTP(S), or a V4L2 device.
    pub cameras: Vec<CameraConfig>,
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
    /// Read which US state issued each plate (once per read, on its crop),
    /// with the PP-OCR models `scripts/setup.sh` installs.
    pub read_state: bool,
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
            cameras: Vec::new(),
            fuse: None,
            models_dir: None,
            camera: "cam0".into(),
            site_id: None,
            gps: None,
            gpsd: None,
            interval: Duration::from_millis(0),
            stamp_now: true,
            min_confidence: 0.25,
            read_state: true,
        }
    }
}

impl CaptureConfig {
    /// Whether `[capture]` names a source of its own (photos, a video file
    /// or a device); the `[[capture.cameras]]` run beside it.
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

/// One live camera (`[[capture.cameras]]` in `edge.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// The camera's name on this edge (letters, digits, `-`, `_`, `.`):
    /// in every read it takes, in status, metrics and logs.
    pub name: String,
    /// Where it looks: `front`, `left`, `right`, `rear`, or a compass
    /// bearing in degrees (0–359).
    pub direction: Direction,
    /// `rtsp://host:port/path` (H.264), `http(s)://…` (MJPEG), or
    /// `v4l2:/dev/videoN`. Never credentials: see `credentials_file`.
    pub url: String,
    /// RTSP transport: `tcp` (interleaved, the default) or `udp`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// A file readable by its owner only, holding `user:password` (or the
    /// user and the password on two lines).
    pub credentials_file: Option<PathBuf>,
    /// … or an environment variable holding `user:password`.
    pub credentials_env: Option<String>,
    /// For `https://`: the certificate (PEM) of the camera or its CA.
    pub ca_file: Option<PathBuf>,
    /// Region of interest: a polygon of `[x, y]` points in fractions of
    /// the frame (0–1). When nothing in it moves, the detector does not
    /// run. Empty: the whole frame.
    #[serde(default)]
    pub roi: Vec<[f32; 2]>,
    /// The fraction of the region that must change to count as motion.
    #[serde(default = "default_motion_threshold")]
    pub motion_threshold: f32,
    /// No frame for this long: the camera is down and is reconnected.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
}

fn default_motion_threshold() -> f32 {
    0.002
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Where a camera looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Front,
    Left,
    Right,
    Rear,
    /// Degrees from north, clockwise.
    Bearing(u16),
}

impl Direction {
    /// As a read records it, after the camera's name.
    pub fn as_label(self) -> String {
        match self {
            Direction::Front => "front".into(),
            Direction::Left => "left".into(),
            Direction::Right => "right".into(),
            Direction::Rear => "rear".into(),
            Direction::Bearing(b) => format!("bearing-{b:03}"),
        }
    }
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Degrees(i64),
        }
        let bad = || {
            serde::de::Error::custom(
                "direction must be front, left, right, rear, or a bearing in degrees (0-359)",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Word(w) => match w.to_ascii_lowercase().as_str() {
                "front" => Ok(Direction::Front),
                "left" => Ok(Direction::Left),
                "right" => Ok(Direction::Right),
                "rear" => Ok(Direction::Rear),
                other => other
                    .parse::<u16>()
                    .ok()
                    .filter(|b| *b < 360)
                    .map(Direction::Bearing)
                    .ok_or_else(bad),
            },
            Raw::Degrees(b) => u16::try_from(b)
                .ok()
                .filter(|b| *b < 360)
                .map(Direction::Bearing)
                .ok_or_else(bad),
        }
    }
}

/// How RTP travels from an RTSP camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// What kind of camera a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraUrl {
    Rtsp(url::Url),
    Mjpeg(url::Url),
    V4l2(u32),
}

impl CameraConfig {
    /// The camera as a read names it: `name@direction`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.direction.as_label())
    }

    /// The URL, checked: a known scheme, and no credentials in it.
    pub fn parsed_url(&self) -> Result<CameraUrl, String> {
        if let Some(dev) = self.url.strip_prefix("v4l2:") {
            let n = dev
                .strip_prefix("/dev/video")
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or("a V4L2 camera is v4l2:/dev/videoN")?;
            return Ok(CameraUrl::V4l2(n));
        }
        let url = url::Url::parse(&self.url)
            .map_err(|_| "not a URL (rtsp://…, http(s)://… or v4l2:/dev/videoN)".to_owned())?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials may not be written in the URL (it is shown in listings): \
                 use credentials_file or credentials_env"
                    .into(),
            );
        }
        if url.host_str().is_none() {
            return Err("the URL has no host".into());
        }
        match url.scheme() {
            "rtsp" => Ok(CameraUrl::Rtsp(url)),
            "http" | "https" => Ok(CameraUrl::Mjpeg(url)),
            other => Err(format!(
                "scheme {other}: a camera is rtsp://…, http(s)://… (MJPEG) or v4l2:/dev/videoN"
            )),
        }
    }

    /// Every setting of one camera, checked; `taken` are the names of the
    /// cameras before it.
    pub fn validate(
        &self,
        c: &alpr_shared::settings::Checker<'_>,
        taken: &[&str],
    ) -> Result<(), alpr_shared::settings::InvalidSetting> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !name_ok {
            return Err(c.invalid(
                "capture.cameras.name",
                format!("{:?}", self.name),
                "1 to 32 letters, digits, '-', '_' or '.'",
            ));
        }
        if taken.contains(&self.name.as_str()) {
            return Err(c.invalid(
                "capture.cameras.name",
                format!("{:?}", self.name),
                "each camera's name once",
            ));
        }
        let url = self.parsed_url().map_err(|why| {
            c.invalid(
                "capture.cameras.url",
                format!("(camera {})", self.name),
                why,
            )
        })?;
        if self.credentials_file.is_some() && self.credentials_env.is_some() {
            return Err(c.invalid(
                "capture.cameras.credentials_file",
                format!("(camera {})", self.name),
                "either credentials_file or credentials_env, not both",
            ));
        }
        if let CameraUrl::Mjpeg(u) = &url {
            if u.scheme() == "https" && self.ca_file.is_none() {
                return Err(c.invalid(
                    "capture.cameras.ca_file",
                    format!("(camera {})", self.name),
                    "an https camera needs ca_file: the camera's or its CA's certificate",
                ));
            }
        }
        if !self.roi.is_empty()
            && (self.roi.len() < 3 || self.roi.iter().flatten().any(|v| !(0.0..=1.0).contains(v)))
        {
            return Err(c.invalid(
                "capture.cameras.roi",
                format!("(camera {})", self.name),
                "at least 3 [x, y] points, each between 0 and 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.motion_threshold) {
            return Err(c.invalid(
                "capture.cameras.motion_threshold",
                self.motion_threshold,
                "between 0 and 1",
            ));
        }
        c.duration(
            "capture.cameras.stall_timeout",
            self.stall_timeout,
            Duration::from_secs(1),
            Duration::from_secs(120),
        )
    }
}
