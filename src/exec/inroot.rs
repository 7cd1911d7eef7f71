//! Safe path resolution inside an app root (spec/ace.md Filesystem and Volume setup: F1, V2, V4,
//! V5, V7, V10; spec/aci.md user/group lookup for X5).
//!
//! An image is untrusted: its rootfs may hold `etc -> /etc`, `a -> ../../..` or
//! `/proc/self/root` links meant to make the executor read or write the host. Every path inside
//! a root is therefore resolved by the kernel with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: absolute symlinks and `..` are clamped at the root, as if the process
//! were chrooted (crun `safe_openat`, systemd `chase(CHASE_PREFIX_ROOT)`). Files are then handled
//! through the returned descriptors (`fchown`, `fchmod`, `*at` calls on a resolved parent with
//! `RESOLVE_NO_SYMLINKS` for the last component), never by re-walking a path string.
//!
//! Decisions:
//! - Paths given to [`mkdir_all_in_root`] and [`prepare_mount_target`] are normalised lexically
//!   first (`.` dropped, `..` clamped at `/`, see [`normalize_in_root`]), so a mount target is
//!   what the manifest says and the V6 overlap check (in `volumes`) sees the same path.
//! - Symlinks inside the root are followed (in the root) for intermediate directories and for a
//!   mount target that already has the right type: `/var/run -> /run` keeps working. A symlink
//!   at the target that is dangling or of the wrong type is replaced (V4).
//! - A kernel without openat2 (< 5.6) is refused with a clear error; there is no unsafe fallback.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, fchmod, fchown, fstat, mkdirat,
    openat2, statat, unlinkat,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// Mode of directories and mount-target files we create inside a root (V7).
const DIR_MODE: u32 = 0o755;
const FILE_TARGET_MODE: u32 = 0o644;
/// openat2 returns EAGAIN when a concurrent rename could have raced a `..` step; retry a few
/// times before giving up (openat2(2), RESOLVE_IN_ROOT).
const EAGAIN_RETRIES: usize = 8;

/// A failure to resolve or change a path inside an app root; `path` is the path inside the root.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    #[error("cannot open root directory {}: {source}", dir.display())]
    OpenRoot { dir: PathBuf, source: io::Error },
    #[error("{path}: invalid path inside the root: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error(
        "cannot resolve {path} inside the root: openat2 is not available (Linux 5.6 or newer is \
         needed to resolve paths safely inside an image)"
    )]
    Openat2Unsupported { path: String },
    #[error("cannot {op} {path} inside the root: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{path} inside the root is not a directory")]
    NotADirectory { path: String },
    #[error("{path} inside the root is not a regular file")]
    NotARegularFile { path: String },
    #[error("{path} inside the root is larger than {limit} bytes, refusing to read it")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} inside the root is a symlink to a missing file, refusing to create through it")]
    DanglingSymlink { path: String },
    #[error("{path} inside the root is a directory, but a single-file volume is mounted there")]
    DirectoryForFile { path: String },
}

impl InRootError {
    fn io(op: &'static str, path: &str, e: impl Into<io::Error>) -> Self {
        InRootError::Io {
            op,
            path: path.to_owned(),
            source: e.into(),
        }
    }
}

/// What [`prepare_mount_target`] found at the target, so the caller can warn (V5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetInfo {
    /// Nothing was there; a directory or an empty file was created.
    pub created: bool,
    /// A non-directory (or a dangling or wrong-type symlink) was removed to make room (V4).
    pub replaced_non_dir: bool,
    /// The existing target has content that the mount hides: a non-empty directory (V3) or a
    /// non-empty file.
    pub masked_entries: bool,
}

/// Opens an app root (a host path, trusted) as the anchor for every other call here.
pub fn open_root(dir: &Path) -> Result<OwnedFd, InRootError> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| InRootError::OpenRoot {
        dir: dir.to_owned(),
        source: e.into(),
    })
}

/// `/proc/self/fd/N`: how a descriptor is named to `mount(2)` and other path-taking calls.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Normalises a path inside a root lexically: `/`-separated, absolute, `.` and empty components
/// dropped, `..` removing the previous component and clamped at `/` (as RESOLVE_IN_ROOT does).
/// NUL bytes are refused.
pub fn normalize_in_root(path: &str) -> Result<String, InRootError> {
    Ok(join_components(&components(path)?))
}

