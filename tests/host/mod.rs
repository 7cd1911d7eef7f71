//! A real systemd "test host", booted by the test suite (tier 4 of STYLE.md §3.3.9).
//!
//! The machines this project is tested on do not run systemd as PID 1 and have no system bus, yet
//! our tests must prove the integration with a *real* systemd: transient scopes over D-Bus,
//! machined, journald, socket activation, `systemctl start appc-pod@NAME`. A [`TestHost`] is a
//! throw-away systemd container made from the machine's own root filesystem:
//!
//! 1. a tmpfs is mounted on a fresh directory `$TMPDIR/appc-testhost-<pid>-<n>-<random>`;
//! 2. the machine's `/` is overlay-mounted at `<dir>/root` as the *lower* layer, with the upper and
//!    work directories on the tmpfs. WHY `lowerdir=/`: the host then has exactly the systemd, D-Bus
//!    and tools installed here, with nothing to download or build, and every write (installed
//!    binaries, units, journal files, the machine ID) lands in the upper directory on the tmpfs,
//!    never on the real root. The overlay does not descend into other mounts (`/proc`, `/sys`,
//!    `/dev`), which is fine: nspawn mounts fresh API filesystems for the container;
//! 3. a fresh `/etc/machine-id` and `/etc/hostname` (the machine name) are written, so journald,
//!    D-Bus and the logs see a new machine, then the caller's files ([`HostOptions::install`]);
//! 4. `systemd-nspawn --boot` runs the machine's systemd on it, with a private network, its own
//!    cgroup and its own `/run` (see [`TestHost::spawn_nspawn`]), and [`TestHost::run`] enters
//!    the container with `nsenter` on its PID 1. Boot is complete when systemd reports `running`
//!    or `degraded` and owns `org.freedesktop.systemd1` on the system bus.
//!
//! Cost on a 2-core machine: ~2.8 s to boot the machine's default target (a PostgreSQL service
//! installed on the machine takes most of it), ~0.4–0.6 s with `.target("basic.target")`,
//! ~0.2–0.4 s to halt and clean up. Hosts boot concurrently without a global lock; tests running
//! in parallel threads are faster overall than serialized boots.
//!
//! Teardown ([`TestHost::shutdown`], or `Drop`) halts the container, kills whatever is left,
//! removes its cgroups, unmounts both mounts and removes the directory. Leftovers of a test process
//! that died without teardown are removed by the next test process (see `stale.rs`).
//!
//! Typical use:
//! ```no_run
//! let opts = host::HostOptions::new().install("target/debug/appcctl", "/usr/local/bin/appcctl", 0o755);
//! let Some(host) = host::boot_or_skip(opts) else { return };
//! host.run(&["appcctl", "--version"]).expect_success("appcctl inside the host");
//! ```
//!
//! A host must be dropped on the thread that booted it, and a [`TestHost::command`] must finish
//! on the thread that spawned it: both run with a parent-death signal (so that a crashed test
//! process leaves nothing running), and Linux delivers it when the *thread* that spawned the
//! process exits, not the whole process.

// Each integration test crate includes this module with `mod host;` and uses only part of it
// (functions and re-exports alike).
#![allow(dead_code, unused_imports)]

mod boot;
mod cgroup;
mod error;
mod exec;
mod mounts;
mod options;
mod procfs;
mod rootfs;
mod stale;
mod teardown;
mod tools;

use std::env;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

pub use error::{HostError, TeardownReport};
pub use exec::RunOutput;
pub use mounts::{MountEntry, mount_table, mounts_under};
pub use options::HostOptions;
pub use procfs::ProcId;
pub use rootfs::{Provision, resolve_in_root};
pub use stale::PREFIX as NAME_PREFIX;

use tools::Tools;

/// Environment variable that turns every skip into a failure (CI sets `APPC_TEST_NO_SKIP=1`).
pub const NO_SKIP_ENV: &str = "APPC_TEST_NO_SKIP";

/// Default limit for [`TestHost::run`] and [`TestHost::sh`].
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment of every command run inside a host. WHY not inherit ours: the test process's
/// variables (`PWD`, `XDG_RUNTIME_DIR`, `DBUS_SYSTEM_BUS_ADDRESS`, cargo's `PATH`) describe the
/// machine, not the host, and would make tools inside talk to the wrong places.
const INSIDE_ENV: [(&str, &str); 6] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
    ("SYSTEMD_PAGER", ""),
    ("SYSTEMD_COLORS", "0"),
];

// ---------------------------------------------------------------------------------------------
// Skip policy
// ---------------------------------------------------------------------------------------------

/// Why a test host cannot run on this machine (not root, no systemd-nspawn, no overlayfs, …), or
/// `None` if it can.
pub fn skip_unless_capable() -> Option<String> {
    tools::missing_capability()
}

