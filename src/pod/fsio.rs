//! Crash-safe file writes and flocks for pod directories.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::{PodError, io_err};

/// Prefix of every temporary file or directory entry; list ignores them, gc removes them.
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes `name` in `dir` as temp file + fsync + rename + fsync of `dir`: a reader sees the old
/// or the new content, never a torn file, even after kill -9 or a power cut.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), PodError> {
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let target = dir.join(name);
    write_new(&tmp, bytes, mode).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("write", &tmp)(e)
    })?;
    fs::rename(&tmp, &target).map_err(io_err("rename into place", &target))?;
    sync_dir(dir)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes renames and creations in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), PodError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Creates `path` with exactly `mode` (umask notwithstanding); fails if it exists.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, Permissions::from_mode(mode))
}

/// An open lock file and whether `op` got the flock (`None`: someone else holds it).
pub fn try_flock(path: &Path, op: FlockOperation) -> Result<Option<File>, PodError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open lock file", path))?;
    match flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io_err("lock", path)(e.into())),
    }
}

/// Removes a directory tree; a missing one is fine (another gc got there first).
pub fn remove_tree(path: &Path) -> Result<(), PodError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// A unique temp path next to `path`'s siblings in `dir`.
pub fn tmp_path(dir: &Path, tag: &str) -> PathBuf {
    dir.join(format!(
        "{TMP_PREFIX}{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_with_the_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one", 0o600).unwrap();
        write_atomic(dir.path(), "f", b"two", 0o640).unwrap();
        let path = dir.path().join("f");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn try_flock_reports_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = try_flock(&p, FlockOperation::LockExclusive).unwrap();
        assert!(held.is_some());
        let shared = try_flock(&p, FlockOperation::NonBlockingLockShared).unwrap();
        assert!(shared.is_none());
        drop(held);
        let shared = try_flock(&p, FlockOperation::NonBlockingLockShared).unwrap();
        assert!(shared.is_some());
    }

    #[test]
    fn remove_tree_accepts_a_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        remove_tree(&dir.path().join("gone")).unwrap();
    }
}