fn components(path: &str) -> Result<Vec<&str>, InRootError> {
    if path.contains('\0') {
        return Err(InRootError::InvalidPath {
            path: path.to_owned(),
            reason: "it contains a NUL byte",
        });
    }
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join_components(comps: &[&str]) -> String {
    if comps.is_empty() {
        return "/".to_owned();
    }
    comps.iter().fold(String::new(), |s, c| s + "/" + c)
}

/// The one openat2 call: resolution confined to `root`, magic links refused.
fn resolve(
    root: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let path = if path.is_empty() { "/" } else { path };
    let mut tries = 0;
    loop {
        match openat2(root, path, flags | OFlags::CLOEXEC, mode, how) {
            Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// Opens one component `name` of an already resolved directory without following anything.
fn open_child(dir: BorrowedFd<'_>, name: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    openat2(
        dir,
        name,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        how,
    )
}

fn map_err(op: &'static str, path: &str, e: Errno) -> InRootError {
    match e {
        Errno::NOSYS => InRootError::Openat2Unsupported {
            path: path.to_owned(),
        },
        e => InRootError::io(op, path, e),
    }
}

fn is_absent(e: Errno) -> bool {
    e == Errno::NOENT || e == Errno::NOTDIR
}

/// Opens `path` inside the root with `flags` (O_CLOEXEC is always added). With O_CREAT or
/// O_TMPFILE the new file gets mode 0644.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
) -> Result<OwnedFd, InRootError> {
    // O_TMPFILE includes the O_DIRECTORY bit, so `intersects` would match plain directories.
    let mode = if flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE) {
        Mode::from_raw_mode(FILE_TARGET_MODE)
    } else {
        Mode::empty()
    };
    resolve(root, path, flags, mode).map_err(|e| map_err("open", path, e))
}

/// `stat` of `path` inside the root, following symlinks inside the root; `None` when it does
/// not exist (including a dangling symlink or a non-directory in the middle).
pub fn stat_in_root(root: BorrowedFd<'_>, path: &str) -> Result<Option<Stat>, InRootError> {
    match resolve(root, path, OFlags::PATH, Mode::empty()) {
        Ok(fd) => fstat(&fd).map(Some).map_err(|e| map_err("stat", path, e)),
        Err(e) if is_absent(e) => Ok(None),
        Err(e) => Err(map_err("open", path, e)),
    }
}

/// Reads a regular file inside the root; `None` when absent. Anything but a regular file (a FIFO
/// would block, a device could have side effects on open) and anything over `limit` bytes is an
/// error, so a hostile image cannot hang us or make us read gigabytes.
pub fn read_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, InRootError> {
    // Check the type through an O_PATH descriptor first: opening a FIFO or a device for
    // reading already has effects.
    let probe = match resolve(root, path, OFlags::PATH, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if is_absent(e) => return Ok(None),
        Err(e) => return Err(map_err("open", path, e)),
    };
    let before = fstat(&probe).map_err(|e| map_err("stat", path, e))?;
    if FileType::from_raw_mode(before.st_mode) != FileType::RegularFile {
        return Err(InRootError::NotARegularFile {
            path: path.to_owned(),
        });
    }
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = resolve(root, path, flags, Mode::empty()).map_err(|e| map_err("open", path, e))?;
    let after = fstat(&fd).map_err(|e| map_err("stat", path, e))?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(InRootError::io(
            "read",
            path,
            io::Error::other("the file was replaced while it was opened"),
        ));
    }
    read_limited(File::from(fd), path, limit).map(Some)
}