/// True if skipping is forbidden (`APPC_TEST_NO_SKIP=1`, set by CI).
pub fn skipping_forbidden() -> bool {
    env::var(NO_SKIP_ENV).is_ok_and(|v| v == "1")
}

/// Skips the calling test out loud (`SKIP: <reason>` on stderr), or fails it when skipping is
/// forbidden. The caller returns right after: `host::skip_or_fail(&reason); return;`.
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    assert!(
        !skipping_forbidden(),
        "{NO_SKIP_ENV}=1 forbids skipping: {reason}"
    );
    eprintln!("SKIP: {reason}");
}

/// Boots a host, or skips (see [`skip_or_fail`]) when this machine cannot run one. A boot that
/// fails on a capable machine is a test failure, never a skip.
///
/// `let Some(host) = host::boot_or_skip(opts) else { return };`
#[track_caller]
pub fn boot_or_skip(opts: HostOptions) -> Option<TestHost> {
    if let Some(reason) = skip_unless_capable() {
        skip_or_fail(&reason);
        return None;
    }
    match TestHost::boot(opts) {
        Ok(host) => Some(host),
        Err(e) => panic!("booting the systemd test host failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------------------------

/// A booted systemd container on an overlay of the machine's root. Dropping it tears it down.
pub struct TestHost {
    name: String,
    dir: PathBuf,
    tools: &'static Tools,
    /// Mounts made so far, in mount order (unmounted in reverse).
    mounts: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    pid1: Option<ProcId>,
    booted: bool,
    boot_time: Duration,
    stop_timeout: Duration,
    torn_down: bool,
}

impl fmt::Debug for TestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHost")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("pid1", &self.pid1)
            .finish_non_exhaustive()
    }
}

/// Directory under which hosts are created: `$TMPDIR`, normally `/tmp`.
fn hosts_dir() -> PathBuf {
    env::temp_dir()
}

impl TestHost {
    /// The machine name (also the hostname inside, and the name of the directory, the mounts and
    /// the cgroups on the machine).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The overlay mountpoint: the host's root filesystem as seen from the machine. Only the
    /// overlay is visible here, not the host's own `/run`, `/tmp`, `/proc` mounts.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The tmpfs directory holding `root`, the overlay's upper and work directories and the
    /// console log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The overlay's upper directory: everything written inside the host that reached the
    /// overlay (and nothing else).
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The host's PID 1 (systemd) as a PID of the machine.
    pub fn pid1(&self) -> i32 {
        self.pid1.map_or(0, |p| p.pid)
    }

    /// The PID of the systemd-nspawn process on the machine.
    pub fn nspawn_pid(&self) -> Option<u32> {
        self.nspawn.as_ref().map(Child::id)
    }

    /// The host's private cgroup directories on the machine (one per hierarchy nspawn uses).
    pub fn cgroups(&self) -> &[PathBuf] {
        &self.cgroups
    }

    /// Every process of the host right now: nspawn, PID 1 and everything in the host's cgroups.
    pub fn processes(&self) -> Vec<ProcId> {
        let mut pids: Vec<i32> = self
            .cgroups
            .iter()
            .flat_map(|c| cgroup::pids_below(c))
            .collect();
        pids.extend(self.pid1.map(|p| p.pid));
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter().filter_map(ProcId::of).collect()
    }

    /// How long [`TestHost::boot`] took.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// What systemd-nspawn printed so far (the container console and nspawn's own messages).
    pub fn console(&self) -> String {
        fs::read_to_string(self.console_path()).unwrap_or_default()
    }

    fn console_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    // --- running commands inside ---------------------------------------------------------------

    /// A `Command` that runs `argv` inside the host: every namespace, root and working directory
    /// of its PID 1, and a clean environment. For streaming output or custom stdio; most tests
    /// want [`TestHost::run`].
    pub fn command(&self, argv: &[&str]) -> Command {
        // WHY `setpriv --pdeathsig KILL`: if the test process dies while a command runs, nsenter
        // must die too. Otherwise the host's halt hangs for 90 s: systemd-shutdown SIGSTOPs every
        // process before signalling it, nsenter (outside, waiting for its child) mirrors the stop
        // of its child and stops itself, and nobody outside continues it, so the child stays an
        // unreaped zombie that systemd-shutdown keeps waiting for.
        let mut cmd = Command::new(&self.tools.setpriv);
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(&self.tools.nsenter);
        // `--root`/`--wd` without a value mean "those of the target", i.e. the container's `/`;
        // `--all` also enters the PID namespace, so nsenter forks and the command is a process of
        // the host (it dies with it).
        cmd.arg(format!("--target={}", self.pid1()))
            .args(["--all", "--root", "--wd", "--"])
            .args(argv)
            .env_clear()
            .envs(INSIDE_ENV)
            .current_dir("/");
        cmd
    }

    /// Runs `argv` inside the host, killed after [`DEFAULT_RUN_TIMEOUT`]. Never panics for a
    /// failing command: check [`RunOutput::success`] or use [`RunOutput::expect_success`].
    pub fn run(&self, argv: &[&str]) -> RunOutput {
        self.run_timeout(argv, DEFAULT_RUN_TIMEOUT)
    }

    /// [`TestHost::run`] with an explicit time limit.
    pub fn run_timeout(&self, argv: &[&str], timeout: Duration) -> RunOutput {
        self.run_full(argv, timeout, None)
    }

    /// [`TestHost::run`] with `stdin` fed to the command.
    pub fn run_with_stdin(&self, argv: &[&str], stdin: impl Into<Vec<u8>>) -> RunOutput {
        self.run_full(argv, DEFAULT_RUN_TIMEOUT, Some(stdin.into()))
    }

    /// Runs `script` with `/bin/sh -c` inside the host. A background job (`cmd &`) that should
    /// outlive the script should redirect its output (`>/dev/null 2>&1`); otherwise its output
    /// after the script's exit is lost (it does not block the call, see `exec.rs`).
    pub fn sh(&self, script: &str) -> RunOutput {
        self.run(&["/bin/sh", "-c", script])
    }

    /// [`TestHost::sh`] with an explicit time limit.
    pub fn sh_timeout(&self, script: &str, timeout: Duration) -> RunOutput {
        self.run_timeout(&["/bin/sh", "-c", script], timeout)
    }

    fn run_full(&self, argv: &[&str], timeout: Duration, stdin: Option<Vec<u8>>) -> RunOutput {
        let described: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        match exec::run_command(
            self.command(argv),
            described.clone(),
            timeout,
            stdin,
            &self.tools.kill,
        ) {
            Ok(out) => out,
            // Only spawning nsenter itself can fail here; report it like a failed command so
            // that tests show it in context.
            Err(e) => RunOutput {
                argv: described,
                code: None,
                signal: None,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("test host: cannot run nsenter: {e}"),
                elapsed: Duration::ZERO,
            },
        }
    }

    /// `journalctl --no-pager --quiet ARGS` inside the host; panics with the output if journalctl
    /// fails. Journald receives messages asynchronously: poll with [`TestHost::wait_for`] when
    /// looking for a line that was just logged.
    #[track_caller]
    pub fn journal(&self, args: &[&str]) -> String {
        let mut argv = vec!["journalctl", "--no-pager", "--quiet"];
        argv.extend_from_slice(args);
        self.run(&argv).expect_success("journalctl").stdout
    }

    /// Runs `script` (sh) inside the host every 100 ms until it succeeds or `timeout` passes.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> Result<RunOutput, HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let out = self.sh_timeout(script, remaining.max(Duration::from_millis(100)));
            if out.success() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(HostError::WaitTimeout {
                    machine: self.name.clone(),
                    script: script.to_string(),
                    waited: timeout,
                    last: Box::new(out),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    // --- files ---------------------------------------------------------------------------------

    /// The host's view of its whole file tree, including mounts only the host has (`/run`,
    /// `/tmp`): its PID 1's root, reached through `/proc`.
    fn live_root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid1()))
    }

    /// Reads the file at the absolute in-host `path` (symlinks resolved inside the host).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        rootfs::read_file(&self.live_root(), Path::new(path)).map_err(|source| HostError::Io {
            step: "reading a file of the test host",
            path: PathBuf::from(path),
            source,
        })
    }

    /// Copies the in-host file `path` to the local `dest`; returns the number of bytes.
    pub fn copy_out(&self, path: &str, dest: impl AsRef<Path>) -> Result<u64, HostError> {
        let bytes = self.read_file(path)?;
        fs::write(dest.as_ref(), &bytes).map_err(|source| HostError::Io {
            step: "writing a file copied out of the test host",
            path: dest.as_ref().to_path_buf(),
            source,
        })?;
        Ok(bytes.len() as u64)
    }

    /// Writes a file at the absolute in-host `path` of the running host (parents created,
    /// symlinks resolved inside the host, so the write cannot escape to the machine).
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), HostError> {
        rootfs::write_file(&self.live_root(), Path::new(path), contents, mode).map_err(|source| {
            HostError::Io {
                step: "writing a file into the test host",
                path: PathBuf::from(path),
                source,
            }
        })
    }
}

/// `bytes` random bytes from the kernel, as lowercase hex (for unique names and test markers).
/// Where [`HostOptions::with_build`] installs this build's appcctl inside the host.
pub const APPCCTL: &str = "/usr/local/bin/appcctl";

/// Where [`HostOptions::with_build`] installs the running test binary inside the host.
pub fn test_exe() -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let name = exe
        .file_name()
        .map_or_else(|| "test".into(), |n| n.to_string_lossy().into_owned());
    format!("/usr/local/libexec/appc-test/{name}")
}

pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
