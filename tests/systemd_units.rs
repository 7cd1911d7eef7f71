//! Proves the files in `units/` inside a booted systemd (the test host, `tests/host/`): every
//! unit passes `systemd-analyze verify`, sysusers.d creates the `appc` group, tmpfiles.d creates
//! the directories with the declared modes and owners, the preset enables the gc timer, the gc
//! service runs to success, and `appc-pod@NAME.service` runs a real pod from
//! `/etc/appc/pods/NAME.json` (its output in the unit's journal, its exit status the unit's,
//! a restart after an exited run, a graceful `systemctl stop` that leaves no mounts).
//!
//! The real `appcctl` and `appc-init` of this build are installed where a package puts them
//! (`/usr/bin/appcctl`, `/usr/libexec/appc-pod/appc-init`): the units name those paths, and
//! `systemd-analyze verify` checks that the binaries exist.
//!
//! Inside the host systemd is PID 1, so `appcctl run` keeps the service it runs in (nspawn's
//! `--keep-unit`): the pod's processes are in `appc-pod@NAME.service`, whose Type=notify start
//! completes on appcctl's READY=1, and journald adds the unit's `APPC_POD=NAME` to the app's
//! lines. The pod root needs no workaround: the host's `/var/lib/appc` is on its overlay root,
//! and appcctl falls back to copying the image trees (overlayfs on overlayfs is refused).
//!
//! Needs root, systemd-nspawn and overlayfs; otherwise the test prints `SKIP: <reason>`, or fails
//! when `APPC_TEST_NO_SKIP=1`.
//! Run: `APPC_TEST_NO_SKIP=1 cargo test --test systemd_units -- --nocapture`

mod host;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use host::{HostOptions, TestHost};
use serde_json::{Value, json};

/// The unit files, installed where a package installs them.
const UNITS: [&str; 3] = ["appc-pod@.service", "appc-gc.service", "appc-gc.timer"];
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const PRESET: &str = "/usr/lib/systemd/system-preset/80-appc.preset";
const SYSUSERS: &str = "/usr/lib/sysusers.d/appc.conf";
const TMPFILES: &str = "/usr/lib/tmpfiles.d/appc.conf";

/// Where the demo image's layout and archive are made inside the host.
const LAYOUT: &str = "/root/demo-layout";
const ACI: &str = "/root/demo.aci";
const IMAGE: &str = "example.com/units-demo";

/// appc-pod@.service's `TimeoutStopSec=`.
const TIMEOUT_STOP: Duration = Duration::from_secs(30);

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("units")
}

/// One host for everything: a boot costs seconds, and the checks build on each other (the
/// tmpfiles step creates the store directory the pods use).
#[test]
fn units_work_in_a_booted_systemd() {
    let appcctl = PathBuf::from(env!("CARGO_BIN_EXE_appcctl"));
    let init = appcctl.with_file_name("appc-init");
    assert!(
        init.is_file(),
        "appc-init is not beside appcctl: {}",
        init.display()
    );
    let units = units_dir();
    let mut opts = HostOptions::new()
        .target("basic.target")
        .install(&appcctl, "/usr/bin/appcctl", 0o755)
        .install(&init, "/usr/libexec/appc-pod/appc-init", 0o755)
        .install(units.join("80-appc.preset"), PRESET, 0o644);
    for unit in UNITS {
        opts = opts.install(units.join(unit), &format!("{UNIT_DIR}/{unit}"), 0o644);
    }
    let Some(host) = host::boot_or_skip(opts) else {
        return;
    };
    eprintln!("booted {} in {:?}", host.name(), host.boot_time());

    timed("verify", || every_unit_verifies_cleanly(&host));
    timed("sysusers", || sysusers_creates_the_group(&host));
    timed("tmpfiles", || tmpfiles_creates_the_directories(&host));
    timed("preset", || preset_enables_the_gc_timer(&host));
    timed("gc service", || {
        gc_service_succeeds_on_an_empty_store(&host)
    });
    timed("image", || import_demo_image(&host));
    timed("pod runs", || pod_runs_through_the_template(&host));
    timed("pod stops", || pod_restarts_and_stops_gracefully(&host));
    timed("pod crashes", || crashing_pod_fails_the_unit(&host));

    let report = timed("teardown", || host.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
}

/// Runs one check and prints how long it took (visible with `--nocapture`).
fn timed<T>(what: &str, check: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = check();
    eprintln!("  {what}: {:?}", started.elapsed());
    result
}

/// `systemd-analyze verify` prints nothing for any unit: no unknown setting, no bad value, no
/// missing binary (the real ones are installed), no missing dependency.
fn every_unit_verifies_cleanly(host: &TestHost) {
    for unit in UNITS {
        let path = format!("{UNIT_DIR}/{unit}");
        let out = host.run(&["systemd-analyze", "verify", &path]);
        assert!(
            out.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
            "systemd-analyze verify {unit} is not clean:\n{out}"
        );
    }
}

/// sysusers.d/appc.conf: the group does not exist, `systemd-sysusers` creates it.
fn sysusers_creates_the_group(host: &TestHost) {
    let before = host.run(&["getent", "group", "appc"]);
    assert!(!before.success(), "group appc exists already:\n{before}");
    let conf = std::fs::read(units_dir().join("sysusers.d/appc.conf"))
        .expect("reading units/sysusers.d/appc.conf");
    host.write_file(SYSUSERS, &conf, 0o644)
        .unwrap_or_else(|e| panic!("{e}"));
    host.run(&["systemd-sysusers", "appc.conf"])
        .expect_success("systemd-sysusers appc.conf");
    let group = host
        .run(&["getent", "group", "appc"])
        .expect_success("getent group appc");
    let gid: u32 = group
        .stdout_trimmed()
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("getent output: {group}"));
    assert!(
        gid > 0 && gid < 1000,
        "appc must be a system group: {group}"
    );
}

