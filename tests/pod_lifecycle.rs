//! A pod's life from the outside: `stop` (graceful, timed out, forced), signals to `appcctl
//! run`, `prepare` + concurrent `run-prepared`, `kill -9` of the runner (and of the whole pod)
//! followed by `stop` and `gc`, zombie reaping by the init, `--uuid-file-save`, unique names
//! and `status --wait`.
//!
//! Pods run as background children of the test (`Bg`); readiness is polled (status, the
//! probe's `sleeping` line), never slept for.

mod common;
mod pod;
mod probe;

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pod::{Env, can_run_pods, host_mounts_with};
use serde_json::{Value, json};

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `status --format json` of a pod, or `None` while it cannot be shown (not created yet).
fn try_status(env: &Env, pod: &str) -> Option<Value> {
    let r = env.appcctl(&["status", "--format", "json", pod]);
    serde_json::from_str(&r.stdout).ok()
}

fn state_of(env: &Env, pod: &str) -> Option<String> {
    try_status(env, pod).and_then(|v| v["state"].as_str().map(str::to_owned))
}

/// An `appcctl` running in the background, its output in files; on drop the child is killed
/// and the pod (if named) is stopped with `--force`, so a failing test leaves nothing running.
struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    dir: PathBuf,
    pod: Option<String>,
}

