//! The metadata service under a real systemd (the test host, `tests/host/`): the units in
//! `units/` verify cleanly, `appc-metadata.socket` listens on the root-only registration socket
//! and TCP 18112 without starting the service, the first `appcctl run` activates it through the
//! socket and registers its pod, the pod's app (busybox `wget`) reads its own metadata at
//! `$AC_METADATA_URL`, the pod unregisters when it ends, and a stopped service is activated
//! again by the next pod with its key and state kept.
//!
//! Needs root, systemd-nspawn and overlayfs; otherwise `SKIP`, or a failure under
//! `APPC_TEST_NO_SKIP=1`. Run: `cargo test --test systemd_metadata -- --nocapture`

mod host;

use std::path::{Path, PathBuf};
use std::time::Duration;

use host::{APPCCTL, HostOptions, TestHost};

const UNIT_DIR: &str = "/usr/lib/systemd/system";
const UNITS: [&str; 2] = ["appc-metadata.socket", "appc-metadata.service"];
/// Where `appc-metadata.service` expects the binary.
const BINARY: &str = "/usr/libexec/appc-pod/appc-metadata";
const STATE: &str = "/var/lib/appc/metadata";
const OUT: &str = "/root/mds-out";

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("units")
}

#[test]
fn socket_activated_service_serves_pods() {
    let mut opts =
        HostOptions::new()
            .with_build()
            .install(env!("CARGO_BIN_EXE_appc-metadata"), BINARY, 0o755);
    for unit in UNITS {
        opts = opts.install(units_dir().join(unit), &format!("{UNIT_DIR}/{unit}"), 0o644);
    }
    let Some(host) = host::boot_or_skip(opts) else {
        return;
    };

    for unit in UNITS {
        let out = host.run(&["systemd-analyze", "verify", &format!("{UNIT_DIR}/{unit}")]);
        assert!(
            out.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
            "systemd-analyze verify {unit} is not clean:\n{out}"
        );
    }

    host.run(&["systemctl", "start", "appc-metadata.socket"])
        .expect_success("systemctl start appc-metadata.socket");
    assert_eq!(is_active(&host, "appc-metadata.socket"), "active");
    assert_eq!(
        is_active(&host, "appc-metadata.service"),
        "inactive",
        "nothing has connected yet"
    );
    let sock = host
        .run(&["stat", "-c", "%F %a %U %G", "/run/appc/metadata.sock"])
        .expect_success("stat the registration socket");
    assert_eq!(sock.stdout_trimmed(), "socket 600 root root");
    let listening = host.sh("ss -Htln 'sport = :18112' | wc -l");
    assert_ne!(
        listening.stdout_trimmed(),
        "0",
        "nothing on 18112:\n{listening}"
    );

    import_image(&host);
    let (uuid, files) = run_pod(&host, "mds1");
    assert_eq!(
        is_active(&host, "appc-metadata.service"),
        "active",
        "activated by the pod's registration"
    );
    assert_eq!(files.uuid, uuid, "the pod read its own uuid");
    assert!(
        files.id.starts_with("sha512-") && files.id.len() == 135,
        "{:?}",
        files.id
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&files.manifest).expect("pod manifest JSON");
    assert_eq!(manifest["apps"][0]["name"], "main");
    assert_eq!(manifest["apps"][0]["image"]["id"], files.id.as_str());
    assert_eq!(manifest["annotations"], serde_json::json!([]));
    assert!(
        files.url.starts_with("http://127.0.0.1:18112/"),
        "{}",
        files.url
    );
    // journald takes the service's lines asynchronously: wait for them.
    for line in [
        format!("registered pod {uuid}"),
        format!("unregistered pod {uuid}"),
    ] {
        let grep = format!(
            "journalctl -q -u appc-metadata.service -o cat | grep -qx 'appc-metadata: {line}.*'"
        );
        if let Err(e) = host.wait_for(&grep, Duration::from_secs(10)) {
            panic!("{e}\n{}", host.journal(&["-u", "appc-metadata.service"]));
        }
    }
    let left = host.sh(&format!("ls -A {STATE}/pods"));
    assert_eq!(
        left.stdout_trimmed(),
        "",
        "the pod unregistered when it ended"
    );
    let key = host
        .run(&["stat", "-c", "%a %s", &format!("{STATE}/hmac.key")])
        .expect_success("stat the key");
    assert_eq!(key.stdout_trimmed(), "600 64");
    let key_before = host
        .read_file(&format!("{STATE}/hmac.key"))
        .expect("read the key");

    // Stopped, the service is activated again by the next pod, with the same key.
    host.run(&["systemctl", "stop", "appc-metadata.service"])
        .expect_success("systemctl stop appc-metadata.service");
    assert_eq!(is_active(&host, "appc-metadata.socket"), "active");
    let (uuid2, files2) = run_pod(&host, "mds2");
    assert_eq!(files2.uuid, uuid2);
    assert_eq!(is_active(&host, "appc-metadata.service"), "active");
    assert_eq!(
        host.read_file(&format!("{STATE}/hmac.key"))
            .expect("read the key"),
        key_before
    );

    let report = host.shutdown().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.halted_cleanly, "{report:?}");
}

