//! From isolators to cgroup limits, with the G3 report (appc-requirements.md §2.5.8).

use std::fmt;

use crate::schema::{Isolator, IsolatorKind, IsolatorScope};

/// The kernel's smallest CFS quota is 1 ms per 100 ms period (sched-bwc.rst), i.e. 10m.
const MIN_CPU_MILLI: u64 = 10;

/// Limits for one cgroup. `None` leaves the kernel default (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Bytes.
    pub memory_max: Option<u64>,
    /// CPU time per wall time, in thousandths of a CPU (1000 = one CPU).
    pub cpu_quota_milli: Option<u64>,
    /// cgroup v1 `cpu.shares` (2..=262144); v2 maps it to `cpu.weight`.
    pub cpu_weight_shares: Option<u64>,
    /// Maximum number of tasks (no appc isolator sets it; the caller may).
    pub pids_max: Option<u64>,
}

/// What happened to one isolator (spec G3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Enforced,
    /// Applied with a different value; the string says which and why.
    Changed(String),
    Ignored(String),
}

/// The G3 line for one isolator of the pod or of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolatorReport {
    pub name: String,
    pub scope: IsolatorScope,
    pub outcome: Outcome,
}

impl fmt::Display for IsolatorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            IsolatorScope::App => "app",
            IsolatorScope::Pod => "pod",
        };
        match &self.outcome {
            Outcome::Enforced => write!(f, "{scope} isolator {}: enforced", self.name),
            Outcome::Changed(why) => write!(f, "{scope} isolator {}: changed ({why})", self.name),
            Outcome::Ignored(why) => write!(f, "{scope} isolator {}: ignored ({why})", self.name),
        }
    }
}

/// The cgroup value an isolator asks for, or why it cannot be applied.
enum Wanted {
    Value(u64),
    Ignore(String),
    /// Not a resource isolator: another part of the executor applies it.
    NotOurs,
}

impl Resources {
    /// Combines the pod's and the app's isolators: a pod-level limit bounds the app's (G1), so
    /// the effective value is the smaller one. Returns one report per resource or unknown
    /// isolator; isolators applied elsewhere (capabilities, seccomp, …) are not reported here.
    pub fn from_isolators(pod: &[Isolator], app: &[Isolator]) -> (Resources, Vec<IsolatorReport>) {
        let mut res = Resources::default();
        let mut reports = Vec::new();
        for (list, scope) in [(pod, IsolatorScope::Pod), (app, IsolatorScope::App)] {
            for (i, iso) in list.iter().enumerate() {
                let outcome = res.apply(list, i, iso, scope);
                if let Some(outcome) = outcome {
                    reports.push(IsolatorReport {
                        name: iso.name().to_owned(),
                        scope,
                        outcome,
                    });
                }
            }
        }
        (res, reports)
    }

    fn apply(
        &mut self,
        list: &[Isolator],
        i: usize,
        iso: &Isolator,
        scope: IsolatorScope,
    ) -> Option<Outcome> {
        let superseded = iso
            .kind()
            .and_then(|k| k.last_in(list))
            .is_some_and(|last| !std::ptr::eq(last, &list[i]));
        let wanted = wanted_value(iso);
        if superseded && !matches!(wanted, Wanted::NotOurs) {
            return Some(Outcome::Ignored(format!(
                "a later {} in the same list replaces it",
                iso.name()
            )));
        }
        match (wanted, iso.kind()) {
            (Wanted::NotOurs, _) => None,
            (Wanted::Ignore(why), _) => Some(Outcome::Ignored(why)),
            (Wanted::Value(v), Some(kind)) => Some(self.bound(kind, v, scope)),
            (Wanted::Value(_), None) => None,
        }
    }

    /// Sets the field of `kind` to `v`, or keeps the smaller pod value (G1).
    fn bound(&mut self, kind: IsolatorKind, v: u64, scope: IsolatorScope) -> Outcome {
        let slot = match kind {
            IsolatorKind::Memory => &mut self.memory_max,
            IsolatorKind::Cpu => &mut self.cpu_quota_milli,
            _ => &mut self.cpu_weight_shares,
        };
        let (clamped, changed) = if kind == IsolatorKind::Cpu && v < MIN_CPU_MILLI {
            let why = format!("{v}m raised to {MIN_CPU_MILLI}m, the kernel's smallest quota");
            (MIN_CPU_MILLI, Some(why))
        } else {
            (v, None)
        };
        match *slot {
            Some(pod) if scope == IsolatorScope::App && pod < clamped => {
                Outcome::Changed(format!("{clamped} lowered to the pod's {pod}"))
            }
            _ => {
                *slot = Some(clamped);
                changed.map_or(Outcome::Enforced, Outcome::Changed)
            }
        }
    }
}

