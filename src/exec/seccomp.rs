//! Syscall filters: ace.md "Isolators", `os/linux/seccomp-remove-set` and
//! `os/linux/seccomp-retain-set` (appc-requirements.md §2.5.8, with the G3 report).
//!
//! [`plan_seccomp`] turns the app's seccomp isolator into a [`SeccompPlan`]: a default action
//! and one action per syscall name, groups already expanded and names already checked against
//! libseccomp's table for this architecture. It is pure and unit-tested; [`load`] is the only
//! part that talks to the kernel.
//!
//! Decisions (the spec leaves these to the implementation):
//!
//! - No seccomp isolator: [`DEFAULT_BLACKLIST`] applies, blocked calls fail with `EPERM` (spec:
//!   "MAY apply own filter"), and a report line says so.
//! - An explicit remove-set blocks exactly what it lists; users who want our blacklist too add
//!   the `@appc-pod/default-blacklist` group to it.
//! - `@appc.io/empty`, in either set, masks the other entries and gives the default filtering,
//!   i.e. the same plan as no isolator at all (ace.md: "opts into implementation default
//!   filtering"). Reading it literally in a retain-set (allow nothing) would keep every app from
//!   starting.
//! - `@appc.io/all` in a retain-set: no filter at all. In a remove-set it would block every
//!   syscall including `execve`, so the app could never start: that is refused with an error
//!   rather than reported later as a mysterious start failure.
//! - `@appc.io/all` and `@appc.io/empty` in one set contradict each other: an error.
//! - An `errno` Linux does not know (`EACCESS` in the spec's own example) falls back to `EPERM`
//!   with a `Changed` report: the author asked for a failing call, not a killed process.
//! - A syscall name libseccomp does not know on this architecture is left out with a `Changed`
//!   report (spec: "MAY ignore unsupported"); names from our own tables that this architecture
//!   lacks (`vm86` on x86_64) are left out silently.
//! - `@rkt/default-blacklist` and `@docker/default-blacklist`, the groups rkt understood, are
//!   aliases of ours so that rkt manifests keep working.

use std::collections::{BTreeMap, BTreeSet};

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext, ScmpSyscall};
use nix::errno::Errno;

use crate::cgroup::{IsolatorReport, Outcome};
use crate::schema::{ErrnoName, Isolator, IsolatorScope, SeccompEntry, SeccompFilter};

/// Our own group: the syscalls blocked when the app has no seccomp isolator.
pub const DEFAULT_BLACKLIST: &str = "@appc-pod/default-blacklist";

/// Group names rkt accepted for its blacklist; they expand to ours.
const BLACKLIST_ALIASES: [&str; 2] = ["@rkt/default-blacklist", "@docker/default-blacklist"];

/// The members of [`DEFAULT_BLACKLIST`]: the "significant syscalls blocked by the default
/// profile" of Docker (docs.docker.com/engine/security/seccomp/, moby
/// `profiles/seccomp/default.json`), minus the ones Docker only restricts by argument (we have
/// no argument rules): kernel modules and kexec, the mount API, namespaces, keyrings, BPF and
/// perf, ptrace and cross-process memory access, userfaultfd, io_uring (removed from moby's
/// allowlist in v25), clock setting, swap, reboot, quotas and obsolete calls. `clone3` is *not*
/// here: libcs fall back to `clone` only on `ENOSYS`, so `EPERM` would break thread creation;
/// `personality` is not here either, as Docker allows its query and benign personas.
/// `clone(CLONE_NEW*)` cannot be caught without argument rules; the bounding set (no
/// `CAP_SYS_ADMIN`) covers the namespaces that need it.
pub const DEFAULT_BLACKLIST_SYSCALLS: &[&str] = &[
    // Kernel modules, kexec.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    // File handles bypass the mount-namespace view (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
    // Kernel attack surface that is rarely needed by apps.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    // Keyrings are not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    // Debugging other processes.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    // Host-wide state.
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "stime",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "iopl",
    "ioperm",
    // Mounts and namespaces.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    // Obsolete.
    "sysfs",
    "_sysctl",
    "uselib",
    "ustat",
    "vm86",
    "vm86old",
];

