//! The plan (STYLE.md rule 5): everything the pod init needs, computed up front by `appcctl`
//! from the reified pod manifest, the image manifests and the store, and written to
//! `<pod>/plan.json`. The init then only executes; every decision and every error about the
//! manifest is made here, where it can be reported before anything starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::security::{self, SecurityPlan};
use super::volumes::{self, MountPlan};
use crate::cgroup::{IsolatorReport, Resources};
use crate::schema::{App, EventName, ImageManifest, PodManifest, RuntimeApp};
use crate::store::{ImageRecord, Store, layers, tree_rootfs};

/// X1: the PATH every app and event handler starts with.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// X1: `container=<executor name>`, as systemd's container interface expects.
pub const CONTAINER_NAME: &str = "appc-pod";
/// The cgroup leaf of the pod init, beside the apps' (an `_` cannot start an AC Name, so it
/// never clashes with an app; cgroup v2 forbids processes in a cgroup with children).
pub const INIT_CGROUP: &str = "_init";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("app {app}: {source}")]
    Store {
        app: String,
        source: Box<crate::store::StoreError>,
    },
    #[error("app {app}: {source}")]
    Volume {
        app: String,
        source: Box<volumes::VolumeError>,
    },
    #[error("app {app}: {source}")]
    Security {
        app: String,
        source: security::SecurityError,
    },
    #[error("app {app}: the image has no app section and the pod gives none; pass --exec")]
    NoApp { app: String },
    #[error("app {app}: the app has an empty exec; pass --exec")]
    NoExec { app: String },
    #[error("app {app}: exec {exec:?} is not an absolute path (spec/aci.md)")]
    RelativeExec { app: String, exec: String },
    #[error(
        "app {app}: store path {} cannot be an overlayfs lower directory (it contains ':' or ','); use --no-overlay",
        path.display()
    )]
    OverlayPath { app: String, path: PathBuf },
}

/// The whole pod, as the init executes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitPlan {
    pub pod_uuid: String,
    pub pod_name: String,
    pub pod_dir: PathBuf,
    pub hostname: String,
    /// False with `--net=host`: the pod keeps the host's network namespace.
    pub private_network: bool,
    /// The apps' /etc/resolv.conf and /etc/hosts (`crate::net::dns`).
    #[serde(default)]
    pub dns_files: crate::net::DnsFiles,
    /// `--interactive`: the one app gets the terminal as its controlling tty.
    pub interactive: bool,
    /// How long the init waits after SIGTERM to the apps before it SIGKILLs them.
    pub stop_timeout_ms: u64,
    pub apps: Vec<AppPlan>,
}

/// One app: its root, process and security context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    pub name: String,
    pub image_id: String,
    /// Where the root is assembled (`<pod>/apps/<name>/rootfs`).
    pub root_dir: PathBuf,
    pub rootfs: Rootfs,
    pub read_only_rootfs: bool,
    pub exec: Vec<String>,
    /// `NAME=value`, in order (X1, then the image's, then the pod's overrides).
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub group: String,
    pub supplementary_gids: Vec<u32>,
    pub pre_start: Option<Vec<String>>,
    pub post_stop: Option<Vec<String>>,
    pub mounts: Vec<MountPlan>,
    pub security: SecurityPlan,
    /// `cgroup.procs` files the app's processes join (one per hierarchy).
    pub cgroup_procs: Vec<PathBuf>,
    /// The app cgroup's limits: pod and app isolators combined (G1).
    pub resources: Resources,
}

/// How an app's root comes to be (F3, F7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rootfs {
    /// overlayfs: store trees as lower layers (top first, as overlayfs lists them), upper and
    /// work in the pod dir, so every run starts from the clean image (F7).
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A rendered copy already in `root_dir` (`--no-overlay`, whitelists, no overlayfs).
    Copy,
}

/// The inputs of one app's plan.
pub struct AppInputs<'a> {
    pub runtime: &'a RuntimeApp,
    pub image: &'a ImageRecord,
    pub use_overlay: bool,
    pub cgroup_procs: Vec<PathBuf>,
}

/// The effective app section (P4: the pod's replaces the image's).
pub fn effective_app<'a>(runtime: &'a RuntimeApp, image: &'a ImageManifest) -> Option<&'a App> {
    runtime.app.as_ref().or(image.app.as_ref())
}

