//! Tier 3: `appcctl fetch` and `appcctl run`'s fetching against an HTTPS server on loopback in
//! this process (tests/fetch/): discovery, redirects, auth.d, the ETag/max-age cache, resumed
//! downloads, plain http refusal, DS15 and dependency checks. Signatures are off here
//! (`--insecure-options=image`); tests/fetch_signed.rs checks them. Needs root (the store keeps
//! owners); skips out loud otherwise.

mod common;
#[path = "fetch/mod.rs"]
mod fetch;

use fetch::{Env, Pki, Route, Server, aci, image_id};
use serde_json::json;

struct Fixture {
    server: Server,
    env: Env,
}

fn fixture() -> Option<Fixture> {
    if !fetch::can_import() {
        common::skip("fetch tests import into a store, which needs root");
        return None;
    }
    let pki = Pki::new();
    let server = Server::https(&pki);
    let env = Env::new(&pki, &server);
    Some(Fixture { server, env })
}

const NOSIG: &str = "--insecure-options=image";

/// A discovery page for `prefix` whose template is `https://example.com/images/{name}-{version}.{ext}`.
fn discovery_page(prefix: &str, template: &str) -> Route {
    Route::html(&format!(
        r#"<!DOCTYPE html><html><head>
        <meta name="ac-discovery" content="{prefix} {template}">
        </head><body></body></html>"#
    ))
}

const TEMPLATE: &str = "https://example.com/images/{name}-{version}.{ext}";

impl Fixture {
    /// Serves `name:version` through discovery at `/app-path?ac-discovery=1`.
    fn publish(&self, name: &str, version: &str, image: &[u8]) {
        let path = name.split_once('/').map_or("", |(_, p)| p);
        self.server.route(
            &format!("/{path}?ac-discovery=1"),
            discovery_page(name, TEMPLATE),
        );
        self.server.route(
            &format!("/images/{name}-{version}.aci"),
            Route::bytes(image.to_vec()),
        );
    }
}

#[test]
fn discovery_fetches_the_named_image() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "hello");
    f.publish("example.com/app", "1.0", &image);
    let out = f.env.ok(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
    assert_eq!(f.env.stored(), [image_id(&image)]);
    let log = f.server.log();
    assert_eq!(log[0].path, "/app?ac-discovery=1");
    assert_eq!(log[1].path, "/images/example.com/app-1.0.aci");
    // The image is now found by name without the network.
    let before = f.server.log().len();
    let out = f
        .env
        .ok(&["fetch", "--pull-policy", "new", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
    assert_eq!(
        f.server.log().len(),
        before,
        "pull policy new asked the server"
    );
}

#[test]
fn ds11_walks_up_to_the_parent_paths() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/group/app", &[("version", "2")], &[], "x");
    f.server
        .route("/group?ac-discovery=1", Route::html("<html>no tags</html>"));
    f.server
        .route("/?ac-discovery=1", discovery_page("example.com", TEMPLATE));
    f.server.route(
        "/images/example.com/group/app-2.aci",
        Route::bytes(image.clone()),
    );
    let out = f.env.ok(&[NOSIG, "fetch", "example.com/group/app:2"]);
    assert_eq!(out.trim(), image_id(&image));
    let asked: Vec<String> = f.server.log().iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        asked[..3],
        [
            "/group/app?ac-discovery=1",
            "/group?ac-discovery=1",
            "/?ac-discovery=1"
        ]
    );
}

#[test]
fn ds12_redirects_are_followed() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "moved");
    f.server.route(
        "/app?ac-discovery=1",
        Route::redirect("/moved/app?ac-discovery=1"),
    );
    f.server.route(
        "/moved/app?ac-discovery=1",
        discovery_page(
            "example.com/app",
            "https://other.example.com/{name}-{version}.{ext}",
        ),
    );
    f.server.route(
        "/example.com/app-1.0.aci",
        Route::redirect("https://example.com/blobs/app.aci"),
    );
    f.server
        .route("/blobs/app.aci", Route::bytes(image.clone()));
    let out = f.env.ok(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
    let hosts: Vec<String> = f.server.log().iter().map(|l| l.host.clone()).collect();
    assert!(
        hosts.iter().any(|h| h.starts_with("other.example.com")),
        "{hosts:?}"
    );
}

