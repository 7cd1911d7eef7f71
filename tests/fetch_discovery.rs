//! Tier 2: the discovery walk and template rules (DS2–DS11) on the spec's own test pages
//! (`shared/appc/discovery-testdata/meta0N.html`), with the scenarios of appc/spec's
//! `discovery_test.go` re-authored. The pages are served by a page table keyed by discovery
//! URL; the HTTP side (redirects, auth, TLS) is tested against a real server in `tests/fetch.rs`.

mod common;

use std::collections::HashMap;

use appc_pod::discovery::{Discovered, Endpoint, Page, Want, discover, parse_meta};
use appc_pod::schema::{AppString, host_os_arch};

fn page(name: &str) -> Option<String> {
    let dir = common::appc_data("discovery-testdata")?;
    Some(std::fs::read_to_string(dir.join(name)).expect("test page"))
}

const BOTH: Want = Want {
    images: true,
    pubkeys: true,
};

/// Runs discovery for `app` over `pages` (discovery URL → page); others answer 404.
fn run(
    app: &str,
    pages: &[(&str, String)],
    want: Want,
) -> (Result<Discovered, String>, Vec<String>) {
    let table: HashMap<String, String> = pages
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut asked = Vec::new();
    let mut get = |url: &str| {
        asked.push(url.to_owned());
        Ok(match table.get(url) {
            Some(p) => Page::Found(p.clone()),
            None => Page::ClientError(404),
        })
    };
    let app = AppString::parse(app).expect("app string");
    let r = discover(&app, want, &mut get).map_err(|e| e.to_string());
    (r, asked)
}

fn ep(aci: &str) -> Endpoint {
    Endpoint {
        aci: aci.to_owned(),
        asc: format!("{aci}.asc"),
    }
}

#[test]
fn ds4_meta_tags_of_the_test_pages() {
    let Some(p1) = page("meta01.html") else {
        return;
    };
    let tags = parse_meta(&p1);
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0].prefix, "example.com");
    assert_eq!(
        tags[0].value,
        "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}"
    );
    assert_eq!(tags[1].value, "https://example.com/pubkeys.gpg");
    let p6 = page("meta06.html").expect("meta06");
    assert_eq!(parse_meta(&p6).len(), 4);
}

#[test]
fn ds8_every_variable_rendered_and_both_urls_from_one_template() {
    let Some(p1) = page("meta01.html") else {
        return;
    };
    let (r, asked) = run(
        "example.com/myapp:1.0.0,os=linux,arch=amd64",
        &[("https://example.com/myapp?ac-discovery=1", p1)],
        BOTH,
    );
    let d = r.expect("discovered");
    assert_eq!(
        d.endpoints,
        [ep(
            "https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci"
        )]
    );
    assert_eq!(d.pubkeys, ["https://example.com/pubkeys.gpg"]);
    assert_eq!(asked, ["https://example.com/myapp?ac-discovery=1"]);
}

#[test]
fn version_defaults_to_latest_and_os_arch_to_this_machine() {
    let Some(p1) = page("meta01.html") else {
        return;
    };
    let (r, _) = run(
        "example.com/myapp",
        &[("https://example.com/myapp?ac-discovery=1", p1)],
        BOTH,
    );
    let (os, arch) = host_os_arch();
    assert_eq!(
        r.expect("discovered").endpoints,
        [ep(&format!(
            "https://storage.example.com/example.com/myapp-latest-{os}-{arch}.aci"
        ))]
    );
}

#[test]
fn ds11_walks_up_on_4xx_and_on_pages_without_tags() {
    let Some(p1) = page("meta01.html") else {
        return;
    };
    let (r, asked) = run(
        "example.com/group/myapp:1.0.0,os=linux,arch=amd64",
        &[
            (
                "https://example.com/group?ac-discovery=1",
                "<html><head><title>nothing here</title></head></html>".to_owned(),
            ),
            ("https://example.com?ac-discovery=1", p1),
        ],
        BOTH,
    );
    assert_eq!(
        asked,
        [
            "https://example.com/group/myapp?ac-discovery=1",
            "https://example.com/group?ac-discovery=1",
            "https://example.com?ac-discovery=1",
        ]
    );
    let d = r.expect("discovered");
    assert_eq!(
        d.endpoints,
        [ep(
            "https://storage.example.com/example.com/group/myapp-1.0.0-linux-amd64.aci"
        )]
    );
}

