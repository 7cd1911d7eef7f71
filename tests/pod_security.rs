//! The security requirements of running pods, each with a test: only stdio reaches an app (or
//! a handler, or an entered command); nothing in a pod can reach a host binary of ours
//! (CVE-2019-5736 class) nor the init's /proc entries; `enter` joins the app's whole context;
//! no mount of a pod is ever in the host's mount table; /sys and /proc are read-only or
//! masked; hostile rootfs symlinks over /proc, /dev, /sys and /etc never reach the host.

mod common;
mod pod;
mod probe;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pod::{Env, Run, can_run_pods, cap_names, host_mounts_with};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

fn try_status(env: &Env, pod: &str) -> Option<Value> {
    let r = env.appcctl(&["status", "--format", "json", pod]);
    serde_json::from_str(&r.stdout).ok()
}

/// A pod run in the background (`appcctl run --name NAME ARGS`), output in files; stopped with
/// `--force` on drop.
struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    dir: PathBuf,
    pod: String,
}

impl Bg {
    /// Starts `appcctl ARGS` and waits until pod `pod` runs and the output has `"sleeping"`.
    fn start(env: &Env, pod: &str, args: &[&str]) -> Bg {
        let out = env.tmp.path().join(format!("{pod}.stdout"));
        let err = env.tmp.path().join(format!("{pod}.stderr"));
        let child = env
            .cmd(args)
            .stdout(Stdio::from(File::create(&out).expect("create stdout file")))
            .stderr(Stdio::from(File::create(&err).expect("create stderr file")))
            .spawn()
            .expect("spawn appcctl");
        let mut bg = Bg {
            child,
            out,
            err,
            dir: env.dir(),
            pod: pod.to_owned(),
        };
        let start = Instant::now();
        loop {
            let running = try_status(env, pod).is_some_and(|v| v["state"] == "running");
            if running && bg.stdout().contains("\"sleeping\"") {
                return bg;
            }
            let exited = bg.child.try_wait().expect("try_wait");
            assert!(
                exited.is_none() && start.elapsed() < DEADLINE,
                "pod {pod} did not start ({exited:?})\nstdout:\n{}\nstderr:\n{}",
                bg.stdout(),
                std::fs::read_to_string(&bg.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_appcctl"))
            .arg("--dir")
            .arg(&self.dir)
            .args(["stop", "--force", &self.pod])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fd numbers of a probe report.
fn fds(report: &Value) -> Vec<u64> {
    report["fds"]
        .as_array()
        .expect("fds in the report")
        .iter()
        .filter_map(|f| f["fd"].as_u64())
        .collect()
}

/// Runs `script` with bash (stdin from /dev/null), `APPCCTL` and `DIR` in its environment.
fn bash(env: &Env, script: &str) -> Run {
    Command::new("bash")
        .args(["-c", script])
        .env("APPCCTL", env!("CARGO_BIN_EXE_appcctl"))
        .env("DIR", env.dir())
        .env("TMPD", env.tmp.path())
        .stdin(Stdio::null())
        .output()
        .expect("run bash")
        .into()
}

/// The host pid of app `app`'s main process in pod `uuid` (a child of the pod's init).
fn app_host_pid(uuid: &str, app: &str, init: i64) -> i32 {
    let root = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![root.join("appc").join(uuid).join(app)];
    if let Ok(entries) = std::fs::read_dir(root) {
        candidates.extend(
            entries
                .flatten()
                .map(|e| e.path().join("appc").join(uuid).join(app)),
        );
    }
    candidates
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 2..].to_owned();
                    rest.split(' ').nth(1)?.parse::<i64>().ok()
                })
                == Some(init)
        })
        .unwrap_or_else(|| panic!("no process of app {app} in pod {uuid}"))
}

/// A probe image with busybox at /bin/busybox (and `sh`), whose app is `sh -c SCRIPT`.
fn busybox_image(env: &Env, name: &str, script: &str) -> String {
    let layout = probe::probe_layout(env.tmp.path(), name, &[]);
    let bin = layout.join("rootfs/bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (busybox-static)");
    symlink("busybox", bin.join("sh")).expect("link sh");
    let path = layout.join("manifest");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read manifest"))
            .expect("parse manifest");
    m["app"]["exec"] = json!(["/bin/busybox", "sh", "-c", script]);
    std::fs::write(&path, m.to_string()).expect("write manifest");
    env.import(&layout, name);
    format!("example.com/{name}")
}

