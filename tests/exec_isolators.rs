//! The security isolators against the real kernel (ace.md "Isolators", appc-requirements.md
//! §2.5.8): the bounding set, no_new_privs, oom_score_adj and seccomp filters applied by
//! `appc_pod::exec::security` as the executor applies them in an app's child.
//!
//! Capabilities, no_new_privs and seccomp filters cannot be undone, and forking inside the
//! multi-threaded harness is unsafe, so each case re-executes this test binary with only
//! [`child_entry`] selected and the case as JSON in [`CASE_ENV`]. The child applies the plan,
//! prints `LOADED`, runs the probes the case names and prints `RESULT {json}`; the parent test
//! asserts on that line or on the signal that killed the child. Without the variable
//! `child_entry` returns at once.
//!
//! The tests need root (the drop and an early seccomp load need capabilities); without it they
//! print `SKIP:` (or fail when `APPC_TEST_NO_SKIP=1`).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use appc_pod::exec::security::{
    self, DEFAULT_CAPABILITIES, SecurityPlan, load_seccomp_before_user_switch, plan_security,
};
use appc_pod::schema::{
    CapabilitySet, ErrnoName, Isolator, OomScoreAdj, SeccompEntry, SeccompFilter,
};
use caps::Capability;
use serde_json::{Map, Value, json};

const CASE_ENV: &str = "APPC_POD_TEST_SECURITY_CASE";
const SIGSYS: i32 = 31;

// ---- the child ----

#[derive(serde::Serialize, serde::Deserialize)]
struct Case {
    plan: SecurityPlan,
    probes: Vec<String>,
    /// A scratch directory for `mkdirat`.
    dir: String,
}

/// Runs in the re-executed child only.
#[test]
fn child_entry() {
    let Ok(json) = std::env::var(CASE_ENV) else {
        return;
    };
    let case: Case = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    // The SIGSYS cases must not leave core files behind.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    if let Err(e) = apply(&case.plan) {
        eprintln!("RESULT {}", json!({ "error": e.to_string() }));
        return;
    }
    eprintln!("LOADED");
    let mut out = Map::new();
    for probe in &case.probes {
        eprintln!("PROBE {probe}");
        out.insert(probe.clone(), run_probe(probe, Path::new(&case.dir)));
    }
    eprintln!("RESULT {}", Value::Object(out));
}

/// The executor's order, without the user switch (the child stays root).
fn apply(plan: &SecurityPlan) -> Result<(), security::SecurityError> {
    security::drop_privileges(plan)?;
    load_seccomp_before_user_switch(plan)?;
    security::lock_down(plan)
}

/// 0 for success, else the errno.
fn errno_of<T>(r: Result<T, rustix::io::Errno>) -> Value {
    json!(r.err().map_or(0, |e| e.raw_os_error()))
}

fn status_field(name: &str) -> Value {
    // Capabilities and no_new_privs are per thread, and the harness runs tests in a thread.
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let value = status.lines().find_map(|l| l.strip_prefix(name));
    json!(value.map(str::trim))
}

fn run_probe(probe: &str, dir: &Path) -> Value {
    match probe {
        "capbnd" => status_field("CapBnd:"),
        "nnp" => status_field("NoNewPrivs:"),
        "oom" => json!(
            std::fs::read_to_string("/proc/self/oom_score_adj")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        ),
        "getcwd" => errno_of(rustix::process::getcwd(Vec::new())),
        "mkdirat" => {
            let mode = rustix::fs::Mode::from_raw_mode(0o755);
            errno_of(rustix::fs::mkdirat(rustix::fs::CWD, dir.join("sub"), mode))
        }
        // A new UTS namespace only affects this throwaway child.
        "unshare" => json!(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
                .err()
                .map_or(0, |e| e as i32)
        ),
        other => panic!("unknown probe {other}"),
    }
}

// ---- the parent ----

struct ChildRun {
    status: ExitStatus,
    loaded: bool,
    /// The last probe the child started.
    last_probe: Option<String>,
    result: Option<Value>,
    output: String,
}

fn run_child(plan: &SecurityPlan, probes: &[&str]) -> ChildRun {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let case = Case {
        plan: plan.clone(),
        probes: probes.iter().map(|p| (*p).to_owned()).collect(),
        dir: dir.path().display().to_string(),
    };
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, serde_json::to_string(&case).unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("{e}: {j}")));
    ChildRun {
        status: out.status,
        loaded: stderr.lines().any(|l| l == "LOADED"),
        last_probe: stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("PROBE "))
            .map(str::to_owned),
        result,
        output: format!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout)),
    }
}

/// The child's probe results, after checking that it applied the plan and exited cleanly.
fn probe(plan: &SecurityPlan, probes: &[&str]) -> Value {
    let run = run_child(plan, probes);
    assert!(run.status.success(), "{:?}\n{}", run.status, run.output);
    assert!(run.loaded, "{}", run.output);
    run.result
        .unwrap_or_else(|| panic!("no RESULT line\n{}", run.output))
}

/// Prints `SKIP:` and returns false, or fails when skipping is not allowed.
fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let reason = "security isolator tests need root";
    if std::env::var("APPC_TEST_NO_SKIP").as_deref() == Ok("1") {
        panic!("cannot run ({reason}) and APPC_TEST_NO_SKIP=1");
    }
    eprintln!("SKIP: {reason}");
    false
}

fn plan(app: &[Isolator]) -> SecurityPlan {
    let (plan, _) = plan_security(&[], app).unwrap_or_else(|e| panic!("{e}"));
    plan
}

