//! Proves the systemd test host harness (`tests/host/`): a real systemd boots on an overlay of
//! this machine's root, its journal, bus and transient scopes work, installed files are visible,
//! and teardown leaves nothing behind on the machine.
//!
//! Needs root, systemd-nspawn (Debian: `systemd-container`) and overlayfs; otherwise each test
//! prints `SKIP: <reason>`, or fails when `APPC_TEST_NO_SKIP=1`.
//! Run: `cargo test --test systemd_host -- --nocapture`

mod host;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use host::{HostOptions, ProcId, TestHost};

/// Where `booted_host_provides_systemd_services` installs its payload file.
const PAYLOAD_PATH: &str = "/usr/local/lib/appc-test/payload.txt";

/// One host for every check that does not consume it: a boot costs a few seconds.
#[test]
fn booted_host_provides_systemd_services() {
    let payload_text = format!("appc payload {}\n", host::random_hex(8));
    let payload = tempfile::NamedTempFile::new().expect("creating the payload file");
    fs::write(payload.path(), &payload_text).expect("writing the payload file");
    let opts = HostOptions::new().install(payload.path(), PAYLOAD_PATH, 0o640);
    let Some(host) = host::boot_or_skip(opts) else {
        return;
    };
    eprintln!("booted {} in {:?}", host.name(), host.boot_time());

    timed("1 systemd is PID 1", || systemd_is_pid1_and_running(&host));
    timed("2 journal", || journal_round_trip(&host));
    timed("3 bus", || bus_knows_systemd(&host));
    timed("4 transient scope", || {
        transient_scope_gets_its_cgroup(&host)
    });
    timed("6 installed file", || {
        installed_file_is_visible(&host, &payload_text)
    });
    timed("7 command timeout", || hanging_command_is_killed(&host));
    let report = timed("teardown", || host.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
}

/// Runs one check and prints how long it took (visible with `--nocapture`).
fn timed<T>(what: &str, check: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = check();
    eprintln!("  {what}: {:?}", started.elapsed());
    result
}

/// Check 1: systemd is PID 1 inside and reached `running` or `degraded`.
fn systemd_is_pid1_and_running(host: &TestHost) {
    let state = host.run(&["systemctl", "is-system-running"]);
    assert!(
        matches!(state.stdout_trimmed(), "running" | "degraded"),
        "system state:\n{state}"
    );
    let comm = host
        .run(&["ps", "-p", "1", "-o", "comm="])
        .expect_success("ps inside");
    assert_eq!(comm.stdout_trimmed(), "systemd", "PID 1 inside the host");
    let exe = host
        .run(&["readlink", "/proc/1/exe"])
        .expect_success("readlink inside");
    assert!(
        exe.stdout_trimmed().ends_with("/systemd"),
        "PID 1 executable: {exe}"
    );
    let hostname = host.run(&["hostname"]).expect_success("hostname inside");
    assert_eq!(
        hostname.stdout_trimmed(),
        host.name(),
        "hostname inside is the machine name"
    );
}

/// Check 2: A line logged with systemd-cat comes back from journalctl.
fn journal_round_trip(host: &TestHost) {
    let tag = format!("appc-test-{}", host::random_hex(6));
    let line = format!("hello from {tag}");
    host.run(&["systemd-cat", "-t", &tag, "echo", &line])
        .expect_success("systemd-cat");
    let query = format!("journalctl --no-pager -q -t {tag} -o cat | grep -qx '{line}'");
    host.wait_for(&query, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("journald did not record the line: {e}"));
    assert_eq!(host.journal(&["-t", &tag, "-o", "cat"]).trim(), line);
}

/// Check 3: The system bus is up and systemd owns its well-known name on it.
fn bus_knows_systemd(host: &TestHost) {
    let names = host
        .run(&["busctl", "list", "--no-legend", "--acquired"])
        .expect_success("busctl list");
    let owners: Vec<&str> = names
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        owners.contains(&"org.freedesktop.systemd1"),
        "bus names: {owners:?}"
    );
    let status = host
        .run(&["busctl", "status", "org.freedesktop.systemd1"])
        .expect_success("busctl status");
    assert!(
        status.stdout.contains("PID=1"),
        "owner of org.freedesktop.systemd1:\n{status}"
    );
}