/// Every JSON object the probe printed, in order.
fn reports(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

#[test]
fn no_fd_other_than_stdio_reaches_an_app_or_a_handler() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    // The fds really are passed on by bash (otherwise the test proves nothing).
    let ctl = bash(
        &env,
        r#"exec 7</etc/passwd 9>>"$TMPD/leak"; exec ls /proc/self/fd"#,
    );
    let listed: Vec<&str> = ctl.stdout.lines().collect();
    assert!(listed.contains(&"7") && listed.contains(&"9"), "{listed:?}");

    let image = env.probe_image("fds", &["report"], |m| {
        m["app"]["mountPoints"] = json!([{"name": "vol", "path": "/vol"}]);
        m["app"]["eventHandlers"] = json!([
            {"name": "pre-start", "exec": ["/probe", "report", "--out", "/vol/prestart.json"]},
        ]);
    });
    let run = bash(
        &env,
        &format!(
            r#"exec 7</etc/passwd 9>>"$TMPD/leak"; exec "$APPCCTL" --dir "$DIR" run --net=none --name fds-pod --volume vol,kind=empty {image}"#
        ),
    );
    let r = run.ok().report();
    assert_eq!(fds(&r), [0, 1, 2], "app: {}", r["fds"]);
    let pre: Value = serde_json::from_str(
        &std::fs::read_to_string(env.pod_dir("fds-pod").join("volumes/vol/prestart.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fds(&pre), [0, 1, 2], "pre-start handler: {}", pre["fds"]);
}

#[test]
fn no_fd_other_than_stdio_reaches_an_entered_command() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let sleeper = env.probe_image("fds-sleep", &["sleep", "inf"], |_| {});
    let _bg = Bg::start(&env, "fds-enter", &["run", "--name", "fds-enter", &sleeper]);
    let entered = bash(
        &env,
        r#"exec 7</etc/passwd 9>>"$TMPD/leak"; exec "$APPCCTL" --dir "$DIR" enter fds-enter /probe report"#,
    );
    let e = entered.ok().report();
    assert_eq!(fds(&e), [0, 1, 2], "entered: {}", e["fds"]);
}

#[test]
fn nothing_in_the_pod_reaches_a_host_binary_or_the_inits_proc_entries() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("cve", &["sleep", "inf"], |_| {});
    // As the app itself.
    let run = env.appcctl(&["run", &image, "--", "try-open-write", "/proc/1/exe"]);
    let r = run.ok().report();
    assert_eq!(
        r["ok"], false,
        "the app opened /proc/1/exe for writing: {r}"
    );

    let name = "cve-pod";
    let _bg = Bg::start(&env, name, &["run", "--name", name, &image]);
    let status = try_status(&env, name).unwrap();
    let init = status["initPid"].as_i64().unwrap();
    // The init runs from a sealed memfd, not from a host file of ours.
    let exe = std::fs::read_link(format!("/proc/{init}/exe")).unwrap();
    let exe = exe.to_string_lossy();
    assert!(exe.starts_with("/memfd:"), "the init's exe is {exe}");
    assert!(!exe.contains(env!("CARGO_BIN_EXE_appc-init")), "{exe}");

    let enter = |args: &[&str]| {
        let mut all = vec!["enter", name];
        all.extend_from_slice(args);
        env.appcctl(&all)
    };
    let w = enter(&["/probe", "try-open-write", "/proc/1/exe"]).report();
    assert_eq!(w["ok"], false, "{w}");
    // The init is non-dumpable: its environment and root are out of reach.
    let env_read = enter(&["/probe", "read", "/proc/1/environ"]);
    assert_ne!(
        env_read.code,
        Some(0),
        "read /proc/1/environ: {}",
        env_read.stdout
    );
    let root = enter(&["/probe", "exists", "/proc/1/root/"]);
    assert_eq!(
        root.code,
        Some(1),
        "/proc/1/root reachable: {}",
        root.stdout
    );
    let own_root = enter(&["/probe", "exists", "/proc/self/root/"]);
    assert_eq!(own_root.code, Some(0), "control: {}", own_root.stdout);

    // A process entered into the pod: its exe is the pod's, its root the app's, and neither
    // leads to a host binary of ours.
    let out = env.tmp.path().join("entered.stdout");
    let mut entered = env
        .cmd(&["enter", name, "/probe", "sleep", "inf"])
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let pid = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(v) = reports(&text)
            .into_iter()
            .find(|v| v.get("sleeping").is_some())
        {
            break v["pid"].as_u64().unwrap();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the entered sleep did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for path in [
        format!("/proc/{pid}/exe"),
        format!("/proc/{pid}/root{}", env!("CARGO_BIN_EXE_appcctl")),
        format!("/proc/{pid}/root{}", env!("CARGO_BIN_EXE_appc-init")),
    ] {
        let w = enter(&["/probe", "try-open-write", &path]).report();
        assert_eq!(w["ok"], false, "{w}");
    }
    let _ = entered.kill();
    let _ = entered.wait();
}

#[test]
fn enter_joins_the_apps_whole_context() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("ctx", &["report"], |m| {
        m["app"]["isolators"] = json!([{"name": "os/linux/no-new-privileges", "value": true}]);
    });
    let flags = [
        "--caps-retain",
        "CAP_KILL",
        "--user",
        "65534",
        "--group",
        "65534",
    ];
    let mut args = vec!["run", "--name", "ctx-ref", &image];
    args.extend_from_slice(&flags);
    let reference = env.appcctl(&args).ok().report();
    assert_eq!(cap_names(&reference, "bounding"), ["CAP_KILL"]);

    let name = "ctx-pod";
    let mut args = vec!["run", "--name", name, &image];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&["--", "sleep", "inf"]);
    let _bg = Bg::start(&env, name, &args);
    let e = env
        .appcctl(&["enter", name, "/probe", "report"])
        .ok()
        .report();

    for key in ["uid", "euid", "gid", "egid", "groups", "seccomp_filters"] {
        assert_eq!(e[key], reference[key], "{key}");
    }
    assert_eq!(e["uid"], 65534);
    assert_eq!(e["gid"], 65534);
    assert_eq!(e["no_new_privs"], 1);
    assert_eq!(e["seccomp"], 2);
    let sets: Vec<String> = reference["caps"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(k, _)| k.clone())
        .collect();
    for set in &sets {
        assert_eq!(cap_names(&e, set), cap_names(&reference, set), "caps.{set}");
    }
    assert_eq!(e["env"]["AC_APP_NAME"], "ctx");

    // The same namespaces as the app's main process (read from the host).
    let uuid = env.uuid(name);
    let status = try_status(&env, name).unwrap();
    let app_pid = app_host_pid(&uuid, "ctx", status["initPid"].as_i64().unwrap());
    let ns: BTreeMap<String, Value> = e["namespaces"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(ns.contains_key("mnt") && ns.contains_key("pid"), "{ns:?}");
    for (kind, link) in &ns {
        let Ok(app) = std::fs::read_link(format!("/proc/{app_pid}/ns/{kind}")) else {
            continue;
        };
        assert_eq!(
            link.as_str(),
            Some(app.to_string_lossy().as_ref()),
            "{kind} namespace differs from the app's"
        );
    }
    // The app's cgroup, in every hierarchy the reference app had one.
    let cg_ref_uuid = env.uuid("ctx-ref");
    let paths = |r: &Value, uuid: &str| -> Vec<String> {
        r["cgroup"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["path"].as_str().unwrap_or_default().replace(uuid, "UUID"))
            .collect()
    };
    let entered_paths = paths(&e, &uuid);
    assert!(
        entered_paths.iter().any(|p| p.contains("/appc/UUID/ctx")),
        "{entered_paths:?}"
    );
    assert_eq!(entered_paths, paths(&reference, &cg_ref_uuid));
}

#[test]
fn no_mount_of_a_pod_is_in_the_host_mount_table() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("mnt", &["sleep", "inf"], |m| {
        m["app"]["mountPoints"] = json!([{"name": "vol", "path": "/vol"}]);
    });
    let name = "mnt-pod";
    let bg = Bg::start(
        &env,
        name,
        &["run", "--name", name, "--volume", "vol,kind=empty", &image],
    );
    let uuid = env.uuid(name);
    let dir = env.pod_dir(name);
    let dir_text = dir.to_string_lossy().into_owned();
    let data_text = env.dir().to_string_lossy().into_owned();
    assert_eq!(host_mounts_with(&uuid), Vec::<String>::new(), "running");
    assert_eq!(
        host_mounts_with(&data_text),
        Vec::<String>::new(),
        "running"
    );
    env.appcctl(&["stop", name]).ok();
    drop(bg);
    assert_eq!(host_mounts_with(&uuid), Vec::<String>::new(), "after stop");
    assert_eq!(
        host_mounts_with(&dir_text),
        Vec::<String>::new(),
        "after stop"
    );
    env.appcctl(&["rm", name]).ok();
    assert_eq!(host_mounts_with(&uuid), Vec::<String>::new(), "after rm");
    assert_eq!(
        host_mounts_with(&data_text),
        Vec::<String>::new(),
        "after rm"
    );
    assert!(!dir.exists(), "rm left {dir_text}");
}