impl Bg {
    fn spawn(env: &Env, tag: &str, pod: Option<&str>, args: &[&str]) -> Bg {
        let out = env.tmp.path().join(format!("{tag}.stdout"));
        let err = env.tmp.path().join(format!("{tag}.stderr"));
        let child = env
            .cmd(args)
            .stdout(Stdio::from(File::create(&out).expect("create stdout file")))
            .stderr(Stdio::from(File::create(&err).expect("create stderr file")))
            .spawn()
            .expect("spawn appcctl");
        Bg {
            child,
            out,
            err,
            dir: env.dir(),
            pod: pod.map(str::to_owned),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the child to exit; panics after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "appcctl still running after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the pod is running and the probe printed its `sleeping` line.
    fn wait_sleeping(&mut self, env: &Env) {
        let pod = self.pod.clone().expect("a named pod");
        let start = Instant::now();
        loop {
            if self.stdout().contains("\"sleeping\"")
                && state_of(env, &pod).as_deref() == Some("running")
            {
                return;
            }
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "appcctl exited ({st}) before the app slept\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "pod {pod} did not start\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(pod) = &self.pod {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_appcctl"))
                .arg("--dir")
                .arg(&self.dir)
                .args(["stop", "--force", pod])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every existing cgroup directory of pod `uuid`: `/sys/fs/cgroup/<hierarchy>/appc/<uuid>`
/// (v1) and `/sys/fs/cgroup/appc/<uuid>` (v2).
fn pod_cgroup_dirs(uuid: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("appc").join(uuid)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join("appc").join(uuid)));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// The host pids of every process of pod `uuid`: from its cgroups' `cgroup.procs` files and
/// from `/proc/*/cgroup` lines naming the uuid.
fn pod_pids(uuid: &str) -> Vec<i32> {
    fn walk(dir: &Path, pids: &mut Vec<i32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), pids);
                }
            }
        }
    }
    let mut pids = Vec::new();
    for d in pod_cgroup_dirs(uuid) {
        walk(&d, &mut pids);
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|t| t.contains(uuid)) {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A probe image whose app sleeps forever (or ignores SIGTERM), with an `empty` volume
/// `marks` at /marks and a post-stop handler writing /marks/post-stop.
fn sleeper_image(env: &Env, name: &str, ignore_term: bool) -> String {
    let mut args = vec!["sleep", "inf"];
    if ignore_term {
        args.push("--ignore-term");
    }
    env.probe_image(name, &args, |m| {
        m["app"]["mountPoints"] = json!([{"name": "marks", "path": "/marks"}]);
        m["app"]["eventHandlers"] = json!([
            {"name": "post-stop", "exec": ["/probe", "write", "/marks/post-stop", "ran"]},
        ]);
    })
}

/// A probe image that also has busybox as /bin/busybox (with sh, sleep, cat links), whose app
/// is `/bin/busybox sh -c SCRIPT`.
fn busybox_image(env: &Env, name: &str, script: &str) -> String {
    let layout = probe::probe_layout(env.tmp.path(), name, &[]);
    let bin = layout.join("rootfs/bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (busybox-static)");
    for applet in ["sh", "sleep", "cat", "echo"] {
        symlink("busybox", bin.join(applet)).expect("busybox applet link");
    }
    let path = layout.join("manifest");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read manifest"))
            .expect("parse manifest");
    m["app"]["exec"] = json!(["/bin/busybox", "sh", "-c", script]);
    std::fs::write(&path, m.to_string()).expect("write manifest");
    env.import(&layout, name);
    format!("example.com/{name}")
}

fn app_exit_code(status: &Value) -> Option<i64> {
    status["apps"][0]["exitCode"].as_i64()
}

#[test]
fn stop_is_graceful_runs_post_stop_and_records_the_exit_code() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "stopper", false);
    let name = "stop-term";
    let mut bg = Bg::spawn(
        &env,
        name,
        Some(name),
        &[
            "run",
            "--name",
            name,
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    bg.wait_sleeping(&env);
    let stop = env.appcctl(&["stop", name]);
    stop.ok();
    assert!(stop.stdout.contains("stopped"), "{}", stop.stdout);
    let st = bg.wait(DEADLINE);
    assert_eq!(st.code(), Some(143), "stderr: {}", bg.stderr());
    let marker = env.pod_dir(name).join("volumes/marks/post-stop");
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("ran"),
        "the post-stop handler did not run ({})",
        marker.display()
    );
    let status = env.status(name);
    assert_eq!(status["state"], "exited", "{status}");
    assert_eq!(app_exit_code(&status), Some(143), "{status}");
    assert_eq!(status["exitCode"], 143, "{status}");
}

#[test]
fn stop_timeout_and_force_kill_an_app_that_ignores_sigterm() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "stubborn", true);
    let mut timed = Bg::spawn(
        &env,
        "stub-timed",
        Some("stub-timed"),
        &[
            "run",
            "--name",
            "stub-timed",
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    let mut forced = Bg::spawn(
        &env,
        "stub-forced",
        Some("stub-forced"),
        &[
            "run",
            "--name",
            "stub-forced",
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    timed.wait_sleeping(&env);
    forced.wait_sleeping(&env);

    let start = Instant::now();
    let stop = env.appcctl(&["stop", "--timeout", "1s", "stub-timed"]);
    let took = start.elapsed();
    stop.ok();
    assert!(
        stop.stdout.contains("killed"),
        "stop --timeout 1s: {}",
        stop.stdout
    );
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_secs(6),
        "stop --timeout 1s took {took:?}"
    );
    timed.wait(DEADLINE);
    assert_eq!(
        state_of(&env, "stub-timed").as_deref(),
        Some("exited"),
        "{:?}",
        try_status(&env, "stub-timed")
    );

    let start = Instant::now();
    let stop = env.appcctl(&["stop", "--force", "stub-forced"]);
    let took = start.elapsed();
    stop.ok();
    assert!(
        stop.stdout.contains("killed"),
        "stop --force: {}",
        stop.stdout
    );
    // The default timeout is 10 s: --force must not wait for it.
    assert!(took < Duration::from_secs(4), "stop --force took {took:?}");
    forced.wait(DEADLINE);
    assert_eq!(state_of(&env, "stub-forced").as_deref(), Some("exited"));
}

#[test]
fn sigterm_and_sigint_to_appcctl_run_stop_the_pod_gracefully() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "signalled", false);
    let mut pods = Vec::new();
    for (name, sig) in [("sig-term", Signal::SIGTERM), ("sig-int", Signal::SIGINT)] {
        let bg = Bg::spawn(
            &env,
            name,
            Some(name),
            &[
                "run",
                "--name",
                name,
                "--volume",
                "marks,kind=empty",
                &image,
            ],
        );
        pods.push((name, sig, bg));
    }
    for (name, sig, bg) in &mut pods {
        bg.wait_sleeping(&env);
        kill(bg.pid(), *sig).unwrap();
        let st = bg.wait(DEADLINE);
        assert_eq!(st.code(), Some(143), "{name}: {st}: {}", bg.stderr());
        let status = env.status(name);
        assert_eq!(status["state"], "exited", "{name}: {status}");
        assert_eq!(app_exit_code(&status), Some(143), "{name}: {status}");
        let marker = env.pod_dir(name).join("volumes/marks/post-stop");
        assert!(
            marker.is_file(),
            "{name}: post-stop did not run after {sig:?}"
        );
    }
}

