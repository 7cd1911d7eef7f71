//! The systemd side of resource isolation: a pod's [`Resources`] as the properties of its scope
//! (DESIGN.md "Process model": with systemd on PID 1 the scope carries the limits).
//!
//! This is not an implementation of [`crate::cgroup::CgroupManager`], because the trait does not
//! fit a scope:
//! - `create(name, res)` makes an empty cgroup and `add_process` fills it later, but systemd
//!   refuses a scope without processes: the pod init's pid is needed up front;
//! - a [`crate::cgroup::CgroupHandle`] can only be built inside `crate::cgroup`, and
//!   [`crate::cgroup::CgroupError`] has no variant for a D-Bus failure.
//!
//! Instead the executor builds a [`ScopeRequest`] with [`scope_request`] once the init exists and
//! calls [`super::scope::allocate`]; kill and remove are [`super::scope::terminate`].

use crate::cgroup::{Resources, shares_to_weight};

use super::scope::ScopeRequest;

/// The scope of pod `pod_name` holding `pids` with `res` as its limits: `memory_max` →
/// `MemoryMax`, `cpu_quota_milli` → `CPUQuotaPerSecUSec` (milli-CPUs × 1000 µs per second),
/// `cpu_weight_shares` → `CPUWeight` (the cgroupfs manager's [`shares_to_weight`]), `pids_max` → `TasksMax`.
pub fn scope_request(pod_name: &str, pids: Vec<u32>, res: &Resources) -> ScopeRequest {
    ScopeRequest {
        memory_max: res.memory_max,
        cpu_quota_per_sec_usec: res.cpu_quota_milli.map(|m| m.saturating_mul(1000)),
        cpu_weight: res.cpu_weight_shares.map(shares_to_weight),
        tasks_max: res.pids_max,
        ..ScopeRequest::for_pod(pod_name, pids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_scope_properties() {
        let res = Resources {
            memory_max: Some(64 << 20),
            cpu_quota_milli: Some(500),
            cpu_weight_shares: Some(1024),
            pids_max: Some(50),
        };
        let req = scope_request("db", vec![9], &res);
        assert_eq!(req.unit, "appc-db.scope");
        assert_eq!(req.slice, "machine.slice");
        assert_eq!(req.pids, [9]);
        assert_eq!(req.memory_max, Some(64 << 20));
        assert_eq!(req.cpu_quota_per_sec_usec, Some(500_000), "half a CPU");
        assert_eq!(req.cpu_weight, Some(39));
        assert_eq!(req.tasks_max, Some(50));
    }

    #[test]
    fn no_resources_no_limits() {
        let req = scope_request("db", vec![9], &Resources::default());
        assert_eq!(req, ScopeRequest::for_pod("db", vec![9]));
    }

    #[test]
    fn weight_formula_matches_systemd() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }
}