fn read_limited(file: File, path: &str, limit: u64) -> Result<Vec<u8>, InRootError> {
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| InRootError::io("read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(InRootError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

/// `mkdir -p` inside the root: missing components are created mode 0755 owned 0:0 (V2, V7);
/// existing ones (also symlinks to directories inside the root) are kept as they are. Returns an
/// O_PATH descriptor of the directory.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, InRootError> {
    let comps = components(path)?;
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
    let mut cur =
        resolve(root, "/", dir_flags, Mode::empty()).map_err(|e| map_err("open", "/", e))?;
    for i in 0..comps.len() {
        // Each prefix is resolved from the root again, so a relative symlink met on the way is
        // interpreted relative to its real parent, never against the directory we hold.
        let prefix = join_components(&comps[..=i]);
        cur = match resolve(root, &prefix, dir_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => create_dir_at(cur.as_fd(), comps[i], &prefix)?,
            Err(Errno::NOTDIR) => return Err(InRootError::NotADirectory { path: prefix }),
            Err(e) => return Err(map_err("open", &prefix, e)),
        };
    }
    Ok(cur)
}

/// Creates directory `name` in the resolved directory `parent`, mode 0755, owner 0:0 (V7), and
/// returns an O_PATH descriptor of it.
fn create_dir_at(parent: BorrowedFd<'_>, name: &str, path: &str) -> Result<OwnedFd, InRootError> {
    match mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) => {}
        // The resolution said ENOENT but the name exists: a symlink to nothing. mkdir -p
        // refuses it too; creating its target would write where the image author pointed.
        Err(Errno::EXIST) => {
            return Err(InRootError::DanglingSymlink {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(map_err("create directory", path, e)),
    }
    let dir = open_child(parent, name, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| map_err("open", path, e))?;
    set_owner_mode(dir.as_fd(), path, DIR_MODE)?;
    open_child(parent, name, OFlags::PATH | OFlags::DIRECTORY).map_err(|e| map_err("open", path, e))
}

/// Owner 0:0 (the parent may be setgid) and an exact mode (the umask may be anything).
fn set_owner_mode(fd: BorrowedFd<'_>, path: &str, mode: u32) -> Result<(), InRootError> {
    let st = fstat(fd).map_err(|e| map_err("stat", path, e))?;
    if (st.st_uid, st.st_gid) != (0, 0) {
        let (uid, gid) = (Some(Uid::ROOT), Some(Gid::ROOT));
        fchown(fd, uid, gid).map_err(|e| map_err("chown", path, e))?;
    }
    fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| map_err("chmod", path, e))
}

/// Splits a normalised path into its parent and last component; `None` for `/`.
fn split_last(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    let name = &path[i + 1..];
    (!name.is_empty()).then(|| (if i == 0 { "/" } else { &path[..i] }, name))
}

/// Prepares the mount target of a bind mount at `path` inside the root: a directory for a
/// directory source (V2; an existing non-directory is replaced, V4), a regular file for a file
/// source (created empty, V10). Parents are created as by [`mkdir_all_in_root`]. Returns an
/// O_PATH descriptor of the target, to mount onto through [`fd_path`], and what was there (V5).
pub fn prepare_mount_target(
    root: BorrowedFd<'_>,
    path: &str,
    is_file: bool,
) -> Result<(OwnedFd, TargetInfo), InRootError> {
    let norm = normalize_in_root(path)?;
    let Some((parent_path, name)) = split_last(&norm) else {
        return Err(InRootError::InvalidPath {
            path: path.to_owned(),
            reason: "a volume cannot be mounted over the whole root",
        });
    };
    let parent = mkdir_all_in_root(root, parent_path)?;
    let parent = parent.as_fd();
    match statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => create_target(parent, name, &norm, is_file, TargetInfo::default()),
        Err(e) => Err(map_err("stat", &norm, e)),
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => symlink_target(root, parent, name, &norm, is_file),
            FileType::Directory => existing_dir_target(parent, name, &norm, is_file),
            _ if is_file => {
                let info = TargetInfo {
                    masked_entries: st.st_size > 0
                        || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile,
                    ..TargetInfo::default()
                };
                Ok((open_target(parent, name, &norm, false)?, info))
            }
            _ => {
                // V4: a file where a directory volume goes is removed and replaced.
                unlinkat(parent, name, AtFlags::empty())
                    .map_err(|e| map_err("remove", &norm, e))?;
                let info = TargetInfo {
                    replaced_non_dir: true,
                    ..TargetInfo::default()
                };
                create_target(parent, name, &norm, false, info)
            }
        },
    }
}

/// A symlink at the target: followed (inside the root) when it leads to the right type, so
/// `/var/run -> /run` works; otherwise (dangling, loop, wrong type) removed and replaced (V4).
fn symlink_target(
    root: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    is_file: bool,
) -> Result<(OwnedFd, TargetInfo), InRootError> {
    if let Ok(fd) = resolve(root, path, OFlags::PATH, Mode::empty()) {
        let st = fstat(&fd).map_err(|e| map_err("stat", path, e))?;
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir != is_file {
            let masked_entries = if is_dir {
                dir_has_entries(root, path)?
            } else {
                st.st_size > 0
            };
            let info = TargetInfo {
                masked_entries,
                ..TargetInfo::default()
            };
            return Ok((fd, info));
        }
    }
    unlinkat(parent, name, AtFlags::empty()).map_err(|e| map_err("remove", path, e))?;
    let info = TargetInfo {
        replaced_non_dir: true,
        ..TargetInfo::default()
    };
    create_target(parent, name, path, is_file, info)
}

