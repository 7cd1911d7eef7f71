//! The in-pod probe (`tests/podprobe`, built by `tests/probe/mod.rs`): it is a static
//! executable, runs in an empty root (no /proc, /dev or /etc), and what it reports on the host is
//! right. Later tests run it as the app inside pods and assert on its output.
//!
//! The empty-root tests need root (chroot, a private mount namespace): without it they print
//! `SKIP: ...`, and fail instead when `APPC_TEST_NO_SKIP=1`.

mod probe;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

fn skip(reason: &str) {
    if std::env::var_os("APPC_TEST_NO_SKIP").is_some_and(|v| v == "1") {
        panic!("cannot skip under APPC_TEST_NO_SKIP=1: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn probe() -> Command {
    Command::new(probe::probe_binary())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs the command and parses its stdout as one JSON object; it must exit 0.
fn json_of(cmd: &mut Command) -> Value {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn cap_names(report: &Value, set: &str) -> Vec<String> {
    report["caps"][set]["names"]
        .as_array()
        .unwrap_or_else(|| panic!("caps.{set}.names missing: {}", report["caps"]))
        .iter()
        .map(|n| n.as_str().expect("a capability name").to_owned())
        .collect()
}

fn fd_list(report: &Value) -> Vec<(i64, Option<String>)> {
    report["fds"]
        .as_array()
        .expect("fds is a list")
        .iter()
        .map(|f| {
            (
                f["fd"].as_i64().expect("fd number"),
                f["target"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// A field of the test process's own /proc/self/status.
fn own_status(key: &str) -> String {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(key))
        .unwrap_or_else(|| panic!("{key} not in /proc/self/status"));
    line[key.len() + 1..].trim().to_owned()
}

/// The test process's effective capability mask.
fn own_cap_eff() -> u64 {
    u64::from_str_radix(&own_status("CapEff"), 16).expect("CapEff hex")
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("/proc/sys/kernel/hostname")
        .trim()
        .to_owned()
}

// ------------------------------------------------------------------------------------------
// the binary
// ------------------------------------------------------------------------------------------

/// Whether an ELF file has a PT_INTERP program header (asks for a dynamic loader).
fn has_interp(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let is64 = elf[4] == 2;
    let le = elf[5] == 1;
    let u16_at = |o: usize| {
        let b = [elf[o], elf[o + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |o: usize| {
        let b = [elf[o], elf[o + 1], elf[o + 2], elf[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38))
    } else {
        (u32_at(0x1c) as usize, u16_at(0x2a), u16_at(0x2c))
    };
    assert!(phnum > 0, "no program headers");
    (0..usize::from(phnum)).any(|i| u32_at(phoff + i * usize::from(phentsize)) == 3)
}

#[test]
fn probe_is_a_static_executable() {
    let bin = probe::probe_binary();
    let elf = fs::read(&bin).unwrap();
    assert!(!has_interp(&elf), "{} has a PT_INTERP", bin.display());
    eprintln!("podprobe: {} bytes", elf.len());

    // ldd agrees, where it is installed.
    if let Ok(out) = Command::new("ldd").arg(&bin).output() {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("not a dynamic executable") || text.contains("statically linked"),
            "ldd {}: {text}",
            bin.display()
        );
    }

    // A dynamic executable is caught by the ELF check (the test's own binary is one).
    let me = fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(has_interp(&me), "the test binary itself should be dynamic");
}

// ------------------------------------------------------------------------------------------
// an empty root
// ------------------------------------------------------------------------------------------

/// A root directory holding only `/probe`.
fn empty_root() -> TempDir {
    let root = TempDir::new().expect("temp dir");
    fs::copy(probe::probe_binary(), root.path().join("probe")).expect("copy the probe");
    root
}

fn root_tools_or_skip() -> bool {
    if !is_root() {
        skip("chroot and a private mount namespace need root");
        return false;
    }
    for tool in ["unshare", "chroot", "mount", "sh"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            skip(&format!("{tool} not found"));
            return false;
        }
    }
    true
}

#[test]
fn report_in_an_empty_root_without_proc() {
    if !root_tools_or_skip() {
        return;
    }
    let root = empty_root();
    let r = json_of(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "chroot"])
            .arg(root.path())
            .args(["/probe", "report"]),
    );
    assert_eq!(r["proc_mounted"], false);
    assert_eq!(r["mounts"], serde_json::json!([]));
    assert_eq!(r["cgroup"], serde_json::json!([]));
    assert_eq!(r["exe"], Value::Null);
    assert_eq!(r["oom_score_adj"], Value::Null);
    assert_eq!(r["limits"]["memory"], Value::Null);
    assert_eq!(r["limits"]["cpu"], Value::Null);
    assert_eq!(r["cwd"], "/");
    assert_eq!(r["uid"], 0);
    assert_eq!(r["argv"], serde_json::json!(["/probe", "report"]));
    assert_eq!(r["hostname"], host_name());
    // Without /proc: capabilities from capget/prctl, descriptors from fcntl.
    assert_eq!(r["caps"]["source"], "syscalls");
    if own_cap_eff() & (1 << 21) != 0 {
        assert!(cap_names(&r, "effective").contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(cap_names(&r, "bounding").contains(&"CAP_SYS_ADMIN".to_owned()));
    }
    let nnp: i64 = own_status("NoNewPrivs").parse().expect("NoNewPrivs");
    assert_eq!(r["no_new_privs"], nnp);
    assert_eq!(r["fds_source"], "fcntl");
    let fds: Vec<i64> = fd_list(&r).into_iter().map(|(fd, _)| fd).collect();
    for std_fd in [0, 1, 2] {
        assert!(fds.contains(&std_fd), "fd {std_fd} missing: {fds:?}");
    }
    for (name, dev) in r["devices"].as_object().unwrap() {
        assert_eq!(dev["exists"], false, "/dev/{name} in an empty root");
    }
    assert_eq!(r["namespaces"]["mnt"], Value::Null);
    assert!(r["rlimits"]["nofile"]["soft"].as_u64().unwrap() > 0);
}

#[test]
fn report_in_an_empty_root_with_proc() {
    if !root_tools_or_skip() {
        return;
    }
    let root = empty_root();
    fs::create_dir(root.path().join("proc")).unwrap();
    let r = json_of(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --rbind /proc "$1/proc" && exec chroot "$1" /probe report"#)
            .arg("sh")
            .arg(root.path()),
    );
    assert_eq!(r["proc_mounted"], true);
    let mounts = r["mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mount_point"] == "/proc" && m["fstype"] == "proc" && m["ro"] == false),
        "no /proc mount: {mounts:?}"
    );
    // Nothing of the host outside the root is visible.
    assert!(
        mounts
            .iter()
            .all(|m| m["mount_point"].as_str().unwrap().starts_with("/proc")),
        "{mounts:?}"
    );
    assert_eq!(r["exe"], "/probe");
    assert_eq!(r["caps"]["source"], "/proc/self/status");
    assert_eq!(r["fds_source"], "/proc/self/fd");
    assert!(!r["cgroup"].as_array().unwrap().is_empty());
    assert!(
        r["namespaces"]["mnt"]
            .as_str()
            .unwrap()
            .starts_with("mnt:[")
    );
    // /sys is not there: the cgroup files cannot be found.
    assert_eq!(r["limits"]["memory"], Value::Null);
}

// ------------------------------------------------------------------------------------------
// the report on the host
// ------------------------------------------------------------------------------------------

#[test]
fn report_on_the_host() {
    let dir = TempDir::new().unwrap();
    let cwd = dir.path().canonicalize().unwrap();

    // One descriptor inherited on purpose (CLOEXEC cleared), one that must not leak.
    let inherited_path = cwd.join("inherited");
    let inherited = fs::File::create(&inherited_path).unwrap();
    rustix::io::fcntl_setfd(&inherited, rustix::io::FdFlags::empty()).unwrap();
    let cloexec_path = cwd.join("cloexec");
    let cloexec = fs::File::create(&cloexec_path).unwrap();

    let child = probe()
        .arg("report")
        .current_dir(&cwd)
        .env("PODPROBE_TEST_VAR", "hello pod")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let out = child.wait_with_output().unwrap();
    drop(inherited);
    drop(cloexec);
    assert!(out.status.success(), "{}", out.status);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(r["argv"][1], "report");
    assert_eq!(r["env"]["PODPROBE_TEST_VAR"], "hello pod");
    assert_eq!(r["cwd"], cwd.to_str().unwrap());
    assert_eq!(r["pid"], child_pid);
    assert_eq!(r["ppid"], std::process::id());
    assert_eq!(r["hostname"], host_name());
    assert_eq!(r["uid"], rustix::process::getuid().as_raw());
    assert_eq!(r["euid"], rustix::process::geteuid().as_raw());
    assert_eq!(r["gid"], rustix::process::getgid().as_raw());
    assert_eq!(
        r["exe"],
        probe::probe_binary()
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(r["caps"]["source"], "/proc/self/status");
    assert_eq!(
        r["caps"]["effective"]["hex"],
        format!("{:016x}", own_cap_eff())
    );
    if is_root() {
        assert_eq!(r["uid"], 0);
        assert!(cap_names(&r, "effective").contains(&"CAP_SYS_ADMIN".to_owned()));
    } else {
        skip("uid 0 and CAP_SYS_ADMIN need root");
    }
    let seccomp: i64 = own_status("Seccomp").parse().expect("Seccomp");
    assert_eq!(r["seccomp"], seccomp);
    let nnp: i64 = own_status("NoNewPrivs").parse().expect("NoNewPrivs");
    assert_eq!(r["no_new_privs"], nnp);
    assert!(r["oom_score_adj"].is_i64());

    let fds = fd_list(&r);
    let inherited_fd = i64::from(inherited_fd_number(&inherited_path, &fds));
    assert!(inherited_fd > 2);
    assert!(
        !fds.iter()
            .any(|(_, t)| t.as_deref() == cloexec_path.to_str()),
        "a CLOEXEC descriptor leaked: {fds:?}"
    );

    let mounts = r["mounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mount_point"] == "/"), "{mounts:?}");
    assert!(mounts.iter().any(|m| m["mount_point"] == "/proc"));
    assert!(!r["cgroup"].as_array().unwrap().is_empty());
    assert_eq!(r["devices"]["null"]["type"], "char");
    assert_eq!(r["devices"]["null"]["major"], 1);
    assert_eq!(r["devices"]["null"]["minor"], 3);
    let limits = &r["limits"];
    for key in ["memory", "cpu", "pids"] {
        assert!(limits[key].is_null() || limits[key].is_object(), "{limits}");
    }
    eprintln!("limits on this host: {limits}");
}

/// The probe lists the inherited descriptor with its target path: its number.
fn inherited_fd_number(path: &Path, fds: &[(i64, Option<String>)]) -> i32 {
    let (fd, _) = fds
        .iter()
        .find(|(_, t)| t.as_deref() == path.to_str())
        .unwrap_or_else(|| panic!("inherited {} not in {fds:?}", path.display()));
    i32::try_from(*fd).expect("an fd number fits an i32")
}

#[test]
fn inherited_descriptor_keeps_its_number() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().canonicalize().unwrap().join("held");
    let file = fs::File::create(&path).unwrap();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();
    let r = json_of(probe().arg("report"));
    assert_eq!(inherited_fd_number(&path, &fd_list(&r)), file.as_raw_fd());
}

// ------------------------------------------------------------------------------------------
// the small subcommands
// ------------------------------------------------------------------------------------------

#[test]
fn exit_alloc_and_errors() {
    let out = run(probe().args(["exit", "42"]));
    assert_eq!(out.status.code(), Some(42));
    assert!(out.stdout.is_empty());

    let out = run(probe().args(["alloc", "8"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "allocated 8\n");

    for bad in [
        &["nonsense"][..],
        &["exit"],
        &["syscall", "no_such_call"],
        &[],
    ] {
        let out = run(probe().args(bad));
        assert_eq!(out.status.code(), Some(70), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert!(!out.stderr.is_empty(), "{bad:?}");
    }
}

#[test]
fn spin_burns_cpu_for_its_wall_time() {
    // A busy loop: CPU time close to wall time. A loaded machine (other tests, other builds)
    // steals some, so the best of three runs counts.
    let mut best = 0.0f64;
    for _ in 0..3 {
        let r = json_of(probe().args(["spin", "0.3"]));
        let wall = r["wall"].as_f64().expect("wall");
        let cpu = r["cpu"].as_f64().expect("cpu");
        assert!((0.3..1.0).contains(&wall), "{r}");
        assert!(cpu > 0.0 && cpu < wall + 0.05, "{r}");
        best = best.max(cpu / wall);
        if best > 0.8 {
            break;
        }
    }
    assert!(best > 0.5, "cpu/wall at most {best:.2}");
}

#[test]
fn own_running_binary_is_busy() {
    let r = json_of(probe().args(["try-open-write", "/proc/self/exe"]));
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["errno"], 26, "ETXTBSY expected: {r}");
}

#[test]
fn files_round_trip() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("f");
    let p = path.to_str().unwrap();
    let r = json_of(probe().args(["write", p, "pod data"]));
    assert_eq!(r["bytes"], 8);
    assert_eq!(fs::read_to_string(&path).unwrap(), "pod data");
    let r = json_of(probe().args(["read", p]));
    assert_eq!(r["content"], "pod data");
    let saved = dir.path().join("report.json");
    let r = json_of(probe().args(["report", "--out", saved.to_str().expect("utf-8")]));
    let again: Value =
        serde_json::from_str(&fs::read_to_string(&saved).expect("report file")).expect("JSON");
    assert_eq!(r, again);
    assert_eq!(run(probe().args(["exists", p])).status.code(), Some(0));
    let gone = dir.path().join("gone");
    let out = run(probe().args(["exists", gone.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(probe().args(["read", gone.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("errno=2"));
    let r = json_of(probe().args(["try-open-write", p]));
    assert_eq!(r["ok"], true);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "pod data",
        "not truncated"
    );
}

#[test]
fn syscalls_report_errno() {
    let r = json_of(probe().args(["syscall", "getpid"]));
    assert_eq!(r["ok"], true);
    assert_eq!(r["errno"], Value::Null);
    // A bogus swap file: ENOENT with CAP_SYS_ADMIN, EPERM without; never a real swapon.
    let r = json_of(probe().args(["syscall", "swapon"]));
    assert_eq!(r["ok"], false);
    let expected = if own_cap_eff() & (1 << 21) != 0 { 2 } else { 1 };
    assert_eq!(r["errno"], expected, "{r}");
    // An invalid reboot magic: EINVAL with CAP_SYS_BOOT, EPERM without.
    let r = json_of(probe().args(["syscall", "reboot"]));
    let expected = if own_cap_eff() & (1 << 22) != 0 {
        22
    } else {
        1
    };
    assert_eq!(r["errno"], expected, "{r}");
}

#[test]
fn sleep_and_signals() {
    // Default: SIGTERM kills it.
    let mut child = probe()
        .args(["sleep", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hello: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(hello["ignore_term"], false);
    assert_eq!(hello["pid"], child.id());
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status}");

    // --ignore-term: SIGTERM does nothing, SIGKILL does.
    let mut child = probe()
        .args(["sleep", "30", "--ignore-term"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(r#""ignore_term":true"#), "{line}");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGTERM was not ignored"
    );
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    // A short sleep ends by itself.
    let started = Instant::now();
    let out = run(probe().args(["sleep", "0.2"]));
    assert!(out.status.success());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

// ------------------------------------------------------------------------------------------
// the image layout
// ------------------------------------------------------------------------------------------

#[test]
fn probe_layout_builds_into_an_image() {
    use appc_pod::aci::build::{BuildOptions, build_image};
    let dir = TempDir::new().unwrap();
    let layout = probe::probe_layout(dir.path(), "probe-test", &["report"]);
    assert_eq!(layout, dir.path().join("probe-test"));
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(layout.join("manifest")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "example.com/probe-test");
    assert_eq!(
        manifest["app"]["exec"],
        serde_json::json!(["/probe", "report"])
    );
    let rootfs = layout.join("rootfs");
    assert!(
        fs::read_to_string(rootfs.join("etc/passwd"))
            .unwrap()
            .contains(":65534:")
    );
    assert!(rootfs.join("tmp").is_dir());

    // The library's builder (appcctl image build) accepts it.
    let aci = dir.path().join("probe-test.aci");
    build_image(&layout, &aci, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("building {}: {e}", layout.display()));
    assert!(fs::metadata(&aci).unwrap().len() > 0);

    // And the probe in it runs as its exec says.
    let out = run(Command::new(rootfs.join("probe")).args(["exit", "3"]));
    assert_eq!(out.status.code(), Some(3));
}
