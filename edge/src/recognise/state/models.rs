//! The PP-OCRv4 model files the state reader needs, pinned by SHA-256, and
//! where they are found. `scripts/install-ppocr.sh` (run by
//! `scripts/setup.sh`) takes them from the `rapidocr-onnxruntime` 1.4.4 wheel
//! on PyPI into `.runtime/ppocr/`. Looked for, in order:
//!
//! 1. the folder named by `ALPR_PPOCR` if set — used as given, no fallback;
//! 2. `.runtime/ppocr/` in the folder of the running executable or any
//!    folder above it, then in the current directory or any folder above it
//!    (as the ONNX Runtime library is found, [`crate::recognise::runtime`]).
//!
//! Nothing is downloaded at run time.

use std::path::PathBuf;

use crate::recognise::models::ModelFile;
use crate::recognise::runtime::find_in_runtime;

/// The environment variable naming the PP-OCR models folder.
pub const PPOCR_ENV: &str = "ALPR_PPOCR";

/// Text detection, PP-OCRv4 (DB, mobile).
pub const TEXT_DETECTOR: ModelFile = ModelFile {
    file: "ch_PP-OCRv4_det_infer.onnx",
    name: "ppocr-v4-det",
    sha256: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
};

/// Text recognition, PP-OCRv4 (SVTR-LCNet, mobile); its character list is
/// in its ONNX metadata.
pub const TEXT_RECOGNISER: ModelFile = ModelFile {
    file: "ch_PP-OCRv4_rec_infer.onnx",
    name: "ppocr-v4-rec",
    sha256: "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
};

/// The PP-OCR models folder could not be found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocateError {
    #[error(
        "PP-OCR models not found: run `bash scripts/install-ppocr.sh` in the repository, or set \
         {PPOCR_ENV} to a folder holding {} and {} (looked in: {})",
        TEXT_DETECTOR.file, TEXT_RECOGNISER.file, .searched.join(", ")
    )]
    NotFound { searched: Vec<String> },
    #[error("{PPOCR_ENV} is {path}, which is not a folder")]
    EnvPathMissing { path: String },
}

/// The folder the PP-OCR models are loaded from (not yet checked).
pub fn locate() -> Result<PathBuf, LocateError> {
    if let Some(p) = std::env::var_os(PPOCR_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_dir() {
            return Ok(p);
        }
        return Err(LocateError::EnvPathMissing {
            path: p.display().to_string(),
        });
    }
    let mut searched = vec![format!("{PPOCR_ENV} (unset)")];
    find_in_runtime(
        "ppocr",
        |dir| {
            dir.join(TEXT_RECOGNISER.file)
                .is_file()
                .then(|| dir.to_path_buf())
        },
        &mut searched,
    )
    .ok_or(LocateError::NotFound { searched })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognise::models::{load_verified, ModelError};

    #[test]
    fn ids_and_wrong_files_are_named() {
        assert_eq!(TEXT_RECOGNISER.id(), "ppocr-v4-rec@48fc40f2");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TEXT_DETECTOR.file), b"altered").expect("write");
        let e = load_verified(dir.path(), &[TEXT_DETECTOR, TEXT_RECOGNISER]).expect_err("missing");
        assert!(e.to_string().contains(TEXT_RECOGNISER.file), "{e}");
        let e = load_verified(dir.path(), &[TEXT_DETECTOR]).expect_err("altered");
        assert!(matches!(e, ModelError::WrongHash { .. }), "{e}");
        assert!(e.to_string().contains(TEXT_DETECTOR.file), "{e}");
    }

    /// The install script checks what it extracted against the same hashes
    /// the edge pins, so a model that changes is caught at install time.
    #[test]
    fn the_install_script_pins_the_same_hashes() {
        let script = include_str!("../../../../scripts/install-ppocr.sh");
        for m in [TEXT_DETECTOR, TEXT_RECOGNISER] {
            assert!(script.contains(m.file), "{}", m.file);
            assert!(script.contains(m.sha256), "{} {}", m.file, m.sha256);
        }
    }
}
