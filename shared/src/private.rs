//! Files that hold plates, keys or logs are private to the account that runs
//! the node or the hub: folders 0700, files 0600. A key file that others can
//! read is refused, as ssh refuses one.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("permissions {mode:04o} for '{path}' are too open: a private key must be readable by its owner only (run `chmod 600 {path}`)")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFileError {
    let path = path.to_path_buf();
    move |source| PrivateFileError::Io { what, path, source }
}

/// Read a private key file, refusing it when its group or others may read or
/// write it.
pub fn read_key_file(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, PrivateFileError> {
    check_key_mode(path)?;
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(io("reading", path))
}

/// Refuse a key file that group or others can access.
pub fn check_key_mode(path: &Path) -> Result<(), PrivateFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(io("reading", path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Create `dir` (and its parents) and make `dir` itself 0700, also when it
/// already existed with a wider mode.
pub fn create_private_dir(dir: &Path) -> Result<(), PrivateFileError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    set_mode(dir, 0o700)
}

/// Make an existing file 0600 (a database or an export, once written).
pub fn make_private(file: &Path) -> Result<(), PrivateFileError> {
    set_mode(file, 0o600)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PrivateFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("restricting", path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Open `path` for writing as a new private file (0600 from its creation),
/// truncating what was there.
pub fn create_private_file(path: &Path) -> Result<std::fs::File, PrivateFileError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let f = opts.open(path).map_err(io("writing", path))?;
    // The mode above applies only to a file this call created.
    make_private(path)?;
    Ok(f)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn an_open_key_is_refused_like_ssh_does() {
        let d = tempfile::tempdir().expect("tmp");
        let k = d.path().join("node.key");
        std::fs::write(&k, b"key").expect("write");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_key_file(&k).expect_err("0644 key must be refused");
        let msg = e.to_string();
        assert!(msg.contains("permissions 0644"), "{msg}");
        assert!(msg.contains("node.key"), "{msg}");
        assert!(msg.contains("too open"), "{msg}");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(&read_key_file(&k).expect("0600 key")[..], b"key");
    }

    #[test]
    fn private_dirs_and_files_are_owner_only() {
        let d = tempfile::tempdir().expect("tmp");
        let sub = d.path().join("data");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&sub).expect("private dir");
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("export.bundle");
        std::fs::write(&f, b"x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(create_private_file(&f).expect("create"));
        assert_eq!(mode(&f), 0o600);
    }
}
