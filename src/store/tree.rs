//! Builds an image's exploded tree in a staging directory, entry by entry, as the archive streams
//! past.
//!
//! Safety argument: every entry's ancestors must be directories that this import itself created
//! (tracked in `nodes`), so a symlink planted by an earlier entry can never be written through;
//! and parents are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` as a second,
//! kernel-enforced guard (STYLE.md rule 4; crun's `safe_openat`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags, chmodat, fchmod, fchown, fsetxattr,
    futimens, linkat, mkdirat, mkfifoat, openat, symlinkat,
};
use rustix::process::{Gid, Uid};
use sha2::{Digest, Sha256};

use super::fsutil::{open_dir_beneath, os, set_owner_times_at, split};
use crate::aci::reader::{EntryTracker, Node};

/// Metadata of an entry, from its tar header (and PAX records for xattrs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A regular file written into the tree: where, and its content-plus-metadata key.
#[derive(Debug, Clone)]
pub struct FileRecord {
    pub tree_path: Vec<u8>,
    pub key: String,
    pub size: u64,
}

/// Xattrs that would change how overlayfs reads a lower layer (opaque dirs, redirects, metacopy):
/// an image must never steer the overlay built from it.
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

pub struct TreeBuilder {
    root: OwnedFd,
    nodes: EntryTracker,
    dirs: Vec<(Vec<u8>, Meta)>,
    pub files: Vec<FileRecord>,
    pub hardlinks: Vec<(Vec<u8>, Vec<u8>)>,
    pub warnings: Vec<String>,
    parent_cache: Option<(Vec<u8>, OwnedFd)>,
}

impl TreeBuilder {
    /// Starts a tree in the (empty) directory `root`.
    pub fn new(root: OwnedFd) -> Self {
        TreeBuilder {
            root,
            nodes: EntryTracker::default(),
            dirs: Vec::new(),
            files: Vec::new(),
            hardlinks: Vec::new(),
            warnings: Vec::new(),
            parent_cache: None,
        }
    }

    /// Refuses duplicates and paths below anything but a directory; `Err` says why.
    pub fn check(&self, path: &[u8], is_dir: bool) -> Result<(), String> {
        self.nodes.check(path, is_dir)
    }

    /// Opens `dir` (relative to the root) without following any symlink, creating missing
    /// ancestors as implicit directories (mode 0755, root-owned, like a tar without dir entries).
    fn open_dir(&mut self, dir: &[u8]) -> io::Result<&OwnedFd> {
        if self.parent_cache.as_ref().is_none_or(|(p, _)| p != dir) {
            self.ensure_dirs(dir)?;
            let fd = open_dir_beneath(&self.root, dir)?;
            self.parent_cache = Some((dir.to_vec(), fd));
        }
        Ok(&self.parent_cache.as_ref().expect("just filled").1)
    }

    fn ensure_dirs(&mut self, dir: &[u8]) -> io::Result<()> {
        if dir.is_empty() || self.nodes.get(dir).is_some() {
            return Ok(());
        }
        let (parent, _) = split(dir);
        self.ensure_dirs(parent)?;
        mkdirat(&self.root, os(dir), Mode::from_raw_mode(0o755))?;
        self.nodes.insert(dir, Node::Dir { implicit: true });
        Ok(())
    }

