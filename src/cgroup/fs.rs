//! The cgroupfs manager: writes the knobs of cgroup v1 (one hierarchy per controller) or v2
//! (the unified hierarchy) under an `appc` parent. Knob names and formats follow the kernel's
//! Documentation/admin-guide/cgroup-v1/{memory,pids}.rst, scheduler/sched-bwc.rst and
//! cgroup-v2.rst.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::resources::shares_to_weight;
use super::{CgroupError, CgroupHandle, CgroupManager, Resources, Stats, check_name};

/// statfs(2) `f_type` of a cgroup2 mount (linux/magic.h).
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// The directory under each hierarchy that holds the pods' cgroups.
const PARENT: &str = "appc";
/// CFS period; 100 ms is the kernel's and systemd's default (sched-bwc.rst).
const CPU_PERIOD_USEC: u64 = 100_000;
/// How long `remove` waits for killed processes to leave the cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The v1 controllers this manager uses (cpuacct only for the usage counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// One mount point per controller (co-mounted controllers share one).
    V1 {
        controllers: BTreeMap<Controller, PathBuf>,
    },
    /// The unified hierarchy at the manager's root.
    V2,
}

/// Finds the v1 controller mount points in `/proc/self/mountinfo` text (proc(5)): the mount
/// point is field 5, and the super options after the `-` separator name the controllers.
pub fn parse_mountinfo(text: &str) -> BTreeMap<Controller, PathBuf> {
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some("cgroup"), Some(_source), Some(opts)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        for ctrl in opts.split(',').filter_map(Controller::from_name) {
            found
                .entry(ctrl)
                .or_insert_with(|| PathBuf::from(mount_point));
        }
    }
    found
}

/// The cgroupfs manager. See the module docs.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    version: Version,
}

impl CgroupFs {
    /// Detects the layout of `/sys/fs/cgroup`.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// Detects the layout at `root`: cgroup2 if its statfs type is `CGROUP2_SUPER_MAGIC`,
    /// otherwise v1 with the controllers of `/proc/self/mountinfo` (a hybrid host's
    /// `unified` mount holds no resource controllers, so hybrid counts as v1).
    pub fn detect_at(root: &Path) -> Result<Self, CgroupError> {
        let detect_err = |source| CgroupError::Detect {
            path: root.to_owned(),
            source,
        };
        let st = rustix::fs::statfs(root).map_err(|e| detect_err(e.into()))?;
        let version = if u64::try_from(st.f_type).ok() == Some(CGROUP2_SUPER_MAGIC) {
            Version::V2
        } else {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(detect_err)?;
            Version::V1 {
                controllers: parse_mountinfo(&mountinfo),
            }
        };
        Ok(CgroupFs {
            root: root.to_owned(),
            version,
        })
    }

    /// A manager with a forced layout, for tests against a temporary directory.
    pub fn with_version(root: PathBuf, version: Version) -> Self {
        CgroupFs { root, version }
    }

