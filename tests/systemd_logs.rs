//! `appcctl logs` against a real journald: the systemd test host (`tests/host/`), with pods run
//! by the real `appcctl` (the host's root is an overlay of this machine's, so the binary is at
//! the same path inside) as Type=notify services started with `systemd-run`, the way
//! `appc-pod@NAME.service` runs them (the pod keeps the service).
//!
//! One host, one two-app pod `logs-demo` whose apps write stdout and stderr lines, then wait for
//! a trigger file (a host volume) before writing their last lines and exiting: the prefixes and
//! the order per app, `--app`, `-n 1`, `--format json`, an unknown app, a missing journalctl,
//! `-f` printing the late lines and returning when the pod exits, the logs after the exit; then a
//! second `logs-demo` in the same unit (a restart under the same name) shows only its own lines.
//! A second test runs a pod on this machine without systemd: `logs` says there is nothing.
//!
//! Needs root, systemd-nspawn and overlayfs; otherwise `SKIP:` (a failure with
//! `APPC_TEST_NO_SKIP=1`). Run: `cargo test --test systemd_logs -- --nocapture`

mod host;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use host::{HostOptions, RunOutput, TestHost};
use serde_json::Value;

const APPCCTL: &str = host::APPCCTL;
const DATA: &str = "/var/lib/appc-logs-test";
const IMAGE: &str = "example.com/logs";
const POD: &str = "logs-demo";
const UNIT: &str = "logs-demo.service";
/// The host directory shared with the pod's apps; `go` in it lets them finish.
const TRIGGER_DIR: &str = "/tmp/logs-trigger";

/// Every line the first pod writes (app, message, stream).
const FIRST: [(&str, &str, &str); 9] = [
    ("alpha", "alpha-out-1", "stdout"),
    ("alpha", "alpha-err-1", "stderr"),
    ("alpha", "alpha-out-2", "stdout"),
    ("beta", "beta-out-1", "stdout"),
    ("beta", "beta-err-1", "stderr"),
    ("beta", "beta-out-2", "stdout"),
    ("alpha", "alpha-late", "stdout"),
    ("alpha", "alpha-err-late", "stderr"),
    ("beta", "beta-late", "stdout"),
];
/// The lines written before the trigger.
const EARLY: usize = 6;

#[test]
fn logs_in_systemd_host() {
    let started = Instant::now();
    let Some(host) = host::boot_or_skip(HostOptions::new().target("basic.target").with_build())
    else {
        return;
    };
    eprintln!("booted {} in {:?}", host.name(), host.boot_time());
    import_image(&host);

    start_first_pod(&host);
    let early: Vec<&str> = FIRST[..EARLY].iter().map(|l| l.1).collect();
    let table = wait_for_logs(&host, &[POD], &early);
    shows_every_line_with_prefixes(&table, &FIRST[..EARLY]);
    app_filter_and_line_limit(&host);
    json_fields(&host);
    errors_are_clear(&host);
    follow_until_the_pod_exits(&host);

    // After the exit: everything, still from the journal.
    wait_inactive(&host);
    let after = logs(&host, &[POD]).expect_success("appcctl logs after the exit");
    shows_every_line_with_prefixes(&after.stdout, &FIRST);

    same_unit_later_shows_only_its_own_lines(&host);

    let report = host.shutdown().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
    eprintln!("total {:?}", started.elapsed());
}

/// A busybox image built and imported inside the host.
fn import_image(host: &TestHost) {
    let script = format!(
        r#"set -e
L=/tmp/logs-image; rm -rf $L; mkdir -p $L/rootfs/bin $L/rootfs/etc {TRIGGER_DIR}
cp /bin/busybox $L/rootfs/bin/busybox
for t in sh sleep; do ln -s busybox $L/rootfs/bin/$t; done
echo 'root:x:0:0:root:/:/bin/sh' > $L/rootfs/etc/passwd; echo 'root:x:0:' > $L/rootfs/etc/group
cat > $L/manifest <<'EOF'
{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{IMAGE}",
 "labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
 "app":{{"exec":["/bin/sh","-c","true"],"user":"0","group":"0"}}}}
EOF
{APPCCTL} image build $L /tmp/logs.aci
{APPCCTL} --dir {DATA} --insecure-options=image fetch /tmp/logs.aci
"#
    );
    let out = host.sh(&script);
    assert!(out.success(), "building the image in the host: {out}");
}

