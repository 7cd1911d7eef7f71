//! The harness's error type and the teardown report.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::RunOutput;

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
