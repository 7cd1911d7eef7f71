//! The metadata service as pods see it: `appcctl run --net=host` registers each pod with a real
//! `appc-metadata` (standalone, on a temporary socket and a free loopback port, named to
//! appcctl by `APPC_METADATA_SOCKET`/`APPC_METADATA_PORT`), the static probe inside reads every
//! endpoint through `$AC_METADATA_URL` (a per-pod token URL) as the ACE validator does, a second
//! pod verifies the first one's signature and cannot read its data, and the signature still
//! verifies after the service restarted. Pods unregister when they end.
//!
//! Needs root (pods); otherwise `SKIP`, or a failure under `APPC_TEST_NO_SKIP=1`.
//! Run: `cargo test --test metadata_pod -- --nocapture`

mod common;
mod mds;
mod pod;
mod probe;

use std::process::Command;

use appc_pod::metadata::client;
use pod::{Env, Run, can_run_pods};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=us-ascii";
const CONTENT: &str = "Old MacDonald Had A Farm";
const VERIFY: &str = "/acMetadata/v1/pod/hmac/verify";

fn run(env: &Env, svc: &mds::Service, args: &[&str]) -> Run {
    let mut cmd: Command = env.cmd(args);
    cmd.env(client::SOCKET_ENV, &svc.socket)
        .env(client::PORT_ENV, svc.port().to_string());
    cmd.output().expect("run appcctl").into()
}

/// The probe's answer to one request: `(status, content type, body)`.
fn answer(v: &Value) -> (u64, &str, &str) {
    (
        v["status"].as_u64().unwrap_or_default(),
        v["content_type"].as_str().unwrap_or_default(),
        v["body"].as_str().unwrap_or_default(),
    )
}

/// The probe's answer line for `request` (the URL argument as given to `http`).
fn answer_to(run: &Run, request: &str) -> Value {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["request"] == request)
        .unwrap_or_else(|| panic!("no answer to {request}:\n{}\n{}", run.stdout, run.stderr))
}

