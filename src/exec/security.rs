//! Per-app security settings: ace.md "Isolators" — `os/linux/capabilities-retain-set`,
//! `os/linux/capabilities-remove-set`, the default capability set, `os/linux/no-new-privileges`,
//! `os/linux/oom-score-adj` and the seccomp isolators (via [`super::seccomp`]), with the G3
//! report (appc-requirements.md §2.5.8, G1–G3).
//!
//! [`plan_security`] is pure apart from probing which capabilities the running kernel knows.
//! The executor applies the plan in the app's forked child, in this order:
//!
//! 1. [`drop_privileges`], still root with every capability;
//! 2. [`load_seccomp_before_user_switch`] (does something only when
//!    [`seccomp_before_user_switch`] is true);
//! 3. `setgroups`/`setgid`/`setuid`;
//! 4. [`lock_down`], right before `execve`.
//!
//! Decisions:
//!
//! - Capability, seccomp and no-new-privileges isolators are app-only (ace.md). The schema
//!   already rejects them in a pod list (`check_isolators`); a pod list built another way gets
//!   them reported `Ignored`.
//! - `os/linux/oom-score-adj` has no spec text and the schema allows it at both levels: the
//!   pod's value applies to apps without their own, the app's value overrides it.
//! - Capabilities and no-new-privileges may repeat (appc/spec issue #625): the last one applies,
//!   earlier ones are reported `Ignored`.
//! - A capability the running kernel does not know is left out of the bounding set and named
//!   in a `Changed` report.

use std::collections::BTreeSet;
use std::io;

use caps::{CapSet, Capability, CapsHashSet};

use super::seccomp::{self, SeccompError, SeccompPlan};
use crate::cgroup::{IsolatorReport, Outcome};
use crate::schema::{Isolator, IsolatorKind, IsolatorScope};

/// The bounding set without a capability isolator (ace.md "Linux Isolators": exactly these 14).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_KILL,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETFCAP,
    Capability::CAP_SYS_CHROOT,
];

const OOM_SCORE_ADJ: &str = "/proc/self/oom_score_adj";
/// The bounding set is per thread; `/proc/self` would show the thread-group leader's.
const THREAD_STATUS: &str = "/proc/thread-self/status";

/// What the app's child applies before `execve`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecurityPlan {
    /// Capability names ("CAP_CHOWN", ...) of the bounding set, sorted, deduplicated.
    pub bounding: Vec<String>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    /// None only when `@appc.io/all` retain-set opts out of filtering.
    pub seccomp: Option<SeccompPlan>,
}

/// Why the security settings could not be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(
        "os/linux/capabilities-retain-set and os/linux/capabilities-remove-set cannot be combined in one app"
    )]
    RetainAndRemove,
    #[error("unknown capability {name:?} in the security plan")]
    UnknownCapability { name: String },
    #[error("cannot write oom_score_adj {value} to {OOM_SCORE_ADJ}{hint}: {source}")]
    OomScoreAdj {
        value: i32,
        hint: &'static str,
        source: io::Error,
    },
    #[error("cannot drop {cap} from the bounding set: {source}")]
    DropBounding {
        cap: Capability,
        source: caps::errors::CapsError,
    },
    #[error("cannot read the bounding set: {source}")]
    ReadBounding { source: caps::errors::CapsError },
    #[error("cannot clear the {set} capability set: {source}")]
    ClearSet {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error(
        "the bounding set in {THREAD_STATUS} is {found:#x} after the drop, expected {expected:#x}"
    )]
    BoundingMismatch { found: u64, expected: u64 },
    #[error("cannot set no_new_privs: {source}")]
    NoNewPrivs { source: io::Error },
}

/// The security plan of one app from the pod's and the app's (effective) isolators, with one G3
/// report per security isolator. Resource and unknown isolators are reported elsewhere.
pub fn plan_security(
    pod: &[Isolator],
    app: &[Isolator],
) -> Result<(SecurityPlan, Vec<IsolatorReport>), SecurityError> {
    plan_security_with(pod, app, &caps::runtime::thread_all_supported())
}

