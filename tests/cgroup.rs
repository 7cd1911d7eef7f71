//! The cgroupfs manager against the real kernel (ace.md resource isolators, spec §2.5.8: "over
//! limit ⇒ terminate or throttle"), plus format tests of the files written for v1 and v2.
//!
//! The enforcement tests need root and the memory, cpu, cpuacct and pids controllers; without
//! them they print `SKIP:` (or fail when `APPC_TEST_NO_SKIP=1`). Run with `--test-threads=1`:
//! the CPU measurement is about wall time.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use appc_pod::cgroup::{
    CgroupError, CgroupFs, CgroupHandle, CgroupManager, Controller, Resources, Version,
};
use std::os::unix::process::ExitStatusExt;

const MIB: u64 = 1 << 20;

/// Prints `SKIP:` and returns `None`, or fails when skipping is not allowed.
fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("APPC_TEST_NO_SKIP").as_deref() == Ok("1") {
        panic!("cannot run ({reason}) and APPC_TEST_NO_SKIP=1");
    }
    eprintln!("SKIP: {reason}");
    None
}

/// The host's manager, if this machine can run the enforcement tests.
fn host_manager() -> Option<CgroupFs> {
    if !rustix::process::geteuid().is_root() {
        return skip("cgroup enforcement tests need root");
    }
    let fs = match CgroupFs::detect() {
        Ok(fs) => fs,
        Err(e) => return skip(&format!("no cgroupfs: {e}")),
    };
    if let Version::V1 { controllers } = fs.version() {
        let missing: Vec<_> = Controller::ALL
            .into_iter()
            .filter(|c| !controllers.contains_key(c))
            .collect();
        if !missing.is_empty() {
            return skip(&format!("v1 controllers missing: {missing:?}"));
        }
    }
    if python().is_none() {
        return skip("python3 is needed for the workloads");
    }
    Some(fs)
}

/// The real python3 interpreter: `python3` on PATH may be a shim script (pyenv) that forks,
/// which would count against pids.max and the CPU quota.
fn python() -> Option<&'static str> {
    static PYTHON: OnceLock<Option<String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()?;
            let exe = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !exe.is_empty()).then_some(exe)
        })
        .as_deref()
}

fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("test-{what}-{}-{n}", std::process::id())
}

/// Removes the cgroup even when the test panics.
struct CgroupGuard<'a> {
    fs: &'a CgroupFs,
    h: CgroupHandle,
}

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove(&self.h) {
            eprintln!("cleanup of {} failed: {e}", self.h.name());
        }
    }
}

fn create<'a>(fs: &'a CgroupFs, what: &str, res: &Resources) -> CgroupGuard<'a> {
    let h = fs
        .create(&unique_name(what), res)
        .unwrap_or_else(|e| panic!("create: {e}"));
    CgroupGuard { fs, h }
}

