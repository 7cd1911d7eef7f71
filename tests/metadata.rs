//! The metadata service (spec/ace.md, appc-requirements.md §2.5.9 and the ACE validator's wire
//! details, §5.1) against the real `appc-metadata` binary, started standalone on temporary
//! directories and a free loopback port; real HTTP over TCP, registration over its unix socket
//! with the library client `appcctl` uses. Callers are pods by token or by source address
//! (loopback has all of 127.0.0.0/8, so each test pod gets its own 127.0.0.N).
//!
//! Needs nothing special (no root). Run: `cargo test --test metadata`

mod mds;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use appc_pod::metadata::client;
use appc_pod::metadata::{AppImage, InitProcess, Registration};
use appc_pod::schema::{PodManifest, PodUuid};
use mds::{Service, form, get, http, ip, lo};
use serde_json::json;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=us-ascii";
const V1: &str = "/acMetadata/v1";

/// The image manifest as stored, with odd spacing: it must be served verbatim.
const IMAGE_MANIFEST: &str = "{\"acKind\": \"ImageManifest\",  \"acVersion\": \"0.8.11\", \
    \"name\": \"example.com/web\", \"annotations\": [{\"name\": \"created\", \"value\": \"2024-01-02T03:04:05Z\"}, \
    {\"name\": \"lorem\", \"value\": \"ipsum\"}]}";

fn image_id(fill: char) -> String {
    format!("sha512-{}", fill.to_string().repeat(128))
}

struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    fn socket(&self) -> PathBuf {
        self.tmp.path().join("run/metadata.sock")
    }
    fn start(&self) -> Service {
        Service::start(&self.state(), &self.socket())
    }
}

/// A pod of two apps of the same image: `web` with pod-app annotations (one overrides the
/// image's `lorem` in place, one is new), `side` without; pod annotations when `annotated`.
fn registration(annotated: bool) -> Registration {
    let mut manifest = json!({
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [
            {"name": "web", "image": {"name": "example.com/web", "id": image_id('a')},
             "annotations": [{"name": "lorem", "value": "pod"}, {"name": "extra", "value": "x"}]},
            {"name": "side", "image": {"name": "example.com/web", "id": image_id('a')}},
        ],
    });
    if annotated {
        manifest["annotations"] =
            json!([{"name": "zeta", "value": "1"}, {"name": "alpha", "value": "2"}]);
    }
    let manifest: PodManifest = serde_json::from_value(manifest).expect("test pod manifest");
    let image = AppImage {
        image_id: image_id('a'),
        image_manifest: IMAGE_MANIFEST.to_owned(),
    };
    Registration {
        manifest,
        apps: BTreeMap::from([("web".into(), image.clone()), ("side".into(), image)]),
        addresses: Vec::new(),
        token: None,
        init: None,
    }
}

fn token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn register(svc: &Service, uuid: &PodUuid, reg: &Registration) {
    client::register(&svc.socket, uuid, reg).unwrap_or_else(|e| panic!("{e}\n{}", svc.log()));
}

fn with_token(n: u8, annotated: bool) -> Registration {
    Registration {
        token: Some(token(n)),
        ..registration(annotated)
    }
}

fn with_address(n: u8) -> Registration {
    Registration {
        addresses: vec![ip(n)],
        ..registration(false)
    }
}

fn assert_answer(a: &mds::Answer, content_type: &str, what: &str) {
    assert_eq!(a.status, 200, "{what}: {:?}", a.text());
    assert_eq!(a.content_type.as_deref(), Some(content_type), "{what}");
}

