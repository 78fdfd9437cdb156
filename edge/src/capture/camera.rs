//! Live UVC/V4L2 cameras through `nokhwa` (cargo feature `camera`).
//!
//! nokhwa's camera handle cannot move between threads, so a [`Camera`] owns
//! a capture thread that opens the device, grabs frames into a bounded
//! channel (two frames: a slow consumer drops none silently, the camera
//! waits) and, when the camera fails (unplugged, busy, a bad frame), reports
//! the error once and reopens it after a backoff that doubles up to 30 s.
//! The stream never ends on its own; dropping the [`Camera`] stops the
//! thread at its next frame.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, SystemTime};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};

use super::{CaptureError, CapturedFrame, FrameClock, Source};
use crate::recognise::image::RgbImage;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Grab = Result<(RgbImage, Option<Vec<u8>>, SystemTime), String>;

/// A V4L2 camera by index (`/dev/videoN`).
#[derive(Debug)]
pub struct Camera {
    index: u32,
    frames: Receiver<Grab>,
    seq: u64,
}

impl Camera {
    /// Starts the capture thread; the device is opened there.
    pub fn new(index: u32) -> Self {
        let (tx, rx) = sync_channel(2);
        let spawned = std::thread::Builder::new()
            .name(format!("camera-{index}"))
            .spawn(move || capture_loop(index, &tx));
        if let Err(e) = spawned {
            // Without the thread the stream simply ends.
            tracing::error!(camera = index, "cannot start the capture thread: {e}");
        }
        Self {
            index,
            frames: rx,
            seq: 0,
        }
    }
}

fn open(index: u32) -> Result<nokhwa::Camera, String> {
    let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
    let mut cam =
        nokhwa::Camera::new(CameraIndex::Index(index), format).map_err(|e| e.to_string())?;
    cam.open_stream().map_err(|e| e.to_string())?;
    Ok(cam)
}

fn grab(cam: &mut nokhwa::Camera) -> Grab {
    let buffer = cam.frame().map_err(|e| e.to_string())?;
    let captured_at = SystemTime::now();
    let decoded = buffer
        .decode_image::<RgbFormat>()
        .map_err(|e| e.to_string())?;
    let (w, h) = (decoded.width(), decoded.height());
    let image = RgbImage::from_raw(w, h, decoded.into_raw())
        .ok_or_else(|| format!("frame of {w}x{h} has the wrong size"))?;
    let raw = buffer.buffer();
    let encoded = raw.starts_with(&[0xFF, 0xD8]).then(|| raw.to_vec());
    Ok((image, encoded, captured_at))
}

fn capture_loop(index: u32, tx: &SyncSender<Grab>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut cam = match open(index) {
            Ok(c) => c,
            Err(e) => {
                if tx.send(Err(e)).is_err() {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let g = grab(&mut cam);
            let failed = g.is_err();
            if tx.send(g).is_err() {
                return;
            }
            if failed {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                break; // reopen
            }
            backoff = Duration::from_millis(500);
        }
    }
}

impl Source for Camera {
    fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>> {
        let device = format!("/dev/video{}", self.index);
        let g = self.frames.recv().ok()?;
        Some(match g {
            Ok((image, encoded, captured_at)) => {
                let seq = self.seq;
                self.seq += 1;
                Ok(CapturedFrame {
                    source: device,
                    seq,
                    captured_at,
                    time_source: FrameClock::SystemClock,
                    image,
                    encoded,
                })
            }
            Err(message) => Err(CaptureError::Camera { device, message }),
        })
    }

    fn describe(&self) -> String {
        format!("V4L2 camera /dev/video{}", self.index)
    }
}
