//! The edge's layers point one way (DESIGN.md, "Layers"): sources,
//! recognition, the store and the rules (alerts, holds, hotlists, policy,
//! search, retention) never import an adapter (the QUIC driver, the local
//! socket, the command-line clients) or the composition root. Read from the
//! source, so a new import that runs back up fails here, not in review.

use std::path::{Path, PathBuf};

/// The rooms below the adapters: sources and recognition, the store, the
/// rules, and the configuration they are built from.
const LOWER_ROOMS: &[&str] = &[
    "alert",
    "capture",
    "config",
    "holds",
    "hotlist",
    "policy",
    "recognise",
    "replay.rs",
    "retention",
    "search",
    "store",
];

/// What the lower rooms may not import: the adapters and the root.
const ABOVE: &[&str] = &["crate::sync", "crate::local", "crate::cli", "crate::run"];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("a room's folder")
            .map(|e| e.expect("a folder entry").path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The lines of `text` that are code: comments and the inline test module
/// left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(n, l)| (n + 1, l))
}

#[test]
fn no_source_store_or_rule_imports_an_adapter_or_the_root() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for room in LOWER_ROOMS {
        let path = src.join(room);
        assert!(path.exists(), "no room {}", path.display());
        rust_files(&path, &mut files);
    }
    let mut upward = Vec::new();
    for file in files {
        if file.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (n, line) in code_lines(&text) {
            if let Some(above) = ABOVE.iter().find(|a| line.contains(*a)) {
                let rel = file.strip_prefix(&src).unwrap_or(&file);
                upward.push(format!(
                    "{}:{n} imports {above}: {}",
                    rel.display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run back up:\n{}",
        upward.join("\n")
    );
}
