//! What hub and edge share to stay up unattended: a panic inside a storage
//! call becomes an error (with no backtrace on stderr), and the free space
//! of the filesystem a database lives on, for health reports and metrics.

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