#[test]
fn all_eight_endpoints_answer_a_token_pod_byte_exactly() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let uuid = PodUuid::new_random();
    register(&svc, &uuid, &with_token(1, true));
    let base = format!("/{}{V1}", token(1));
    let at = |p: &str| get(lo(1), svc.addr, &format!("{base}{p}"));

    let u = at("/pod/uuid");
    assert_answer(&u, TEXT, "pod/uuid");
    assert_eq!(u.body, uuid.to_string().as_bytes(), "no trailing newline");

    let m = at("/pod/manifest");
    assert_answer(&m, JSON, "pod/manifest");
    let manifest = m.json();
    assert_eq!(manifest["acKind"], "PodManifest");
    assert_eq!(manifest["apps"][0]["image"]["id"], image_id('a'));

    let a = at("/pod/annotations");
    assert_answer(&a, JSON, "pod/annotations");
    // Order-sensitive and identical to the manifest's (the validator deep-compares them).
    assert_eq!(a.json(), manifest["annotations"]);
    assert_eq!(
        a.json(),
        json!([{"name": "zeta", "value": "1"}, {"name": "alpha", "value": "2"}])
    );

    let aa = at("/apps/web/annotations");
    assert_answer(&aa, JSON, "apps/web/annotations");
    assert_eq!(
        aa.json(),
        json!([
            {"name": "created", "value": "2024-01-02T03:04:05Z"},
            {"name": "lorem", "value": "pod"},
            {"name": "extra", "value": "x"},
        ]),
        "image annotations with the pod app's applied: replaced in place, new ones appended"
    );
    let side = at("/apps/side/annotations");
    assert_eq!(
        side.json(),
        json!([{"name": "created", "value": "2024-01-02T03:04:05Z"}, {"name": "lorem", "value": "ipsum"}])
    );

    let im = at("/apps/web/image/manifest");
    assert_answer(&im, JSON, "apps/web/image/manifest");
    assert_eq!(
        im.text(),
        IMAGE_MANIFEST,
        "the original image manifest, verbatim"
    );

    let id = at("/apps/web/image/id");
    assert_answer(&id, TEXT, "apps/web/image/id");
    assert_eq!(id.text(), image_id('a'), "no trailing newline");

    let content = "Old MacDonald Had A Farm";
    let sig = http(
        lo(1),
        svc.addr,
        "POST",
        &format!("{base}/pod/hmac/sign"),
        Some(&form(&[("content", content)])),
    );
    assert_answer(&sig, TEXT, "pod/hmac/sign");
    assert!(
        sig.text().len() > 80,
        "base64 of 64 bytes: {:?}",
        sig.text()
    );
    let uuid_text = uuid.to_string();
    let fields = [
        ("content", content),
        ("uuid", uuid_text.as_str()),
        ("signature", &sig.text()),
    ];
    let ok = http(
        lo(1),
        svc.addr,
        "POST",
        &format!("{base}/pod/hmac/verify"),
        Some(&form(&fields)),
    );
    assert_answer(&ok, TEXT, "pod/hmac/verify");

    // Unknown app, unknown endpoint, wrong method.
    assert_eq!(at("/apps/nope/image/id").status, 404);
    assert_eq!(at("/pod/nothing").status, 404);
    assert_eq!(
        http(
            lo(1),
            svc.addr,
            "POST",
            &format!("{base}/pod/uuid"),
            Some("")
        )
        .status,
        405
    );
}

#[test]
fn a_pod_without_annotations_gets_empty_arrays_in_both_places() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    register(&svc, &PodUuid::new_random(), &with_token(2, false));
    let base = format!("/{}{V1}", token(2));
    let manifest = get(lo(1), svc.addr, &format!("{base}/pod/manifest")).json();
    assert_eq!(
        manifest["annotations"],
        json!([]),
        "always present: {manifest}"
    );
    let a = get(lo(1), svc.addr, &format!("{base}/pod/annotations"));
    assert_eq!(a.text(), "[]");
}

#[test]
fn pods_are_known_by_source_address_and_see_only_their_own_data() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let (a, b) = (PodUuid::new_random(), PodUuid::new_random());
    register(&svc, &a, &with_address(2));
    register(
        &svc,
        &b,
        &Registration {
            token: Some(token(3)),
            ..with_address(3)
        },
    );
    let uuid_from = |n: u8| get(lo(n), svc.addr, &format!("{V1}/pod/uuid"));
    assert_eq!(uuid_from(2).text(), a.to_string());
    assert_eq!(uuid_from(3).text(), b.to_string());
    // The host (127.0.0.1) and any unregistered address are nobody.
    let host = uuid_from(1);
    assert_eq!(host.status, 403, "{:?}", host.text());
    assert!(
        host.text()
            .contains("127.0.0.1 is not a registered pod address"),
        "{:?}",
        host.text()
    );
    assert_eq!(uuid_from(9).status, 403);
    // A guessed token is unknown; B's token names B whoever asks (the token is the credential).
    let guessed = get(lo(2), svc.addr, &format!("/{}{V1}/pod/uuid", token(7)));
    assert_eq!(guessed.status, 404);
    let by_token = get(lo(2), svc.addr, &format!("/{}{V1}/pod/uuid", token(3)));
    assert_eq!(by_token.text(), b.to_string());
}