#[test]
fn images_and_keys_are_found_by_independent_walks() {
    // meta02 has only a template, meta03 only keys: endpoints come from the app's level,
    // keys from the root (discovery_test.go's split case).
    let (Some(p2), Some(p3)) = (page("meta02.html"), page("meta03.html")) else {
        return;
    };
    let (r, asked) = run(
        "example.com/myapp:1.0.0,os=linux,arch=amd64",
        &[
            ("https://example.com/myapp?ac-discovery=1", p2),
            ("https://example.com?ac-discovery=1", p3),
        ],
        BOTH,
    );
    let d = r.expect("discovered");
    assert_eq!(d.endpoints.len(), 1);
    assert_eq!(d.pubkeys, ["https://example.com/pubkeys.gpg"]);
    assert_eq!(asked.len(), 2);

    // Wanting images only stops at the first level.
    let (p2, p3) = (page("meta02.html").unwrap(), page("meta03.html").unwrap());
    let (_, asked) = run(
        "example.com/myapp:1.0.0",
        &[
            ("https://example.com/myapp?ac-discovery=1", p2),
            ("https://example.com?ac-discovery=1", p3),
        ],
        Want {
            images: true,
            pubkeys: false,
        },
    );
    assert_eq!(asked, ["https://example.com/myapp?ac-discovery=1"]);
}

#[test]
fn templates_needing_missing_labels_are_skipped() {
    // meta05: `{name}-{version}-{os}-{arch}` and `{name}-{version}`. Go leaves os/arch unset and
    // keeps only the second; we default them to this machine's (as rkt did), so both render.
    // A template with a label nobody gave is skipped.
    let Some(p5) = page("meta05.html") else {
        return;
    };
    let (r, _) = run(
        "example.com/myapp:1.0.0",
        &[("https://example.com/myapp?ac-discovery=1", p5)],
        Want {
            images: true,
            pubkeys: false,
        },
    );
    let (os, arch) = host_os_arch();
    assert_eq!(
        r.expect("discovered").endpoints,
        [
            ep(&format!(
                "https://storage.example.com/example.com/myapp-1.0.0-{os}-{arch}.aci"
            )),
            ep("https://storage.example.com/example.com/myapp-1.0.0.aci"),
        ]
    );
    let page = r#"<meta name="ac-discovery" content="example.com https://s.example.com/{name}-{channel}.{ext}">"#;
    let (r, _) = run(
        "example.com/myapp:1.0.0",
        &[("https://example.com/myapp?ac-discovery=1", page.to_owned())],
        Want {
            images: true,
            pubkeys: false,
        },
    );
    assert!(r.unwrap_err().contains("no ac-discovery template"));
    let (r, _) = run(
        "example.com/myapp:1.0.0,channel=beta",
        &[("https://example.com/myapp?ac-discovery=1", page.to_owned())],
        Want {
            images: true,
            pubkeys: false,
        },
    );
    assert_eq!(
        r.expect("discovered").endpoints,
        [ep("https://s.example.com/example.com/myapp-beta.aci")]
    );
}

#[test]
fn ds9_every_template_is_offered_including_other_schemes() {
    let Some(p6) = page("meta06.html") else {
        return;
    };
    let (r, _) = run(
        "example.com/myapp:1.0.0,os=linux,arch=amd64",
        &[("https://example.com/myapp?ac-discovery=1", p6)],
        BOTH,
    );
    let d = r.expect("discovered");
    assert_eq!(
        d.endpoints,
        [
            ep("https://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci"),
            ep("https://storage.example.com/example.com/myapp-1.0.0.aci"),
            ep("hdfs://storage.example.com/example.com/myapp-1.0.0-linux-amd64.aci"),
        ]
    );
}

#[test]
fn ds7_tags_for_other_prefixes_are_ignored() {
    // meta04's prefix is example.com: it does not apply to names elsewhere.
    let Some(p4) = page("meta04.html") else {
        return;
    };
    let (r, _) = run(
        "other.org/myapp:1.0.0",
        &[
            ("https://other.org/myapp?ac-discovery=1", p4.clone()),
            ("https://other.org?ac-discovery=1", p4),
        ],
        BOTH,
    );
    let e = r.unwrap_err();
    assert!(e.contains("no ac-discovery template for it"), "{e}");
    assert!(e.contains("https://other.org?ac-discovery=1"), "{e}");
}

#[test]
fn server_errors_stop_the_walk() {
    let app = AppString::parse("example.com/a/b").expect("app");
    let mut get = |_: &str| Err::<Page, String>("503 Service Unavailable".into());
    let e = discover(&app, BOTH, &mut get).unwrap_err().to_string();
    assert!(e.contains("https://example.com/a/b?ac-discovery=1"), "{e}");
    assert!(e.contains("503"), "{e}");
}
