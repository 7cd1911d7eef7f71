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
//! 3. a fresh `/etc/machine-id` is written, so journald and D-Bus see a new machine;
//! 4. `systemd-nspawn --boot` runs the machine's systemd on it, with a private network, and
//!    [`TestHost::run`] enters the container with `nsenter` on its PID 1.
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

// Each integration test crate includes this module with `mod host;` and uses only part of it.
#![allow(dead_code, unused_imports)]

mod cgroup;
mod exec;
mod mounts;
mod procfs;
mod rootfs;
mod stale;
mod tools;

use std::env;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use exec::RunOutput;
pub use mounts::{MountEntry, mount_table, mounts_under};
pub use rootfs::{Provision, resolve_in_root};
pub use stale::PREFIX as NAME_PREFIX;

pub use procfs::ProcId;
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
// Errors and reports
// ---------------------------------------------------------------------------------------------

/// Why a test host could not be booted, used or torn down. Each variant names the failing step.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("test host cannot run here: {0}")]
    Unsupported(String),
    #[error("{step}: {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{step}: cannot run {command}: {source}")]
    Spawn {
        step: &'static str,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{step}: {command} failed ({status}): {stderr}")]
    Command {
        step: &'static str,
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "booting {machine}: systemd-nspawn exited early ({status})\n--- console ---\n{console}"
    )]
    NspawnExited {
        machine: String,
        status: String,
        console: String,
    },
    #[error(
        "booting {machine}: {what} not reached within {waited:?} (last seen: {last})\n--- console ---\n{console}"
    )]
    BootTimeout {
        machine: String,
        what: &'static str,
        waited: Duration,
        last: String,
        console: String,
    },
    #[error("{machine}: `{script}` did not succeed within {waited:?}; last attempt:\n{last}")]
    WaitTimeout {
        machine: String,
        script: String,
        waited: Duration,
        last: Box<RunOutput>,
    },
    #[error("tearing down {}: {}", .0.machine, .0.problems.join("; "))]
    Teardown(Box<TeardownReport>),
}

/// What teardown did, so a test can assert on it and a failure can be diagnosed.
#[derive(Clone, Debug, Default)]
pub struct TeardownReport {
    pub machine: String,
    /// The container halted on request (SIGTERM to nspawn) within the stop timeout.
    pub halted_cleanly: bool,
    /// From the stop request until nspawn had exited.
    pub stop_time: Duration,
    /// nspawn's exit status.
    pub nspawn_status: String,
    /// PIDs that had to be SIGKILLed.
    pub killed: Vec<i32>,
    pub removed_cgroups: Vec<PathBuf>,
    pub unmounted: Vec<PathBuf>,
    /// Mounts that only a lazy unmount could detach.
    pub lazily_unmounted: Vec<PathBuf>,
    pub removed_dir: Option<PathBuf>,
    /// nspawn's own output (container console), for diagnostics.
    pub console: String,
    /// Everything that could not be cleaned up; empty on success.
    pub problems: Vec<String>,
}

impl TeardownReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Options (the plan)
// ---------------------------------------------------------------------------------------------

/// How to build and boot a host. Provisions run in the order given, before boot.
#[derive(Clone, Debug)]
pub struct HostOptions {
    provisions: Vec<Provision>,
    nspawn_args: Vec<String>,
    init_args: Vec<String>,
    boot_timeout: Duration,
    stop_timeout: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            provisions: Vec::new(),
            nspawn_args: Vec::new(),
            init_args: Vec::new(),
            boot_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(20),
        }
    }
}

