//! The hub's layers point one way (DESIGN.md, "Layers"):
//! the stores and the domain's rooms never import an adapter (the QUIC
//! driver, the API, the console, the command-line clients) or what builds
//! the process (the running hub, the composition root). Read from the
//! source, so a new import that runs back up fails here, not in review.

use std::path::{Path, PathBuf};

/// The rooms below the adapters: the stores, the domain, and the
/// configuration they are built from.
const LOWER_ROOMS: &[&str] = &[
    "access",
    "alerts",
    "audit",
    "export",
    "holds",
    "hotlist",
    "ingest",
    "policy",
    "retention",
    "search",
    "store",
    "users",
    "config",
    "config.rs",
    "health.rs",
    "keys.rs",
    "node_writes.rs",
    "refusals.rs",
    "replicated.rs",
];

/// What the lower rooms may not import: the adapters, the running hub and
/// the composition root.
const ABOVE: &[&str] = &[
    "crate::sync",
    "crate::api",
    "crate::console",
    "crate::cli",
    "crate::hub::",
    "crate::serve",
];

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
fn no_store_or_domain_room_imports_an_adapter_or_the_root() {
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

#[test]
fn the_quic_driver_files_stay_readable_in_one_sitting() {
    let sync = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sync");
    let mut files = Vec::new();
    rust_files(&sync, &mut files);
    assert!(!files.is_empty(), "no QUIC driver at {}", sync.display());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f)
                .expect("a source file")
                .lines()
                .count();
            (lines > 800).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 800 lines: {}", long.join(", "));
}
