//! `podprobe report`: what the app sees from inside the pod, as one JSON object. Every source
//! may be missing (an empty root has no /proc, /dev or /etc): a missing one gives `null` or an
//! empty list, never a crash.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::json::J;
use crate::sys;

/// Linux capability names by number (include/uapi/linux/capability.h), 0..=40.
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the bits set in a capability mask (`CAP_<n>` past the table).
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            CAP_NAMES
                .get(bit)
                .map_or_else(|| format!("CAP_{bit}"), |n| (*n).to_owned())
        })
        .collect()
}

fn lossy(s: &OsStr) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

fn path_str(p: &Path) -> String {
    lossy(p.as_os_str())
}

fn readlink(p: &str) -> Option<String> {
    fs::read_link(p).ok().map(|t| path_str(&t))
}

/// `/proc/self/status` as `(key, value)` pairs (empty without /proc).
fn status() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn status_get<'a>(st: &'a [(String, String)], key: &str) -> Option<&'a str> {
    st.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn cap_set(mask: Option<u64>) -> J {
    match mask {
        None => J::Null,
        Some(m) => J::obj(vec![
            ("hex", J::from(format!("{m:016x}"))),
            ("names", J::from(cap_names(m))),
        ]),
    }
}

fn caps(st: &[(String, String)]) -> J {
    let from_status = |k: &str| status_get(st, k).and_then(|v| u64::from_str_radix(v, 16).ok());
    let keys = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];
    let (masks, source): ([Option<u64>; 5], &str) = if status_get(st, "CapEff").is_some() {
        (keys.map(from_status), "/proc/self/status")
    } else {
        let (inh, prm, eff) = match sys::capget() {
            Some((i, p, e)) => (Some(i), Some(p), Some(e)),
            None => (None, None, None),
        };
        let (bnd, amb) = sys::cap_bounding_ambient();
        ([inh, prm, eff, bnd, amb], "syscalls")
    };
    J::obj(vec![
        ("source", J::from(source)),
        ("inheritable", cap_set(masks[0])),
        ("permitted", cap_set(masks[1])),
        ("effective", cap_set(masks[2])),
        ("bounding", cap_set(masks[3])),
        ("ambient", cap_set(masks[4])),
    ])
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    pub dev: String,
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
            Some(Mount {
                id: l[0].parse().ok()?,
                parent: l[1].parse().ok()?,
                dev: l[2].to_owned(),
                root: unescape(l[3]),
                mount_point: unescape(l[4]),
                options: split(l[5]),
                optional: l[6..].iter().map(|s| (*s).to_owned()).collect(),
                fstype: r[0].to_owned(),
                source: unescape(r[1]),
                super_options: split(r[2]),
            })
        })
        .collect()
}

fn mounts_json(mounts: &[Mount]) -> J {
    J::A(
        mounts
            .iter()
            .map(|m| {
                J::obj(vec![
                    ("id", J::from(m.id)),
                    ("parent", J::from(m.parent)),
                    ("dev", J::from(m.dev.as_str())),
                    ("root", J::from(m.root.as_str())),
                    ("mount_point", J::from(m.mount_point.as_str())),
                    ("fstype", J::from(m.fstype.as_str())),
                    ("source", J::from(m.source.as_str())),
                    ("ro", J::from(m.options.iter().any(|o| o == "ro"))),
                    ("options", J::from(m.options.clone())),
                    ("optional", J::from(m.optional.clone())),
                    ("super_options", J::from(m.super_options.clone())),
                ])
            })
            .collect(),
    )
}

