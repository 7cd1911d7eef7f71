//! `appcctl list|status|rm|gc|cat-manifest`: pods as `rkt` users know them (reference/rkt.md
//! §1.2, §1.4, §2.6, §2.11), read from the pod store (`src/pod`) and from what the executor
//! leaves in a pod's directory:
//!
//! - `status/<app>.json` (`{"exit_code", "signal", "exited"}`), written by the pod init when an
//!   app exits, so it survives a runner that was killed;
//! - `isolators.json`, the G3 report (appc-requirements.md G3: which isolators were enforced,
//!   changed or ignored), written when the pod starts;
//! - `PodRecord::app_exit_codes`, filled when the runner finishes normally. Status files win
//!   for the apps they cover, because they are written first-hand by the pod init.
//!
//! Every one of these files may be missing (a prepared pod has none) or garbage; both are
//! reported as a warning next to the rest of the status, never as a failure of the verb.
//!
//! The pod's exit code follows rkt (§1.4): the status of the first app that failed, i.e. the
//! non-zero code with the smallest `exited` time; 0 when every app exited 0; unknown otherwise.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::GlobalArgs;
use super::image::parse_duration;
use super::output::{Format, ago, print_table, printable, rfc3339};
use crate::exec::cgroups::remove_pod_cgroups;
use crate::net::PodAddress;
use crate::pod::{GcReport, Pod, PodError, PodInfo, PodState, PodStore, now};
use crate::schema::{PodManifest, PodUuid};

/// Largest executor-written file we read; real ones are a few hundred bytes.
const MAX_POD_FILE: u64 = 1 << 20;
/// How often `status --wait` re-checks the pod's lock.
const WAIT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Leave out the header line.
    #[arg(long)]
    pub no_legend: bool,
    /// Show full pod UUIDs.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pod name, UUID or UUID prefix.
    #[arg(
        value_name = "NAME|UUID",
        required_unless_present = "uuid_file",
        conflicts_with = "uuid_file"
    )]
    pub pod: Option<String>,
    /// Read the pod UUID from this file (as written by `run --uuid-file-save`).
    #[arg(long, value_name = "FILE")]
    pub uuid_file: Option<PathBuf>,
    /// Wait until the pod is no longer running, then print its status.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (seconds, or with s, m, h, d).
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = parse_duration)]
    pub wait_timeout: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Pod names, UUIDs or UUID prefixes.
    #[arg(value_name = "NAME|UUID", required_unless_present = "uuid_file")]
    pub pods: Vec<String>,
    /// Also remove the pod whose UUID this file holds.
    #[arg(long, value_name = "FILE")]
    pub uuid_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep exited pods this long after they exited (seconds, or with s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub grace_period: u64,
    /// Remove prepared pods that were never run after this long.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub expire_prepared: u64,
}

#[derive(Debug, Args)]
pub struct CatManifestArgs {
    /// Pod name, UUID or UUID prefix.
    #[arg(
        value_name = "NAME|UUID",
        required_unless_present = "uuid_file",
        conflicts_with = "uuid_file"
    )]
    pub pod: Option<String>,
    /// Read the pod UUID from this file.
    #[arg(long, value_name = "FILE")]
    pub uuid_file: Option<PathBuf>,
    /// Indent the output.
    #[arg(long, alias = "pretty-print")]
    pub pretty: bool,
}

/// `status/<app>.json`, as the pod init writes it.
#[derive(Debug, Clone, Deserialize)]
struct StatusFile {
    exit_code: i32,
    #[serde(default)]
    signal: Option<i32>,
    #[serde(default)]
    exited: Option<i64>,
}

/// How one app ended; `exited` is unknown when only the record has the code.
#[derive(Debug, Clone, PartialEq)]
struct AppExit {
    code: i32,
    signal: Option<i32>,
    exited: Option<i64>,
}

/// One entry of `isolators.json` (G3); `app: None` is a pod-level isolator.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IsolatorLine {
    app: Option<String>,
    isolator: String,
    outcome: Outcome,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Enforced,
    Changed,
    Ignored,
}

