//! The pod state machine (STYLE.md §3.3 rule 12) and the persisted record (`state.json`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::PodError;
use crate::schema::{AcName, PodUuid};

/// Where a pod is in its life. `Embryo` exists only while `create` runs (no `state.json` yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    Embryo,
    Prepared,
    Running,
    Exited,
    Garbage,
}

impl PodState {
    pub const ALL: [PodState; 5] = [
        PodState::Embryo,
        PodState::Prepared,
        PodState::Running,
        PodState::Exited,
        PodState::Garbage,
    ];

    pub fn can_run(self) -> bool {
        self == PodState::Prepared
    }

    pub fn can_stop(self) -> bool {
        self == PodState::Running
    }

    pub fn can_enter(self) -> bool {
        self == PodState::Running
    }

    /// A running pod must exit first; an embryo belongs to the `create` that holds its lock.
    pub fn can_remove(self) -> bool {
        matches!(
            self,
            PodState::Prepared | PodState::Exited | PodState::Garbage
        )
    }

    /// Whether the pod still owns its name (a garbage pod gives it up).
    pub fn holds_name(self) -> bool {
        self != PodState::Garbage
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Embryo => "embryo",
            PodState::Prepared => "prepared",
            PodState::Running => "running",
            PodState::Exited => "exited",
            PodState::Garbage => "garbage",
        }
    }
}

impl fmt::Display for PodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The only place that says which state changes are allowed.
pub fn transition(uuid: PodUuid, from: PodState, to: PodState) -> Result<(), PodError> {
    use PodState::*;
    let ok = matches!(
        (from, to),
        (Embryo, Prepared)
            | (Embryo, Garbage)
            | (Prepared, Running)
            | (Prepared, Garbage)
            | (Running, Exited)
            | (Exited, Garbage)
    );
    if ok {
        Ok(())
    } else {
        Err(PodError::InvalidTransition { uuid, from, to })
    }
}

/// The content of `state.json`; times are unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub name: Option<AcName>,
    pub uuid: PodUuid,
    pub state: PodState,
    pub created: i64,
    pub started: Option<i64>,
    pub exited: Option<i64>,
    pub init_pid: Option<i32>,
    /// The init's start time (clock ticks after boot, /proc/PID/stat field 22): with the pid it
    /// identifies the init for certain, so `stop` never signals a recycled pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_start: Option<u64>,
    /// The systemd unit holding the pod (its scope, or the service it kept), when systemd is
    /// PID 1; `None` on the cgroupfs manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub app_exit_codes: BTreeMap<String, i32>,
    /// Filled in by the network setup later; opaque here.
    #[serde(default)]
    pub net: Option<serde_json::Value>,
}

impl PodRecord {
    pub fn new(name: Option<AcName>, uuid: PodUuid, created: i64) -> Self {
        PodRecord {
            name,
            uuid,
            state: PodState::Prepared,
            created,
            started: None,
            exited: None,
            init_pid: None,
            init_start: None,
            unit: None,
            app_exit_codes: BTreeMap::new(),
            net: None,
        }
    }

    /// Moves to `to` if allowed, stamping the start or exit time.
    pub fn advance(&mut self, to: PodState, now: i64) -> Result<(), PodError> {
        transition(self.uuid, self.state, to)?;
        match to {
            PodState::Running => self.started = Some(now),
            PodState::Exited => self.exited = Some(now),
            _ => {}
        }
        self.state = to;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_the_table() {
        use PodState::*;
        let table = [
            (Embryo, false, false, false, false),
            (Prepared, true, false, true, false),
            (Running, false, true, false, true),
            (Exited, false, false, true, false),
            (Garbage, false, false, true, false),
        ];
        for (s, run, stop, rm, enter) in table {
            assert_eq!(
                (s.can_run(), s.can_stop(), s.can_remove(), s.can_enter()),
                (run, stop, rm, enter),
                "{s}"
            );
        }
    }

    #[test]
    fn advance_stamps_times_and_refuses_bad_moves() {
        let mut r = PodRecord::new(None, PodUuid::new_random(), 1);
        r.advance(PodState::Running, 5).unwrap();
        assert_eq!(r.started, Some(5));
        assert!(r.advance(PodState::Garbage, 6).is_err());
        assert_eq!(r.state, PodState::Running);
        r.advance(PodState::Exited, 7).unwrap();
        assert_eq!(r.exited, Some(7));
    }

    #[test]
    fn state_serializes_lowercase() {
        let j = serde_json::to_string(&PodState::Garbage).unwrap();
        assert_eq!(j, "\"garbage\"");
    }
}
