//! sd_notify from `appcctl run` under a real systemd (the test host): a `Type=notify` service
//! running a pod stays `activating` while the pods's pre-start handler runs, becomes `active`
//! only after READY=1, shows our STATUS= text, and a pod that fails to start never gets active.

mod host;

use std::time::{Duration, Instant};

use host::{HostOptions, TestHost};

const APPCCTL: &str = host::APPCCTL;
const DATA: &str = "/var/lib/appc-notify-test";

#[test]
fn type_notify_unit_becomes_active_only_after_ready() {
    let Some(host) = host::boot_or_skip(HostOptions::new().with_build()) else {
        return;
    };
    import_image(&host);

    let unit = start_unit(
        &host,
        "appc-notify-ok",
        &["--exec", "/bin/sh", "--", "-c", "sleep 30"],
    );
    let states = watch_states(&host, &unit, Duration::from_secs(20));
    let first_active = states.iter().position(|s| s == "active");
    let activating = states
        .iter()
        .take_while(|s| *s != "active")
        .filter(|s| *s == "activating");
    if first_active.is_none() {
        eprintln!(
            "{}",
            host.run(&["journalctl", "-u", &unit, "--no-pager", "-n", "30"])
        );
    }
    assert!(
        activating.count() >= 3,
        "the unit was not activating during the 2 s pre-start handler: {states:?}"
    );
    assert!(
        first_active.is_some(),
        "the unit never became active: {states:?}"
    );
    let status = show(&host, &unit, "StatusText");
    assert!(status.contains("running"), "StatusText: {status:?}");

    let stop = host.run(&["systemctl", "stop", &unit]);
    assert!(stop.success(), "{stop}");
    assert_eq!(show(&host, &unit, "ActiveState"), "inactive");

    // The app's execve fails inside the pod: it never starts, so READY=1 is never sent. (A shell
    // that execs a missing file would start, make the pod ready, then fail.)
    let bad = start_unit(&host, "appc-notify-bad", &["--exec", "/nonexistent"]);
    let states = watch_states(&host, &bad, Duration::from_secs(20));
    assert!(
        !states.iter().any(|s| s == "active"),
        "a failed pod became active: {states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("failed"),
        "{states:?}"
    );
    app_reports_readiness_itself(&host);
    host.shutdown().expect("teardown");
}

/// An app whose image has `appc.io/executor/supports-systemd-notify=true` gets a notify socket;
/// the unit stays activating after the app started, until the app's READY=1 arrives. The
/// READY=1 is sent by systemd-notify from the host side, to the very socket the app sees (the
/// image has no sd_notify client; the app checks that its socket is there).
fn app_reports_readiness_itself(host: &TestHost) {
    let unit = start_image_unit(host, "appc-notify-self", "example.com/notify-self", &[]);
    let seen = format!("journalctl -o cat -u {unit} | grep -qx socket-ok");
    host.wait_for(&seen, Duration::from_secs(20))
        .unwrap_or_else(|e| {
            panic!(
                "the app never saw its socket: {e}\n{}",
                host.journal(&["-u", &unit])
            )
        });
    // The app runs, but has not said READY=1: the unit must still be activating.
    assert_eq!(show(host, &unit, "ActiveState"), "activating");
    let send = host.sh(&format!(
        "NOTIFY_SOCKET=$(ls {DATA}/pods/*/notify/notify-self/notify) systemd-notify --ready"
    ));
    assert!(send.success(), "{send}");
    let states = watch_states(host, &unit, Duration::from_secs(20));
    assert_eq!(
        states.last().map(String::as_str),
        Some("active"),
        "{states:?}"
    );
    let stop = host.run(&["systemctl", "stop", &unit]);
    assert!(stop.success(), "{stop}");
}

/// A busybox image whose pre-start handler takes 2 s, imported into the host's store.
fn import_image(host: &TestHost) {
    let script = format!(
        r#"set -e
L=/tmp/notify-image; rm -rf $L; mkdir -p $L/rootfs/bin $L/rootfs/etc
cp /bin/busybox $L/rootfs/bin/busybox; ln -s busybox $L/rootfs/bin/sh; ln -s busybox $L/rootfs/bin/sleep
echo 'root:x:0:0:root:/:/bin/sh' > $L/rootfs/etc/passwd; echo 'root:x:0:' > $L/rootfs/etc/group
cat > $L/manifest <<'EOF'
{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/notify",
 "labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
 "app":{{"exec":["/bin/sh","-c","sleep 30"],"user":"0","group":"0",
  "eventHandlers":[{{"name":"pre-start","exec":["/bin/sh","-c","sleep 2"]}}]}}}}
EOF
{APPCCTL} image build $L /tmp/notify.aci
{APPCCTL} --dir {DATA} --insecure-options=image fetch /tmp/notify.aci
cat > $L/manifest <<'EOF'
{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/notify-self",
 "labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],
 "annotations":[{{"name":"appc.io/executor/supports-systemd-notify","value":"true"}}],
 "app":{{"exec":["/bin/sh","-c","test -S \"$NOTIFY_SOCKET\" && echo socket-ok; sleep 30"],
  "user":"0","group":"0"}}}}
EOF
{APPCCTL} image build $L /tmp/notify-self.aci
{APPCCTL} --dir {DATA} --insecure-options=image fetch /tmp/notify-self.aci
"#
    );
    let out = host.sh(&script);
    assert!(out.success(), "building the image in the host: {out}");
}

/// Starts `appcctl run` of the image with `app_args` as a Type=notify transient service.
fn start_unit(host: &TestHost, unit: &str, app_args: &[&str]) -> String {
    start_image_unit(host, unit, "example.com/notify", app_args)
}

fn start_image_unit(host: &TestHost, unit: &str, image: &str, app_args: &[&str]) -> String {
    let name = format!("{unit}.service");
    let mut argv = vec![
        "systemd-run",
        "--no-block",
        "--unit",
        &name,
        "--service-type=notify",
        "-p",
        "SuccessExitStatus=143",
        APPCCTL,
        "--dir",
        DATA,
        "run",
        "--name",
        unit,
        image,
        "--name",
        "notify-self",
    ];
    argv.extend_from_slice(app_args);
    let out = host.run(&argv);
    assert!(out.success(), "systemd-run: {out}");
    name
}

/// ActiveState every 100 ms until it settles on active, failed or inactive (after activating).
fn watch_states(host: &TestHost, unit: &str, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut states = Vec::new();
    while start.elapsed() < timeout {
        let state = show(host, unit, "ActiveState");
        let settled = matches!(state.as_str(), "active" | "failed")
            || (state == "inactive" && states.iter().any(|s| s == "activating"));
        states.push(state);
        if settled {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    states
}

fn show(host: &TestHost, unit: &str, property: &str) -> String {
    let out = host.run(&["systemctl", "show", "--value", "-p", property, unit]);
    out.stdout_trimmed().to_owned()
}