/// Plans one app; the second value is its G3 report (security and resources).
pub fn plan_app(
    store: &Store,
    pod: &PodManifest,
    pod_dir: &Path,
    input: AppInputs<'_>,
) -> Result<(AppPlan, Vec<IsolatorReport>), PlanError> {
    let name = input.runtime.name.to_string();
    let app = effective_app(input.runtime, &input.image.manifest)
        .ok_or_else(|| PlanError::NoApp { app: name.clone() })?;
    let exec = checked_exec(&name, &app.exec)?;
    let mounts =
        volumes::plan_app_mounts(pod, input.runtime, Some(app), pod_dir).map_err(|source| {
            PlanError::Volume {
                app: name.clone(),
                source: Box::new(source),
            }
        })?;
    let (security, mut reports) =
        security::plan_security(&pod.isolators, &app.isolators).map_err(|source| {
            PlanError::Security {
                app: name.clone(),
                source,
            }
        })?;
    let (resources, resource_reports) = Resources::from_isolators(&pod.isolators, &app.isolators);
    reports.extend(resource_reports);
    let app_dir = app_dir(pod_dir, &name);
    let rootfs = plan_rootfs(store, input.image, &app_dir, input.use_overlay, &name)?;
    let plan = AppPlan {
        image_id: input.image.id.to_string(),
        root_dir: app_dir.join("rootfs"),
        rootfs,
        read_only_rootfs: input.runtime.read_only_root_fs,
        exec,
        env: environment(app, &name),
        working_dir: app
            .working_directory
            .as_ref()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        user: app.user.to_string(),
        group: app.group.to_string(),
        supplementary_gids: app.supplementary_gids.clone(),
        pre_start: handler(app, EventName::PreStart),
        post_stop: handler(app, EventName::PostStop),
        mounts,
        security,
        cgroup_procs: input.cgroup_procs,
        resources,
        name,
    };
    Ok((plan, reports))
}

/// `<pod>/apps/<name>`: the app's root, overlay upper and work dirs.
pub fn app_dir(pod_dir: &Path, app: &str) -> PathBuf {
    pod_dir.join("apps").join(app)
}

fn checked_exec(app: &str, exec: &[String]) -> Result<Vec<String>, PlanError> {
    let first = exec
        .first()
        .ok_or_else(|| PlanError::NoExec { app: app.into() })?;
    if !first.starts_with('/') {
        return Err(PlanError::RelativeExec {
            app: app.into(),
            exec: first.clone(),
        });
    }
    Ok(exec.to_vec())
}

fn handler(app: &App, name: EventName) -> Option<Vec<String>> {
    app.event_handler(name)
        .filter(|h| !h.exec.is_empty())
        .map(|h| h.exec.clone())
}

/// X1 first, then the app's environment, which may override PATH (X3 leaves it open; rkt
/// allowed it, and images such as language runtimes rely on it).
fn environment(app: &App, name: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("AC_APP_NAME".into(), name.into()),
        // The metadata service comes with the networking work; the URL is already set so
        // that apps see the variable the spec requires (X1).
        ("AC_METADATA_URL".into(), "http://127.0.0.1:18112".into()),
        ("container".into(), CONTAINER_NAME.into()),
    ];
    for var in app.environment.iter() {
        let key = var.name.as_str().to_owned();
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = var.value.clone(),
            None => env.push((key, var.value.clone())),
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn plan_rootfs(
    store: &Store,
    image: &ImageRecord,
    app_dir: &Path,
    use_overlay: bool,
    app: &str,
) -> Result<Rootfs, PlanError> {
    let store_err = |source| PlanError::Store {
        app: app.into(),
        source: Box::new(source),
    };
    let stack = layers(store, image).map_err(store_err)?;
    // overlayfs cannot filter, so a pathWhitelist anywhere means a rendered copy (F3).
    if !use_overlay || stack.iter().any(|l| !l.filters.is_empty()) {
        return Ok(Rootfs::Copy);
    }
    let mut lower = Vec::with_capacity(stack.len());
    for layer in stack.iter().rev() {
        let path = tree_rootfs(store, &layer.id);
        if path.to_string_lossy().contains([':', ',']) {
            return Err(PlanError::OverlayPath {
                app: app.into(),
                path,
            });
        }
        lower.push(path);
    }
    Ok(Rootfs::Overlay {
        lower,
        upper: app_dir.join("upper"),
        work: app_dir.join("work"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::decode::decode_value;

    fn app(json: serde_json::Value) -> App {
        decode_value::<App>(&json).unwrap().value
    }

    #[test]
    fn x1_variables_come_first_and_the_image_may_override_path() {
        let a = app(serde_json::json!({
            "exec": ["/bin/web"], "user": "0", "group": "0",
            "environment": [{"name": "PATH", "value": "/opt/bin"}, {"name": "WEB", "value": "1"}]
        }));
        let env = environment(&a, "web-1");
        assert_eq!(
            env,
            [
                "PATH=/opt/bin",
                "AC_APP_NAME=web-1",
                "AC_METADATA_URL=http://127.0.0.1:18112",
                "container=appc-pod",
                "WEB=1"
            ]
        );
    }

    #[test]
    fn exec_must_be_present_and_absolute() {
        assert!(matches!(
            checked_exec("a", &[]),
            Err(PlanError::NoExec { .. })
        ));
        let rel = checked_exec("a", &["bin/web".into()]);
        assert!(matches!(rel, Err(PlanError::RelativeExec { .. })));
        assert_eq!(
            checked_exec("a", &["/w".into(), "x".into()]).unwrap(),
            ["/w", "x"]
        );
    }

    #[test]
    fn event_handlers_are_picked_by_name_and_empty_ones_ignored() {
        let a = app(serde_json::json!({
            "exec": ["/bin/web"], "user": "0", "group": "0",
            "eventHandlers": [{"name": "pre-start", "exec": ["/bin/prep", "x"]}]
        }));
        assert_eq!(
            handler(&a, EventName::PreStart),
            Some(vec!["/bin/prep".into(), "x".into()])
        );
        assert_eq!(handler(&a, EventName::PostStop), None);
    }
}