#[test]
fn ds16_401_is_answered_with_credentials_from_auth_d() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "secret");
    f.publish("example.com/app", "1.0", &image);
    let expected = "Basic YWxpY2U6czNjcmV0"; // alice:s3cret
    f.server.route(
        "/images/example.com/app-1.0.aci",
        Route {
            auth: Some(expected.into()),
            ..Route::bytes(image.clone())
        },
    );
    let e = f.env.fails(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert!(e.contains("401"), "{e}");
    assert!(e.contains("auth.d"), "{e}");
    assert!(f.env.stored().is_empty());

    let auth_d = f.env.config().join("auth.d");
    std::fs::create_dir_all(&auth_d).expect("auth.d");
    let file = json!({"rktKind": "auth", "rktVersion": "v1", "domains": ["example.com"],
                      "type": "basic", "credentials": {"user": "alice", "password": "s3cret"}});
    fetch::write(&auth_d.join("example.json"), file.to_string().as_bytes());
    let out = f.env.ok(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
    let last = f.server.requests_to("/images/example.com/app-1.0.aci");
    assert_eq!(
        last.last().and_then(|l| l.authorization.clone()).as_deref(),
        Some(expected)
    );
}

#[test]
fn etag_answers_304_and_the_stored_image_is_reused() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "cached");
    let url = format!("{}/images/app.aci", "https://example.com");
    f.server.route(
        "/images/app.aci",
        Route {
            etag: Some("\"v1\"".into()),
            ..Route::bytes(image.clone())
        },
    );
    let first = f.env.ok(&[NOSIG, "fetch", &url]);
    let second = f.env.ok(&[NOSIG, "fetch", &url]);
    assert_eq!(first, second);
    let reqs = f.server.requests_to("/images/app.aci");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].status, 200);
    assert_eq!(reqs[1].if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(reqs[1].status, 304);

    // With max-age the server is not asked again while the copy is fresh.
    f.server.route(
        "/images/fresh.aci",
        Route {
            max_age: Some(3600),
            ..Route::bytes(image.clone())
        },
    );
    let fresh = "https://example.com/images/fresh.aci";
    f.env.ok(&[NOSIG, "fetch", fresh]);
    f.env.ok(&[NOSIG, "fetch", fresh]);
    assert_eq!(f.server.requests_to("/images/fresh.aci").len(), 1);
}

#[test]
fn a_dropped_download_resumes_with_range() {
    let Some(f) = fixture() else { return };
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let image = aci("example.com/big", &[("version", "1")], &[], &big);
    let half = image.len() / 2;
    f.server.route(
        "/images/big.aci",
        Route {
            etag: Some("\"big\"".into()),
            drop_after: Some((half, 1)),
            ..Route::bytes(image.clone())
        },
    );
    let out = f
        .env
        .ok(&[NOSIG, "fetch", "https://example.com/images/big.aci"]);
    assert_eq!(out.trim(), image_id(&image));
    let reqs = f.server.requests_to("/images/big.aci");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    let range = reqs[1].range.clone().expect("second request resumes");
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .expect("range start");
    assert!(from > 0 && from <= half, "{range}");
    assert_eq!(reqs[1].status, 206);
}

#[test]
fn a_download_cut_every_time_is_resumed_by_the_next_run() {
    let Some(f) = fixture() else { return };
    let big: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 7) as u8))
        .collect();
    let image = aci("example.com/big", &[("version", "1")], &[], &big);
    f.server.route(
        "/images/cut.aci",
        Route {
            etag: Some("\"cut\"".into()),
            // Every attempt of the first run gets 1000 bytes further, never to the end.
            drop_after: Some((1000, 5)),
            ..Route::bytes(image.clone())
        },
    );
    let url = "https://example.com/images/cut.aci";
    let e = f.env.fails(&[NOSIG, "fetch", url]);
    assert!(e.contains("run the command again to resume"), "{e}");
    assert!(f.env.stored().is_empty(), "a partial image is visible");
    let out = f.env.ok(&[NOSIG, "fetch", url]);
    assert_eq!(out.trim(), image_id(&image));
    let last = f.server.requests_to("/images/cut.aci");
    let last = last.last().expect("requests");
    assert!(
        last.range.is_some(),
        "the second run started over: {last:?}"
    );
}

#[test]
fn plain_http_only_with_the_insecure_option() {
    let Some(f) = fixture() else { return };
    let plain = Server::http();
    let image = aci("example.com/app", &[("version", "1")], &[], "plain");
    plain.route("/app.aci", Route::bytes(image.clone()));
    let url = format!("http://127.0.0.1:{}/app.aci", plain.addr.port());
    let e = f.env.fails(&[NOSIG, "fetch", &url]);
    assert!(e.contains("--insecure-options=http"), "{e}");
    assert!(plain.log().is_empty(), "a request went out over http");
    let out = f.env.ok(&["--insecure-options=image,http", "fetch", &url]);
    assert_eq!(out.trim(), image_id(&image));
}