#[test]
fn pods_read_their_own_metadata_and_verify_each_other() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let state = env.tmp.path().join("mds-state");
    let socket = env.tmp.path().join("mds.sock");
    let mut svc = mds::Service::start(&state, &socket);
    let image = env.probe_image("mds", &["metadata"], |m| {
        m["annotations"] = json!([
            {"name": "created", "value": "2024-01-02T03:04:05Z"},
            {"name": "lorem", "value": "ipsum"},
        ]);
    });

    // Pod A, from a pod manifest with pod and pod-app annotations.
    let manifest = json!({
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [{
            "name": "main",
            "image": {"name": image},
            "annotations": [{"name": "lorem", "value": "pod"}, {"name": "extra", "value": "x"}],
        }],
        "annotations": [{"name": "owner", "value": "tests"}],
    });
    let file = env.tmp.path().join("pod-a.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    let a = run(
        &env,
        &svc,
        &[
            "run",
            "--name",
            "pod-a",
            "--net",
            "host",
            "--pod-manifest",
            file.to_str().unwrap(),
        ],
    );
    a.ok();
    let r = a.report_with("pod/uuid");
    let a_uuid = env.uuid("pod-a");

    // AC_METADATA_URL: a token URL on loopback, the token long and not the uuid (MD3).
    let url = r["url"].as_str().unwrap();
    let prefix = format!("http://127.0.0.1:{}/", svc.port());
    let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{url}"
    );
    assert!(!token.contains(&a_uuid.replace('-', "")), "{url}");

    assert_eq!(answer(&r["pod/uuid"]), (200, TEXT, a_uuid.as_str()));
    let (status, ctype, body) = answer(&r["pod/manifest"]);
    assert_eq!((status, ctype), (200, JSON));
    let served: Value = serde_json::from_str(body).unwrap();
    assert_eq!(served["apps"][0]["name"], "main");
    let (status, ctype, body) = answer(&r["pod/annotations"]);
    assert_eq!((status, ctype), (200, JSON));
    let annotations: Value = serde_json::from_str(body).unwrap();
    assert_eq!(annotations, served["annotations"]);
    assert_eq!(annotations, json!([{"name": "owner", "value": "tests"}]));
    let (status, ctype, body) = answer(&r["app/annotations"]);
    assert_eq!((status, ctype), (200, JSON));
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!([
            {"name": "created", "value": "2024-01-02T03:04:05Z"},
            {"name": "lorem", "value": "pod"},
            {"name": "extra", "value": "x"},
        ])
    );
    let (status, ctype, body) = answer(&r["app/image/manifest"]);
    assert_eq!((status, ctype), (200, JSON));
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()["name"],
        image.as_str()
    );
    let (status, ctype, id) = answer(&r["app/image/id"]);
    assert_eq!((status, ctype), (200, TEXT));
    assert_eq!(
        served["apps"][0]["image"]["id"], id,
        "byte-equal to the manifest's"
    );
    assert!(id.starts_with("sha512-") && id.len() == 135, "{id:?}");
    let (status, ctype, signature) = answer(&r["sign"]);
    assert_eq!((status, ctype), (200, TEXT));
    assert_eq!(answer(&r["verify"]).0, 200, "{r}");
    let signature = signature.to_owned();

    // The pod unregistered when it ended.
    assert_eq!(
        client::list(&svc.socket).unwrap(),
        json!([]),
        "{}",
        svc.log()
    );

    // Pod B: verifies A's signature, reads its own uuid, and fails to read A's (or anyone's)
    // data without its own token.
    let verify_fields = [
        format!("content={CONTENT}"),
        format!("uuid={a_uuid}"),
        format!("signature={signature}"),
    ];
    let anon = format!("http://127.0.0.1:{}/acMetadata/v1/pod/manifest", svc.port());
    let guess = format!(
        "http://127.0.0.1:{}/{}/acMetadata/v1/pod/uuid",
        svc.port(),
        "0123456789abcdef".repeat(4)
    );
    let mut args = vec!["run", "--name", "pod-b", "--net", "host"];
    args.extend([
        image.as_str(),
        "--name",
        "verify",
        "--exec",
        "/probe",
        "--",
        "http",
        "POST",
        VERIFY,
    ]);
    args.extend(verify_fields.iter().map(String::as_str));
    args.extend([
        "---",
        image.as_str(),
        "--name",
        "own",
        "--exec",
        "/probe",
        "--",
        "http",
        "GET",
        "/acMetadata/v1/pod/uuid",
    ]);
    args.extend([
        "---",
        image.as_str(),
        "--name",
        "anon",
        "--exec",
        "/probe",
        "--",
        "http",
        "GET",
        anon.as_str(),
    ]);
    args.extend([
        "---",
        image.as_str(),
        "--name",
        "guess",
        "--exec",
        "/probe",
        "--",
        "http",
        "GET",
        guess.as_str(),
    ]);
    let b = run(&env, &svc, &args);
    b.ok();
    let b_uuid = env.uuid("pod-b");
    assert_eq!(answer(&answer_to(&b, VERIFY)), (200, TEXT, ""));
    assert_eq!(
        answer(&answer_to(&b, "/acMetadata/v1/pod/uuid")).2,
        b_uuid,
        "its own uuid"
    );
    assert_ne!(b_uuid, a_uuid);
    assert_eq!(
        answer(&answer_to(&b, &anon)).0,
        403,
        "no token, host address: nobody"
    );
    assert_eq!(answer(&answer_to(&b, &guess)).0, 404, "a guessed token");

    // The key survives a restart: pod C verifies A's signature with a new service process.
    assert!(svc.stop().success());
    svc = mds::Service::start(&state, &socket);
    let mut args = vec![
        "run",
        "--name",
        "pod-c",
        "--net",
        "host",
        image.as_str(),
        "--exec",
        "/probe",
        "--",
        "http",
        "POST",
        VERIFY,
    ];
    args.extend(verify_fields.iter().map(String::as_str));
    let c = run(&env, &svc, &args);
    c.ok();
    assert_eq!(answer(&answer_to(&c, VERIFY)).0, 200, "{}", svc.log());
    // A tampered signature is refused by the same route.
    let mut args = vec![
        "run",
        "--name",
        "pod-d",
        "--net",
        "host",
        image.as_str(),
        "--exec",
        "/probe",
        "--",
        "http",
        "POST",
        VERIFY,
    ];
    let tampered = [
        format!("content={CONTENT}!"),
        verify_fields[1].clone(),
        verify_fields[2].clone(),
    ];
    args.extend(tampered.iter().map(String::as_str));
    let d = run(&env, &svc, &args);
    assert_eq!(answer(&answer_to(d.ok(), VERIFY)).0, 403);
}

