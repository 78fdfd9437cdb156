//! CapturedFrame sources for the edge: where pictures come from before recognition.
//!
//! - [`ImageReplay`]: image files and folders (JPEG, PNG, BMP), replayed in
//!   capture-time order — EXIF `DateTimeOriginal` when the file has one,
//!   else the file's modification time, then the name. A file that cannot
//!   be read or decoded yields an error for that frame and the replay goes
//!   on with the next one.
//! - `camera::Camera` (cargo feature `camera`, Linux UVC/V4L2 through
//!   `nokhwa`; building it needs `libclang-dev`): live frames; a camera that
//!   fails is reopened with backoff by `camera::Camera::next_frame`.
//! - [`live`]: the cameras of `[[capture.cameras]]` — IP cameras over RTSP
//!   (H.264, decoded in-process by OpenH264) and Motion-JPEG over HTTP(S) —
//!   each received on its own thread, the newest frame taken.
//! - [`MjpegFile`]: Motion-JPEG video as a raw stream of JPEG frames
//!   (`.mjpeg`/`.mjpg`, what many IP cameras record and what
//!   `ffmpeg -i in.mp4 -c:v mjpeg -f mjpeg out.mjpeg` writes), at a frame
//!   rate the caller gives. Other video files: serve them as a camera, or
//!   extract frames (`ffmpeg -i in.mp4 -qscale:v 2 frames/%06d.jpg`) and
//!   replay the folder.
//!
//! A [`Source`] yields `Option<Result<CapturedFrame, CaptureError>>`: `None` is the
//! end of the stream, `Some(Err(_))` a frame lost (log it and continue).

#[cfg(feature = "camera")]
pub mod camera;
pub mod clock;
pub mod gps;
pub mod live;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::recognise::exif;
use crate::recognise::image::{decode, DecodeError, RgbImage};

/// Where a frame's capture time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClock {
    /// The photo's own EXIF capture time.
    Exif,
    /// The file's modification time.
    FileTime,
    /// The system clock when the frame arrived (live cameras).
    SystemClock,
    /// The camera's own clock, from its RTCP sender reports.
    CameraClock,
}

impl FrameClock {
    /// As a read records it (`alpr_shared::types::FrameClock::as_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            FrameClock::Exif => "exif",
            FrameClock::FileTime => "file-time",
            FrameClock::SystemClock => "system-clock",
            FrameClock::CameraClock => "camera-clock",
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// Which source produced it (a path or a device name).
    pub source: String,
    /// Position in its stream, from 0.
    pub seq: u64,
    pub captured_at: SystemTime,
    pub time_source: FrameClock,
    pub image: RgbImage,
    /// The encoded bytes as captured (the JPEG for the overview blob), when
    /// the source had them.
    pub encoded: Option<Vec<u8>>,
}

/// A frame that could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Decode { path: String, source: DecodeError },
    #[error("camera {device}: {message}")]
    Camera { device: String, message: String },
}

impl CaptureError {
    /// The error without the file or device it concerns (what a log line
    /// may say: a path may name a place or a person).
    pub fn cause(&self) -> String {
        match self {
            CaptureError::Io { source, .. } => source.to_string(),
            CaptureError::Decode { source, .. } => source.to_string(),
            CaptureError::Camera { message, .. } => format!("camera: {message}"),
        }
    }
}

/// A stream of frames.
pub trait Source {
    /// The next frame; `None` at the end of the stream.
    fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>>;
    /// For logs.
    fn describe(&self) -> String;
}

/// Image files replayed in capture-time order.
#[derive(Debug)]
pub struct ImageReplay {
    files: Vec<(SystemTime, FrameClock, PathBuf)>,
    next: usize,
    label: String,
}

fn is_image(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png" | "bmp"))
}

/// How many bytes of a file we read to find its EXIF capture time.
const EXIF_PROBE: u64 = 256 * 1024;

/// A photo's capture time and where it came from: its EXIF
/// `DateTimeOriginal`, else the file's modification time.
pub fn capture_time(path: &Path) -> (SystemTime, FrameClock) {
    use std::io::Read;
    let exif_time = std::fs::File::open(path).ok().and_then(|f| {
        let mut head = Vec::new();
        f.take(EXIF_PROBE).read_to_end(&mut head).ok()?;
        let tiff = exif::jpeg_exif(&head)?;
        let secs = exif::parse_time(&exif::capture_time(tiff)?)?;
        UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
    });
    if let Some(t) = exif_time {
        return (t, FrameClock::Exif);
    }
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    (mtime, FrameClock::FileTime)
}

