//! `appc-init`, the pod's PID 1 (DESIGN.md "Process model"; ace.md lifecycle, §2.5.7).
//!
//! Small and single-threaded, without an async runtime: it reads the plan, waits for
//! `appcctl` (sync 1), brings loopback up, sets the hostname, builds every app's root, runs
//! the pre-start handlers to completion, starts the apps, reports (sync 2), then supervises:
//! it reaps every zombie of the pod, forwards SIGTERM/SIGINT/SIGHUP to the apps, stops the
//! other apps when one fails, runs each app's post-stop handler after the app exits, and
//! exits with the first failing app's status (0 when all succeed). After `stop_timeout_ms`
//! of a stop, whatever is left is SIGKILLed.
//!
//! The init is exec'd from a sealed memfd and makes itself non-dumpable, so no process of
//! the pod can open its executable or its /proc entries (CVE-2019-5736 class).

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SigSet, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::plan::{AppPlan, InitPlan};
use super::process::{self, ExecContext};
use super::rootfs::{self, BuiltRoot};
use super::sync::{self, FromInit, ToInit};

/// The exit status of an app, as written to `<pod>/status/<app>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppExit {
    /// The exit code, or 128 + signal for a killed app (the shell's convention).
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Unix time in seconds.
    pub exited: i64,
}

/// The command line of `appc-init`.
pub struct InitArgs {
    pub plan: PathBuf,
    pub sync_fd: RawFd,
    pub lock_fd: RawFd,
}

impl InitArgs {
    pub fn parse(args: &[String]) -> Result<InitArgs, String> {
        match args {
            [plan, sync_fd, lock_fd] => Ok(InitArgs {
                plan: PathBuf::from(plan),
                sync_fd: sync_fd.parse().map_err(|_| format!("bad fd {sync_fd:?}"))?,
                lock_fd: lock_fd.parse().map_err(|_| format!("bad fd {lock_fd:?}"))?,
            }),
            _ => Err("usage: appc-init PLAN SYNC_FD LOCK_FD (started by appcctl only)".into()),
        }
    }
}

/// Where apps' output goes: the terminal (inherited), or journald streams per app.
struct Logs {
    journal: bool,
    unit: Option<String>,
}

impl Logs {
    /// The stdout and stderr streams of one process of `app` (identifier = the app's name, as
    /// rkt did; stderr at priority err). `None` when output stays on the inherited terminal.
    fn streams(&self, app: &str) -> Option<(OwnedFd, OwnedFd)> {
        if !self.journal {
            return None;
        }
        use crate::systemd::journal::{JournalSocket, STDERR_PRIORITY, STDOUT_PRIORITY};
        let sock = JournalSocket::system();
        let unit = self.unit.as_deref();
        let open = |p| sock.open_stream(app, unit, p, false);
        match (open(STDOUT_PRIORITY), open(STDERR_PRIORITY)) {
            (Ok(out), Ok(err)) => Some((out, err)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("appc-init: app {app}: {e}; its output goes to the terminal");
                None
            }
        }
    }
}

struct App<'a> {
    plan: &'a AppPlan,
    root: BuiltRoot,
    pid: Option<Pid>,
    exit: Option<AppExit>,
}

/// Runs the pod; the return value is the init's exit status.
pub fn main(args: InitArgs) -> Result<i32, String> {
    // Nothing appcctl's caller leaked may reach an app (the first security rule).
    crate::sys::cloexec_from(3).map_err(|e| format!("mark descriptors close-on-exec: {e}"))?;
    // Exec'd as /proc/self/fd/N, the kernel named us "N"; ps and pgrep should say appc-init.
    let _ = rustix::thread::set_name(c"appc-init"); // best effort: cosmetic
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("make the init non-dumpable: {e}"))?;
    let chan = crate::sys::take_inherited_fd(args.sync_fd)
        .map_err(|e| format!("sync fd {}: {e}", args.sync_fd))?;
    // Held for the pod's life: the pod is live as long as someone holds this flock.
    let _lock = crate::sys::take_inherited_fd(args.lock_fd)
        .map_err(|e| format!("lock fd {}: {e}", args.lock_fd))?;
    let plan = read_plan(&args.plan)?;
    let signals = block_signals()?;
    let logs = match sync::recv_msg::<ToInit>(&chan) {
        Ok(Some(ToInit::Go { journal, unit })) => Logs { journal, unit },
        other => return Err(format!("appcctl went away before the start ({other:?})")),
    };
    let mut apps = match start_pod(&plan, &logs) {
        Ok(apps) => apps,
        Err((error, code)) => {
            let _ = sync::send_msg(&chan, &FromInit::Failed { error, code });
            return Ok(code.unwrap_or(254));
        }
    };
    let started = apps
        .iter()
        .map(|a| (a.plan.name.clone(), a.pid.map_or(0, Pid::as_raw)))
        .collect();
    let _ = sync::send_msg(&chan, &FromInit::Started { apps: started });
    drop(chan);
    Ok(supervise(&plan, &logs, &mut apps, &signals))
}

