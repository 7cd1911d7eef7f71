//! Pods under a real systemd (the test host): `appcctl run` from a shell puts the pod into a
//! transient scope `appc-<name>.scope` in machine.slice with its limits as properties, and
//! registers it with machined; `machinectl terminate` and `appcctl stop` both end it, and
//! `appcctl status` then says exited.

mod host;

use std::time::Duration;

use host::{HostOptions, TestHost};

const APPCCTL: &str = host::APPCCTL;
const DATA: &str = "/var/lib/appc-pods-test";

#[test]
fn scope_pods_are_machines() {
    let Some(host) = host::boot_or_skip(HostOptions::new().with_build()) else {
        return;
    };
    import_image(&host);

    start_in_background(
        &host,
        "sc1",
        &["--memory", "64Mi", "--cpu", "500m"],
        "sleep 60",
    );
    wait(&host, "systemctl is-active appc-sc1.scope");
    let props = show(
        &host,
        "appc-sc1.scope",
        "Slice,MemoryMax,CPUQuotaPerSecUSec,Delegate",
    );
    assert!(props.contains("Slice=machine.slice"), "{props}");
    assert!(props.contains("MemoryMax=67108864"), "{props}");
    assert!(props.contains("CPUQuotaPerSecUSec=500ms"), "{props}");
    assert!(props.contains("Delegate=yes"), "{props}");
    // The app itself is in the scope (the init's child inherits the scope's cgroup).
    wait(&host, "pgrep -x sleep"); // the app starts only after its scope exists
    let cg = host.sh("cat /proc/$(pgrep -x sleep | head -1)/cgroup");
    assert!(cg.stdout.contains("machine.slice/appc-sc1.scope"), "{cg}");
    let list = host.run(&["machinectl", "list", "--no-legend"]);
    assert!(
        list.stdout.contains("sc1") && list.stdout.contains("container"),
        "{list}"
    );
    let status = host.run(&["machinectl", "status", "sc1"]);
    assert!(status.stdout.contains("appc-sc1.scope"), "{status}");
    let record = appcctl(&host, &["status", "--format", "json", "sc1"]);
    assert!(record.contains("\"state\": \"running\""), "{record}");

    // machinectl terminate ends the pod; appcctl records it as exited.
    let term = host.run(&["machinectl", "terminate", "sc1"]);
    assert!(term.success(), "{term}");
    wait(
        &host,
        &format!("{APPCCTL} --dir {DATA} status sc1 | grep -qx state=exited"),
    );
    wait(&host, "! systemctl is-active -q appc-sc1.scope");

    // appcctl stop on a scope pod: graceful, the scope goes away, no mount is left.
    start_in_background(
        &host,
        "sc2 --slice appc-test.slice",
        &[],
        "echo sc2-hello; echo sc2-oops >&2; sleep 60",
    );
    wait(&host, "systemctl is-active appc-sc2.scope");
    // A scope pod started from a shell (output not a terminal) logs to the journal, under its
    // scope, with the app as identifier; `appcctl logs` finds it there.
    wait(
        &host,
        &format!("{APPCCTL} --dir {DATA} logs sc2 | grep -qx sc2-oops"),
    );
    let journal = host.journal(&["-o", "cat", "_SYSTEMD_UNIT=appc-sc2.scope", "-t", "pods"]);
    assert!(
        journal.contains("sc2-hello") && journal.contains("sc2-oops"),
        "{journal}"
    );
    // enter joins the pod's scope too (and its namespaces: PID 1 is the pod's init).
    let entered = appcctl(
        &host,
        &[
            "enter",
            "sc2",
            "/bin/sh",
            "-c",
            "cat /proc/self/cgroup; cat /proc/1/comm",
        ],
    );
    assert!(
        entered.contains("appc-test.slice/appc-sc2.scope"),
        "--slice: {entered}"
    );
    assert!(entered.contains("appc-init"), "{entered}");
    let stop = appcctl(&host, &["stop", "sc2"]);
    assert!(stop.contains("sc2: stopped"), "{stop}");
    wait(&host, "! systemctl is-active -q appc-sc2.scope");
    let mounts = host.sh(&format!("grep -c {DATA} /proc/self/mountinfo"));
    assert_eq!(mounts.stdout_trimmed(), "0", "pod mounts left: {mounts}");

    terminal_echo(&host);
    keep_unit(&host);
    own_diagnostics(&host);

    // A failing app: `run` exits with its status, also under a scope.
    let out = host.sh(&format!(
        "{APPCCTL} --dir {DATA} run --name sc3 example.com/pods --exec /bin/sh -- -c 'exit 5'"
    ));
    assert_eq!(out.code, Some(5), "{out}");
    host.shutdown().expect("teardown");
}