#[test]
fn signatures_verify_from_other_pods_and_after_a_restart() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let (a, b) = (PodUuid::new_random(), PodUuid::new_random());
    register(&svc, &a, &with_address(2));
    register(&svc, &b, &with_token(4, false));
    let content = "a: b & c = d%e +f";
    let sig = http(
        lo(2),
        svc.addr,
        "POST",
        &format!("{V1}/pod/hmac/sign"),
        Some(&form(&[("content", content)])),
    )
    .text();
    let a_text = a.to_string();
    let verify = |svc: &Service, uuid: &str, content: &str, sig: &str| {
        let fields = [("content", content), ("uuid", uuid), ("signature", sig)];
        http(
            lo(5),
            svc.addr,
            "POST",
            &format!("/{}{V1}/pod/hmac/verify", token(4)),
            Some(&form(&fields)),
        )
    };
    let ok = verify(&svc, &a_text, content, &sig);
    assert_eq!(
        (ok.status, ok.content_type.as_deref()),
        (200, Some(TEXT)),
        "{:?}",
        ok.text()
    );
    let forged = verify(&svc, &a_text, "other content", &sig);
    assert_eq!(
        (forged.status, forged.content_type.as_deref()),
        (403, Some(TEXT))
    );
    assert_eq!(
        verify(&svc, &b.to_string(), content, &sig).status,
        403,
        "B cannot pass for A"
    );
    assert_eq!(verify(&svc, &a_text, content, "bm90IGl0").status, 403);
    assert_eq!(verify(&svc, "not-a-uuid", content, &sig).status, 400);
    // Signing needs a pod: the host is nobody.
    let anon = http(
        lo(1),
        svc.addr,
        "POST",
        &format!("{V1}/pod/hmac/sign"),
        Some(&form(&[("content", "x")])),
    );
    assert_eq!(anon.status, 403);

    // The key persists: a restarted service still verifies A's signature (A is registered no
    // more, B is: verification does not need the signer to run).
    client::unregister(&svc.socket, &a).unwrap();
    assert!(svc.stop().success());
    let svc = dirs.start();
    assert_eq!(
        verify(&svc, &a_text, content, &sig).status,
        200,
        "{}",
        svc.log()
    );
    // Unauthenticated verification works too (third parties check identities with it).
    let fields = [
        ("content", content),
        ("uuid", a_text.as_str()),
        ("signature", &sig),
    ];
    assert_eq!(
        http(
            lo(1),
            svc.addr,
            "POST",
            &format!("{V1}/pod/hmac/verify"),
            Some(&form(&fields))
        )
        .status,
        200
    );
}

#[test]
fn registrations_survive_a_restart_and_unregister_removes_them() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let (a, b) = (PodUuid::new_random(), PodUuid::new_random());
    register(&svc, &a, &with_token(5, true));
    register(&svc, &b, &with_address(6));
    let listed = client::list(&svc.socket).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(svc.stop().success());

    let svc = dirs.start();
    assert!(svc.log().contains("2 pods registered"), "{}", svc.log());
    assert_eq!(
        get(lo(1), svc.addr, &format!("/{}{V1}/pod/uuid", token(5))).text(),
        a.to_string()
    );
    assert_eq!(
        get(lo(6), svc.addr, &format!("{V1}/pod/uuid")).text(),
        b.to_string()
    );

    client::unregister(&svc.socket, &a).unwrap();
    client::unregister(&svc.socket, &a).expect("unregistering twice is fine");
    assert_eq!(
        get(lo(1), svc.addr, &format!("/{}{V1}/pod/uuid", token(5))).status,
        404
    );
    assert!(!dirs.state().join(format!("pods/{a}.json")).exists());
    assert!(dirs.state().join(format!("pods/{b}.json")).exists());
    // Re-registering replaces: B moves to another address.
    register(&svc, &b, &with_address(7));
    assert_eq!(get(lo(6), svc.addr, &format!("{V1}/pod/uuid")).status, 403);
    assert_eq!(
        get(lo(7), svc.addr, &format!("{V1}/pod/uuid")).text(),
        b.to_string()
    );
}

