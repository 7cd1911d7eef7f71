//! Teardown: halt, kill what is left, remove cgroups, unmount, remove the directory.

use std::fs;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use super::procfs::ProcId;
use super::{HostError, TeardownReport, TestHost, cgroup, exec, mounts};

impl TestHost {
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
