//! `appc_pod::systemd` against the real systemd of the test host (`tests/host/`): transient scopes
//! over D-Bus (StartTransientUnit the nspawn way, PIDFDs/PIDs, limits, Delegate, machine.slice),
//! machined registration (`machinectl list/show/terminate`), idempotent teardown, a refused
//! start, and our D-Bus calls checked against the live introspection and the XML in `dbus/`.
//!
//! The library code must run inside the host, next to its systemd and bus. The host's root is an
//! overlay of this machine's `/`, so this test binary exists inside at the same path: the outer
//! test boots ONE host and re-executes the binary in it, running only `child_in_host` with
//! `APPC_SYSTEMD_DBUS_CHILD` set; without that variable `child_in_host` returns at once.
//!
//! Needs root, systemd-nspawn and overlayfs; otherwise it prints `SKIP: <reason>` (or fails when
//! `APPC_TEST_NO_SKIP=1`).
//! Run: `cargo test --test systemd_dbus -- --nocapture`
//! Refresh `dbus/*.xml` from the live host: `APPC_DBUS_DUMP_DIR=$PWD/dbus cargo test --test
//! systemd_dbus -- --nocapture`.

mod host;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appc_pod::systemd::{self, machine, scope, unit_name};
use host::{HostOptions, TestHost};

/// Set (to the pod name to use) when the binary runs as the child inside the host.
const CHILD_ENV: &str = "APPC_SYSTEMD_DBUS_CHILD";
/// Where to write the live introspection XML (regenerates `dbus/`).
const DUMP_ENV: &str = "APPC_DBUS_DUMP_DIR";

/// The objects we introspect: (file in `dbus/`, bus name, object path, interface).
const INTERFACES: &[(&str, &str, &str, &str)] = &[
    (
        "org.freedesktop.systemd1.Manager.xml",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
    ),
    (
        "org.freedesktop.systemd1.Unit.xml",
        "org.freedesktop.systemd1",
        // init.scope always exists; every unit object has the Unit interface.
        "/org/freedesktop/systemd1/unit/init_2escope",
        "org.freedesktop.systemd1.Unit",
    ),
    (
        "org.freedesktop.machine1.Manager.xml",
        "org.freedesktop.machine1",
        "/org/freedesktop/machine1",
        "org.freedesktop.machine1.Manager",
    ),
];

/// Every member we use, with its D-Bus signature: (interface, kind, member, in-args, out-args).
/// Properties have their type as "out".
const OUR_CALLS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "org.freedesktop.systemd1.Manager",
        "method",
        "StartTransientUnit",
        "ssa(sv)a(sa(sv))",
        "o",
    ),
    (
        "org.freedesktop.systemd1.Manager",
        "method",
        "AbandonScope",
        "s",
        "",
    ),
    (
        "org.freedesktop.systemd1.Manager",
        "method",
        "KillUnit",
        "ssi",
        "",
    ),
    (
        "org.freedesktop.systemd1.Manager",
        "method",
        "UnrefUnit",
        "s",
        "",
    ),
    (
        "org.freedesktop.systemd1.Manager",
        "method",
        "GetUnit",
        "s",
        "o",
    ),
    (
        "org.freedesktop.systemd1.Manager",
        "signal",
        "JobRemoved",
        "",
        "uoss",
    ),
    (
        "org.freedesktop.systemd1.Unit",
        "property",
        "ActiveState",
        "",
        "s",
    ),
    (
        "org.freedesktop.machine1.Manager",
        "method",
        "RegisterMachineWithNetwork",
        "sayssusai",
        "o",
    ),
    (
        "org.freedesktop.machine1.Manager",
        "method",
        "TerminateMachine",
        "s",
        "",
    ),
];

#[test]
fn systemd_dbus_in_test_host() {
    let Some(host) = host::boot_or_skip(HostOptions::new().with_build()) else {
        return;
    };
    eprintln!("booted {} in {:?}", host.name(), host.boot_time());
    let version = host
        .run(&["systemctl", "--version"])
        .expect_success("systemctl --version");
    eprintln!("  {}", version.stdout.lines().next().unwrap_or(""));

    timed("introspection", || calls_exist_in_live_introspection(&host));
    timed("library calls inside the host", || run_child(&host));

    let report = host.shutdown().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
}

fn timed<T>(what: &str, check: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = check();
    eprintln!("  {what}: {:?}", started.elapsed());
    result
}