/// A python3 workload that waits for a line on stdin before it starts, so that it can be put
/// into the cgroup first. Killed and reaped on drop.
struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Workload {
    fn spawn(script: &str) -> Self {
        let mut child = Command::new("sh")
            .args(["-c", r#"read _ && exec "$2" -c "$1""#, "sh", script])
            .arg(python().unwrap_or("python3"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdin = child.stdin.take();
        Workload { child, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start(&mut self) {
        let mut stdin = self.stdin.take().unwrap_or_else(|| panic!("started twice"));
        stdin
            .write_all(b"go\n")
            .unwrap_or_else(|e| panic!("start: {e}"));
    }

    fn first_line(&mut self) -> String {
        let out = self
            .child
            .stdout
            .as_mut()
            .unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read: {e}"));
        line.trim().to_owned()
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill(); // best effort: it may have exited already
        let _ = self.child.wait();
    }
}

/// Runs `script` in a fresh cgroup with `res`; returns its exit status and the cgroup's stats.
fn run_limited(
    fs: &CgroupFs,
    what: &str,
    res: &Resources,
    script: &str,
) -> (std::process::ExitStatus, appc_pod::cgroup::Stats, Duration) {
    let cg = create(fs, what, res);
    let mut w = Workload::spawn(script);
    fs.add_process(&cg.h, w.pid())
        .unwrap_or_else(|e| panic!("add_process: {e}"));
    assert_eq!(fs.pids(&cg.h), vec![w.pid()]);
    let start = Instant::now();
    w.start();
    let status = w.wait();
    let wall = start.elapsed();
    (status, fs.stats(&cg.h), wall)
}

/// Allocates and touches 200 MiB (`bytes * n` writes every page).
const ALLOC_200M: &str = "b = b'x' * (200 << 20)";

#[test]
fn memory_limit_oom_kills() {
    let Some(fs) = host_manager() else { return };
    let res = Resources {
        memory_max: Some(32 * MIB),
        ..Resources::default()
    };
    let (status, stats, _) = run_limited(&fs, "oom", &res, ALLOC_200M);
    println!("32 MiB limit: status {status:?}, stats {stats:?}");
    assert_eq!(
        status.signal(),
        Some(9),
        "expected SIGKILL by the OOM killer"
    );
    assert!(stats.oom_kills.is_some_and(|n| n >= 1), "{stats:?}");

    let res = Resources {
        memory_max: Some(256 * MIB),
        ..Resources::default()
    };
    let (status, stats, _) = run_limited(&fs, "oom-control", &res, ALLOC_200M);
    println!("256 MiB limit: status {status:?}, stats {stats:?}");
    assert!(status.success(), "control run failed: {status:?}");
    assert_eq!(stats.oom_kills, Some(0));
}

#[test]
fn cpu_quota_throttles() {
    let Some(fs) = host_manager() else { return };
    let res = Resources {
        cpu_quota_milli: Some(200),
        ..Resources::default()
    };
    let busy = "import time\nt = time.time()\nwhile time.time() - t < 2: pass";
    let (status, stats, wall) = run_limited(&fs, "cpu", &res, busy);
    assert!(status.success(), "{status:?}");
    let cpu = stats.cpu_usage_usec.unwrap_or_else(|| panic!("no usage"));
    let ratio = cpu as f64 / wall.as_micros() as f64;
    println!("cpu quota 200m: cpu {cpu} us over {wall:?} wall, ratio {ratio:.3}");
    assert!((0.1..=0.35).contains(&ratio), "ratio {ratio}");
}

#[test]
fn pids_max_limits_forks() {
    let Some(fs) = host_manager() else { return };
    let res = Resources {
        pids_max: Some(5),
        ..Resources::default()
    };
    let cg = create(&fs, "pids", &res);
    // Forks 20 children that sleep, counts the forks that worked, then reaps them.
    let script = "\
import os, sys, time
kids = []
for _ in range(20):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        time.sleep(1)
        os._exit(0)
    kids.append(pid)
print(len(kids), flush=True)
for k in kids:
    os.waitpid(k, 0)
";
    let mut w = Workload::spawn(script);
    fs.add_process(&cg.h, w.pid())
        .unwrap_or_else(|e| panic!("add_process: {e}"));
    w.start();
    let forked = w.first_line();
    let in_cgroup = fs.pids(&cg.h).len();
    let status = w.wait();
    println!("pids.max 5: {forked} of 20 forks worked, {in_cgroup} processes seen");
    assert_eq!(forked, "4", "the parent plus 4 children make 5");
    assert!(in_cgroup <= 5);
    assert!(status.success(), "{status:?}");
}

fn cgroup_dirs(fs: &CgroupFs, name: &str) -> Vec<PathBuf> {
    match fs.version() {
        Version::V1 { controllers } => controllers
            .values()
            .map(|m| m.join("appc").join(name))
            .collect(),
        Version::V2 => vec![Path::new("/sys/fs/cgroup/appc").join(name)],
    }
}

#[test]
fn remove_kills_and_is_idempotent() {
    let Some(fs) = host_manager() else { return };
    let name = unique_name("rm");
    let res = Resources {
        pids_max: Some(10),
        ..Resources::default()
    };
    let h = fs
        .create(&name, &res)
        .unwrap_or_else(|e| panic!("create: {e}"));
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    fs.add_process(&h, sleeper.id())
        .unwrap_or_else(|e| panic!("add_process: {e}"));
    assert!(cgroup_dirs(&fs, &name).iter().all(|d| d.is_dir()));
    assert_eq!(fs.handle(&name).ok().as_ref(), Some(&h));
    // The sleeper is our child: reap it in the background so that it does not linger as a
    // zombie while remove() polls.
    let reaper = std::thread::spawn(move || sleeper.wait());
    fs.remove(&h).unwrap_or_else(|e| panic!("remove: {e}"));
    let status = reaper
        .join()
        .unwrap_or_else(|_| panic!("reaper"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.signal(), Some(9));
    for d in cgroup_dirs(&fs, &name) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    fs.remove(&h)
        .unwrap_or_else(|e| panic!("second remove: {e}"));
    assert!(matches!(
        fs.create("../escape", &res),
        Err(CgroupError::InvalidName { .. })
    ));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all_limits() -> Resources {
    Resources {
        memory_max: Some(32 * MIB),
        cpu_quota_milli: Some(200),
        cpu_weight_shares: Some(1024),
        pids_max: Some(5),
    }
}

/// Format test only: a temporary directory stands in for a cgroup2 mount (this host's cgroup2
/// mount has no memory controller), so this checks file names and values, not enforcement.
#[test]
fn v2_format_file_names_and_values() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        tmp.path().join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let fs = CgroupFs::with_version(tmp.path().to_owned(), Version::V2);
    let h = fs
        .create("fmt", &all_limits())
        .unwrap_or_else(|e| panic!("create: {e}"));
    let dir = tmp.path().join("appc/fmt");
    assert_eq!(h.dirs(), std::slice::from_ref(&dir));
    assert_eq!(
        read(&tmp.path().join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(&tmp.path().join("appc/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(read(&dir.join("memory.max")), "33554432");
    assert_eq!(read(&dir.join("cpu.max")), "20000 100000");
    assert_eq!(read(&dir.join("cpu.weight")), "39");
    assert_eq!(read(&dir.join("pids.max")), "5");
    // memory.swap.max is only written where the kernel offers it; a temp dir has none.
    assert!(!dir.join("memory.swap.max").exists());
    assert!(matches!(
        fs.create("fmt", &all_limits()),
        Err(CgroupError::Exists { .. })
    ));
}

#[test]
fn v2_missing_controller_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tmp.path().join("cgroup.controllers"), "cpu pids\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let fs = CgroupFs::with_version(tmp.path().to_owned(), Version::V2);
    let err = fs.create("nomem", &all_limits()).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("controller memory is not available"), "{msg}");
}

/// Format test only, like the v2 one: v1 knobs in per-controller temp directories.
#[test]
fn v1_format_file_names_and_values() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let controllers = Controller::ALL
        .into_iter()
        .map(|c| (c, tmp.path().join(c.name())))
        .collect();
    let fs = CgroupFs::with_version(tmp.path().to_owned(), Version::V1 { controllers });
    let h = fs
        .create("fmt", &all_limits())
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(h.dirs().len(), 4);
    let knob = |ctrl: &str, file: &str| read(&tmp.path().join(ctrl).join("appc/fmt").join(file));
    assert_eq!(knob("memory", "memory.limit_in_bytes"), "33554432");
    assert_eq!(knob("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(knob("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(knob("cpu", "cpu.shares"), "1024");
    assert_eq!(knob("pids", "pids.max"), "5");
}

#[test]
fn v1_failed_create_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let memory = tmp.path().join("memory");
    let controllers = [(Controller::Memory, memory.clone())].into_iter().collect();
    let fs = CgroupFs::with_version(tmp.path().to_owned(), Version::V1 { controllers });
    let res = Resources {
        pids_max: Some(5),
        ..Resources::default()
    };
    let err = fs.create("half", &res).err();
    assert!(
        matches!(
            err,
            Some(CgroupError::MissingController {
                controller: "pids",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!memory.join("appc/half").exists());
}

#[test]
fn write_errors_name_the_file_and_value() {
    let e = CgroupError::Write {
        path: PathBuf::from("/sys/fs/cgroup/memory/appc/x/memory.limit_in_bytes"),
        value: "33554432".into(),
        source: std::io::Error::from_raw_os_error(22),
    };
    assert_eq!(
        e.to_string(),
        "cannot write \"33554432\" to /sys/fs/cgroup/memory/appc/x/memory.limit_in_bytes"
    );
}

/// A killed process that its parent has not reaped yet (a zombie) must not keep the cgroup
/// busy: the kernel takes exiting tasks out of the cgroup before they are reaped.
#[test]
fn remove_does_not_wait_for_reaping() {
    let Some(fs) = host_manager() else { return };
    let cg = create(&fs, "zombie", &Resources::default());
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    fs.add_process(&cg.h, sleeper.id())
        .unwrap_or_else(|e| panic!("add_process: {e}"));
    let removed = fs.remove(&cg.h);
    let status = sleeper.wait().unwrap_or_else(|e| panic!("{e}"));
    removed.unwrap_or_else(|e| panic!("remove with an unreaped child: {e}"));
    assert_eq!(status.signal(), Some(9));
}
