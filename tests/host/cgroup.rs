//! A private cgroup per test host.
//!
//! WHY: with `--keep-unit` and no systemd on the machine, systemd-nspawn does not ask anyone for a
//! scope; it creates `payload/` and `supervisor/` *inside the cgroup it was started in* and makes
//! `payload/` the container's cgroup namespace root. Two hosts started from the same cgroup (two
//! test threads) would therefore share one `payload/` tree, and both container systemds would
//! manage the same `init.scope` and `system.slice`. So each host's nspawn is first moved into its
//! own `<our cgroup>/<machine name>/` in every hierarchy nspawn uses: the named `name=systemd` v1
//! hierarchy and/or the unified (v2) one. nspawn also never removes `payload/` and `supervisor/`
//! when it exits here, so teardown removes the whole per-host subtree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::mounts;

/// This process's own cgroup directory in each hierarchy nspawn places containers in.
pub fn own_hierarchies() -> io::Result<Vec<PathBuf>> {
    let membership = fs::read_to_string("/proc/self/cgroup")?;
    let mount_table = mounts::mount_table();
    let mut dirs = Vec::new();
    for line in membership.lines() {
        // Format (cgroups(7)): hierarchy-id:controller-list:path
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mount = if id == "0" && controllers.is_empty() {
            mount_table.iter().find(|m| m.fstype == "cgroup2")
        } else if controllers == "name=systemd" {
            mount_table.iter().find(|m| {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "name=systemd")
            })
        } else {
            None
        };
        // A hierarchy mounted with a non-`/` root (we are inside a cgroup namespace) is only
        // usable if our own cgroup lies below that root.
        if let Some(m) = mount
            && let Ok(relative) = Path::new(path).strip_prefix(&m.root)
        {
            dirs.push(m.mountpoint.join(relative));
        }
    }
    Ok(dirs)
}

/// Creates `<dir>/<name>` in each hierarchy; returns the created directories.
pub fn create(parents: &[PathBuf], name: &str) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for parent in parents {
        let dir = parent.join(name);
        fs::create_dir(&dir)?;
        created.push(dir);
    }
    Ok(created)
}

/// Every PID in `dir` and its descendant cgroups.
pub fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for child in subdirs(dir) {
        pids.extend(pids_below(&child));
    }
    pids
}

/// Removes `dir` and every cgroup below it, deepest first (cgroupfs only lets `rmdir` remove
/// an empty cgroup; its control files vanish with it). Retries for up to `patience`, because a
/// cgroup stays busy for a moment after its last process has been reaped.
pub fn remove_tree(dir: &Path, patience: Duration) -> io::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match remove_tree_once(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn remove_tree_once(dir: &Path) -> io::Result<()> {
    for child in subdirs(dir) {
        remove_tree_once(&child)?;
    }
    fs::remove_dir(dir)
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}
