//! Where a pod's processes live and who enforces its limits (DESIGN.md "Process model"):
//!
//! - without systemd as PID 1: the cgroupfs manager, `appc/<uuid>/{_init,<app>}` ([`super::cgroups`]);
//! - with systemd, from a shell: a transient scope `appc-<name>.scope` in `machine.slice` whose
//!   properties carry the limits, registered with machined ([`crate::systemd::scope`]);
//! - with systemd, when `appcctl` itself runs in a service (`appc-pod@NAME.service`): that
//!   service keeps the pod, like nspawn's `--keep-unit`, and the pod is registered with machined.
//!
//! Under systemd the apps share the pod's unit: the scope carries the pod's limits, or the one
//! app's effective limits for a single-app pod. Per-app sub-cgroups of the delegated scope are
//! not made yet; a multi-app pod's app-level resource isolators are then reported as changed.

use crate::cgroup::{IsolatorReport, Outcome, Resources};
use crate::schema::{IsolatorScope, PodManifest, PodUuid};
use crate::systemd::{self, detect, machine, scope};

use super::cgroups::{self, PodCgroups};
use super::plan::InitPlan;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(transparent)]
    Bus(#[from] systemd::BusError),
    #[error(transparent)]
    Scope(#[from] Box<scope::ScopeError>),
    #[error(transparent)]
    Machine(#[from] Box<machine::MachineError>),
}

/// The kind of placement, decided once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    CgroupFs,
    Scope,
    KeepUnit(String),
}

impl Kind {
    /// `keep_unit` (`--keep-unit`) keeps whatever unit appcctl runs in, a session scope
    /// included, as nspawn's flag does; without it only a service is kept.
    pub fn detect(keep_unit: bool) -> Kind {
        if !detect::systemd_is_pid1() {
            return Kind::CgroupFs;
        }
        let own = if keep_unit {
            detect::own_unit()
        } else {
            detect::own_service()
        };
        match own {
            Some(unit) => Kind::KeepUnit(unit),
            None => Kind::Scope,
        }
    }

    /// Whether apps join cgroups of their own (only the cgroupfs manager makes them).
    pub fn per_app_cgroups(&self) -> bool {
        *self == Kind::CgroupFs
    }
}

/// A pod's placement while it starts and runs.
pub struct Placement {
    kind: Kind,
    cgroups: Option<PodCgroups>,
    bus: Option<(tokio::runtime::Runtime, zbus::Connection)>,
    unit: Option<String>,
    slice: Option<String>,
}

impl Placement {
    /// Prepares the placement before the init exists (cgroupfs: creates the tree).
    pub fn prepare(
        kind: Kind,
        uuid: PodUuid,
        manifest: &PodManifest,
        plan: &InitPlan,
    ) -> Result<Placement, ManagerError> {
        let cgroups = match kind {
            Kind::CgroupFs => Some(cgroups::create_pod_cgroups(uuid, manifest, plan)?),
            _ => None,
        };
        Ok(Placement {
            kind,
            cgroups,
            bus: None,
            unit: None,
            slice: None,
        })
    }

    /// The slice a scope goes to (`--slice`); `None` keeps machine.slice.
    pub fn set_slice(&mut self, slice: Option<String>) {
        self.slice = slice;
    }

    /// The systemd unit holding the pod, once placed.
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// Puts the freshly spawned init (still waiting for sync 1) where it belongs.
    pub fn place_init(
        &mut self,
        pid: u32,
        manifest: &PodManifest,
        plan: &InitPlan,
    ) -> Result<(), ManagerError> {
        if let Some(cg) = &self.cgroups {
            return Ok(cg.add_init(pid)?);
        }
        let rt = systemd::runtime()?;
        let conn = rt.block_on(systemd::connect())?;
        let unit = match &self.kind {
            Kind::KeepUnit(unit) => unit.clone(),
            _ => {
                let res = scope_resources(manifest, plan);
                let mut req = systemd::cgroup::scope_request(&plan.pod_name, vec![pid], &res);
                if let Some(slice) = &self.slice {
                    req.slice = slice.clone();
                }
                let scope = rt
                    .block_on(scope::allocate(&conn, &req))
                    .map_err(Box::new)?;
                scope.name
            }
        };
        let req = machine::MachineRequest::pod(
            &plan.pod_name,
            uuid_bytes(&plan.pod_uuid),
            pid,
            plan.pod_dir.clone(),
        );
        if let Err(e) = rt.block_on(machine::register(&conn, &req)) {
            // machined is optional (systemd-container); the pod runs without `machinectl`.
            tracing::warn!(appc_pod = %plan.pod_name, appc_pod_uuid = %plan.pod_uuid, "{e}");
        }
        self.unit = Some(unit);
        self.bus = Some((rt, conn));
        Ok(())
    }

    /// After the pod ended: removes what the manager does not collect by itself.
    pub fn release(&self, uuid: PodUuid) {
        if self.kind == Kind::CgroupFs {
            let _ = cgroups::remove_pod_cgroups(uuid); // best effort: gc retries
        }
        // A scope with CollectMode=inactive-or-failed goes away with its last process, and
        // machined drops the machine with it; a kept service is the service's business.
    }
}

/// The limits of the pod's scope: the pod's own, or the only app's effective ones.
fn scope_resources(manifest: &PodManifest, plan: &InitPlan) -> Resources {
    match plan.apps.as_slice() {
        [only] => only.resources,
        _ => Resources::from_isolators(&manifest.isolators, &[]).0,
    }
}

/// G3 for systemd placement: app-level resource limits of a multi-app pod apply to nobody.
pub fn adjust_reports(kind: &Kind, apps: usize, reports: &mut [(Option<String>, IsolatorReport)]) {
    if kind.per_app_cgroups() || apps < 2 {
        return;
    }
    for (_, r) in reports.iter_mut() {
        let resource = matches!(
            r.name.as_str(),
            "resource/memory" | "resource/cpu" | "os/linux/cpu-shares"
        );
        if resource && r.scope == IsolatorScope::App && r.outcome == Outcome::Enforced {
            r.outcome = Outcome::Ignored(
                "under systemd the pod's scope carries the pod-level limits only; per-app \
                 limits of a multi-app pod are not applied yet"
                    .into(),
            );
        }
    }
}

fn uuid_bytes(uuid: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(uuid).map_or([0; 16], |u| *u.as_bytes())
}
