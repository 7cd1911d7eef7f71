//! The host programs the harness drives, located once, and the capability probe behind the skip
//! policy.
//!
//! WHY external programs instead of syscalls: the package denies `unsafe_code` and its `nix`
//! dependency only has the `fs` feature, so mount(2), setns(2), kill(2) and prctl(2) are reached
//! through util-linux (`mount`, `umount`, `nsenter`, `unshare`, `setpriv`) and procps (`kill`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{cgroup, procfs};

/// Absolute paths of every program the harness runs on the machine itself.
#[derive(Debug)]
pub struct Tools {
    pub nspawn: PathBuf,
    pub nsenter: PathBuf,
    pub unshare: PathBuf,
    pub setpriv: PathBuf,
    pub mount: PathBuf,
    pub umount: PathBuf,
    pub kill: PathBuf,
    pub sh: PathBuf,
}

/// Where `systemd-nspawn -b` looks for an init inside the (overlaid) root.
const SYSTEMD_INIT: [&str; 2] = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"];

/// Directories searched in addition to `$PATH`: `cargo test` may run with a user's `PATH` that
/// lacks the sbin directories where `mount`/`umount` live on some distributions.
const EXTRA_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The located tools, or the reason (a missing program) they cannot be used.
pub fn get() -> Result<&'static Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS.get_or_init(locate).as_ref().map_err(Clone::clone)
}

fn locate() -> Result<Tools, String> {
    let find = |name: &str, package: &str| {
        which(name).ok_or_else(|| format!("`{name}` not found (install the `{package}` package)"))
    };
    Ok(Tools {
        nspawn: find("systemd-nspawn", "systemd-container")?,
        nsenter: find("nsenter", "util-linux")?,
        unshare: find("unshare", "util-linux")?,
        setpriv: find("setpriv", "util-linux")?,
        mount: find("mount", "mount")?,
        umount: find("umount", "mount")?,
        kill: find("kill", "procps")?,
        sh: find("sh", "dash")?,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why a test host cannot boot on this machine, or `None` if it can. Cheap: no mounts, no
/// processes, only file lookups.
pub fn missing_capability() -> Option<String> {
    if procfs::effective_uid() != Some(0) {
        return Some("the systemd test host needs root (mounts, namespaces, cgroups)".into());
    }
    if let Err(reason) = get() {
        return Some(reason);
    }
    if !SYSTEMD_INIT.iter().any(|p| is_executable(Path::new(p))) {
        return Some("no systemd on this machine to boot inside the test host".into());
    }
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Some("overlayfs is not available (try `modprobe overlay`)".into());
    }
    match cgroup::own_hierarchies() {
        Ok(dirs) if !dirs.is_empty() => None,
        Ok(_) => Some("no systemd or unified cgroup hierarchy is mounted".into()),
        Err(e) => Some(format!("cannot read this process's cgroups: {e}")),
    }
}
