//! Live cameras (`[[capture.cameras]]`): IP cameras over RTSP (H.264,
//! [`rtsp`]), Motion-JPEG over HTTP ([`mjpeg_http`]) and, with the
//! `camera` feature, USB/UVC devices.
//!
//! Each camera has a receiving thread of its own (its network I/O on a
//! single-threaded runtime, then decoding) that puts every frame into one
//! slot, [`Latest`]: a frame not yet taken when the next arrives is
//! dropped and counted. The recognising thread always takes the newest
//! frame, so a slow recogniser drops frames and never builds a queue.
//! A camera that fails (refused, unreachable, wrong credentials, a stream
//! that stalls or freezes, a codec the edge cannot decode) is reported in
//! its [`CameraStats`] and retried with backoff; it never stops the other
//! cameras or the sync.
//!
//! No log line, status or error names a camera's address or credentials:
//! they say the camera's configured name.

pub mod credentials;
pub mod mjpeg_http;
pub mod motion;
pub mod rtsp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CaptureError, CapturedFrame, FrameClock, Source};
use crate::recognise::image::{decode, RgbImage};

/// What a frame carries until the recogniser takes it: decoded pixels
/// (H.264 must decode every frame), or a JPEG decoded only if taken.
#[derive(Debug)]
pub enum Payload {
    Rgb(RgbImage),
    /// A decoded picture as the decoder gave it (YUV 4:2:0), converted to
    /// RGB only if the recogniser takes it.
    Yuv(Yuv420),
    Jpeg(Vec<u8>),
}

/// A YUV 4:2:0 picture, planes packed without padding.
#[derive(Debug)]
pub struct Yuv420 {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Yuv420 {
    /// Copy a picture out of a decoder's buffers (`strides`: y, u, v).
    pub fn copy_from(
        (width, height): (usize, usize),
        (y, u, v): (&[u8], &[u8], &[u8]),
        strides: (usize, usize, usize),
    ) -> Option<Self> {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let plane = |src: &[u8], stride: usize, w: usize, h: usize| -> Option<Vec<u8>> {
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                out.extend_from_slice(src.get(row * stride..row * stride + w)?);
            }
            Some(out)
        };
        Some(Yuv420 {
            width,
            height,
            y: plane(y, strides.0, width, height)?,
            u: plane(u, strides.1, cw, ch)?,
            v: plane(v, strides.2, cw, ch)?,
        })
    }

    /// RGB by ITU-R BT.601 (limited range, as H.264 cameras send), with
    /// the `yuv` crate's SIMD conversion (a 1080p picture in about 2 ms
    /// where a plain loop took 13 ms).
    pub fn to_rgb(&self) -> Option<RgbImage> {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if w == 0
            || h == 0
            || self.y.len() != w * h
            || self.u.len() != cw * ch
            || self.v.len() != cw * ch
        {
            return None;
        }
        let planes = yuv::YuvPlanarImage {
            y_plane: &self.y,
            y_stride: u32::try_from(w).ok()?,
            u_plane: &self.u,
            u_stride: u32::try_from(cw).ok()?,
            v_plane: &self.v,
            v_stride: u32::try_from(cw).ok()?,
            width: u32::try_from(w).ok()?,
            height: u32::try_from(h).ok()?,
        };
        let mut out = vec![0u8; w * h * 3];
        yuv::yuv420_to_rgb(
            &planes,
            &mut out,
            u32::try_from(w * 3).ok()?,
            yuv::YuvRange::Limited,
            yuv::YuvStandardMatrix::Bt601,
        )
        .ok()?;
        RgbImage::from_raw(w as u32, h as u32, out)
    }
}

/// A frame as received.
#[derive(Debug)]
pub struct LiveFrame {
    pub payload: Payload,
    pub captured_at: SystemTime,
    pub clock: FrameClock,
}

/// A camera's link, as `edge status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    Connecting,
    Streaming,
    Down,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Streaming => "streaming",
            Link::Down => "down",
        }
    }
}

/// One camera's figures and state, shared by its threads and the status.
#[derive(Debug)]
pub struct CameraStats {
    pub name: String,
    pub kind: &'static str,
    pub received: AtomicU64,
    pub decoded: AtomicU64,
    pub analysed: AtomicU64,
    pub dropped: AtomicU64,
    /// Frames the detector did not run on: nothing moved in the region of
    /// interest.
    pub still: AtomicU64,
    /// Frames that could not be decoded (corrupt or truncated data).
    pub corrupt: AtomicU64,
    pub reconnects: AtomicU64,
    /// Times the camera's own clock (RTCP) was refused as too far from
    /// the edge's.
    pub clock_refused: AtomicU64,
    /// Set by the recogniser when the picture has not changed at all for
    /// long: the receiver drops the session and connects again.
    pub frozen: AtomicBool,
    state: Mutex<(Link, Option<String>, Instant)>,
    last_frame: Mutex<Option<Instant>>,
}