/// Check 4: `systemd-run --scope` puts a process into its own scope unit over D-Bus.
fn transient_scope_gets_its_cgroup(host: &TestHost) {
    let unit = format!("appc-probe-{}", host::random_hex(6));
    let scope = format!("{unit}.scope");
    let start = format!(
        "systemd-run --quiet --scope --unit={unit} --description='appc probe' sleep 60 >/dev/null 2>&1 &"
    );
    host.sh(&start).expect_success("starting the scope");
    let active = format!("systemctl show -P ActiveState {scope} | grep -qx active");
    host.wait_for(&active, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("scope never became active: {e}"));

    let main_pid = host
        .run(&["systemctl", "show", "-P", "MainPID", &scope])
        .expect_success("systemctl show MainPID");
    let pids = host
        .sh(&format!("cat /sys/fs/cgroup/systemd/system.slice/{scope}/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/system.slice/{scope}/cgroup.procs"))
        .expect_success("listing the scope's processes");
    let pid = pids
        .stdout
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no process in {scope} (MainPID {main_pid})"))
        .trim()
        .to_string();
    let cgroup = host
        .run(&["cat", &format!("/proc/{pid}/cgroup")])
        .expect_success("reading the sleeper's cgroup");
    assert!(
        cgroup.stdout.contains(&format!("/system.slice/{scope}")),
        "cgroup of PID {pid}:\n{cgroup}"
    );
    let comm = host
        .run(&["cat", &format!("/proc/{pid}/comm")])
        .expect_success("comm");
    assert_eq!(comm.stdout_trimmed(), "sleep");

    host.run(&["systemctl", "stop", &scope])
        .expect_success("stopping the scope");
    let state = host.run(&["systemctl", "show", "-P", "ActiveState", &scope]);
    assert_eq!(state.stdout_trimmed(), "inactive", "{scope} after stop");
}

/// Check 6: A file installed before boot is inside the host, with its mode, and not on the machine.
fn installed_file_is_visible(host: &TestHost, expected: &str) {
    let cat = host
        .run(&["cat", PAYLOAD_PATH])
        .expect_success("cat payload");
    assert_eq!(cat.stdout, expected);
    let mode = host
        .run(&["stat", "-c", "%a", PAYLOAD_PATH])
        .expect_success("stat payload");
    assert_eq!(mode.stdout_trimmed(), "640");
    assert!(
        !Path::new(PAYLOAD_PATH).exists(),
        "payload leaked onto the machine"
    );
    let copied = tempfile::NamedTempFile::new().expect("creating a local file");
    host.copy_out(PAYLOAD_PATH, copied.path())
        .expect("copying the payload out");
    assert_eq!(
        fs::read_to_string(copied.path()).expect("reading the copy"),
        expected
    );
}