/// `appcctl run` on a terminal (a pty from `script`): the apps still log to the journal, and
/// appcctl shows their lines on the terminal too, prefixed by the app when there are several.
fn terminal_echo(host: &TestHost) {
    let run = format!(
        "{APPCCTL} --dir {DATA} run --name sc4 \
         example.com/pods --name first --exec /bin/sh -- -c 'echo one-out; echo one-err >&2' --- \
         example.com/pods --name second --exec /bin/sh -- -c 'echo two-out'"
    );
    let out = host.sh(&format!("script -qec \"{run}\" /dev/null"));
    assert!(out.success(), "{out}");
    let shown: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    for line in ["first  | one-out", "first  | one-err", "second | two-out"] {
        assert!(shown.contains(&line), "{line:?} not on the terminal: {out}");
    }
    let logs = appcctl(host, &["logs", "sc4"]);
    assert!(
        logs.contains("first  | one-out") && logs.contains("second | two-out"),
        "{logs}"
    );
}

/// `--keep-unit`: the pod stays in the (here: scope) unit appcctl runs in; no scope of its own.
fn keep_unit(host: &TestHost) {
    let out = host.sh(&format!(
        "systemd-run --quiet --scope --unit kept-sc5 {APPCCTL} --dir {DATA} run --keep-unit \
         --name sc5 example.com/pods --exec /bin/sh -- -c 'cat /proc/self/cgroup'"
    ));
    assert!(out.success(), "{out}");
    let logs = appcctl(host, &["logs", "sc5"]);
    assert!(
        logs.contains("/kept-sc5.scope"),
        "not in the kept unit: {logs}"
    );
    let record = appcctl(host, &["status", "--format", "json", "sc5"]);
    assert!(record.contains("kept-sc5.scope"), "{record}");
    let units = host.run(&[
        "systemctl",
        "list-units",
        "--all",
        "--no-legend",
        "appc-sc5.scope",
    ]);
    assert!(
        !units.stdout.contains("appc-sc5"),
        "a scope was made: {units}"
    );
}

/// appcctl's own diagnostics reach the journal under the identifier `appcctl` with the pod's
/// fields, apart from the apps' output; on stderr they keep their one-line form.
fn own_diagnostics(host: &TestHost) {
    let out = host.sh(&format!(
        "{APPCCTL} --dir {DATA} --debug run --name sc6 example.com/pods --exec /bin/sh -- -c true"
    ));
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("appcctl: resources managed by Scope"),
        "{out}"
    );
    let query = "journalctl -o json -t appcctl APPC_POD=sc6 | grep -c 'resources managed by Scope'";
    host.wait_for(query, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", host.journal(&["-t", "appcctl", "-n", "20"])));
    let apps = host.journal(&["-o", "cat", "-t", "pods"]);
    assert!(!apps.contains("resources managed"), "{apps}");
}

