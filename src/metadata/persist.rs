//! Crash-safe files of the metadata service: every file is written as temp + fsync + rename (or
//! link, where an existing file must win) + fsync of the directory, with its final mode from the
//! moment it is created, so a key is never readable by others, not even half-written.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{MetadataError, io_err};

/// Creates `dir` (and its parents) with `mode` for the last component if missing.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), MetadataError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io_err("create", dir))
}

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".tmp-{name}-{}", uuid::Uuid::new_v4().simple()))
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, MetadataError> {
    let tmp = tmp_path(dir, name);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp); // best effort: a leftover temp is ignored when loading
        return Err(io_err("write", tmp)(e));
    }
    Ok(tmp)
}

/// Replaces `dir/name` atomically.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), MetadataError> {
    let tmp = write_tmp(dir, name, bytes, mode)?;
    let target = dir.join(name);
    fs::rename(&tmp, &target).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename into place", &target)(e)
    })?;
    sync_dir(dir)
}

/// Creates `dir/name` atomically unless it exists; `false` when another writer was first (a
/// hard link, unlike rename, never replaces an existing file).
pub fn create_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<bool, MetadataError> {
    let tmp = write_tmp(dir, name, bytes, mode)?;
    let target = dir.join(name);
    let linked = fs::hard_link(&tmp, &target);
    let _ = fs::remove_file(&tmp); // best effort: the link (if any) keeps the content
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create", target)(e)),
    }
}

/// Removes `dir/name`; a missing file is success.
pub fn remove(dir: &Path, name: &str) -> Result<(), MetadataError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// `n` bytes from the kernel's CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, MetadataError> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("read", "/dev/urandom"))?;
    Ok(buf)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
