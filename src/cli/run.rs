//! `appcctl run`, `prepare`, `run-prepared`, `stop` and `enter` (rkt's verbs; reference/rkt.md
//! §1.3–1.4). `run` = `prepare` + `run-prepared`, in the foreground; its exit status is the
//! first failing app's (0 when all succeed), appcctl's own failures exit 254.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::image::parse_duration;
use super::run_args::RunArgs;
use super::{EXIT_INTERNAL, GlobalArgs, printable};
use crate::exec::control::{self, Stopped};
use crate::exec::launch::{self, LaunchError, LaunchOptions};
use crate::fetch::PullPolicy;
use crate::pod::compose::{PodOptions, compose_with};
use crate::pod::{Pod, PodStore};
use crate::store::Store;

const OPTIONS_FILE: &str = "options.json";

#[derive(Debug, Args)]
pub struct RunPreparedArgs {
    /// The prepared pod: name or uuid (prefix).
    #[arg(value_name = "POD")]
    pub pod: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Pods to stop: names or uuids.
    #[arg(required_unless_present = "uuid_file", value_name = "POD")]
    pub pods: Vec<String>,
    /// Read the pod's uuid from this file (written by `run --uuid-file-save`).
    #[arg(long, value_name = "FILE")]
    pub uuid_file: Option<PathBuf>,
    /// SIGKILL at once instead of SIGTERM first.
    #[arg(long)]
    pub force: bool,
    /// How long to wait after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct EnterArgs {
    /// The app to enter (needed when the pod has several).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// The running pod: name or uuid.
    #[arg(value_name = "POD")]
    pub pod: String,
    /// The command to run, default `/bin/sh`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// `appcctl run`.
pub fn run(g: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (store, pods, pod, options) = prepare_pod(g, args)?;
    let result = launch_pod(g, &store, &pods, &pod, &options);
    if result.is_err() {
        discard_if_unstarted(&pods, &pod);
    }
    result
}

/// A `run` that failed before its pod started leaves no prepared pod behind (it would hold its
/// name until it expires): it is marked garbage, which frees the name; gc removes it.
fn discard_if_unstarted(pods: &PodStore, pod: &Pod) {
    if let Ok(Some(lock)) = pod.try_lock_exclusive()
        && pods
            .info(pod)
            .is_ok_and(|i| i.state == crate::pod::PodState::Prepared)
    {
        let _ = pods.set_state(pod, &lock, crate::pod::PodState::Garbage); // best effort
    }
}

/// `appcctl prepare`: prints the new pod's uuid.
pub fn prepare(g: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (_, _, pod, _) = prepare_pod(g, args)?;
    println!("{}", pod.uuid());
    Ok(ExitCode::SUCCESS)
}

/// `appcctl run-prepared`.
pub fn run_prepared(g: &GlobalArgs, args: &RunPreparedArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&g.dir)?;
    let pods = PodStore::open(&g.dir)?;
    let pod = pods.get(&args.pod)?;
    let options = read_options(&pod)?;
    launch_pod(g, &store, &pods, &pod, &options)
}

fn prepare_pod(
    g: &GlobalArgs,
    args: &RunArgs,
) -> anyhow::Result<(Store, PodStore, Pod, PodOptions)> {
    let req = args.request()?;
    let store = Store::open(&g.dir)?;
    let composed = compose_with(
        &req,
        &store,
        &super::fetch::fetch_config(g, PullPolicy::New),
    )?;
    for w in &composed.warnings {
        eprintln!("warning: {}", printable(w));
    }
    // A port name no app declares is refused before the pod exists.
    crate::net::check_ports(&composed.manifest, composed.options.net)?;
    let pods = PodStore::open(&g.dir)?;
    let pod = pods.create(composed.name.clone(), &composed.manifest)?;
    let json = serde_json::to_vec_pretty(&composed.options)?;
    pod.write_file(OPTIONS_FILE, &json)?;
    if let Some(path) = &req.pod.uuid_file_save {
        save_uuid(path, &pod)?;
    }
    Ok((store, pods, pod, composed.options))
}

