//! The frames a vehicle pass may still choose as its best, kept until the
//! pass closes. A picture is encoded to JPEG when a read takes it, once
//! per read rather than once per frame with a plate in it (at 1080p that
//! encoding was a tenth of a camera's CPU); past a few pictures the
//! oldest are encoded early, so memory stays bounded.

use std::collections::VecDeque;
use std::time::Duration;

use crate::capture::{CapturedFrame, FrameClock};
use crate::recognise::RgbImage;

/// Frames kept at most (an older best frame falls back to the newest).
const KEPT: usize = 64;

/// Pictures kept unencoded at most (a 1080p picture is 6 MB in RGB).
const RAW_KEPT: usize = 8;

/// JPEG quality of an overview the edge encodes itself.
const QUALITY: u8 = 85;

enum Picture {
    Jpeg(Vec<u8>),
    Raw(RgbImage),
}

struct Kept {
    at: Duration,
    clock: FrameClock,
    picture: Picture,
}

/// Overview frames for fused reads, by capture time.
#[derive(Default)]
pub struct Overviews {
    kept: VecDeque<Kept>,
}

impl Overviews {
    /// Keep a frame (captured at `at`) that a pass may choose.
    pub fn keep(&mut self, at: Duration, frame: &CapturedFrame) -> anyhow::Result<()> {
        let picture = match &frame.encoded {
            Some(b) => Picture::Jpeg(b.clone()),
            None => Picture::Raw(frame.image.clone()),
        };
        self.kept.push_back(Kept {
            at,
            clock: frame.time_source,
            picture,
        });
        if self.kept.len() > KEPT {
            self.kept.pop_front();
        }
        let mut raw = self
            .kept
            .iter()
            .filter(|k| matches!(k.picture, Picture::Raw(_)))
            .count();
        for k in &mut self.kept {
            if raw <= RAW_KEPT {
                break;
            }
            if let Picture::Raw(image) = &k.picture {
                k.picture = Picture::Jpeg(encode(image)?);
                raw -= 1;
            }
        }
        Ok(())
    }

    /// Forget every frame but those at the times in `keep` (the frames
    /// the open passes may still choose).
    pub fn retain(&mut self, keep: &[Duration]) {
        self.kept.retain(|k| keep.contains(&k.at));
    }

    /// The overview of the frame captured at `at` and where its time came
    /// from; else the newest frame kept (time unknown); else nothing.
    pub fn overview(&self, at: Duration) -> anyhow::Result<(Option<FrameClock>, Vec<u8>)> {
        let found = self.kept.iter().find(|k| k.at == at);
        let Some(k) = found.or_else(|| self.kept.back()) else {
            return Ok((None, Vec::new()));
        };
        let jpeg = match &k.picture {
            Picture::Jpeg(b) => b.clone(),
            Picture::Raw(image) => encode(image)?,
        };
        Ok((found.map(|k| k.clock), jpeg))
    }

    #[cfg(test)]
    fn unencoded(&self) -> usize {
        self.kept
            .iter()
            .filter(|k| matches!(k.picture, Picture::Raw(_)))
            .count()
    }
}

/// The frame as JPEG: the bytes captured when the source had them.
pub fn jpeg_of(frame: &CapturedFrame) -> anyhow::Result<Vec<u8>> {
    match &frame.encoded {
        Some(b) => Ok(b.clone()),
        None => encode(&frame.image),
    }
}

fn encode(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    image
        .encode_jpeg(QUALITY)
        .map_err(|e| anyhow::anyhow!("encoding the overview: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(shade: u8) -> CapturedFrame {
        CapturedFrame {
            source: "test".into(),
            seq: 0,
            captured_at: SystemTime::UNIX_EPOCH,
            time_source: FrameClock::CameraClock,
            image: RgbImage::from_raw(16, 16, vec![shade; 16 * 16 * 3]).expect("16x16"),
            encoded: None,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_kept_frame_is_encoded_when_taken_and_memory_stays_bounded() {
        let mut o = Overviews::default();
        for i in 0..100u64 {
            o.keep(ms(i), &frame(i as u8)).expect("kept");
        }
        assert!(o.unencoded() <= RAW_KEPT);
        assert!(o.kept.len() <= KEPT);
        let (clock, jpeg) = o.overview(ms(99)).expect("encoded");
        assert_eq!(clock, Some(FrameClock::CameraClock));
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG");
        // An early-encoded frame is still there, as JPEG.
        let (_, old) = o.overview(ms(50)).expect("encoded");
        assert!(old.starts_with(&[0xFF, 0xD8]));
        // Forgotten: the newest stands in, its time unknown.
        o.retain(&[ms(60)]);
        assert_eq!(o.kept.len(), 1);
        let (clock, _) = o.overview(ms(70)).expect("newest");
        assert_eq!(clock, None);
    }
}