/// A command that outlives its time limit is reported as timed out, and killed inside the host
/// too (not only the nsenter process on the machine).
fn hanging_command_is_killed(host: &TestHost) {
    let out = host.run_timeout(&["sleep", "4242"], Duration::from_millis(500));
    assert!(out.timed_out && !out.success(), "expected a timeout: {out}");
    host.wait_for("! pgrep -f '[s]leep 4242'", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the timed-out command survived inside the host: {e}"));
}

/// Check 5: After shutdown nothing of the host is left: no mounts, processes, cgroups, directory,
/// nspawn state, and nothing written inside reached the real root.
#[test]
fn teardown_leaves_nothing_behind() {
    // basic.target: this test needs a booted systemd, not the machine's services (faster).
    let Some(host) = host::boot_or_skip(HostOptions::new().target("basic.target")) else {
        return;
    };
    eprintln!("booted {} in {:?}", host.name(), host.boot_time());
    let marker = format!("/etc/appc-host-marker-{}", host::random_hex(6));
    host.sh(&format!("echo inside > {marker}"))
        .expect_success("writing the marker");
    host.sh("systemd-run --quiet --unit=appc-linger sleep 600")
        .expect_success("starting a service");
    assert!(
        host.upper_dir()
            .join(marker.trim_start_matches('/'))
            .exists(),
        "the marker should land in the overlay's upper directory"
    );
    assert!(
        !Path::new(&marker).exists(),
        "the marker reached the real root while running"
    );

    let name = host.name().to_string();
    let dir = host.dir().to_path_buf();
    let cgroups = host.cgroups().to_vec();
    let processes = host.processes();
    assert!(
        processes.len() >= 3,
        "expected nspawn, systemd and services: {processes:?}"
    );

    let report = host.shutdown().unwrap_or_else(|e| panic!("teardown: {e}"));
    eprintln!(
        "teardown of {name}: halted cleanly={} in {:?}, killed {:?}",
        report.halted_cleanly, report.stop_time, report.killed
    );
    assert!(
        report.halted_cleanly,
        "container did not halt on request: {report:?}"
    );

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_no_mounts(&dir, &name);
    assert_no_processes(&dir, &name, &processes);
    for cg in &cgroups {
        assert!(!cg.exists(), "cgroup {} still exists", cg.display());
    }
    assert!(
        !Path::new(&marker).exists(),
        "the marker reached the real root"
    );
    let propagate = Path::new("/run/systemd/nspawn/propagate").join(&name);
    assert!(
        !propagate.exists(),
        "nspawn state left at {}",
        propagate.display()
    );
}

fn assert_no_mounts(dir: &Path, name: &str) {
    let findmnt = Command::new("findmnt")
        .args(["--raw", "--noheadings", "--output", "TARGET,SOURCE"])
        .output()
        .expect("running findmnt");
    assert!(findmnt.status.success(), "findmnt failed");
    let table = String::from_utf8_lossy(&findmnt.stdout);
    let dir = dir.to_string_lossy();
    let leaked: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(dir.as_ref()) || l.contains(name))
        .collect();
    assert!(leaked.is_empty(), "mounts left behind: {leaked:?}");
    assert!(host::mounts_under(Path::new(dir.as_ref())).is_empty());
}

fn assert_no_processes(dir: &Path, name: &str, before: &[ProcId]) {
    let survivors: Vec<&ProcId> = before.iter().filter(|p| p.is_alive()).collect();
    assert!(
        survivors.is_empty(),
        "host processes still alive: {survivors:?}"
    );
    for entry in fs::read_dir("/proc").expect("listing /proc").flatten() {
        let proc_dir = entry.path();
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(name),
            "process {pid} mentions {name}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
        for link in ["cwd", "root"] {
            if let Ok(target) = fs::read_link(proc_dir.join(link)) {
                assert!(
                    !target.starts_with(dir),
                    "process {pid} has its {link} at {}",
                    target.display()
                );
            }
        }
    }
}

/// A boot that fails is reported with the failing step and cleans up after itself: here nspawn
/// rejects an option, and a boot that cannot finish in time.
#[test]
fn failed_boots_are_reported_and_cleaned_up() {
    if let Some(reason) = host::skip_unless_capable() {
        host::skip_or_fail(&reason);
        return;
    }
    let bad_option = TestHost::boot(HostOptions::new().nspawn_arg("--no-such-option"));
    let Err(host::HostError::NspawnExited {
        machine, console, ..
    }) = bad_option
    else {
        panic!("expected NspawnExited, got {bad_option:?}");
    };
    assert!(
        console.contains("no-such-option"),
        "console should say why: {console}"
    );
    assert_nothing_left(&machine);

    let too_slow = TestHost::boot(HostOptions::new().boot_timeout(Duration::from_millis(200)));
    let Err(host::HostError::BootTimeout { machine, .. }) = too_slow else {
        panic!("expected BootTimeout, got {too_slow:?}");
    };
    assert_nothing_left(&machine);
}