impl ImageReplay {
    /// Files and folders (not recursive) of images. Errors only if a named
    /// path does not exist or a folder cannot be listed.
    pub fn open(paths: &[PathBuf]) -> Result<Self, CaptureError> {
        let mut files = Vec::new();
        for p in paths {
            let io = |source| CaptureError::Io {
                path: p.display().to_string(),
                source,
            };
            let meta = std::fs::metadata(p).map_err(io)?;
            if meta.is_dir() {
                for e in std::fs::read_dir(p).map_err(io)? {
                    let path = e.map_err(io)?.path();
                    if path.is_file() && is_image(&path) {
                        files.push(path);
                    }
                }
            } else {
                files.push(p.clone());
            }
        }
        let mut files: Vec<(SystemTime, FrameClock, PathBuf)> = files
            .into_iter()
            .map(|p| {
                let (t, s) = capture_time(&p);
                (t, s, p)
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        let label = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            files,
            next: 0,
            label,
        })
    }

    /// Number of files in the replay.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Pass over the next `n` files without reading them (a restarted node
    /// resuming its replay).
    pub fn skip(&mut self, n: usize) {
        self.next = self.next.saturating_add(n).min(self.files.len());
    }

    /// The files in replay order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(_, _, p)| p.as_path())
    }
}

impl Source for ImageReplay {
    fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>> {
        let (t, ts, path) = self.files.get(self.next)?.clone();
        let seq = self.next as u64;
        self.next += 1;
        let shown = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(source) => {
                return Some(Err(CaptureError::Io {
                    path: shown,
                    source,
                }))
            }
        };
        let image = match decode(&bytes) {
            Ok(i) => i,
            Err(source) => {
                return Some(Err(CaptureError::Decode {
                    path: shown,
                    source,
                }))
            }
        };
        let is_jpeg = bytes.starts_with(&[0xFF, 0xD8]);
        Some(Ok(CapturedFrame {
            source: shown,
            seq,
            captured_at: t,
            time_source: ts,
            image,
            encoded: is_jpeg.then_some(bytes),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "image replay of {} ({} files)",
            self.label,
            self.files.len()
        )
    }
}

/// A Motion-JPEG file: JPEG frames back to back. The file is read whole
/// (bounded by [`MjpegFile::MAX_BYTES`]); frames are split without decoding
/// and decoded one at a time. CapturedFrame `n` is stamped `start + n / fps`, where
/// `start` is the file's modification time.
#[derive(Debug)]
pub struct MjpegFile {
    path: PathBuf,
    data: Vec<u8>,
    pos: usize,
    seq: u64,
    start: SystemTime,
    frame_interval: Duration,
}

impl MjpegFile {
    /// Largest file read (2 GiB).
    pub const MAX_BYTES: u64 = 2 << 30;

    pub fn open(path: &Path, fps: f64) -> Result<Self, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > Self::MAX_BYTES {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "file larger than 2 GiB",
            )));
        }
        let data = std::fs::read(path).map_err(io)?;
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            25.0
        };
        Ok(Self {
            path: path.to_path_buf(),
            data,
            pos: 0,
            seq: 0,
            start: meta.modified().unwrap_or(UNIX_EPOCH),
            frame_interval: Duration::from_secs_f64(1.0 / fps),
        })
    }
}

/// The length of the JPEG at the start of `b` (SOI through EOI), walking
/// marker segments and entropy-coded data so that thumbnails inside APP
/// segments do not end the frame early. `None` if `b` does not start with a
/// complete JPEG.
pub fn jpeg_len(b: &[u8]) -> Option<usize> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2usize;
    loop {
        // At a marker (skip fill bytes).
        while *b.get(i)? == 0xFF && *b.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *b.get(i)? != 0xFF {
            return None;
        }
        let m = *b.get(i + 1)?;
        match m {
            0xD9 => return Some(i + 2),
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let len = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]) as usize;
                if len < 2 {
                    return None;
                }
                i += 2 + len;
                if m == 0xDA {
                    // Entropy-coded data runs to the next marker that is not
                    // a stuffed 0xFF00 or a restart marker.
                    loop {
                        let j = i + b.get(i..)?.iter().position(|&x| x == 0xFF)?;
                        let n = *b.get(j + 1)?;
                        if n == 0x00 || (0xD0..=0xD7).contains(&n) || n == 0xFF {
                            i = j + if n == 0xFF { 1 } else { 2 };
                            continue;
                        }
                        i = j;
                        break;
                    }
                }
            }
        }
    }
}