/// Runs `appcctl run` of a pod named [`POD`] with `apps` (name, shell script) as the Type=notify
/// service [`UNIT`]; returns once the pod is ready (its apps started). The scripts must hold no
/// `$` or `%` (systemd expands them in ExecStart).
fn start_pod(host: &TestHost, apps: &[(&str, &str)]) {
    let mut argv: Vec<String> = [
        "systemd-run",
        "--quiet",
        "--unit",
        UNIT,
        "--service-type=notify",
        APPCCTL,
        "--dir",
        DATA,
        "run",
        "--name",
        POD,
    ]
    .map(str::to_owned)
    .to_vec();
    argv.push("--volume".into());
    argv.push(format!("trigger,kind=host,source={TRIGGER_DIR}"));
    for (i, (name, script)) in apps.iter().enumerate() {
        if i > 0 {
            argv.push("---".into());
        }
        for word in [
            IMAGE,
            "--name",
            name,
            "--mount",
            "volume=trigger,target=/trigger",
        ] {
            argv.push(word.into());
        }
        for word in ["--exec", "/bin/sh", "--", "-c", script] {
            argv.push(word.into());
        }
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = host.run(&argv);
    if !out.success() {
        eprintln!("{}", host.journal(&["-u", UNIT, "-n", "40"]));
    }
    out.expect_success("systemd-run appcctl run");
}

fn start_first_pod(host: &TestHost) {
    let wait = "while [ ! -e /trigger/go ]; do sleep 0.1; done";
    let alpha = format!(
        "echo alpha-out-1; echo alpha-err-1 >&2; echo alpha-out-2; {wait}; \
         echo alpha-late; echo alpha-err-late >&2"
    );
    let beta = format!(
        "echo beta-out-1; echo beta-err-1 >&2; echo beta-out-2; {wait}; sleep 0.3; echo beta-late"
    );
    start_pod(host, &[("alpha", &alpha), ("beta", &beta)]);
}

/// `appcctl --dir DATA logs ARGS` inside the host.
fn logs(host: &TestHost, args: &[&str]) -> RunOutput {
    let mut argv = vec![APPCCTL, "--dir", DATA, "logs"];
    argv.extend_from_slice(args);
    host.run(&argv)
}

/// Polls `appcctl logs ARGS` until its output holds every `want` (journald stores lines
/// asynchronously); returns that output.
fn wait_for_logs(host: &TestHost, args: &[&str], want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = logs(host, args);
        if out.success() && want.iter().all(|w| out.stdout.contains(w)) {
            return out.stdout;
        }
        if Instant::now() >= deadline {
            let journal = host.journal(&["-u", UNIT, "-o", "short-precise"]);
            panic!(
                "appcctl logs {args:?} never showed all of {want:?}:\n{out}\njournal:\n{journal}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every line appears once with its app's prefix, and each app's stdout lines keep their order.
fn shows_every_line_with_prefixes(table: &str, expected: &[(&str, &str, &str)]) {
    let lines: Vec<&str> = table.lines().collect();
    for (app, message, _) in expected {
        let want = format!("{app:<5} | {message}");
        let count = lines.iter().filter(|l| **l == want).count();
        assert_eq!(count, 1, "{want:?} should appear once in:\n{table}");
    }
    assert_eq!(lines.len(), expected.len(), "unexpected lines in:\n{table}");
    for app in ["alpha", "beta"] {
        let stdout: Vec<&str> = expected
            .iter()
            .filter(|(a, _, s)| *a == app && *s == "stdout")
            .map(|(_, m, _)| *m)
            .collect();
        let shown: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{app:<5} | ")))
            .filter(|m| stdout.contains(m))
            .collect();
        assert_eq!(shown, stdout, "{app}'s stdout out of order in:\n{table}");
    }
}

fn app_filter_and_line_limit(host: &TestHost) {
    let beta = logs(host, &["--app", "beta", POD]).expect_success("logs --app beta");
    let lines: Vec<&str> = beta.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{beta}");
    assert!(lines.iter().all(|l| l.starts_with("beta  | ")), "{beta}");
    assert!(
        lines.contains(&"beta  | beta-err-1") && !beta.stdout.contains("alpha"),
        "{beta}"
    );

    let last = logs(host, &["-n", "1", "--app", "alpha", POD]).expect_success("logs -n 1");
    assert_eq!(last.stdout.lines().count(), 1, "{last}");
    assert!(last.stdout.starts_with("alpha | alpha-"), "{last}");
    let last = logs(host, &["--lines", "1", POD]).expect_success("logs --lines 1");
    assert_eq!(last.stdout.lines().count(), 1, "{last}");
}

fn json_fields(host: &TestHost) {
    let out = logs(host, &["--format", "json", POD]).expect_success("logs --format json");
    let entries: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(entries.len(), EARLY, "{out}");
    for (app, message, stream) in &FIRST[..EARLY] {
        let e = entries
            .iter()
            .find(|e| e["message"] == *message)
            .unwrap_or_else(|| panic!("no entry {message:?} in {out}"));
        assert_eq!(e["app"], *app, "{e}");
        assert_eq!(e["stream"], *stream, "{e}");
        let priority = if *stream == "stderr" { 3 } else { 6 };
        assert_eq!(e["priority"], priority, "{e}");
        let time = e["time"].as_str().unwrap_or_else(|| panic!("time: {e}"));
        // 2024-01-02T03:04:05.123456Z
        let parsed =
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339);
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
            "{time}"
        );
        let age =
            time::OffsetDateTime::now_utc() - parsed.unwrap_or_else(|e| panic!("{time}: {e}"));
        assert!(
            age > time::Duration::ZERO && age < time::Duration::minutes(5),
            "{time} is not a time of this run"
        );
    }
}

fn errors_are_clear(host: &TestHost) {
    let out = logs(host, &["--app", "gamma", POD]);
    assert_eq!(out.code, Some(254), "{out}");
    assert!(
        out.stderr.contains("no app gamma") && out.stderr.contains("alpha, beta"),
        "{out}"
    );
    let out = host.run(&[
        "env",
        "PATH=/nonexistent",
        APPCCTL,
        "--dir",
        DATA,
        "logs",
        POD,
    ]);
    assert_eq!(out.code, Some(254), "{out}");
    assert!(
        out.stderr.contains("journalctl") && out.stderr.contains("systemd"),
        "{out}"
    );
    let out = logs(host, &["no-such-pod"]);
    assert_eq!(out.code, Some(254), "{out}");
}

/// `logs -f` on the running pod prints the early lines, then the late ones once the trigger
/// lets the apps write them, and returns by itself when the pod exits.
fn follow_until_the_pod_exits(host: &TestHost) {
    let script = format!(
        "(timeout 30 {APPCCTL} --dir {DATA} logs -f {POD} >/tmp/follow.out 2>/tmp/follow.err; \
         echo $? >/tmp/follow.rc) >/dev/null 2>&1 &"
    );
    host.sh(&script).expect_success("starting logs -f");
    let early = "grep -q beta-out-2 /tmp/follow.out && grep -q alpha-out-2 /tmp/follow.out";
    if let Err(e) = host.wait_for(early, Duration::from_secs(10)) {
        panic!("logs -f did not print the early lines: {e}");
    }
    let still = host.run(&["cat", "/tmp/follow.rc"]);
    assert!(
        !still.success(),
        "logs -f returned while the pod runs: {still}"
    );
    host.run(&["touch", &format!("{TRIGGER_DIR}/go")])
        .expect_success("touching the trigger");
    let started = Instant::now();
    if let Err(e) = host.wait_for("test -s /tmp/follow.rc", Duration::from_secs(15)) {
        let out = host.run(&["cat", "/tmp/follow.out", "/tmp/follow.err"]);
        panic!("logs -f did not return after the pod exited: {e}\n{out}");
    }
    eprintln!(
        "  logs -f returned {:?} after the trigger",
        started.elapsed()
    );
    let rc = host.run(&["cat", "/tmp/follow.rc"]).expect_success("rc");
    let err = host.run(&["cat", "/tmp/follow.err"]).stdout;
    assert_eq!(rc.stdout_trimmed(), "0", "logs -f failed: {err}");
    let out = host.run(&["cat", "/tmp/follow.out"]).expect_success("out");
    shows_every_line_with_prefixes(&out.stdout, &FIRST);
}

/// Waits until the pod's service is gone (the pod exited, the transient unit was collected).
fn wait_inactive(host: &TestHost) {
    let script = format!("! systemctl is-active -q {UNIT}");
    if let Err(e) = host.wait_for(&script, Duration::from_secs(15)) {
        panic!("{UNIT} is still active: {e}");
    }
    let status = host
        .run(&[APPCCTL, "--dir", DATA, "status", POD])
        .expect_success("status");
    assert!(status.stdout.contains("state=exited"), "{status}");
}

/// The pod is removed and a new pod of the same name runs in the same unit, a second later
/// (the record's times are whole seconds): its logs hold only its own lines.
fn same_unit_later_shows_only_its_own_lines(host: &TestHost) {
    host.run(&[APPCCTL, "--dir", DATA, "rm", POD])
        .expect_success("rm the first pod");
    std::thread::sleep(Duration::from_millis(1100));
    start_pod(
        host,
        &[
            ("alpha", "echo second-alpha; sleep 0.2"),
            ("beta", "echo second-beta >&2; sleep 0.2"),
        ],
    );
    let table = wait_for_logs(host, &[POD], &["second-alpha", "second-beta"]);
    wait_inactive(host);
    let table_after = logs(host, &[POD]).expect_success("logs of the second pod");
    for out in [&table, &table_after.stdout] {
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            ["alpha | second-alpha", "beta  | second-beta"],
            "only the second pod's lines:\n{out}"
        );
    }
}

// ---- without systemd (this machine) ----

/// A pod run on a machine without systemd has no unit: `logs` explains there is nothing.
#[test]
fn pod_without_systemd_has_nothing_to_show() {
    if Path::new("/run/systemd/system").exists() {
        eprintln!("SKIP: systemd is PID 1 on this machine; every pod gets a unit here");
        return;
    }
    if let Some(reason) = host::skip_unless_capable() {
        host::skip_or_fail(&reason);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let rootfs = layout.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    std::fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{IMAGE}",
            "labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
            "app":{{"exec":["/bin/sh","-c","echo hi"],"user":"0","group":"0"}}}}"#
        ),
    )
    .expect("manifest");
    let aci = dir.path().join("logs.aci");
    let data = dir.path().join("data");
    let data = data.to_str().expect("UTF-8 path");
    let appcctl = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_appcctl"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running appcctl: {e}"))
    };
    let ok = |out: Output, what: &str| {
        assert!(out.status.success(), "{what}: {out:?}");
    };
    let layout = layout.to_str().expect("UTF-8 path");
    let aci = aci.to_str().expect("UTF-8 path");
    ok(appcctl(&["image", "build", layout, aci]), "image build");
    ok(
        appcctl(&["--dir", data, "--insecure-options=image", "fetch", aci]),
        "fetch",
    );
    ok(
        appcctl(&["--dir", data, "run", "--name", "plain", IMAGE]),
        "run",
    );
    let out = appcctl(&["--dir", data, "logs", "plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{out:?}");
    assert!(
        stderr.contains("pod plain ran without systemd")
            && stderr.contains("went to the terminal of `appcctl run`"),
        "{stderr}"
    );
    ok(appcctl(&["--dir", data, "rm", "plain"]), "rm");
}
