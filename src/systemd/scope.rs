//! The pod's transient scope, allocated the way systemd-nspawn's `allocate_scope()` does it
//! (STYLE.md §3.3 rule 7): subscribe to `JobRemoved` first, `StartTransientUnit(name, "fail", …)`,
//! wait for our job's result, require "done". Teardown follows nspawn's `terminate_scope()`:
//! `AbandonScope` → `KillUnit(all, SIGKILL)` → `UnrefUnit`, with "no such unit" as success.
//!
//! Decisions:
//! - the processes are passed as `PIDFDs` (race-free) and, when the running systemd does not
//!   know that property (systemd < 253, e.g. Debian 12's 252), as `PIDs`. Properties the running
//!   systemd rejected are remembered for the life of the process and not sent again (crun's
//!   missing-properties cache); only properties we can do without are ever dropped
//!   ([`DROPPABLE`]), never a resource limit the pod asked for (STYLE.md rule 8);
//! - `AddRef=yes` ties a reference to our bus connection, so a scope whose processes already
//!   exited is not garbage-collected before we looked at it; `CollectMode=inactive-or-failed`
//!   collects it once it is unreferenced, even when it failed.

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use zbus::export::futures_core::Stream;
use zbus::proxy::CacheProperties;
use zbus::{OwnedVariant, Variant};
use zbus_systemd::systemd1::{ManagerProxy, UnitProxy};

use super::error_name;
use super::unit_name::scope_name;

/// The slice pods go to unless configured otherwise (nspawn's default too).
pub const DEFAULT_SLICE: &str = "machine.slice";

/// How long we wait for systemd to finish the start job of a scope.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest unit name systemd accepts (`UNIT_NAME_MAX` is 256 with the NUL).
const UNIT_NAME_MAX: usize = 255;

/// Properties we can do without when the running systemd rejects them, and what we do instead.
pub const DROPPABLE: &[(&str, &str)] = &[
    ("PIDFDs", "send PIDs instead (systemd < 253)"),
    ("AddRef", "no reference held (systemd < 244)"),
];

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const SCOPE_NOT_RUNNING: &str = "org.freedesktop.systemd1.ScopeNotRunning";
const NO_SUCH_PROCESS: &str = "org.freedesktop.systemd1.NoSuchProcess";
const NOT_REFERENCED: &str = "org.freedesktop.systemd1.NotReferenced";
const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
const PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

/// Properties the running systemd refused, by name (crun's missing-properties cache).
static REJECTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Why a scope operation failed; every variant names the unit.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("invalid scope name {unit:?}: {reason}")]
    InvalidName { unit: String, reason: &'static str },
    #[error("scope {unit} needs at least one process: systemd refuses to create an empty scope")]
    NoPids { unit: String },
    #[error("cannot open a pidfd for pid {pid} to put it into {unit} (has it exited already?)")]
    PidFd {
        unit: String,
        pid: u32,
        source: rustix::io::Errno,
    },
    #[error("cannot encode property {property} of {unit} for D-Bus")]
    Encode {
        unit: String,
        property: &'static str,
        source: zbus::Error,
    },
    #[error("cannot reach systemd's manager object to handle {unit} (is systemd PID 1?)")]
    Proxy { unit: String, source: zbus::Error },
    #[error("cannot subscribe to systemd's JobRemoved signal before starting {unit}")]
    Subscribe { unit: String, source: zbus::Error },
    #[error(
        "systemd refused to start {unit}; if a pod of that name still runs, stop it \
         (`systemctl stop {unit}`) or pick another name"
    )]
    Start { unit: String, source: zbus::Error },
    #[error(
        "the start job of {unit} ended with result {result:?} instead of \"done\"; \
         see `journalctl -u {unit}`"
    )]
    JobFailed { unit: String, result: String },
    #[error(
        "systemd did not finish the start job of {unit} within {waited:?}; \
         see `systemctl list-jobs` and `systemctl status {unit}`"
    )]
    JobTimeout { unit: String, waited: Duration },
    #[error("lost the D-Bus connection while waiting for the start job of {unit}")]
    JobLost { unit: String },
    #[error("cannot {step} {unit}; stop it by hand with `systemctl kill {unit}`")]
    Terminate {
        unit: String,
        step: &'static str,
        source: zbus::Error,
    },
    #[error("cannot read the state of {unit} from systemd")]
    State { unit: String, source: zbus::Error },
}

/// What to put into the scope and which limits it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    /// The full unit name, `appc-<escaped pod name>.scope` ([`scope_name`]).
    pub unit: String,
    pub description: String,
    pub slice: String,
    /// The processes to move in (the pod init); at least one.
    pub pids: Vec<u32>,
    /// `MemoryMax=`, bytes.
    pub memory_max: Option<u64>,
    /// `CPUQuotaPerSecUSec=`: CPU time per second of wall time (1 000 000 = one CPU).
    pub cpu_quota_per_sec_usec: Option<u64>,
    /// `CPUWeight=` (1..=10000).
    pub cpu_weight: Option<u64>,
    /// `TasksMax=`.
    pub tasks_max: Option<u64>,
}