/// [`plan_security`] for a kernel that knows the capabilities `kernel` (pure).
pub fn plan_security_with(
    pod: &[Isolator],
    app: &[Isolator],
    kernel: &CapsHashSet,
) -> Result<(SecurityPlan, Vec<IsolatorReport>), SecurityError> {
    let mut reports = Vec::new();
    report_pod_app_only(pod, &mut reports);
    let bounding = plan_bounding(app, kernel, &mut reports)?;
    let no_new_privs = plan_no_new_privs(app, &mut reports);
    let oom_score_adj = plan_oom_score_adj(pod, app, &mut reports);
    let (seccomp, seccomp_reports) = seccomp::plan_seccomp(seccomp_isolator(app)?)?;
    reports.extend(seccomp_reports);
    let plan = SecurityPlan {
        bounding,
        no_new_privs,
        oom_score_adj,
        seccomp,
    };
    Ok((plan, reports))
}

fn report(iso: &Isolator, scope: IsolatorScope, outcome: Outcome) -> IsolatorReport {
    IsolatorReport {
        name: iso.name().to_owned(),
        scope,
        outcome,
    }
}

/// Capability, seccomp and no-new-privileges isolators in the pod list: not applied.
fn report_pod_app_only(pod: &[Isolator], reports: &mut Vec<IsolatorReport>) {
    let app_only = |k: IsolatorKind| !k.allowed_in(IsolatorScope::Pod);
    for iso in pod.iter().filter(|i| i.kind().is_some_and(app_only)) {
        let why = "applies to apps only (ace.md Isolators); a pod-level value is not applied";
        reports.push(report(
            iso,
            IsolatorScope::Pod,
            Outcome::Ignored(why.into()),
        ));
    }
}

/// The isolators of `kinds` in `app` that a later one of the same kind replaces.
fn report_superseded(app: &[Isolator], kinds: &[IsolatorKind], reports: &mut Vec<IsolatorReport>) {
    for kind in kinds {
        let last = kind.last_in(app);
        for iso in app.iter().filter(|i| i.kind() == Some(*kind)) {
            if !last.is_some_and(|l| std::ptr::eq(l, iso)) {
                let why = format!("a later {kind} in the same list replaces it");
                reports.push(report(iso, IsolatorScope::App, Outcome::Ignored(why)));
            }
        }
    }
}

fn plan_bounding(
    app: &[Isolator],
    kernel: &CapsHashSet,
    reports: &mut Vec<IsolatorReport>,
) -> Result<Vec<String>, SecurityError> {
    use IsolatorKind::{CapabilitiesRemoveSet, CapabilitiesRetainSet};
    let retain = CapabilitiesRetainSet.last_in(app);
    let remove = CapabilitiesRemoveSet.last_in(app);
    if retain.is_some() && remove.is_some() {
        return Err(SecurityError::RetainAndRemove);
    }
    report_superseded(
        app,
        &[CapabilitiesRetainSet, CapabilitiesRemoveSet],
        reports,
    );
    let mut notes = Vec::new();
    let wanted: Vec<Capability> = match (retain, remove) {
        (Some(Isolator::CapabilitiesRetainSet(set)), _) => set.as_slice().to_vec(),
        (_, Some(Isolator::CapabilitiesRemoveSet(set))) => {
            remove_from_default(set.as_slice(), &mut notes)
        }
        _ => DEFAULT_CAPABILITIES.to_vec(),
    };
    let bounding = known_to_kernel(wanted, kernel, &mut notes);
    if let Some(iso) = retain.or(remove) {
        let outcome = if notes.is_empty() {
            Outcome::Enforced
        } else {
            Outcome::Changed(notes.join("; "))
        };
        reports.push(report(iso, IsolatorScope::App, outcome));
    }
    Ok(bounding)
}

/// The default set without `removed`; removing a capability outside it has no effect (ace.md).
fn remove_from_default(removed: &[Capability], notes: &mut Vec<String>) -> Vec<Capability> {
    let outside: Vec<String> = removed
        .iter()
        .filter(|c| !DEFAULT_CAPABILITIES.contains(c))
        .map(ToString::to_string)
        .collect();
    if !outside.is_empty() {
        notes.push(format!(
            "{} not in the default set; removing it has no effect",
            outside.join(", ")
        ));
    }
    let keep = |c: &&Capability| !removed.contains(c);
    DEFAULT_CAPABILITIES.iter().filter(keep).copied().collect()
}