impl Source for MjpegFile {
    fn next_frame(&mut self) -> Option<Result<CapturedFrame, CaptureError>> {
        // Find the next start of image.
        let rest = self.data.get(self.pos..)?;
        let soi = rest.windows(2).position(|w| w == [0xFF, 0xD8])?;
        let start = self.pos + soi;
        let shown = format!("{}#{}", self.path.display(), self.seq);
        let seq = self.seq;
        self.seq += 1;
        let captured_at = self.start + self.frame_interval * (seq as u32);
        let Some(len) = jpeg_len(&self.data[start..]) else {
            // A truncated or damaged last frame: report it and stop there.
            self.pos = self.data.len();
            return Some(Err(CaptureError::Decode {
                path: shown,
                source: DecodeError::Jpeg("truncated frame".into()),
            }));
        };
        self.pos = start + len;
        let bytes = &self.data[start..start + len];
        Some(match decode(bytes) {
            Ok(image) => Ok(CapturedFrame {
                source: shown,
                seq,
                captured_at,
                time_source: FrameClock::FileTime,
                image,
                encoded: Some(bytes.to_vec()),
            }),
            Err(source) => Err(CaptureError::Decode {
                path: shown,
                source,
            }),
        })
    }

    fn describe(&self) -> String {
        format!("MJPEG file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_frames_split_and_a_bad_frame_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clip.mjpeg");
        let a = jpeg(16, 8);
        let b = jpeg(8, 16);
        assert_eq!(jpeg_len(&a), Some(a.len()));
        // A frame whose structure is whole but whose header is not (height 0).
        let mut bad = jpeg(8, 8);
        let sof = bad
            .windows(2)
            .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
            .expect("SOF marker");
        bad[sof + 5] = 0;
        bad[sof + 6] = 0;
        assert_eq!(jpeg_len(&bad), Some(bad.len()));
        let mut clip = Vec::new();
        for f in [&a, &bad, &b] {
            clip.extend_from_slice(f);
        }
        clip.extend_from_slice(&a[..a.len() / 2]); // truncated tail
        std::fs::write(&path, &clip).expect("write");
        let mut src = MjpegFile::open(&path, 10.0).expect("open");
        let mut got = Vec::new();
        while let Some(f) = src.next_frame() {
            got.push(f.map(|f| (f.seq, f.image.width(), f.captured_at)));
        }
        assert_eq!(got.len(), 4, "{got:?}");
        let first = got[0].as_ref().expect("frame 0");
        assert_eq!((first.0, first.1), (0, 16));
        let third = got[2].as_ref().expect("frame 2");
        assert_eq!((third.0, third.1), (2, 8));
        assert_eq!(
            third.2.duration_since(first.2).ok(),
            Some(Duration::from_millis(200))
        );
        assert!(got[3].is_err());
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_raw(w, h, vec![128; (w * h * 3) as usize]).expect("size");
        img.encode_jpeg(80).expect("encode")
    }

    #[test]
    fn replays_in_time_order_and_survives_a_corrupt_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("b.jpg"), jpeg(8, 8)).expect("write");
        std::fs::write(d.join("a.jpg"), b"\xFF\xD8 not really").expect("write");
        std::fs::write(d.join("c.png"), b"\x89PNG broken").expect("write");
        std::fs::write(d.join("notes.txt"), b"ignored").expect("write");
        // File times: c oldest, then a, then b.
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (name, off) in [("c.png", 0), ("a.jpg", 10), ("b.jpg", 20)] {
            let f = std::fs::File::options()
                .write(true)
                .open(d.join(name))
                .expect("open");
            f.set_modified(base + Duration::from_secs(off))
                .expect("mtime");
        }
        let mut r = ImageReplay::open(&[d.to_path_buf()]).expect("open");
        assert_eq!(r.len(), 3);
        let names: Vec<String> = r
            .paths()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["c.png", "a.jpg", "b.jpg"]);
        let mut ok = 0;
        let mut bad = 0;
        while let Some(f) = r.next_frame() {
            match f {
                Ok(f) => {
                    ok += 1;
                    assert_eq!(f.seq, 2);
                    assert_eq!(f.time_source, FrameClock::FileTime);
                    assert!(f.encoded.is_some());
                    assert_eq!(f.image.width(), 8);
                }
                Err(e) => {
                    bad += 1;
                    assert!(matches!(e, CaptureError::Decode { .. }), "{e}");
                }
            }
        }
        assert_eq!((ok, bad), (1, 2));
    }

    #[test]
    fn a_missing_path_is_a_clear_error() {
        let e = ImageReplay::open(&[PathBuf::from("/no/such/folder")]).expect_err("missing");
        assert!(e.to_string().contains("/no/such/folder"));
    }
}