impl ScopeRequest {
    /// The scope of pod `pod_name` in [`DEFAULT_SLICE`], without limits.
    pub fn for_pod(pod_name: &str, pids: Vec<u32>) -> Self {
        ScopeRequest {
            unit: scope_name(pod_name),
            description: format!("appc pod {pod_name}"),
            slice: DEFAULT_SLICE.to_owned(),
            pids,
            memory_max: None,
            cpu_quota_per_sec_usec: None,
            cpu_weight: None,
            tasks_max: None,
        }
    }
}

/// A property value as we send it; `Pids` becomes `PIDFDs` (`ah`) or `PIDs` (`au`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    Str(String),
    Bool(bool),
    U64(u64),
    Pids(Vec<u32>),
}

/// An allocated scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeUnit {
    /// The unit name.
    pub name: String,
    /// The object path of the start job.
    pub job: String,
    /// How the processes were passed: `"PIDFDs"` or `"PIDs"`.
    pub pids_property: &'static str,
    /// Properties left out because this systemd rejects them, with what was done instead.
    pub dropped: Vec<String>,
}

/// The properties of `StartTransientUnit` for `req`, in the order they are sent. The processes
/// are listed under `"PIDFDs"`; [`allocate`] sends them as `PIDs` when systemd rejects that.
pub fn properties(req: &ScopeRequest) -> Vec<(&'static str, PropValue)> {
    let mut props = vec![
        ("Description", PropValue::Str(req.description.clone())),
        ("Slice", PropValue::Str(req.slice.clone())),
        ("Delegate", PropValue::Bool(true)),
        (
            "CollectMode",
            PropValue::Str("inactive-or-failed".to_owned()),
        ),
        ("AddRef", PropValue::Bool(true)),
        ("PIDFDs", PropValue::Pids(req.pids.clone())),
    ];
    let limits = [
        ("MemoryMax", req.memory_max),
        ("CPUQuotaPerSecUSec", req.cpu_quota_per_sec_usec),
        ("CPUWeight", req.cpu_weight),
        ("TasksMax", req.tasks_max),
    ];
    props.extend(
        limits
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, PropValue::U64(v)))),
    );
    props
}

