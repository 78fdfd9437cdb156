//! IP cameras over RTSP: H.264 received by `retina` (TCP interleaved by
//! default, UDP where asked; basic and digest authentication) and decoded
//! in-process by OpenH264 (built from the BSD source the `openh264` crate
//! carries). A camera that sends H.265 or another codec is refused with a
//! message that says what to change.
//!
//! A frame's time is the camera's when its RTCP sender reports map the
//! stream's RTP clock to wall-clock (NTP) time and that time is within
//! [`MAX_CLOCK_SKEW`] of the edge's; else the edge's clock when the frame
//! arrived. The frame records which.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat};
use tokio_util::sync::CancellationToken;

use super::credentials::Credentials;
use super::{streaming, CameraStats, Fault, LiveFrame, Payload, CONNECT_TIMEOUT};
use super::{Latest, LiveCamera, Yuv420};
use crate::capture::FrameClock;

/// The camera's clock is believed only this close to the edge's.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);
/// Behind the camera by more than this, pictures nothing refers to are
/// not decoded.
const CATCH_UP: Duration = Duration::from_millis(300);
/// Behind by more than this, the session starts again at the live edge.
const MAX_LAG: Duration = Duration::from_secs(3);

/// How far decoding runs behind the camera: the stream's own clock
/// against the edge's, from the session's first frame.
#[derive(Debug, Default)]
struct Lag {
    start: Option<(std::time::Instant, i64)>,
}

impl Lag {
    fn update(&mut self, ts: retina::Timestamp) -> Duration {
        let now = std::time::Instant::now();
        let rate = i64::from(ts.clock_rate().get());
        let (t0, ts0) = *self.start.get_or_insert((now, ts.timestamp()));
        let stream = Duration::from_millis(
            u64::try_from((ts.timestamp() - ts0).max(0) * 1000 / rate.max(1)).unwrap_or(0),
        );
        let wall = now.duration_since(t0);
        if stream > wall {
            // The stream ran ahead (a burst at the start): take this frame
            // as the new reference.
            self.start = Some((now, ts.timestamp()));
            return Duration::ZERO;
        }
        wall - stream
    }
}

/// Seconds between 1900 (NTP's epoch) and 1970.
const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

/// What a receiving thread needs to reach one RTSP camera.
#[derive(Debug, Clone)]
pub struct RtspCamera {
    pub name: String,
    pub url: url::Url,
    pub udp: bool,
    pub credentials: Option<Credentials>,
    /// No frame for this long ends the session.
    pub stall: Duration,
}

/// Start the camera's receiving thread.
pub fn open(cam: RtspCamera, cancel: CancellationToken) -> std::io::Result<LiveCamera> {
    let stats = CameraStats::new(&cam.name, "rtsp");
    let latest = Arc::new(Latest::default());
    let (s, l, c) = (stats.clone(), latest.clone(), cancel.clone());
    let thread = std::thread::Builder::new()
        .name(format!("rtsp-{}", cam.name))
        .spawn(move || super::receive(&s, &cam.url, &c, || session(&cam, &l, &s)))?;
    Ok(LiveCamera::new(stats, latest, cancel, thread))
}

