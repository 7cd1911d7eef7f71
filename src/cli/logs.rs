//! `appcctl logs POD`: a pod's app output, read back from the journal (also after the pod exited).
//!
//! Under systemd each app's stdout and stderr is a journald stdout stream (`src/exec/init.rs`,
//! `src/systemd/journal.rs`): `SYSLOG_IDENTIFIER=` the app's name, `PRIORITY=6` for stdout and
//! `3` for stderr, and `_SYSTEMD_UNIT=` the pod's unit (`PodRecord::unit`). This verb runs
//! `journalctl` as a subprocess (as `machinectl` and `podman logs` effectively do) with these
//! matches:
//!
//! - `_SYSTEMD_UNIT=<unit>`: the unit the streams were attributed to (`-u` would also bring in
//!   PID 1's messages about the unit and coredumps);
//! - `-t <app>` per app (journalctl ORs them), which also leaves out appcctl's own diagnostics
//!   when the pod kept the service appcctl ran in;
//! - `--since @started` and, for an exited pod, `--until @exited+1`: one unit name serves many
//!   pods over time (`appc-pod@demo.service` restarted, or a new pod of the same name), and the
//!   pod's lifetime is what tells their lines apart. The record's times are whole seconds, so a
//!   pod that starts in the very second the previous pod of the same unit exited can show that
//!   pod's last lines (and the other way round); the unit's invocation ID in the record would
//!   make this exact.
//!
//! `--follow` passes `-f` to journalctl while a reader thread prints its entries and the main
//! thread polls the pod's lock (held by the runner for the pod's whole life). When the lock is
//! released, the follower is killed and one last query from the follower's last cursor up to the
//! pod's exit prints what journald stored meanwhile, so lines written just before the end are
//! not lost to the kill.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::output::{Format, printable};
use crate::pod::{Pod, PodState, PodStore};
use crate::systemd::journal::STDERR_PRIORITY;

/// How often `--follow` checks whether the pod still runs.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How long the last query waits for journald to read what the apps wrote before they exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `run`'s terminal echo checks whether the pod has started.
const ECHO_POLL: Duration = Duration::from_millis(20);
/// The journal reader.
const JOURNALCTL: &str = "journalctl";

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Pod name, UUID or UUID prefix.
    #[arg(value_name = "NAME|UUID")]
    pub pod: String,
    /// Show only this app's output.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Keep printing new output until the pod exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Show only the last N lines (default: all).
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// What the query selects: one pod's apps in one unit during one lifetime.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    unit: String,
    apps: Vec<String>,
    since: i64,
    /// Exclusive upper bound (unix seconds), for an exited pod.
    until: Option<i64>,
}

impl Query {
    /// journalctl's arguments; `follow` adds `-f`, `after` resumes after a cursor.
    fn args(&self, lines: Option<u64>, follow: bool, after: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = ["--no-pager", "--quiet", "--all", "--output=json"]
            .map(str::to_owned)
            .to_vec();
        // journalctl takes one starting point; the cursor lies within the lifetime anyway.
        match after {
            Some(cursor) => args.push(format!("--after-cursor={cursor}")),
            None => args.push(format!("--since=@{}", self.since)),
        }
        if let Some(until) = self.until {
            args.push(format!("--until=@{until}"));
        }
        // journalctl -f alone shows the last 10 lines; ours shows everything by default.
        args.push(format!(
            "--lines={}",
            lines.map_or("all".to_owned(), |n| n.to_string())
        ));
        if follow {
            args.push("--follow".to_owned());
        }
        for app in &self.apps {
            args.push(format!("--identifier={app}"));
        }
        args.push(format!("_SYSTEMD_UNIT={}", self.unit));
        args
    }
}

/// One journal entry, as shown.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    cursor: Option<String>,
    /// Microseconds since the epoch.
    time_us: Option<i64>,
    app: String,
    priority: Option<i64>,
    message: String,
}

impl Entry {
    /// One `journalctl -o json` line; `None` if it is not a JSON object.
    fn parse(line: &str) -> Option<Entry> {
        let v: Value = serde_json::from_str(line).ok()?;
        let obj = v.as_object()?;
        let text = |name: &str| obj.get(name).map(field_text);
        Some(Entry {
            cursor: obj
                .get("__CURSOR")
                .and_then(Value::as_str)
                .map(str::to_owned),
            time_us: text("__REALTIME_TIMESTAMP").and_then(|t| t.parse().ok()),
            app: text("SYSLOG_IDENTIFIER").unwrap_or_default(),
            priority: text("PRIORITY").and_then(|p| p.parse().ok()),
            message: text("MESSAGE").unwrap_or_default(),
        })
    }