fn seccomp(set: &[&str], errno: Option<&str>) -> SeccompFilter {
    let set = set
        .iter()
        .map(|s| SeccompEntry::parse(s).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let errno = errno.map(|e| ErrnoName::parse(e).unwrap_or_else(|e| panic!("{e}")));
    SeccompFilter::new(set, errno).unwrap_or_else(|e| panic!("{e}"))
}

fn oom(v: i64) -> Isolator {
    Isolator::OomScoreAdj(OomScoreAdj::new(v).unwrap_or_else(|e| panic!("{e}")))
}

fn mask(caps: &[Capability]) -> String {
    format!("{:016x}", caps.iter().fold(0, |m, c| m | c.bitmask()))
}

const EPERM: i32 = libc::EPERM;

#[test]
fn default_bounding_set_and_blacklist() {
    if !is_root() {
        return;
    }
    let p = plan(&[]);
    assert!(security::seccomp_before_user_switch(&p));
    let r = probe(&p, &["capbnd", "nnp", "unshare", "getcwd", "mkdirat"]);
    let want = json!({
        "capbnd": mask(&DEFAULT_CAPABILITIES), "nnp": "0",
        "unshare": EPERM, "getcwd": 0, "mkdirat": 0,
    });
    assert_eq!(r, want);
}

#[test]
fn retain_caps_no_new_privs_and_oom_score_adj() {
    if !is_root() {
        return;
    }
    let caps = [Capability::CAP_KILL, Capability::CAP_CHOWN];
    let set = CapabilitySet::new(caps.to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let app = [
        Isolator::CapabilitiesRetainSet(set),
        Isolator::NoNewPrivileges(true),
        oom(500),
    ];
    let p = plan(&app);
    assert!(!security::seccomp_before_user_switch(&p));
    let r = probe(&p, &["capbnd", "nnp", "oom", "unshare"]);
    let want = json!({"capbnd": mask(&caps), "nnp": "1", "oom": "500", "unshare": EPERM});
    assert_eq!(r, want);
}

#[test]
fn negative_oom_score_adj_needs_cap_sys_resource() {
    if !is_root() {
        return;
    }
    let run = run_child(&plan(&[oom(-500)]), &["oom"]);
    let result = run
        .result
        .unwrap_or_else(|| panic!("no RESULT\n{}", run.output));
    let effective = caps::read(None, caps::CapSet::Effective).unwrap_or_default();
    if effective.contains(&Capability::CAP_SYS_RESOURCE) {
        assert_eq!(result, json!({"oom": "-500"}));
    } else {
        let want = "cannot write oom_score_adj -500 to /proc/self/oom_score_adj (lowering it needs CAP_SYS_RESOURCE): Permission denied (os error 13)";
        assert_eq!(result, json!({ "error": want }));
    }
}

#[test]
fn remove_set_with_errno_returns_it() {
    if !is_root() {
        return;
    }
    let p = plan(&[Isolator::SeccompRemoveSet(seccomp(
        &["mkdirat"],
        Some("EROFS"),
    ))]);
    let r = probe(&p, &["mkdirat", "getcwd", "unshare"]);
    // An explicit remove-set replaces the default blacklist: unshare is allowed.
    assert_eq!(
        r,
        json!({"mkdirat": libc::EROFS, "getcwd": 0, "unshare": 0})
    );
}

#[test]
fn remove_set_without_errno_kills_with_sigsys() {
    if !is_root() {
        return;
    }
    let p = plan(&[Isolator::SeccompRemoveSet(seccomp(&["mkdirat"], None))]);
    let run = run_child(&p, &["getcwd", "mkdirat"]);
    assert!(run.loaded, "{}", run.output);
    assert_eq!(run.result, None, "{}", run.output);
    assert_eq!(run.last_probe.as_deref(), Some("mkdirat"), "{}", run.output);
    assert_eq!(run.status.signal(), Some(SIGSYS), "{}", run.output);
}

#[test]
fn retain_set_blocks_everything_else() {
    if !is_root() {
        return;
    }
    let p = plan(&[Isolator::SeccompRetainSet(seccomp(
        &["getcwd"],
        Some("EXDEV"),
    ))]);
    let r = probe(&p, &["getcwd", "mkdirat", "unshare"]);
    let want = json!({"getcwd": 0, "mkdirat": libc::EXDEV, "unshare": libc::EXDEV});
    assert_eq!(r, want);
}

#[test]
fn retain_set_without_errno_kills_with_sigsys() {
    if !is_root() {
        return;
    }
    let p = plan(&[Isolator::SeccompRetainSet(seccomp(&["getcwd"], None))]);
    let run = run_child(&p, &["getcwd", "mkdirat"]);
    assert!(run.loaded, "{}", run.output);
    assert_eq!(run.last_probe.as_deref(), Some("mkdirat"), "{}", run.output);
    assert_eq!(run.status.signal(), Some(SIGSYS), "{}", run.output);
}

#[test]
fn appc_all_retain_set_opts_out_of_filtering() {
    if !is_root() {
        return;
    }
    let p = plan(&[Isolator::SeccompRetainSet(seccomp(
        &[SeccompEntry::ALL],
        None,
    ))]);
    assert_eq!(p.seccomp, None);
    let r = probe(&p, &["unshare", "mkdirat"]);
    assert_eq!(r, json!({"unshare": 0, "mkdirat": 0}));
}
