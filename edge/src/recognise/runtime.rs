//! Finding and loading the ONNX Runtime shared library (`ort`'s
//! `load-dynamic`). Looked for, in order:
//!
//! 1. `ORT_DYLIB_PATH` (a file path) if set — used as given, no fallback;
//! 2. `.runtime/onnxruntime/libonnxruntime.so*` in the folder of the running
//!    executable or any folder above it, then in the current directory or
//!    any folder above it (where `scripts/install-ort.sh` puts it).
//!
//! Loaded once per process; later calls return the first outcome.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime library could not be found or loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so, or run \
         `bash scripts/install-ort.sh` in the repository (looked in: {})",
        .searched.join(", ")
    )]
    NotFound { searched: Vec<String> },
    #[error("ORT_DYLIB_PATH is {path}, which is not a file (it should name libonnxruntime.so.*)")]
    EnvPathMissing { path: String },
    #[error("could not load ONNX Runtime from {path}: {message}")]
    Load { path: String, message: String },
}

static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), RuntimeError>> =
    OnceLock::new();

/// Loads ONNX Runtime (once) and returns the library path in use.
pub fn ensure() -> Result<&'static Path, RuntimeError> {
    environment().map(|(p, _)| p)
}

/// Loads ONNX Runtime (once); the library path and the process's environment.
pub fn environment() -> Result<(&'static Path, &'static ort::environment::Environment), RuntimeError>
{
    let r = RUNTIME.get_or_init(|| {
        let path = locate()?;
        let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let env = builder
            .with_name("alpr-edge")
            .build()
            .map_err(|e| RuntimeError::Load {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok((path, env))
    });
    match r {
        Ok((p, env)) => Ok((p.as_path(), env)),
        Err(e) => Err(e.clone()),
    }
}

/// Where the library would be loaded from, without loading it.
pub fn locate() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RuntimeError::EnvPathMissing {
            path: p.display().to_string(),
        });
    }
    let mut searched = vec!["ORT_DYLIB_PATH (unset)".to_string()];
    find_in_runtime("onnxruntime", library_in, &mut searched)
        .ok_or(RuntimeError::NotFound { searched })
}

/// Looks for `.runtime/<name>` in the folder of the running executable or
/// any folder above it, then in the current directory or any folder above
/// it, and returns the first thing `found` accepts in one. Every folder
/// looked in is added to `searched` (once), for the error message.
pub(crate) fn find_in_runtime(
    name: &str,
    found: impl Fn(&Path) -> Option<PathBuf>,
    searched: &mut Vec<String>,
) -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    for start in starts {
        for dir in start.ancestors() {
            let folder = dir.join(".runtime").join(name);
            if let Some(hit) = found(&folder) {
                return Some(hit);
            }
            let shown = folder.display().to_string();
            if !searched.contains(&shown) {
                searched.push(shown);
            }
        }
    }
    None
}

/// `libonnxruntime.so.X.Y.Z` with the highest version in `folder`, else
/// `libonnxruntime.so`.
fn library_in(folder: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(folder).ok()?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("libonnxruntime.so") else {
            continue;
        };
        let version: Vec<u32> = rest
            .trim_start_matches('.')
            .split('.')
            .filter_map(|s| s.parse().ok())
            .collect();
        let path = e.path();
        if !path.is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, path));
        }
    }
    best.map(|(_, p)| p)
}