/// Allowed in every retain-set: what the executor itself calls between loading the filter and
/// the app's `execve` (the filter may be loaded before the user switch, see
/// `security::seccomp_before_user_switch`), plus what ends a process. `arch_prctl` and
/// `set_tid_address` are the two calls a static musl binary makes before `main` (TLS setup),
/// so that a retain-set naming only the app's own calls still reaches it. Memory calls are
/// here because the executor allocates (error messages, `CString`s for `execve`).
pub const LIFECYCLE_SYSCALLS: &[&str] = &[
    // Starting and ending the app.
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "rt_sigreturn",
    // The user switch and the capability / no_new_privs steps after an early load.
    "setgroups",
    "setresuid",
    "setresgid",
    "setuid",
    "setgid",
    "capget",
    "capset",
    "prctl",
    // Working directory and inherited descriptors.
    "chdir",
    "fchdir",
    "close",
    "close_range",
    // Allocation and error reporting to the parent.
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "write",
    "futex",
    "arch_prctl",
    "set_tid_address",
];

/// What the filter does with a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompAction {
    Allow,
    /// Fail the call with this errno.
    Errno(i32),
    /// Kill the whole process with `SIGSYS` (ace.md: missing `errno` ⇒ kill with `SIGSYS`).
    KillProcess,
}

impl From<SeccompAction> for ScmpAction {
    fn from(a: SeccompAction) -> Self {
        match a {
            SeccompAction::Allow => ScmpAction::Allow,
            SeccompAction::Errno(e) => ScmpAction::Errno(e),
            SeccompAction::KillProcess => ScmpAction::KillProcess,
        }
    }
}

/// A resolved filter: every syscall not in `rules` gets `default_action`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeccompPlan {
    pub default_action: SeccompAction,
    /// Syscall name (known to libseccomp on this architecture) → action.
    pub rules: BTreeMap<String, SeccompAction>,
}

impl SeccompPlan {
    /// The filter applied without a seccomp isolator: allow all but [`DEFAULT_BLACKLIST`],
    /// which fails with `EPERM`.
    pub fn default_blacklist() -> SeccompPlan {
        let blocked = SeccompAction::Errno(Errno::EPERM as i32);
        let rules = known_syscalls(DEFAULT_BLACKLIST_SYSCALLS.iter().copied())
            .map(|name| (name.to_owned(), blocked))
            .collect();
        SeccompPlan {
            default_action: SeccompAction::Allow,
            rules,
        }
    }
}

/// Why a filter could not be planned or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown seccomp group \"{group}\" (known groups: {known})")]
    UnknownGroup { group: String, known: String },
    #[error(
        "\"{}\" in os/linux/seccomp-remove-set would block every syscall, so the app could not start; use os/linux/seccomp-retain-set to list what it may call",
        SeccompEntry::ALL
    )]
    RemoveAll,
    #[error(
        "\"{}\" and \"{}\" contradict each other in {isolator}",
        SeccompEntry::ALL,
        SeccompEntry::EMPTY
    )]
    AllAndEmpty { isolator: String },
    #[error(
        "os/linux/seccomp-retain-set and os/linux/seccomp-remove-set cannot be combined in one app"
    )]
    RetainAndRemove,
    #[error("{isolator} is not a seccomp isolator")]
    NotSeccomp { isolator: String },
    #[error("syscall {syscall} is not known to libseccomp on this architecture")]
    UnknownSyscall { syscall: String },
    #[error("cannot {op} of the seccomp filter: {source}")]
    Filter {
        op: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot load the seccomp filter: {source}")]
    Load {
        source: libseccomp::error::SeccompError,
    },
}

/// The plan for the app's seccomp isolator (`None`: no isolator), and its G3 report line.
/// Returns `Ok((None, _))` only for a retain-set with `@appc.io/all`, which opts out of
/// filtering.
pub fn plan_seccomp(
    iso: Option<&Isolator>,
) -> Result<(Option<SeccompPlan>, Vec<IsolatorReport>), SeccompError> {
    let Some(iso) = iso else {
        let why = format!(
            "no seccomp isolator: the implementation default {DEFAULT_BLACKLIST} applies, its syscalls fail with EPERM"
        );
        let report = report("os/linux/seccomp-remove-set", Outcome::Changed(why));
        return Ok((Some(SeccompPlan::default_blacklist()), vec![report]));
    };
    let (filter, retain) = match iso {
        Isolator::SeccompRetainSet(f) => (f, true),
        Isolator::SeccompRemoveSet(f) => (f, false),
        other => {
            return Err(SeccompError::NotSeccomp {
                isolator: other.name().to_owned(),
            });
        }
    };
    let mut notes = Vec::new();
    let plan = plan_filter(filter, retain, iso.name(), &mut notes)?;
    let outcome = if notes.is_empty() {
        Outcome::Enforced
    } else {
        Outcome::Changed(notes.join("; "))
    };
    Ok((plan, vec![report(iso.name(), outcome)]))
}