/// Our members and signatures exist in the live systemd's introspection and in `dbus/`.
fn calls_exist_in_live_introspection(host: &TestHost) {
    // machined is bus-activated: the introspection call itself starts it.
    let dump_dir = std::env::var_os(DUMP_ENV).map(PathBuf::from);
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus");
    for (file, service, path, interface) in INTERFACES {
        let live = host
            .run(&["busctl", "introspect", "--xml-interface", service, path])
            .expect_success("busctl introspect --xml-interface");
        if let Some(dir) = &dump_dir {
            std::fs::write(dir.join(file), &live.stdout)
                .unwrap_or_else(|e| panic!("writing {file} into {dir:?}: {e}"));
            eprintln!("  wrote {}", dir.join(file).display());
        }
        let vendored_xml = std::fs::read_to_string(vendored.join(file)).unwrap_or_else(|e| {
            panic!("reading dbus/{file}: {e} (regenerate, see dbus/README.md)")
        });
        for (source, xml) in [("live", live.stdout.as_str()), ("dbus/", &vendored_xml)] {
            let members = interface_members(xml, interface)
                .unwrap_or_else(|| panic!("{source} {file}: no interface {interface}"));
            for (iface, kind, member, ins, outs) in OUR_CALLS {
                if iface != interface {
                    continue;
                }
                let key = (kind.to_string(), member.to_string());
                let Some(sig) = members.get(&key) else {
                    panic!("{source} {interface}: no {kind} {member}");
                };
                assert_eq!(
                    (sig.0.as_str(), sig.1.as_str()),
                    (*ins, *outs),
                    "{source} {interface}.{member}: (in, out) signature"
                );
            }
        }
    }
}

/// The members of `interface` in introspection `xml`: (kind, name) → (in signature, out
/// signature). A tiny scan of the tags; D-Bus introspection XML is regular enough for it.
fn interface_members(
    xml: &str,
    interface: &str,
) -> Option<BTreeMap<(String, String), (String, String)>> {
    let start = xml.find(&format!("<interface name=\"{interface}\""))?;
    let rest = &xml[start..];
    let body = &rest[..rest.find("</interface>")?];
    let mut members = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut sig = (String::new(), String::new());
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let name = tag.split_whitespace().next().unwrap_or("");
        match name {
            "method" | "signal" => {
                if let Some(key) = current.take() {
                    members.insert(key, std::mem::take(&mut sig));
                }
                let key = (name.to_string(), attr(tag, "name")?.to_string());
                if tag.ends_with('/') {
                    members.insert(key, Default::default());
                } else {
                    current = Some(key);
                }
            }
            "arg" if current.is_some() => {
                let ty = attr(tag, "type")?;
                let is_signal = current.as_ref().is_some_and(|(k, _)| k == "signal");
                match attr(tag, "direction") {
                    Some("in") => sig.0.push_str(ty),
                    Some("out") => sig.1.push_str(ty),
                    // Signal arguments have no direction: they are "out".
                    _ if is_signal => sig.1.push_str(ty),
                    _ => sig.0.push_str(ty),
                }
            }
            "/method" | "/signal" => {
                if let Some(key) = current.take() {
                    members.insert(key, std::mem::take(&mut sig));
                }
            }
            "property" => {
                let key = ("property".to_string(), attr(tag, "name")?.to_string());
                members.insert(key, (String::new(), attr(tag, "type")?.to_string()));
            }
            _ => {}
        }
    }
    Some(members)
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Runs `child_in_host` inside the host and requires that it ran and passed.
fn run_child(host: &TestHost) {
    let exe = host::test_exe();
    let exe = exe.as_str();
    let pod = format!("dbus-{}", host::random_hex(3));
    let env = format!("{CHILD_ENV}={pod}");
    let out = host.run_timeout(
        &[
            "env",
            &env,
            exe,
            "--exact",
            "child_in_host",
            "--nocapture",
            "--test-threads=1",
        ],
        Duration::from_secs(50),
    );
    eprintln!("{}", indent(&out.stderr));
    assert!(
        out.success(),
        "the child test failed inside the host:\n{out}"
    );
    assert!(
        out.stdout.contains("1 passed"),
        "child_in_host did not run inside the host:\n{out}"
    );
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Inside the host
// ---------------------------------------------------------------------------------------------

#[test]
fn child_in_host() {
    let Ok(pod) = std::env::var(CHILD_ENV) else {
        return; // only meaningful inside the test host, started by systemd_dbus_in_test_host
    };
    assert!(
        systemd::detect::systemd_is_pid1(),
        "systemd is PID 1 inside"
    );
    let rt = systemd::runtime().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let conn = systemd::connect().await.unwrap_or_else(|e| panic!("{e}"));
        let unit = unit_name::scope_name(&pod);
        assert!(unit.contains("\\x2d"), "the pod name is escaped: {unit}");

        let sleep = step(
            "scope with limits",
            allocate_with_limits(&conn, &pod, &unit),
        )
        .await;
        step("refused start", refused_start(&conn, &pod, &unit)).await;
        step("machined", machine_registration(&conn, &pod, &unit, sleep)).await;
        step(
            "scope::terminate",
            terminate_is_idempotent(&conn, &pod, &unit),
        )
        .await;
    });
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let t = f.await;
    eprintln!("{what}: ok in {:?}", started.elapsed());
    t
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("starting sleep")
}