fn wanted_value(iso: &Isolator) -> Wanted {
    const UNSUPPORTED: &str = "not supported by the cgroupfs manager";
    match iso {
        Isolator::Memory(r) => match r.limit() {
            None => Wanted::Ignore("only a request: memory requests are not enforced".into()),
            Some(q) => q.to_bytes().map_or_else(
                || Wanted::Ignore("limit out of range".into()),
                Wanted::Value,
            ),
        },
        Isolator::Cpu(r) => match r.limit() {
            None => Wanted::Ignore("only a request: cpu requests are not enforced".into()),
            Some(q) => match q.to_milli().map(u64::try_from) {
                Some(Ok(m)) => Wanted::Value(m),
                _ => Wanted::Ignore("limit out of range".into()),
            },
        },
        Isolator::CpuShares(s) => Wanted::Value(u64::from(s.get())),
        Isolator::BlockBandwidth(_) | Isolator::BlockIops(_) | Isolator::NetworkBandwidth(_) => {
            Wanted::Ignore(UNSUPPORTED.into())
        }
        Isolator::Unknown(_) => Wanted::Ignore("unknown isolator (spec G2)".into()),
        _ => Wanted::NotOurs,
    }
}

/// systemd's `CGROUP_CPU_SHARES_TO_WEIGHT`-style mapping of v1 shares (2..=262144) onto v2
/// weights (1..=10000): 1 + ((shares - 2) * 9999) / 262142, so 1024 maps to 39, not 100.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{CpuShares, DeviceLimit, Quantity, ResourceLimits};

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn limit(s: &str) -> ResourceLimits {
        ResourceLimits::with_limit(q(s)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn g1_pod_memory_bounds_app_memory() {
        let pod = [Isolator::Memory(limit("1G"))];
        let app = [Isolator::Memory(limit("2G"))];
        let (res, reports) = Resources::from_isolators(&pod, &app);
        assert_eq!(res.memory_max, Some(1_000_000_000));
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].outcome, Outcome::Enforced);
        assert_eq!(reports[1].scope, IsolatorScope::App);
        assert!(matches!(&reports[1].outcome, Outcome::Changed(w) if w.contains("1000000000")));
    }

    #[test]
    fn g1_smaller_app_limit_wins() {
        let pod = [Isolator::Memory(limit("2Gi"))];
        let app = [Isolator::Memory(limit("1Gi"))];
        let (res, reports) = Resources::from_isolators(&pod, &app);
        assert_eq!(res.memory_max, Some(1 << 30));
        assert!(reports.iter().all(|r| r.outcome == Outcome::Enforced));
    }

    #[test]
    fn app_cpu_limit_is_a_quota_in_milli() {
        let app = [Isolator::Cpu(limit("500m"))];
        let (res, reports) = Resources::from_isolators(&[], &app);
        assert_eq!(res.cpu_quota_milli, Some(500));
        assert_eq!(reports[0].outcome, Outcome::Enforced);
        let (res, reports) = Resources::from_isolators(&[], &[Isolator::Cpu(limit("1m"))]);
        assert_eq!(res.cpu_quota_milli, Some(10));
        assert!(matches!(reports[0].outcome, Outcome::Changed(_)));
    }

    #[test]
    fn cpu_shares_map_to_systemd_weights() {
        let shares = CpuShares::new(1024).unwrap_or_else(|e| panic!("{e}"));
        let (res, _) = Resources::from_isolators(&[], &[Isolator::CpuShares(shares)]);
        assert_eq!(res.cpu_weight_shares, Some(1024));
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn g3_unsupported_isolators_are_reported_ignored() {
        let dev = DeviceLimit::new(q("1M")).unwrap_or_else(|e| panic!("{e}"));
        let unknown = crate::schema::UnknownIsolator::new(
            "example.com/thing"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            serde_json::json!({}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let app = [
            Isolator::BlockBandwidth(dev.clone()),
            Isolator::NetworkBandwidth(dev),
            Isolator::Unknown(unknown),
            Isolator::NoNewPrivileges(true),
        ];
        let (res, reports) = Resources::from_isolators(&[], &app);
        assert_eq!(res, Resources::default());
        assert_eq!(
            reports.len(),
            3,
            "no-new-privileges is not ours: {reports:?}"
        );
        assert!(
            reports
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Ignored(_)))
        );
        assert!(
            reports[0]
                .to_string()
                .contains("not supported by the cgroupfs manager")
        );
    }

    #[test]
    fn repeated_isolators_apply_the_last() {
        let app = [Isolator::Memory(limit("1G")), Isolator::Memory(limit("3G"))];
        let (res, reports) = Resources::from_isolators(&[], &app);
        assert_eq!(res.memory_max, Some(3_000_000_000));
        assert!(matches!(reports[0].outcome, Outcome::Ignored(_)));
        assert_eq!(reports[1].outcome, Outcome::Enforced);
    }
}