#[test]
fn a_pod_runs_when_no_metadata_service_is_there() {
    if !can_run_pods() {
        return;
    }
    let env = Env::new();
    let image = env.probe_image("nomds", &["report"], |_| {});
    let missing = env.tmp.path().join("no-such.sock");
    let r = env
        .cmd(&[
            "--debug", "run", "--name", "lonely", "--net", "host", &image,
        ])
        .env(client::SOCKET_ENV, &missing)
        .output()
        .expect("run appcctl");
    let r: Run = r.into();
    let report = r.ok().report();
    assert!(
        report["env"]["AC_METADATA_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))
    );
    assert!(
        r.stderr.contains("no metadata for pod") && r.stderr.contains("is not running"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

/// A network namespace of the test's own, held by `sleep` (like tests/net.rs): the bridge, the
/// veth and the firewall of the default network live and die with it.
struct NetNs {
    holder: std::process::Child,
}

impl NetNs {
    fn new() -> NetNs {
        let holder = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec sleep 100000",
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("unshare --net (util-linux)");
        let ns = NetNs { holder };
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::read_link(ns.path()).map_or(true, |l| l == ours) {
            assert!(
                std::time::Instant::now() < deadline,
                "the test namespace did not appear"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ns
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_pod_on_the_default_network_is_known_by_its_address() {
    if !can_run_pods() {
        return;
    }
    for tool in ["unshare", "nsenter", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            common::skip(&format!("{tool} is not installed (util-linux, nftables)"));
            return;
        }
    }
    let env = Env::new();
    let ns = NetNs::new();
    let net_arg = format!("--net={}", ns.path());
    let wrapper = ["nsenter", net_arg.as_str()];
    let state = env.tmp.path().join("mds-state");
    let socket = env.tmp.path().join("mds.sock");
    // In the namespace, on every address: the pod reaches it on the bridge's gateway address.
    let svc = mds::Service::start_with(&wrapper, &state, &socket, "0.0.0.0:0");
    let image = env.probe_image("mdsnet", &["metadata"], |_| {});
    let ipam = env.tmp.path().join("ipam");
    let config = env.tmp.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut cmd = Command::new("nsenter");
    cmd.arg(&net_arg)
        .arg(env!("CARGO_BIN_EXE_appcctl"))
        .arg("--dir")
        .arg(env.dir())
        .arg("--config-dir")
        .arg(&config)
        .args(["run", "--name", "bridged", "--net=default", &image])
        .env("APPC_NET_DIR", &ipam)
        .env(client::SOCKET_ENV, &svc.socket)
        .env(client::PORT_ENV, svc.port().to_string())
        .stdin(std::process::Stdio::null());
    let r: Run = cmd.output().expect("nsenter appcctl").into();
    let report = r.ok().report_with("pod/uuid");
    // AC_METADATA_URL: the gateway, no token; the pod is known by its source address.
    let url = report["url"].as_str().unwrap();
    let gateway = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix(&format!(":{}", svc.port())))
        .unwrap_or_else(|| panic!("{url}"));
    assert!(gateway.parse::<std::net::Ipv4Addr>().is_ok(), "{url}");
    let status = env.status("bridged");
    assert_eq!(status["networks"][0]["gateway"], gateway, "{status}");
    assert_eq!(
        answer(&report["pod/uuid"]),
        (200, TEXT, status["uuid"].as_str().unwrap())
    );
    for key in [
        "pod/manifest",
        "pod/annotations",
        "app/annotations",
        "app/image/manifest",
    ] {
        assert_eq!(answer(&report[key]).0, 200, "{key}: {report}");
    }
    assert_eq!(answer(&report["app/image/id"]).1, TEXT);
    assert_eq!(answer(&report["sign"]).0, 200, "{report}");
    assert_eq!(answer(&report["verify"]).0, 200, "{report}");
    assert!(
        svc.wait_for_log(&format!(
            "registered pod {}",
            status["uuid"].as_str().unwrap()
        )),
        "{}",
        svc.log()
    );
    assert_eq!(
        client::list(&svc.socket).unwrap(),
        json!([]),
        "unregistered at the end"
    );
}