/// Sorted, deduplicated names of the capabilities in `wanted` that the kernel knows.
fn known_to_kernel(
    wanted: Vec<Capability>,
    kernel: &CapsHashSet,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let (known, unknown): (Vec<Capability>, Vec<Capability>) =
        wanted.into_iter().partition(|c| kernel.contains(c));
    if !unknown.is_empty() {
        let names: BTreeSet<String> = unknown.iter().map(ToString::to_string).collect();
        let names: Vec<String> = names.into_iter().collect();
        notes.push(format!(
            "{} not known to the running kernel, ignored",
            names.join(", ")
        ));
    }
    let names: BTreeSet<String> = known.iter().map(ToString::to_string).collect();
    names.into_iter().collect()
}

fn plan_no_new_privs(app: &[Isolator], reports: &mut Vec<IsolatorReport>) -> bool {
    report_superseded(app, &[IsolatorKind::NoNewPrivileges], reports);
    match IsolatorKind::NoNewPrivileges.last_in(app) {
        Some(iso @ Isolator::NoNewPrivileges(v)) => {
            reports.push(report(iso, IsolatorScope::App, Outcome::Enforced));
            *v
        }
        _ => false,
    }
}

/// The app's value, else the pod's (the app overrides the pod, as for SELinux contexts).
fn plan_oom_score_adj(
    pod: &[Isolator],
    app: &[Isolator],
    reports: &mut Vec<IsolatorReport>,
) -> Option<i32> {
    let value = |list| match IsolatorKind::OomScoreAdj.last_in(list) {
        Some(iso @ Isolator::OomScoreAdj(v)) => Some((iso, i32::from(v.get()))),
        _ => None,
    };
    let (pod, app) = (value(pod), value(app));
    if let Some((iso, _)) = pod {
        let outcome = match app {
            Some((_, v)) => Outcome::Ignored(format!("the app's own value {v} applies")),
            None => Outcome::Enforced,
        };
        reports.push(report(iso, IsolatorScope::Pod, outcome));
    }
    if let Some((iso, _)) = app {
        reports.push(report(iso, IsolatorScope::App, Outcome::Enforced));
    }
    app.or(pod).map(|(_, v)| v)
}

/// The app's one seccomp isolator (the schema allows one, retain or remove).
fn seccomp_isolator(app: &[Isolator]) -> Result<Option<&Isolator>, SecurityError> {
    let retain = IsolatorKind::SeccompRetainSet.last_in(app);
    let remove = IsolatorKind::SeccompRemoveSet.last_in(app);
    match (retain, remove) {
        (Some(_), Some(_)) => Err(SeccompError::RetainAndRemove.into()),
        (r, m) => Ok(r.or(m)),
    }
}

/// Whether the executor must call [`load_seccomp_before_user_switch`]: a filter is planned and
/// no_new_privs is not, and loading a filter without no_new_privs needs `CAP_SYS_ADMIN`
/// (seccomp(2)), which the user switch takes away. runc makes the same choice
/// (`standard_init_linux.go`: seccomp before dropping privileges unless NoNewPrivileges).
pub fn seccomp_before_user_switch(plan: &SecurityPlan) -> bool {
    plan.seccomp.is_some() && !plan.no_new_privs
}

/// Loads the seccomp filter when [`seccomp_before_user_switch`] says so; otherwise does
/// nothing and [`lock_down`] loads it. Call it after [`drop_privileges`] and before the user
/// switch. The filter's executor whitelist (`seccomp::LIFECYCLE_SYSCALLS`) lets the user switch
/// through a retain-set; a remove-set that lists e.g. `setuid` without `errno` kills the child
/// there, as the isolator asked.
pub fn load_seccomp_before_user_switch(plan: &SecurityPlan) -> Result<(), SecurityError> {
    match &plan.seccomp {
        Some(filter) if seccomp_before_user_switch(plan) => Ok(seccomp::load(filter)?),
        _ => Ok(()),
    }
}