fn existing_dir_target(
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    is_file: bool,
) -> Result<(OwnedFd, TargetInfo), InRootError> {
    if is_file {
        return Err(InRootError::DirectoryForFile {
            path: path.to_owned(),
        });
    }
    let dir = open_child(parent, name, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| map_err("open", path, e))?;
    let info = TargetInfo {
        masked_entries: has_entries(dir, path)?,
        ..TargetInfo::default()
    };
    Ok((open_target(parent, name, path, true)?, info))
}

fn dir_has_entries(root: BorrowedFd<'_>, path: &str) -> Result<bool, InRootError> {
    let dir = resolve(
        root,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .map_err(|e| map_err("open", path, e))?;
    has_entries(dir, path)
}

/// Whether a directory has anything besides `.` and `..` (V3/V5: its contents get hidden).
fn has_entries(dir: OwnedFd, path: &str) -> Result<bool, InRootError> {
    let mut entries = Dir::new(dir).map_err(|e| map_err("read directory", path, e))?;
    for entry in &mut entries {
        let entry = entry.map_err(|e| map_err("read directory", path, e))?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(true);
        }
    }
    Ok(false)
}

fn create_target(
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    is_file: bool,
    mut info: TargetInfo,
) -> Result<(OwnedFd, TargetInfo), InRootError> {
    if is_file {
        let file = create_excl(parent, name, path, FILE_TARGET_MODE)?
            .ok_or_else(|| InRootError::io("create", path, io::Error::from(Errno::EXIST)))?;
        set_owner_mode(file.as_fd(), path, FILE_TARGET_MODE)?;
    } else {
        create_dir_at(parent, name, path)?;
    }
    info.created = true;
    Ok((open_target(parent, name, path, !is_file)?, info))
}

fn open_target(
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    dir: bool,
) -> Result<OwnedFd, InRootError> {
    let flags = if dir {
        OFlags::PATH | OFlags::DIRECTORY
    } else {
        OFlags::PATH
    };
    open_child(parent, name, flags).map_err(|e| map_err("open", path, e))
}

/// O_CREAT|O_EXCL of `name` in a resolved directory: never follows a symlink (O_EXCL fails on
/// one, even a dangling one); `None` when something is already there.
fn create_excl(
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    mode: u32,
) -> Result<Option<OwnedFd>, InRootError> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(parent, name, flags, Mode::from_raw_mode(mode), how) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::EXIST) | Err(Errno::LOOP) => Ok(None),
        Err(e) => Err(map_err("create", path, e)),
    }
}