#[derive(Debug, Clone)]
struct AppView {
    name: String,
    image_name: Option<String>,
    image_id: Option<String>,
    exit: Option<AppExit>,
}

/// Everything the verbs show about one pod.
#[derive(Debug, Clone)]
struct PodView {
    info: PodInfo,
    apps: Vec<AppView>,
    isolators: Vec<IsolatorLine>,
    /// Problems with the pod's files, shown beside the status.
    warnings: Vec<String>,
}

pub fn list(g: &GlobalArgs, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    let mut views = Vec::new();
    for info in store.list()? {
        match store.get(&info.uuid.to_string()) {
            Ok(pod) => views.push(view_of(&pod, info)),
            // Removed between the listing and the lookup (a concurrent rm or gc).
            Err(PodError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    print_warnings(&views);
    if a.format == Format::Json {
        let out: Vec<serde_json::Value> = views.iter().map(pod_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = now();
    let rows: Vec<Vec<String>> = views.iter().map(|v| list_row(v, a.full, now)).collect();
    let header = [
        "NAME", "UUID", "STATE", "APPS", "IMAGES", "CREATED", "NETWORKS", "EXIT",
    ];
    print_table(if a.no_legend { &[] } else { &header }, &rows);
    Ok(ExitCode::SUCCESS)
}

fn list_row(v: &PodView, full: bool, now: i64) -> Vec<String> {
    let uuid = v.info.uuid.to_string();
    let uuid = if full { uuid } else { uuid[..8].to_owned() };
    let apps: Vec<&str> = v.apps.iter().map(|a| a.name.as_str()).collect();
    let images: Vec<&str> = v.apps.iter().map(AppView::image_text).collect();
    let exit = match (is_finished(v.info.state), pod_exit_code(&v.apps)) {
        (false, _) => String::new(),
        (true, Some(code)) => code.to_string(),
        (true, None) => "?".to_owned(),
    };
    vec![
        v.info.name.as_ref().map_or("-", |n| n.as_str()).to_owned(),
        uuid,
        v.info.state.to_string(),
        printable(&apps.join(",")),
        printable(&images.join(",")),
        ago(v.info.record.created, now),
        networks_text(v),
        exit,
    ]
}

pub fn status(g: &GlobalArgs, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    let query = target(a.pod.as_deref(), a.uuid_file.as_deref())?;
    let pod = store.get(&query)?;
    if a.wait {
        wait_until_stopped(&pod, &query, a.wait_timeout)?;
    }
    let view = view_of(&pod, store.info(&pod)?);
    print_warnings(std::slice::from_ref(&view));
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&pod_json(&view))?);
    } else {
        for line in status_lines(&view) {
            println!("{line}");
        }
    }
    // rkt's `status` reports the pod's exit code, it does not return it (§1.4).
    Ok(ExitCode::SUCCESS)
}

/// Polls the pod's lock: the runner holds it exclusively for the pod's whole life (§2.6), and
/// the kernel drops it when the runner dies, so "unlocked" means "not running" even after a
/// crash. Polling (rather than a blocking shared flock) is what lets `--wait-timeout` work.
fn wait_until_stopped(pod: &Pod, query: &str, timeout: Option<u64>) -> anyhow::Result<()> {
    let start = Instant::now();
    while pod.is_locked()? {
        if let Some(secs) = timeout
            && start.elapsed() >= Duration::from_secs(secs)
        {
            bail!(
                "pod {} is still running after {secs}s (--wait-timeout)",
                printable(query)
            );
        }
        std::thread::sleep(WAIT_POLL);
    }
    Ok(())
}

/// rkt's `key=value` lines (§1.2), plus the G3 isolator report.
fn status_lines(v: &PodView) -> Vec<String> {
    let r = &v.info.record;
    let mut out = Vec::new();
    if let Some(name) = &v.info.name {
        out.push(format!("name={name}"));
    }
    out.push(format!("uuid={}", v.info.uuid));
    out.push(format!("state={}", v.info.state));
    if v.info.crashed {
        out.push("crashed=true".to_owned());
    }
    out.push(format!("created={}", rfc3339(r.created)));
    let times = [("started", r.started), ("exited", r.exited)];
    out.extend(
        times
            .iter()
            .filter_map(|(k, t)| t.map(|t| format!("{k}={}", rfc3339(t)))),
    );
    if let Some(pid) = r.init_pid {
        out.push(format!("pid={pid}"));
    }
    if let Some(unit) = &r.unit {
        out.push(format!("unit={}", printable(unit)));
    }
    if !networks(v).is_empty() {
        out.push(format!("networks={}", networks_text(v)));
    }
    if is_finished(v.info.state)
        && let Some(code) = pod_exit_code(&v.apps)
    {
        out.push(format!("exit-code={code}"));
    }
    for app in &v.apps {
        out.extend(app_lines(app));
    }
    out.extend(v.isolators.iter().map(isolator_line));
    out
}

fn app_lines(app: &AppView) -> Vec<String> {
    let Some(exit) = &app.exit else {
        return Vec::new();
    };
    let mut out = vec![format!("app-{}={}", app.name, exit.code)];
    if let Some(signal) = exit.signal {
        out.push(format!("app-{}-signal={signal}", app.name));
    }
    out
}

fn isolator_line(i: &IsolatorLine) -> String {
    let scope = i
        .app
        .as_ref()
        .map_or("pod".to_owned(), |a| format!("app:{a}"));
    let outcome = match i.outcome {
        Outcome::Enforced => "enforced",
        Outcome::Changed => "changed",
        Outcome::Ignored => "ignored",
    };
    let detail = i
        .detail
        .as_ref()
        .map_or(String::new(), |d| format!(" ({d})"));
    printable(&format!(
        "isolator={scope} {}: {outcome}{detail}",
        i.isolator
    ))
}

pub fn rm(g: &GlobalArgs, a: &RmArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    let mut queries = a.pods.clone();
    if let Some(file) = &a.uuid_file {
        queries.push(read_uuid_file(file)?);
    }
    let mut failed = false;
    for query in &queries {
        match rm_one(&store, query) {
            Ok(uuid) => println!("{uuid}"),
            Err(e) => {
                eprintln!("appcctl: rm {}: {e:#}", printable(query));
                failed = true;
            }
        }
    }
    Ok(exit_code(failed))
}

/// Removes one pod: its cgroups first (under the pod's lock, so a `run-prepared` cannot start
/// it meanwhile), then its directory.
fn rm_one(store: &PodStore, query: &str) -> anyhow::Result<PodUuid> {
    let pod = store.get(query)?;
    let uuid = pod.uuid();
    let Some(lock) = pod.try_lock_exclusive()? else {
        if store.info(&pod)?.state == PodState::Running {
            let q = printable(query);
            bail!("pod {q} is running; stop it first (appcctl stop {q})");
        }
        return Err(PodError::Busy { uuid }.into());
    };
    remove_pod_cgroups(uuid).with_context(|| {
        format!(
            "cannot remove the cgroups of pod {uuid}; the pod is kept so that rm or gc can retry"
        )
    })?;
    // `remove` takes the lock itself, and a second flock from this process would conflict.
    drop(lock);
    store.remove(&pod)?;
    // A runner killed with -9 left the pod's lease and port forwards; with the pod gone its
    // lease is dead and can be released.
    crate::net::release_pod(uuid).with_context(|| {
        format!("pod {uuid} was removed but its network was not released; `appcctl gc` retries")
    })?;
    Ok(uuid)
}

pub fn gc(g: &GlobalArgs, a: &GcArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    // Names are looked up first: a removed pod's record is gone afterwards.
    let names: HashMap<PodUuid, String> = store
        .list()?
        .into_iter()
        .filter_map(|i| Some((i.uuid, i.name?.as_str().to_owned())))
        .collect();
    let report = store.gc(a.grace_period, a.expire_prepared, now())?;
    let mut failed = false;
    for uuid in &report.removed {
        if let Err(e) = remove_pod_cgroups(*uuid) {
            eprintln!("appcctl: gc: pod {uuid} was removed but its cgroups were not: {e}");
            failed = true;
        }
    }
    // Leases, veths and forwards of pods that died without their runner (kill -9).
    match crate::net::gc() {
        Ok(net) => {
            for (network, uuid, ip) in &net.released {
                println!("{uuid}: released address {ip} on network {network}");
            }
            for stray in &net.strays {
                println!("network: removed stray {stray}");
            }
        }
        Err(e) => {
            eprintln!("appcctl: gc: network: {e}");
            failed = true;
        }
    }
    for (uuid, actions) in gc_actions(&report) {
        let name = names.get(&uuid).map_or(String::new(), |n| format!(" {n}"));
        println!("{uuid}{name}: {}", actions.join(", "));
    }
    if g.debug {
        report
            .busy
            .iter()
            .for_each(|u| eprintln!("gc: pod {u} is in use, skipped"));
        let leftovers = report.leftovers.iter();
        leftovers.for_each(|p| eprintln!("gc: removed leftover {}", p.display()));
    }
    for e in &report.errors {
        eprintln!("appcctl: gc: {e}");
        failed = true;
    }
    Ok(exit_code(failed))
}

/// What gc did, one entry per pod in the order gc did it.
fn gc_actions(report: &GcReport) -> Vec<(PodUuid, Vec<&'static str>)> {
    let mut out: Vec<(PodUuid, Vec<&'static str>)> = Vec::new();
    let steps = [
        (&report.crashed, "runner gone, recorded as exited"),
        (&report.marked, "marked garbage"),
        (&report.removed, "removed"),
    ];
    for (uuids, action) in steps {
        for uuid in uuids {
            match out.iter_mut().find(|(u, _)| u == uuid) {
                Some((_, actions)) => actions.push(action),
                None => out.push((*uuid, vec![action])),
            }
        }
    }
    out
}

pub fn cat_manifest(g: &GlobalArgs, a: &CatManifestArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    let query = target(a.pod.as_deref(), a.uuid_file.as_deref())?;
    let manifest = store.get(&query)?.manifest()?;
    if a.pretty {
        println!("{}", manifest.to_canonical_json());
    } else {
        println!("{}", serde_json::to_string(&manifest)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(super::EXIT_INTERNAL)
    } else {
        ExitCode::SUCCESS
    }
}

/// The positional pod, or the UUID in `--uuid-file` (clap makes them exclusive).
fn target(pod: Option<&str>, file: Option<&Path>) -> anyhow::Result<String> {
    match (pod, file) {
        (Some(p), _) => Ok(p.to_owned()),
        (None, Some(f)) => read_uuid_file(f),
        (None, None) => bail!("give a pod name or UUID, or --uuid-file"),
    }
}

fn read_uuid_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the uuid file {}", path.display()))?;
    let uuid = text.trim();
    if uuid.is_empty() {
        bail!("{}: empty; expected a pod UUID", path.display());
    }
    Ok(uuid.to_owned())
}

fn is_finished(state: PodState) -> bool {
    matches!(state, PodState::Exited | PodState::Garbage)
}

fn print_warnings(views: &[PodView]) {
    for v in views {
        let label = v
            .info
            .name
            .as_ref()
            .map_or(v.info.uuid.to_string(), |n| n.to_string());
        for w in &v.warnings {
            eprintln!("appcctl: warning: pod {label}: {}", printable(w));
        }
    }
}

/// Reads the pod's manifest and executor files; problems become warnings.
fn view_of(pod: &Pod, info: PodInfo) -> PodView {
    let mut warnings = Vec::new();
    let manifest = pod
        .manifest()
        .map_err(|e| warnings.push(format!("cannot read the manifest: {e}")))
        .ok();
    let mut apps = manifest.as_ref().map_or_else(Vec::new, app_views);
    for app in &mut apps {
        // App names are AC Names ([a-z0-9-], validated at parse), so safe as a file name.
        let file = format!("status/{}.json", app.name);
        app.exit = read_json::<StatusFile>(pod.dir(), &file, &mut warnings).map(AppExit::from);
    }
    merge_record_codes(&mut apps, &info.record.app_exit_codes);
    let isolators = read_json(pod.dir(), "isolators.json", &mut warnings).unwrap_or_default();
    PodView {
        info,
        apps,
        isolators,
        warnings,
    }
}

fn app_views(m: &PodManifest) -> Vec<AppView> {
    m.apps
        .iter()
        .map(|a| AppView {
            name: a.name.as_str().to_owned(),
            image_name: a.image.name.as_ref().map(|n| n.as_str().to_owned()),
            image_id: a.image.id.as_ref().map(|i| i.as_str().to_owned()),
            exit: None,
        })
        .collect()
}

/// Fills in exit codes the runner recorded for apps that have no status file; a code for an
/// app the manifest does not list (or could not be read) is kept, not dropped.
fn merge_record_codes(apps: &mut Vec<AppView>, codes: &BTreeMap<String, i32>) {
    for (name, &code) in codes {
        let recorded = AppExit {
            code,
            signal: None,
            exited: None,
        };
        match apps.iter_mut().find(|a| &a.name == name) {
            Some(app) => {
                app.exit.get_or_insert(recorded);
            }
            None => apps.push(AppView {
                name: name.clone(),
                image_name: None,
                image_id: None,
                exit: Some(recorded),
            }),
        }
    }
}

impl From<StatusFile> for AppExit {
    fn from(s: StatusFile) -> Self {
        AppExit {
            code: s.exit_code,
            signal: s.signal,
            exited: s.exited,
        }
    }
}

impl AppView {
    fn image_text(&self) -> &str {
        self.image_name
            .as_deref()
            .or(self.image_id.as_deref())
            .unwrap_or("-")
    }
}

/// The first failing app's code (smallest `exited`; an app whose time is unknown counts as
/// last, ties keep manifest order); 0 when every app is known to have exited 0.
fn pod_exit_code(apps: &[AppView]) -> Option<i32> {
    let mut known: Vec<&AppExit> = apps.iter().filter_map(|a| a.exit.as_ref()).collect();
    known.sort_by_key(|e| e.exited.unwrap_or(i64::MAX));
    if let Some(failed) = known.iter().find(|e| e.code != 0) {
        return Some(failed.code);
    }
    (!apps.is_empty() && known.len() == apps.len()).then_some(0)
}

/// `<pod>/<name>` parsed as `T`; `None` if absent, or unreadable (with a warning).
fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let bytes = match read_pod_file(&dir.join(name)) {
        Ok(bytes) => bytes?,
        Err(e) => {
            warnings.push(format!("cannot read {name}: {e}"));
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| warnings.push(format!("{name} is not what the executor writes: {e}")))
        .ok()
}

/// Reads a small regular file, `None` if it does not exist. The pod init writes `status/`, so
/// it may be within an app's reach: a symlink planted there must not make us read another
/// file (O_NOFOLLOW), nor a FIFO make `status` hang (O_NONBLOCK), nor a huge file exhaust
/// memory (size cap).
fn read_pod_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file: File = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other("it is a symbolic link, refusing"));
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file, refusing"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_POD_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_POD_FILE {
        return Err(io::Error::other("larger than 1 MiB, refusing"));
    }
    Ok(Some(bytes))
}