/// In the app's child, still root with full capabilities and before the user switch: writes
/// `/proc/self/oom_score_adj` if set, drops the bounding set to `plan.bounding`, clears the
/// inheritable and ambient sets, and checks the bounding set the kernel reports.
///
/// The effective and permitted sets are left alone: the user switch still needs `CAP_SETUID`
/// and `CAP_SETGID`, and `execve` then limits a root app's permitted set to the bounding set
/// (capabilities(7), "Transformation of capabilities during execve()").
pub fn drop_privileges(plan: &SecurityPlan) -> Result<(), SecurityError> {
    if let Some(value) = plan.oom_score_adj {
        write_oom_score_adj(value)?;
    }
    let keep = parse_capabilities(&plan.bounding)?;
    drop_bounding(&keep)?;
    let clear = |cset, set| {
        caps::clear(None, cset).map_err(|source| SecurityError::ClearSet { set, source })
    };
    clear(CapSet::Inheritable, "inheritable")?;
    clear(CapSet::Ambient, "ambient")?;
    check_bounding(&keep)
}

fn write_oom_score_adj(value: i32) -> Result<(), SecurityError> {
    std::fs::write(OOM_SCORE_ADJ, value.to_string()).map_err(|source| {
        // proc(5): lowering oom_score_adj below its minimum needs CAP_SYS_RESOURCE.
        let hint = if source.kind() == io::ErrorKind::PermissionDenied {
            " (lowering it needs CAP_SYS_RESOURCE)"
        } else {
            ""
        };
        SecurityError::OomScoreAdj {
            value,
            hint,
            source,
        }
    })
}

fn parse_capabilities(names: &[String]) -> Result<Vec<Capability>, SecurityError> {
    names
        .iter()
        .map(|name| {
            name.parse()
                .map_err(|_| SecurityError::UnknownCapability { name: name.clone() })
        })
        .collect()
}

fn drop_bounding(keep: &[Capability]) -> Result<(), SecurityError> {
    let current = caps::read(None, CapSet::Bounding)
        .map_err(|source| SecurityError::ReadBounding { source })?;
    for cap in current.into_iter().filter(|c| !keep.contains(c)) {
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|source| SecurityError::DropBounding { cap, source })?;
    }
    Ok(())
}

/// Compares the kernel's view with `keep`: catches capabilities newer than the `caps` crate,
/// which it can neither read nor drop. Without procfs there is nothing to compare with, and the
/// crate's own view was already applied.
fn check_bounding(keep: &[Capability]) -> Result<(), SecurityError> {
    let Ok(status) = std::fs::read_to_string(THREAD_STATUS) else {
        return Ok(()); // best effort: no /proc in this mount namespace
    };
    let expected = keep.iter().fold(0, |m, c| m | c.bitmask());
    match parse_cap_bnd(&status) {
        Some(found) if found != expected => {
            Err(SecurityError::BoundingMismatch { found, expected })
        }
        _ => Ok(()),
    }
}

