//! `appcctl`'s side of running a pod: plan, cgroups, the sealed init, sync, wait, record.
//!
//! The pod's flock is taken first and handed to the init as an inherited descriptor: a
//! flock belongs to the open file description, so the pod counts as live while either
//! `appcctl` or the init lives (rkt's `RKT_LOCK_FD`). A `kill -9` of `appcctl` leaves the pod
//! running, as with rkt; `appcctl stop` and `gc` handle it from there.

use std::fs::File;
use std::io::Seek;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use rustix::fs::{MemfdFlags, SealFlags};

use super::app_notify::{self, AppSockets};
use super::cgroups;
use super::init::AppExit;
use super::manager::{self, Kind, Placement};
use super::plan::{self, AppInputs, InitPlan, Rootfs};
use super::sync::{self, FromInit, ToInit};
use super::volumes;
use crate::cgroup::{IsolatorReport, Outcome};
use crate::net::{DnsOptions, NetMode, NetRequest, PodNet};
use crate::pod::{Pod, PodLock, PodState, PodStore};
use crate::schema::{IsolatorScope, PodManifest};
use crate::store::{CopyOptions, Store, copy_image};

/// Where the init binary is looked for when `APPC_INIT` does not name it: beside `appcctl`
/// (a cargo build, a tarball), then the package's libexec directory.
const INIT_PATHS: [&str; 2] = [
    "/usr/libexec/appc-pod/appc-init",
    "/usr/lib/appc-pod/appc-init",
];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Pod(#[from] crate::pod::PodError),
    #[error(transparent)]
    Store(#[from] Box<crate::store::StoreError>),
    #[error(transparent)]
    Plan(#[from] Box<plan::PlanError>),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error(transparent)]
    Manager(#[from] manager::ManagerError),
    #[error(transparent)]
    Volume(#[from] Box<volumes::VolumeError>),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("pod {pod} is {state}; only a prepared pod can run (prepare a new one)")]
    NotPrepared { pod: String, state: PodState },
    #[error("app {app}: the pod manifest names no image id (it was not reified)")]
    Unresolved { app: String },
    #[error("pod {pod} is being started by another appcctl")]
    Busy { pod: String },
    #[error("cannot {op}: {source}")]
    Io { op: String, source: std::io::Error },
    #[error(
        "cannot find appc-init (looked beside appcctl and in /usr/libexec/appc-pod); set APPC_INIT"
    )]
    NoInit,
    #[error("pod {pod}: {error}")]
    Start {
        pod: String,
        error: String,
        code: Option<i32>,
    },
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let op = op.into();
    move |source| LaunchError::Io { op, source }
}

/// How to run a prepared pod (persisted by `prepare` as `options.json`).
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub hostname: Option<String>,
    pub interactive: bool,
    /// `--net`; with `default`, `config_dir` holds `net.d/`.
    pub net: NetMode,
    /// `--dns*`, `--hosts-entry`.
    pub dns: DnsOptions,
    pub config_dir: PathBuf,
    pub no_overlay: bool,
    pub stop_timeout_ms: u64,
    /// Print the G3 isolator report to stderr.
    pub debug: bool,
    /// Under systemd: the slice of the pod's scope (`None`: machine.slice).
    pub slice: Option<String>,
    /// Under systemd: keep appcctl's own unit instead of allocating a scope.
    pub keep_unit: bool,
}

/// The outcome of a pod run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The first failing app's status, 0 when all succeeded.
    pub exit_code: i32,
}