#[test]
fn bad_registrations_are_refused_with_the_reason_and_nothing_is_kept() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let uuid = PodUuid::new_random();
    let refused = |reg: &Registration, want: &str| {
        let err = client::register(&svc.socket, &uuid, reg)
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("status 400") && err.contains(want), "{err}");
    };
    let mut missing = with_token(1, false);
    missing.apps.remove("side");
    refused(&missing, "app side: no image manifest given");
    let mut extra = with_token(1, false);
    extra.apps.insert("ghost".into(), extra.apps["web"].clone());
    refused(&extra, "app \"ghost\" is not in the pod manifest");
    let mut other_id = with_token(1, false);
    other_id.apps.get_mut("web").unwrap().image_id = image_id('b');
    refused(&other_id, "differs from the pod manifest's");
    let mut bad_manifest = with_token(1, false);
    bad_manifest.apps.get_mut("web").unwrap().image_manifest =
        "{\"acKind\": \"PodManifest\"}".into();
    refused(&bad_manifest, "app web: image manifest");
    refused(
        &Registration {
            token: Some("abc".into()),
            ..registration(false)
        },
        "at least 128 bits",
    );
    let unspecified = Registration {
        addresses: vec![IpAddr::from([0, 0, 0, 0])],
        ..registration(false)
    };
    refused(&unspecified, "0.0.0.0 cannot be a pod address");
    assert_eq!(client::list(&svc.socket).unwrap(), json!([]));
    let files: Vec<_> = std::fs::read_dir(dirs.state().join("pods"))
        .unwrap()
        .collect();
    assert!(files.is_empty(), "{files:?}");
    // Not JSON at all: answered, not crashed.
    use std::io::{Read, Write};
    let mut raw = std::os::unix::net::UnixStream::connect(&svc.socket).unwrap();
    let req = format!(
        "PUT /v1/pods/{uuid} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{{"
    );
    raw.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("registration of pod"), "{answer}");
}

#[test]
fn a_new_pod_takes_over_a_gone_pods_address() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    let (old, new) = (PodUuid::new_random(), PodUuid::new_random());
    register(&svc, &old, &with_address(8));
    register(&svc, &new, &with_address(8));
    assert_eq!(
        get(lo(8), svc.addr, &format!("{V1}/pod/uuid")).text(),
        new.to_string()
    );
    let listed = client::list(&svc.socket).unwrap();
    let uuids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["uuid"].as_str())
        .collect();
    assert_eq!(uuids, [new.to_string()], "the old registration is dropped");
}

#[test]
fn registrations_of_exited_pods_are_dropped() {
    let dirs = Dirs::new();
    let svc = dirs.start();
    // A process that has exited: its pid and start time name no live process.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    let start_time = appc_pod::exec::launch::process_start_time(pid);
    gone.wait().unwrap();
    let live = InitProcess {
        pid: std::process::id(),
        start_time: appc_pod::exec::launch::process_start_time(std::process::id()).unwrap(),
    };
    let (dead, alive) = (PodUuid::new_random(), PodUuid::new_random());
    register(
        &svc,
        &dead,
        &Registration {
            init: Some(InitProcess {
                pid,
                start_time: start_time.unwrap_or(1),
            }),
            ..with_token(9, false)
        },
    );
    register(
        &svc,
        &alive,
        &Registration {
            init: Some(live),
            ..with_token(10, false)
        },
    );
    assert!(svc.stop().success());
    let svc = dirs.start();
    let listed = client::list(&svc.socket).unwrap();
    let uuids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["uuid"].as_str())
        .collect();
    assert_eq!(uuids, [alive.to_string()], "{}", svc.log());
    assert!(!dirs.state().join(format!("pods/{dead}.json")).exists());
}

#[test]
fn the_key_and_the_registration_socket_are_private() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dirs = Dirs::new();
    let svc = dirs.start();
    let sock = std::fs::metadata(&svc.socket).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!(sock.permissions().mode() & 0o777, 0o600);
    let key = std::fs::metadata(dirs.state().join("hmac.key")).unwrap();
    assert_eq!((key.len(), key.permissions().mode() & 0o777), (64, 0o600));
    let state = std::fs::metadata(dirs.state()).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    // A second service on the same socket refuses to start instead of stealing it.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_appc-metadata"))
        .arg("--state-dir")
        .arg(dirs.state())
        .arg("--socket")
        .arg(&svc.socket)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another metadata service answers there"),
        "{err}"
    );
    // The first one still answers.
    assert_eq!(client::list(&svc.socket).unwrap(), json!([]));
}

#[test]
fn an_unreachable_service_is_reported_as_such() {
    let dirs = Dirs::new();
    let err =
        client::register(&dirs.socket(), &PodUuid::new_random(), &registration(false)).unwrap_err();
    assert!(
        matches!(err, appc_pod::metadata::MetadataError::Unreachable { .. }),
        "{err}"
    );
}
