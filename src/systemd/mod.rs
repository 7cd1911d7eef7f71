//! systemd integration over D-Bus, the way systemd-nspawn does it (STYLE.md §3.3 rule 7).
//!
//! - [`unit_name`]: `systemd-escape` semantics and the pod's scope name.
//! - [`detect`]: is systemd PID 1, which unit does this process run in.
//! - [`scope`]: transient scope units (`StartTransientUnit`, `AbandonScope`, `KillUnit`).
//! - [`machine`]: machined registration (`RegisterMachineWithNetwork`, `TerminateMachine`).
//! - [`cgroup`]: the systemd [`crate::cgroup::CgroupManager`] side.

pub mod cgroup;
pub mod detect;
pub mod machine;
pub mod scope;
pub mod unit_name;