    /// The handle of cgroup `name` whether or not it exists, e.g. to remove a cgroup left
    /// behind by a crashed run (`create` refuses to reuse it).
    pub fn handle(&self, name: &str) -> Result<CgroupHandle, CgroupError> {
        check_name(name)?;
        Ok(CgroupHandle {
            name: name.to_owned(),
            dirs: self.dirs_of(name),
        })
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The directory of cgroup `name` for `ctrl` (on v2 the same for all controllers).
    fn dir_of(&self, ctrl: Controller, name: &str) -> Option<PathBuf> {
        match &self.version {
            Version::V2 => Some(self.root.join(PARENT).join(name)),
            Version::V1 { controllers } => {
                controllers.get(&ctrl).map(|m| m.join(PARENT).join(name))
            }
        }
    }

    fn dirs_of(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Controller::ALL
            .into_iter()
            .filter_map(|c| self.dir_of(c, name))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The directory for `ctrl`, or an error if a limit needs a controller the host lacks.
    fn needed_dir(&self, ctrl: Controller, name: &str) -> Result<PathBuf, CgroupError> {
        self.dir_of(ctrl, name)
            .ok_or(CgroupError::MissingController {
                controller: ctrl.name(),
                path: self.root.clone(),
            })
    }

    fn create_dirs(&self, dirs: &[PathBuf]) -> Result<(), CgroupError> {
        for dir in dirs {
            let parent = dir.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent).map_err(|source| CgroupError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(CgroupError::Exists { path: dir.clone() });
                }
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn write_limits(&self, name: &str, res: &Resources) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => write_limits_v2(&self.root.join(PARENT).join(name), res),
            Version::V1 { .. } => self.write_limits_v1(name, res),
        }
    }

    fn write_limits_v1(&self, name: &str, res: &Resources) -> Result<(), CgroupError> {
        if let Some(bytes) = res.memory_max {
            let dir = self.needed_dir(Controller::Memory, name)?;
            write_knob(&dir.join("memory.limit_in_bytes"), bytes)?;
            // memsw is memory+swap; setting it to the same value forbids swapping (module docs).
            // It must be written after limit_in_bytes, which it may never be below.
            write_if_exists(&dir.join("memory.memsw.limit_in_bytes"), bytes)?;
        }
        if res.cpu_quota_milli.is_some() || res.cpu_weight_shares.is_some() {
            let dir = self.needed_dir(Controller::Cpu, name)?;
            if let Some(milli) = res.cpu_quota_milli {
                write_knob(&dir.join("cpu.cfs_period_us"), CPU_PERIOD_USEC)?;
                write_knob(&dir.join("cpu.cfs_quota_us"), quota_usec(milli))?;
            }
            if let Some(shares) = res.cpu_weight_shares {
                write_knob(&dir.join("cpu.shares"), shares)?;
            }
        }
        if let Some(max) = res.pids_max {
            write_knob(
                &self.needed_dir(Controller::Pids, name)?.join("pids.max"),
                max,
            )?;
        }
        Ok(())
    }

    /// v2 only lets a cgroup use the controllers its parent enabled in `cgroup.subtree_control`
    /// (cgroup-v2.rst "Top-down Constraint"), so enable them on the root and on `appc`.
    fn enable_v2_controllers(&self, name: &str, res: &Resources) -> Result<(), CgroupError> {
        let path = self.root.join("cgroup.controllers");
        let available =
            std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
        let available: Vec<&str> = available.split_whitespace().collect();
        let mut enable = Vec::new();
        for (ctrl, needed) in [
            ("memory", res.memory_max.is_some()),
            (
                "cpu",
                res.cpu_quota_milli.is_some() || res.cpu_weight_shares.is_some(),
            ),
            ("pids", res.pids_max.is_some()),
        ] {
            if available.contains(&ctrl) {
                enable.push(format!("+{ctrl}"));
            } else if needed {
                return Err(CgroupError::MissingController {
                    controller: ctrl,
                    path: self.root.clone(),
                });
            }
        }
        let parent = self.root.join(PARENT);
        std::fs::create_dir_all(&parent).map_err(|source| CgroupError::CreateDir {
            path: parent.clone(),
            source,
        })?;
        let value = enable.join(" ");
        // Every ancestor of a nested cgroup (a pod's, for its apps) must delegate too.
        let mut dirs = vec![self.root.clone(), parent.clone()];
        let mut below = parent;
        for component in name
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            below = below.join(component);
            dirs.push(below.clone());
        }
        for dir in &dirs {
            write_knob(&dir.join("cgroup.subtree_control"), &value)?;
        }
        Ok(())
    }