fn report(name: &str, outcome: Outcome) -> IsolatorReport {
    IsolatorReport {
        name: name.to_owned(),
        scope: IsolatorScope::App,
        outcome,
    }
}

/// One seccomp set after its `@appc.io/` wildcards are applied.
enum Expanded {
    /// `@appc.io/all`.
    All,
    /// `@appc.io/empty`: default filtering.
    Default,
    /// Syscall names, groups expanded, not yet checked against this architecture.
    Names(BTreeSet<String>),
}

fn plan_filter(
    filter: &SeccompFilter,
    retain: bool,
    isolator: &str,
    notes: &mut Vec<String>,
) -> Result<Option<SeccompPlan>, SeccompError> {
    match expand(filter.set(), isolator, notes)? {
        Expanded::All if retain => Ok(None),
        Expanded::All => Err(SeccompError::RemoveAll),
        Expanded::Default => Ok(Some(SeccompPlan::default_blacklist())),
        Expanded::Names(names) => {
            let blocked = block_action(filter.errno(), notes);
            let names = drop_unknown(names, notes);
            Ok(Some(if retain {
                retain_plan(names, blocked)
            } else {
                remove_plan(names, blocked)
            }))
        }
    }
}

fn expand(
    set: &[SeccompEntry],
    isolator: &str,
    notes: &mut Vec<String>,
) -> Result<Expanded, SeccompError> {
    let has = |s: &str| set.iter().any(|e| e == s);
    let masked = || -> Vec<&str> {
        let wild = |e: &&SeccompEntry| *e != SeccompEntry::ALL && *e != SeccompEntry::EMPTY;
        set.iter().filter(wild).map(SeccompEntry::as_str).collect()
    };
    let wildcard = match (has(SeccompEntry::ALL), has(SeccompEntry::EMPTY)) {
        (true, true) => {
            return Err(SeccompError::AllAndEmpty {
                isolator: isolator.to_owned(),
            });
        }
        (true, false) => Some((SeccompEntry::ALL, Expanded::All)),
        (false, true) => Some((SeccompEntry::EMPTY, Expanded::Default)),
        (false, false) => None,
    };
    if let Some((name, expanded)) = wildcard {
        let masked = masked();
        if !masked.is_empty() {
            notes.push(format!("{name} masks {}", masked.join(", ")));
        }
        if matches!(expanded, Expanded::Default) {
            notes.push(format!(
                "{name}: the default filter {DEFAULT_BLACKLIST} applies"
            ));
        }
        return Ok(expanded);
    }
    let mut names = BTreeSet::new();
    for entry in set {
        names.extend(expand_entry(entry)?);
    }
    Ok(Expanded::Names(names))
}

/// The syscall names of one entry: itself, or a group's members.
fn expand_entry(entry: &SeccompEntry) -> Result<Vec<String>, SeccompError> {
    if !entry.is_group() {
        return Ok(vec![entry.as_str().to_owned()]);
    }
    let s = entry.as_str();
    if s == DEFAULT_BLACKLIST || BLACKLIST_ALIASES.contains(&s) {
        // Only the names this architecture has: the group is ours, not the user's list.
        let known = known_syscalls(DEFAULT_BLACKLIST_SYSCALLS.iter().copied());
        return Ok(known.map(str::to_owned).collect());
    }
    let known = [SeccompEntry::ALL, SeccompEntry::EMPTY, DEFAULT_BLACKLIST]
        .into_iter()
        .chain(BLACKLIST_ALIASES)
        .collect::<Vec<_>>()
        .join(", ");
    Err(SeccompError::UnknownGroup {
        group: s.to_owned(),
        known,
    })
}

/// The action for blocked syscalls: the isolator's errno, or kill with `SIGSYS` without one.
fn block_action(errno: Option<&ErrnoName>, notes: &mut Vec<String>) -> SeccompAction {
    let Some(name) = errno else {
        return SeccompAction::KillProcess;
    };
    match name.errno() {
        Some(e) => SeccompAction::Errno(e as i32),
        None => {
            notes.push(format!(
                "errno {name} is not known to Linux; blocked syscalls fail with EPERM instead"
            ));
            SeccompAction::Errno(Errno::EPERM as i32)
        }
    }
}

