//! Acting on a running pod from outside: `stop` and `enter`.
//!
//! `stop` sends SIGTERM to the pod init, which forwards it to the apps and runs their
//! post-stop handlers; after the timeout, everything in the pod's cgroups is SIGKILLed. The
//! pod has stopped when its flock is free (both `appcctl run` and the init are gone).
//!
//! `enter` joins the app's context through the same code path as the app itself
//! ([`super::process`]): the pod's IPC, UTS, network and PID namespaces, the app's mount
//! namespace (its root), its cgroup, capabilities, seccomp filter, no_new_privs, user and
//! environment — never a weaker context (rkt CVE-2019-10144/10145/10147).

use std::fs::File;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::cgroups;
use super::inroot;
use super::launch::read_exits;
use super::plan::{AppPlan, InitPlan};
use super::process::{self, ExecContext};
use super::user;
use crate::pod::{Pod, PodState, PodStore};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Pod(#[from] crate::pod::PodError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("pod {pod} is not running ({state})")]
    NotRunning { pod: String, state: PodState },
    #[error("pod {pod}: processes still running after SIGKILL: {pids:?}")]
    Unkillable { pod: String, pids: Vec<u32> },
    #[error("pod {pod}: {reason}")]
    Enter { pod: String, reason: String },
    #[error(transparent)]
    Process(#[from] process::ProcessError),
}

/// What `stop` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The pod exited within the timeout.
    Gracefully,
    /// The timeout passed (or `--force`): the pod was SIGKILLed.
    Killed,
}

/// How long to wait for processes to vanish after SIGKILL (exit is not instant).
const KILL_GRACE: Duration = Duration::from_secs(5);

pub fn stop_pod(
    pods: &PodStore,
    pod: &Pod,
    timeout: Duration,
    force: bool,
) -> Result<Stopped, ControlError> {
    let label = pod.label();
    let info = pods.info(pod)?;
    if info.state != PodState::Running {
        return Err(ControlError::NotRunning {
            pod: label,
            state: info.state,
        });
    }
    let uuid = pod.uuid();
    let init = info
        .record
        .init_pid
        .filter(|p| is_our_init(*p, info.record.init_start, uuid));
    let mut how = Stopped::Gracefully;
    match init {
        Some(init) if !force => {
            let _ = kill(Pid::from_raw(init), Signal::SIGTERM); // it may be exiting already
        }
        _ => {
            kill_everything(uuid, init)?;
            how = Stopped::Killed;
        }
    }
    if !wait_unlocked(pod, timeout)? {
        kill_everything(uuid, init)?;
        how = Stopped::Killed;
        if !wait_unlocked(pod, KILL_GRACE)? {
            let pids = cgroups::pod_pids(uuid)?;
            return Err(ControlError::Unkillable { pod: label, pids });
        }
    }
    settle(pods, pod)?;
    Ok(how)
}

/// Whether `pid` is still the pod's init: same start time as recorded (a recycled pid has
/// another), or, for records without one, a process in the pod's cgroups.
fn is_our_init(pid: i32, start: Option<u64>, uuid: crate::schema::PodUuid) -> bool {
    match start {
        Some(start) => super::launch::process_start_time(pid as u32) == Some(start),
        None => cgroups::pod_pids(uuid).is_ok_and(|pids| pids.contains(&(pid as u32))),
    }
}

/// SIGKILL to the init ends every process of its PID namespace (the kernel kills them all when
/// a namespace's init dies); the cgroupfs manager's cgroups are emptied too.
fn kill_everything(uuid: crate::schema::PodUuid, init: Option<i32>) -> Result<(), ControlError> {
    if let Some(init) = init {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL); // may have exited meanwhile
    }
    cgroups::kill_pod(uuid)?;
    Ok(())
}