/// `--uuid-file-save`: written through a temp file and renamed, so readers never see half.
fn save_uuid(path: &Path, pod: &Pod) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    writeln!(tmp.1, "{}", pod.uuid())?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path).with_context(|| format!("cannot write {}", path.display()))
}

fn tempfile_in(dir: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let p = dir.join(format!(".uuid-{}", uuid::Uuid::new_v4().simple()));
    let f =
        std::fs::File::create_new(&p).with_context(|| format!("cannot create {}", p.display()))?;
    Ok((p, f))
}

fn read_options(pod: &Pod) -> anyhow::Result<PodOptions> {
    let path = pod.dir().join(OPTIONS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PodOptions::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn launch_pod(
    g: &GlobalArgs,
    store: &Store,
    pods: &PodStore,
    pod: &Pod,
    options: &PodOptions,
) -> anyhow::Result<ExitCode> {
    let opts = LaunchOptions {
        hostname: options.hostname.clone(),
        interactive: options.interactive,
        net: options.net,
        dns: options.dns.clone(),
        config_dir: g.config_dir.clone(),
        no_overlay: options.no_overlay,
        stop_timeout_ms: options.stop_timeout_ms,
        debug: g.debug,
        slice: options.slice.clone(),
        keep_unit: options.keep_unit,
    };
    let echo = echo_on_terminal(pods, pod, &opts);
    let result = launch::run_pod(store, pods, pod, &opts);
    if let Some(echo) = echo {
        // The pod has ended and released its lock: the echo prints its last lines and returns.
        if let Ok(Err(e)) = echo.join() {
            tracing::warn!("showing the pod's output: {e:#}");
        }
    }
    match result {
        Ok(outcome) => Ok(exit_code(outcome.exit_code)),
        // A failing pre-start handler is the pod's failure: its status is the pod's.
        Err(LaunchError::Start {
            pod,
            error,
            code: Some(code),
        }) => {
            eprintln!("appcctl: pod {pod}: {}", printable(&error));
            Ok(exit_code(code))
        }
        Err(e) => Err(e.into()),
    }
}

/// On a terminal, apps that log to journald are shown there too, read back from the journal
/// by a thread (see `logs::echo_running_pod`); piped, the journal alone has them.
fn echo_on_terminal(
    pods: &PodStore,
    pod: &Pod,
    opts: &LaunchOptions,
) -> Option<std::thread::JoinHandle<anyhow::Result<()>>> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !launch::logs_to_journal(opts.interactive) {
        return None;
    }
    let (pods, pod) = (pods.clone(), pod.clone());
    Some(std::thread::spawn(move || {
        super::logs::echo_running_pod(&pods, &pod)
    }))
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_INTERNAL))
}

/// `appcctl stop`.
pub fn stop(g: &GlobalArgs, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let pods = PodStore::open(&g.dir)?;
    let mut queries = args.pods.clone();
    if let Some(file) = &args.uuid_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        queries.push(text.trim().to_owned());
    }
    let mut failed = false;
    for q in &queries {
        let result = pods.get(q).map_err(anyhow::Error::from).and_then(|pod| {
            let timeout = Duration::from_secs(args.timeout);
            Ok(control::stop_pod(&pods, &pod, timeout, args.force)?)
        });
        match result {
            Ok(Stopped::Gracefully) => println!("{q}: stopped"),
            Ok(Stopped::Killed) => println!("{q}: killed"),
            Err(e) => {
                eprintln!("appcctl: {}", printable(&e.to_string()));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_INTERNAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// `appcctl enter`: the entered command's status is appcctl's.
pub fn enter(g: &GlobalArgs, args: &EnterArgs) -> anyhow::Result<ExitCode> {
    let pods = PodStore::open(&g.dir)?;
    let pod = pods.get(&args.pod)?;
    let code = control::enter_pod(&pods, &pod, args.app.as_deref(), &args.cmd)?;
    Ok(exit_code(code))
}
