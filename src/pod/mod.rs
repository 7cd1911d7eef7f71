//! Pods on disk (spec/pods.md; reference/rkt.md §2.6, §2.10, §2.11, §1.4; STYLE.md §3.3 rule 12).
//! No process is started here: the executor comes later and uses this module's state and lock.
//!
//! Layout under the data dir (`--dir`, default `/var/lib/appc`):
//!
//! ```text
//! pods/<uuid>/pod.json     the reified pod manifest, canonical JSON (written once, at create)
//! pods/<uuid>/state.json   PodRecord: name, uuid, state, times, init pid, app exit codes, net
//! pods/<uuid>/lock         flock: exclusive while the state changes and for a running pod's life
//! pods/names/<name>        symlink to ../<uuid>; a name is unique among live pods
//! pods/names.lock          flock serializing name claims and reclaims
//! pods/trash/<uuid>        pods being deleted (renamed here first, so a delete is atomic)
//! ```
//!
//! # Rules implemented
//!
//! - **State is an enum with one transition table** ([`transition`]), persisted as `state.json`
//!   by write-temp + fsync + rename + fsync(dir), under the pod's exclusive flock (rule 12).
//!   A kill -9 at any point leaves either the old or the new file, plus at most a `.tmp-*`
//!   leftover that [`PodStore::list`] ignores and [`PodStore::gc`] removes.
//! - **Creation is invisible until complete**: `state.json` is written last; a pod dir without
//!   it is a half-created embryo, skipped by `list` and removed by `gc` once its lock is free.
//! - **Liveness comes from the flock, as in rkt** (§2.6): the executor holds the pod's lock for
//!   the pod's lifetime, and the kernel drops a flock when its holder dies, so a `Running` record
//!   whose lock nobody holds belongs to a runner that crashed (kill -9, OOM, reboot) and is
//!   reported as `Exited`. A PID file could be recycled; a flock cannot lie.
//! - **Names** (rkt lesson 1: pods had no human names) are symlinks created with `symlinkat`,
//!   which fails atomically when the name exists. A name whose pod is gone or `Garbage` is
//!   reclaimed by symlink-to-temp + rename, under `names.lock` so two reclaimers cannot both win.
//! - **GC** (§2.11): exited pods past the grace period are marked `Garbage`, garbage pods are
//!   deleted, prepared pods past `expire_prepared` are deleted, and a pod whose lock is held is
//!   never touched. Deletion renames into `trash/` first, then removes the tree.

pub mod compose;
pub(crate) mod fsio;
mod gc;
mod state;
mod store;

use std::io;
use std::path::PathBuf;

pub use gc::GcReport;
pub use state::{PodRecord, PodState, transition};
pub use store::{Pod, PodInfo, PodLock, PodStore};

use crate::schema::{AcName, PodUuid};

/// Everything that can go wrong with pods on disk; messages name the pod or path involved.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("pod name {:?} is taken by {state} pod {uuid}; pick another --name or remove it", name.as_str())]
    NameTaken {
        name: AcName,
        uuid: PodUuid,
        state: PodState,
    },
    #[error("cannot derive a pod name from {from:?}; give one with --name")]
    NoName { from: String },
    #[error("no pod matches {query:?} (see `appcctl list`)")]
    NotFound { query: String },
    #[error("{query:?} matches {count} pods; give more of the uuid")]
    Ambiguous { query: String, count: usize },
    #[error("uuid prefix {query:?} is too short; give at least 4 characters")]
    PrefixTooShort { query: String },
    #[error("pod {uuid}: cannot go from {from} to {to}")]
    InvalidTransition {
        uuid: PodUuid,
        from: PodState,
        to: PodState,
    },
    #[error("pod {uuid} is {state}; stop it before removing it")]
    CannotRemove { uuid: PodUuid, state: PodState },
    #[error("pod {uuid} is in use (its lock is held); stop it or wait for it")]
    Busy { uuid: PodUuid },
    #[error("the lock given for pod {uuid} belongs to pod {other}")]
    WrongLock { uuid: PodUuid, other: PodUuid },
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> PodError {
    let path = path.into();
    move |source| PodError::Io { op, path, source }
}

/// Unix time now, in seconds.
pub fn now() -> i64 {
    crate::store::now()
}
