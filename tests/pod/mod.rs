//! Running pods from tests: a private data dir, probe images built with `appcctl image build`,
//! and `appcctl` invocations whose output is the assertion (the probe prints JSON).
//!
//! Pods need root (namespaces, mounts, cgroups); CI runs as root. Without root each test
//! skips through `common::skip`, which fails under `APPC_TEST_NO_SKIP=1`.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common;
use crate::probe;

/// An appcctl data dir with images in it; removed on drop.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

/// The result of an `appcctl` call.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The probe's JSON report: the last stdout line that parses as an object.
    pub fn report(&self) -> Value {
        self.stdout
            .lines()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(Value::is_object)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no JSON report in stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// The JSON object printed by the app whose output has `key` (several apps share stdout).
    pub fn report_with(&self, key: &str) -> Value {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get(key).is_some())
            .unwrap_or_else(|| {
                panic!(
                    "no JSON with {key:?} in stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Whether pods can run here (root); skips (or fails in CI) otherwise.
pub fn can_run_pods() -> bool {
    if !rustix::process::geteuid().is_root() {
        common::skip("running pods needs root");
        return false;
    }
    true
}

impl Env {
    pub fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// `appcctl --dir <data> ARGS`, stdin from /dev/null.
    ///
    /// `run` and `prepare` get `--net=none` unless they name a network: these tests run in the
    /// machine's own network namespace, where the default network would create a bridge and
    /// firewall rules (tests/net*.rs test it inside namespaces of their own).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_appcctl"));
        c.arg("--dir").arg(self.dir());
        match args.split_first() {
            Some((verb, rest))
                if matches!(*verb, "run" | "prepare")
                    && !rest.iter().any(|a| a.starts_with("--net")) =>
            {
                c.arg(verb).arg("--net=none").args(rest);
            }
            _ => {
                c.args(args);
            }
        }
        c.stdin(Stdio::null());
        c
    }

    pub fn appcctl(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("run appcctl").into()
    }

    /// Builds and imports a probe image `example.com/<name>` whose manifest `edit` may change
    /// (the app section, labels, …); `files` are extra rootfs files (path, content).
    pub fn probe_image(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> String {
        let layout = probe::probe_layout(self.tmp.path(), name, args);
        let path = layout.join("manifest");
        let mut manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read manifest"))
                .expect("parse manifest");
        edit(&mut manifest);
        std::fs::write(&path, manifest.to_string()).expect("write manifest");
        self.import(&layout, name);
        format!("example.com/{name}")
    }

    /// Packs `layout` and imports it (unsigned, as tests do).
    pub fn import(&self, layout: &Path, name: &str) {
        let aci = self.tmp.path().join(format!("{name}.aci"));
        let (l, a) = (
            layout.to_str().expect("utf-8 path"),
            aci.to_str().expect("utf-8 path"),
        );
        self.appcctl(&["image", "build", l, a]).ok();
        self.appcctl(&["--insecure-options=image", "fetch", a]).ok();
    }

    /// The directory of the pod named `name`.
    pub fn pod_dir(&self, name: &str) -> PathBuf {
        let uuid = self.uuid(name);
        self.dir().join("pods").join(uuid)
    }

    pub fn uuid(&self, name: &str) -> String {
        let r = self.appcctl(&["status", "--format", "json", name]);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("status json of {name}: {e}: {}{}", r.stdout, r.stderr));
        v["uuid"].as_str().expect("uuid in status").to_owned()
    }

    pub fn status(&self, name: &str) -> Value {
        let r = self.appcctl(&["status", "--format", "json", name]);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("status json of {name}: {e}: {}{}", r.stdout, r.stderr))
    }
}

/// The names in a capability set of the probe's report.
pub fn cap_names(report: &Value, set: &str) -> Vec<String> {
    report["caps"][set]["names"]
        .as_array()
        .unwrap_or_else(|| panic!("no caps.{set} in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The mount of the probe's report at `point`, if any (the last one wins, like the kernel).
pub fn mount_at<'a>(report: &'a Value, point: &str) -> Option<&'a Value> {
    report["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["mount_point"] == point)
}

/// Lines of the host's mountinfo that mention `needle`.
pub fn host_mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}