/// One line of /proc/self/cgroup: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone)]
pub struct CgroupLine {
    pub id: u64,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctl = it.next()?;
            let path = it.next()?.to_owned();
            let controllers = ctl
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            Some(CgroupLine {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// The directory of our cgroup under a cgroupfs mount, or `None` if it is not visible.
fn cgroup_dir(m: &Mount, path: &str) -> Option<PathBuf> {
    let root = m.root.trim_end_matches('/');
    let rel = path
        .strip_prefix(root)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .unwrap_or(path);
    let dir = PathBuf::from(format!(
        "{}/{}",
        m.mount_point.trim_end_matches('/'),
        rel.trim_start_matches('/')
    ));
    if dir.is_dir() {
        return Some(dir);
    }
    // Inside a cgroup namespace without a matching mount root: the mount is our cgroup.
    Path::new(&m.mount_point)
        .is_dir()
        .then(|| PathBuf::from(&m.mount_point))
}

/// A cgroup directory found for a controller: its version and the directory, plus the mount point
/// (the top of the ancestor walk).
struct CgDir {
    version: u8,
    dir: PathBuf,
    top: PathBuf,
}

fn find_cgroup_dirs(
    cgroups: &[CgroupLine],
    mounts: &[Mount],
    controller: &str,
    v2_file: &str,
) -> Option<CgDir> {
    // cgroup v2: the 0:: line and a cgroup2 mount whose directory has the controller's file.
    if let Some(line) = cgroups
        .iter()
        .find(|c| c.id == 0 && c.controllers.is_empty())
    {
        for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
            if let Some(dir) = cgroup_dir(m, &line.path)
                && dir.join(v2_file).exists()
            {
                return Some(CgDir {
                    version: 2,
                    dir,
                    top: PathBuf::from(&m.mount_point),
                });
            }
        }
    }
    // cgroup v1: the hierarchy line naming the controller, and its cgroup mount.
    let line = cgroups
        .iter()
        .find(|c| c.controllers.iter().any(|x| x == controller))?;
    let m = mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))?;
    Some(CgDir {
        version: 1,
        dir: cgroup_dir(m, &line.path)?,
        top: PathBuf::from(&m.mount_point),
    })
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// A memory limit in bytes; `None` for unlimited ("max", or v1's huge page-counter maximum).
fn mem_bytes(raw: &str) -> Option<u64> {
    raw.parse::<u64>().ok().filter(|v| *v < (1u64 << 62))
}

fn memory_limit(cg: &[CgroupLine], mounts: &[Mount]) -> J {
    let Some(d) = find_cgroup_dirs(cg, mounts, "memory", "memory.max") else {
        return J::Null;
    };
    let name = if d.version == 2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let file = d.dir.join(name);
    let Some(raw) = read_trim(&file) else {
        return J::Null;
    };
    // The effective limit: the smallest along the ancestors up to the mount point.
    let mut effective: Option<u64> = None;
    let mut dir = Some(d.dir.as_path());
    while let Some(cur) = dir {
        if let Some(v) = read_trim(&cur.join(name)).as_deref().and_then(mem_bytes) {
            effective = Some(effective.map_or(v, |e| e.min(v)));
        }
        if cur == d.top {
            break;
        }
        dir = cur.parent();
    }
    J::obj(vec![
        ("version", J::from(u32::from(d.version))),
        ("file", J::from(path_str(&file))),
        ("raw", J::from(raw.as_str())),
        ("bytes", J::from(mem_bytes(&raw))),
        ("effective_bytes", J::from(effective)),
    ])
}

fn cpu_limit(cg: &[CgroupLine], mounts: &[Mount]) -> J {
    let Some(d) = find_cgroup_dirs(cg, mounts, "cpu", "cpu.max") else {
        return J::Null;
    };
    let (file, raw, quota, period) = if d.version == 2 {
        let file = d.dir.join("cpu.max");
        let Some(raw) = read_trim(&file) else {
            return J::Null;
        };
        let mut it = raw.split_whitespace();
        let quota = it.next().and_then(|q| q.parse::<u64>().ok());
        let period = it.next().and_then(|p| p.parse::<u64>().ok());
        (file, raw, quota, period)
    } else {
        let file = d.dir.join("cpu.cfs_quota_us");
        let Some(q) = read_trim(&file) else {
            return J::Null;
        };
        let p = read_trim(&d.dir.join("cpu.cfs_period_us")).unwrap_or_default();
        let quota = q.parse::<i64>().ok().filter(|v| *v >= 0).map(|v| v as u64);
        (file, format!("{q} {p}"), quota, p.parse::<u64>().ok())
    };
    // v2 cpu.weight (1..10000, default 100) or v1 cpu.shares (default 1024).
    let (weight_key, weight_file) = if d.version == 2 {
        ("weight", "cpu.weight")
    } else {
        ("shares", "cpu.shares")
    };
    let weight = read_trim(&d.dir.join(weight_file)).and_then(|w| w.parse::<u64>().ok());
    J::obj(vec![
        ("version", J::from(u32::from(d.version))),
        ("file", J::from(path_str(&file))),
        ("raw", J::from(raw)),
        ("quota_us", J::from(quota)),
        ("period_us", J::from(period)),
        (weight_key, J::from(weight)),
    ])
}

fn pids_limit(cg: &[CgroupLine], mounts: &[Mount]) -> J {
    let Some(d) = find_cgroup_dirs(cg, mounts, "pids", "pids.max") else {
        return J::Null;
    };
    let file = d.dir.join("pids.max");
    let Some(raw) = read_trim(&file) else {
        return J::Null;
    };
    J::obj(vec![
        ("version", J::from(u32::from(d.version))),
        ("file", J::from(path_str(&file))),
        ("max", J::from(raw.parse::<u64>().ok())),
        ("raw", J::from(raw)),
    ])
}

fn fds() -> (J, &'static str) {
    let from_proc = fs::read_dir("/proc/self/fd").ok().map(|rd| {
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .collect::<Vec<_>>()
    });
    // The directory is closed now: its own descriptor no longer resolves and drops out.
    match from_proc {
        Some(mut nums) => {
            nums.sort_unstable();
            let list = nums
                .into_iter()
                .filter_map(|fd| {
                    let target = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
                    Some(J::obj(vec![
                        ("fd", J::from(fd)),
                        ("target", J::from(path_str(&target))),
                    ]))
                })
                .collect();
            (J::A(list), "/proc/self/fd")
        }
        None => {
            let max = sys::getrlimit(libc::RLIMIT_NOFILE as i32)
                .and_then(|(soft, _)| soft)
                .unwrap_or(1024)
                .min(65536) as i32;
            let list = (0..max)
                .filter(|fd| sys::fd_is_open(*fd))
                .map(|fd| J::obj(vec![("fd", J::from(fd)), ("target", J::Null)]))
                .collect();
            (J::A(list), "fcntl")
        }
    }
}

const DEVICES: [&str; 15] = [
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm", "mqueue",
    "fd", "stdin", "stdout", "stderr",
];

fn devices() -> J {
    J::O(
        DEVICES
            .iter()
            .map(|name| {
                let path = format!("/dev/{name}");
                let v = match fs::symlink_metadata(&path) {
                    Err(_) => J::obj(vec![("exists", J::from(false))]),
                    Ok(md) => {
                        let ft = md.file_type();
                        let kind = if ft.is_char_device() {
                            "char"
                        } else if ft.is_block_device() {
                            "block"
                        } else if ft.is_dir() {
                            "dir"
                        } else if ft.is_symlink() {
                            "symlink"
                        } else if ft.is_fifo() {
                            "fifo"
                        } else if ft.is_socket() {
                            "socket"
                        } else {
                            "file"
                        };
                        let dev = ft.is_char_device() || ft.is_block_device();
                        let rdev = md.rdev();
                        J::obj(vec![
                            ("exists", J::from(true)),
                            ("type", J::from(kind)),
                            ("major", J::from(dev.then(|| libc::major(rdev)))),
                            ("minor", J::from(dev.then(|| libc::minor(rdev)))),
                            ("mode", J::from(format!("{:04o}", md.mode() & 0o7777))),
                            ("target", J::from(readlink(&path))),
                        ])
                    }
                };
                ((*name).to_owned(), v)
            })
            .collect(),
    )
}

const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

fn rlimits() -> J {
    J::O(
        RLIMITS
            .iter()
            .map(|(name, res)| {
                let v = match sys::getrlimit(*res as i32) {
                    None => J::Null,
                    Some((soft, hard)) => {
                        J::obj(vec![("soft", J::from(soft)), ("hard", J::from(hard))])
                    }
                };
                ((*name).to_owned(), v)
            })
            .collect(),
    )
}

const NAMESPACES: [&str; 9] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "user",
    "uts",
];