    pub fn add_dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        if self.nodes.get(path) != Some(Node::Dir { implicit: true }) {
            let (parent, name) = split(path);
            let dir = self.open_dir(parent)?.try_clone()?;
            mkdirat(&dir, os(name), Mode::from_raw_mode(0o700))?;
        }
        self.nodes.insert(path, Node::Dir { implicit: false });
        self.dirs.push((path.to_vec(), meta));
        Ok(())
    }

    /// Writes a regular file's content from `content`, applies its metadata, and keys it.
    pub fn add_file(
        &mut self,
        path: &[u8],
        meta: &Meta,
        content: &mut impl Read,
    ) -> io::Result<()> {
        let (parent, name) = split(path);
        let dir = self.open_dir(parent)?.try_clone()?;
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = openat(&dir, os(name), flags, Mode::from_raw_mode(0o600))?;
        let mut file = std::fs::File::from(fd);
        let (size, digest) = copy_hashing(content, &mut file)?;
        self.apply_fd_meta(file.as_fd(), path, meta)?;
        let key = cas_key(&digest, meta);
        self.nodes.insert(path, Node::File);
        self.files.push(FileRecord {
            tree_path: path.to_vec(),
            key,
            size,
        });
        Ok(())
    }

    pub fn add_symlink(&mut self, path: &[u8], target: &[u8], meta: &Meta) -> io::Result<()> {
        let (parent, name) = split(path);
        let dir = self.open_dir(parent)?.try_clone()?;
        symlinkat(os(target), &dir, os(name))?;
        set_owner_times_at(&dir, name, meta.uid, meta.gid, &times(meta.mtime))?;
        self.nodes.insert(path, Node::Other);
        Ok(())
    }

    pub fn add_fifo(&mut self, path: &[u8], meta: &Meta) -> io::Result<()> {
        let (parent, name) = split(path);
        let dir = self.open_dir(parent)?.try_clone()?;
        mkfifoat(&dir, os(name), Mode::from_raw_mode(0o600))?;
        // chmod after chown, as everywhere: chown clears setuid/setgid bits.
        set_owner_times_at(&dir, name, meta.uid, meta.gid, &times(meta.mtime))?;
        chmodat(
            &dir,
            os(name),
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )?;
        self.nodes.insert(path, Node::Other);
        Ok(())
    }

    /// Device nodes are recorded (the path is taken) but never created.
    pub fn add_device(&mut self, path: &[u8]) {
        self.nodes.insert(path, Node::Other);
    }

    /// A hard link to an earlier regular file of this image; `Err` (as a refusal) otherwise.
    pub fn add_hardlink(&mut self, path: &[u8], target: &[u8]) -> Result<io::Result<()>, String> {
        if self.nodes.get(target) != Some(Node::File) {
            return Err(format!(
                "hard link to {:?}, which is not an earlier file of this image",
                String::from_utf8_lossy(target)
            ));
        }
        Ok(self.link_into(path, target))
    }

    fn link_into(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let (tparent, tname) = split(target);
        let tdir = self.open_dir(tparent)?.try_clone()?;
        let (parent, name) = split(path);
        let dir = self.open_dir(parent)?.try_clone()?;
        linkat(&tdir, os(tname), &dir, os(name), AtFlags::empty())?;
        self.nodes.insert(path, Node::Other);
        self.hardlinks.push((path.to_vec(), target.to_vec()));
        Ok(())
    }

    fn apply_fd_meta(&mut self, fd: impl AsFd, path: &[u8], meta: &Meta) -> io::Result<()> {
        fchown(&fd, uid(meta), gid(meta))?;
        // chmod after chown: chown clears setuid/setgid bits.
        fchmod(&fd, Mode::from_raw_mode(meta.mode))?;
        for (name, value) in &meta.xattrs {
            self.apply_xattr(&fd, path, name, value);
        }
        Ok(futimens(&fd, &times(meta.mtime))?)
    }

    fn apply_xattr(&mut self, fd: impl AsFd, path: &[u8], name: &[u8], value: &[u8]) {
        let shown = || {
            format!(
                "{}: xattr {}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(name)
            )
        };
        if is_overlay_xattr(name) {
            self.warnings.push(format!(
                "{} not applied: overlayfs control attributes are never taken from images",
                shown()
            ));
            return;
        }
        if let Err(e) = fsetxattr(&fd, os(name), value, XattrFlags::empty()) {
            self.warnings.push(format!("{} not applied: {e}", shown()));
        }
    }

    /// Applies directory metadata, deepest first, so that creating children no longer bumps
    /// the recorded mtimes.
    pub fn finish_dirs(&mut self) -> io::Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, meta) in &dirs {
            let fd = open_dir_beneath(&self.root, path)?;
            self.apply_fd_meta(&fd, path, meta)?;
        }
        Ok(())
    }

    /// Whether the archive had a rootfs (an entry of its own, or implied by entries below it).
    pub fn has_rootfs(&self) -> bool {
        self.nodes.get(b"rootfs").is_some()
    }

    pub fn root(&self) -> &OwnedFd {
        &self.root
    }
}

fn uid(meta: &Meta) -> Option<Uid> {
    Some(Uid::from_raw(meta.uid))
}

fn gid(meta: &Meta) -> Option<Gid> {
    Some(Gid::from_raw(meta.gid))
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}

/// The CAS key: the content digest plus everything hard links share (mode, owner, mtime,
/// xattrs), since two names of one inode cannot differ in those.
fn cas_key(content: &[u8; 32], meta: &Meta) -> String {
    let mut h = Sha256::new();
    h.update(b"appc-cas-1\0");
    h.update(content);
    h.update(meta.mode.to_le_bytes());
    h.update(meta.uid.to_le_bytes());
    h.update(meta.gid.to_le_bytes());
    h.update(meta.mtime.to_le_bytes());
    let mut xattrs: Vec<_> = meta
        .xattrs
        .iter()
        .filter(|(n, _)| !is_overlay_xattr(n))
        .collect();
    xattrs.sort();
    for (n, v) in xattrs {
        h.update((n.len() as u64).to_le_bytes());
        h.update(n);
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let digest: [u8; 32] = h.finalize().into();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
