//! Putting files into a host's root before (or after) it boots, without ever writing outside it.
//!
//! Files are written *through the overlay mount*, not into the upper directory directly. WHY:
//! writing through the mount makes overlayfs copy up each parent directory with the owner and
//! mode of the real one (`/root` stays 0700, `/etc` stays 0755); a hand-made upper directory
//! would replace those attributes in the merged view. The data still lands only in the upper
//! directory on the tmpfs.
//!
//! Every path is resolved with [`resolve_in_root`]: the lower layer is the machine's own `/`, full
//! of absolute symlinks (`/etc/resolv.conf`, `/etc/localtime`, `/etc/mtab`, …). A plain
//! `root.join("etc/localtime")` would be followed by the kernel on the *machine*, so a write would
//! escape the overlay and modify the real root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, like the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// One step that prepares the root filesystem, planned by `HostOptions` and executed in order.
#[derive(Clone, Debug)]
pub enum Provision {
    /// Copy a local file to an absolute path inside the host, with this mode.
    CopyFile {
        src: PathBuf,
        dest: PathBuf,
        mode: u32,
    },
    /// Copy a local directory tree (files, directories and symlinks, modes kept) into `dest`.
    CopyDir { src: PathBuf, dest: PathBuf },
    /// Write bytes to an absolute path inside the host.
    Write {
        dest: PathBuf,
        contents: Vec<u8>,
        mode: u32,
    },
    /// Mask a unit: `/etc/systemd/system/<unit>` → `/dev/null`, as `systemctl mask` does.
    Mask { unit: String },
}

impl Provision {
    /// The path inside the host this step writes, for error messages.
    pub fn target(&self) -> PathBuf {
        match self {
            Provision::CopyFile { dest, .. }
            | Provision::CopyDir { dest, .. }
            | Provision::Write { dest, .. } => dest.clone(),
            Provision::Mask { unit } => mask_path(unit),
        }
    }

    /// Performs the step below `root` (the host's root as seen from the machine).
    pub fn apply(&self, root: &Path) -> io::Result<()> {
        match self {
            Provision::CopyFile { src, dest, mode } => copy_file(root, src, dest, *mode),
            Provision::CopyDir { src, dest } => copy_dir(root, src, dest),
            Provision::Write {
                dest,
                contents,
                mode,
            } => write_file(root, dest, contents, *mode),
            Provision::Mask { unit } => replace_with_symlink(root, &mask_path(unit), "/dev/null"),
        }
    }
}

fn mask_path(unit: &str) -> PathBuf {
    Path::new("/etc/systemd/system").join(unit)
}

/// Resolves the absolute in-host `path` to a path below `root`, following symlinks as the kernel
/// would *inside* the host: an absolute link target restarts at `root`, and `..` never climbs
/// above it. The last component is followed only if `follow_last`. Components that do not exist
/// yet are kept as they are, so the result can be created.
pub fn resolve_in_root(root: &Path, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut links_followed = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = below(root, &resolved).join(&name);
        let follow = follow_last || !pending.is_empty();
        let is_link = fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
        if !(follow && is_link) {
            resolved.push(name);
            continue;
        }
        links_followed += 1;
        if links_followed > MAX_SYMLINKS {
            return Err(io::Error::other(format!(
                "too many levels of symbolic links resolving {}",
                path.display()
            )));
        }
        let target = fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved.clear();
        }
        for (i, part) in components(&target).enumerate() {
            pending.insert(i, part);
        }
    }
    Ok(below(root, &resolved))
}

/// Normal components of `path` as names, with `..` kept as the name `".."` (no real file can be
/// called that) and `/` and `.` dropped.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

fn below(root: &Path, names: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(names.iter().map(OsString::as_os_str));
    path
}

/// Resolves the parent of `dest`, creates it, and returns where `dest` itself goes (its last
/// component not followed, so an existing symlink there is replaced rather than written through).
fn prepare_destination(root: &Path, dest: &Path) -> io::Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", dest.display())))?;
    let parent = resolve_in_root(root, dest.parent().unwrap_or(Path::new("/")), true)?;
    fs::create_dir_all(&parent)?;
    let target = parent.join(name);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&target)?;
    }
    Ok(target)
}

/// Writes `contents` to the in-host path `dest` below `root`, creating parent directories.
pub fn write_file(root: &Path, dest: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let target = prepare_destination(root, dest)?;
    fs::write(&target, contents)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
}

fn copy_file(root: &Path, src: &Path, dest: &Path, mode: u32) -> io::Result<()> {
    let target = prepare_destination(root, dest)?;
    fs::copy(src, &target)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
}

fn replace_with_symlink(
    root: &Path,
    dest: &Path,
    link_target: impl AsRef<OsStr>,
) -> io::Result<()> {
    let target = prepare_destination(root, dest)?;
    if target.exists() {
        fs::remove_file(&target)?;
    }
    symlink(link_target.as_ref(), &target)
}

fn copy_dir(root: &Path, src: &Path, dest: &Path) -> io::Result<()> {
    let parent = resolve_in_root(root, dest, true)?;
    fs::create_dir_all(&parent)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if meta.file_type().is_symlink() {
            // Unit directories hold `*.wants/` symlinks; they must stay symlinks.
            replace_with_symlink(root, &to, fs::read_link(&from)?)?;
        } else if meta.is_dir() {
            copy_dir(root, &from, &to)?;
        } else {
            copy_file(root, &from, &to, meta.permissions().mode() & 0o7777)?;
        }
    }
    Ok(())
}

/// Reads the in-host path `path` below `root`.
pub fn read_file(root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    fs::read(resolve_in_root(root, path, true)?)
}