/// Runs a prepared pod in the foreground until it exits.
pub fn run_pod(
    store: &Store,
    pods: &PodStore,
    pod: &Pod,
    opts: &LaunchOptions,
) -> Result<RunOutcome, LaunchError> {
    let lock = take_prepared(pods, pod)?;
    let manifest = pod.manifest()?;
    // The address is taken before the plan, which names it; dropped on any error below, the
    // PodNet gives it back.
    let mut net = PodNet::prepare(&NetRequest {
        mode: opts.net,
        config_dir: &opts.config_dir,
        uuid: pod.uuid(),
        pod_dir: pod.dir(),
        manifest: &manifest,
    })?;
    let kind = Kind::detect(opts.keep_unit);
    let (plan, mut reports) = make_plan(store, pod, &manifest, opts, &kind, &net)?;
    manager::adjust_reports(&kind, plan.apps.len(), &mut reports);
    write_reports(pod, &reports)?;
    if opts.debug {
        let (name, uuid) = (&plan.pod_name, &plan.pod_uuid);
        tracing::debug!(appc_pod = %name, appc_pod_uuid = %uuid, "resources managed by {kind:?}");
        for (_, r) in &reports {
            tracing::debug!(appc_pod = %name, appc_pod_uuid = %uuid, "{r}");
        }
    }
    let mut placement = Placement::prepare(kind, pod.uuid(), &manifest, &plan)?;
    placement.set_slice(opts.slice.clone());
    let result = start_and_wait(pods, pod, &lock, &plan, &manifest, &mut placement, &mut net);
    placement.release(pod.uuid());
    result
}

fn take_prepared(pods: &PodStore, pod: &Pod) -> Result<PodLock, LaunchError> {
    let name = pod.label();
    let lock = pod
        .try_lock_exclusive()?
        .ok_or_else(|| LaunchError::Busy { pod: name.clone() })?;
    let state = pods.info(pod)?.state;
    if !state.can_run() {
        return Err(LaunchError::NotPrepared { pod: name, state });
    }
    Ok(lock)
}

type Reports = Vec<(Option<String>, IsolatorReport)>;

fn make_plan(
    store: &Store,
    pod: &Pod,
    manifest: &PodManifest,
    opts: &LaunchOptions,
    kind: &Kind,
    net: &PodNet,
) -> Result<(InitPlan, Reports), LaunchError> {
    volumes::create_empty_volumes(manifest, pod.dir()).map_err(Box::new)?;
    let use_overlay = !opts.no_overlay && overlay_usable(pod.dir());
    let mut apps = Vec::new();
    let mut reports = Vec::new();
    for rt in &manifest.apps {
        let id = rt
            .image
            .id
            .as_ref()
            .ok_or_else(|| LaunchError::Unresolved {
                app: rt.name.to_string(),
            })?;
        let image = store.resolve(id.as_ref()).map_err(Box::new)?;
        let input = AppInputs {
            runtime: rt,
            image: &image,
            use_overlay,
            cgroup_procs: if kind.per_app_cgroups() {
                cgroups::app_procs_files(pod.uuid(), rt.name.as_str())?
            } else {
                Vec::new() // the apps stay in the pod's unit with the init
            },
        };
        let (mut app, r) = plan::plan_app(store, manifest, pod.dir(), input).map_err(Box::new)?;
        if app_notify::wanted(&image.manifest) {
            app_notify::add_to_plan(&mut app, pod.dir());
        }
        prepare_app_dirs(store, &image, &app)?;
        reports.extend(r.into_iter().map(|r| (Some(app.name.clone()), r)));
        apps.push(app);
    }
    let label = pod.label();
    let hostname = opts.hostname.clone().unwrap_or_else(|| label.clone());
    let address = net.address().map(|a| a.ip);
    let dns_files = crate::net::dns::write_pod_files(
        pod.dir(),
        &opts.dns,
        net.dns_config(),
        &hostname,
        address,
    )?;
    let plan = InitPlan {
        pod_uuid: pod.uuid().to_string(),
        pod_name: label,
        pod_dir: pod.dir().to_owned(),
        hostname,
        private_network: opts.net != NetMode::Host,
        dns_files,
        interactive: opts.interactive,
        stop_timeout_ms: opts.stop_timeout_ms,
        apps,
    };
    let json = serde_json::to_vec_pretty(&plan).map_err(|e| io("encode the plan")(e.into()))?;
    pod.write_file("plan.json", &json)?;
    Ok((plan, reports))
}

