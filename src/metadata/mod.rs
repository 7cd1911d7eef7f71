//! The metadata service of spec/ace.md (appc-requirements.md §2.5.9, MD1–MD6; wire details
//! pinned by the ACE validator, §5.1): pod and app metadata, the HMAC identity endpoints, and the
//! registration of running pods. The binary is `appc-metadata`; `appcctl run` registers its pods.
//!
//! # Listeners
//!
//! `appc-metadata.socket` hands the service two listeners (`LISTEN_FDS`, see [`activation`]):
//!
//! - a unix socket, `/run/appc/metadata.sock` (mode 0600, root only; connections from other
//!   uids are dropped as well), for registration;
//! - TCP port 18112, for pods: the 8 endpoints under `/acMetadata/v1/` (and the same under
//!   `/<token>/acMetadata/v1/`).
//!
//! Without `LISTEN_FDS` (no systemd) the service binds both itself ([`server::bind_standalone`]).
//!
//! # Who is asking (MD3)
//!
//! A request is answered for exactly one pod, found from the request itself:
//!
//! - a path that starts with a token (`/<token>/acMetadata/v1/…`) is the pod registered with
//!   that token (unknown token: 404);
//! - otherwise the source address of the TCP connection is the pod registered with that address
//!   on the pod network (unknown address: 403).
//!
//! There is no way to name another pod, so a pod can read only its own data. `pod/hmac/verify`
//! is open to every caller by design (rkt's was too): third parties check a pod's identity with
//! it, and it reveals nothing but "valid" or "invalid".
//!
//! # `AC_METADATA_URL` (X1: set for every app and event handler)
//!
//! Computed by `appcctl` before the pod starts ([`client::Access`]):
//!
//! - pods on the default (bridge) network: `http://<bridge gateway IP>:18112`; the pod is known
//!   by the address it has there;
//! - `--net=host`: `http://127.0.0.1:18112/<token>`, with a fresh 256-bit random token per run
//!   (MD3: ≥128 bits, not the pod UUID);
//! - `--net=none`: the same token URL, which is unreachable from the pod's empty network
//!   namespace (only `lo`): the variable is set because the spec requires it, but a pod without
//!   a network has no metadata service.
//!
//! `APPC_METADATA_PORT` changes the port in the URL (tests run a service on another port).
//!
//! # Registration protocol
//!
//! HTTP/1.1 over the unix socket (`curl --unix-socket /run/appc/metadata.sock http://mds/v1/pods`
//! works for inspection). `appcctl` connects to it after the pod init is placed and its network
//! is set up, before the apps start; connecting activates the service.
//!
//! - `PUT /v1/pods/<uuid>` with an `application/json` body ([`Registration`]):
//!   ```json
//!   {"manifest": {…the reified pod manifest…},
//!    "apps": {"<app name>": {"imageId": "sha512-…", "imageManifest": "<the image manifest as stored>"}},
//!    "addresses": ["10.88.0.5"],
//!    "token": "<64 hex digits>",
//!    "init": {"pid": 4242, "startTime": 123456}}
//!   ```
//!   `addresses` (the pod's IPs on the pod network) may be empty, `token` and `init` may be
//!   missing. Answers `204` once the registration is on disk, or `400` with a one-line reason.
//!   A new registration of an address held by another pod takes it over (the other pod is
//!   gone: addresses are unique among running pods).
//! - `DELETE /v1/pods/<uuid>`: `204`, also when the pod was not registered.
//! - `GET /v1/pods`: the registered pods (uuid, apps, addresses, whether a token is set).
//!
//! When the socket is missing or refuses, `appcctl run` goes on without metadata (a debug
//! message); a service that answers with an error gets a warning.
//!
//! # Persistence
//!
//! Under the state directory (default `/var/lib/appc/metadata`, 0700): `hmac.key` (64 random
//! bytes, 0600, created once and never replaced) and `pods/<uuid>.json` (each registration as
//! received), all written as temp + fsync + rename. A restarted service serves the pods that were
//! registered, so a crash of the service costs running pods nothing, and signatures stay valid.
//! A registration whose pod died without unregistering (appcctl killed) is harmless: its token
//! is unguessable and its addresses go to the next pod that registers them; registrations that
//! name their init process are dropped at start-up and at each registration once that process
//! is gone.
//!
//! # Identity (MD6)
//!
//! `sign` returns base64(HMAC-SHA512(key, raw 16-byte pod UUID ‖ content)), rkt's layout;
//! `verify` recomputes it for the `uuid` given, in constant time ([`identity`]).
//!
//! Submodules: [`registry`] (registrations, precomputed answers, persistence), [`identity`],
//! [`routes`] (the two HTTP surfaces), [`activation`] (`LISTEN_FDS`), [`server`], [`client`]
//! (`appcctl`'s side).

pub mod activation;
pub mod client;
pub mod identity;
pub mod registry;
pub mod routes;
pub mod server;

mod persist;

use std::path::PathBuf;

pub use registry::{AppImage, InitProcess, Registration, Registry};

/// The TCP port pods reach the service on.
pub const DEFAULT_PORT: u16 = 18112;
/// The registration socket.
pub const DEFAULT_SOCKET: &str = "/run/appc/metadata.sock";
/// Where the key and the registrations live.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/appc/metadata";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "HMAC key {}: {reason}; remove it to create a new one (signatures made so far become invalid)",
        path.display()
    )]
    Key { path: PathBuf, reason: String },
    #[error("registration of pod {pod}: {reason}")]
    Invalid { pod: String, reason: String },
    #[error("app {app}: cannot register its image with the metadata service: {reason}")]
    Image { app: String, reason: String },
    #[error("socket activation: {0}")]
    Activation(String),
    #[error("cannot listen on {what}: {source}")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    #[error("the metadata service at {} is not running ({source})", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the metadata service at {}: {reason}", socket.display())]
    Protocol { socket: PathBuf, reason: String },
}

fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> MetadataError {
    let path = path.into();
    move |source| MetadataError::Io { op, path, source }
}
