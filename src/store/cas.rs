//! The file-level content-addressed store: `cas/ab/<key>`, one inode per distinct (content,
//! metadata), hard-linked into every image tree that holds such a file.
//!
//! A blob's link count says how many trees use it: a blob with one link is garbage. Blobs enter
//! the CAS only when an import commits (the staging tree is deduplicated against the CAS just
//! before its rename), so an import that is refused or killed never leaves a blob behind.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, Mode, linkat, mkdirat, renameat, statat, unlinkat};
use rustix::io::Errno;

use super::fsutil::{open_dir_beneath, os, split};
use super::tree::FileRecord;

/// How much a commit added to the CAS and how much it found already there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DedupStats {
    pub new_files: u64,
    pub new_bytes: u64,
    pub shared_files: u64,
    pub shared_bytes: u64,
}

/// Moves every file of a staged tree into the CAS, or replaces it with the existing blob.
pub fn dedup(cas: &OwnedFd, tree: &OwnedFd, files: &[FileRecord]) -> io::Result<DedupStats> {
    let mut stats = DedupStats::default();
    let mut fans_made = [false; 256];
    for f in files {
        let (parent, name) = split(&f.tree_path);
        let dir = open_dir_beneath(tree, parent)?;
        let fan = &f.key[..2];
        let fan_index = usize::from_str_radix(fan, 16).unwrap_or(0);
        if !fans_made[fan_index] {
            match mkdirat(cas, fan, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => fans_made[fan_index] = true,
                Err(e) => return Err(e.into()),
            }
        }
        let blob = format!("{fan}/{}", f.key);
        if link_or_share(cas, &blob, &dir, name)? {
            stats.new_files += 1;
            stats.new_bytes += f.size;
        } else {
            stats.shared_files += 1;
            stats.shared_bytes += f.size;
        }
    }
    Ok(stats)
}

/// Links the staged file into the CAS (true: a new blob), or, if an equal blob exists, replaces
/// the staged file with a link to it (false). Retries if `gc` removes the blob in between.
fn link_or_share(cas: &OwnedFd, blob: &str, dir: &OwnedFd, name: &[u8]) -> io::Result<bool> {
    let tmp = [b".dedup-".as_slice(), name].concat();
    for _ in 0..8 {
        match linkat(dir, os(name), cas, blob, AtFlags::empty()) {
            Ok(()) => return Ok(true),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match linkat(cas, blob, dir, os(&tmp), AtFlags::empty()) {
            Ok(()) => {
                replace_with(dir, &tmp, name)?;
                return Ok(false);
            }
            Err(Errno::NOENT) => continue, // collected meanwhile: link ours instead
            Err(Errno::EXIST) => {
                unlinkat(dir, os(&tmp), AtFlags::empty())?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "the CAS kept changing under a concurrent gc",
    ))
}

/// Re-creates the image's own hard links after dedup, so names of one inode in the archive stay
/// one inode on disk.
pub fn relink(tree: &OwnedFd, links: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    for (path, target) in links {
        let (tparent, tname) = split(target);
        let tdir = open_dir_beneath(tree, tparent)?;
        let (parent, name) = split(path);
        let dir = open_dir_beneath(tree, parent)?;
        let tmp = [b".relink-".as_slice(), name].concat();
        linkat(&tdir, os(tname), &dir, os(&tmp), AtFlags::empty())?;
        replace_with(&dir, &tmp, name)?;
    }
    Ok(())
}

/// Renames `tmp` over `name`. rename(2) does nothing when both are links to one inode, so that
/// case is spotted and `tmp` simply removed.
fn replace_with(dir: &OwnedFd, tmp: &[u8], name: &[u8]) -> io::Result<()> {
    let a = statat(dir, os(tmp), AtFlags::SYMLINK_NOFOLLOW)?;
    let b = statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
        unlinkat(dir, os(tmp), AtFlags::empty())?;
    } else {
        renameat(dir, os(tmp), dir, os(name))?;
    }
    Ok(())
}
