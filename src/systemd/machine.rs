//! machined registration, so `machinectl list/status/terminate` work on pods (nspawn's
//! `register_machine()`/`terminate_machine()`).
//!
//! We always call `RegisterMachineWithNetwork`: machined then looks up the unit of the leader
//! process and attaches the machine to it. That covers both cases nspawn has:
//! - the pod got its own scope from [`super::scope::allocate`] first (nspawn since v257 allocates
//!   the scope itself and then registers);
//! - `--keep-unit`, automatic under a service such as `appc-pod@NAME.service` (see
//!   [`super::detect::own_service`]): the pod lives in that service's cgroup.
//!
//! `CreateMachineWithNetwork`, where machined creates the scope itself, is not used: it would
//! duplicate [`super::scope::allocate`] without its `PIDFDs`/rejected-properties handling, and is
//! wrong under `--keep-unit`.

use std::path::PathBuf;

use zbus::proxy::CacheProperties;
use zbus_systemd::machine1::ManagerProxy;

use super::error_name;

const NO_SUCH_MACHINE: &str = "org.freedesktop.machine1.NoSuchMachine";

/// Why a machined call failed; every variant names the machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("root directory {path:?} of machine {machine} is not absolute")]
    RelativeRoot { machine: String, path: PathBuf },
    #[error(
        "root directory {path:?} of machine {machine} is not valid UTF-8, machined needs a string"
    )]
    NonUtf8Root { machine: String, path: PathBuf },
    #[error(
        "cannot reach machined to handle machine {machine} \
         (is systemd-machined available? Debian: systemd-container)"
    )]
    Proxy {
        machine: String,
        source: zbus::Error,
    },
    #[error(
        "machined refused to register machine {machine} (leader pid {leader}); if a machine of \
         that name exists, `machinectl terminate {machine}` it or pick another pod name"
    )]
    Register {
        machine: String,
        leader: u32,
        source: zbus::Error,
    },
    #[error("cannot terminate machine {machine}; try `machinectl terminate {machine}`")]
    Terminate {
        machine: String,
        source: zbus::Error,
    },
}

/// What machined should know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRequest {
    /// The machine name: the pod name (machined requires a valid hostname).
    pub name: String,
    /// The pod UUID, used as the machine ID.
    pub uuid: [u8; 16],
    /// The pod init.
    pub leader_pid: u32,
    /// The pod's root directory on the host (absolute).
    pub root_directory: PathBuf,
    /// `appc-pod`.
    pub service: String,
    /// `container`.
    pub class: String,
}

impl MachineRequest {
    /// A pod as a `container` machine of service `appc-pod`.
    pub fn pod(name: &str, uuid: [u8; 16], leader_pid: u32, root_directory: PathBuf) -> Self {
        MachineRequest {
            name: name.to_owned(),
            uuid,
            leader_pid,
            root_directory,
            service: "appc-pod".to_owned(),
            class: "container".to_owned(),
        }
    }
}

async fn manager<'c>(
    conn: &'c zbus::Connection,
    machine: &str,
) -> Result<ManagerProxy<'c>, MachineError> {
    let proxy = ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await;
    proxy.map_err(|source| MachineError::Proxy {
        machine: machine.to_owned(),
        source,
    })
}

/// Registers the pod with machined (`RegisterMachineWithNetwork`, no network interfaces yet);
/// its unit is the one its leader runs in. Returns the machine's object path.
pub async fn register(
    conn: &zbus::Connection,
    req: &MachineRequest,
) -> Result<String, MachineError> {
    let machine = req.name.as_str();
    if !req.root_directory.is_absolute() {
        return Err(MachineError::RelativeRoot {
            machine: machine.to_owned(),
            path: req.root_directory.clone(),
        });
    }
    let Some(root) = req.root_directory.to_str() else {
        return Err(MachineError::NonUtf8Root {
            machine: machine.to_owned(),
            path: req.root_directory.clone(),
        });
    };
    let manager = manager(conn, machine).await?;
    let path = manager
        .register_machine_with_network(
            machine.to_owned(),
            req.uuid.to_vec(),
            req.service.clone(),
            req.class.clone(),
            req.leader_pid,
            root.to_owned(),
            Vec::new(),
        )
        .await
        .map_err(|source| MachineError::Register {
            machine: machine.to_owned(),
            leader: req.leader_pid,
            source,
        })?;
    Ok(path.as_str().to_owned())
}

/// Terminates machine `name` (machined stops its unit, killing its processes). Idempotent: a
/// machine that does not exist is success.
pub async fn terminate(conn: &zbus::Connection, name: &str) -> Result<(), MachineError> {
    let manager = manager(conn, name).await?;
    match manager.terminate_machine(name.to_owned()).await {
        Ok(()) => Ok(()),
        Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_MACHINE) => Ok(()),
        Err(source) => Err(MachineError::Terminate {
            machine: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults() {
        let req = MachineRequest::pod("web", [1; 16], 42, PathBuf::from("/var/lib/appc/x"));
        assert_eq!(req.service, "appc-pod");
        assert_eq!(req.class, "container");
        assert_eq!(req.uuid, [1; 16]);
    }
}
