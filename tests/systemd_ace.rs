//! The full ACE-equivalent run (appc-requirements §5.1) under a real systemd (the test host,
//! `tests/host/`): two images built from the appc spec's `ace/image_manifest_*.json.in`, with the
//! in-pod probe (`tests/podprobe`) as `/ace-validator` in place of the Go validator, run as one
//! pod on the default network with the metadata service socket-activated. Every mode passes:
//! `prestart OK`, then `main OK` and `sidekick OK`, then `poststop OK`, and no `FAIL`.
//!
//! Needs root, systemd-nspawn, overlayfs and `../shared/appc` (or `APPC_SHARED_DIR`); otherwise
//! `SKIP`, or a failure under `APPC_TEST_NO_SKIP=1`. Run: `cargo test --test systemd_ace --
//! --nocapture`

mod common;
mod host;
mod probe;

use std::path::{Path, PathBuf};
use std::time::Duration;

use host::{APPCCTL, HostOptions, TestHost};

const UNIT_DIR: &str = "/usr/lib/systemd/system";
const UNITS: [&str; 2] = ["appc-metadata.socket", "appc-metadata.service"];
/// Where `appc-metadata.service` expects the binary.
const BINARY: &str = "/usr/libexec/appc-pod/appc-metadata";
/// The work directory inside the host.
const WORK: &str = "/root/ace";
const APPS: [&str; 2] = ["main", "sidekick"];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("units")
}

/// `image_manifest_<app>.json.in` with the build script's substitutions (`@ACI_OS@`,
/// `@ACI_ARCH@`: this host's appc os and arch, `linux`/`amd64` on x86_64).
fn manifest(dir: &Path, app: &str) -> String {
    let path = dir.join(format!("image_manifest_{app}.json.in"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (os, arch) = appc_pod::schema::host_os_arch();
    text.replace("@ACI_OS@", os).replace("@ACI_ARCH@", arch)
}

#[test]
fn ace_validator_modes_all_pass_in_one_pod() {
    let Some(ace_dir) = common::appc_data("ace") else {
        return;
    };
    let mut opts = HostOptions::new()
        .with_build()
        .install(env!("CARGO_BIN_EXE_appc-metadata"), BINARY, 0o755)
        .install(
            probe::probe_binary(),
            &format!("{WORK}/ace-validator"),
            0o755,
        );
    for unit in UNITS {
        opts = opts.install(units_dir().join(unit), &format!("{UNIT_DIR}/{unit}"), 0o644);
    }
    for app in APPS {
        opts = opts.write(
            &format!("{WORK}/manifest-{app}"),
            manifest(&ace_dir, app),
            0o644,
        );
    }
    let Some(host) = host::boot_or_skip(opts) else {
        return;
    };

    build_images(&host);
    host.run(&["systemctl", "start", "appc-metadata.socket"])
        .expect_success("systemctl start appc-metadata.socket");

    let run = host.sh_timeout(
        &format!(
            "{APPCCTL} run --volume database,kind=empty \
             coreos.com/ace-validator-main --name ace-validator-main --- \
             coreos.com/ace-validator-sidekick --name ace-validator-sidekick"
        ),
        Duration::from_secs(120),
    );
    let journal_cmd = "journalctl -q -t ace-validator-main -t ace-validator-sidekick -o cat";
    // journald takes the apps' lines asynchronously: wait for the last one (or a failure).
    let _ = host.wait_for(
        &format!("{journal_cmd} | grep -qx -e 'poststop OK' -e '.* FAIL'"),
        Duration::from_secs(20),
    );
    let journal = host.sh(journal_cmd).stdout;
    let context = || {
        format!(
            "appcctl run:\n{run}\napps' journal:\n{journal}\nmetadata service:\n{}",
            host.journal(&["-u", "appc-metadata.service", "-o", "cat"])
        )
    };
    assert!(run.success(), "the pod failed\n{}", context());
    let lines: Vec<&str> = journal.lines().map(str::trim).collect();
    assert!(
        !lines
            .iter()
            .any(|l| l.ends_with(" FAIL") || l.starts_with("==>")),
        "a check failed\n{}",
        context()
    );
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no {line:?} line\n{}", context()))
    };
    let (prestart, main, sidekick, poststop) = (
        at("prestart OK"),
        at("main OK"),
        at("sidekick OK"),
        at("poststop OK"),
    );
    assert!(
        prestart < main && main < poststop,
        "out of order (prestart {prestart}, main {main}, sidekick {sidekick}, poststop \
         {poststop})\n{}",
        context()
    );

    let report = host.shutdown().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
}

/// Both images, as `scripts/build-ace-validator-acis` lays them out: the validator (here the
/// probe) at `/ace-validator` and an empty `/opt/acvalidator`; imported without signatures.
fn build_images(host: &TestHost) {
    let mut script = String::from("set -e\n");
    for app in APPS {
        script.push_str(&format!(
            "L={WORK}/{app}; rm -rf $L; mkdir -p $L/rootfs/opt/acvalidator\n\
             cp {WORK}/ace-validator $L/rootfs/ace-validator\n\
             cp {WORK}/manifest-{app} $L/manifest\n\
             {APPCCTL} image build $L {WORK}/{app}.aci\n\
             {APPCCTL} --insecure-options=image fetch {WORK}/{app}.aci\n"
        ));
    }
    host.sh_timeout(&script, Duration::from_secs(120))
        .expect_success("building and importing the ACE images in the host");
}
