//! The model files the recogniser needs, pinned by SHA-256, and how a models
//! directory is checked before anything is loaded from it.
//!
//! The OCR settings that fast-plate-ocr keeps in `*_plate_config.yaml`
//! (alphabet, slot count, input size, region list) are compiled in below for
//! exactly these pinned model files, so the YAML files are not needed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::runtime::RuntimeError;

/// One pinned model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// File name inside the models directory.
    pub file: &'static str,
    /// Short name used in model identifiers.
    pub name: &'static str,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: &'static str,
}

impl ModelFile {
    /// "name@first-8-hex-of-sha256", e.g. `yolo-v9-t-416@5a5eac89`: what a
    /// signed read records as the model version.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, &self.sha256[..8])
    }
}

/// Plate detector: YOLOv9-t, 416×416, NMS inside, int8.
pub const DETECTOR: ModelFile = ModelFile {
    file: "yolo-v9-t-416-license-plates-end2end1.onnx",
    name: "yolo-v9-t-416",
    sha256: "5a5eac89c5736f6e0d94ef2422defc8a1eed828b6ad1124d0128df4d47fc2b65",
};

/// Plate OCR, CCT-xs v2 (10 slots, with a region head).
pub const OCR_V2: ModelFile = ModelFile {
    file: "cct_xs_v2_global.onnx",
    name: "cct_xs_v2_global",
    sha256: "8031afb5fdc6b4d80462c9d542f1284ebd2cfddf5dbacd62609848d7e2855f44",
};

/// Plate OCR, CCT-xs v1 (9 slots, no region head).
pub const OCR_V1: ModelFile = ModelFile {
    file: "cct_xs_v1_global.onnx",
    name: "cct_xs_v1_global",
    sha256: "c1ae2ae031b10f8ab7ed6e3cdaf8d9c753477e299dbad3579c8f705a7d882134",
};

/// The OCR alphabet; the last symbol is the padding of short plates.
pub const ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_";
/// Index of the padding symbol in [`ALPHABET`].
pub const PAD: usize = 36;
/// OCR input size.
pub const OCR_W: u32 = 128;
pub const OCR_H: u32 = 64;
/// Detector input side.
pub const DET_SIDE: u32 = 416;

/// The region head of the v2 OCR, in output order.
pub const REGIONS: [&str; 66] = [
    "Albania",
    "Andorra",
    "Argentina",
    "Armenia",
    "Australia",
    "Austria",
    "Azerbaijan",
    "Bahrain",
    "Belarus",
    "Belgium",
    "Bosnia and Herzegovina",
    "Brazil",
    "Bulgaria",
    "Cambodia",
    "Canada",
    "Croatia",
    "Cyprus",
    "Czech Republic",
    "Denmark",
    "Estonia",
    "Finland",
    "France",
    "Georgia",
    "Germany",
    "Gibraltar",
    "Greece",
    "Guernsey",
    "Hungary",
    "Iceland",
    "Indonesia",
    "Ireland",
    "Israel",
    "Italy",
    "Latvia",
    "Liechtenstein",
    "Lithuania",
    "Luxembourg",
    "Malaysia",
    "Malta",
    "Mexico",
    "Moldova",
    "Monaco",
    "Montenegro",
    "Netherlands",
    "New Zealand",
    "North Macedonia",
    "Norway",
    "Poland",
    "Portugal",
    "Qatar",
    "Romania",
    "San Marino",
    "Serbia",
    "Singapore",
    "Slovakia",
    "Slovenia",
    "Spain",
    "Sweden",
    "Switzerland",
    "Thailand",
    "Turkey",
    "United States",
    "Ukraine",
    "United Kingdom",
    "Vietnam",
    "Unknown",
];

/// Why the models could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "models directory {dir} does not exist or is not a directory (set --models or ALPR_MODELS)"
    )]
    NoDirectory { dir: PathBuf },
    #[error("models directory {dir} lacks {}", .files.join(", "))]
    Missing { dir: PathBuf, files: Vec<String> },
    #[error("could not read model {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model {path} is not the pinned file: SHA-256 is {actual}, expected {expected}")]
    WrongHash {
        path: PathBuf,
        expected: &'static str,
        actual: String,
    },
    #[error("ONNX Runtime could not load model {model}: {message}")]
    Session { model: String, message: String },
}

/// Checks that every file in `files` is present in `dir` with its pinned
/// hash, and returns their bytes in the same order. All missing files are
/// named at once.
pub fn load_verified(dir: &Path, files: &[ModelFile]) -> Result<Vec<Vec<u8>>, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::NoDirectory {
            dir: dir.to_path_buf(),
        });
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|m| !dir.join(m.file).is_file())
        .map(|m| m.file.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::Missing {
            dir: dir.to_path_buf(),
            files: missing,
        });
    }
    files
        .iter()
        .map(|m| {
            let path = dir.join(m.file);
            let bytes = std::fs::read(&path).map_err(|source| ModelError::Read {
                path: path.clone(),
                source,
            })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != m.sha256 {
                return Err(ModelError::WrongHash {
                    path,
                    expected: m.sha256,
                    actual,
                });
            }
            Ok(bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_hashes() {
        assert_eq!(DETECTOR.id(), "yolo-v9-t-416@5a5eac89");
        assert_eq!(OCR_V2.id(), "cct_xs_v2_global@8031afb5");
        assert_eq!(REGIONS[61], "United States");
    }

    #[test]
    fn missing_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = load_verified(dir.path(), &[DETECTOR, OCR_V2]).expect_err("empty dir");
        let msg = e.to_string();
        assert!(
            msg.contains(DETECTOR.file) && msg.contains(OCR_V2.file),
            "{msg}"
        );

        std::fs::write(dir.path().join(DETECTOR.file), b"not a model").expect("write");
        let e = load_verified(dir.path(), &[DETECTOR]).expect_err("wrong hash");
        assert!(matches!(e, ModelError::WrongHash { .. }), "{e}");
        assert!(e.to_string().contains("not the pinned file"));

        let e = load_verified(&dir.path().join("nope"), &[DETECTOR]).expect_err("no dir");
        assert!(matches!(e, ModelError::NoDirectory { .. }));
    }
}
