//! flock-based locks. The kernel drops them when the holder dies, so `kill -9` never leaves a
//! stale lock behind (unlike lock files that hold a PID).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::{StoreError, io_err};

/// A held flock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Waits for the lock on `path` (created if missing).
    pub fn acquire(path: &Path, exclusive: bool) -> Result<StoreLock, StoreError> {
        let file = open_lock_file(path)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        flock(&file, op).map_err(|e| io_err("lock", path)(e.into()))?;
        Ok(StoreLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Takes the lock exclusively if nobody holds it; `None` when it is held (its owner is alive).
    pub fn try_exclusive(path: &Path) -> Result<Option<StoreLock>, StoreError> {
        let file = open_lock_file(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StoreLock {
                _file: file,
                path: path.to_owned(),
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(io_err("lock", path)(e.into())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("open lock file", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let held = StoreLock::acquire(&p, true).unwrap();
        assert!(StoreLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(StoreLock::try_exclusive(&p).unwrap().is_some());
        let shared = StoreLock::acquire(&p, false).unwrap();
        let shared2 = StoreLock::acquire(&p, false).unwrap();
        assert!(StoreLock::try_exclusive(&p).unwrap().is_none());
        drop((shared, shared2));
    }
}