    fn stream(&self) -> &'static str {
        if self.priority == Some(STDERR_PRIORITY as i64) {
            "stderr"
        } else {
            "stdout"
        }
    }

    fn json(&self) -> Value {
        json!({
            "time": self.time_us.map(rfc3339_micros),
            "app": self.app,
            "priority": self.priority,
            "stream": self.stream(),
            "message": self.message,
        })
    }
}

/// A field of journalctl's JSON: a string; an array of bytes (a value that is not UTF-8 or holds
/// control characters), decoded lossily; an array of those (a field present several times),
/// whose first value is taken; `null` (a value too large, not with `--all`) as empty.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|b| u8::try_from(b).unwrap_or(b'?'))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Value::Array(items) => items.first().map(field_text).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Microseconds since the epoch as RFC 3339 UTC with six fractional digits.
fn rfc3339_micros(us: i64) -> String {
    let nanos = i128::from(us) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => us.to_string(),
    }
}

/// How entries are printed.
#[derive(Debug, Clone)]
struct Printer {
    format: Format,
    /// The app-name column's width; `None` when the pod has one app (no prefix).
    prefix: Option<usize>,
}

impl Printer {
    /// A printer for a pod with `apps`: the app column only when there are several.
    fn new(format: Format, apps: &[String]) -> Printer {
        Printer {
            format,
            prefix: (apps.len() > 1).then(|| apps.iter().map(String::len).max().unwrap_or(0)),
        }
    }

    fn line(&self, e: &Entry) -> String {
        match self.format {
            Format::Json => e.json().to_string(),
            Format::Table => {
                let message = terminal_safe(&e.message);
                match self.prefix {
                    Some(w) => format!("{:<w$} | {message}", printable(&e.app)),
                    None => message,
                }
            }
        }
    }
}

fn app_names(manifest: &crate::schema::PodManifest) -> Vec<String> {
    manifest
        .apps
        .iter()
        .map(|app| app.name.as_str().to_owned())
        .collect()
}

/// App output made safe for one terminal line: control characters escaped, tabs kept.
fn terminal_safe(s: &str) -> String {
    s.split('\t').map(printable).collect::<Vec<_>>().join("\t")
}

pub fn logs(g: &GlobalArgs, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let store = PodStore::open(&g.dir)?;
    let pod = store.get(&a.pod)?;
    let info = store.info(&pod)?;
    let label = printable(&a.pod);
    let record = &info.record;
    let started = record.started.filter(|_| info.state != PodState::Prepared);
    let Some(started) = started else {
        bail!("pod {label} has not been started; it has no output yet");
    };
    let Some(unit) = record.unit.clone() else {
        bail!(
            "pod {label} ran without systemd: its output went to the terminal of `appcctl run`; nothing to show"
        );
    };
    let manifest = pod.manifest()?;
    let all = app_names(&manifest);
    let apps = match &a.app {
        Some(app) if all.contains(app) => vec![app.clone()],
        Some(app) => bail!(
            "pod {label} has no app {}; its apps: {}",
            printable(app),
            all.join(", ")
        ),
        None => all.clone(),
    };
    let printer = Printer::new(a.format, &all);
    let mut query = Query {
        unit,
        apps,
        since: started,
        until: record.exited.map(|t| t.saturating_add(1)),
    };
    let running = info.state == PodState::Running;
    if !(a.follow && running) {
        let mut child = spawn(&query.args(a.lines, false, None), false)?;
        let copied = copy_entries(&mut child, &printer);
        finish(child, copied.error.is_some())?;
        return Ok(ExitCode::SUCCESS);
    }
    follow_to_end(&pod, &mut query, a.lines, &printer, false)?;
    Ok(ExitCode::SUCCESS)
}

/// Follows a running pod's output until it exits, then prints what journald stored between
/// the follower's last entry and the pod's end.
fn follow_to_end(
    pod: &Pod,
    query: &mut Query,
    lines: Option<u64>,
    printer: &Printer,
    own_group: bool,
) -> anyhow::Result<()> {
    let follower = spawn(&query.args(lines, true, None), own_group)?;
    let cursor = follow(pod, follower, printer)?;
    if let Ok(record) = pod.record() {
        query.until = record.exited.map(|t| t.saturating_add(1));
    }
    // The apps' last lines may still sit unread in journald's stream buffers.
    crate::systemd::journal::wait_streams_drained(&query.unit, &query.apps, DRAIN_TIMEOUT);
    sync_journal();
    let lines = if cursor.is_some() { None } else { lines };
    let mut child = spawn(&query.args(lines, false, cursor.as_deref()), own_group)?;
    let copied = copy_entries(&mut child, printer);
    finish(child, copied.error.is_some())
}

