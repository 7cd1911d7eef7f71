//! The cgroups of a pod (being written): `appc/<uuid>` for the pod, `appc/<uuid>/<app>` per app.

use crate::cgroup::CgroupError;
use crate::schema::PodUuid;

/// Removes every cgroup of pod `uuid` (killing what is left in them). Idempotent: a pod
/// without cgroups is fine.
pub fn remove_pod_cgroups(uuid: PodUuid) -> Result<(), CgroupError> {
    let _ = uuid;
    Ok(())
}
