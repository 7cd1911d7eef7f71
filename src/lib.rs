//! appc-pod: a systemd-integrated pod manager for the App Container (appc) specification v0.8.11.
//!
//! Module map (one module per spec concern, see `README.md`):
//! - [`schema`]: spec/types.md and the manifest parts of spec/aci.md and spec/pods.md.
//! - `cli`: the `appcctl` user surface (in the binary crate).
//! - [`sys`]: the only place that may hold `unsafe` code and raw syscalls.

pub mod aci;
pub mod cgroup;
pub mod cli;
pub mod discovery;
pub mod exec;
pub mod fetch;
pub mod metadata;
pub mod net;
pub mod pod;
pub mod schema;
pub mod store;
pub mod sys;
pub mod systemd;
pub mod trust;