/// Waits until nobody holds the pod's lock; false on timeout.
fn wait_unlocked(pod: &Pod, timeout: Duration) -> Result<bool, ControlError> {
    let start = Instant::now();
    loop {
        if !pod.is_locked()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the runner is gone: if it died before recording the end (kill -9 of `appcctl run`),
/// record it now and remove the cgroups.
fn settle(pods: &PodStore, pod: &Pod) -> Result<(), ControlError> {
    let Some(lock) = pod.try_lock_exclusive()? else {
        return Ok(()); // someone else (gc, another stop) is on it
    };
    let record = pod.record()?;
    if record.state == PodState::Running {
        let names: Vec<String> = pod
            .manifest()?
            .apps
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        let exits = read_exits(pod.dir(), names.iter().map(String::as_str));
        pods.update(pod, &lock, |r| {
            for (app, exit) in &exits {
                r.app_exit_codes.insert(app.clone(), exit.exit_code);
            }
            r.advance(PodState::Exited, crate::pod::now())
        })?;
    }
    cgroups::remove_pod_cgroups(pod.uuid())?;
    Ok(())
}

/// Runs `argv` (default: the app's shell) in app `app` of a running pod; returns its status.
pub fn enter_pod(
    pods: &PodStore,
    pod: &Pod,
    app: Option<&str>,
    argv: &[String],
) -> Result<i32, ControlError> {
    let label = pod.label();
    let err = |reason: String| ControlError::Enter {
        pod: label.clone(),
        reason,
    };
    let info = pods.info(pod)?;
    if info.state != PodState::Running {
        return Err(ControlError::NotRunning {
            pod: label,
            state: info.state,
        });
    }
    let plan = read_plan(pod).map_err(&err)?;
    let app = pick_app(&plan, app).map_err(&err)?;
    let init = info
        .record
        .init_pid
        .ok_or_else(|| err("no init pid recorded".into()))?;
    let app_pid = find_app_process(app, init).map_err(&err)?;
    let argv = if argv.is_empty() {
        vec!["/bin/sh".to_owned()]
    } else {
        argv.to_vec()
    };
    let status = join_and_run(app, init, app_pid, &argv).map_err(&err)?;
    Ok(status)
}

fn read_plan(pod: &Pod) -> Result<InitPlan, String> {
    let path = pod.dir().join("plan.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("parse {}: {e}", path.display()))
}

fn pick_app<'a>(plan: &'a InitPlan, app: Option<&str>) -> Result<&'a AppPlan, String> {
    let names = || {
        plan.apps
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match app {
        Some(name) => plan
            .apps
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| format!("no app {name:?} (apps: {})", names())),
        None if plan.apps.len() == 1 => Ok(&plan.apps[0]),
        None => Err(format!(
            "the pod has several apps; pick one with --app ({})",
            names()
        )),
    }
}

/// The app's main process: a child of the init whose environment names the app (X1 sets
/// `AC_APP_NAME` for every app and handler; handlers do not overlap the app's life).
fn find_app_process(app: &AppPlan, init: i32) -> Result<i32, String> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .map_err(|e| format!("list the init's children: {e}"))?;
    let wanted = format!("AC_APP_NAME={}", app.name);
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .ok_or_else(|| format!("app {} is not running", app.name))
}

/// The `cgroup.procs` files of the cgroups `pid` is in (any manager: cgroupfs, scope, service).
fn cgroup_procs_of(pid: i32) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let base = match ctrl {
            "" if root.join("unified").is_dir() => root.join("unified"),
            "" => root.to_owned(),
            c => root.join(c.strip_prefix("name=").unwrap_or(c)),
        };
        let procs = base.join(path.trim_start_matches('/')).join("cgroup.procs");
        // A read-only hierarchy (a container's v1 controllers) holds the app where it is for
        // good: there is nothing to join, and writing would fail with EROFS.
        let writable = rustix::fs::statvfs(&procs)
            .is_ok_and(|v| !v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        if procs.is_file() && writable {
            out.push(procs);
        }
    }
    out
}

fn join_and_run(app: &AppPlan, init: i32, app_pid: i32, argv: &[String]) -> Result<i32, String> {
    let open = |pid: i32, ns: &str| {
        File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|e| format!("open {ns} namespace: {e}"))
    };
    let mnt = open(app_pid, "mnt")?;
    let others = [
        (open(init, "ipc")?, CloneFlags::CLONE_NEWIPC),
        (open(init, "uts")?, CloneFlags::CLONE_NEWUTS),
        (open(init, "net")?, CloneFlags::CLONE_NEWNET),
        (open(init, "pid")?, CloneFlags::CLONE_NEWPID),
    ];
    let root = inroot::open_root(std::path::Path::new(&format!("/proc/{app_pid}/root")))
        .map_err(|e| e.to_string())?;
    let ids = user::resolve_ids(root.as_fd(), &app.user, &app.group, &app.supplementary_gids)
        .map_err(|e| e.to_string())?;
    // Until it execs, our child runs appcctl's image inside the pod: non-dumpable, no
    // process of the pod can open its /proc entries or executable (CVE-2019-5736).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("make appcctl non-dumpable: {e}"))?;
    for (fd, flag) in &others {
        setns(fd.as_fd(), *flag)
            .map_err(|e| format!("join the pod's namespace ({flag:?}): {e}"))?;
    }
    // Whatever our caller left open must not reach the pod (the init does the same for apps).
    crate::sys::cloexec_from(3).map_err(|e| format!("mark descriptors close-on-exec: {e}"))?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let cgroup_procs = cgroup_procs_of(app_pid);
    let ctx = ExecContext {
        app: &app.name,
        cgroup_procs: &cgroup_procs,
        mnt_ns: mnt.as_fd(),
        ids: &ids,
        security: &app.security,
        env: &app.env,
        working_dir: &app.working_dir,
        take_tty: tty,
        stdin: None,
        stdout: None,
        stderr: None,
    };
    let pid = process::spawn(&ctx, argv).map_err(|e| e.to_string())?;
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for the entered process: {e}")),
        }
    }
}