/// tmpfiles.d/appc.conf: `systemd-tmpfiles --create` makes every directory with the declared
/// mode, owner and group.
fn tmpfiles_creates_the_directories(host: &TestHost) {
    // The host's root is an overlay of this machine's: directories the machine may have (from a
    // demo run) are hidden first, so the test sees what tmpfiles creates. The guard makes sure
    // that only the overlay is written.
    host.sh(
        "[ \"$(stat -f -c %T /)\" = overlayfs ] && rm -rf /var/lib/appc /etc/appc /run/appc \
         && ! [ -e /var/lib/appc ]",
    )
    .expect_success("clearing the appc directories of the host");
    let conf = std::fs::read(units_dir().join("tmpfiles.d/appc.conf"))
        .expect("reading units/tmpfiles.d/appc.conf");
    host.write_file(TMPFILES, &conf, 0o644)
        .unwrap_or_else(|e| panic!("{e}"));
    host.run(&["systemd-tmpfiles", "--create", "appc.conf"])
        .expect_success("systemd-tmpfiles --create appc.conf");
    for (dir, want) in [
        ("/var/lib/appc", "directory 750 root appc"),
        ("/etc/appc", "directory 755 root root"),
        ("/etc/appc/pods", "directory 755 root root"),
        ("/run/appc", "directory 755 root root"),
    ] {
        let out = host
            .run(&["stat", "-c", "%F %a %U %G", dir])
            .expect_success("stat");
        assert_eq!(out.stdout_trimmed(), want, "{dir}");
    }
}

/// 80-appc.preset: `systemctl preset` enables the timer, which then runs.
fn preset_enables_the_gc_timer(host: &TestHost) {
    let before = host.run(&["systemctl", "is-enabled", "appc-gc.timer"]);
    assert_eq!(before.stdout_trimmed(), "disabled", "{before}");
    host.run(&["systemctl", "preset", "appc-gc.timer"])
        .expect_success("systemctl preset appc-gc.timer");
    let after = host.run(&["systemctl", "is-enabled", "appc-gc.timer"]);
    assert_eq!(after.stdout_trimmed(), "enabled", "{after}");
    host.run(&["systemctl", "start", "appc-gc.timer"])
        .expect_success("starting appc-gc.timer");
    let show = props(host, "appc-gc.timer", "ActiveState,NextElapseUSecRealtime");
    assert_eq!(show["ActiveState"], "active", "{show:?}");
    assert!(
        !show["NextElapseUSecRealtime"].is_empty(),
        "the timer has no next elapse: {show:?}"
    );
}

/// appc-gc.service with an empty store: both commands succeed, the oneshot ends inactive.
fn gc_service_succeeds_on_an_empty_store(host: &TestHost) {
    host.run(&["systemctl", "start", "appc-gc.service"])
        .expect_success("systemctl start appc-gc.service");
    let show = props(host, "appc-gc.service", "ActiveState,Result,ExecMainStatus");
    assert_eq!(show["ActiveState"], "inactive", "{show:?}");
    assert_eq!(show["Result"], "success", "{show:?}");
    assert_eq!(show["ExecMainStatus"], "0", "{show:?}");
}

/// Builds a busybox image inside the host (the host's `/bin/busybox` is the machine's,
/// busybox-static) and imports it into the host's store, `/var/lib/appc`.
fn import_demo_image(host: &TestHost) {
    let manifest = json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": IMAGE,
        "labels": [{"name": "version", "value": "1.0"}],
        "app": {"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"},
    });
    host.write_file(
        &format!("{LAYOUT}/manifest"),
        manifest.to_string().as_bytes(),
        0o644,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    host.sh(&format!(
        "mkdir -p {LAYOUT}/rootfs/bin && cp /bin/busybox {LAYOUT}/rootfs/bin/busybox"
    ))
    .expect_success("copying busybox into the layout");
    host.run(&["appcctl", "image", "build", LAYOUT, ACI])
        .expect_success("appcctl image build");
    host.run(&["appcctl", "--insecure-options=image", "fetch", ACI])
        .expect_success("appcctl fetch");
}

