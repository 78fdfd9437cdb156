//! What hub and edge share to stay up unattended: a panic inside a storage
//! call becomes an error (with no backtrace on stderr), and the free space
//! and type of the filesystem a database lives on, for health reports,
//! metrics and benchmarks (a figure taken on tmpfs says nothing of a disk).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

thread_local! {
    /// Set while [`catch_panic`] runs on this thread: its panics are
    /// errors, not reports for a person.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Run `f`; a panic inside it is returned as its message. Panics in
/// [`catch_panic`] print nothing; every other panic is reported by the hook
/// that was installed before.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// Bytes free for unprivileged writers on the filesystem holding `path`
/// (`None` where that cannot be asked).
pub fn disk_free(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let st = rustix::fs::statvfs(path).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The filesystem type holding `path` (from /proc/self/mountinfo: the
/// longest mount point that contains it), or "unknown".
pub fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let Some(fs) = fields.get(dash + 1) else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(l, _)| mount.len() >= *l) {
            best = Some((mount.len(), (*fs).to_owned()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// Drop `path` from the page cache: sync it (dirty pages stay cached),
/// then `posix_fadvise(DONTNEED)` over the whole file. A benchmark's cold
/// start then reads the disk.
pub fn drop_from_page_cache(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    #[cfg(unix)]
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// Bytes of `path` in the page cache, from util-linux's `fincore` (`None`
/// where it is not installed or says nothing readable).
pub fn cached_bytes(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A field of /proc/meminfo (`MemTotal`, `Cached`, …), in bytes.
pub fn meminfo_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Check every page of a database just opened, timed and logged: a file
/// that redb had to repair is said; a corrupt one is an error for the caller
/// to name. (Run inside [`catch_panic`]: redb may panic on some corruptions.)
pub fn check_database(db: &mut redb::Database, path: &Path) -> Result<(), String> {
    let started = std::time::Instant::now();
    let checked = db.check_integrity();
    tracing::info!(
        path = %path.display(),
        bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ms = started.elapsed().as_millis() as u64,
        "database integrity checked"
    );
    match checked {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(
                path = %path.display(),
                "the database was not closed cleanly; redb repaired it"
            );
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_with_its_message() {
        let r: Result<(), String> = catch_panic(|| panic!("page 7 is corrupt"));
        assert_eq!(r, Err("page 7 is corrupt".to_owned()));
        assert_eq!(catch_panic(|| 5), Ok(5));
    }

    #[test]
    fn free_space_of_the_temp_dir_is_known() {
        assert!(disk_free(&std::env::temp_dir()).is_some_and(|b| b > 0));
    }
}
