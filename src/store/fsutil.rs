//! Small filesystem helpers shared by the store's tree code: paths as bytes (image paths need
//! not be UTF-8), and directories opened strictly beneath a root.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timestamps, chownat, openat2, utimensat};
use rustix::process::{Gid, Uid};

pub(crate) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Splits a relative path into its directory (empty at the top level) and its last component.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Opens the directory `dir` (relative; empty means `root` itself) without following any
/// symlink or leaving `root`: the kernel enforces it (openat2 RESOLVE_BENEATH|NO_SYMLINKS).
pub(crate) fn open_dir_beneath(root: impl AsFd, dir: &[u8]) -> io::Result<OwnedFd> {
    let path = if dir.is_empty() { os(b".") } else { os(dir) };
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    Ok(openat2(root, path, flags, Mode::empty(), resolve)?)
}

/// Sets the owner and times of `name` in `dir` without following it (symlinks and FIFOs, which
/// cannot be opened for fchown/futimens).
pub(crate) fn set_owner_times_at(
    dir: &OwnedFd,
    name: &[u8],
    uid: u32,
    gid: u32,
    times: &Timestamps,
) -> io::Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    chownat(dir, os(name), uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(utimensat(dir, os(name), times, AtFlags::SYMLINK_NOFOLLOW)?)
}