/// A camera's state for `edge status`, `edge health` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraStatus {
    pub name: String,
    /// "rtsp", "mjpeg-http" or "v4l2".
    pub kind: String,
    /// "connecting", "streaming" or "down".
    pub link: String,
    /// Why it is down (no address, no credentials).
    pub error: Option<String>,
    /// Seconds in this state.
    pub for_secs: u64,
    /// Seconds since the last frame arrived, if one has.
    pub last_frame_secs: Option<u64>,
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    pub frames_still: u64,
    pub frames_corrupt: u64,
    pub reconnects: u64,
    /// Frames stamped with the edge's clock because the camera's was too
    /// far from it.
    #[serde(default)]
    pub camera_clock_refused: u64,
}

impl CameraStats {
    pub fn new(name: &str, kind: &'static str) -> Arc<Self> {
        Arc::new(CameraStats {
            name: name.to_owned(),
            kind,
            received: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            analysed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            still: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            clock_refused: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            state: Mutex::new((Link::Connecting, None, Instant::now())),
            last_frame: Mutex::new(None),
        })
    }

    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Move to `link` (with the reason when down); the time in a state
    /// restarts only when the state changes.
    pub fn set(&self, link: Link, error: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            if s.0 != link {
                s.2 = Instant::now();
            }
            s.0 = link;
            s.1 = error;
        }
    }

    pub fn link(&self) -> Link {
        self.state.lock().map(|s| s.0).unwrap_or(Link::Down)
    }

    pub fn frame_arrived(&self) {
        Self::count(&self.received);
        if let Ok(mut t) = self.last_frame.lock() {
            *t = Some(Instant::now());
        }
    }

    pub fn status(&self) -> CameraStatus {
        let (link, error, since) = self.state.lock().map(|s| s.clone()).unwrap_or((
            Link::Down,
            Some("state unreadable".into()),
            Instant::now(),
        ));
        let last = self.last_frame.lock().ok().and_then(|t| *t);
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CameraStatus {
            name: self.name.clone(),
            kind: self.kind.into(),
            link: link.as_str().into(),
            error,
            for_secs: since.elapsed().as_secs(),
            last_frame_secs: last.map(|t| t.elapsed().as_secs()),
            frames_received: n(&self.received),
            frames_decoded: n(&self.decoded),
            frames_analysed: n(&self.analysed),
            frames_dropped: n(&self.dropped),
            frames_still: n(&self.still),
            frames_corrupt: n(&self.corrupt),
            reconnects: n(&self.reconnects),
            camera_clock_refused: n(&self.clock_refused),
        }
    }
}

/// The newest frame of one camera, waiting for the recogniser.
#[derive(Debug, Default)]
pub struct Latest {
    slot: Mutex<Option<LiveFrame>>,
    ready: Condvar,
}

impl Latest {
    /// Put the newest frame in; the one it replaces, never taken, is
    /// dropped and counted.
    pub fn put(&self, frame: LiveFrame, stats: &CameraStats) {
        if let Ok(mut slot) = self.slot.lock() {
            if slot.replace(frame).is_some() {
                CameraStats::count(&stats.dropped);
            }
            self.ready.notify_one();
        }
    }

    /// Whether a frame waits that the recogniser has not taken yet (it is
    /// busy: a frame decoded now would most likely be replaced untaken).
    pub fn waiting(&self) -> bool {
        self.slot.lock().is_ok_and(|s| s.is_some())
    }

    /// The newest frame, waiting at most `wait` for one.
    pub fn take(&self, wait: Duration) -> Option<LiveFrame> {
        let slot = self.slot.lock().ok()?;
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, wait, |s| s.is_none())
            .ok()?;
        slot.take()
    }
}

/// A live camera as a [`Source`] for the recognising thread: each call
/// gives the newest frame; `None` once the node stops.
pub struct LiveCamera {
    pub stats: Arc<CameraStats>,
    latest: Arc<Latest>,
    cancel: CancellationToken,
    seq: u64,
    receiver: Option<std::thread::JoinHandle<()>>,
}