fn is_active(host: &TestHost, unit: &str) -> String {
    host.run(&["systemctl", "is-active", unit])
        .stdout_trimmed()
        .to_owned()
}

/// A busybox image built inside the host (the machine's busybox-static).
fn import_image(host: &TestHost) {
    let script = format!(
        r#"set -e
L=/root/mds-image; rm -rf $L; mkdir -p $L/rootfs/bin $L/rootfs/etc
cp /bin/busybox $L/rootfs/bin/busybox; ln -s busybox $L/rootfs/bin/sh
echo 'root:x:0:0:root:/:/bin/sh' > $L/rootfs/etc/passwd; echo 'root:x:0:' > $L/rootfs/etc/group
cat > $L/manifest <<'EOF'
{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/mds",
 "app":{{"exec":["/bin/sh","-c","true"],"user":"0","group":"0"}}}}
EOF
{APPCCTL} image build $L /root/mds.aci
{APPCCTL} --insecure-options=image fetch /root/mds.aci
"#
    );
    host.sh(&script)
        .expect_success("building the image in the host");
}

struct Files {
    url: String,
    uuid: String,
    id: String,
    manifest: String,
}

/// Runs a host-networked pod whose app saves what it reads from the metadata service into a
/// host volume; returns the pod's uuid and the files.
fn run_pod(host: &TestHost, name: &str) -> (String, Files) {
    let app = "set -e; M=$AC_METADATA_URL/acMetadata/v1; echo -n $AC_METADATA_URL > /out/url; \
               wget -q -O /out/uuid $M/pod/uuid; wget -q -O /out/id $M/apps/main/image/id; \
               wget -q -O /out/manifest $M/pod/manifest";
    let script = format!(
        "rm -rf {OUT}; mkdir -p {OUT}; {APPCCTL} run --name {name} --net host \
         --volume out,kind=host,source={OUT} --mount volume=out,target=/out \
         example.com/mds --name main --exec /bin/busybox -- sh -c '{app}'"
    );
    let run = host.sh_timeout(&script, Duration::from_secs(60));
    let journal = host.journal(&["-u", "appc-metadata.service"]);
    assert!(
        run.success(),
        "the pod failed:\n{run}\nservice journal:\n{journal}"
    );
    let status = host
        .run(&[APPCCTL, "status", "--format", "json", name])
        .expect_success("appcctl status");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let read = |f: &str| {
        String::from_utf8(
            host.read_file(&format!("{OUT}/{f}"))
                .unwrap_or_else(|e| panic!("{f}: {e}")),
        )
        .expect("utf-8")
    };
    let files = Files {
        url: read("url"),
        uuid: read("uuid"),
        id: read("id"),
        manifest: read("manifest"),
    };
    (status["uuid"].as_str().expect("uuid").to_owned(), files)
}