/// The `CapBnd:` mask of a `/proc/<pid>/status` text.
fn parse_cap_bnd(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Last step before `execve`, after `setgroups`/`setgid`/`setuid`: sets `PR_SET_NO_NEW_PRIVS`
/// if the app asked, then loads the seccomp filter — unless [`seccomp_before_user_switch`]
/// is true, in which case [`load_seccomp_before_user_switch`] already did (without
/// no_new_privs the load needs `CAP_SYS_ADMIN`, gone after the user switch).
pub fn lock_down(plan: &SecurityPlan) -> Result<(), SecurityError> {
    if plan.no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| SecurityError::NoNewPrivs { source: e.into() })?;
    }
    match &plan.seccomp {
        Some(filter) if !seccomp_before_user_switch(plan) => Ok(seccomp::load(filter)?),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{CapabilitySet, OomScoreAdj, SeccompEntry, SeccompFilter};

    fn caps_set(names: &[Capability]) -> CapabilitySet {
        CapabilitySet::new(names.to_vec()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn retain(names: &[Capability]) -> Isolator {
        Isolator::CapabilitiesRetainSet(caps_set(names))
    }

    fn remove(names: &[Capability]) -> Isolator {
        Isolator::CapabilitiesRemoveSet(caps_set(names))
    }

    fn oom(v: i64) -> Isolator {
        Isolator::OomScoreAdj(OomScoreAdj::new(v).unwrap_or_else(|e| panic!("{e}")))
    }

    fn seccomp_all() -> Isolator {
        let all = SeccompEntry::parse(SeccompEntry::ALL).unwrap_or_else(|e| panic!("{e}"));
        let f = SeccompFilter::new(vec![all], None).unwrap_or_else(|e| panic!("{e}"));
        Isolator::SeccompRetainSet(f)
    }

    /// Every capability but CAP_CHECKPOINT_RESTORE, as on a 5.8-era kernel.
    fn old_kernel() -> CapsHashSet {
        let mut k = caps::all();
        k.remove(&Capability::CAP_CHECKPOINT_RESTORE);
        k
    }

    fn plan(pod: &[Isolator], app: &[Isolator]) -> (SecurityPlan, Vec<IsolatorReport>) {
        plan_security_with(pod, app, &old_kernel()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(caps: &[Capability]) -> Vec<String> {
        let set: BTreeSet<String> = caps.iter().map(ToString::to_string).collect();
        set.into_iter().collect()
    }

    /// The reports other than the seccomp line, as (name, scope, outcome) strings.
    fn lines(reports: &[IsolatorReport]) -> Vec<String> {
        reports
            .iter()
            .filter(|r| !r.name.contains("seccomp"))
            .map(ToString::to_string)
            .collect()
    }

    use Capability::*;

    #[test]
    fn default_plan() {
        let (p, reports) = plan(&[], &[]);
        assert_eq!(p.bounding.len(), 14);
        assert_eq!(p.bounding, names(&DEFAULT_CAPABILITIES));
        assert_eq!(p.bounding[0], "CAP_AUDIT_WRITE");
        assert!(!p.no_new_privs);
        assert_eq!(p.oom_score_adj, None);
        assert_eq!(p.seccomp, Some(SeccompPlan::default_blacklist()));
        assert!(seccomp_before_user_switch(&p));
        // Only the seccomp default line: no capability isolator, nothing to report.
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(lines(&reports).is_empty());
    }

    #[test]
    fn capability_sets() {
        #[rustfmt::skip]
        let cases: [(Isolator, Vec<Capability>, &str); 5] = [
            (retain(&[CAP_NET_ADMIN, CAP_CHOWN, CAP_CHOWN]), vec![CAP_CHOWN, CAP_NET_ADMIN],
             "enforced"),
            (remove(&[CAP_KILL, CAP_MKNOD]),
             DEFAULT_CAPABILITIES.iter().copied().filter(|c| ![CAP_KILL, CAP_MKNOD].contains(c)).collect(),
             "enforced"),
            (remove(&[CAP_KILL, CAP_SYS_ADMIN, CAP_NET_ADMIN]),
             DEFAULT_CAPABILITIES.iter().copied().filter(|c| *c != CAP_KILL).collect(),
             "changed (CAP_SYS_ADMIN, CAP_NET_ADMIN not in the default set; removing it has no effect)"),
            (retain(&[CAP_CHECKPOINT_RESTORE, CAP_CHOWN]), vec![CAP_CHOWN],
             "changed (CAP_CHECKPOINT_RESTORE not known to the running kernel, ignored)"),
            (remove(&DEFAULT_CAPABILITIES), vec![], "enforced"),
        ];
        for (iso, want, outcome) in cases {
            let (p, reports) = plan(&[], std::slice::from_ref(&iso));
            assert_eq!(p.bounding, names(&want), "{iso:?}");
            let line = format!("app isolator {}: {outcome}", iso.name());
            assert_eq!(lines(&reports), [line]);
        }
    }

    #[test]
    fn retain_and_remove_together_is_an_error() {
        let app = [retain(&[CAP_CHOWN]), remove(&[CAP_KILL])];
        let e = plan_security_with(&[], &app, &old_kernel()).err();
        assert!(matches!(e, Some(SecurityError::RetainAndRemove)), "{e:?}");
        let both = [seccomp_all(), {
            let e = SeccompEntry::parse("reboot").unwrap_or_else(|e| panic!("{e}"));
            let f = SeccompFilter::new(vec![e], None).unwrap_or_else(|e| panic!("{e}"));
            Isolator::SeccompRemoveSet(f)
        }];
        let e = plan_security_with(&[], &both, &old_kernel()).err();
        assert!(
            matches!(
                e,
                Some(SecurityError::Seccomp(SeccompError::RetainAndRemove))
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_last_repeated_isolator_applies() {
        let app = [
            retain(&[CAP_CHOWN]),
            Isolator::NoNewPrivileges(true),
            retain(&[CAP_KILL]),
            Isolator::NoNewPrivileges(false),
        ];
        let (p, reports) = plan(&[], &app);
        assert_eq!(p.bounding, ["CAP_KILL"]);
        assert!(!p.no_new_privs);
        let ignored = |r: &&IsolatorReport| matches!(r.outcome, Outcome::Ignored(_));
        assert_eq!(reports.iter().filter(ignored).count(), 2, "{reports:?}");
    }

    #[test]
    fn no_new_privs_oom_and_seccomp_opt_out() {
        let app = [Isolator::NoNewPrivileges(true), oom(500), seccomp_all()];
        let (p, reports) = plan(&[], &app);
        assert!(p.no_new_privs);
        assert_eq!(p.oom_score_adj, Some(500));
        assert_eq!(p.seccomp, None);
        assert!(!seccomp_before_user_switch(&p));
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.outcome == Outcome::Enforced));
    }

    #[test]
    fn pod_level_isolators() {
        let pod = [
            oom(100),
            retain(&[CAP_CHOWN]),
            Isolator::NoNewPrivileges(true),
        ];
        let (p, reports) = plan(&pod, &[]);
        assert_eq!(p.oom_score_adj, Some(100));
        assert_eq!(p.bounding, names(&DEFAULT_CAPABILITIES));
        assert!(!p.no_new_privs);
        let why = "applies to apps only (ace.md Isolators); a pod-level value is not applied";
        assert_eq!(
            lines(&reports),
            [
                format!("pod isolator os/linux/capabilities-retain-set: ignored ({why})"),
                format!("pod isolator os/linux/no-new-privileges: ignored ({why})"),
                "pod isolator os/linux/oom-score-adj: enforced".to_owned(),
            ]
        );
        let (p, reports) = plan(&[oom(100)], &[oom(-5)]);
        assert_eq!(p.oom_score_adj, Some(-5));
        assert_eq!(
            lines(&reports),
            [
                "pod isolator os/linux/oom-score-adj: ignored (the app's own value -5 applies)",
                "app isolator os/linux/oom-score-adj: enforced",
            ]
        );
    }

    #[test]
    fn resource_isolators_are_not_reported_here() {
        let q = crate::schema::Quantity::parse("1G").unwrap_or_else(|e| panic!("{e}"));
        let mem = crate::schema::ResourceLimits::with_limit(q).unwrap_or_else(|e| panic!("{e}"));
        let (_, reports) = plan(&[Isolator::Memory(mem.clone())], &[Isolator::Memory(mem)]);
        assert!(lines(&reports).is_empty(), "{reports:?}");
    }

    #[test]
    fn status_parsing_and_plan_errors() {
        let status = "Name:\tx\nCapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\n";
        assert_eq!(parse_cap_bnd(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_bnd("Name:\tx\n"), None);
        let e = parse_capabilities(&["CAP_PONIES".to_owned()]).err();
        let e = e.map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown capability \"CAP_PONIES\" in the security plan")
        );
    }

    #[test]
    fn plans_round_trip_through_json() {
        let (p, _) = plan(&[], &[oom(3)]);
        let json = serde_json::to_string(&p).unwrap_or_default();
        let back: SecurityPlan = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
    }
}
