//! `image render` and `image extract`: copies of stored trees into a directory of the user's.
//!
//! Layers are copied bottom first; a later layer replaces what an earlier one put at a path,
//! and an existing symlink is replaced, never followed (spec F4, F5). Parents are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so nothing is written outside the target.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags, chmodat, fchmod, fchown, fgetxattr,
    flistxattr, fsetxattr, futimens, linkat, mkdirat, mkfifoat, openat, statat, symlinkat,
    unlinkat,
};
use rustix::process::{Gid, Uid};

use super::fsutil::{open_dir_beneath, os, set_owner_times_at, split};
use super::render::{Layer, layers, tree_rootfs};
use super::{ImageRecord, Store, StoreError, io_err};

#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Write the rootfs contents into the target itself, without `manifest` beside it.
    pub rootfs_only: bool,
    /// Include dependencies (render) or only the image itself, unfiltered (extract).
    pub with_dependencies: bool,
}

/// Renders or extracts `image` into `dest`, which must not exist or be an empty directory. The
/// copy is built beside it and renamed into place, so `dest` is never left half-written.
pub fn copy_image(
    store: &Store,
    image: &ImageRecord,
    dest: &Path,
    opts: CopyOptions,
) -> Result<(), StoreError> {
    let _shared = store.lock_shared()?;
    check_target(dest)?;
    let stack = if opts.with_dependencies {
        layers(store, image)?
    } else {
        vec![Layer {
            id: image.id.clone(),
            filters: Vec::new(),
        }]
    };
    let tmp = sibling(dest, "render")?;
    fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
    let result = build(store, image, &stack, &tmp, opts).and_then(|()| {
        if dest.exists() {
            fs::remove_dir(dest).map_err(io_err("replace", dest))?;
        }
        fs::rename(&tmp, dest).map_err(io_err("rename into", dest))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp); // best effort: a failed render leaves nothing behind
    }
    result
}

fn check_target(dest: &Path) -> Result<(), StoreError> {
    match fs::read_dir(dest).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(StoreError::Io {
            op: "render into",
            path: dest.to_owned(),
            source: io::Error::other("directory is not empty"),
        }),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspect", dest)(e)),
    }
}