#[test]
fn concurrent_run_prepared_runs_the_pod_once() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("prepped", &["sleep", "2"], |_| {});
    let prep = env.appcctl(&["prepare", "--name", "prep-once", &image]);
    prep.ok();
    let uuid = prep.stdout.trim().to_owned();
    assert_eq!(uuid.len(), 36, "prepare printed {:?}", prep.stdout);
    assert_eq!(state_of(&env, &uuid).as_deref(), Some("prepared"));

    let mut a = Bg::spawn(&env, "rp-a", None, &["run-prepared", &uuid]);
    let mut b = Bg::spawn(&env, "rp-b", None, &["run-prepared", "prep-once"]);
    let (sa, sb) = (a.wait(DEADLINE), b.wait(DEADLINE));
    let results = [(sa.code(), &a), (sb.code(), &b)];
    let winners: Vec<_> = results.iter().filter(|(c, _)| *c == Some(0)).collect();
    let losers: Vec<_> = results.iter().filter(|(c, _)| *c != Some(0)).collect();
    assert_eq!(
        (winners.len(), losers.len()),
        (1, 1),
        "codes {:?} / {:?}; stderr a: {} b: {}",
        sa.code(),
        sb.code(),
        a.stderr(),
        b.stderr()
    );
    let (code, loser) = losers[0];
    assert_eq!(*code, Some(254), "{}", loser.stderr());
    let msg = loser.stderr();
    assert!(
        msg.contains("prep-once")
            && (msg.contains("another appcctl") || msg.contains("only a prepared pod")),
        "unclear refusal: {msg}"
    );
    let runs =
        a.stdout().matches("\"sleeping\"").count() + b.stdout().matches("\"sleeping\"").count();
    assert_eq!(runs, 1, "the app ran {runs} times");

    // An exited pod is never run again.
    assert_eq!(state_of(&env, &uuid).as_deref(), Some("exited"));
    let again = env.appcctl(&["run-prepared", &uuid]);
    assert_eq!(again.code, Some(254), "{}", again.stderr);
    assert!(
        again.stderr.contains("exited") && again.stderr.contains("prepared"),
        "{}",
        again.stderr
    );
    assert!(
        again.stdout.is_empty(),
        "the app ran again: {}",
        again.stdout
    );
}