fn namespaces() -> J {
    J::O(
        NAMESPACES
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    J::from(readlink(&format!("/proc/self/ns/{n}"))),
                )
            })
            .collect(),
    )
}

fn status_num(st: &[(String, String)], key: &str) -> Option<i64> {
    status_get(st, key).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Builds the whole report.
pub fn report() -> J {
    let st = status();
    let (uid, euid, gid, egid) = sys::ids();
    let groups = sys::groups().or_else(|| {
        status_get(&st, "Groups").map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
    });
    let uts = sys::uname();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok();
    let mounts = mountinfo
        .as_deref()
        .map(parse_mountinfo)
        .unwrap_or_default();
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .map(|t| parse_cgroup(&t))
        .unwrap_or_default();
    let (no_new_privs, seccomp) = if status_get(&st, "NoNewPrivs").is_some() {
        (status_num(&st, "NoNewPrivs"), status_num(&st, "Seccomp"))
    } else {
        (sys::no_new_privs(), sys::seccomp_mode())
    };
    let (fds, fds_source) = fds();

    J::obj(vec![
        (
            "argv",
            J::from(std::env::args_os().map(|a| lossy(&a)).collect::<Vec<_>>()),
        ),
        (
            "env",
            J::O(
                std::env::vars_os()
                    .map(|(k, v)| (lossy(&k), J::from(lossy(&v))))
                    .collect(),
            ),
        ),
        (
            "cwd",
            J::from(std::env::current_dir().ok().map(|p| path_str(&p))),
        ),
        ("uid", J::from(uid)),
        ("euid", J::from(euid)),
        ("gid", J::from(gid)),
        ("egid", J::from(egid)),
        ("groups", J::from(groups.unwrap_or_default())),
        ("umask", J::from(status_get(&st, "Umask"))),
        ("caps", caps(&st)),
        ("no_new_privs", J::from(no_new_privs)),
        ("seccomp", J::from(seccomp)),
        (
            "seccomp_filters",
            J::from(status_num(&st, "Seccomp_filters")),
        ),
        (
            "cpus_allowed",
            J::from(status_get(&st, "Cpus_allowed_list")),
        ),
        (
            "hostname",
            J::from(uts.as_ref().map(|u| u.nodename.clone())),
        ),
        (
            "domainname",
            J::from(uts.as_ref().map(|u| u.domainname.clone())),
        ),
        (
            "kernel",
            match &uts {
                None => J::Null,
                Some(u) => J::obj(vec![
                    ("sysname", J::from(u.sysname.as_str())),
                    ("release", J::from(u.release.as_str())),
                    ("machine", J::from(u.machine.as_str())),
                ]),
            },
        ),
        ("pid", J::from(std::process::id())),
        ("ppid", J::from(sys::ppid())),
        ("proc_mounted", J::from(mountinfo.is_some())),
        ("mounts", mounts_json(&mounts)),
        (
            "cgroup",
            J::A(
                cgroups
                    .iter()
                    .map(|c| {
                        J::obj(vec![
                            ("id", J::from(c.id)),
                            ("controllers", J::from(c.controllers.clone())),
                            ("path", J::from(c.path.as_str())),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "limits",
            J::obj(vec![
                ("memory", memory_limit(&cgroups, &mounts)),
                ("cpu", cpu_limit(&cgroups, &mounts)),
                ("pids", pids_limit(&cgroups, &mounts)),
            ]),
        ),
        (
            "oom_score_adj",
            J::from(
                read_trim(Path::new("/proc/self/oom_score_adj"))
                    .and_then(|s| s.parse::<i64>().ok()),
            ),
        ),
        ("rlimits", rlimits()),
        ("fds", fds),
        ("fds_source", J::from(fds_source)),
        ("devices", devices()),
        ("namespaces", namespaces()),
        ("exe", J::from(readlink("/proc/self/exe"))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
             41 31 0:38 / /sys/fs/cgroup/unified ro,relatime - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt x");
        assert_eq!(m[0].optional, ["master:1"]);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].options[0], "ro");
    }

    #[test]
    fn cgroup_lines_and_caps() {
        let c = parse_cgroup("4:memory:/a/b\n0::/x:y\n");
        assert_eq!(c[0].controllers, ["memory"]);
        assert_eq!(c[1].path, "/x:y");
        assert!(c[1].controllers.is_empty());
        assert_eq!(cap_names(1 << 21 | 1), ["CAP_CHOWN", "CAP_SYS_ADMIN"]);
        assert_eq!(
            cap_names(1 << 40 | 1 << 41),
            ["CAP_CHECKPOINT_RESTORE", "CAP_41"]
        );
    }
}
