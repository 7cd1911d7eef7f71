//! Resource isolation through cgroups: ace.md "Isolators" (appc-requirements.md §2.5.8, G1–G3)
//! for `resource/memory`, `resource/cpu` and `os/linux/cpu-shares`.
//!
//! DESIGN.md "Process model": with systemd on PID 1 the pod's scope carries the limits; without
//! it, [`CgroupFs`] writes the few cgroupfs knobs itself (reference/crates.md §3.4 explains why
//! cgroups-rs is not used). [`Resources::from_isolators`] turns pod and app isolators into one set
//! of limits and says, per isolator, whether it was enforced, changed or ignored (G3).
//!
//! Decisions:
//! - pod-level isolators bound app-level ones (G1): the effective limit is the smaller of both;
//! - a memory limit also limits swap (`memory.swap.max = 0`, v1 `memory.memsw.limit_in_bytes`
//!   equal to the limit) when the kernel offers the knob, otherwise the app could exceed its
//!   limit by swapping, which ace.md forbids ("over limit ⇒ terminate or throttle");
//! - cgroup v2 is detected by statfs(2) on the root (`CGROUP2_SUPER_MAGIC`), and a hybrid host
//!   counts as v1 because its resource controllers are on the v1 hierarchies;
//! - isolators other than resources (capabilities, seccomp, …) are applied and reported
//!   elsewhere; `pids_max` has no appc isolator and is set by the caller.
//!
//! ```no_run
//! use appc_pod::cgroup::{CgroupFs, CgroupManager, Resources};
//! # fn main() -> Result<(), appc_pod::cgroup::CgroupError> {
//! let fs = CgroupFs::detect()?;
//! let (res, reports) = Resources::from_isolators(&[], &[]);
//! for report in &reports {
//!     eprintln!("{report}"); // G3: tell the user what was enforced, changed or ignored
//! }
//! let pod = fs.create("mypod", &res)?;
//! fs.add_process(&pod, std::process::id())?;
//! println!("{:?}", fs.stats(&pod));
//! fs.remove(&pod)?;
//! # Ok(())
//! # }
//! ```

mod fs;
mod resources;

pub use fs::{CgroupFs, Controller, Version};
pub use resources::{IsolatorReport, Outcome, Resources, shares_to_weight};

use std::io;
use std::path::PathBuf;

use rustix::process::Signal;

/// Why a cgroup operation failed; every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot detect the cgroup version of {path}")]
    Detect { path: PathBuf, source: io::Error },
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot create cgroup directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cgroup {path} already exists, refusing to share it")]
    Exists { path: PathBuf },
    #[error("cannot remove cgroup directory {path}")]
    RemoveDir { path: PathBuf, source: io::Error },
    #[error("controller {controller} is not available under {path}, sorry")]
    MissingController {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("cannot send signal {signal} to pid {pid} of cgroup {name}")]
    Kill {
        name: String,
        pid: u32,
        signal: i32,
        source: io::Error,
    },
    #[error("processes {pids:?} still in cgroup {name} after {waited_ms} ms")]
    Busy {
        name: String,
        pids: Vec<u32>,
        waited_ms: u128,
    },
}

/// A created cgroup: its name and one directory per hierarchy (one on v2, one per controller
/// on v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHandle {
    name: String,
    dirs: Vec<PathBuf>,
}

impl CgroupHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directories of this cgroup, one per hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Usage counters of a cgroup; `None` when the kernel does not offer the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_current: Option<u64>,
    /// OOM kills inside the cgroup (v2 `memory.events`, v1 `memory.oom_control` `oom_kill`,
    /// falling back to `memory.failcnt`, which counts limit hits rather than kills).
    pub oom_kills: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
}

/// Creates, fills, limits and removes the cgroups of pods.
pub trait CgroupManager {
    /// Creates cgroup `name` with `res` applied; fails if it already exists.
    fn create(&self, name: &str, res: &Resources) -> Result<CgroupHandle, CgroupError>;
    /// Moves `pid` (the whole process) into the cgroup.
    fn add_process(&self, h: &CgroupHandle, pid: u32) -> Result<(), CgroupError>;
    /// The processes in the cgroup (empty if it is gone).
    fn pids(&self, h: &CgroupHandle) -> Vec<u32>;
    /// Sends `signal` to every process in the cgroup; processes that already exited are fine.
    fn kill_all(&self, h: &CgroupHandle, signal: Signal) -> Result<(), CgroupError>;
    /// SIGKILLs what is left, waits for it to go, and removes the cgroup. Idempotent.
    fn remove(&self, h: &CgroupHandle) -> Result<(), CgroupError>;
    /// Usage counters.
    fn stats(&self, h: &CgroupHandle) -> Stats;
}

/// Checks a cgroup name: `/`-separated components (a pod and its apps nest), each checked by
/// [`check_component`], joined under the `appc` parent.
pub fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.starts_with('/') || name.ends_with('/') {
        return Err(CgroupError::InvalidName {
            name: name.to_owned(),
            reason: "it starts or ends with '/'",
        });
    }
    name.split('/').try_for_each(|c| {
        check_component(c).map_err(|e| match e {
            CgroupError::InvalidName { reason, .. } => CgroupError::InvalidName {
                name: name.to_owned(),
                reason,
            },
            other => other,
        })
    })
}

/// Checks one component of a cgroup name.
pub fn check_component(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("it is a relative path component");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains '/' or NUL");
    }
    // cgroupfs reserves the `cgroup.` prefix and its knobs look like `memory.max`; a name
    // with a dot after a controller name could clash, so dots in front are refused too.
    if name.starts_with('.') || name.starts_with("cgroup.") {
        return bad("it starts with '.' or \"cgroup.\"");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        for bad in [
            "",
            ".",
            "..",
            "a/../b",
            "a//b",
            "a/",
            "/a",
            "cgroup.procs",
            ".hidden",
            "a\0b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["pod-1", "appc-abc_def", "a.b", "pod/app", "pod/_init"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }
}