impl LiveCamera {
    pub fn new(
        stats: Arc<CameraStats>,
        latest: Arc<Latest>,
        cancel: CancellationToken,
        receiver: std::thread::JoinHandle<()>,
    ) -> Self {
        LiveCamera {
            stats,
            latest,
            cancel,
            seq: 0,
            receiver: Some(receiver),
        }
    }
}

impl Drop for LiveCamera {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
    }
}

impl Source for LiveCamera {
    fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>> {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            let Some(frame) = self.latest.take(Duration::from_millis(200)) else {
                continue;
            };
            let seq = self.seq;
            self.seq += 1;
            let (image, encoded) = match frame.payload {
                Payload::Rgb(image) => (image, None),
                Payload::Yuv(yuv) => match yuv.to_rgb() {
                    Some(image) => (image, None),
                    None => {
                        CameraStats::count(&self.stats.corrupt);
                        continue;
                    }
                },
                Payload::Jpeg(bytes) => match decode(&bytes) {
                    Ok(image) => {
                        CameraStats::count(&self.stats.decoded);
                        (image, Some(bytes))
                    }
                    Err(source) => {
                        CameraStats::count(&self.stats.corrupt);
                        return Some(Err(CaptureError::Decode {
                            path: self.stats.name.clone(),
                            source,
                        }));
                    }
                },
            };
            return Some(Ok(CapturedFrame {
                source: self.stats.name.clone(),
                seq,
                captured_at: frame.captured_at,
                time_source: frame.clock,
                image,
                encoded,
            }));
        }
    }

    fn describe(&self) -> String {
        format!("camera {}", self.stats.name)
    }
}

/// Backoff between attempts to reach a camera: quick at first, so a
/// camera that comes back is streaming again within seconds; slower for
/// what only a person can fix (credentials, codec).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    /// A camera that comes back is tried again within this.
    pub const MAX: Duration = Duration::from_secs(1);
    /// For failures a retry alone will not mend.
    pub const MAX_CONFIG: Duration = Duration::from_secs(15);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The wait before the next attempt.
    pub fn next(&mut self, config_fault: bool) -> Duration {
        let cap = if config_fault {
            Self::MAX_CONFIG
        } else {
            Self::MAX
        };
        let wait = self.next.min(cap);
        self.next = (self.next * 2).min(cap);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleep `d` unless cancelled first; false when cancelled.
pub fn sleep_unless_cancelled(d: Duration, cancel: &CancellationToken) -> bool {
    let until = Instant::now() + d;
    while !cancel.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// Replace every appearance of the camera's address in `text` (an error
/// from a library that names its peer) with the camera's name.
pub fn redact(text: &str, url: &url::Url, name: &str) -> String {
    let mut out = text.replace(url.as_str(), name);
    if let Some(host) = url.host_str() {
        if let Some(port) = url.port_or_known_default() {
            out = out.replace(&format!("{host}:{port}"), name);
        }
        out = out.replace(host, name);
    }
    out
}

/// Why a session with a camera ended.
#[derive(Debug)]
pub struct Fault {
    /// Only a person can mend it (credentials, codec, the wrong kind of
    /// stream): retried, but slowly.
    pub config: bool,
    pub message: String,
}

impl Fault {
    pub fn net(message: impl Into<String>) -> Self {
        Fault {
            config: false,
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Fault {
            config: true,
            message: message.into(),
        }
    }
}

/// How long a camera has to answer when connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A session that streamed this long had recovered: its next failure
/// starts the backoff from the beginning.
const RECOVERED_AFTER: Duration = Duration::from_secs(10);

/// A receiving thread's life: connect, stream until the session fails,
/// report, wait, connect again; until `cancel`. `session` makes one
/// session, run on the thread's own single-threaded runtime, which ends
/// with why it ended. Logs name the camera, never its address.
pub fn receive<F>(
    stats: &CameraStats,
    url: &url::Url,
    cancel: &CancellationToken,
    mut session: impl FnMut() -> F,
) where
    F: std::future::Future<Output = Result<(), Fault>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            stats.set(Link::Down, Some(format!("cannot start its runtime: {e}")));
            tracing::error!(camera = %stats.name, error = %e, "camera receiver cannot start");
            return;
        }
    };
    let mut backoff = Backoff::new();
    let mut last_error: Option<String> = None;
    let mut attempt = 0u64;
    while !cancel.is_cancelled() {
        if attempt > 0 {
            CameraStats::count(&stats.reconnects);
        }
        attempt += 1;
        if stats.link() != Link::Down {
            stats.set(Link::Connecting, None);
        }
        let started = Instant::now();
        let received = stats.received.load(Ordering::Relaxed);
        let fault = rt.block_on(async {
            tokio::select! {
                r = session() => r.err(),
                _ = cancel.cancelled() => None,
            }
        });
        if cancel.is_cancelled() {
            break;
        }
        let fault = fault.unwrap_or_else(|| Fault::net("the camera ended the stream"));
        if started.elapsed() >= RECOVERED_AFTER && stats.received.load(Ordering::Relaxed) > received
        {
            backoff.reset();
        }
        let message = redact(&fault.message, url, &stats.name);
        if last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(camera = %stats.name, error = %message, "camera down; trying again");
            last_error = Some(message.clone());
        }
        stats.set(Link::Down, Some(message));
        if !sleep_unless_cancelled(backoff.next(fault.config), cancel) {
            break;
        }
    }
}