fn read_plan(path: &Path) -> Result<InitPlan, String> {
    let text = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("parse {}: {e}", path.display()))
}

fn block_signals() -> Result<SignalFd, String> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("block signals: {e}"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))
}

type StartError = (String, Option<i32>);

fn start_pod<'a>(plan: &'a InitPlan, logs: &Logs) -> Result<Vec<App<'a>>, StartError> {
    let fail = |e: String| (e, None);
    rootfs::make_mounts_private().map_err(|e| fail(format!("make mounts private: {e}")))?;
    if plan.private_network {
        crate::sys::loopback_up().map_err(|e| fail(format!("bring loopback up: {e}")))?;
    }
    rustix::system::sethostname(plan.hostname.as_bytes())
        .map_err(|e| fail(format!("set hostname {:?}: {e}", plan.hostname)))?;
    let mut apps = Vec::new();
    for app in &plan.apps {
        let root = rootfs::build_root(plan, app).map_err(|e| fail(e.to_string()))?;
        for w in &root.warnings {
            eprintln!("appc-init: warning: {w}");
        }
        apps.push(App {
            plan: app,
            root,
            pid: None,
            exit: None,
        });
    }
    for app in &apps {
        if let Some(handler) = &app.plan.pre_start {
            run_handler(plan, logs, app, handler, "pre-start")?;
        }
    }
    for app in &mut apps {
        let pid = spawn_app(plan, logs, app, &app.plan.exec).map_err(|e| fail(e.to_string()))?;
        app.pid = Some(pid);
    }
    Ok(apps)
}

fn spawn_app(
    plan: &InitPlan,
    logs: &Logs,
    app: &App<'_>,
    argv: &[String],
) -> Result<Pid, process::ProcessError> {
    let null = process::open_dev_null().map_err(|source| process::ProcessError::Fork {
        app: app.plan.name.clone(),
        source,
    })?;
    // Opened per process and closed here after the fork: the app holds the only copies.
    let streams = if plan.interactive {
        None
    } else {
        logs.streams(&app.plan.name)
    };
    let ctx = ExecContext {
        app: &app.plan.name,
        cgroup_procs: &app.plan.cgroup_procs,
        mnt_ns: app.root.mnt_ns.as_fd(),
        ids: &app.root.ids,
        security: &app.plan.security,
        env: &app.plan.env,
        working_dir: &app.plan.working_dir,
        take_tty: plan.interactive,
        stdin: (!plan.interactive).then(|| null.as_fd()),
        stdout: streams.as_ref().map(|(o, _)| o.as_fd()),
        stderr: streams.as_ref().map(|(_, e)| e.as_fd()),
    };
    process::spawn(&ctx, argv)
}

/// Runs an event handler to completion in the app's context; a failure is an error.
fn run_handler(
    plan: &InitPlan,
    logs: &Logs,
    app: &App<'_>,
    argv: &[String],
    event: &str,
) -> Result<(), StartError> {
    let name = &app.plan.name;
    let pid =
        spawn_app(plan, logs, app, argv).map_err(|e| (format!("{event} handler: {e}"), None))?;
    let status = wait_for(pid);
    match status.exit_code {
        0 => Ok(()),
        code => Err((
            format!("app {name}: {event} handler {argv:?} exited with status {code}"),
            Some(code),
        )),
    }
}