fn check_unit(unit: &str) -> Result<(), ScopeError> {
    let reason = if !unit.ends_with(".scope") || unit.len() == ".scope".len() {
        Some("it must be NAME.scope")
    } else if unit.len() > UNIT_NAME_MAX {
        Some("longer than 255 bytes once escaped; pick a shorter pod name")
    } else if unit.contains('/') {
        Some("it contains '/'; escape it with unit_name::escape")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ScopeError::InvalidName {
            unit: unit.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn rejected(property: &str) -> bool {
    REJECTED
        .lock()
        .map(|set| set.contains(property))
        .unwrap_or(false)
}

fn reject(property: &str) {
    if let Ok(mut set) = REJECTED.lock() {
        set.insert(property.to_owned());
    }
}

/// Whether `text` names `word` as a whole word (so `PIDs` is not found in `PIDFDs`).
fn names_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Which property of `sent` systemd's refusal is about, when it is one we can drop.
fn droppable_rejection(e: &zbus::Error, sent: &[&'static str]) -> Option<&'static str> {
    let name = error_name(e)?;
    if ![UNKNOWN_PROPERTY, PROPERTY_READ_ONLY, INVALID_ARGS].contains(&name.as_str()) {
        return None;
    }
    let text = e.to_string();
    let named = DROPPABLE
        .iter()
        .map(|(p, _)| *p)
        .find(|p| sent.contains(p) && names_word(&text, p));
    // An InvalidArgs that names nothing is blamed on PIDFDs only for the property errors.
    named.or_else(|| (name != INVALID_ARGS && sent.contains(&"PIDFDs")).then_some("PIDFDs"))
}

fn encode(
    unit: &str,
    key: &'static str,
    value: &PropValue,
    pidfds: bool,
) -> Result<(&'static str, OwnedVariant), ScopeError> {
    let enc = |key: &'static str, v: Variant<'_>| {
        v.try_into_owned().map_err(|source| ScopeError::Encode {
            unit: unit.to_owned(),
            property: key,
            source,
        })
    };
    match value {
        PropValue::Str(s) => Ok((key, enc(key, Variant::from(s.as_str()))?)),
        PropValue::Bool(b) => Ok((key, enc(key, Variant::from(*b))?)),
        PropValue::U64(n) => Ok((key, enc(key, Variant::from(*n))?)),
        PropValue::Pids(pids) if pidfds => {
            let mut fds = Vec::with_capacity(pids.len());
            for &pid in pids {
                let fd = i32::try_from(pid)
                    .ok()
                    .and_then(Pid::from_raw)
                    .ok_or(rustix::io::Errno::SRCH)
                    .and_then(|p| pidfd_open(p, PidfdFlags::empty()))
                    .map_err(|source| ScopeError::PidFd {
                        unit: unit.to_owned(),
                        pid,
                        source,
                    })?;
                fds.push(zbus::Fd::from(fd));
            }
            Ok(("PIDFDs", enc("PIDFDs", Variant::from(fds))?))
        }
        PropValue::Pids(pids) => Ok(("PIDs", enc("PIDs", Variant::from(pids.clone()))?)),
    }
}

async fn manager<'c>(
    conn: &'c zbus::Connection,
    unit: &str,
) -> Result<ManagerProxy<'c>, ScopeError> {
    let proxy = ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await;
    proxy.map_err(|source| ScopeError::Proxy {
        unit: unit.to_owned(),
        source,
    })
}

/// Creates the transient scope of `req` with its processes in it and waits until systemd has
/// started it.
pub async fn allocate(
    conn: &zbus::Connection,
    req: &ScopeRequest,
) -> Result<ScopeUnit, ScopeError> {
    let unit = req.unit.as_str();
    check_unit(unit)?;
    if req.pids.is_empty() {
        return Err(ScopeError::NoPids {
            unit: unit.to_owned(),
        });
    }
    let manager = manager(conn, unit).await?;
    // Subscribe before the call, or a fast job's JobRemoved could pass before we listen.
    let mut removed =
        manager
            .receive_job_removed()
            .await
            .map_err(|source| ScopeError::Subscribe {
                unit: unit.to_owned(),
                source,
            })?;

    let mut dropped = Vec::new();
    let plan = properties(req);
    let (job, pids_property) = loop {
        // A kernel without pidfd_open (before 5.3) is a PIDFDs we cannot send either.
        let mut props = Vec::with_capacity(plan.len());
        let mut sent = Vec::with_capacity(plan.len());
        for (key, value) in &plan {
            if rejected(key) {
                if matches!(value, PropValue::Pids(_)) {
                    props.push(encode(unit, key, value, false)?);
                    sent.push("PIDs");
                }
                continue;
            }
            match encode(unit, key, value, true) {
                Ok(prop) => {
                    sent.push(prop.0);
                    props.push(prop);
                }
                Err(ScopeError::PidFd {
                    source: rustix::io::Errno::NOSYS,
                    ..
                }) => {
                    reject(key);
                    dropped.push("PIDFDs: pidfd_open is not available, sent PIDs".to_owned());
                    props.push(encode(unit, key, value, false)?);
                    sent.push("PIDs");
                }
                Err(e) => return Err(e),
            }
        }
        let pids_property = if sent.contains(&"PIDFDs") {
            "PIDFDs"
        } else {
            "PIDs"
        };
        let call = manager
            .start_transient_unit(
                unit.to_owned(),
                "fail".to_owned(),
                props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                Vec::new(),
            )
            .await;
        match call {
            Ok(job) => break (job, pids_property),
            Err(e) => match droppable_rejection(&e, &sent) {
                Some(property) if !rejected(property) => {
                    reject(property);
                    let instead = DROPPABLE
                        .iter()
                        .find(|(p, _)| *p == property)
                        .map_or("", |(_, i)| *i);
                    dropped.push(format!("{property}: {instead}: {e}"));
                }
                _ => {
                    return Err(ScopeError::Start {
                        unit: unit.to_owned(),
                        source: e,
                    });
                }
            },
        }
    };

    let wait = async {
        loop {
            let Some(signal) = poll_fn(|cx| Pin::new(&mut removed).poll_next(cx)).await else {
                return Err(ScopeError::JobLost {
                    unit: unit.to_owned(),
                });
            };
            // A signal we cannot decode is not ours to judge; ours will come.
            let Ok(args) = signal.args() else { continue };
            if args.job.as_str() == job.as_str() {
                return Ok(args.result.clone());
            }
        }
    };
    let result = tokio::time::timeout(JOB_TIMEOUT, wait)
        .await
        .map_err(|_| ScopeError::JobTimeout {
            unit: unit.to_owned(),
            waited: JOB_TIMEOUT,
        })??;
    if result != "done" {
        return Err(ScopeError::JobFailed {
            unit: unit.to_owned(),
            result,
        });
    }
    Ok(ScopeUnit {
        name: unit.to_owned(),
        job: job.as_str().to_owned(),
        pids_property,
        dropped,
    })
}

/// Stops scope `unit` for good: abandons it, SIGKILLs everything in it, drops our reference.
/// Idempotent: a unit that is gone, not running or has no processes left is success. Every step
/// is tried even when an earlier one failed; the first failure is returned.
pub async fn terminate(conn: &zbus::Connection, unit: &str) -> Result<(), ScopeError> {
    let manager = manager(conn, unit).await?;
    let mut first_error = None;
    for step in ["abandon", "kill", "unref"] {
        let result = match step {
            "abandon" => manager.abandon_scope(unit.to_owned()).await,
            "kill" => {
                manager
                    .kill_unit(
                        unit.to_owned(),
                        "all".to_owned(),
                        rustix::process::Signal::KILL.as_raw(),
                    )
                    .await
            }
            _ => manager.unref_unit(unit.to_owned()).await,
        };
        let Err(source) = result else { continue };
        match error_name(&source).as_deref() {
            Some(NO_SUCH_UNIT) => return Ok(()),
            // Already abandoned or stopped, nothing left to kill, no reference of ours.
            Some(SCOPE_NOT_RUNNING | NO_SUCH_PROCESS | NOT_REFERENCED) => {}
            _ => {
                first_error.get_or_insert(ScopeError::Terminate {
                    unit: unit.to_owned(),
                    step,
                    source,
                });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The `ActiveState` of `unit` (`active`, `inactive`, `failed`, …), `None` when systemd does not
/// have it loaded.
pub async fn unit_state(conn: &zbus::Connection, unit: &str) -> Result<Option<String>, ScopeError> {
    let manager = manager(conn, unit).await?;
    let state_error = |source| ScopeError::State {
        unit: unit.to_owned(),
        source,
    };
    let path = match manager.get_unit(unit.to_owned()).await {
        Ok(path) => path,
        Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => return Ok(None),
        Err(e) => return Err(state_error(e)),
    };
    let proxy = UnitProxy::builder(conn)
        .path(path)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(state_error)?;
    proxy.active_state().await.map(Some).map_err(state_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_list_for_a_pod_with_limits() {
        let mut req = ScopeRequest::for_pod("web-1", vec![42, 43]);
        req.memory_max = Some(64 << 20);
        req.cpu_quota_per_sec_usec = Some(500_000);
        req.cpu_weight = Some(39);
        req.tasks_max = Some(50);
        assert_eq!(req.unit, "appc-web\\x2d1.scope");
        use PropValue::*;
        assert_eq!(
            properties(&req),
            vec![
                ("Description", Str("appc pod web-1".into())),
                ("Slice", Str("machine.slice".into())),
                ("Delegate", Bool(true)),
                ("CollectMode", Str("inactive-or-failed".into())),
                ("AddRef", Bool(true)),
                ("PIDFDs", Pids(vec![42, 43])),
                ("MemoryMax", U64(64 << 20)),
                ("CPUQuotaPerSecUSec", U64(500_000)),
                ("CPUWeight", U64(39)),
                ("TasksMax", U64(50)),
            ]
        );
    }

    #[test]
    fn property_list_without_limits_has_no_limit_properties() {
        let req = ScopeRequest::for_pod("a", vec![1]);
        let keys: Vec<&str> = properties(&req).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "Description",
                "Slice",
                "Delegate",
                "CollectMode",
                "AddRef",
                "PIDFDs"
            ]
        );
    }

    #[test]
    fn pids_encode_as_au() {
        let (key, v) = encode("x.scope", "PIDFDs", &PropValue::Pids(vec![7]), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key, "PIDs");
        assert_eq!(v.value_signature().to_string(), "au");
        let (_, v) = encode("x.scope", "MemoryMax", &PropValue::U64(1), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.value_signature().to_string(), "t");
    }

    #[test]
    fn pidfds_encode_as_ah() {
        let me = std::process::id();
        let (key, v) = encode("x.scope", "PIDFDs", &PropValue::Pids(vec![me]), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key, "PIDFDs");
        assert_eq!(v.value_signature().to_string(), "ah");
    }

    #[test]
    fn unit_names_are_checked() {
        assert!(check_unit("appc-a.scope").is_ok());
        assert!(check_unit("appc-a.service").is_err());
        assert!(check_unit(".scope").is_err());
        assert!(check_unit("a/b.scope").is_err());
        assert!(check_unit(&scope_name(&"x".repeat(300))).is_err());
    }

    #[test]
    fn whole_words_only() {
        assert!(names_word(
            "Cannot set property PIDFDs, or unknown property.",
            "PIDFDs"
        ));
        assert!(!names_word(
            "Cannot set property PIDFDs, or unknown",
            "PIDs"
        ));
        assert!(names_word("PIDs", "PIDs"));
        assert!(!names_word("AddRefX", "AddRef"));
    }
}
