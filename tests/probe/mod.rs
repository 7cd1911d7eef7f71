//! The in-pod probe (`tests/podprobe`) for integration tests: built once per test process as a
//! fully static executable, and laid out as an ACI image directory for `appcctl image build`.
//!
//! The probe is built with `cargo build --release -p podprobe` and
//! `RUSTFLAGS="-C target-feature=+crt-static"` into its own target directory
//! (`<CARGO_TARGET_DIR or target>/podprobe`), so the main crate's build cache is untouched.
//! `APPC_PODPROBE=/path/to/podprobe` uses a prebuilt binary instead.
#![allow(dead_code)] // each test crate uses a different subset

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The workspace root (this crate's manifest directory).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The probe's own target directory: `<CARGO_TARGET_DIR or <root>/target>/podprobe`.
pub fn probe_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_relative() {
                workspace_root().join(d)
            } else {
                d
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    base.join("podprobe")
}

/// The static probe binary, built on first use (once per test process; cargo's own lock makes
/// concurrent test processes wait for each other). Panics with cargo's output if the build fails.
pub fn probe_binary() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(build_probe).clone()
}

fn build_probe() -> PathBuf {
    if let Some(prebuilt) = std::env::var_os("APPC_PODPROBE") {
        let p = PathBuf::from(prebuilt);
        assert!(p.is_file(), "APPC_PODPROBE={} is not a file", p.display());
        return p;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = probe_target_dir();
    let started = Instant::now();
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "podprobe",
            "--manifest-path",
        ])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Takes precedence over RUSTFLAGS when set (by an outer cargo).
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} to build the probe: {e}"));
    assert!(
        out.status.success(),
        "building podprobe failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join("release/podprobe");
    assert!(bin.is_file(), "podprobe not found at {}", bin.display());
    eprintln!(
        "podprobe built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    bin
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Writes an ACI layout directory `dir/<name>` (made if missing) with the probe as its app, and
/// returns it:
///
/// - `manifest`: name `example.com/<name>`, labels `os=linux` and the host's `arch`, app
///   `exec = ["/probe", exec_args...]`, user and group `0`;
/// - `rootfs/probe`: the static probe binary (0755);
/// - `rootfs/etc/passwd`, `rootfs/etc/group`: root (0) and nobody/nogroup (65534);
/// - `rootfs/tmp`: empty, mode 1777.
///
/// Pack it with `appcctl image build <layout> <out.aci>`.
pub fn probe_layout(dir: &Path, name: &str, exec_args: &[&str]) -> PathBuf {
    let layout = dir.join(name);
    let rootfs = layout.join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir rootfs/etc");
    fs::create_dir_all(rootfs.join("tmp")).expect("mkdir rootfs/tmp");
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod rootfs/tmp");
    let probe = rootfs.join("probe");
    fs::copy(probe_binary(), &probe).expect("copy the probe into rootfs");
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o755)).expect("chmod probe");
    fs::write(rootfs.join("etc/passwd"), PASSWD).expect("write etc/passwd");
    fs::write(rootfs.join("etc/group"), GROUP).expect("write etc/group");

    let (os, arch) = appc_pod::schema::host_os_arch();
    let mut exec = vec!["/probe".to_owned()];
    exec.extend(exec_args.iter().map(|a| (*a).to_owned()));
    let manifest = serde_json::json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": format!("example.com/{name}"),
        "labels": [
            {"name": "os", "value": os},
            {"name": "arch", "value": arch},
        ],
        "app": {
            "exec": exec,
            "user": "0",
            "group": "0",
        },
    });
    let text = serde_json::to_string_pretty(&manifest).expect("serialise the manifest");
    fs::write(layout.join("manifest"), text + "\n").expect("write manifest");
    layout
}