/// One session: DESCRIBE, SETUP the video stream, PLAY, then decode each
/// frame until the stream fails, stalls or freezes.
async fn session(cam: &RtspCamera, latest: &Latest, stats: &CameraStats) -> Result<(), Fault> {
    let creds = cam
        .credentials
        .as_ref()
        .map(|c| retina::client::Credentials {
            username: c.username.clone(),
            password: c.password.to_string(),
        });
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent("alpr-edge".to_owned());
    let mut described =
        tokio::time::timeout(CONNECT_TIMEOUT, Session::describe(cam.url.clone(), options))
            .await
            .map_err(|_| Fault::net("no answer within 5 s"))?
            .map_err(refused)?;
    let (index, codec) = described
        .streams()
        .iter()
        .enumerate()
        .find(|(_, s)| s.media() == "video")
        .map(|(i, s)| (i, s.encoding_name().to_ascii_lowercase()))
        .ok_or_else(|| Fault::config("the camera offers no video stream"))?;
    if codec != "h264" {
        return Err(Fault::config(format!(
            "camera {} sends {} video and this edge decodes H.264 only: set the camera's \
             video encoding to H.264 (in the camera's own settings), or point its `url` in \
             [[capture.cameras]] at an H.264 stream",
            cam.name,
            codec_name(&codec)
        )));
    }
    let transport = if cam.udp {
        Transport::Udp(Default::default())
    } else {
        Transport::Tcp(Default::default())
    };
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        described.setup(
            index,
            SetupOptions::default()
                .transport(transport)
                .frame_format(FrameFormat::SIMPLE),
        ),
    )
    .await
    .map_err(|_| Fault::net("no answer to SETUP within 5 s"))?
    .map_err(refused)?;
    let playing = tokio::time::timeout(CONNECT_TIMEOUT, described.play(PlayOptions::default()))
        .await
        .map_err(|_| Fault::net("no answer to PLAY within 5 s"))?
        .map_err(refused)?;
    let mut frames = playing.demuxed().map_err(refused)?;
    let mut decoder = Decoder::with_api_config(
        OpenH264API::from_source(),
        DecoderConfig::new().flush_after_decode(Flush::NoFlush),
    )
    .map_err(|e| Fault::net(format!("cannot start the H.264 decoder: {e}")))?;
    let mut lag = Lag::default();
    // (RTP time, seconds since 1970) of the last sender report.
    let mut report: Option<(retina::Timestamp, f64)> = None;
    loop {
        let item = tokio::time::timeout(cam.stall, frames.next())
            .await
            .map_err(|_| Fault::net(format!("no frame for {} s", cam.stall.as_secs())))?;
        match item {
            None => return Err(Fault::net("the camera ended the stream")),
            Some(Err(e)) => return Err(refused(e)),
            Some(Ok(CodecItem::VideoFrame(f))) => {
                stats.frame_arrived();
                streaming(stats);
                if stats
                    .frozen
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    return Err(Fault::net("the picture is frozen"));
                }
                let (captured_at, clock) = frame_time(f.timestamp(), report, stats);
                // Behind the camera (a slow machine): pictures no other
                // picture refers to are skipped until decoding catches up;
                // far behind, the session starts again from the live edge.
                let behind = lag.update(f.timestamp());
                if behind > MAX_LAG {
                    return Err(Fault::net(format!(
                        "decoding fell {:.1} s behind the camera",
                        behind.as_secs_f64()
                    )));
                }
                // A picture no other refers to is not decoded while the
                // recogniser is busy with an untaken one: only the newest
                // frame is ever looked at, and a reference picture comes
                // along within a frame or two.
                if f.is_disposable() && (behind > CATCH_UP || latest.waiting()) {
                    CameraStats::count(&stats.dropped);
                    continue;
                }
                match decoder.decode(f.data()) {
                    Ok(Some(yuv)) => {
                        let Some(picture) = Yuv420::copy_from(
                            yuv.dimensions(),
                            (yuv.y(), yuv.u(), yuv.v()),
                            yuv.strides(),
                        ) else {
                            CameraStats::count(&stats.corrupt);
                            continue;
                        };
                        CameraStats::count(&stats.decoded);
                        latest.put(
                            LiveFrame {
                                payload: Payload::Yuv(picture),
                                captured_at,
                                clock,
                            },
                            stats,
                        );
                    }
                    // The decoder holds the picture back (reordering).
                    Ok(None) => {}
                    // Corrupt or missing data: this frame (and what refers
                    // to it, until the next key frame) is lost, not the
                    // stream.
                    Err(_) => CameraStats::count(&stats.corrupt),
                }
            }
            Some(Ok(CodecItem::Rtcp(p))) => {
                if let Some(rtp) = p.rtp_timestamp() {
                    for pkt in p.pkts() {
                        if let Ok(Some(sr)) = pkt.as_sender_report() {
                            report = Some((rtp, ntp_to_unix(sr.ntp_timestamp().0)));
                        }
                    }
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The frame's wall-clock time: the camera's, through its last sender
/// report, when that is near the edge's clock; else the edge's now.
fn frame_time(
    ts: retina::Timestamp,
    report: Option<(retina::Timestamp, f64)>,
    stats: &CameraStats,
) -> (SystemTime, FrameClock) {
    let now = SystemTime::now();
    let Some((at, unix)) = report else {
        return (now, FrameClock::SystemClock);
    };
    let rate = f64::from(ts.clock_rate().get());
    let secs = unix + (ts.timestamp() - at.timestamp()) as f64 / rate;
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    if !secs.is_finite() || (secs - now_secs).abs() > MAX_CLOCK_SKEW.as_secs_f64() || secs < 0.0 {
        CameraStats::count(&stats.clock_refused);
        tracing::debug!(camera = %stats.name, skew = secs - now_secs, "camera clock refused");
        return (now, FrameClock::SystemClock);
    }
    (
        UNIX_EPOCH + Duration::from_secs_f64(secs),
        FrameClock::CameraClock,
    )
}

/// An NTP timestamp (32.32 fixed point since 1900) as seconds since 1970.
fn ntp_to_unix(ntp: u64) -> f64 {
    (ntp >> 32) as f64 - NTP_UNIX_OFFSET + (ntp & 0xFFFF_FFFF) as f64 / 4_294_967_296.0
}

fn codec_name(encoding: &str) -> String {
    match encoding {
        "h265" => "H.265 (HEVC)".into(),
        "jpeg" => "Motion-JPEG".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// A library error as a fault: refused credentials are the operator's to
/// mend.
fn refused(e: retina::Error) -> Fault {
    let text = e.to_string();
    if text.contains("401") || text.contains("Unauthorized") {
        Fault::config("the camera refused the credentials (401 Unauthorized): check credentials_file or credentials_env")
    } else {
        Fault::net(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_time_converts_to_unix_time() {
        // 2026-01-01T00:00:00Z = 1767225600 s since 1970, plus half a second.
        let ntp = ((1_767_225_600u64 + 2_208_988_800) << 32) | 0x8000_0000;
        assert!((ntp_to_unix(ntp) - 1_767_225_600.5).abs() < 1e-6);
    }
}
