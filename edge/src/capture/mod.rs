//! Frame sources for the edge: where pictures come from before recognition.
//!
//! - [`ImageReplay`]: image files and folders (JPEG, PNG, BMP), replayed in
//!   capture-time order — EXIF `DateTimeOriginal` when the file has one,
//!   else the file's modification time, then the name. A file that cannot
//!   be read or decoded yields an error for that frame and the replay goes
//!   on with the next one.
//! - `camera::Camera` (cargo feature `camera`, Linux UVC/V4L2 through
//!   `nokhwa`; building it needs `libclang-dev`): live frames; a camera that
//!   fails is reopened with backoff by [`camera::Camera::next_frame`].
//! - Video files are not supported: every well-kept Rust decoder for common
//!   video formats binds the system's FFmpeg libraries. Extract frames first
//!   (`ffmpeg -i in.mp4 -qscale:v 2 frames/%06d.jpg`) and replay the folder.
//!
//! A [`Source`] yields `Option<Result<Frame, CaptureError>>`: `None` is the
//! end of the stream, `Some(Err(_))` a frame lost (log it and continue).

#[cfg(feature = "camera")]
pub mod camera;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::recognise::exif;
use crate::recognise::image::{decode, DecodeError, RgbImage};

/// Where a frame's capture time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The photo's own EXIF capture time.
    Exif,
    /// The file's modification time.
    FileTime,
    /// The system clock when the frame arrived (live cameras).
    SystemClock,
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which source produced it (a path or a device name).
    pub source: String,
    /// Position in its stream, from 0.
    pub seq: u64,
    pub captured_at: SystemTime,
    pub time_source: TimeSource,
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

/// A stream of frames.
pub trait Source {
    /// The next frame; `None` at the end of the stream.
    fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>>;
    /// For logs.
    fn describe(&self) -> String;
}

/// Image files replayed in capture-time order.
#[derive(Debug)]
pub struct ImageReplay {
    files: Vec<(SystemTime, TimeSource, PathBuf)>,
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

fn capture_time(path: &Path) -> (SystemTime, TimeSource) {
    use std::io::Read;
    let exif_time = std::fs::File::open(path).ok().and_then(|f| {
        let mut head = Vec::new();
        f.take(EXIF_PROBE).read_to_end(&mut head).ok()?;
        let tiff = exif::jpeg_exif(&head)?;
        let secs = exif::parse_time(&exif::capture_time(tiff)?)?;
        UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
    });
    if let Some(t) = exif_time {
        return (t, TimeSource::Exif);
    }
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    (mtime, TimeSource::FileTime)
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
        let mut files: Vec<(SystemTime, TimeSource, PathBuf)> = files
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

    /// The files in replay order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(_, _, p)| p.as_path())
    }
}

impl Source for ImageReplay {
    fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
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
        Some(Ok(Frame {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                    assert_eq!(f.time_source, TimeSource::FileTime);
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