/// Whether libseccomp has a real syscall number for `name` on this architecture (it gives
/// negative pseudo-numbers for syscalls that exist only elsewhere, e.g. `socketcall`).
pub fn is_known_syscall(name: &str) -> bool {
    ScmpSyscall::from_name(name).is_ok_and(|s| s.as_raw_syscall() >= 0)
}

fn known_syscalls<'a>(names: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    names.filter(|n| is_known_syscall(n))
}

/// The user's names without those this architecture lacks, which the report lists.
fn drop_unknown(names: BTreeSet<String>, notes: &mut Vec<String>) -> BTreeSet<String> {
    let (known, unknown): (BTreeSet<String>, BTreeSet<String>) =
        names.into_iter().partition(|n| is_known_syscall(n));
    if !unknown.is_empty() {
        notes.push(format!(
            "syscalls not known on this architecture, ignored: {}",
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    known
}

fn remove_plan(names: BTreeSet<String>, blocked: SeccompAction) -> SeccompPlan {
    SeccompPlan {
        default_action: SeccompAction::Allow,
        rules: names.into_iter().map(|n| (n, blocked)).collect(),
    }
}

fn retain_plan(names: BTreeSet<String>, blocked: SeccompAction) -> SeccompPlan {
    let lifecycle = known_syscalls(LIFECYCLE_SYSCALLS.iter().copied()).map(str::to_owned);
    SeccompPlan {
        default_action: blocked,
        rules: names
            .into_iter()
            .chain(lifecycle)
            .map(|n| (n, SeccompAction::Allow))
            .collect(),
    }
}

/// The compat ABIs a native process can still enter the kernel through (`int 0x80`, x32): they
/// get the same rules, as in Docker's profile, so that 32-bit apps run and cannot bypass the
/// native rules. Without them libseccomp's bad-arch action would kill such processes.
fn compat_arches() -> &'static [ScmpArch] {
    match ScmpArch::native() {
        ScmpArch::X8664 => &[ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => &[ScmpArch::Arm],
        _ => &[],
    }
}

fn filter_err(
    op: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |source| SeccompError::Filter { op, source }
}

/// Builds the libseccomp filter for `plan` without loading it.
pub fn build(plan: &SeccompPlan) -> Result<ScmpFilterContext, SeccompError> {
    let mut ctx =
        ScmpFilterContext::new(plan.default_action.into()).map_err(filter_err("create"))?;
    // libseccomp sets no_new_privs on load by default; `security::lock_down` sets it only when
    // the app asked (os/linux/no-new-privileges), so the attribute is turned off here.
    ctx.set_ctl_nnp(false)
        .map_err(filter_err("clear the nnp attribute"))?;
    for arch in compat_arches() {
        ctx.add_arch(*arch)
            .map_err(filter_err(format!("add architecture {arch:?}")))?;
    }
    for (name, action) in &plan.rules {
        // libseccomp refuses a rule whose action is the default one; it would change nothing.
        if *action == plan.default_action {
            continue;
        }
        let syscall = ScmpSyscall::from_name(name).map_err(|_| SeccompError::UnknownSyscall {
            syscall: name.clone(),
        })?;
        ctx.add_rule((*action).into(), syscall)
            .map_err(filter_err(format!("add the rule for {name}")))?;
    }
    Ok(ctx)
}

/// Loads `plan` into the calling thread. Without no_new_privs set this needs `CAP_SYS_ADMIN`
/// (seccomp(2)); see `security::seccomp_before_user_switch` for the order.
pub fn load(plan: &SeccompPlan) -> Result<(), SeccompError> {
    build(plan)?
        .load()
        .map_err(|source| SeccompError::Load { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(set: &[&str], errno: Option<&str>) -> SeccompFilter {
        let set = set
            .iter()
            .map(|s| SeccompEntry::parse(s).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let errno = errno.map(|e| ErrnoName::parse(e).unwrap_or_else(|e| panic!("{e}")));
        SeccompFilter::new(set, errno).unwrap_or_else(|e| panic!("{e}"))
    }

    fn remove(set: &[&str], errno: Option<&str>) -> Isolator {
        Isolator::SeccompRemoveSet(filter(set, errno))
    }

    fn retain(set: &[&str], errno: Option<&str>) -> Isolator {
        Isolator::SeccompRetainSet(filter(set, errno))
    }

    /// The plan and the one report's outcome.
    fn plan(iso: Option<&Isolator>) -> (Option<SeccompPlan>, Outcome) {
        let (plan, reports) = plan_seccomp(iso).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].scope, IsolatorScope::App);
        (plan, reports[0].outcome.clone())
    }

    fn changed(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Changed(why) => why,
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    fn rules(pairs: &[(&str, SeccompAction)]) -> BTreeMap<String, SeccompAction> {
        pairs.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect()
    }

    const EPERM: SeccompAction = SeccompAction::Errno(libc::EPERM);

    #[test]
    fn no_isolator_applies_the_default_blacklist() {
        let (p, outcome) = plan(None);
        let p = p.unwrap_or_else(|| panic!("no plan"));
        assert_eq!(p, SeccompPlan::default_blacklist());
        assert_eq!(p.default_action, SeccompAction::Allow);
        for name in ["unshare", "mount", "kexec_load", "bpf", "ptrace", "keyctl"] {
            assert_eq!(p.rules.get(name), Some(&EPERM), "{name}");
        }
        assert!(
            !p.rules.contains_key("clone3"),
            "clone3 must stay ENOSYS-free"
        );
        assert!(p.rules.values().all(|a| *a == EPERM));
        assert!(changed(&outcome).contains(DEFAULT_BLACKLIST));
    }

    #[test]
    fn remove_set_errno_mapping() {
        #[rustfmt::skip]
        let cases = [
            (Some("EROFS"), SeccompAction::Errno(libc::EROFS)),
            (Some("EPERM"), EPERM),
            (Some("ENOTSUP"), SeccompAction::Errno(libc::EOPNOTSUPP)),
            (Some("EACCES"), SeccompAction::Errno(libc::EACCES)),
            (None, SeccompAction::KillProcess),
        ];
        for (errno, action) in cases {
            let iso = remove(&["mkdirat", "reboot", "mkdirat"], errno);
            let (p, outcome) = plan(Some(&iso));
            let want = SeccompPlan {
                default_action: SeccompAction::Allow,
                rules: rules(&[("mkdirat", action), ("reboot", action)]),
            };
            assert_eq!(p, Some(want), "{errno:?}");
            assert_eq!(outcome, Outcome::Enforced);
        }
    }

    #[test]
    fn errno_unknown_to_linux_falls_back_to_eperm() {
        // The spec's own examples/image.json spells EACCES this way.
        let iso = remove(&["clock_settime", "reboot"], Some("EACCESS"));
        let (p, outcome) = plan(Some(&iso));
        let p = p.unwrap_or_else(|| panic!("no plan"));
        assert_eq!(p.rules.get("reboot"), Some(&EPERM));
        assert!(changed(&outcome).contains("EACCESS is not known to Linux"));
    }

    #[test]
    fn retain_set_blocks_the_rest_and_keeps_the_lifecycle_minimum() {
        for (errno, default) in [
            (Some("ENOSYS"), SeccompAction::Errno(libc::ENOSYS)),
            (None, SeccompAction::KillProcess),
        ] {
            let (p, outcome) = plan(Some(&retain(&["getcwd", "read"], errno)));
            let p = p.unwrap_or_else(|| panic!("no plan"));
            assert_eq!(p.default_action, default);
            assert_eq!(outcome, Outcome::Enforced);
            assert!(p.rules.values().all(|a| *a == SeccompAction::Allow));
            for name in [
                "getcwd",
                "read",
                "execve",
                "exit_group",
                "setresuid",
                "write",
            ] {
                assert!(p.rules.contains_key(name), "{name}");
            }
            assert!(!p.rules.contains_key("mkdirat"));
            let lifecycle = known_syscalls(LIFECYCLE_SYSCALLS.iter().copied()).count();
            assert_eq!(p.rules.len(), lifecycle + 2);
        }
    }

    #[test]
    fn appc_all_and_empty() {
        let (p, outcome) = plan(Some(&retain(&[SeccompEntry::ALL], None)));
        assert_eq!((p, outcome), (None, Outcome::Enforced));
        let (p, outcome) = plan(Some(&retain(&["getcwd", SeccompEntry::ALL], None)));
        assert_eq!(p, None);
        assert_eq!(changed(&outcome), "@appc.io/all masks getcwd");
        let e = plan_seccomp(Some(&remove(&[SeccompEntry::ALL], None))).err();
        assert!(matches!(e, Some(SeccompError::RemoveAll)), "{e:?}");
        for iso in [
            remove(&[SeccompEntry::EMPTY], Some("EROFS")),
            remove(&["reboot", SeccompEntry::EMPTY], None),
            retain(&[SeccompEntry::EMPTY, "getcwd"], None),
        ] {
            let (p, outcome) = plan(Some(&iso));
            assert_eq!(p, Some(SeccompPlan::default_blacklist()), "{iso:?}");
            assert!(changed(&outcome).contains(DEFAULT_BLACKLIST), "{outcome:?}");
        }
        let (_, outcome) = plan(Some(&remove(&["reboot", SeccompEntry::EMPTY], None)));
        assert!(changed(&outcome).starts_with("@appc.io/empty masks reboot"));
        let both = remove(&[SeccompEntry::ALL, SeccompEntry::EMPTY], None);
        let e = plan_seccomp(Some(&both)).err().map(|e| e.to_string());
        let want = "\"@appc.io/all\" and \"@appc.io/empty\" contradict each other in os/linux/seccomp-remove-set";
        assert_eq!(e.as_deref(), Some(want));
    }

    #[test]
    fn groups_expand() {
        let default = SeccompPlan::default_blacklist();
        for group in [
            DEFAULT_BLACKLIST,
            "@rkt/default-blacklist",
            "@docker/default-blacklist",
        ] {
            let (p, outcome) = plan(Some(&remove(&[group, "getcwd"], Some("EROFS"))));
            let p = p.unwrap_or_else(|| panic!("no plan"));
            assert_eq!(outcome, Outcome::Enforced, "our own names need no report");
            assert_eq!(p.rules.len(), default.rules.len() + 1);
            assert_eq!(
                p.rules.get("unshare"),
                Some(&SeccompAction::Errno(libc::EROFS))
            );
            assert_eq!(
                p.rules.get("getcwd"),
                Some(&SeccompAction::Errno(libc::EROFS))
            );
        }
        let e = plan_seccomp(Some(&remove(&["@systemd/clock"], None)));
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("unknown seccomp group \"@systemd/clock\" (known groups: @appc.io/all, @appc.io/empty, @appc-pod/default-blacklist"), "{e}");
    }

    #[test]
    fn syscalls_unknown_on_this_arch_are_ignored_and_reported() {
        let iso = remove(&["reboot", "not_a_syscall", "zz_nope"], Some("EPERM"));
        let (p, outcome) = plan(Some(&iso));
        let p = p.unwrap_or_else(|| panic!("no plan"));
        assert_eq!(p.rules, rules(&[("reboot", EPERM)]));
        let why = changed(&outcome);
        assert_eq!(
            why,
            "syscalls not known on this architecture, ignored: not_a_syscall, zz_nope"
        );
        assert!(!is_known_syscall("not_a_syscall"));
        if ScmpArch::native() == ScmpArch::X8664 {
            // libseccomp knows socketcall, but only as a pseudo-syscall on x86_64.
            assert!(!is_known_syscall("socketcall"));
            assert!(is_known_syscall("arch_prctl"));
        }
    }

    #[test]
    fn only_seccomp_isolators_are_planned() {
        let e = plan_seccomp(Some(&Isolator::NoNewPrivileges(true))).err();
        let e = e.map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("os/linux/no-new-privileges is not a seccomp isolator")
        );
    }

    #[test]
    fn every_planned_filter_builds() {
        // Building runs libseccomp's rule translation for every compat arch without loading.
        let plans = [
            SeccompPlan::default_blacklist(),
            plan(Some(&retain(&["getcwd"], None)))
                .0
                .unwrap_or_else(|| panic!()),
            plan(Some(&retain(&["getcwd"], Some("EPERM"))))
                .0
                .unwrap_or_else(|| panic!()),
            plan(Some(&remove(&[DEFAULT_BLACKLIST, "getcwd"], None)))
                .0
                .unwrap_or_else(|| panic!()),
        ];
        for p in &plans {
            if let Err(e) = build(p) {
                panic!("{e}: {p:?}");
            }
        }
        let bad = SeccompPlan {
            default_action: SeccompAction::Allow,
            rules: rules(&[("not_a_syscall", EPERM)]),
        };
        let e = build(&bad).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("syscall not_a_syscall is not known to libseccomp on this architecture")
        );
    }

    #[test]
    fn plans_round_trip_through_json() {
        let p = plan(Some(&remove(&["reboot"], Some("EROFS")))).0;
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"default_action":"allow","rules":{"reboot":{"errno":30}}}"#
        );
        let back: Option<SeccompPlan> =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
    }
}
