//! Reading `/proc`: the harness's only view of the container's processes.
//!
//! Everything here is read-only and tolerant of races: a process may exit between listing `/proc`
//! and reading one of its files, so every lookup returns `Option` instead of an error.

use std::fs;
use std::path::PathBuf;

/// A process identity that survives PID reuse: the PID plus its start time (field 22 of
/// `/proc/PID/stat`, clock ticks since boot). Before signalling a PID that we found a while ago
/// we check that the start time still matches, so we never kill an unrelated newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    /// The identity of the process currently holding `pid`, if any.
    pub fn of(pid: i32) -> Option<ProcId> {
        let stat = Stat::read(pid)?;
        Some(ProcId {
            pid,
            start_time: stat.start_time,
        })
    }

    /// True while this very process exists and has not yet exited. A zombie counts as gone: it
    /// holds no namespaces or mounts any more and only waits for its parent to reap it.
    pub fn is_alive(&self) -> bool {
        match Stat::read(self.pid) {
            Some(stat) => stat.start_time == self.start_time && !matches!(stat.state, 'Z' | 'X'),
            None => false,
        }
    }
}

/// The few fields of `/proc/PID/stat` the harness needs.
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    start_time: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Stat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may itself contain spaces and
        // parentheses, so split after the *last* ')' (see proc(5)).
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `fields[0]` is field 3 (state); field N is at index N - 3.
        Some(Stat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }
}

/// Every PID currently listed in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Direct children of `pid`, found by scanning every process's parent PID. WHY not
/// `/proc/PID/task/*/children`: that file needs CONFIG_PROC_CHILDREN, and a full scan costs
/// only a few hundred small reads.
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| Stat::read(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// Every live process in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| Stat::read(p).is_some_and(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X')))
        .collect()
}

/// The `NSpid:` line of `/proc/PID/status`: the PID as seen from each nested PID namespace,
/// outermost first. A container's init has exactly `[<host pid>, …, 1]`.
pub fn ns_pids(pid: i32) -> Vec<i32> {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The executable of `pid` (`/proc/PID/exe`).
pub fn exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The command line of `pid`, arguments joined with spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " "),
    )
}

/// The effective UID of this process, from `/proc/self/status` (no libc call needed).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// True if `/proc/PID` exists (the process may be a zombie).
pub fn pid_exists(pid: i32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}