#[test]
fn tls_is_checked_unless_told_otherwise() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1")], &[], "tls");
    f.server.route("/app.aci", Route::bytes(image.clone()));
    let url = "https://example.com/app.aci";
    // Without the test CA the certificate is not trusted.
    let out = f
        .env
        .command(&[NOSIG, "fetch", url])
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let out = f
        .env
        .command(&["--insecure-options=image,tls", "fetch", url])
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ds15_the_image_must_have_the_name_and_labels_asked_for() {
    let Some(f) = fixture() else { return };
    let wrong_name = aci("example.com/evil", &[("version", "1.0")], &[], "x");
    f.publish("example.com/app", "1.0", &wrong_name);
    let e = f.env.fails(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert!(e.contains("example.com/evil"), "{e}");
    assert!(e.contains("DS15"), "{e}");
    let wrong_version = aci("example.com/app", &[("version", "0.9")], &[], "x");
    f.publish("example.com/app", "1.0", &wrong_version);
    let e = f.env.fails(&[NOSIG, "fetch", "example.com/app:1.0"]);
    assert!(e.contains("version=0.9"), "{e}");
    assert!(f.env.stored().is_empty());
}

#[test]
fn dependencies_are_fetched_and_their_image_id_checked() {
    let Some(f) = fixture() else { return };
    let base = aci("example.com/base", &[("version", "1")], &[], "base");
    let tools = aci("example.com/tools", &[("version", "1")], &[], "tools");
    f.server
        .route("/?ac-discovery=1", discovery_page("example.com", TEMPLATE));
    f.server
        .route("/images/example.com/base-1.aci", Route::bytes(base.clone()));
    f.server.route(
        "/images/example.com/tools-1.aci",
        Route::bytes(tools.clone()),
    );
    let deps = [
        json!({"imageName": "example.com/base", "imageID": image_id(&base),
               "labels": [{"name": "version", "value": "1"}]}),
        json!({"imageName": "example.com/tools", "labels": [{"name": "version", "value": "1"}]}),
    ];
    let app = aci("example.com/app", &[("version", "1")], &deps, "app");
    f.server
        .route("/images/example.com/app-1.aci", Route::bytes(app.clone()));
    let out = f.env.ok(&[NOSIG, "fetch", "example.com/app:1"]);
    assert_eq!(out.trim(), image_id(&app));
    let mut stored = f.env.stored();
    stored.sort();
    let mut want = vec![image_id(&base), image_id(&tools), image_id(&app)];
    want.sort();
    assert_eq!(stored, want);
}

#[test]
fn d1_a_dependency_with_another_image_id_is_refused() {
    let Some(f) = fixture() else { return };
    let base = aci("example.com/base", &[("version", "1")], &[], "base");
    let other = aci("example.com/base", &[("version", "1")], &[], "not the same");
    f.server
        .route("/?ac-discovery=1", discovery_page("example.com", TEMPLATE));
    f.server.route(
        "/images/example.com/base-1.aci",
        Route::bytes(other.clone()),
    );
    let deps = [
        json!({"imageName": "example.com/base", "imageID": image_id(&base),
                        "labels": [{"name": "version", "value": "1"}]}),
    ];
    let app = aci("example.com/app", &[("version", "1")], &deps, "app");
    f.server
        .route("/images/example.com/app-1.aci", Route::bytes(app.clone()));
    let e = f.env.fails(&[NOSIG, "fetch", "example.com/app:1"]);
    assert!(e.contains("dependency example.com/base"), "{e}");
    assert!(e.contains(&image_id(&base)), "{e}");
    assert!(f.env.stored().is_empty(), "{:?}", f.env.stored());
}

#[test]
fn pull_policy_never_stays_off_the_network() {
    let Some(f) = fixture() else { return };
    let e = f.env.fails(&[
        NOSIG,
        "fetch",
        "--pull-policy",
        "never",
        "example.com/app:1.0",
    ]);
    assert!(e.contains("--pull-policy=never"), "{e}");
    assert!(f.server.log().is_empty());
}

#[test]
fn run_fetches_images_missing_from_the_store() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "run me");
    f.publish("example.com/app", "1.0", &image);
    // `prepare` composes the pod exactly as `run` does, without starting it.
    let out = f.env.ok(&[
        NOSIG,
        "prepare",
        "example.com/app:1.0",
        "--exec",
        "/content",
    ]);
    assert!(!out.trim().is_empty());
    assert_eq!(f.env.stored(), [image_id(&image)]);
    let fetched = f
        .server
        .requests_to("/images/example.com/app-1.0.aci")
        .len();
    // The default policy (new) uses the stored copy the second time.
    f.env.ok(&[
        NOSIG,
        "prepare",
        "example.com/app:1.0",
        "--exec",
        "/content",
    ]);
    assert_eq!(
        f.server
            .requests_to("/images/example.com/app-1.0.aci")
            .len(),
        fetched
    );
    // --pull-policy update asks again (and gets the same bytes: no new image).
    f.env.ok(&[
        NOSIG,
        "prepare",
        "--pull-policy",
        "update",
        "example.com/app:1.0",
        "--exec",
        "/content",
    ]);
    assert!(
        f.server
            .requests_to("/images/example.com/app-1.0.aci")
            .len()
            > fetched
    );
}
