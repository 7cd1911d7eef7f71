//! Tier 2: the real `appcctl` binary, as a user drives it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn appcctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .args(args)
        .output()
        .expect("run appcctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    p.display().to_string()
}

#[test]
fn validate_accepts_the_spec_examples() {
    let Some(dir) = common::appc_data("examples") else {
        return;
    };
    let files: Vec<String> = ["image.json", "pod_runtime.json", "pod_template.json"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = appcctl(&args);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.contains("image.json: valid ImageManifest example.com/reduce-worker"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pod_template.json: valid PodManifest template"),
        "{stdout}"
    );
}

#[test]
fn validate_reports_one_line_per_problem_and_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = write(
        tmp.path(),
        "bad.json",
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name",
            "app":{"user":"0","group":"0","workingDirectory":"relative"}}"#,
    );
    let good = write(
        tmp.path(),
        "good.json",
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/ok"}"#,
    );
    let out = appcctl(&["validate", &good, &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{bad}: name: \"Bad Name\" is not an AC Identifier"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{bad}: app.workingDirectory: ")),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{good}: valid ImageManifest example.com/ok")
    );
}

#[test]
fn validate_warnings_and_strict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = write(
        tmp.path(),
        "m.json",
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/a..b"}"#,
    );
    let out = appcctl(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("warning: name: "),
        "{}",
        text(&out.stderr)
    );
    let quiet = appcctl(&["validate", "-q", &f]);
    assert_eq!(quiet.status.code(), Some(0));
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));
    let strict = appcctl(&["validate", "--strict", &f]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(text(&strict.stderr).contains("invalid under --strict"));
}

#[test]
fn validate_reads_stdin_and_reports_unreadable_files() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}"#)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "-: valid PodManifest (0 apps)");

    let out = appcctl(&["validate", "/nonexistent/manifest.json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("/nonexistent/manifest.json: cannot read: "),
        "{stderr}"
    );
}

#[test]
fn validate_refuses_binary_input_with_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("x.aci");
    std::fs::write(&p, [0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]).expect("write");
    let out = appcctl(&["validate", p.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_flags_fail_with_usage_not_a_panic() {
    let out = appcctl(&["validate", "--no-such-flag", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unexpected argument '--no-such-flag'"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = appcctl(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Positional directory arguments must not collide with the global `--dir` (clap lets a
/// positional field named `dir` overwrite it): the store stays where `--dir` says.
#[test]
fn positional_directories_do_not_replace_the_store_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = tmp.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).expect("mkdir");
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x"}"#,
    )
    .expect("write");
    let store = tmp.path().join("store");
    let aci = tmp.path().join("x.aci");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let out = appcctl(&["--dir", &s(&store), "image", "build", &s(&layout), &s(&aci)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !layout.join("index.db").exists(),
        "the layout directory was used as the store"
    );
    let out = appcctl(&[
        "--dir",
        &s(&store),
        "--insecure-options=image",
        "fetch",
        &s(&aci),
    ]);
    if !out.status.success() {
        // Non-root runs cannot preserve ownership in the store; the flag check above still ran.
        common::skip(&format!("fetch failed (not root?): {}", text(&out.stderr)));
        return;
    }
    let target = tmp.path().join("render");
    let out = appcctl(&[
        "--dir",
        &s(&store),
        "image",
        "render",
        "example.com/x",
        &s(&target),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(target.join("manifest").is_file());
    assert!(store.join("index.db").is_file());
}
