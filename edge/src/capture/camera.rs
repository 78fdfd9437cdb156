//! Live UVC/V4L2 cameras through `nokhwa` (cargo feature `camera`).
//!
//! A camera that fails (unplugged, busy, a bad frame) is reported once per
//! failure as an error frame, then reopened on the next call after a backoff
//! that doubles up to 30 s; the stream never ends on its own.

use std::time::{Duration, Instant, SystemTime};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};

use super::{CaptureError, Frame, Source, TimeSource};
use crate::recognise::image::RgbImage;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A V4L2 camera by index (`/dev/videoN`).
pub struct Camera {
    index: u32,
    camera: Option<nokhwa::Camera>,
    seq: u64,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("index", &self.index)
            .field("open", &self.camera.is_some())
            .finish()
    }
}

impl Camera {
    /// Does not touch the device yet: it is opened on the first frame.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            camera: None,
            seq: 0,
            backoff: Duration::from_millis(500),
            retry_at: None,
        }
    }

    fn error(&self, message: impl ToString) -> CaptureError {
        CaptureError::Camera {
            device: format!("/dev/video{}", self.index),
            message: message.to_string(),
        }
    }

    fn open(&mut self) -> Result<(), CaptureError> {
        let format =
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
        let mut cam = nokhwa::Camera::new(CameraIndex::Index(self.index), format)
            .map_err(|e| self.error(e))?;
        cam.open_stream().map_err(|e| self.error(e))?;
        self.camera = Some(cam);
        Ok(())
    }

    fn fail(&mut self, e: CaptureError) -> Option<Result<Frame, CaptureError>> {
        self.camera = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Some(Err(e))
    }
}

impl Source for Camera {
    fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
        if let Some(at) = self.retry_at.take() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        if self.camera.is_none() {
            if let Err(e) = self.open() {
                return self.fail(e);
            }
        }
        let cam = self.camera.as_mut()?;
        let buffer = match cam.frame() {
            Ok(b) => b,
            Err(e) => {
                let e = self.error(e);
                return self.fail(e);
            }
        };
        let captured_at = SystemTime::now();
        let decoded = match buffer.decode_image::<RgbFormat>() {
            Ok(d) => d,
            Err(e) => {
                let e = self.error(e);
                return self.fail(e);
            }
        };
        let (w, h) = (decoded.width(), decoded.height());
        let Some(image) = RgbImage::from_raw(w, h, decoded.into_raw()) else {
            let e = self.error(format!("frame of {w}x{h} has the wrong size"));
            return self.fail(e);
        };
        let raw = buffer.buffer();
        let encoded = raw.starts_with(&[0xFF, 0xD8]).then(|| raw.to_vec());
        self.backoff = Duration::from_millis(500);
        let seq = self.seq;
        self.seq += 1;
        Some(Ok(Frame {
            source: format!("/dev/video{}", self.index),
            seq,
            captured_at,
            time_source: TimeSource::SystemClock,
            image,
            encoded,
        }))
    }

    fn describe(&self) -> String {
        format!("V4L2 camera /dev/video{}", self.index)
    }
}