impl HostOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies the local file `src` to the absolute path `dest` inside the host, with `mode`.
    pub fn install(mut self, src: impl AsRef<Path>, dest: &str, mode: u32) -> Self {
        self.provisions.push(Provision::CopyFile {
            src: src.as_ref().to_path_buf(),
            dest: absolute(dest),
            mode,
        });
        self
    }

    /// Copies the local directory tree `src` into `dest` inside the host (merging with what is
    /// there), keeping modes and symlinks — e.g. `units/` into `/etc/systemd/system`.
    pub fn install_dir(mut self, src: impl AsRef<Path>, dest: &str) -> Self {
        self.provisions.push(Provision::CopyDir {
            src: src.as_ref().to_path_buf(),
            dest: absolute(dest),
        });
        self
    }

    /// Writes `contents` to `dest` inside the host, with `mode`.
    pub fn write(mut self, dest: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.provisions.push(Provision::Write {
            dest: absolute(dest),
            contents: contents.into(),
            mode,
        });
        self
    }

    /// Masks `unit` inside the host, e.g. a slow service of this machine irrelevant to a test.
    pub fn mask(mut self, unit: &str) -> Self {
        self.provisions.push(Provision::Mask {
            unit: unit.to_string(),
        });
        self
    }

    /// An extra `systemd-nspawn` option (before `--`), e.g. `--bind-ro=/some/dir`.
    pub fn nspawn_arg(mut self, arg: &str) -> Self {
        self.nspawn_args.push(arg.to_string());
        self
    }

    /// An extra argument for the host's systemd, e.g. `systemd.unit=multi-user.target`
    /// (a container's systemd reads its arguments as its kernel command line).
    pub fn init_arg(mut self, arg: &str) -> Self {
        self.init_args.push(arg.to_string());
        self
    }

    /// Boots into `unit` instead of the machine's default target. `basic.target` boots in about
    /// a fifth of the time here (no machine services such as a database start), and D-Bus, logind
    /// and machined are still started on demand through their sockets and bus activation.
    pub fn target(self, unit: &str) -> Self {
        self.init_arg(&format!("systemd.unit={unit}"))
    }

    /// Limit for the whole boot, until `running`/`degraded` (default 60 s).
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// How long an orderly halt may take before everything is killed (default 20 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }
}