/// The JSON form shared by `list` and `status`: every field, full UUID, RFC 3339 times.
fn pod_json(v: &PodView) -> serde_json::Value {
    let r = &v.info.record;
    let finished = is_finished(v.info.state);
    let apps: Vec<serde_json::Value> = v.apps.iter().map(app_json).collect();
    json!({
        "name": v.info.name.as_ref().map(|n| n.as_str()),
        "uuid": v.info.uuid.to_string(),
        "state": v.info.state.as_str(),
        "crashed": v.info.crashed,
        "created": rfc3339(r.created),
        "started": r.started.map(rfc3339),
        "exited": r.exited.map(rfc3339),
        "initPid": r.init_pid,
        "unit": r.unit,
        "networks": networks(v),
        "exitCode": if finished { pod_exit_code(&v.apps) } else { None },
        "apps": apps,
        "isolators": v.isolators,
        "warnings": v.warnings,
    })
}

/// The pod's addresses as its runner recorded them (empty for `--net=none|host`).
fn networks(v: &PodView) -> Vec<PodAddress> {
    PodAddress::from_record(v.info.record.net.as_ref())
}

/// rkt's form: `default:ip4=172.16.28.2`, comma-separated; `-` without any.
fn networks_text(v: &PodView) -> String {
    let list: Vec<String> = networks(v)
        .iter()
        .map(|a| format!("{}:ip4={}", a.network, a.ip))
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

fn app_json(a: &AppView) -> serde_json::Value {
    json!({
        "name": a.name,
        "image": { "name": a.image_name, "id": a.image_id },
        "exitCode": a.exit.as_ref().map(|e| e.code),
        "signal": a.exit.as_ref().and_then(|e| e.signal),
        "exited": a.exit.as_ref().and_then(|e| e.exited).map(rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, exit: Option<(i32, Option<i64>)>) -> AppView {
        AppView {
            name: name.to_owned(),
            image_name: None,
            image_id: None,
            exit: exit.map(|(code, exited)| AppExit {
                code,
                signal: None,
                exited,
            }),
        }
    }

    #[test]
    fn pod_exit_code_is_the_first_failure() {
        let apps = [
            app("a", Some((0, Some(10)))),
            app("b", Some((3, Some(30)))),
            app("c", Some((7, Some(20)))),
        ];
        assert_eq!(pod_exit_code(&apps), Some(7));
        let zero = [app("a", Some((0, Some(1)))), app("b", Some((0, None)))];
        assert_eq!(pod_exit_code(&zero), Some(0));
        let partial = [app("a", Some((0, Some(1)))), app("b", None)];
        assert_eq!(pod_exit_code(&partial), None);
        let untimed_last = [app("a", Some((2, None))), app("b", Some((9, Some(5))))];
        assert_eq!(pod_exit_code(&untimed_last), Some(9));
        assert_eq!(pod_exit_code(&[]), None);
    }

    #[test]
    fn status_files_win_over_the_record() {
        let mut apps = vec![app("web", Some((0, Some(5)))), app("db", None)];
        let codes = BTreeMap::from([
            ("web".to_owned(), 9),
            ("db".to_owned(), 4),
            ("gone".to_owned(), 1),
        ]);
        merge_record_codes(&mut apps, &codes);
        let got: Vec<_> = apps
            .iter()
            .map(|a| (a.name.as_str(), a.exit.as_ref().map(|e| e.code)))
            .collect();
        assert_eq!(got, [("web", Some(0)), ("db", Some(4)), ("gone", Some(1))]);
    }

    #[test]
    fn pod_files_refuse_symlinks_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"{}").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link")).unwrap();
        let err = read_pod_file(&dir.path().join("link")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_pod_file(&dir.path().join("fifo")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(read_pod_file(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn isolator_lines_name_the_scope() {
        let line: IsolatorLine = serde_json::from_str(
            r#"{"app":null,"isolator":"resource/cpu","outcome":"changed","detail":"raised to 10m"}"#,
        )
        .unwrap();
        assert_eq!(
            isolator_line(&line),
            "isolator=pod resource/cpu: changed (raised to 10m)"
        );
        let bad =
            serde_json::from_str::<IsolatorLine>(r#"{"app":"x","isolator":"y","outcome":"maybe"}"#);
        assert!(bad.is_err());
    }
}