fn sibling(dest: &Path, what: &str) -> Result<PathBuf, StoreError> {
    let name = dest.file_name().ok_or_else(|| StoreError::Io {
        op: "render into",
        path: dest.to_owned(),
        source: io::Error::other("not a directory name"),
    })?;
    Ok(dest.with_file_name(format!(
        ".{}.{what}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn build(
    store: &Store,
    image: &ImageRecord,
    stack: &[Layer],
    tmp: &Path,
    opts: CopyOptions,
) -> Result<(), StoreError> {
    let rootfs = if opts.rootfs_only {
        tmp.to_owned()
    } else {
        let manifest = tmp.join("manifest");
        fs::write(&manifest, &image.manifest_text).map_err(io_err("write", &manifest))?;
        let rootfs = tmp.join("rootfs");
        fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
        rootfs
    };
    let root = File::open(&rootfs).map_err(io_err("open", &rootfs))?;
    let mut writer = Writer {
        root: root.into(),
        dirs: BTreeMap::new(),
        dest: rootfs.clone(),
    };
    for layer in stack {
        let src = tree_rootfs(store, &layer.id);
        // The rootfs directory itself: the topmost layer's metadata wins, as for any directory.
        let meta = src.symlink_metadata().map_err(io_err("inspect", &src))?;
        writer.dirs.insert(Vec::new(), meta);
        let mut links = HashMap::new();
        writer
            .copy_dir(&src, b"", layer, &mut links)
            .map_err(io_err("copy into", &rootfs))?;
    }
    writer
        .finish_dirs()
        .map_err(io_err("set metadata in", &rootfs))
}

struct Writer {
    root: OwnedFd,
    /// Directory metadata, applied at the end (children would bump mtimes); upper layers win.
    dirs: BTreeMap<Vec<u8>, fs::Metadata>,
    dest: PathBuf,
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

impl Writer {
    fn copy_dir(
        &mut self,
        src: &Path,
        rel: &[u8],
        layer: &Layer,
        links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(src.join(os(rel)))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = join(rel, e.file_name().as_bytes());
            let meta = e.path().symlink_metadata()?;
            let abs = format!("/{}", String::from_utf8_lossy(&path));
            if !layer.keeps(&abs, meta.is_dir()) {
                continue;
            }
            self.place(&e.path(), &path, &meta, links)?;
            if meta.is_dir() {
                self.copy_dir(src, &path, layer, links)?;
            }
        }
        Ok(())
    }

    fn parent(&self, path: &[u8]) -> io::Result<(OwnedFd, Vec<u8>)> {
        let (dir, name) = split(path);
        Ok((open_dir_beneath(&self.root, dir)?, name.to_vec()))
    }

    /// Puts one entry at `path`, replacing what an earlier layer left there unless both are
    /// directories (then only the metadata changes).
    fn place(
        &mut self,
        src: &Path,
        path: &[u8],
        meta: &fs::Metadata,
        links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        if let Ok(existing) = statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) {
            let existing_is_dir = rustix::fs::FileType::from_raw_mode(existing.st_mode)
                == rustix::fs::FileType::Directory;
            if existing_is_dir && meta.is_dir() {
                self.dirs.insert(path.to_vec(), meta.clone());
                return Ok(());
            }
            if existing_is_dir {
                fs::remove_dir_all(self.dest.join(os(path)))?;
            } else {
                unlinkat(&dir, os(&name), AtFlags::empty())?;
            }
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            mkdirat(&dir, os(&name), Mode::from_raw_mode(0o700))?;
            self.dirs.insert(path.to_vec(), meta.clone());
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match links.get(&key) {
                Some(first) if meta.nlink() > 1 => {
                    let (fdir, fname) = self.parent(first)?;
                    linkat(&fdir, os(&fname), &dir, os(&name), AtFlags::empty())?;
                }
                _ => {
                    copy_file(src, &dir, &name, meta)?;
                    links.insert(key, path.to_vec());
                }
            }
        } else if ft.is_symlink() {
            symlinkat(fs::read_link(src)?.as_os_str(), &dir, os(&name))?;
            set_link_meta(&dir, &name, meta)?;
        } else if ft.is_fifo() {
            mkfifoat(&dir, os(&name), Mode::from_raw_mode(0o600))?;
            chmodat(
                &dir,
                os(&name),
                Mode::from_raw_mode(meta.mode() & 0o7777),
                AtFlags::empty(),
            )?;
            set_link_meta(&dir, &name, meta)?;
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> io::Result<()> {
        for (path, meta) in self.dirs.iter().rev() {
            let fd = open_dir_beneath(&self.root, path)?;
            set_fd_meta(&fd, meta)?;
        }
        Ok(())
    }
}

fn copy_file(src: &Path, dir: &OwnedFd, name: &[u8], meta: &fs::Metadata) -> io::Result<()> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let out = openat(dir, os(name), flags, Mode::from_raw_mode(0o600))?;
    let mut input = File::open(src)?;
    let mut output = File::from(out);
    io::copy(&mut input, &mut output)?;
    copy_xattrs(&input, &output)?;
    set_fd_meta(&output, meta)
}

fn copy_xattrs(from: &File, to: &File) -> io::Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let n = flistxattr(from, &mut names)?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 * 1024];
        let len = fgetxattr(from, os(name), &mut value)?;
        fsetxattr(to, os(name), &value[..len], XattrFlags::empty())?;
    }
    Ok(())
}

fn times(meta: &fs::Metadata) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_fd_meta(fd: impl std::os::fd::AsFd, meta: &fs::Metadata) -> io::Result<()> {
    fchown(
        &fd,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
    )?;
    // chmod after chown: chown clears setuid/setgid bits.
    fchmod(&fd, Mode::from_raw_mode(meta.mode() & 0o7777))?;
    Ok(futimens(&fd, &times(meta))?)
}

fn set_link_meta(dir: &OwnedFd, name: &[u8], meta: &fs::Metadata) -> io::Result<()> {
    set_owner_times_at(dir, name, meta.uid(), meta.gid(), &times(meta))
}