/// Called by a session at each frame: the first of a session marks the
/// camera streaming again.
pub fn streaming(stats: &CameraStats) {
    if stats.link() != Link::Streaming {
        stats.set(Link::Streaming, None);
        tracing::info!(camera = %stats.name, "camera streaming");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoded_picture_converts_to_the_colours_it_shows() {
        // 4×2, limited range: Y 16 is black, 235 white; U = V = 128 grey;
        // V high is red.
        let yuv = Yuv420 {
            width: 4,
            height: 2,
            y: vec![16, 16, 235, 235, 16, 16, 235, 235],
            u: vec![128, 128],
            v: vec![128, 240],
        };
        let rgb = yuv.to_rgb().expect("sizes agree");
        let px = |x: usize, y: usize| &rgb.as_raw()[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!(px(0, 0), [0, 0, 0]);
        assert_eq!(px(0, 1), [0, 0, 0]);
        let white_red = px(2, 0);
        assert!(white_red[0] == 255 && white_red[1] < 200, "{white_red:?}");
        let short = Yuv420 {
            y: vec![0; 3],
            ..yuv
        };
        assert!(
            short.to_rgb().is_none(),
            "a picture missing its data is refused"
        );
    }

    #[test]
    fn the_fast_conversion_agrees_with_the_bt601_formula_on_every_pixel() {
        // Odd sizes too: a half-width chroma column and row at the edges.
        for (w, h) in [(64, 34), (67, 33), (1920, 1080)] {
            let (cw, ch) = (usize::div_ceil(w, 2), usize::div_ceil(h, 2));
            // Values in the legal ranges (Y 16–235, U and V 16–240).
            let noise = |n: usize, seed: usize, span: usize| -> Vec<u8> {
                (0..n)
                    .map(|i| (16 + (i * 7919 + seed * 104_729) % span) as u8)
                    .collect()
            };
            let yuv = Yuv420 {
                width: w,
                height: h,
                y: noise(w * h, 1, 220),
                u: noise(cw * ch, 2, 225),
                v: noise(cw * ch, 3, 225),
            };
            let rgb = yuv.to_rgb().expect("sizes agree");
            let mut worst = 0;
            for row in 0..h {
                for x in 0..w {
                    let yy = 298 * (i32::from(yuv.y[row * w + x]) - 16);
                    let d = i32::from(yuv.u[(row / 2) * cw + x / 2]) - 128;
                    let e = i32::from(yuv.v[(row / 2) * cw + x / 2]) - 128;
                    let want = [
                        (yy + 409 * e + 128) >> 8,
                        (yy - 100 * d - 208 * e + 128) >> 8,
                        (yy + 516 * d + 128) >> 8,
                    ];
                    let got = &rgb.as_raw()[(row * w + x) * 3..(row * w + x) * 3 + 3];
                    for (g, want) in got.iter().zip(want) {
                        let off = (i32::from(*g) - want.clamp(0, 255)).abs();
                        worst = worst.max(off);
                    }
                }
            }
            assert!(worst <= 3, "{w}x{h}: a channel off by {worst}");
        }
    }

    #[test]
    fn the_newest_frame_replaces_an_untaken_one_and_counts_it_dropped() {
        let stats = CameraStats::new("c", "rtsp");
        let latest = Latest::default();
        let frame = |n: u8| LiveFrame {
            payload: Payload::Jpeg(vec![n]),
            captured_at: SystemTime::now(),
            clock: FrameClock::SystemClock,
        };
        latest.put(frame(1), &stats);
        latest.put(frame(2), &stats);
        latest.put(frame(3), &stats);
        let got = latest.take(Duration::from_millis(10)).expect("a frame");
        assert!(matches!(got.payload, Payload::Jpeg(ref b) if b == &[3]));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert!(latest.take(Duration::from_millis(10)).is_none());
    }
}