#[test]
fn sys_and_proc_are_read_only_or_masked_for_a_root_app() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let targets = [
        "/proc/sys/kernel/hostname",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
        "/sys/class/net/lo/mtu",
        "/sys/kernel/uevent_helper",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/fs/cgroup/pids/pids.max",
    ];
    let mut script =
        String::from("/probe write /tmp/ctl x >/dev/null; /probe try-open-write /tmp/ctl; ");
    for t in targets {
        script.push_str(&format!(
            "/probe exists {t} >/dev/null && /probe try-open-write {t}; "
        ));
    }
    if Path::new("/proc/timer_list").exists() {
        script.push_str("/probe read /proc/timer_list; ");
    }
    let image = busybox_image(&env, "rosys", &script);
    let run = env.appcctl(&["run", &image]);
    run.ok();
    let out = reports(&run.stdout);
    let control = out.iter().find(|v| v["path"] == "/tmp/ctl").unwrap();
    assert_eq!(
        control["ok"], true,
        "control: the probe cannot write at all: {control}"
    );
    let tried: Vec<&Value> = out
        .iter()
        .filter(|v| v.get("ok").is_some() && v["path"] != "/tmp/ctl")
        .collect();
    let tried_paths: Vec<&str> = tried.iter().filter_map(|v| v["path"].as_str()).collect();
    let musts = [
        "/proc/sys/kernel/hostname",
        "/proc/sysrq-trigger",
        "/sys/class/net/lo/mtu",
    ];
    for must in musts.into_iter().filter(|p| Path::new(p).exists()) {
        assert!(
            tried_paths.contains(&must),
            "{must} missing in the pod: {}",
            run.stdout
        );
    }
    for v in &tried {
        assert_eq!(v["ok"], false, "a root app can write {}", v["path"]);
    }
    if let Some(timer) = out.iter().find(|v| v["path"] == "/proc/timer_list") {
        assert_eq!(timer["bytes"], 0, "/proc/timer_list is not masked");
    }
}