/// overlayfs is usable when the kernel has it and the pod dir is not itself on overlayfs
/// (an upper dir on overlayfs is refused by the kernel; this happens in containers).
fn overlay_usable(pod_dir: &Path) -> bool {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    let known = std::fs::read_to_string("/proc/filesystems")
        .map(|t| t.lines().any(|l| l.trim_end().ends_with("\toverlay")))
        .unwrap_or(false);
    let on_overlay = rustix::fs::statfs(pod_dir)
        .map(|s| s.f_type == OVERLAYFS_SUPER_MAGIC)
        .unwrap_or(false);
    known && !on_overlay
}

/// A fresh root every run (F7): upper/work recreated, or the copy rendered anew.
fn prepare_app_dirs(
    store: &Store,
    image: &crate::store::ImageRecord,
    app: &plan::AppPlan,
) -> Result<(), LaunchError> {
    let app_dir = app.root_dir.parent().unwrap_or(&app.root_dir).to_owned();
    let _ = crate::pod::fsio::remove_tree(&app_dir);
    std::fs::create_dir_all(&app_dir).map_err(io(format!("create {}", app_dir.display())))?;
    match &app.rootfs {
        Rootfs::Overlay { upper, work, .. } => {
            for d in [&app.root_dir, upper, work] {
                std::fs::create_dir(d).map_err(io(format!("create {}", d.display())))?;
            }
        }
        Rootfs::Copy => {
            let opts = CopyOptions {
                rootfs_only: true,
                with_dependencies: true,
            };
            copy_image(store, image, &app.root_dir, opts).map_err(Box::new)?;
        }
    }
    Ok(())
}

/// `isolators.json`: the G3 report `appcctl status` shows.
fn write_reports(pod: &Pod, reports: &Reports) -> Result<(), LaunchError> {
    let rows: Vec<serde_json::Value> = reports
        .iter()
        .map(|(app, r)| {
            let (outcome, detail) = match &r.outcome {
                Outcome::Enforced => ("enforced", None),
                Outcome::Changed(d) => ("changed", Some(d.clone())),
                Outcome::Ignored(d) => ("ignored", Some(d.clone())),
            };
            let app = match r.scope {
                IsolatorScope::Pod => None,
                IsolatorScope::App => app.clone(),
            };
            serde_json::json!({"app": app, "isolator": r.name, "outcome": outcome, "detail": detail})
        })
        .collect();
    let json = serde_json::to_vec_pretty(&rows).map_err(|e| io("encode the report")(e.into()))?;
    Ok(pod.write_file("isolators.json", &json)?)
}

fn start_and_wait(
    pods: &PodStore,
    pod: &Pod,
    lock: &PodLock,
    plan: &InitPlan,
    manifest: &PodManifest,
    placement: &mut Placement,
    net: &mut PodNet,
) -> Result<RunOutcome, LaunchError> {
    let forward = block_stop_signals()?;
    let (ours, theirs) = sync::channel().map_err(io("create the init channel"))?;
    let init = sealed_init()?;
    let notifiers = AppSockets::bind(pod.dir(), &app_notify::apps_in(plan))
        .map_err(io("bind the apps' notify sockets"))?;
    let mut child = spawn_init(&init, pod, plan, &theirs, lock)?;
    drop(theirs);
    let pid = child.id();
    let placed = placement.place_init(pid, manifest, plan);
    pods.update(pod, lock, |r| {
        r.init_pid = Some(pid as i32);
        r.init_start = process_start_time(pid);
        r.unit = placement.unit().map(str::to_owned);
        r.net = net.record();
        r.advance(PodState::Running, crate::pod::now())
    })?;
    // The network is wired once the init is placed and before it starts anything (sync 1).
    let ready = placed
        .map_err(LaunchError::from)
        .and_then(|()| Ok(net.attach(pid)?));
    if let Err(e) = ready {
        let _ = child.kill(); // best effort: the init has not started anything yet
        let _ = child.wait();
        finish(pods, pod, lock, plan, net)?;
        return Err(e);
    }
    let go = ToInit::Go {
        journal: logs_to_journal(plan.interactive),
        unit: placement.unit().map(str::to_owned),
    };
    sync::send_msg(&ours, &go).map_err(io("start the pod init"))?;
    let started = sync::recv_msg::<FromInit>(&ours).map_err(io("wait for the pod init"))?;
    spawn_forwarder(forward, pid);
    let ready = matches!(started, Some(FromInit::Started { .. }))
        && (notifiers.is_empty() || notifiers.wait_ready(&mut child));
    notify_started(plan, started.as_ref(), ready);
    notifiers.relay_in_background();
    let status = child.wait().map_err(io("wait for the pod init"))?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    finish(pods, pod, lock, plan, net)?;
    match started {
        Some(FromInit::Started { .. }) => Ok(RunOutcome { exit_code: code }),
        Some(FromInit::Failed { error, code }) => Err(LaunchError::Start {
            pod: plan.pod_name.clone(),
            error,
            code,
        }),
        None => Err(LaunchError::Start {
            pod: plan.pod_name.clone(),
            error: format!("the pod init died during setup ({status})"),
            code: None,
        }),
    }
}