/// Waits for one child (others stay zombies until the main loop reaps them).
fn wait_for(pid: Pid) -> AppExit {
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(exit) = exit_of(status) {
                    return exit;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return exit_record(254, None),
        }
    }
}

fn exit_of(status: WaitStatus) -> Option<AppExit> {
    match status {
        WaitStatus::Exited(_, code) => Some(exit_record(code, None)),
        WaitStatus::Signaled(_, sig, _) => Some(exit_record(128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}

fn exit_record(exit_code: i32, signal: Option<i32>) -> AppExit {
    AppExit {
        exit_code,
        signal,
        exited: crate::pod::now(),
    }
}

/// The main loop: until every app has exited.
fn supervise(plan: &InitPlan, logs: &Logs, apps: &mut [App<'_>], signals: &SignalFd) -> i32 {
    let mut first_failure: Option<i32> = None;
    let mut stop_deadline: Option<Instant> = None;
    while apps.iter().any(|a| a.exit.is_none()) {
        let timeout = stop_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
            // Stop timeout: everything but us (kill(-1) in a PID namespace spares its init).
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            stop_deadline = None;
        }
        match wait_signal(signals, timeout) {
            Some(Signal::SIGCHLD) => {
                for (i, exit) in reap(apps) {
                    let failed = exit.exit_code != 0;
                    record_exit(plan, logs, &mut apps[i], exit);
                    if failed && first_failure.is_none() {
                        first_failure = apps[i].exit.as_ref().map(|e| e.exit_code);
                    }
                    if failed && stop_deadline.is_none() {
                        stop_deadline = Some(stop_apps(plan, apps));
                    }
                }
            }
            Some(_) if stop_deadline.is_none() => stop_deadline = Some(stop_apps(plan, apps)),
            _ => {}
        }
    }
    // Daemons an app left behind die with the pod.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while reap_any() {}
    first_failure.unwrap_or(0)
}

/// Waits for the next signal; `None` on timeout.
fn wait_signal(signals: &SignalFd, timeout: Option<Duration>) -> Option<Signal> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = timeout.map_or(PollTimeout::NONE, |d| {
        PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
    });
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, ms) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    match signals.read_signal() {
        Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
        _ => None,
    }
}

/// Reaps every exited child; returns the ones that were apps' main processes, by app index.
fn reap(apps: &[App<'_>]) -> Vec<(usize, AppExit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                let (Some(pid), Some(exit)) = (status.pid(), exit_of(status)) else {
                    continue;
                };
                if let Some(i) = apps.iter().position(|a| a.pid == Some(pid)) {
                    out.push((i, exit));
                }
            }
        }
    }
    out
}

fn reap_any() -> bool {
    matches!(
        waitpid(Pid::from_raw(-1), None),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

/// Records an app's exit on disk and runs its post-stop handler (failures are reported, not
/// fatal: the pod is stopping anyway).
fn record_exit(plan: &InitPlan, logs: &Logs, app: &mut App<'_>, exit: AppExit) {
    if let Some(handler) = &app.plan.post_stop
        && let Err((e, _)) = run_handler(plan, logs, app, handler, "post-stop")
    {
        eprintln!("appc-init: {e}");
    }
    if let Err(e) = write_status(&plan.pod_dir, &app.plan.name, &exit) {
        eprintln!(
            "appc-init: app {}: cannot record the exit status: {e}",
            app.plan.name
        );
    }
    app.exit = Some(exit);
}

/// `<pod>/status/<app>.json`, atomically.
pub fn write_status(pod_dir: &Path, app: &str, exit: &AppExit) -> Result<(), String> {
    let dir = pod_dir.join("status");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let json = serde_json::to_vec(exit).map_err(|e| e.to_string())?;
    crate::pod::fsio::write_atomic(&dir, &format!("{app}.json"), &json, 0o644)
        .map_err(|e| e.to_string())
}

/// SIGTERM to every running app (each is a session leader: its whole process group);
/// returns the deadline after which the rest is SIGKILLed.
fn stop_apps(plan: &InitPlan, apps: &[App<'_>]) -> Instant {
    for app in apps.iter().filter(|a| a.exit.is_none()) {
        if let Some(pid) = app.pid {
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGTERM);
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
    Instant::now() + Duration::from_millis(plan.stop_timeout_ms)
}
