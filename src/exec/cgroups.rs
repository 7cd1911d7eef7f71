//! The cgroups of a pod: `appc/<uuid>` carries the pod-level limits (so they bound the sum of
//! the apps, G1), `appc/<uuid>/<app>` each app's effective limits, and `appc/<uuid>/_init`
//! the init (cgroup v2 allows processes only in leaves). The cgroupfs manager is used here;
//! the systemd manager (a transient scope) comes with the systemd integration.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::plan::{INIT_CGROUP, InitPlan};
use crate::cgroup::{CgroupError, CgroupFs, CgroupHandle, CgroupManager, Resources};
use crate::schema::{PodManifest, PodUuid};

/// The created cgroups of a starting pod.
pub struct PodCgroups {
    fs: CgroupFs,
    init: CgroupHandle,
}

impl PodCgroups {
    /// Moves the init into its leaf before it starts anything.
    pub fn add_init(&self, pid: u32) -> Result<(), CgroupError> {
        self.fs.add_process(&self.init, pid)
    }
}

/// Creates the pod's cgroup tree; on failure nothing is left behind.
pub fn create_pod_cgroups(
    uuid: PodUuid,
    manifest: &PodManifest,
    plan: &InitPlan,
) -> Result<PodCgroups, CgroupError> {
    let fs = CgroupFs::detect()?;
    // A crashed earlier run of this pod (run-prepared is refused after a run, but a kill -9
    // between creation and the state change is possible) may have left the tree.
    remove_pod_cgroups(uuid)?;
    let created = create_tree(&fs, uuid, manifest, plan);
    if created.is_err() {
        let _ = remove_pod_cgroups(uuid); // best effort: the first error is the useful one
    }
    created
}

fn create_tree(
    fs: &CgroupFs,
    uuid: PodUuid,
    manifest: &PodManifest,
    plan: &InitPlan,
) -> Result<PodCgroups, CgroupError> {
    let (pod_res, _) = Resources::from_isolators(&manifest.isolators, &[]);
    fs.create(&uuid.to_string(), &pod_res)?;
    let init = fs.create(&format!("{uuid}/{INIT_CGROUP}"), &Resources::default())?;
    for app in &plan.apps {
        fs.create(&format!("{uuid}/{}", app.name), &app.resources)?;
    }
    Ok(PodCgroups {
        fs: fs.clone(),
        init,
    })
}

/// The `cgroup.procs` files of an app's cgroup, one per hierarchy.
pub fn app_procs_files(uuid: PodUuid, app: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let fs = CgroupFs::detect()?;
    let h = fs.handle(&format!("{uuid}/{app}"))?;
    Ok(h.dirs().iter().map(|d| d.join("cgroup.procs")).collect())
}

/// The handles of every cgroup of pod `uuid`, children first.
fn pod_handles(fs: &CgroupFs, uuid: PodUuid) -> Result<Vec<CgroupHandle>, CgroupError> {
    let top = fs.handle(&uuid.to_string())?;
    let mut children = BTreeSet::new();
    for dir in top.dirs() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = e.file_name().to_str()
            {
                children.insert(name.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for child in children {
        out.push(fs.handle(&format!("{uuid}/{child}"))?);
    }
    out.push(top);
    Ok(out)
}

/// Every process of pod `uuid` (init, apps, handlers, entered shells).
pub fn pod_pids(uuid: PodUuid) -> Result<Vec<u32>, CgroupError> {
    let fs = CgroupFs::detect()?;
    let mut pids: Vec<u32> = pod_handles(&fs, uuid)?
        .iter()
        .flat_map(|h| fs.pids(h))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// SIGKILLs every process of pod `uuid`.
pub fn kill_pod(uuid: PodUuid) -> Result<(), CgroupError> {
    let fs = CgroupFs::detect()?;
    for h in pod_handles(&fs, uuid)? {
        fs.kill_all(&h, rustix::process::Signal::KILL)?;
    }
    Ok(())
}

/// Removes every cgroup of pod `uuid` (killing what is left in them). Idempotent: a pod
/// without cgroups is fine.
pub fn remove_pod_cgroups(uuid: PodUuid) -> Result<(), CgroupError> {
    let fs = CgroupFs::detect()?;
    for h in pod_handles(&fs, uuid)? {
        fs.remove(&h)?;
    }
    Ok(())
}