fn import_image(host: &TestHost) {
    let script = format!(
        r#"set -e
L=/tmp/pods-image; rm -rf $L; mkdir -p $L/rootfs/bin $L/rootfs/etc
cp /bin/busybox $L/rootfs/bin/busybox; ln -s busybox $L/rootfs/bin/sh; ln -s busybox $L/rootfs/bin/sleep
echo 'root:x:0:0:root:/:/bin/sh' > $L/rootfs/etc/passwd; echo 'root:x:0:' > $L/rootfs/etc/group
cat > $L/manifest <<'EOF'
{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/pods",
 "labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
 "app":{{"exec":["/bin/sh","-c","sleep 60"],"user":"0","group":"0"}}}}
EOF
{APPCCTL} image build $L /tmp/pods.aci
{APPCCTL} --dir {DATA} --insecure-options=image fetch /tmp/pods.aci
"#
    );
    let out = host.sh(&script);
    assert!(out.success(), "building the image in the host: {out}");
}

/// `appcctl run` from a plain shell of the host (not a service: so it allocates a scope).
/// `name` may be followed by more pod flags; `flags` are the app's.
fn start_in_background(host: &TestHost, name: &str, flags: &[&str], command: &str) {
    let log = name.split(' ').next().unwrap_or(name);
    let script = format!(
        "nohup {APPCCTL} --dir {DATA} run --name {name} example.com/pods {} \
         --exec /bin/sh -- -c '{command}' > /tmp/{log}.log 2>&1 &",
        flags.join(" ")
    );
    let out = host.sh(&script);
    assert!(out.success(), "{out}");
}

fn wait(host: &TestHost, condition: &str) {
    host.wait_for(condition, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{condition}: {e}\n{}", host.sh("cat /tmp/sc*.log")));
}

fn show(host: &TestHost, unit: &str, props: &str) -> String {
    host.run(&["systemctl", "show", "-p", props, unit]).stdout
}

fn appcctl(host: &TestHost, args: &[&str]) -> String {
    let mut argv = vec![APPCCTL, "--dir", DATA];
    argv.extend_from_slice(args);
    let out = host.run(&argv);
    format!("{}{}", out.stdout, out.stderr)
}

/// Benchmark, not a test (it asserts only that the runs worked and every line reached the
/// terminal): what the terminal echo of `appcctl run` costs. An app writes N lines; `run` with
/// its stdout piped (the lines go to the journal only; `run` ends when the app does) against
/// `run` on a pty (`run` ends once every line was read back from the journal and shown, so it
/// waits for journald to ingest them: the app itself is not held up), alternately, 3 runs
/// each. journald's rate limit is lifted in the host first.
/// Run: `cargo test --test systemd_pods -- --ignored --nocapture echo_cost`
#[test]
#[ignore = "benchmark: prints timings"]
fn echo_cost() {
    let Some(host) = host::boot_or_skip(HostOptions::new().with_build()) else {
        return;
    };
    import_image(&host);
    let conf = "mkdir -p /etc/systemd/journald.conf.d && \
        printf '[Journal]\\nRateLimitIntervalSec=0\\n' > /etc/systemd/journald.conf.d/bench.conf && \
        systemctl restart systemd-journald";
    assert!(host.sh(conf).success());
    for lines in [2_000, 20_000] {
        let run = format!(
            "{APPCCTL} --dir {DATA} run example.com/pods --exec /bin/busybox -- seq 1 {lines}"
        );
        let piped = format!("{run} > /dev/null");
        let pty = format!("script -qec '{run}' /tmp/echo.out > /dev/null");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            a.push(timed(&host, &piped));
            b.push(timed(&host, &pty));
            let shown = host.sh("grep -cE '^[0-9]+' /tmp/echo.out");
            assert_eq!(
                shown.stdout_trimmed(),
                lines.to_string(),
                "lines on the terminal"
            );
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        println!(
            "{lines} lines: run piped {:.3} s, run on a pty with echo {:.3} s (medians), ratio {:.2}",
            a[1],
            b[1],
            b[1] / a[1]
        );
    }
    host.shutdown().expect("teardown");
}

fn timed(host: &TestHost, script: &str) -> f64 {
    let start = std::time::Instant::now();
    let out = host.sh(script);
    assert!(out.success(), "{out}");
    start.elapsed().as_secs_f64()
}