/// `appcctl run` on a terminal while its apps log to journald: shows their output there too,
/// read back from the journal (prefixed with the app when the pod has several), so no byte of
/// app output passes through appcctl on its way to the journal and a slow terminal never holds
/// an app up. Returns once the pod has exited and its last lines are printed; gives up
/// quietly if the pod never reaches the running state with a unit.
pub fn echo_running_pod(pods: &PodStore, pod: &Pod) -> anyhow::Result<()> {
    // The runner forwards SIGINT/SIGTERM/SIGHUP to the pod from its own thread; this thread
    // must not take them (their default action would end appcctl).
    let mut stop = nix::sys::signal::SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block()?;
    let (started, unit) = loop {
        let info = pods.info(pod)?;
        match (info.state, info.record.started, info.record.unit) {
            // A pod may run and exit between two looks: its output is shown all the same.
            (PodState::Running | PodState::Exited, Some(started), Some(unit)) => {
                break (started, unit);
            }
            (PodState::Prepared | PodState::Running, _, _) => thread::sleep(ECHO_POLL),
            _ => return Ok(()),
        }
    };
    let apps = app_names(&pod.manifest()?);
    let printer = Printer::new(Format::Table, &apps);
    let mut query = Query {
        unit,
        apps,
        since: started,
        until: None,
    };
    follow_to_end(pod, &mut query, None, &printer, true)
}

/// Prints the follower's entries until the pod's lock is released (or our stdout closes, or
/// journalctl ends by itself); returns the cursor of the last entry printed.
fn follow(pod: &Pod, mut child: Child, printer: &Printer) -> anyhow::Result<Option<String>> {
    let Some(stdout) = child.stdout.take() else {
        bail!("journalctl's output was not captured");
    };
    let thread_printer = printer.clone();
    let reader =
        thread::spawn(move || copy_from(BufReader::new(stdout), &thread_printer, io::stdout()));
    let mut lock_error = None;
    loop {
        if reader.is_finished() {
            break;
        }
        match pod.is_locked() {
            Ok(true) => thread::sleep(FOLLOW_POLL),
            Ok(false) => break,
            Err(e) => {
                lock_error = Some(e);
                break;
            }
        }
    }
    let ended_by_itself = reader.is_finished();
    // Killing our own child by its handle; it may have exited already (then this is a no-op).
    let _ = child.kill();
    let copied = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the journal reader thread panicked"))?;
    if let Some(e) = lock_error {
        let _ = child.wait();
        return Err(e.into());
    }
    if let Some(e) = copied.error {
        let _ = child.wait();
        return Err(e).context("writing the output");
    }
    if ended_by_itself {
        finish(child, false)?;
    } else {
        let _ = child.wait();
    }
    Ok(copied.cursor)
}

/// Asks journald to store everything written to it so far (`journalctl --sync` waits for
/// that), so the last query sees the lines the apps wrote just before they exited. Best
/// effort: only root may ask, and without it those lines may come a moment too late.
fn sync_journal() {
    let _ = Command::new(JOURNALCTL)
        .arg("--sync")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What copying journalctl's output did.
#[derive(Debug, Default)]
struct Copied {
    /// The cursor of the last entry printed.
    cursor: Option<String>,
    /// Writing our stdout failed (e.g. a closed pipe).
    error: Option<io::Error>,
}

fn copy_entries(child: &mut Child, printer: &Printer) -> Copied {
    match child.stdout.take() {
        Some(stdout) => copy_from(BufReader::new(stdout), printer, io::stdout()),
        None => Copied::default(),
    }
}

/// Prints every complete entry read from `input`; lines that are not entries (a line cut by
/// the follower's kill) are skipped.
fn copy_from(input: impl BufRead, printer: &Printer, mut out: impl Write) -> Copied {
    let mut copied = Copied::default();
    for line in input.split(b'\n') {
        let Ok(line) = line else { break };
        let Some(entry) = Entry::parse(&String::from_utf8_lossy(&line)) else {
            continue;
        };
        if let Err(e) = writeln!(out, "{}", printer.line(&entry)).and_then(|()| out.flush()) {
            copied.error = Some(e);
            break;
        }
        if entry.cursor.is_some() {
            copied.cursor = entry.cursor;
        }
    }
    copied
}

/// Runs journalctl; `own_group` keeps it out of the terminal's process group, so a Ctrl-C
/// meant for `appcctl run` (which forwards it to the pod) does not end the echo early.
fn spawn(args: &[String], own_group: bool) -> anyhow::Result<Child> {
    let mut cmd = Command::new(JOURNALCTL);
    if own_group {
        cmd.process_group(0);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{JOURNALCTL} not found: `appcctl logs` reads the journal with it; install systemd (the package that provides journalctl)"
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot run {JOURNALCTL}"))
            }
        })
}