/// Writes `/etc/appc/pods/NAME.json`: one app of the demo image running `sh -c SCRIPT`.
fn write_pod(host: &TestHost, name: &str, script: &str) {
    let pod = json!({
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [{
            "name": "main",
            "image": {"name": IMAGE},
            "app": {
                "exec": ["/bin/busybox", "sh", "-c", script],
                "user": "0",
                "group": "0",
            },
        }],
    });
    host.write_file(
        &format!("/etc/appc/pods/{name}.json"),
        pod.to_string().as_bytes(),
        0o644,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `systemctl start appc-pod@demo`: the pod runs, exits 0, the unit ends inactive with
/// Result=success, the app's output is in the unit's journal and the exited pod stays listed.
fn pod_runs_through_the_template(host: &TestHost) {
    write_pod(
        host,
        "demo",
        "echo hello-from-demo; echo oops-from-demo >&2; /bin/busybox sleep 2",
    );
    // Type=notify: `systemctl start` returns once appcctl sent READY=1, so the pod runs now.
    host.run(&["systemctl", "start", "appc-pod@demo.service"])
        .expect_success("systemctl start appc-pod@demo");
    let status = wait_pod_state(host, "demo", "running", Duration::from_secs(1));
    assert_eq!(status["name"], "demo", "{status}");
    let text = props(host, "appc-pod@demo.service", "StatusText");
    assert!(text["StatusText"].contains("running main"), "{text:?}");
    // machined knows the pod, held by the service it kept.
    let machine = host.run(&["machinectl", "show", "demo"]);
    assert!(
        machine.stdout.contains("Unit=appc-pod@demo.service")
            && machine.stdout.contains("Class=container"),
        "{machine}"
    );
    // The pod keeps the service: its app's processes are in the unit's cgroup.
    let cgroups = host.sh("cat /proc/$(pgrep -f 'busybox sleep 2' | head -1)/cgroup");
    assert!(
        cgroups.stdout.contains("appc-pod@demo.service"),
        "{cgroups}"
    );
    wait_unit_state(
        host,
        "appc-pod@demo.service",
        "inactive",
        Duration::from_secs(15),
    );
    let show = props(host, "appc-pod@demo.service", "Result,ExecMainStatus");
    assert_eq!(show["Result"], "success", "{show:?}");
    assert_eq!(show["ExecMainStatus"], "0", "{show:?}");
    // Each app writes to its own journald streams: identifier = app name, stderr at err (3).
    host.wait_for(
        "journalctl --no-pager -q -u appc-pod@demo.service -t main -p err APPC_POD=demo -o cat \
         | grep -qx oops-from-demo",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| {
        panic!(
            "no stderr line at priority err: {e}\n{}",
            unit_log(host, "demo")
        )
    });
    host.wait_for(
        "journalctl --no-pager -q -u appc-pod@demo.service -t main APPC_POD=demo -o cat \
         | grep -qx hello-from-demo",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| {
        panic!(
            "the app's output is not in the unit's journal: {e}\n{}",
            host.journal(&["-u", "appc-pod@demo.service"])
        )
    });
    let listed = list_pod(host, "demo");
    assert_eq!(listed["state"], "exited", "{listed}");
    assert_eq!(listed["exitCode"], 0, "{listed}");
}

/// A second start of the same instance (the exited pod is removed by ExecStartPre), then
/// `systemctl stop` while the app sleeps: the stop is graceful and quick, the unit ends
/// inactive, the pod is kept as exited, and no pod mount is left in the host.
fn pod_restarts_and_stops_gracefully(host: &TestHost) {
    let first = list_pod(host, "demo");
    write_pod(host, "demo", "echo second-run; exec /bin/busybox sleep 30");
    let started = host.run(&["systemctl", "start", "appc-pod@demo.service"]);
    assert!(started.success(), "{started}\n{}", unit_log(host, "demo"));
    let running = wait_pod_state(host, "demo", "running", Duration::from_secs(10));
    assert_ne!(
        running["uuid"], first["uuid"],
        "the second start must be a new pod"
    );
    let stop = host.run_timeout(
        &["systemctl", "stop", "appc-pod@demo.service"],
        TIMEOUT_STOP + Duration::from_secs(10),
    );
    assert!(stop.success(), "systemctl stop:\n{stop}");
    assert!(
        stop.elapsed < TIMEOUT_STOP,
        "the stop took {:?}, TimeoutStopSec is {TIMEOUT_STOP:?}",
        stop.elapsed
    );
    eprintln!("    systemctl stop took {:?}", stop.elapsed);
    let show = props(
        host,
        "appc-pod@demo.service",
        "ActiveState,Result,ExecMainStatus,ExecMainCode",
    );
    assert_eq!(
        show["ActiveState"],
        "inactive",
        "{show:?}\n{}",
        unit_log(host, "demo")
    );
    assert_eq!(
        show["Result"],
        "success",
        "{show:?}\n{}",
        unit_log(host, "demo")
    );
    let stopped = list_pod(host, "demo");
    assert_eq!(stopped["uuid"], running["uuid"], "{stopped}");
    assert_eq!(stopped["state"], "exited", "kept for inspection: {stopped}");
    // Not a bare `grep appc`: the host's own name (in its overlay's options) contains "appc".
    let uuid = running["uuid"].as_str().expect("uuid in the status");
    let pod_mounts = format!("grep -e /var/lib/appc -e {uuid} /proc/self/mountinfo");
    let mounts = host.sh(&pod_mounts);
    assert!(
        mounts.code == Some(1) && mounts.stdout.is_empty(),
        "pod mounts left in the host:\n{mounts}"
    );
    assert_no_pod_cgroups(host, uuid);
}

/// An app that exits 3: the unit fails with ExecMainStatus=3.
fn crashing_pod_fails_the_unit(host: &TestHost) {
    write_pod(host, "crash", "echo about-to-crash; exit 3");
    host.run(&["systemctl", "start", "appc-pod@crash.service"])
        .expect_success("systemctl start appc-pod@crash");
    wait_unit_state(
        host,
        "appc-pod@crash.service",
        "failed",
        Duration::from_secs(15),
    );
    let show = props(host, "appc-pod@crash.service", "Result,ExecMainStatus");
    assert_eq!(show["Result"], "exit-code", "{show:?}");
    assert_eq!(
        show["ExecMainStatus"],
        "3",
        "{show:?}\n{}",
        unit_log(host, "crash")
    );
    let listed = list_pod(host, "crash");
    assert_eq!(listed["exitCode"], 3, "{listed}");
    assert_no_pod_cgroups(host, listed["uuid"].as_str().expect("uuid in the list"));
}

// --- helpers -------------------------------------------------------------------------------------

/// `systemctl show -p PROPS UNIT` as a map.
fn props(host: &TestHost, unit: &str, props: &str) -> std::collections::HashMap<String, String> {
    let out = host
        .run(&["systemctl", "show", "-p", props, unit])
        .expect_success("systemctl show");
    out.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// No cgroupfs-manager cgroups (`appc/UUID`) exist for the pod: under systemd it keeps the unit.
fn assert_no_pod_cgroups(host: &TestHost, uuid: &str) {
    let left = host.sh(&format!(
        "ls -d /sys/fs/cgroup/*/appc/{uuid} /sys/fs/cgroup/appc/{uuid}"
    ));
    assert!(
        left.stdout.trim().is_empty(),
        "cgroups of pod {uuid} are left:\n{left}"
    );
}

/// The unit's journal, for failure messages.
fn unit_log(host: &TestHost, instance: &str) -> String {
    host.journal(&["-u", &format!("appc-pod@{instance}.service")])
}

/// Waits until `systemctl is-active UNIT` prints `state`.
fn wait_unit_state(host: &TestHost, unit: &str, state: &str, timeout: Duration) {
    let script = format!("test \"$(systemctl is-active {unit})\" = {state}");
    if let Err(e) = host.wait_for(&script, timeout) {
        panic!(
            "{unit} did not become {state}: {e}\n{}",
            host.run(&["systemctl", "status", "--no-pager", "-l", unit])
        );
    }
}

/// `appcctl status --format json NAME`, `None` while there is no such pod.
fn pod_status(host: &TestHost, name: &str) -> Option<Value> {
    let out = host.run(&["appcctl", "status", "--format", "json", name]);
    if !out.success() {
        return None;
    }
    Some(
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("appcctl status json: {e}\n{out}")),
    )
}

/// Polls `appcctl status NAME` until the pod is in `state`; returns that status.
fn wait_pod_state(host: &TestHost, name: &str, state: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = pod_status(host, name);
        if let Some(s) = &status
            && s["state"] == state
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} did not become {state} within {timeout:?}; last status: {status:?}\n{}",
            unit_log(host, name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The entry of pod `name` in `appcctl list --format json`.
fn list_pod(host: &TestHost, name: &str) -> Value {
    let out = host
        .run(&["appcctl", "list", "--format", "json"])
        .expect_success("appcctl list");
    let pods: Vec<Value> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("list json: {e}\n{out}"));
    pods.into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("pod {name} is not listed:\n{out}"))
}
