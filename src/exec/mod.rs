//! The executor: spec/ace.md (Filesystem, Volume, Apps perspective, Isolators, Lifecycle),
//! spec/pods.md (P1, P5) and spec/OS-SPEC.md; requirements F1–F7, V1–V11, X1–X6, G1–G3,
//! N1 in appc-requirements.md §2.4–2.6.
//!
//! Submodules:
//! - [`inroot`]: every path inside an app root, resolved with openat2(RESOLVE_IN_ROOT);
//! - [`user`]: X5/X6 user and group resolution from the image's own files;
//! - [`volumes`]: V1–V11, from the reified pod manifest to bind mounts;
//! - [`security`] and [`seccomp`]: capabilities, no_new_privs, oom_score_adj and syscall
//!   filters, with the G3 report.

pub mod cgroups;
pub mod control;
pub mod init;
pub mod inroot;
pub mod launch;
pub mod plan;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod sync;
pub mod user;
pub mod volumes;