/// What a hostile image must never change on the host.
#[derive(Debug, PartialEq)]
struct HostView {
    /// (mount point, fstype) of the host mounts at the API filesystems' usual places.
    mounts: Vec<(String, String)>,
    /// Which device-like names exist directly in /tmp.
    tmp_names: Vec<(String, bool)>,
    /// /etc files a pod writes into its own /etc.
    etc: Vec<(String, Option<Vec<u8>>)>,
}

const DEVICE_NAMES: [&str; 16] = [
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts", "shm", "mqueue",
    "fd", "stdin", "stdout", "stderr", "core",
];

fn host_view() -> HostView {
    let watched = |p: &str| {
        ["/", "/proc", "/dev", "/tmp", "/etc", "/sys"]
            .iter()
            .any(|w| p == *w || (*w != "/" && p.starts_with(&format!("{w}/"))))
            && !p.starts_with("/tmp/.tmp")
    };
    let mut mounts: Vec<(String, String)> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = (*f.get(4)?).to_owned();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = (*f.get(sep + 1)?).to_owned();
            watched(&point).then_some((point, fstype))
        })
        .collect();
    mounts.sort();
    HostView {
        mounts,
        tmp_names: DEVICE_NAMES
            .iter()
            .map(|n| {
                let p = Path::new("/tmp").join(n);
                ((*n).to_owned(), p.symlink_metadata().is_ok())
            })
            .collect(),
        etc: [
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/etc/passwd",
        ]
        .iter()
        .map(|p| ((*p).to_owned(), std::fs::read(p).ok()))
        .collect(),
    }
}

