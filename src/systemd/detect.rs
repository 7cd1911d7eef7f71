//! Is systemd our init, and which unit do we run in (nspawn's `--keep-unit`, automatic under a
//! service such as `appc-pod@NAME.service`).

use std::path::Path;

/// Whether systemd is PID 1: `/run/systemd/system` exists (`sd_booted()`).
pub fn systemd_is_pid1() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit this process runs in (`foo.service`, `session-1.scope`, …), from the systemd line of
/// `/proc/self/cgroup`; `None` when there is none (no systemd, or the root cgroup).
pub fn own_unit() -> Option<String> {
    let contents = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_from_proc_cgroup(&contents)
}

/// The service this process runs in, if any: when `appcctl` runs under a service the pod keeps
/// that unit (`--keep-unit`); a session scope or `init.scope` is never kept.
pub fn own_service() -> Option<String> {
    own_unit().filter(|u| u.ends_with(".service"))
}

/// Parses `/proc/PID/cgroup`: the `name=systemd` hierarchy on legacy and hybrid hosts, else the
/// unified `0::` line; the unit is the last `*.service` or `*.scope` path component (a service
/// with `Delegate=yes` may have sub-cgroups below its own).
pub fn unit_from_proc_cgroup(contents: &str) -> Option<String> {
    let mut named = None;
    let mut unified = None;
    for line in contents.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers == "name=systemd" {
            named = Some(path);
        } else if id == "0" && controllers.is_empty() {
            unified = Some(path);
        }
    }
    let path = named.or(unified)?;
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_host() {
        let f = "0::/system.slice/appc-pod@demo.service\n";
        assert_eq!(
            unit_from_proc_cgroup(f).as_deref(),
            Some("appc-pod@demo.service")
        );
    }

    #[test]
    fn hybrid_host_prefers_name_systemd() {
        let f = "12:pids:/system.slice/x.service\n\
                 1:name=systemd:/user.slice/user-0.slice/session-3.scope\n\
                 0::/user.slice/user-0.slice/session-3.scope\n";
        assert_eq!(unit_from_proc_cgroup(f).as_deref(), Some("session-3.scope"));
    }

    #[test]
    fn delegated_subgroup_gives_the_unit() {
        let f = "0::/machine.slice/appc-web.scope/payload/app\n";
        assert_eq!(unit_from_proc_cgroup(f).as_deref(), Some("appc-web.scope"));
        let f = "0::/system.slice/appc-pod@a.service/supervisor\n";
        assert_eq!(
            unit_from_proc_cgroup(f).as_deref(),
            Some("appc-pod@a.service")
        );
    }

    #[test]
    fn no_unit() {
        assert_eq!(unit_from_proc_cgroup("0::/\n"), None);
        assert_eq!(unit_from_proc_cgroup("0::/machine.slice\n"), None);
        assert_eq!(unit_from_proc_cgroup("4:memory:/x.service\n"), None);
        assert_eq!(unit_from_proc_cgroup(""), None);
        // A colon inside the path does not confuse the split.
        let f = "0::/system.slice/a:b.service\n";
        assert_eq!(unit_from_proc_cgroup(f).as_deref(), Some("a:b.service"));
    }
}
