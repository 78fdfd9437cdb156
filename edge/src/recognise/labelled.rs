//! Labelled photo folders (`NAME.txt` beside each photo, the plate last):
//! what `alpr-bench edge recognize` and the recognition tests score against;
//! and folders of plate crops labelled with their state (`labels.csv`).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// One labelled photo of a bench folder.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub image: PathBuf,
    pub plate: String,
}

/// Keeps A–Z and 0–9, upper-cased.
pub fn normalise(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Reads `NAME.txt` files (tab-separated, image file name first, plate last).
pub fn labelled_folder(dir: &Path) -> anyhow::Result<Vec<Labelled>> {
    let mut txts: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    txts.sort();
    let mut out = Vec::new();
    for t in txts {
        let s = std::fs::read_to_string(&t).with_context(|| format!("reading {}", t.display()))?;
        let line = s.lines().next().unwrap_or("");
        let fields: Vec<&str> = line.trim().split('\t').collect();
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            continue;
        };
        let image = dir.join(first);
        if fields.len() < 2 || !image.is_file() {
            continue;
        }
        out.push(Labelled {
            image,
            plate: normalise(last),
        });
    }
    Ok(out)
}

/// One crop of a state-labelled folder.
#[derive(Debug, Clone)]
pub struct StateLabelled {
    pub image: PathBuf,
    /// Two-letter postal code, upper case.
    pub state: String,
}

/// Reads a folder's `labels.csv` (`file,state,plate`, a header line first;
/// the state as its postal code in either case): what `alpr-bench edge
/// state` and the state reader's test score against. Rows whose file is
/// missing or whose state is not two letters are skipped.
pub fn state_labels(dir: &Path) -> anyhow::Result<Vec<StateLabelled>> {
    let csv = dir.join("labels.csv");
    let s = std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
    let mut out = Vec::new();
    for line in s.lines().skip(1) {
        let mut fields = line.trim().split(',');
        let (Some(file), Some(state)) = (fields.next(), fields.next()) else {
            continue;
        };
        let state = normalise(state);
        let image = dir.join(file.trim());
        if state.len() == 2 && state.chars().all(|c| c.is_ascii_alphabetic()) && image.is_file() {
            out.push(StateLabelled { image, state });
        }
    }
    Ok(out)
}