fn absolute(dest: &str) -> PathBuf {
    assert!(
        dest.starts_with('/'),
        "path inside the test host must be absolute: {dest:?}"
    );
    PathBuf::from(dest)
}

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
    /// Builds the overlay, applies `opts`' provisions, boots systemd and waits until it reports
    /// `running` or `degraded` (a service of this machine failing inside the host is not our
    /// concern). Anything set up before a failure is torn down again.
    pub fn boot(opts: HostOptions) -> Result<TestHost, HostError> {
        if let Some(reason) = skip_unless_capable() {
            return Err(HostError::Unsupported(reason));
        }
        let tools = tools::get().map_err(HostError::Unsupported)?;
        stale::reap_once(tools);
        let started = Instant::now();
        let deadline = started + opts.boot_timeout;
        let mut host = TestHost::create_dir(tools, opts.stop_timeout)?;
        host.mount_overlay()?;
        host.provision(&opts.provisions)?;
        host.create_cgroups()?;
        host.spawn_nspawn(&opts)?;
        host.wait_for_pid1(deadline)?;
        host.wait_until_running(deadline)?;
        host.wait_for_bus(deadline)?;
        host.booted = true;
        host.boot_time = started.elapsed();
        Ok(host)
    }

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

    // --- boot steps ----------------------------------------------------------------------------

    /// Creates the uniquely named host directory. The name (`appc-testhost-<pid>-<n>-<random>`)
    /// is also the machine name: at most 64 characters of `[a-z0-9-]`, a valid hostname and
    /// machine name, unique across threads (counter), test processes (PID) and leftovers of
    /// crashed runs (random part).
    fn create_dir(tools: &'static Tools, stop_timeout: Duration) -> Result<TestHost, HostError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            let name = format!(
                "{}{}-{n}-{}",
                stale::PREFIX,
                std::process::id(),
                random_hex(4)
            );
            let dir = hosts_dir().join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(TestHost::new(tools, name, dir, stop_timeout)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
                Err(source) => {
                    return Err(HostError::Io {
                        step: "creating the test host directory",
                        path: dir,
                        source,
                    });
                }
            }
        }
    }

    fn new(tools: &'static Tools, name: String, dir: PathBuf, stop_timeout: Duration) -> Self {
        TestHost {
            name,
            dir,
            tools,
            mounts: Vec::new(),
            cgroups: Vec::new(),
            nspawn: None,
            pid1: None,
            booted: false,
            boot_time: Duration::ZERO,
            stop_timeout,
            torn_down: false,
        }
    }

    /// Mounts the tmpfs on the host directory and the overlay of `/` inside it.
    fn mount_overlay(&mut self) -> Result<(), HostError> {
        // 0700: other users of the machine need not look into the host.
        mounts::mount(self.tools, "tmpfs", &self.name, "mode=0700", &self.dir)?;
        self.mounts.push(self.dir.clone());
        let upper = self.upper_dir();
        let work = self.dir.join("work");
        for d in [&upper, &work, &self.root()] {
            fs::create_dir(d).map_err(|source| HostError::Io {
                step: "creating overlay directories",
                path: d.clone(),
                source,
            })?;
        }
        // The upper directory's own attributes become those of the host's `/`.
        copy_mode("/", &upper)?;
        let options = format!(
            "lowerdir=/,upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        mounts::mount(self.tools, "overlay", &self.name, &options, &self.root())?;
        self.mounts.push(self.root());
        Ok(())
    }

    /// Gives the host its own identity, then applies the caller's provisions in order.
    fn provision(&self, provisions: &[Provision]) -> Result<(), HostError> {
        let identity = [
            // WHY a fresh ID: the overlay would otherwise share the machine's ID, and journald,
            // D-Bus and machined key their state on it.
            Provision::Write {
                dest: PathBuf::from("/etc/machine-id"),
                contents: format!("{}\n", random_hex(16)).into_bytes(),
                mode: 0o444,
            },
            // nspawn sets the hostname to the machine name, but systemd then applies the
            // machine's /etc/hostname; a host should be recognisable in its own logs.
            Provision::Write {
                dest: PathBuf::from("/etc/hostname"),
                contents: format!("{}\n", self.name).into_bytes(),
                mode: 0o644,
            },
        ];
        for step in identity.iter().chain(provisions) {
            step.apply(&self.root()).map_err(|source| HostError::Io {
                step: "provisioning the test host",
                path: step.target(),
                source,
            })?;
        }
        Ok(())
    }

    /// Creates the host's private cgroups (see `cgroup.rs` for why).
    fn create_cgroups(&mut self) -> Result<(), HostError> {
        let parents = cgroup::own_hierarchies().map_err(|source| HostError::Io {
            step: "reading this process's cgroups",
            path: PathBuf::from("/proc/self/cgroup"),
            source,
        })?;
        for parent in parents {
            let created =
                cgroup::create(std::slice::from_ref(&parent), &self.name).map_err(|source| {
                    HostError::Io {
                        step: "creating the test host's cgroup",
                        path: parent.join(&self.name),
                        source,
                    }
                })?;
            self.cgroups.extend(created);
        }
        Ok(())
    }

    /// Starts systemd-nspawn in the background, wrapped so that:
    /// - `setpriv --pdeathsig TERM`: if the test process dies without teardown, nspawn still gets
    ///   SIGTERM and halts the container (the mounts are then removed by the next test run);
    /// - `unshare --mount` + a tmpfs on `/run`: nspawn keeps its own state in
    ///   `/run/systemd/nspawn/` (locks, the `propagate/<machine>` directory), and `/run` is not
    ///   a tmpfs on every machine (it is on the root filesystem here). A private `/run` keeps
    ///   that out of the real root and away from other hosts;
    /// - it moves itself into the host's private cgroups before exec'ing nspawn;
    /// - its own process group, so the terminal's job-control signals (Ctrl-C, Ctrl-Z) reach only
    ///   the test runner. Ctrl-C kills the test process without running `Drop`; the parent-death
    ///   signal then halts the container, and the next test run removes the mounts.
    ///
    /// nspawn options: `--keep-unit --register=no` (no systemd/machined on the machine to talk
    /// to), `--link-journal=no` (keep the journal inside), `--private-network` (never touch the
    /// real network), `--settings=no` (ignore `.nspawn` files of the machine),
    /// `--console=passive` (a pseudo-TTY console without input whose output goes to the console
    /// log; with `pipe` the container has no `/dev/console` and systemd's boot and shutdown
    /// status lines, the best clue when a boot fails, are lost).
    fn spawn_nspawn(&mut self, opts: &HostOptions) -> Result<(), HostError> {
        const WRAPPER: &str = r#"n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done
mount -t tmpfs -o mode=0755 "$APPC_TESTHOST_NAME" /run || exit 125
exec "$@""#;
        let console = fs::File::create(self.console_path()).map_err(|source| HostError::Io {
            step: "creating the console log",
            path: self.console_path(),
            source,
        })?;
        let console_err = console.try_clone().map_err(|source| HostError::Io {
            step: "creating the console log",
            path: self.console_path(),
            source,
        })?;
        let mut cmd = Command::new(&self.tools.setpriv);
        cmd.args(["--pdeathsig", "TERM", "--"])
            .arg(&self.tools.unshare)
            .args(["--mount", "--propagation", "private", "--"])
            .arg(&self.tools.sh)
            .args(["-c", WRAPPER, "sh", &self.cgroups.len().to_string()])
            .args(self.cgroups.iter().map(|c| c.join("cgroup.procs")))
            .arg(&self.tools.nspawn)
            .args(["--keep-unit", "--register=no", "--link-journal=no"])
            .args([
                "--private-network",
                "--settings=no",
                "--console=passive",
                "--boot",
            ])
            .arg(format!("--machine={}", self.name))
            .arg(format!("--directory={}", self.root().display()))
            .args(&opts.nspawn_args)
            .arg("--")
            .args(&opts.init_args)
            .env_clear()
            .env("PATH", INSIDE_ENV[0].1)
            .env("APPC_TESTHOST_NAME", &self.name)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| HostError::Spawn {
            step: "starting systemd-nspawn",
            command: format!("{cmd:?}"),
            source,
        })?;
        self.nspawn = Some(child);
        Ok(())
    }

    /// Fails if nspawn has already exited.
    fn check_nspawn_alive(&mut self) -> Result<(), HostError> {
        let status = match self.nspawn.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(status))) => status.to_string(),
            Some(Err(e)) => format!("cannot wait for it: {e}"),
            None => "never started".to_string(),
        };
        Err(HostError::NspawnExited {
            machine: self.name.clone(),
            status,
            console: self.console(),
        })
    }

    /// Finds the container's PID 1: the child of nspawn that is PID 1 in its own PID namespace
    /// (`NSpid: <pid> 1`) and has already exec'd the init (its executable is no longer nspawn).
    /// WHY this way: nspawn prints nothing machine-readable, and while it starts it briefly has
    /// other children (the "outer child" that sets up mounts).
    fn wait_for_pid1(&mut self, deadline: Instant) -> Result<(), HostError> {
        let nspawn_pid = self.nspawn.as_ref().map_or(0, Child::id) as i32;
        let started = Instant::now();
        loop {
            self.check_nspawn_alive()?;
            let nspawn_exe = procfs::exe(nspawn_pid);
            let found = procfs::children_of(nspawn_pid).into_iter().find(|&c| {
                procfs::ns_pids(c).last() == Some(&1)
                    && procfs::ns_pids(c).len() > 1
                    && procfs::exe(c).is_some_and(|e| Some(&e) != nspawn_exe.as_ref())
            });
            if let Some(pid) = found.and_then(ProcId::of) {
                self.pid1 = Some(pid);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.boot_timeout("the container's PID 1", started, "not found"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `systemctl is-system-running --wait` inside says `running` or `degraded`.
    /// Before systemd has opened its private socket the call fails at once (`offline`), so it
    /// is retried until the deadline.
    fn wait_until_running(&mut self, deadline: Instant) -> Result<(), HostError> {
        let started = Instant::now();
        loop {
            self.check_nspawn_alive()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let out = self.run_timeout(
                &["systemctl", "is-system-running", "--wait"],
                remaining.max(Duration::from_millis(100)),
            );
            match out.stdout_trimmed() {
                "running" | "degraded" => return Ok(()),
                "maintenance" | "stopping" => {
                    return Err(self.boot_timeout("running or degraded", started, &out.stdout));
                }
                _ if Instant::now() >= deadline => {
                    return Err(self.boot_timeout(
                        "running or degraded",
                        started,
                        &out.to_string(),
                    ));
                }
                _ => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until systemd owns `org.freedesktop.systemd1` on the system bus. WHY: a finished
    /// boot does not imply that: PID 1 connects to the bus asynchronously once dbus.service is
    /// up, and with a socket-activated bus (e.g. `basic.target`) that only starts on first use,
    /// which this call triggers.
    fn wait_for_bus(&mut self, deadline: Instant) -> Result<(), HostError> {
        let started = Instant::now();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let out = self.run_timeout(
                &["busctl", "status", "--no-pager", "org.freedesktop.systemd1"],
                remaining.max(Duration::from_millis(100)),
            );
            if out.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.boot_timeout(
                    "systemd on the system bus",
                    started,
                    &out.to_string(),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn boot_timeout(&self, what: &'static str, started: Instant, last: &str) -> HostError {
        HostError::BootTimeout {
            machine: self.name.clone(),
            what,
            waited: started.elapsed(),
            last: last.trim().to_string(),
            console: self.console(),
        }
    }

    // --- teardown ------------------------------------------------------------------------------

    /// Tears the host down now and reports what was cleaned; an error if anything is left.
    pub fn shutdown(mut self) -> Result<TeardownReport, HostError> {
        let report = self.teardown();
        if report.is_clean() {
            Ok(report)
        } else {
            Err(HostError::Teardown(Box::new(report)))
        }
    }

    /// Halts the container, kills what is left, removes cgroups, unmounts, removes the
    /// directory. Runs at most once; every step is attempted even if an earlier one failed.
    fn teardown(&mut self) -> TeardownReport {
        let mut report = TeardownReport {
            machine: self.name.clone(),
            ..TeardownReport::default()
        };
        if self.torn_down {
            return report;
        }
        self.torn_down = true;
        self.stop_container(&mut report);
        report.console = self.console();
        self.kill_leftovers(&mut report);
        self.remove_cgroups(&mut report);
        self.unmount_all(&mut report);
        self.remove_dir(&mut report);
        report
    }

    /// Asks for an orderly halt and waits for nspawn to exit; kills everything if that takes
    /// longer than the stop timeout. WHY SIGTERM to nspawn: for a container started with
    /// `--boot`, nspawn turns SIGTERM into SIGRTMIN+3 for the container's systemd (= `halt`),
    /// then exits once its PID 1 has (systemd-nspawn(1), `--kill-signal=`).
    fn stop_container(&mut self, report: &mut TeardownReport) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let started = Instant::now();
        if matches!(child.try_wait(), Ok(None)) {
            // Before systemd has installed its signal handlers the halt request would be ignored
            // (a PID-namespace init only gets signals it handles), so do not wait long for it.
            let patience = if self.booted {
                self.stop_timeout
            } else {
                Duration::from_secs(2)
            };
            exec::signal(&self.tools.kill, &child.id().to_string(), "TERM");
            report.halted_cleanly = wait_child(&mut child, patience);
        }
        if matches!(child.try_wait(), Ok(None)) {
            // Killing PID 1 of the container kills every process in its PID namespace.
            self.kill_pid1(report);
            report.killed.push(child.id() as i32);
            if let Err(e) = child.kill() {
                report
                    .problems
                    .push(format!("cannot kill systemd-nspawn: {e}"));
            }
        }
        match child.wait() {
            Ok(status) => report.nspawn_status = status.to_string(),
            Err(e) => report
                .problems
                .push(format!("cannot reap systemd-nspawn: {e}")),
        }
        report.stop_time = started.elapsed();
    }

    fn kill_pid1(&self, report: &mut TeardownReport) {
        if let Some(pid1) = self.pid1.filter(ProcId::is_alive) {
            exec::signal(&self.tools.kill, &pid1.pid.to_string(), "KILL");
            report.killed.push(pid1.pid);
        }
    }

    /// Makes sure no process of the host survives: PID 1 (if nspawn died without it) and
    /// anything still in the host's cgroups.
    fn kill_leftovers(&mut self, report: &mut TeardownReport) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pid1_alive = self.pid1.is_some_and(|p| p.is_alive());
            let stragglers: Vec<i32> = self
                .cgroups
                .iter()
                .flat_map(|c| cgroup::pids_below(c))
                .collect();
            if !pid1_alive && stragglers.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                report.problems.push(format!(
                    "processes survive SIGKILL: pid1 alive={pid1_alive}, in cgroups: {stragglers:?}"
                ));
                return;
            }
            self.kill_pid1(report);
            for pid in stragglers {
                exec::signal(&self.tools.kill, &pid.to_string(), "KILL");
                report.killed.push(pid);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn remove_cgroups(&mut self, report: &mut TeardownReport) {
        for dir in std::mem::take(&mut self.cgroups) {
            match cgroup::remove_tree(&dir, Duration::from_secs(5)) {
                Ok(()) => report.removed_cgroups.push(dir),
                Err(e) => report
                    .problems
                    .push(format!("cannot remove cgroup {}: {e}", dir.display())),
            }
        }
    }

    fn unmount_all(&mut self, report: &mut TeardownReport) {
        while let Some(target) = self.mounts.pop() {
            match mounts::unmount(self.tools, &target) {
                Ok(mounts::Unmounted::Cleanly) => report.unmounted.push(target),
                Ok(mounts::Unmounted::Lazily) => report.lazily_unmounted.push(target),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        let left = mounts::mounts_under(&self.dir);
        if !left.is_empty() {
            let left: Vec<_> = left
                .iter()
                .map(|m| m.mountpoint.display().to_string())
                .collect();
            report
                .problems
                .push(format!("mounts left: {}", left.join(", ")));
        }
    }

    /// Removes the (now empty) host directory. `remove_dir`, not `remove_dir_all`: if a mount
    /// were somehow still there, recursing into it must not happen.
    fn remove_dir(&mut self, report: &mut TeardownReport) {
        match fs::remove_dir(&self.dir) {
            Ok(()) => report.removed_dir = Some(self.dir.clone()),
            Err(e) => report
                .problems
                .push(format!("cannot remove {}: {e}", self.dir.display())),
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let report = self.teardown();
        if report.is_clean() {
            return;
        }
        let message = format!(
            "test host {}: teardown left problems: {:?}",
            self.name, report.problems
        );
        // A leak is a failure, but panicking while already unwinding would abort the process.
        if thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// Waits up to `timeout` for `child` to exit.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

fn copy_mode(from: &str, to: &Path) -> Result<(), HostError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HostError::Io {
            step: "copying the root directory's mode",
            path,
            source,
        }
    };
    let mode = fs::metadata(from)
        .map_err(io_err(Path::new(from)))?
        .permissions()
        .mode();
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(io_err(to))
}

/// `bytes` random bytes from the kernel, as lowercase hex (for unique names and test markers).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
