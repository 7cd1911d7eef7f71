//! The two mounts under each test host directory (a tmpfs, and an overlay of `/` on it), and
//! reading `/proc/self/mountinfo` to prove they are gone afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::HostError;
use super::tools::Tools;

/// One line of `/proc/self/mountinfo`, reduced to what the harness checks.
#[derive(Clone, Debug)]
pub struct MountEntry {
    /// Root of the mount within its filesystem (field 4): not `/` for bind mounts and for
    /// cgroup hierarchies seen from inside a cgroup namespace.
    pub root: PathBuf,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Every mount of this process's mount namespace, in mount order.
pub fn mount_table() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// Mounts at or below `dir`, deepest (most recently mounted) first, so they can be unmounted in
/// that order.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    let mut found: Vec<MountEntry> = mount_table()
        .into_iter()
        .filter(|m| m.mountpoint.starts_with(dir))
        .collect();
    found.reverse();
    found
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // Format (proc(5)): id parent major:minor root mountpoint options [optional...] - fstype source super
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    Some(MountEntry {
        root: PathBuf::from(unescape(left.get(3)?)),
        mountpoint: PathBuf::from(unescape(left.get(4)?)),
        fstype: right.next()?.to_string(),
        source: unescape(right.next()?),
        super_options: right.next().unwrap_or_default().to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `mount -t FSTYPE -o OPTIONS SOURCE TARGET`. The source is the machine name, so every mount a
/// test host makes is recognisable in `findmnt` output and by the stale-leftover reaper.
pub fn mount(
    tools: &Tools,
    fstype: &str,
    source: &str,
    options: &str,
    target: &Path,
) -> Result<(), HostError> {
    let mut cmd = Command::new(&tools.mount);
    cmd.args(["-t", fstype, "-o", options, source]).arg(target);
    run_checked(cmd, "mount")
}

/// How an unmount ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// A normal unmount succeeded.
    Cleanly,
    /// Only `umount --lazy` worked: the mount is detached from the tree, but something still
    /// held it (an open file, a process's cwd) when we gave up waiting.
    Lazily,
}

/// Unmounts `target`, retrying for a moment (a process that just died may still pin it for a few
/// milliseconds) and falling back to a lazy unmount as a last resort.
pub fn unmount(tools: &Tools, target: &Path) -> Result<Unmounted, HostError> {
    const ATTEMPTS: u32 = 20;
    for _ in 0..ATTEMPTS {
        let mut cmd = Command::new(&tools.umount);
        cmd.arg(target);
        if run_checked(cmd, "unmount").is_ok() {
            return Ok(Unmounted::Cleanly);
        }
        thread::sleep(Duration::from_millis(50));
    }
    let mut lazy = Command::new(&tools.umount);
    lazy.arg("--lazy").arg(target);
    run_checked(lazy, "lazy unmount").map(|()| Unmounted::Lazily)
}

/// Runs a short host command and turns a non-zero exit into [`HostError::Command`].
pub fn run_checked(mut cmd: Command, step: &'static str) -> Result<(), HostError> {
    let command = format!("{cmd:?}");
    let output = cmd.output().map_err(|source| HostError::Spawn {
        step,
        command: command.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(HostError::Command {
        step,
        command,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