/// Creates a file with `content` and exactly `mode` (owner 0:0) at `path`, creating missing
/// parents as [`mkdir_all_in_root`] does, unless something (even a dangling symlink) already
/// exists there: then returns `false` and leaves it untouched. Not atomic against a crash: app
/// roots are fresh copies for every run (F7), so a half-written file does not survive.
pub fn create_file_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<bool, InRootError> {
    let norm = normalize_in_root(path)?;
    let Some((parent_path, name)) = split_last(&norm) else {
        return Err(InRootError::InvalidPath {
            path: path.to_owned(),
            reason: "it names the root directory, not a file",
        });
    };
    let parent = mkdir_all_in_root(root, parent_path)?;
    let Some(fd) = create_excl(parent.as_fd(), name, &norm, mode)? else {
        return Ok(false);
    };
    set_owner_mode(fd.as_fd(), &norm, mode)?;
    let mut file = File::from(fd);
    io::Write::write_all(&mut file, content).map_err(|e| InRootError::io("write", &norm, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    fn host_exists(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        (dir, fd)
    }

    #[test]
    fn normalize_clamps_dotdot_at_root() {
        assert_eq!(normalize_in_root("/a/./b//../c/").unwrap(), "/a/c");
        assert_eq!(normalize_in_root("../../etc").unwrap(), "/etc");
        assert_eq!(normalize_in_root("/").unwrap(), "/");
        assert_eq!(normalize_in_root("").unwrap(), "/");
        assert!(normalize_in_root("/a\0b").is_err());
    }

    #[test]
    fn split_last_of_normalised_paths() {
        assert_eq!(split_last("/a"), Some(("/", "a")));
        assert_eq!(split_last("/a/b"), Some(("/a", "b")));
        assert_eq!(split_last("/"), None);
    }

    #[test]
    fn absolute_symlink_is_clamped_to_root() {
        let (dir, fd) = root();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("inner/f"), "inside").unwrap();
        symlink("/inner", dir.path().join("link")).unwrap();
        let got = read_in_root(fd.as_fd(), "/link/f", 100).unwrap();
        assert_eq!(got.as_deref(), Some(&b"inside"[..]));
    }

    #[test]
    fn read_limits_and_types() {
        let (dir, fd) = root();
        std::fs::write(dir.path().join("big"), vec![b'x'; 101]).unwrap();
        assert!(matches!(
            read_in_root(fd.as_fd(), "/big", 100),
            Err(InRootError::TooLarge { .. })
        ));
        assert_eq!(
            read_in_root(fd.as_fd(), "/big", 101)
                .unwrap()
                .unwrap()
                .len(),
            101
        );
        assert!(matches!(
            read_in_root(fd.as_fd(), "/", 100),
            Err(InRootError::NotARegularFile { .. })
        ));
        assert_eq!(read_in_root(fd.as_fd(), "/missing", 100).unwrap(), None);
        assert_eq!(read_in_root(fd.as_fd(), "/big/below", 100).unwrap(), None);
    }

    #[test]
    fn mkdir_all_creates_0755_root_owned() {
        let (dir, fd) = root();
        let made = mkdir_all_in_root(fd.as_fd(), "/a/b/c").unwrap();
        let st = fstat(&made).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Directory);
        for p in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(dir.path().join(p)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o755, "{p}");
            assert_eq!((m.uid(), m.gid()), (0, 0), "{p}");
        }
        // Idempotent.
        mkdir_all_in_root(fd.as_fd(), "/a/b/c").unwrap();
        assert!(host_exists(&dir.path().join("a/b/c")));
    }

    #[test]
    fn mkdir_all_refuses_files_and_dangling_links() {
        let (dir, fd) = root();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert!(matches!(
            mkdir_all_in_root(fd.as_fd(), "/file/sub"),
            Err(InRootError::NotADirectory { .. })
        ));
        symlink("/nowhere", dir.path().join("dangling")).unwrap();
        assert!(matches!(
            mkdir_all_in_root(fd.as_fd(), "/dangling/sub"),
            Err(InRootError::DanglingSymlink { .. })
        ));
        assert!(!host_exists(&dir.path().join("nowhere")));
    }

    #[test]
    fn mount_target_replaces_file_with_dir() {
        let (dir, fd) = root();
        std::fs::write(dir.path().join("t"), "x").unwrap();
        let (_t, info) = prepare_mount_target(fd.as_fd(), "/t", false).unwrap();
        assert!(info.replaced_non_dir && info.created);
        assert!(dir.path().join("t").is_dir());
    }

    #[test]
    fn mount_target_reports_masked_entries() {
        let (dir, fd) = root();
        std::fs::create_dir_all(dir.path().join("d/sub")).unwrap();
        let (_t, info) = prepare_mount_target(fd.as_fd(), "/d", false).unwrap();
        assert_eq!(
            info,
            TargetInfo {
                masked_entries: true,
                ..TargetInfo::default()
            }
        );
        let (_t, info) = prepare_mount_target(fd.as_fd(), "/d/sub", false).unwrap();
        assert!(!info.masked_entries && !info.created);
    }

    #[test]
    fn file_mount_target() {
        let (dir, fd) = root();
        let (t, info) = prepare_mount_target(fd.as_fd(), "/etc/resolv.conf", true).unwrap();
        assert!(info.created);
        let st = fstat(&t).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::RegularFile);
        assert_eq!(
            std::fs::metadata(dir.path().join("etc/resolv.conf"))
                .unwrap()
                .len(),
            0
        );
        assert!(matches!(
            prepare_mount_target(fd.as_fd(), "/etc", true),
            Err(InRootError::DirectoryForFile { .. })
        ));
        assert!(prepare_mount_target(fd.as_fd(), "/", false).is_err());
    }

    #[test]
    fn create_file_keeps_existing() {
        let (dir, fd) = root();
        assert!(
            create_file_in_root(fd.as_fd(), "/etc/hosts", b"127.0.0.1 localhost\n", 0o600).unwrap()
        );
        let m = std::fs::metadata(dir.path().join("etc/hosts")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert!(!create_file_in_root(fd.as_fd(), "/etc/hosts", b"other", 0o644).unwrap());
        let text = std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap();
        assert_eq!(text, "127.0.0.1 localhost\n");
    }

    #[test]
    fn fd_path_names_proc() {
        let (_dir, fd) = root();
        let p = fd_path(fd.as_fd());
        assert!(p.starts_with("/proc/self/fd"));
        assert!(std::fs::metadata(&p).unwrap().is_dir());
    }
}