#[test]
fn kill9_of_appcctl_run_leaves_the_pod_running_until_stop_and_gc() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "orphaned", false);
    let name = "orphan-pod";
    let mut bg = Bg::spawn(
        &env,
        name,
        Some(name),
        &[
            "run",
            "--name",
            name,
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    bg.wait_sleeping(&env);
    let uuid = env.uuid(name);
    let pod_dir = env.pod_dir(name);
    assert!(!pod_cgroup_dirs(&uuid).is_empty(), "no cgroup of {uuid}");

    kill(bg.pid(), Signal::SIGKILL).unwrap();
    bg.wait(DEADLINE);
    // The init holds the pod lock: still running, processes and all.
    let status = env.status(name);
    assert_eq!(status["state"], "running", "{status}");
    assert!(!pod_pids(&uuid).is_empty(), "the pod's processes are gone");

    let stop = env.appcctl(&["stop", name]);
    stop.ok();
    let status = env.status(name);
    assert_eq!(status["state"], "exited", "{status}");
    assert_eq!(app_exit_code(&status), Some(143), "{status}");
    assert!(pod_pids(&uuid).is_empty(), "{:?}", pod_pids(&uuid));

    env.appcctl(&["gc", "--grace-period", "0s"]).ok();
    assert!(!pod_dir.exists(), "gc left {}", pod_dir.display());
    assert_eq!(pod_cgroup_dirs(&uuid), Vec::<PathBuf>::new());
    assert_eq!(host_mounts_with(&uuid), Vec::<String>::new());
    let list = env.appcctl(&["list", "--format", "json"]);
    assert!(!list.ok().stdout.contains(&uuid), "{}", list.stdout);
}

#[test]
fn kill9_of_appcctl_and_every_pod_process_then_gc_cleans_up() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "massacre", false);
    let name = "massacre-pod";
    let mut bg = Bg::spawn(
        &env,
        name,
        Some(name),
        &[
            "run",
            "--name",
            name,
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    bg.wait_sleeping(&env);
    let uuid = env.uuid(name);
    let pod_dir = env.pod_dir(name);
    let pids = pod_pids(&uuid);
    assert!(pids.len() >= 2, "init and app expected: {pids:?}");

    kill(bg.pid(), Signal::SIGKILL).unwrap();
    bg.wait(DEADLINE);
    wait_until(DEADLINE, "every pod process to die", || {
        let pids = pod_pids(&uuid);
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        pids.is_empty()
    });
    wait_until(DEADLINE, "status to say exited", || {
        state_of(&env, name).as_deref() == Some("exited")
    });

    env.appcctl(&["gc", "--grace-period", "0s"]).ok();
    assert!(!pod_dir.exists(), "gc left {}", pod_dir.display());
    assert_eq!(pod_cgroup_dirs(&uuid), Vec::<PathBuf>::new());
    assert_eq!(host_mounts_with(&uuid), Vec::<String>::new());
}

#[test]
fn the_init_reaps_orphaned_zombies() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = busybox_image(
        &env,
        "reaper",
        "(sleep 0.2 &); (sleep 0.2 &); echo started; sleep 30",
    );
    let name = "reaper-pod";
    let mut bg = Bg::spawn(&env, name, Some(name), &["run", "--name", name, &image]);
    wait_until(DEADLINE, "the app to start its orphans", || {
        bg.stdout().contains("started") && state_of(&env, name).as_deref() == Some("running")
    });
    // The two orphaned `sleep 0.2` exit shortly; the init must reap them: eventually the only
    // `sleep` is the app's `sleep 30`, and nothing is a zombie.
    let start = Instant::now();
    loop {
        let r = env.appcctl(&[
            "enter",
            name,
            "/bin/busybox",
            "sh",
            "-c",
            "cat /proc/[0-9]*/stat",
        ]);
        let procs: Vec<(String, String)> = r
            .stdout
            .lines()
            .filter_map(|l| {
                let open = l.find('(')?;
                let close = l.rfind(')')?;
                let state = l[close + 1..].split_whitespace().next()?;
                Some((l[open + 1..close].to_owned(), state.to_owned()))
            })
            .collect();
        assert!(!procs.is_empty(), "enter failed: {}{}", r.stdout, r.stderr);
        let sleeps = procs.iter().filter(|(c, _)| c == "sleep").count();
        let zombies = procs.iter().filter(|(_, s)| s == "Z").count();
        if sleeps == 1 && zombies == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "orphans not reaped ({sleeps} sleep, {zombies} zombie):\n{}",
            r.stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    env.appcctl(&["stop", "--force", name]).ok();
    bg.wait(DEADLINE);
}

#[test]
fn uuid_file_save_status_stop_and_unique_names() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = sleeper_image(&env, "uuidf", false);
    let file = env.tmp.path().join("pod.uuid");
    let f = file.to_str().unwrap();
    let name = "uniq-pod";
    let mut bg = Bg::spawn(
        &env,
        name,
        Some(name),
        &[
            "run",
            "--uuid-file-save",
            f,
            "--name",
            name,
            "--volume",
            "marks,kind=empty",
            &image,
        ],
    );
    bg.wait_sleeping(&env);
    let uuid = env.uuid(name);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), uuid);
    let st = env.appcctl(&["status", "--format", "json", "--uuid-file", f]);
    let v: Value = serde_json::from_str(&st.ok().stdout).unwrap();
    assert_eq!(
        (v["uuid"].as_str(), v["state"].as_str()),
        (Some(&*uuid), Some("running"))
    );

    // A second pod with the same name is refused, naming the name; the first is untouched.
    let dup = env.appcctl(&["run", "--name", name, &image, "--", "exit", "0"]);
    assert_eq!(dup.code, Some(254), "{}{}", dup.stdout, dup.stderr);
    assert!(dup.stderr.contains(name), "{}", dup.stderr);
    assert!(!dup.stdout.contains("sleeping"), "{}", dup.stdout);
    assert_eq!(state_of(&env, name).as_deref(), Some("running"));
    assert_eq!(env.uuid(name), uuid);

    let stop = env.appcctl(&["stop", "--uuid-file", f]);
    stop.ok();
    assert_eq!(bg.wait(DEADLINE).code(), Some(143), "{}", bg.stderr());
    assert_eq!(state_of(&env, &uuid).as_deref(), Some("exited"));
}

#[test]
fn status_wait_returns_when_the_pod_exits_with_its_exit_code() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = busybox_image(&env, "waiter", "sleep 1; exit 3");
    let name = "wait-pod";
    let mut bg = Bg::spawn(&env, name, Some(name), &["run", "--name", name, &image]);
    wait_until(DEADLINE, "the pod to run", || {
        state_of(&env, name).as_deref() == Some("running")
    });
    let r = env.appcctl(&["status", "--wait", "--format", "json", name]);
    let v: Value = serde_json::from_str(&r.ok().stdout).unwrap();
    assert_eq!(v["state"], "exited", "{v}");
    assert_eq!(v["exitCode"], 3, "{v}");
    assert_eq!(app_exit_code(&v), Some(3), "{v}");
    assert_eq!(bg.wait(DEADLINE).code(), Some(3), "{}", bg.stderr());
}