/// Waits for journalctl; its failure (already explained on its stderr) is ours. When we stopped
/// reading early (`stopped`), it is killed rather than waited on with a full pipe.
fn finish(mut child: Child, stopped: bool) -> anyhow::Result<()> {
    if stopped {
        let _ = child.kill();
        let _ = child.wait();
        bail!("writing the output failed; stopped reading the journal");
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {JOURNALCTL}"))?;
    if !status.success() {
        bail!("{JOURNALCTL} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_every_form() {
        assert_eq!(field_text(&json!("hi")), "hi");
        assert_eq!(field_text(&json!([104, 105, 255])), "hi\u{fffd}");
        assert_eq!(field_text(&json!([[104, 105], "x"])), "hi");
        assert_eq!(field_text(&json!(["a", "b"])), "a");
        assert_eq!(field_text(&json!(null)), "");
        assert_eq!(field_text(&json!([300, 104])), "?h");
        assert_eq!(field_text(&json!([])), "");
    }

    #[test]
    fn entries_parse_and_print() {
        let line = r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1700000000123456","SYSLOG_IDENTIFIER":"web","PRIORITY":"3","MESSAGE":[27,91,50,74,111,107,9,255]}"#;
        let e = Entry::parse(line).unwrap();
        assert_eq!(e.cursor.as_deref(), Some("s=1"));
        assert_eq!(e.stream(), "stderr");
        let v = e.json();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["priority"], 3);
        assert_eq!(v["app"], "web");
        assert_eq!(v["message"], "\u{1b}[2Jok\t\u{fffd}");
        let table = Printer {
            format: Format::Table,
            prefix: Some(5),
        };
        assert_eq!(table.line(&e), "web   | \\u{1b}[2Jok\t\u{fffd}");
        let single = Printer {
            format: Format::Table,
            prefix: None,
        };
        assert_eq!(single.line(&e), "\\u{1b}[2Jok\t\u{fffd}");
        assert!(Entry::parse("{\"MESSAGE\":\"cut").is_none());
        assert!(Entry::parse("[]").is_none());
        let bare = Entry::parse("{}").unwrap();
        assert_eq!(bare.stream(), "stdout");
        assert_eq!(bare.json()["time"], Value::Null);
    }

    #[test]
    fn query_arguments() {
        let q = Query {
            unit: "appc-pod@demo.service".into(),
            apps: vec!["a".into(), "b".into()],
            since: 100,
            until: Some(201),
        };
        let args = q.args(None, false, None).join(" ");
        assert_eq!(
            args,
            "--no-pager --quiet --all --output=json --since=@100 --until=@201 --lines=all \
             --identifier=a --identifier=b _SYSTEMD_UNIT=appc-pod@demo.service"
        );
        let args = q.args(Some(1), true, Some("s=x")).join(" ");
        assert!(
            args.contains("--after-cursor=s=x --until=@201 --lines=1 --follow")
                && !args.contains("--since"),
            "{args}"
        );
    }

    #[test]
    fn copying_skips_garbage_and_keeps_the_last_cursor() {
        let input = b"{\"__CURSOR\":\"c1\",\"MESSAGE\":\"x\"}\nnot json\n{\"__CURSOR\":\"c2\",\"MESSAGE\":\"y\"}\n{\"__CURSOR\":\"c3\",\"MES";
        let printer = Printer {
            format: Format::Json,
            prefix: None,
        };
        let mut out = Vec::new();
        let copied = copy_from(&input[..], &printer, &mut out);
        assert!(copied.error.is_none());
        assert_eq!(copied.cursor.as_deref(), Some("c2"));
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains(r#""message":"y""#), "{out}");
    }
}