/// `systemctl show UNIT -p …` as a map.
fn show(unit: &str, props: &str) -> BTreeMap<String, String> {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", props])
        .output()
        .expect("running systemctl show");
    assert!(out.status.success(), "systemctl show {unit}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cmd_stdout(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn systemd_version() -> u32 {
    let v = cmd_stdout(&["systemctl", "--version"]);
    v.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("systemctl --version: {v}"))
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
async fn wait_until<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f().await {
            return Some(t);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the sleeper to exit (we are its parent, so we reap it).
async fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    wait_until(timeout, async || child.try_wait().ok().flatten())
        .await
        .is_some()
}

async fn gone(conn: &zbus::Connection, unit: &str) -> bool {
    wait_until(Duration::from_secs(10), async || {
        match scope::unit_state(conn, unit).await {
            Ok(None) => Some(()),
            Ok(Some(_)) => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await
    .is_some()
}

/// Allocates the pod's scope with limits; returns its process for the machined step.
async fn allocate_with_limits(conn: &zbus::Connection, pod: &str, unit: &str) -> Child {
    let sleep = sleeper();
    let pid = sleep.id();
    let mut req = scope::ScopeRequest::for_pod(pod, vec![pid]);
    req.memory_max = Some(64 << 20);
    req.tasks_max = Some(50);
    req.cpu_quota_per_sec_usec = Some(500_000);
    req.cpu_weight = Some(39);
    let scope = scope::allocate(conn, &req)
        .await
        .unwrap_or_else(|e| panic!("{e}: {e:?}"));
    eprintln!(
        "allocated {} via {} (dropped: {:?})",
        scope.name, scope.pids_property, scope.dropped
    );
    assert_eq!(scope.name, unit);
    // PIDFDs arrived in systemd 253; older ones must have taken the PIDs fallback.
    let expected = if systemd_version() >= 253 {
        "PIDFDs"
    } else {
        "PIDs"
    };
    assert_eq!(
        scope.pids_property, expected,
        "dropped: {:?}",
        scope.dropped
    );

    let props = show(
        unit,
        "ActiveState,MemoryMax,TasksMax,Slice,Delegate,ControlGroup,CPUQuotaPerSecUSec,CPUWeight,CollectMode,Description",
    );
    let expect = |k: &str, v: &str| {
        assert_eq!(
            props.get(k).map(String::as_str),
            Some(v),
            "{k} of {unit}: {props:?}"
        )
    };
    expect("ActiveState", "active");
    expect("MemoryMax", "67108864");
    expect("TasksMax", "50");
    expect("Slice", "machine.slice");
    expect("Delegate", "yes");
    expect("CPUQuotaPerSecUSec", "500ms");
    expect("CPUWeight", "39");
    expect("CollectMode", "inactive-or-failed");
    expect("Description", &format!("appc pod {pod}"));
    let cgroup_path = format!("/machine.slice/{unit}");
    expect("ControlGroup", &cgroup_path);

    let proc_cgroup =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("reading /proc/PID/cgroup");
    assert_eq!(
        systemd::detect::unit_from_proc_cgroup(&proc_cgroup).as_deref(),
        Some(unit),
        "/proc/{pid}/cgroup:\n{proc_cgroup}"
    );
    assert!(
        proc_cgroup.contains(&cgroup_path),
        "/proc/{pid}/cgroup:\n{proc_cgroup}"
    );
    assert_eq!(
        scope::unit_state(conn, unit)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .as_deref(),
        Some("active")
    );
    sleep
}

/// Starting a scope whose name is active is refused with an error naming the unit.
async fn refused_start(conn: &zbus::Connection, pod: &str, unit: &str) {
    let mut other = sleeper();
    let req = scope::ScopeRequest::for_pod(pod, vec![other.id()]);
    let err = scope::allocate(conn, &req)
        .await
        .expect_err("a second scope of the same name");
    let _ = other.kill(); // best effort: it never left our cgroup
    let _ = other.wait();
    let msg = err.to_string();
    assert!(matches!(err, scope::ScopeError::Start { .. }), "{err:?}");
    assert!(
        msg.contains(unit) && msg.contains("systemctl stop"),
        "{msg}"
    );
    let source = std::error::Error::source(&err)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(
        source.contains("org.freedesktop.systemd1.UnitExists"),
        "{source}"
    );
    eprintln!("refused as expected: {msg}: {source}");
}

/// Registers the scope's process as a machine; `machinectl terminate` ends it.
async fn machine_registration(conn: &zbus::Connection, pod: &str, unit: &str, mut sleep: Child) {
    let leader = sleep.id();
    let uuid = *b"\x6e\x1a\x22\x33\x44\x55\x46\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff";
    let req = machine::MachineRequest::pod(pod, uuid, leader, PathBuf::from("/var/lib/appc-test"));
    let path = machine::register(conn, &req)
        .await
        .unwrap_or_else(|e| panic!("{e}: {e:?}"));
    assert!(
        path.starts_with("/org/freedesktop/machine1/machine/"),
        "{path}"
    );

    let list = cmd_stdout(&["machinectl", "list", "--no-legend"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(pod)),
        "machinectl list:\n{list}"
    );
    // All properties: systemd 252's `machinectl show -p A,B` prints nothing for a machine.
    let show = cmd_stdout(&["machinectl", "show", pod]);
    for want in [
        "Class=container".to_string(),
        "Service=appc-pod".to_string(),
        format!("Leader={leader}"),
        format!("Unit={unit}"),
        "RootDirectory=/var/lib/appc-test".to_string(),
        "Id=6e1a2233445546778899aabbccddeeff".to_string(),
    ] {
        assert!(
            show.lines().any(|l| l == want),
            "want {want} in machinectl show:\n{show}"
        );
    }
    let status = cmd_stdout(&["machinectl", "status", pod]);
    assert!(
        status.contains(unit) && status.contains(&leader.to_string()),
        "machinectl status:\n{status}"
    );

    // machinectl terminate stops the scope: the leader dies and the unit goes inactive.
    cmd_stdout(&["machinectl", "terminate", pod]);
    assert!(
        wait_exit(&mut sleep, Duration::from_secs(10)).await,
        "machinectl terminate left the leader running"
    );
    let state = wait_until(Duration::from_secs(10), async || {
        match scope::unit_state(conn, unit)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        {
            Some(s) if s == "active" || s == "deactivating" => None,
            other => Some(other),
        }
    })
    .await
    .expect("the scope stops after machinectl terminate");
    eprintln!("after machinectl terminate: {state:?}");
    // Our AddRef may keep an inactive unit loaded; terminate drops it.
    scope::terminate(conn, unit)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        gone(conn, unit).await,
        "{unit} still loaded after terminate"
    );
    let list = cmd_stdout(&["machinectl", "list", "--no-legend"]);
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(pod)),
        "machinectl list:\n{list}"
    );
    // Idempotent: the machine is gone.
    machine::terminate(conn, pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `scope::terminate` kills and removes a scope, and a second call succeeds.
async fn terminate_is_idempotent(conn: &zbus::Connection, pod: &str, unit: &str) {
    let mut sleep = sleeper();
    let req = scope::ScopeRequest::for_pod(pod, vec![sleep.id()]);
    let allocated = scope::allocate(conn, &req)
        .await
        .unwrap_or_else(|e| panic!("{e}: {e:?}"));
    assert_eq!(allocated.name, unit);
    assert_eq!(
        show(unit, "ActiveState")
            .get("ActiveState")
            .map(String::as_str),
        Some("active")
    );
    scope::terminate(conn, unit)
        .await
        .unwrap_or_else(|e| panic!("first terminate: {e}: {e:?}"));
    assert!(
        wait_exit(&mut sleep, Duration::from_secs(10)).await,
        "scope::terminate left the process running"
    );
    assert!(
        gone(conn, unit).await,
        "{unit} still loaded after terminate"
    );
    scope::terminate(conn, unit)
        .await
        .unwrap_or_else(|e| panic!("second terminate: {e}: {e:?}"));
    assert_eq!(
        scope::unit_state(conn, unit)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
}
