//! The executor: spec/ace.md (Filesystem, Volume, Apps perspective, Isolators, Lifecycle),
//! spec/pods.md (P1, P5) and spec/OS-SPEC.md; requirements F1–F7, V1–V11, X1–X6, G1–G3,
//! N1 in appc-requirements.md §2.4–2.6.
//!
//! # Process model (DESIGN.md "Process model", STYLE.md rule 6)
//!
//! ```text
//! appcctl run ─┬─ plan.json, isolators.json, empty volumes, fresh upper/work dirs (plan, launch)
//!              ├─ cgroups appc/<uuid>/{_init,<app>...}                            (cgroups)
//!              ├─ appc-init copied into a sealed memfd, spawned as PID 1 of new
//!              │  PID/mount/UTS/IPC(/net) namespaces, with the pod's flock fd      (launch, sys)
//!              ├─ sync 1: init moved into its cgroup → Go                          (sync)
//!              │    appc-init: mounts private, lo up, hostname; per app: unshare a
//!              │    mount namespace, mount overlayfs + /proc /sys /dev + volumes,
//!              │    pivot_root, keep the namespace fd                               (init, rootfs)
//!              │    pre-start handlers, then each app: cgroup → setns(root) → caps
//!              │    → [seccomp] → user → [no_new_privs, seccomp] → chdir → execve   (process)
//!              ├─ sync 2: Started | Failed
//!              └─ waits; SIGINT/SIGTERM forwarded as SIGTERM to the init; records Exited
//!    appc-init supervises: reaps zombies, post-stop after each app, stops the rest when one
//!    fails, SIGKILLs after the stop timeout, exits with the first failure's status.
//! ```
//!
//! The mounts of a pod exist only in the pod's own mount namespaces, so they disappear with
//! its last process: nothing needs unmounting after `stop`, a crash or a reboot. The flock is
//! shared by appcctl and the init, so a pod is live while either lives (rkt's lock fd).
//!
//! Submodules:
//! - [`plan`]: manifest + images + store → [`plan::InitPlan`] (pure decisions, G3 reports);
//! - [`launch`]: `appcctl`'s side of a run; [`control`]: `stop` and `enter`;
//! - [`init`], [`rootfs`], [`process`]: the pod init, app roots, app processes;
//! - [`cgroups`]: the pod's cgroup tree on the cgroupfs manager;
//! - [`inroot`]: every path inside an app root, resolved with openat2(RESOLVE_IN_ROOT);
//! - [`user`]: X5/X6 user and group resolution from the image's own files;
//! - [`volumes`]: V1–V11, from the reified pod manifest to bind mounts;
//! - [`security`] and [`seccomp`]: capabilities, no_new_privs, oom_score_adj and syscall
//!   filters, with the G3 report.

pub mod app_notify;
pub mod cgroups;
pub mod control;
pub mod init;
pub mod inroot;
pub mod launch;
pub mod manager;
pub mod plan;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod sync;
pub mod user;
pub mod volumes;