    /// Removes the directories once empty; `Ok(false)` while processes keep one busy.
    fn rmdir_all(&self, dirs: &[PathBuf]) -> Result<bool, CgroupError> {
        let mut done = true;
        for dir in dirs {
            // On a read-only cgroupfs (a container's v1 hierarchies) rmdir fails with EROFS
            // even for a directory that is not there: nothing to remove is success.
            if !dir.exists() {
                continue;
            }
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // EBUSY: a task is still leaving (exit is not instant after SIGKILL).
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                    done = false;
                }
                Err(source) => {
                    return Err(CgroupError::RemoveDir {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        Ok(done)
    }
}

fn write_limits_v2(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    if let Some(bytes) = res.memory_max {
        write_knob(&dir.join("memory.max"), bytes)?;
        // Without this the app could exceed memory.max by swapping (module docs).
        write_if_exists(&dir.join("memory.swap.max"), 0)?;
    }
    if let Some(milli) = res.cpu_quota_milli {
        let value = format!("{} {CPU_PERIOD_USEC}", quota_usec(milli));
        write_knob(&dir.join("cpu.max"), value)?;
    }
    if let Some(shares) = res.cpu_weight_shares {
        write_knob(&dir.join("cpu.weight"), shares_to_weight(shares))?;
    }
    if let Some(max) = res.pids_max {
        write_knob(&dir.join("pids.max"), max)?;
    }
    Ok(())
}

/// The CFS quota per period for `milli` thousandths of a CPU.
fn quota_usec(milli: u64) -> u64 {
    milli.saturating_mul(CPU_PERIOD_USEC) / 1000
}

fn write_knob(path: &Path, value: impl ToString) -> Result<(), CgroupError> {
    let value = value.to_string();
    std::fs::write(path, &value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value,
        source,
    })
}

/// Writes an optional knob (swap accounting may be compiled out or disabled at boot).
fn write_if_exists(path: &Path, value: u64) -> Result<(), CgroupError> {
    if path.exists() {
        write_knob(path, value)
    } else {
        Ok(())
    }
}

fn read_procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// A file holding one number; `None` if missing or `max`.
fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn kill_pid(name: &str, pid: u32, signal: Signal) -> Result<(), CgroupError> {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    match kill_process(p, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(CgroupError::Kill {
            name: name.to_owned(),
            pid,
            signal: signal.as_raw(),
            source: io::Error::from(e),
        }),
    }
}

impl CgroupManager for CgroupFs {
    fn create(&self, name: &str, res: &Resources) -> Result<CgroupHandle, CgroupError> {
        check_name(name)?;
        if self.version == Version::V2 {
            self.enable_v2_controllers(name, res)?;
        }
        let dirs = self.dirs_of(name);
        if dirs.is_empty() {
            return Err(CgroupError::MissingController {
                controller: "any",
                path: self.root.clone(),
            });
        }
        let handle = CgroupHandle {
            name: name.to_owned(),
            dirs,
        };
        let created = self
            .create_dirs(&handle.dirs)
            .and_then(|()| self.write_limits(name, res));
        if let Err(e) = created {
            // Best effort: do not leave a half-configured cgroup behind; the first error is
            // the one the user needs. An `Exists` cgroup is someone else's and stays.
            if !matches!(e, CgroupError::Exists { .. }) {
                let _ = self.remove(&handle);
            }
            return Err(e);
        }
        Ok(handle)
    }

    fn add_process(&self, h: &CgroupHandle, pid: u32) -> Result<(), CgroupError> {
        h.dirs
            .iter()
            .try_for_each(|dir| write_knob(&dir.join("cgroup.procs"), pid))
    }

    fn pids(&self, h: &CgroupHandle) -> Vec<u32> {
        let mut pids: Vec<u32> = h.dirs.iter().flat_map(|d| read_procs(d)).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn kill_all(&self, h: &CgroupHandle, signal: Signal) -> Result<(), CgroupError> {
        // cgroup.kill (v2, Linux 5.14) kills atomically, so a forking app cannot escape.
        if let (Version::V2, Some(dir)) = (&self.version, h.dirs.first()) {
            let kill_file = dir.join("cgroup.kill");
            if signal == Signal::KILL && kill_file.exists() {
                return write_knob(&kill_file, 1);
            }
        }
        self.pids(h)
            .into_iter()
            .try_for_each(|pid| kill_pid(&h.name, pid, signal))
    }

    fn remove(&self, h: &CgroupHandle) -> Result<(), CgroupError> {
        let start = Instant::now();
        loop {
            let pids = self.pids(h);
            if pids.is_empty() && self.rmdir_all(&h.dirs)? {
                return Ok(());
            }
            if start.elapsed() > REMOVE_TIMEOUT {
                return Err(CgroupError::Busy {
                    name: h.name.clone(),
                    pids,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            // Repeated, because a process may fork between reading cgroup.procs and kill(2).
            self.kill_all(h, Signal::KILL)?;
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stats(&self, h: &CgroupHandle) -> Stats {
        let name = h.name.as_str();
        let dir = |c| self.dir_of(c, name);
        if self.version == Version::V2 {
            let d = self.root.join(PARENT).join(name);
            return Stats {
                memory_current: read_number(&d.join("memory.current")),
                oom_kills: read_keyed(&d.join("memory.events"), "oom_kill"),
                cpu_usage_usec: read_keyed(&d.join("cpu.stat"), "usage_usec"),
            };
        }
        let mem = dir(Controller::Memory);
        Stats {
            memory_current: mem
                .as_ref()
                .and_then(|d| read_number(&d.join("memory.usage_in_bytes"))),
            // `oom_kill` is in memory.oom_control since Linux 4.13; failcnt is the fallback.
            oom_kills: mem.as_ref().and_then(|d| {
                read_keyed(&d.join("memory.oom_control"), "oom_kill")
                    .or_else(|| read_number(&d.join("memory.failcnt")))
            }),
            // cpuacct.usage is in nanoseconds.
            cpu_usage_usec: dir(Controller::Cpuacct)
                .and_then(|d| read_number(&d.join("cpuacct.usage")))
                .map(|ns| ns / 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_v1_controllers() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let found = parse_mountinfo(text);
        assert_eq!(found.len(), 3);
        assert_eq!(
            found[&Controller::Cpuacct],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            found[&Controller::Memory],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert!(!found.contains_key(&Controller::Pids));
    }

    #[test]
    fn quota_is_per_100ms_period() {
        assert_eq!(quota_usec(200), 20_000);
        assert_eq!(quota_usec(1000), 100_000);
        assert_eq!(quota_usec(2500), 250_000);
    }

    #[test]
    fn keyed_files_are_parsed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("memory.events");
        std::fs::write(&p, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_keyed(&p, "oom_kill"), Some(2));
        assert_eq!(read_keyed(&p, "oom"), Some(1));
        assert_eq!(read_keyed(&p, "missing"), None);
    }
}