/// Apps log to journald when systemd runs the host and journald listens, unless the pod is
/// interactive (the terminal is the app's). On a terminal, `appcctl run` echoes what they
/// log there too (`cli::logs::echo_running_pod`).
pub fn logs_to_journal(interactive: bool) -> bool {
    !interactive
        && crate::systemd::detect::systemd_is_pid1()
        && crate::systemd::journal::journald_available()
}

/// sd_notify for a `Type=notify` unit running the pod: ready once every app started and every
/// app that reports readiness itself ([`app_notify`]) said so (best effort: a unit that is not
/// Type=notify simply has no socket).
fn notify_started(plan: &InitPlan, started: Option<&FromInit>, ready: bool) {
    use crate::systemd::notify::{Notify, notify};
    let status = match started {
        Some(FromInit::Started { apps }) => {
            let names: Vec<&str> = apps.iter().map(|(n, _)| n.as_str()).collect();
            format!("pod {}: running {}", plan.pod_name, names.join(", "))
        }
        _ => format!("pod {}: failed to start", plan.pod_name),
    };
    let mut messages = vec![Notify::Status(&status)];
    if ready {
        messages.insert(0, Notify::Ready);
    }
    if let Err(e) = notify(&messages) {
        tracing::warn!(appc_pod = %plan.pod_name, appc_pod_uuid = %plan.pod_uuid, "{e}");
    }
}

/// Releases the pod's network and marks the pod exited with the apps' statuses.
fn finish(
    pods: &PodStore,
    pod: &Pod,
    lock: &PodLock,
    plan: &InitPlan,
    net: &mut PodNet,
) -> Result<(), LaunchError> {
    if let Err(e) = net.teardown() {
        eprintln!(
            "appcctl: warning: pod {}: cannot release its network ({e}); `appcctl gc` retries",
            plan.pod_name
        );
    }
    let exits = read_exits(pod.dir(), plan.apps.iter().map(|a| a.name.as_str()));
    pods.update(pod, lock, |r| {
        for (app, exit) in &exits {
            r.app_exit_codes.insert(app.clone(), exit.exit_code);
        }
        r.advance(PodState::Exited, crate::pod::now())
    })?;
    Ok(())
}

/// The start time of `pid` in clock ticks after boot (field 22 of /proc/PID/stat).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count after the last ')'.
    stat[stat.rfind(')')? + 2..]
        .split(' ')
        .nth(19)?
        .parse()
        .ok()
}

/// The `status/<app>.json` files the init wrote.
pub fn read_exits<'a>(
    pod_dir: &Path,
    apps: impl Iterator<Item = &'a str>,
) -> Vec<(String, AppExit)> {
    apps.filter_map(|app| {
        let path = pod_dir.join("status").join(format!("{app}.json"));
        let bytes = std::fs::read(path).ok()?;
        Some((app.to_owned(), serde_json::from_slice(&bytes).ok()?))
    })
    .collect()
}

