//! Booting: the directory, the overlay, provisioning, nspawn, and waiting for systemd.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::tools::{self, Tools};
use super::{
    HostError, HostOptions, INSIDE_ENV, Provision, TestHost, cgroup, hosts_dir, mounts, procfs,
    random_hex, skip_unless_capable, stale,
};
use procfs::ProcId;

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
            let found = procfs::children_of(nspawn_pid)
                .into_iter()
                .find(|&c| is_container_init(c, nspawn_pid));
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
}

/// True if `pid` is PID 1 of a PID namespace below ours and runs something other than nspawn
/// (that is, it has exec'd the container's init).
fn is_container_init(pid: i32, nspawn_pid: i32) -> bool {
    let ns_pids = procfs::ns_pids(pid);
    let own_namespace = ns_pids.len() > 1 && ns_pids.last() == Some(&1);
    own_namespace && procfs::exe(pid).is_some_and(|exe| Some(exe) != procfs::exe(nspawn_pid))
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
