//! Tier 2: `appcctl list|status|rm|gc|cat-manifest` on the real binary, against pods created
//! through the library (the executor is not there yet), with the files the executor will write
//! (`status/<app>.json`, `isolators.json`) written by hand (reference/rkt.md §1.2, §1.4, §2.6,
//! §2.11; appc-requirements.md G3).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use appc_pod::pod::{Pod, PodLock, PodState, PodStore};
use appc_pod::schema::{AcName, PodManifest};
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    store: PodStore,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PodStore::open(dir.path()).expect("open store");
        Env { dir, store }
    }

    fn appcctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_appcctl"))
            .arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .output()
            .expect("run appcctl")
    }

    /// Runs appcctl, asserts the exit code, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.appcctl(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "appcctl {args:?}: {}",
            show(&out)
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// A pod with the given apps, driven through `path` (holding its lock meanwhile).
    fn pod(&self, name: &str, apps: &[&str], path: &[PodState]) -> Pod {
        let name = AcName::parse(name).expect("test name");
        let pod = self
            .store
            .create(Some(name), &manifest(apps))
            .expect("create");
        let lock = pod.lock_exclusive().expect("lock");
        for s in path {
            self.store.set_state(&pod, &lock, *s).expect("set state");
        }
        pod
    }

    /// A pod whose runner is alive: state `Running`, lock held by the returned guard.
    fn running(&self, name: &str, apps: &[&str]) -> (Pod, PodLock) {
        let pod = self.pod(name, apps, &[]);
        let lock = pod.lock_exclusive().expect("lock");
        let s = &self.store;
        s.set_state(&pod, &lock, PodState::Running).expect("run");
        (pod, lock)
    }

    fn record_codes(&self, pod: &Pod, codes: &[(&str, i32)]) {
        let lock = pod.lock_exclusive().expect("lock");
        self.store
            .update(pod, &lock, |r| {
                for (app, code) in codes {
                    r.app_exit_codes.insert((*app).to_owned(), *code);
                }
                Ok(())
            })
            .expect("update");
    }
}

const EXITED: &[PodState] = &[PodState::Running, PodState::Exited];

fn manifest(apps: &[&str]) -> PodManifest {
    let id = format!("sha512-{}", "ab".repeat(64));
    let apps: Vec<String> = apps
        .iter()
        .map(|a| format!(r#"{{"name":"{a}","image":{{"name":"example.com/{a}","id":"{id}"}}}}"#))
        .collect();
    let text = format!(
        r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{}]}}"#,
        apps.join(",")
    );
    PodManifest::parse(&text).expect("test manifest").value
}

fn write_status(pod: &Pod, app: &str, code: i32, signal: Option<i32>, exited: i64) {
    let dir = pod.dir().join("status");
    fs::create_dir_all(&dir).expect("status dir");
    let body = serde_json::json!({"exit_code": code, "signal": signal, "exited": exited});
    fs::write(dir.join(format!("{app}.json")), body.to_string()).expect("write status");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The `list --format json` entry for pod `name`.
fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    let all = list.as_array().expect("array");
    all.iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#}"))
}

/// `list` table rows as `(NAME, STATE, EXIT)`, header skipped.
fn table_states(stdout: &str) -> Vec<(String, String, String)> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("NAME"), "{stdout}");
    let exit_col = header.find("EXIT").expect("EXIT column");
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let exit = l.get(exit_col..).unwrap_or("").trim().to_owned();
            (cells[0].to_owned(), cells[2].to_owned(), exit)
        })
        .collect()
}

fn exists(pod: &Pod) -> bool {
    Path::new(pod.dir()).exists()
}

