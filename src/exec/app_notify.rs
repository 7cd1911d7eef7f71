//! Apps that speak sd_notify themselves. An image annotated
//! `appc.io/executor/supports-systemd-notify=true` says its app reports readiness with
//! sd_notify(3) (rkt honoured the same annotation). When the pod runs under a `Type=notify` unit,
//! each such app gets a notify socket of its own, bound by appcctl in the pod dir and mounted at
//! [`DIR_IN_APP`] in the app's root, with `NOTIFY_SOCKET` pointing at it; the pod then reports
//! `READY=1` to its unit only once every such app did. Their `STATUS=` lines are passed on,
//! prefixed with the app's name. Without a notify socket of our own (not `Type=notify`) the
//! annotation changes nothing: readiness means "started", as for every other app.
//!
//! One socket per app, rather than one for the pod, tells the apps apart without credentials
//! (their pids live in the pod's pid namespace, which the host's view would have to map).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::schema::ImageManifest;
use crate::systemd::notify::{Notify, notify};

use super::plan::{AppPlan, InitPlan};
use super::volumes::MountPlan;

/// The image annotation an app declares sd_notify support with.
pub const ANNOTATION: &str = "appc.io/executor/supports-systemd-notify";
/// Where the app's notify socket directory appears in its root (nspawn uses `/run/host/notify`).
pub const DIR_IN_APP: &str = "/run/host/notify";
const SOCKET_NAME: &str = "notify";
/// The mount's volume name: not an AC Name (no `_` allowed there), so no pod volume has it.
const VOLUME: &str = "appc_notify";
/// How often the wait re-checks that the pod still runs.
const POLL: Duration = Duration::from_millis(100);

/// Whether `image`'s app reports readiness itself and the pod has a unit to report to.
pub fn wanted(image: &ImageManifest) -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some() && image.annotations.get(ANNOTATION) == Some("true")
}

/// Gives `app` its notify directory (mounted read-write into its root) and `NOTIFY_SOCKET`.
pub fn add_to_plan(app: &mut AppPlan, pod_dir: &Path) {
    app.mounts.push(MountPlan {
        volume: VOLUME.to_owned(),
        source: host_dir(pod_dir, &app.name),
        target: DIR_IN_APP.to_owned(),
        read_only: false,
        recursive: false,
        is_file: false,
    });
    app.env.retain(|kv| !kv.starts_with("NOTIFY_SOCKET="));
    app.env
        .push(format!("NOTIFY_SOCKET={DIR_IN_APP}/{SOCKET_NAME}"));
}

/// The apps of `plan` that [`add_to_plan`] gave a notify socket.
pub fn apps_in(plan: &InitPlan) -> Vec<String> {
    plan.apps
        .iter()
        .filter(|a| a.mounts.iter().any(|m| m.volume == VOLUME))
        .map(|a| a.name.clone())
        .collect()
}

fn host_dir(pod_dir: &Path, app: &str) -> PathBuf {
    pod_dir.join("notify").join(app)
}

/// The bound sockets of the apps that report readiness themselves.
#[derive(Debug, Default)]
pub struct AppSockets {
    sockets: Vec<(String, UnixDatagram)>,
}

impl AppSockets {
    /// Binds a socket for each of `apps` before the pod starts, so none of their messages is
    /// lost. Any user may send (the app may not run as root); the directory is the pod's.
    pub fn bind(pod_dir: &Path, apps: &[String]) -> io::Result<AppSockets> {
        let mut sockets = Vec::new();
        for app in apps {
            let dir = host_dir(pod_dir, app);
            fs::create_dir_all(&dir)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
            let path = dir.join(SOCKET_NAME);
            let _ = fs::remove_file(&path); // a previous run's socket
            let socket = UnixDatagram::bind(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
            socket.set_read_timeout(Some(POLL))?;
            sockets.push((app.clone(), socket));
        }
        Ok(AppSockets { sockets })
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Waits until every app sent `READY=1`, passing their `STATUS=` on; gives up when the pod
    /// init exits first (the pod failed: the caller reports that). Returns whether all are ready.
    pub fn wait_ready(&self, init: &mut Child) -> bool {
        let mut waiting: Vec<&(String, UnixDatagram)> = self.sockets.iter().collect();
        let mut buf = vec![0u8; 4096];
        while !waiting.is_empty() {
            if matches!(init.try_wait(), Ok(Some(_)) | Err(_)) {
                return false;
            }
            waiting.retain(|(app, socket)| !read_message(app, socket, &mut buf));
        }
        true
    }

    /// Keeps reading the sockets for the rest of the pod's life, on a thread of its own:
    /// later `STATUS=` lines are passed on, and clients that wait for their message to be read
    /// (`sd_notify_barrier(3)`, which `systemd-notify` uses) are not left hanging. The passed
    /// barrier fd is closed by the kernel as we read without room for it.
    pub fn relay_in_background(self) {
        if self.sockets.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                for (app, socket) in &self.sockets {
                    read_message(app, socket, &mut buf);
                }
            }
        });
    }
}

/// Reads one message of `app` (waiting at most one poll interval); true when it said `READY=1`.
/// Datagrams of several lines carry several assignments, as sd_notify(3) sends them.
fn read_message(app: &str, socket: &UnixDatagram, buf: &mut [u8]) -> bool {
    let Ok(n) = socket.recv(buf) else {
        return false;
    };
    let mut ready = false;
    for line in String::from_utf8_lossy(&buf[..n]).lines() {
        if line == "READY=1" {
            ready = true;
        } else if let Some(status) = line.strip_prefix("STATUS=") {
            let _ = notify(&[Notify::Status(&format!("{app}: {status}"))]); // best effort
        }
    }
    ready
}