#[test]
fn hostile_rootfs_symlinks_never_reach_the_host() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let sentinels = env.tmp.path().join("sentinels");
    let sentinel = |n: &str| {
        let d = sentinels.join(n);
        std::fs::create_dir_all(&d).unwrap();
        d.to_string_lossy().into_owned()
    };
    let deep_up = "../".repeat(24) + "..";
    let cases: Vec<(&str, &str, String)> = vec![
        ("proc-root", "proc", "/".to_owned()),
        ("proc-up", "proc", "../../..".to_owned()),
        ("proc-deep", "proc", deep_up.clone()),
        ("proc-sentinel", "proc", sentinel("proc")),
        ("dev-tmp", "dev", "/tmp".to_owned()),
        ("dev-sentinel", "dev", sentinel("dev")),
        ("sys-sentinel", "sys", sentinel("sys")),
        ("etc-etc", "etc", "/etc".to_owned()),
        ("etc-sentinel", "etc", sentinel("etc")),
    ];
    let before = host_view();
    for (name, link, target) in &cases {
        let layout = probe::probe_layout(env.tmp.path(), name, &["report"]);
        let rootfs = layout.join("rootfs");
        let at = rootfs.join(link);
        if at.is_dir() {
            std::fs::remove_dir_all(&at).unwrap();
        }
        symlink(target, &at).unwrap();
        let aci = env.tmp.path().join(format!("{name}.aci"));
        let aci = aci.to_str().unwrap();
        env.appcctl(&["image", "build", layout.to_str().unwrap(), aci])
            .ok();
        let fetch = env.appcctl(&["--insecure-options=image", "fetch", aci]);
        let outcome = if fetch.code == Some(0) {
            let run = env.appcctl(&["run", "--name", name, &format!("example.com/{name}")]);
            match run.code {
                Some(0) => {
                    // It ran: then its API filesystems are mounted inside its own root.
                    // (The probe sees only the pod's own root: wherever the symlink led in
                    // it, the filesystem works there.)
                    let r = run.report();
                    match *link {
                        "proc" => assert_eq!(r["proc_mounted"], true, "{name}"),
                        "dev" => assert_eq!(r["devices"]["null"]["type"], "char", "{name}"),
                        "sys" => assert!(
                            r["mounts"]
                                .as_array()
                                .is_some_and(|ms| ms.iter().any(|m| m["fstype"] == "sysfs")),
                            "{name}: no sysfs in the pod"
                        ),
                        _ => {}
                    }
                    "ran".to_owned()
                }
                Some(254) => {
                    assert!(
                        !run.stderr.contains("panicked") && !run.stderr.trim().is_empty(),
                        "{name}: unclean failure: {}",
                        run.stderr
                    );
                    format!("refused: {}", run.stderr.trim())
                }
                other => panic!(
                    "{name}: exit {other:?}\nstdout:\n{}\nstderr:\n{}",
                    run.stdout, run.stderr
                ),
            }
        } else {
            assert_eq!(fetch.code, Some(254), "{name}: {}", fetch.stderr);
            format!("not imported: {}", fetch.stderr.trim())
        };
        eprintln!("{name} (/{link} -> {target}): {outcome}");
        assert_eq!(host_view(), before, "{name} changed the host");
        for s in ["proc", "dev", "sys", "etc"] {
            let d = sentinels.join(s);
            let entries: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(
                entries.is_empty(),
                "{name}: {} gained {entries:?}",
                d.display()
            );
            assert_eq!(
                host_mounts_with(&d.to_string_lossy()),
                Vec::<String>::new(),
                "{name}: mounted on a sentinel"
            );
        }
    }
}