fn assert_nothing_left(machine: &str) {
    let dir = std::env::temp_dir().join(machine);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_no_mounts(&dir, machine);
    assert_no_processes(&dir, machine, &[]);
}

/// Several hosts boot at once (cargo runs tests on parallel threads) and stay isolated from each
/// other: own machine ID, hostname and cgroups, and a write in one is invisible in the others.
#[test]
fn concurrent_hosts_are_isolated() {
    const HOSTS: usize = 3;
    if let Some(reason) = host::skip_unless_capable() {
        host::skip_or_fail(&reason);
        return;
    }
    let shared = "/etc/appc-shared-path";
    let barrier = std::sync::Barrier::new(HOSTS);
    // Each host lives on the thread that booted it (see tests/host/mod.rs on parent-death).
    let seen: Vec<(String, String, Vec<std::path::PathBuf>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..HOSTS)
            .map(|_| {
                scope.spawn(|| {
                    let host = TestHost::boot(HostOptions::new().target("basic.target"))
                        .unwrap_or_else(|e| panic!("concurrent boot: {e}"));
                    eprintln!(
                        "booted {} in {:?} (concurrently)",
                        host.name(),
                        host.boot_time()
                    );
                    host.sh(&format!("hostname > {shared}"))
                        .expect_success("writing");
                    barrier.wait(); // every host has written before any reads
                    let content = host.run(&["cat", shared]).expect_success("reading");
                    assert_eq!(
                        content.stdout_trimmed(),
                        host.name(),
                        "another host's write is visible"
                    );
                    let id = host
                        .run(&["cat", "/etc/machine-id"])
                        .expect_success("machine-id");
                    (
                        id.stdout_trimmed().to_string(),
                        host.name().to_string(),
                        host.cgroups().to_vec(),
                    )
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let machine_ids: std::collections::BTreeSet<_> = seen.iter().map(|s| &s.0).collect();
    assert_eq!(
        machine_ids.len(),
        HOSTS,
        "machine IDs must differ: {seen:?}"
    );
    let machine_id = fs::read_to_string("/etc/machine-id").unwrap_or_default();
    assert!(
        !machine_ids.contains(&machine_id.trim().to_string()),
        "a host reused the machine's ID"
    );
    let cgroups: std::collections::BTreeSet<_> = seen.iter().flat_map(|s| s.2.clone()).collect();
    assert_eq!(
        cgroups.len(),
        HOSTS * seen[0].2.len(),
        "cgroups must differ: {seen:?}"
    );
    assert!(!Path::new(shared).exists(), "a host wrote to the real root");
}

/// Installing into the host can never write through a symlink to the machine: absolute link
/// targets and `..` are resolved inside the host's root. Needs no root, never skips.
#[test]
fn paths_resolve_inside_the_host_root() {
    let root = tempfile::tempdir().expect("creating a fake root");
    let outside = tempfile::tempdir().expect("creating an outside dir");
    let r = root.path();
    fs::create_dir_all(r.join("etc/real")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/real", r.join("etc/abs")).expect("symlink");
    std::os::unix::fs::symlink("../../../../..", r.join("etc/up")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), r.join("escape")).expect("symlink");

    let resolve = |p: &str| host::resolve_in_root(r, Path::new(p), true).expect("resolving");
    assert_eq!(resolve("/etc/abs/x"), r.join("etc/real/x"));
    assert_eq!(resolve("/etc/up/etc/real"), r.join("etc/real"));
    assert_eq!(resolve("/../../etc"), r.join("etc"));
    assert_eq!(
        resolve("/escape/file"),
        r.join(outside.path().strip_prefix("/").expect("abs"))
            .join("file")
    );

    let write = host::Provision::Write {
        dest: "/escape/file".into(),
        contents: b"data".to_vec(),
        mode: 0o644,
    };
    write.apply(r).expect("writing through the symlink");
    assert!(
        !outside.path().join("file").exists(),
        "write escaped the root"
    );
    assert!(
        r.join(outside.path().strip_prefix("/").expect("abs"))
            .join("file")
            .exists()
    );
}
