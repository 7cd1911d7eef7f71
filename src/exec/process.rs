//! Starting a process in an app's context: its cgroup, mount namespace (= its root), security
//! settings, ids, environment and working directory (ace.md "Apps perspective", X1–X6;
//! isolators G1). Used by the pod init for apps and event handlers, and by `appcctl enter`,
//! so an entered shell never gets a weaker context than the app (rkt CVE-2019-10144 class).
//!
//! Order in the child, and why:
//! 1. join the app's cgroups (the paths are host paths, visible only before step 2);
//! 2. `setns` into the app's mount namespace: root and cwd become the app's root;
//! 3. oom_score_adj, bounding/inheritable/ambient capabilities (needs CAP_SETPCAP);
//! 4. seccomp now if no_new_privs is off (loading a filter then needs CAP_SYS_ADMIN);
//! 5. setgroups, setresgid, setresuid;
//! 6. no_new_privs and seccomp (if not loaded in 4), chdir, execve.
//!
//! Errors in the child travel to the parent as text over a close-on-exec pipe (crun's
//! `sync_socket_write_error`): EOF without text means the exec happened.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{Gid, Pid, Uid, setgroups, setresgid, setresuid};
use rustix::pipe::{PipeFlags, pipe_with};

use super::security::{self, SecurityPlan};
use super::user::Ids;
use crate::sys::{Fork, fork_single_threaded};

/// Everything a process of an app is started with.
pub struct ExecContext<'a> {
    pub app: &'a str,
    pub cgroup_procs: &'a [PathBuf],
    pub mnt_ns: BorrowedFd<'a>,
    pub ids: &'a Ids,
    pub security: &'a SecurityPlan,
    pub env: &'a [String],
    pub working_dir: &'a str,
    /// Make the process a session leader with stdin as its controlling terminal.
    pub take_tty: bool,
    /// Replace stdin by /dev/null (opened before the fork, in the caller's root).
    pub stdin: Option<BorrowedFd<'a>>,
    /// Replace stdout and stderr (journald streams of the app).
    pub stdout: Option<BorrowedFd<'a>>,
    pub stderr: Option<BorrowedFd<'a>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("app {app}: cannot start {exec:?}: {reason}")]
    Start {
        app: String,
        exec: String,
        reason: String,
    },
    #[error("app {app}: cannot fork: {source}")]
    Fork { app: String, source: std::io::Error },
}

/// Forks and execs `argv` in the app's context; returns once the exec succeeded or failed.
pub fn spawn(ctx: &ExecContext<'_>, argv: &[String]) -> Result<Pid, ProcessError> {
    let start_err = |reason: String| ProcessError::Start {
        app: ctx.app.to_owned(),
        exec: argv.first().cloned().unwrap_or_default(),
        reason,
    };
    let (c_argv, c_env) = c_strings(argv, ctx.env).map_err(start_err)?;
    let (rd, wr) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| start_err(e.to_string()))?;
    let fork = fork_single_threaded().map_err(|source| ProcessError::Fork {
        app: ctx.app.to_owned(),
        source,
    })?;
    match fork {
        Fork::Child => {
            drop(rd);
            let Err(msg) = child(ctx, &c_argv, &c_env);
            let mut w = std::fs::File::from(wr);
            let _ = w.write_all(msg.as_bytes()); // best effort: the parent sees EOF otherwise
            // exit() would run nothing of the parent's twice: the init has no atexit handlers
            // and its stderr is unbuffered.
            std::process::exit(127);
        }
        Fork::Parent(pid) => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            if msg.is_empty() {
                return Ok(pid);
            }
            // The child exited after reporting; reap it so no zombie is left.
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(start_err(msg))
        }
    }
}

fn c_strings(argv: &[String], env: &[String]) -> Result<(Vec<CString>, Vec<CString>), String> {
    let conv = |v: &[String]| {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains a NUL byte")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((conv(argv)?, conv(env)?))
}

fn child(ctx: &ExecContext<'_>, argv: &[CString], env: &[CString]) -> Result<Infallible, String> {
    // The init blocks the signals it reads through a signalfd; the mask survives exec.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| format!("reset the signal mask: {e}"))?;
    // Rust's runtime ignores SIGPIPE, and an ignored signal stays ignored across exec.
    crate::sys::reset_signal_dispositions();
    for procs in ctx.cgroup_procs {
        std::fs::write(procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
    }
    setns(ctx.mnt_ns, CloneFlags::CLONE_NEWNS).map_err(|e| format!("enter the app's root: {e}"))?;
    setup_stdio(ctx)?;
    security::drop_privileges(ctx.security).map_err(|e| e.to_string())?;
    security::load_seccomp_before_user_switch(ctx.security).map_err(|e| e.to_string())?;
    switch_user(ctx.ids)?;
    security::lock_down(ctx.security).map_err(|e| e.to_string())?;
    rustix::process::chdir(ctx.working_dir)
        .map_err(|e| format!("chdir to {}: {e}", ctx.working_dir))?;
    let Err(e) = nix::unistd::execve(&argv[0], argv, env);
    Err(format!("execve: {e}"))
}

fn setup_stdio(ctx: &ExecContext<'_>) -> Result<(), String> {
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
    if let Some(stdin) = ctx.stdin {
        rustix::stdio::dup2_stdin(stdin).map_err(|e| format!("stdin: {e}"))?;
    }
    if let Some(out) = ctx.stdout {
        rustix::stdio::dup2_stdout(out).map_err(|e| format!("stdout: {e}"))?;
    }
    if let Some(err) = ctx.stderr {
        rustix::stdio::dup2_stderr(err).map_err(|e| format!("stderr: {e}"))?;
    }
    if ctx.take_tty {
        // The terminal passes through as stdio in any case. It becomes the controlling tty only
        // when no other session owns it: stealing it (TIOCSCTTY with force) would take it
        // from the user's shell for good. Ctrl-C then reaches appcctl, which stops the pod.
        match rustix::process::ioctl_tiocsctty(rustix::stdio::stdin()) {
            Ok(()) | Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::NOTTY) => {}
            Err(e) => return Err(format!("make the terminal the controlling tty: {e}")),
        }
    }
    Ok(())
}

fn switch_user(ids: &Ids) -> Result<(), String> {
    let groups: Vec<Gid> = ids.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| format!("setgroups {:?}: {e}", ids.groups))?;
    let gid = Gid::from_raw(ids.gid);
    setresgid(gid, gid, gid).map_err(|e| format!("setgid {}: {e}", ids.gid))?;
    let uid = Uid::from_raw(ids.uid);
    setresuid(uid, uid, uid).map_err(|e| format!("setuid {}: {e}", ids.uid))?;
    Ok(())
}

/// `/dev/null` for an app's stdin when the pod is not interactive.
pub fn open_dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// A borrowed fd from an owned one, for [`ExecContext::stdin`].
pub fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    fd.as_fd()
}