#[test]
fn list_shows_every_state_as_table_and_json() {
    let env = Env::new();
    let prepared = env.pod("prep", &["web"], &[]);
    let _running = env.running("live", &["web"]);
    let failed = env.pod("failed", &["web", "db"], EXITED);
    write_status(&failed, "web", 0, None, 200);
    write_status(&failed, "db", 3, None, 100);
    let clean = env.pod("clean", &["web"], EXITED);
    env.record_codes(&clean, &[("web", 0)]);
    let garbage = env.pod("trash", &["web"], &[EXITED, &[PodState::Garbage]].concat());

    let stdout = env.ok(&["list"]);
    let rows = table_states(&stdout);
    let want = [
        ("prep", "prepared", ""),
        ("live", "running", ""),
        ("failed", "exited", "3"),
        ("clean", "exited", "0"),
        ("trash", "garbage", "?"),
    ];
    for (name, state, exit) in want {
        let row = (name.to_owned(), state.to_owned(), exit.to_owned());
        assert!(rows.contains(&row), "{row:?} missing in\n{stdout}");
    }
    assert!(stdout.contains("web,db") && stdout.contains("example.com/web,example.com/db"));

    let no_legend = env.ok(&["list", "--no-legend"]);
    assert_eq!(no_legend.lines().count(), 5, "{no_legend}");
    assert!(!no_legend.contains("NAME"), "{no_legend}");

    let list = env.json(&["list", "--format", "json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(5));
    let p = entry(&list, "prep");
    assert_eq!(p["uuid"], prepared.uuid().to_string());
    assert_eq!(p["state"], "prepared");
    assert!(p["exitCode"].is_null() && p["started"].is_null());
    assert!(
        p["created"]
            .as_str()
            .is_some_and(|t| t.contains('T') && t.ends_with('Z'))
    );
    let f = entry(&list, "failed");
    assert_eq!(f["exitCode"], 3);
    assert_eq!(f["apps"][0]["name"], "web");
    assert_eq!(f["apps"][0]["exitCode"], 0);
    assert_eq!(f["apps"][1]["exitCode"], 3);
    assert_eq!(f["apps"][1]["exited"], "1970-01-01T00:01:40Z");
    assert!(f["exited"].as_str().is_some());
    assert_eq!(entry(&list, "clean")["exitCode"], 0);
    assert_eq!(entry(&list, "live")["state"], "running");
    assert_eq!(entry(&list, "trash")["uuid"], garbage.uuid().to_string());
}

#[test]
fn a_running_pod_is_refused_by_rm_kept_by_gc_and_exited_once_its_runner_dies() {
    let env = Env::new();
    let (pod, lock) = env.running("live", &["web"]);

    let out = env.appcctl(&["rm", "live"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pod live is running; stop it first (appcctl stop live)"),
        "{stderr}"
    );
    env.ok(&["gc", "--grace-period", "0s", "--expire-prepared", "0s"]);
    assert!(exists(&pod));
    assert_eq!(
        entry(&env.json(&["list", "--format", "json"]), "live")["state"],
        "running"
    );

    drop(lock); // the runner "crashes": the kernel would drop its flock the same way
    // Another test thread's fork may hold a copy of the lock's fd until its exec (the fd is
    // close-on-exec, not close-on-fork), so the lock is free a moment later, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = env.json(&["status", "live", "--format", "json"]);
        if status["state"] != "running" || Instant::now() > deadline {
            break status;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["state"], "exited");
    assert_eq!(status["crashed"], true);
    assert!(status["exitCode"].is_null(), "no app status: unknown");
    let rows = table_states(&env.ok(&["list"]));
    assert_eq!(rows, [("live".into(), "exited".into(), "?".into())]);
}

#[test]
fn status_wait_returns_when_the_runner_releases_the_lock() {
    let env = Env::new();
    let (pod, lock) = env.running("live", &["web"]);
    write_status(&pod, "web", 0, None, 50);
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        drop(lock);
    });
    let start = Instant::now();
    let stdout = env.ok(&["status", "--wait", "live"]);
    let waited = start.elapsed();
    releaser.join().expect("releaser");
    assert!(
        waited >= Duration::from_millis(300),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
    assert!(stdout.contains("state=exited\n"), "{stdout}");
    assert!(stdout.contains("exit-code=0\n"), "{stdout}");
}

#[test]
fn status_wait_honours_the_timeout_and_without_wait_does_not_block() {
    let env = Env::new();
    let (_pod, _lock) = env.running("live", &["web"]);
    let stdout = env.ok(&["status", "live"]);
    assert!(stdout.contains("state=running\n"), "{stdout}");

    let start = Instant::now();
    let out = env.appcctl(&["status", "--wait", "--wait-timeout", "1s", "live"]);
    let waited = start.elapsed();
    assert_eq!(out.status.code(), Some(254), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("still running after 1s"),
        "{}",
        show(&out)
    );
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");

    let out = env.appcctl(&["status", "--wait-timeout", "1s", "live"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--wait-timeout needs --wait: {}",
        show(&out)
    );
}

#[test]
fn status_reports_exit_codes_times_and_the_isolator_report() {
    let env = Env::new();
    let pod = env.pod("multi", &["web", "db", "cache"], EXITED);
    // db failed first (killed by SIGKILL), web later; cache only in the record.
    write_status(&pod, "web", 2, None, 300);
    write_status(&pod, "db", 137, Some(9), 200);
    env.record_codes(&pod, &[("web", 99), ("cache", 0)]);
    let isolators = r#"[
        {"app": null, "isolator": "resource/cpu", "outcome": "enforced", "detail": null},
        {"app": "web", "isolator": "resource/memory", "outcome": "changed", "detail": "raised to 4 KiB"},
        {"app": "db", "isolator": "example.com/unknown", "outcome": "ignored", "detail": "unknown isolator"}
    ]"#;
    fs::write(pod.dir().join("isolators.json"), isolators).expect("isolators");

    let s = env.json(&["status", "multi", "--format", "json"]);
    assert_eq!(s["state"], "exited");
    assert_eq!(s["exitCode"], 137, "the first app to fail decides: {s:#}");
    let codes: Vec<(&str, i64)> = s["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["exitCode"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [("web", 2), ("db", 137), ("cache", 0)],
        "status files win"
    );
    assert_eq!(s["apps"][1]["signal"], 9);
    assert!(s["apps"][2]["exited"].is_null());
    assert_eq!(s["isolators"].as_array().map(Vec::len), Some(3));
    assert_eq!(s["isolators"][1]["app"], "web");
    assert_eq!(s["isolators"][1]["outcome"], "changed");
    assert!(s["isolators"][0]["app"].is_null());
    assert_eq!(s["warnings"].as_array().map(Vec::len), Some(0));

    let stdout = env.ok(&["status", "multi"]);
    for line in [
        "name=multi",
        &format!("uuid={}", pod.uuid()),
        "state=exited",
        "exit-code=137",
        "app-web=2",
        "app-db=137",
        "app-db-signal=9",
        "app-cache=0",
        "isolator=pod resource/cpu: enforced",
        "isolator=app:web resource/memory: changed (raised to 4 KiB)",
        "isolator=app:db example.com/unknown: ignored (unknown isolator)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} missing in\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("started=")),
        "{stdout}"
    );
}

#[test]
fn status_of_a_prepared_pod_and_of_garbage_files() {
    let env = Env::new();
    let prepared = env.pod("fresh", &["web"], &[]);
    let uuid_file = env.dir.path().join("uuid");
    fs::write(&uuid_file, format!("{}\n", prepared.uuid())).expect("uuid file");
    let stdout = env.ok(&["status", "--uuid-file", uuid_file.to_str().unwrap()]);
    assert!(stdout.contains("state=prepared\n"), "{stdout}");
    assert!(
        !stdout.contains("exit-code") && !stdout.contains("app-web"),
        "{stdout}"
    );

    let broken = env.pod("broken", &["web"], EXITED);
    fs::create_dir_all(broken.dir().join("status")).unwrap();
    fs::write(broken.dir().join("status/web.json"), "not json").unwrap();
    fs::write(broken.dir().join("isolators.json"), "{").unwrap();
    let out = env.appcctl(&["status", "broken"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pod broken: status/web.json is not"),
        "{stderr}"
    );
    assert!(stderr.contains("isolators.json is not"), "{stderr}");
    assert!(text(&out.stdout).contains("state=exited\n"));

    let out = env.appcctl(&["status", "nosuchpod"]);
    assert_eq!(out.status.code(), Some(254), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no pod matches"),
        "{}",
        show(&out)
    );
}

#[test]
fn rm_removes_each_pod_and_reports_each_failure() {
    let env = Env::new();
    let exited = env.pod("done", &["web"], EXITED);
    let prepared = env.pod("prep", &["web"], &[]);
    let garbage = env.pod("trash", &["web"], &[EXITED, &[PodState::Garbage]].concat());
    let by_file = env.pod("filed", &["web"], EXITED);
    let uuid_file = env.dir.path().join("uuid");
    fs::write(&uuid_file, by_file.uuid().to_string()).unwrap();
    let trash_uuid = garbage.uuid().to_string();

    let out = env.appcctl(&[
        "rm",
        "done",
        "nosuchpod",
        "prep",
        &trash_uuid,
        "--uuid-file",
        uuid_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(254), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rm nosuchpod: no pod matches"), "{stderr}");
    let removed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let want: Vec<String> = [&exited, &prepared, &garbage, &by_file]
        .iter()
        .map(|p| p.uuid().to_string())
        .collect();
    assert_eq!(removed, want);
    assert!(
        [&exited, &prepared, &garbage, &by_file]
            .iter()
            .all(|p| !exists(p))
    );
    assert_eq!(
        env.json(&["list", "--format", "json"]),
        serde_json::json!([])
    );
    // The names are free again.
    env.pod("done", &["web"], &[]);
}

#[test]
fn gc_removes_exited_pods_past_the_grace_period_and_is_quiet_otherwise() {
    let env = Env::new();
    let exited = env.pod("done", &["web"], EXITED);
    let prepared = env.pod("prep", &["web"], &[]);

    let stdout = env.ok(&["gc"]);
    assert_eq!(stdout, "", "nothing is old enough yet");
    assert!(exists(&exited));

    let stdout = env.ok(&["gc", "--grace-period", "0s"]);
    assert_eq!(
        stdout,
        format!("{} done: marked garbage, removed\n", exited.uuid()),
    );
    assert!(!exists(&exited) && exists(&prepared));

    let stdout = env.ok(&["gc", "--expire-prepared", "0"]);
    assert_eq!(
        stdout,
        format!("{} prep: marked garbage, removed\n", prepared.uuid())
    );
    assert_eq!(env.ok(&["gc", "--grace-period", "0s"]), "");
}

#[test]
fn cat_manifest_prints_the_pod_manifest() {
    let env = Env::new();
    let pod = env.pod("web", &["web", "db"], &[]);
    let want = manifest(&["web", "db"]);
    let uuid_file = env.dir.path().join("uuid");
    fs::write(&uuid_file, pod.uuid().to_string()).unwrap();
    for args in [
        vec!["cat-manifest", "web"],
        vec!["cat-manifest", "--pretty", "web"],
        vec!["cat-manifest", "--pretty-print", "web"],
        vec!["cat-manifest", "--uuid-file", uuid_file.to_str().unwrap()],
    ] {
        let stdout = env.ok(&args);
        let got = PodManifest::parse(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(got.value, want, "{args:?}");
        let lines = stdout.lines().count();
        let pretty = args.iter().any(|a| a.starts_with("--pretty"));
        assert_eq!(lines > 1, pretty, "{args:?}: {stdout}");
    }
}

#[test]
fn bad_durations_are_clap_errors() {
    let env = Env::new();
    for args in [
        vec!["gc", "--grace-period", "soon"],
        vec!["gc", "--expire-prepared=-5m"],
        vec!["status", "x", "--wait", "--wait-timeout", "1.5h"],
    ] {
        let out = env.appcctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("is not a duration (like 30s"), "{stderr}");
    }
    let out = env.appcctl(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a pod is required: {}",
        show(&out)
    );
}
