//! Tier 3: signatures (spec/aci.md A8–A10, spec/discovery.md DS6, DS14) through the real
//! `appcctl`: keys made and images signed with sequoia in the test, served by the loopback
//! HTTPS server of tests/fetch/, trusted with `appcctl trust`. Nothing that fails the check may
//! become visible in the store. Needs root (the store keeps owners); skips out loud otherwise.

mod common;
#[path = "fetch/mod.rs"]
mod fetch;

use fetch::{Env, Key, Pki, Route, Server, aci, image_id};

struct Fixture {
    server: Server,
    env: Env,
    key: Key,
}

fn fixture() -> Option<Fixture> {
    if !fetch::can_import() {
        common::skip("fetch tests import into a store, which needs root");
        return None;
    }
    let pki = Pki::new();
    let server = Server::https(&pki);
    let env = Env::new(&pki, &server);
    Some(Fixture {
        server,
        env,
        key: Key::new("appc test <test@example.com>"),
    })
}

const PAGE: &str = r#"<html><head>
<meta name="ac-discovery" content="example.com https://example.com/images/{name}-{version}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://keys.example.com/pubkeys.gpg">
</head></html>"#;

impl Fixture {
    /// Serves `image` as `name:1.0` by discovery, with `signature` (or none) beside it.
    fn publish(&self, name: &str, image: &[u8], signature: Option<Vec<u8>>) {
        self.server.route("/?ac-discovery=1", Route::html(PAGE));
        let base = format!("/images/{name}-1.0.aci");
        self.server.route(&base, Route::bytes(image.to_vec()));
        match signature {
            Some(sig) => self.server.route(&format!("{base}.asc"), Route::bytes(sig)),
            None => self
                .server
                .route(&format!("{base}.asc"), Route::status(404)),
        }
    }
}

#[test]
fn a8_a_signed_image_from_a_trusted_key_is_fetched() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "signed");
    f.publish("example.com/app", &image, Some(f.key.sign(&image)));
    f.env.trust("example.com/app", &f.key);
    let out = f.env.ok(&["fetch", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
    assert!(
        !f.server
            .requests_to("/images/example.com/app-1.0.aci.asc")
            .is_empty()
    );
}

#[test]
fn a_tampered_image_is_refused() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "signed");
    let tampered = aci("example.com/app", &[("version", "1.0")], &[], "changed");
    f.publish("example.com/app", &tampered, Some(f.key.sign(&image)));
    f.env.trust("example.com/app", &f.key);
    let e = f.env.fails(&["fetch", "example.com/app:1.0"]);
    assert!(e.contains("signature"), "{e}");
    assert!(f.env.stored().is_empty(), "a refused image is visible");
}

#[test]
fn an_unsigned_image_is_refused_unless_insecure() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "unsigned");
    f.publish("example.com/app", &image, None);
    f.env.trust("example.com/app", &f.key);
    let e = f.env.fails(&["fetch", "example.com/app:1.0"]);
    assert!(e.contains("image is not signed"), "{e}");
    assert!(e.contains("--insecure-options=image"), "{e}");
    assert!(f.env.stored().is_empty());
    let out = f
        .env
        .appcctl(&["--insecure-options=image", "fetch", "example.com/app:1.0"]);
    assert!(out.status.success());
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(warn.contains("signature not verified"), "{warn}");
}

#[test]
fn a_key_trusted_for_another_prefix_does_not_count() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "signed");
    f.publish("example.com/app", &image, Some(f.key.sign(&image)));
    f.env.trust("example.com/other", &f.key);
    let e = f.env.fails(&["fetch", "example.com/app:1.0"]);
    assert!(e.contains("signature"), "{e}");
    assert!(f.env.stored().is_empty());
}

#[test]
fn a_local_file_is_checked_with_the_signature_beside_it() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/local", &[("version", "1.0")], &[], "local");
    let file = f.env.path("local.aci");
    fetch::write(&file, &image);
    let path = file.to_str().expect("utf-8");
    let e = f.env.fails(&["fetch", path]);
    assert!(e.contains("image is not signed"), "{e}");
    fetch::write(&f.env.path("local.aci.asc"), &f.key.sign(&image));
    let e = f.env.fails(&["fetch", path]);
    assert!(e.contains("signature"), "untrusted key accepted: {e}");
    f.env.trust("example.com/local", &f.key);
    let out = f.env.ok(&["fetch", path]);
    assert_eq!(out.trim(), image_id(&image));
}

#[test]
fn trust_discovers_keys_through_ac_discovery_pubkeys() {
    let Some(f) = fixture() else { return };
    let image = aci("example.com/app", &[("version", "1.0")], &[], "signed");
    f.publish("example.com/app", &image, Some(f.key.sign(&image)));
    f.server
        .route("/pubkeys.gpg", Route::bytes(f.key.public_armored()));
    f.env.ok(&[
        "trust",
        "--prefix",
        "example.com/app",
        "--skip-fingerprint-review",
    ]);
    let keys = f.server.requests_to("/pubkeys.gpg");
    assert_eq!(keys.len(), 1);
    assert!(keys[0].host.starts_with("keys.example.com"));
    let out = f.env.ok(&["fetch", "example.com/app:1.0"]);
    assert_eq!(out.trim(), image_id(&image));
}
