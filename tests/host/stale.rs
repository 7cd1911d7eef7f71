//! Cleaning up after earlier test processes that died without tearing their hosts down (SIGKILL,
//! `panic = "abort"`, a cancelled CI job).
//!
//! Every host's directory, mounts and cgroups are named `appc-testhost-<test pid>-…`. A name whose
//! test process no longer exists is a leftover: the first boot in each test process kills what is
//! still running in it, unmounts it and removes it. Names of live processes are never touched, so
//! concurrently running test binaries do not disturb each other.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Once;
use std::thread;
use std::time::Duration;

use super::tools::Tools;
use super::{cgroup, exec, hosts_dir, mounts, procfs};

/// Prefix of every name a test host uses (directory, machine, mount source, cgroup).
pub const PREFIX: &str = "appc-testhost-";

/// Runs [`reap`] once per test process.
pub fn reap_once(tools: &Tools) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| reap(tools));
}

/// Finds leftovers of dead test processes and removes them. Best effort: whatever cannot be
/// removed is reported on stderr and does not stop a new host from booting (its names are
/// unique).
pub fn reap(tools: &Tools) {
    let base = hosts_dir();
    let cgroup_parents = cgroup::own_hierarchies().unwrap_or_default();
    for name in leftover_names(&base, &cgroup_parents) {
        eprintln!("test host: cleaning up {name}, left behind by a test process that is gone");
        reap_one(tools, &base, &cgroup_parents, &name);
    }
}

fn leftover_names(base: &Path, cgroup_parents: &[std::path::PathBuf]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in std::iter::once(base).chain(cgroup_parents.iter().map(|p| p.as_path())) {
        names.extend(prefixed_entries(dir));
    }
    for mount in mounts::mount_table() {
        if let Ok(rest) = mount.mountpoint.strip_prefix(base)
            && let Some(first) = rest.iter().next().and_then(|c| c.to_str())
            && first.starts_with(PREFIX)
        {
            names.insert(first.to_string());
        }
    }
    names.retain(|name| owner_pid(name).is_some_and(|pid| !procfs::pid_exists(pid)));
    names
}

fn prefixed_entries(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(PREFIX))
        .collect()
}

/// The PID of the test process that created `name` (`appc-testhost-<pid>-<n>-<random>`).
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn reap_one(tools: &Tools, base: &Path, cgroup_parents: &[std::path::PathBuf], name: &str) {
    let cgroups: Vec<_> = cgroup_parents.iter().map(|p| p.join(name)).collect();
    // Everything of the old host runs in its cgroups; nspawn's command line names the machine
    // in case the cgroups are already gone.
    let mut victims: Vec<i32> = cgroups.iter().flat_map(|c| cgroup::pids_below(c)).collect();
    victims.extend(
        procfs::all_pids()
            .into_iter()
            .filter(|&p| procfs::cmdline(p).is_some_and(|c| c.contains(name))),
    );
    for pid in &victims {
        exec::signal(&tools.kill, &pid.to_string(), "KILL");
    }
    if !victims.is_empty() {
        thread::sleep(Duration::from_millis(200));
    }
    let dir = base.join(name);
    for mount in mounts::mounts_under(&dir) {
        if let Err(e) = mounts::unmount(tools, &mount.mountpoint) {
            eprintln!("test host: leftover {name}: {e}");
        }
    }
    for cg in &cgroups {
        if let Err(e) = cgroup::remove_tree(cg, Duration::from_secs(2)) {
            eprintln!("test host: leftover cgroup {}: {e}", cg.display());
        }
    }
    if dir.exists()
        && let Err(e) = fs::remove_dir(&dir)
    {
        eprintln!("test host: leftover directory {}: {e}", dir.display());
    }
}