/// The init binary copied into a sealed memfd (youki's pentacle; CVE-2019-5736): the pod can
/// never reach, let alone rewrite, a host file of ours through /proc/<pid>/exe.
fn sealed_init() -> Result<OwnedFd, LaunchError> {
    let path = find_init()?;
    let mut src = File::open(&path).map_err(io(format!("open {}", path.display())))?;
    let fd = rustix::fs::memfd_create("appc-init", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| io("create a memfd")(e.into()))?;
    let mut f = File::from(fd);
    std::io::copy(&mut src, &mut f).map_err(io("copy appc-init into a memfd"))?;
    f.rewind().map_err(io("rewind the memfd"))?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    rustix::fs::fcntl_add_seals(&f, seals).map_err(|e| io("seal the memfd")(e.into()))?;
    Ok(f.into())
}

fn find_init() -> Result<PathBuf, LaunchError> {
    if let Some(p) = std::env::var_os("APPC_INIT") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("appc-init")));
    beside
        .into_iter()
        .chain(INIT_PATHS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or(LaunchError::NoInit)
}

fn spawn_init(
    init: &OwnedFd,
    pod: &Pod,
    plan: &InitPlan,
    chan: &OwnedFd,
    lock: &PodLock,
) -> Result<Child, LaunchError> {
    let lock_fd = lock.file().as_fd().as_raw_fd();
    let chan_fd = chan.as_raw_fd();
    let mut cmd = Command::new(format!("/proc/self/fd/{}", init.as_raw_fd()));
    cmd.arg0("appc-init")
        .arg(pod.dir().join("plan.json"))
        .arg(chan_fd.to_string())
        .arg(lock_fd.to_string())
        .env_clear();
    let mut ns = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if plan.private_network {
        ns |= CloneFlags::CLONE_NEWNET;
    }
    crate::sys::spawn_in_namespaces(&mut cmd, ns, &[chan_fd, lock_fd])
        .map_err(io("start the pod init in new namespaces"))
}

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (and the threads it starts), so a forwarder
/// thread can pass them to the init; children get a clean mask from std's spawn.
fn block_stop_signals() -> Result<SigSet, LaunchError> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| io("block signals")(e.into()))?;
    Ok(set)
}

/// Ctrl-C or a SIGTERM to `appcctl run` stops the pod gracefully through its init.
fn spawn_forwarder(set: SigSet, init_pid: u32) {
    std::thread::spawn(move || {
        while let Ok(_sig) = set.wait() {
            use crate::systemd::notify::{Notify, notify};
            let _ = notify(&[Notify::Stopping, Notify::Status("stopping the pod")]); // best effort
            let pid = nix::unistd::Pid::from_raw(init_pid as i32);
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        }
    });
}

/// Images that prepared or running pods need (their apps' images and every layer below them),
/// with a pod that needs each: removing one would pull a layer from under a live overlayfs.
pub fn images_in_use(
    store: &Store,
    pods: &PodStore,
) -> Result<std::collections::BTreeMap<crate::schema::ImageId, String>, LaunchError> {
    let mut used = std::collections::BTreeMap::new();
    for info in pods.list()? {
        if !matches!(info.state, PodState::Prepared | PodState::Running) {
            continue;
        }
        let Ok(pod) = pods.get(&info.uuid.to_string()) else {
            continue; // removed meanwhile
        };
        let label = pod.label();
        for app in pod.manifest()?.apps {
            let Some(id) = app.image.id else { continue };
            let Ok(image) = store.resolve(id.as_ref()) else {
                continue; // already gone: nothing to protect
            };
            for layer in crate::store::layers(store, &image).unwrap_or_default() {
                used.entry(layer.id).or_insert_with(|| label.clone());
            }
            used.entry(id).or_insert_with(|| label.clone());
        }
    }
    Ok(used)
}
