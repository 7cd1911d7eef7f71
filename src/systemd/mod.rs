//! systemd integration over D-Bus, the way systemd-nspawn does it (DESIGN.md "Process model",
//! STYLE.md §3.3 rule 7): the pod becomes a transient scope `appc-<name>.scope` in
//! `machine.slice` and is registered with machined, so `systemctl` and `machinectl` see it.
//!
//! - [`unit_name`]: `systemd-escape` semantics and the pod's scope name.
//! - [`detect`]: is systemd PID 1, which unit do we run in (`--keep-unit`).
//! - [`scope`]: transient scope units (`StartTransientUnit`, `AbandonScope`, `KillUnit`).
//! - [`machine`]: machined registration (`RegisterMachineWithNetwork`, `TerminateMachine`).
//! - [`cgroup`]: pod [`crate::cgroup::Resources`] as scope properties.
//!
//! The proxies come from `zbus_systemd`, generated from systemd's own interface XML; `dbus/`
//! holds the XML of every interface we call, dumped from the systemd we test against, and
//! `tests/systemd_dbus.rs` checks our calls against the live introspection.
//!
//! The calls are async (zbus on tokio). `appcctl` stays synchronous and builds a current-thread
//! runtime only around D-Bus work:
//!
//! ```no_run
//! use appc_pod::systemd::{self, scope};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = systemd::runtime()?;
//! rt.block_on(async {
//!     let conn = systemd::connect().await?;
//!     let unit = scope::allocate(&conn, &scope::ScopeRequest::for_pod("web", vec![4242])).await?;
//!     println!("pod in {}", unit.name);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

pub mod cgroup;
pub mod detect;
pub mod journal;
pub mod machine;
pub mod notify;
pub mod scope;
pub mod unit_name;

use zbus::DBusError;

/// Why we could not reach the system bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot build the tokio runtime for D-Bus calls")]
    Runtime { source: std::io::Error },
    #[error(
        "cannot connect to the system bus (is dbus running? with systemd as PID 1 it is \
         dbus.service; without it use the cgroupfs manager)"
    )]
    Connect { source: zbus::Error },
}

/// The current-thread runtime `appcctl` builds for its D-Bus calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, BusError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BusError::Runtime { source })
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`).
/// Must run inside a tokio runtime, see [`runtime`].
pub async fn connect() -> Result<zbus::Connection, BusError> {
    zbus::Connection::system()
        .await
        .map_err(|source| BusError::Connect { source })
}

/// The D-Bus error name of a failed call (`org.freedesktop.systemd1.NoSuchUnit`, …), if the
/// failure was an error reply.
pub(crate) fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(fdo) => Some(fdo.name().as_str().to_owned()),
        _ => None,
    }
}
