//! Tier 2: the appc schema against the spec's own example manifests, a negative case per rule of
//! appc-requirements.md §2–3, the warnings of the strictness policy, and property tests for the
//! name types.

mod common;

use appc_pod::schema::{
    AcIdentifier, AcName, ImageId, ImageManifest, Manifest, PodManifest, PodUuid, SchemaErrors,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn read_examples() -> Vec<(String, String)> {
    let Some(dir) = common::appc_data("examples") else {
        return Vec::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("read example"),
            )
        })
        .collect()
}

/// The ACE validator's manifests with the placeholders filled in, as the build script does.
fn ace_manifests() -> Vec<(String, String)> {
    let Some(dir) = common::appc_data("ace") else {
        return Vec::new();
    };
    [
        "image_manifest_main.json.in",
        "image_manifest_sidekick.json.in",
    ]
    .iter()
    .map(|f| {
        let text = std::fs::read_to_string(dir.join(f)).expect("read ace manifest");
        (
            f.to_string(),
            text.replace("@ACI_OS@", "linux")
                .replace("@ACI_ARCH@", "amd64"),
        )
    })
    .collect()
}

fn canonical(m: &Manifest) -> String {
    match m {
        Manifest::Image(i) => i.to_canonical_json(),
        Manifest::Pod(p) => p.to_canonical_json(),
    }
}

#[test]
fn spec_examples_parse_validate_and_round_trip() {
    let examples = read_examples();
    if examples.is_empty() {
        return;
    }
    assert_eq!(
        examples.len(),
        3,
        "expected image.json, pod_runtime.json, pod_template.json"
    );
    for (name, text) in examples.into_iter().chain(ace_manifests()) {
        let decoded = Manifest::parse(&text).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        let json = canonical(&decoded.value);
        let again = Manifest::parse(&json)
            .unwrap_or_else(|e| panic!("{name} canonical form:\n{e}\n{json}"));
        assert_eq!(
            decoded.value, again.value,
            "{name}: round trip changed the value"
        );
        assert_eq!(
            canonical(&again.value),
            json,
            "{name}: canonical form is not a fixed point"
        );
        // The canonical form is also what plain serde reads.
        match &decoded.value {
            Manifest::Image(m) => {
                assert_eq!(&serde_json::from_str::<ImageManifest>(&json).unwrap(), m)
            }
            Manifest::Pod(m) => assert_eq!(&serde_json::from_str::<PodManifest>(&json).unwrap(), m),
        }
    }
}

#[test]
fn pod_template_is_a_template_and_runtime_is_reified() {
    for (name, text) in read_examples() {
        let Ok(d) = PodManifest::parse(&text) else {
            continue;
        };
        let unresolved: Vec<&str> = d.value.unresolved_apps().map(|a| a.name.as_str()).collect();
        if name.ends_with("pod_template.json") {
            assert_eq!(unresolved, ["backup", "register"]);
        } else {
            assert!(unresolved.is_empty(), "{name}: {unresolved:?}");
        }
    }
}

#[test]
fn example_image_manifest_has_its_typed_content() {
    let Some((_, text)) = read_examples()
        .into_iter()
        .find(|(n, _)| n.ends_with("image.json"))
    else {
        return;
    };
    let m = ImageManifest::parse(&text).expect("image.json").value;
    assert_eq!(m.name.as_str(), "example.com/reduce-worker");
    assert_eq!(m.labels.get("os"), Some("linux"));
    let app = m.app.as_ref().expect("app");
    assert_eq!(app.exec, ["/usr/bin/reduce-worker", "--quiet"]);
    assert_eq!(app.isolators.len(), 5);
    assert_eq!(app.ports[0].port, 4000);
    assert!(app.ports[0].socket_activated);
    assert_eq!(m.path_whitelist.len(), 5);
    assert_eq!(m.annotations.get("homepage"), Some("https://example.com"));
}

// ---------------------------------------------------------------------------------------------
// Negative cases: one per rule. Each mutates a valid base manifest and names the expected error
// line (path and rule), so a test fails if the rule stops firing or fires at the wrong place.

fn image_base() -> Value {
    json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [{"name": "version", "value": "1.0.0"}, {"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "app": {
            "exec": ["/bin/app"],
            "user": "0",
            "group": "0",
            "eventHandlers": [{"name": "pre-start", "exec": ["/bin/pre"]}],
            "workingDirectory": "/srv",
            "environment": [{"name": "MODE", "value": "prod"}],
            "isolators": [{"name": "resource/memory", "value": {"limit": "1G"}}],
            "mountPoints": [{"name": "data", "path": "/data"}],
            "ports": [{"name": "www", "protocol": "tcp", "port": 80}]
        },
        "dependencies": [{"imageName": "example.com/base", "labels": [{"name": "os", "value": "linux"}]}],
        "pathWhitelist": ["/bin/app"],
        "annotations": [{"name": "created", "value": "2014-10-27T19:32:27.67021798Z"}]
    })
}

fn pod_base() -> Value {
    let id = format!("sha512-{}", "0a".repeat(64));
    json!({
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [{
            "name": "web",
            "image": {"name": "example.com/web", "id": id},
            "mounts": [{"volume": "data", "path": "/data"}]
        }],
        "volumes": [{"name": "data", "kind": "host", "source": "/srv/data"}],
        "isolators": [{"name": "resource/memory", "value": {"limit": "4G"}}],
        "annotations": [{"name": "team", "value": "infra"}],
        "ports": [{"name": "www", "hostPort": 8080}]
    })
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer.
fn mutate(mut doc: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer");
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, new) {
        (Value::Object(m), Some(v)) => {
            m.insert(last.to_owned(), v);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(v)) => {
            let i: usize = last.parse().expect("index");
            if i == a.len() { a.push(v) } else { a[i] = v }
        }
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("index"));
        }
        _ => panic!("{parent} is not a container"),
    }
    doc
}

fn errors_of(doc: &Value) -> Result<Vec<String>, String> {
    let text = doc.to_string();
    match Manifest::parse(&text) {
        Ok(_) => Err("accepted".into()),
        Err(e) => Ok(e.iter().map(ToString::to_string).collect()),
    }
}

fn check_rejected(label: &str, doc: Value, expected: &str) {
    match errors_of(&doc) {
        Err(_) => panic!("{label}: accepted, expected {expected:?}"),
        Ok(lines) => assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{label}: expected a line starting with {expected:?}, got {lines:#?}"
        ),
    }
}

#[test]
fn bases_are_valid() {
    Manifest::parse(&image_base().to_string()).expect("image base");
    Manifest::parse(&pod_base().to_string()).expect("pod base");
}

#[test]
fn image_manifest_rules() {
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        (
            "A: acKind required",
            "/acKind",
            None,
            "acKind: required field is missing",
        ),
        (
            "acKind wrong",
            "/acKind",
            Some(json!("PodManifest")),
            "apps: required field is missing",
        ),
        (
            "acKind unknown",
            "/acKind",
            Some(json!("Thing")),
            "acKind: \"Thing\" is not an AC Kind",
        ),
        (
            "acVersion required",
            "/acVersion",
            None,
            "acVersion: required field is missing",
        ),
        (
            "acVersion semver",
            "/acVersion",
            Some(json!("v0.8.11")),
            "acVersion: \"v0.8.11\" is not an AC Version",
        ),
        (
            "acVersion zero",
            "/acVersion",
            Some(json!("0.0.0")),
            "acVersion: \"0.0.0\" is not an AC Version (it cannot be zero)",
        ),
        (
            "acVersion major",
            "/acVersion",
            Some(json!("1.0.0")),
            "acVersion: 1.0.0 is not a 0.x version",
        ),
        (
            "name required",
            "/name",
            None,
            "name: required field is missing",
        ),
        (
            "name identifier",
            "/name",
            Some(json!("Example.com/app")),
            "name: \"Example.com/app\" is not an AC Identifier",
        ),
        (
            "name edges",
            "/name",
            Some(json!("example.com/app/")),
            "name: \"example.com/app/\" is not an AC Identifier",
        ),
        (
            "name type",
            "/name",
            Some(json!(7)),
            "name: expected a string, found a number",
        ),
        (
            "label unique",
            "/labels/3",
            Some(json!({"name": "version", "value": "2"})),
            "labels[3]: duplicate label name \"version\"",
        ),
        (
            "label name forbidden",
            "/labels/0/name",
            Some(json!("name")),
            "labels[0].name: \"name\" is not allowed",
        ),
        (
            "label os",
            "/labels/1/value",
            Some(json!("plan9")),
            "labels[1].value: os \"plan9\" is not one of",
        ),
        (
            "label arch",
            "/labels/2/value",
            Some(json!("arm64")),
            "labels[1].value: arch \"arm64\" is not valid for os \"linux\"",
        ),
        (
            "label value type",
            "/labels/0/value",
            Some(json!(1)),
            "labels[0].value: expected a string",
        ),
        (
            "app user",
            "/app/user",
            None,
            "app.user: required field is missing",
        ),
        (
            "app group",
            "/app/group",
            None,
            "app.group: required field is missing",
        ),
        (
            "app exec type",
            "/app/exec",
            Some(json!("/bin/app")),
            "app.exec: expected an array, found a string",
        ),
        (
            "supplementary gids",
            "/app/supplementaryGIDs",
            Some(json!([-1])),
            "app.supplementaryGIDs[0]: \"-1\" is not an integer",
        ),
        (
            "handler name",
            "/app/eventHandlers/0/name",
            Some(json!("on-crash")),
            "app.eventHandlers[0].name: \"on-crash\" is not an event handler name",
        ),
        (
            "handler unique",
            "/app/eventHandlers/1",
            Some(json!({"name": "pre-start", "exec": ["/x"]})),
            "app.eventHandlers[1]: duplicate event handler \"pre-start\"",
        ),
        (
            "handler exec",
            "/app/eventHandlers/0/exec",
            Some(json!([])),
            "app.eventHandlers[0].exec: an event handler needs a command",
        ),
        (
            "working dir",
            "/app/workingDirectory",
            Some(json!("srv")),
            "app.workingDirectory: \"srv\" is not an absolute path",
        ),
        (
            "env name",
            "/app/environment/0/name",
            Some(json!("0DEBUG")),
            "app.environment[0].name: \"0DEBUG\" is not an environment variable name",
        ),
        (
            "env unique",
            "/app/environment/1",
            Some(json!({"name": "MODE", "value": "x"})),
            "app.environment[1]: duplicate environment variable \"MODE\"",
        ),
        (
            "isolator quantity",
            "/app/isolators/0/value/limit",
            Some(json!("1X")),
            "app.isolators[0].value.limit: \"1X\" is not a resource quantity",
        ),
        (
            "isolator value",
            "/app/isolators/0/value",
            None,
            "app.isolators[0].value: required field is missing",
        ),
        (
            "mount point name",
            "/app/mountPoints/0/name",
            Some(json!("Data")),
            "app.mountPoints[0].name: \"Data\" is not an AC Name",
        ),
        (
            "mount point path",
            "/app/mountPoints/0/path",
            Some(json!("data")),
            "app.mountPoints[0].path: \"data\" is not an absolute path",
        ),
        (
            "mount point unique",
            "/app/mountPoints/1",
            Some(json!({"name": "data", "path": "/d2"})),
            "app.mountPoints[1]: duplicate mount point name \"data\"",
        ),
        (
            "port name",
            "/app/ports/0/name",
            None,
            "app.ports[0].name: required field is missing",
        ),
        (
            "port protocol",
            "/app/ports/0/protocol",
            None,
            "app.ports[0].protocol: required field is missing",
        ),
        (
            "port zero",
            "/app/ports/0/port",
            Some(json!(0)),
            "app.ports[0].port: port must be between 1 and 65535",
        ),
        (
            "port range",
            "/app/ports/0/port",
            Some(json!(65536)),
            "app.ports[0].port: \"65536\" is not an integer",
        ),
        (
            "port count",
            "/app/ports/0/count",
            Some(json!(65500)),
            "app.ports[0].count: port + count (65500) goes past 65535",
        ),
        (
            "port unique",
            "/app/ports/1",
            Some(json!({"name": "www", "protocol": "udp", "port": 53})),
            "app.ports[1]: duplicate port name \"www\"",
        ),
        (
            "dependency name",
            "/dependencies/0/imageName",
            None,
            "dependencies[0].imageName: required field is missing",
        ),
        (
            "dependency id algo",
            "/dependencies/0/imageID",
            Some(json!("sha256-abcd")),
            "dependencies[0].imageID: \"sha256-abcd\" is not an image ID (only sha512",
        ),
        (
            "dependency labels",
            "/dependencies/0/labels/0/value",
            Some(json!("plan9")),
            "dependencies[0].labels[0].value: os \"plan9\"",
        ),
        (
            "path whitelist",
            "/pathWhitelist/0",
            Some(json!("bin/app")),
            "pathWhitelist[0]: \"bin/app\" is not an absolute path",
        ),
        (
            "annotation created",
            "/annotations/0/value",
            Some(json!("yesterday")),
            "annotations[0].value: \"yesterday\" is not an RFC 3339 timestamp",
        ),
        (
            "annotation homepage",
            "/annotations/1",
            Some(json!({"name": "homepage", "value": "ftp://x"})),
            "annotations[1].value: \"ftp://x\" is not an http(s) URL",
        ),
        (
            "annotation unique",
            "/annotations/1",
            Some(json!({"name": "created", "value": "2014-10-27T19:32:27Z"})),
            "annotations[1]: duplicate annotation name \"created\"",
        ),
        (
            "annotation name",
            "/annotations/0/name",
            Some(json!("Created")),
            "annotations[0].name: \"Created\" is not an AC Identifier",
        ),
    ];
    for (label, pointer, value, expected) in cases {
        check_rejected(
            label,
            mutate(image_base(), pointer, value.clone()),
            expected,
        );
    }
}

#[test]
fn pod_manifest_rules() {
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        (
            "apps required",
            "/apps",
            None,
            "apps: required field is missing",
        ),
        (
            "app name",
            "/apps/0/name",
            Some(json!("Web")),
            "apps[0].name: \"Web\" is not an AC Name",
        ),
        (
            "app unique",
            "/apps/1",
            Some(json!({"name": "web", "image": {"name": "example.com/x"}})),
            "apps[1]: duplicate app name \"web\"",
        ),
        (
            "app image",
            "/apps/0/image",
            None,
            "apps[0].image: required field is missing",
        ),
        (
            "app image empty",
            "/apps/0/image",
            Some(json!({})),
            "apps[0].image: an app image needs an id or a name",
        ),
        (
            "app image id",
            "/apps/0/image/id",
            Some(json!("sha1-abc")),
            "apps[0].image.id: \"sha1-abc\" is not an image ID",
        ),
        (
            "read-only rootfs",
            "/apps/0/readOnlyRootFS",
            Some(json!("yes")),
            "apps[0].readOnlyRootFS: expected a boolean",
        ),
        (
            "mount volume",
            "/apps/0/mounts/0/volume",
            Some(json!("nope")),
            "apps[0].mounts[0].volume: volume \"nope\" is not declared",
        ),
        (
            "mount path",
            "/apps/0/mounts/0/path",
            Some(json!("data")),
            "apps[0].mounts[0].path: \"data\" is not an absolute path",
        ),
        (
            "mount unique",
            "/apps/0/mounts/1",
            Some(json!({"volume": "data", "path": "/data"})),
            "apps[0].mounts[1]: duplicate mount path \"/data\"",
        ),
        (
            "volume unique",
            "/volumes/1",
            Some(json!({"name": "data", "kind": "empty"})),
            "volumes[1]: duplicate volume name \"data\"",
        ),
        (
            "volume kind",
            "/volumes/0/kind",
            Some(json!("nfs")),
            "volumes[0].kind: volume kind \"nfs\" is neither",
        ),
        (
            "host source",
            "/volumes/0/source",
            None,
            "volumes[0].source: required field is missing",
        ),
        (
            "host source absolute",
            "/volumes/0/source",
            Some(json!("srv")),
            "volumes[0].source: \"srv\" is not an absolute path",
        ),
        (
            "host mode",
            "/volumes/0/mode",
            Some(json!("0755")),
            "volumes[0].mode: only \"empty\" volumes take mode",
        ),
        (
            "empty source",
            "/volumes/0",
            Some(json!({"name": "data", "kind": "empty", "source": "/x"})),
            "volumes[0].source: an \"empty\" volume takes no source",
        ),
        (
            "empty mode",
            "/volumes/0",
            Some(json!({"name": "data", "kind": "empty", "mode": "rwx"})),
            "volumes[0].mode: \"rwx\" is not an octal file mode",
        ),
        (
            "pod caps",
            "/isolators/1",
            Some(
                json!({"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_CHOWN"]}}),
            ),
            "isolators[1]:",
        ),
        (
            "app sysctl",
            "/apps/0/app",
            Some(
                json!({"user": "0", "group": "0", "isolators": [{"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": "1"}}]}),
            ),
            "apps[0].app.isolators[0]:",
        ),
        (
            "sysctl value",
            "/isolators/1",
            Some(json!({"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": 1}})),
            r#"isolators[1].value["net.ipv4.ip_forward"]:"#,
        ),
        (
            "host port",
            "/ports/0/hostPort",
            Some(json!(0)),
            "ports[0].hostPort: hostPort must be between 1 and 65535",
        ),
        (
            "host ip",
            "/ports/0/hostIP",
            Some(json!("localhost")),
            "ports[0].hostIP: \"localhost\" is not an IP address",
        ),
        (
            "port unique",
            "/ports/1",
            Some(json!({"name": "www", "hostPort": 8081})),
            "ports[1]: duplicate port name \"www\"",
        ),
        (
            "annotation name",
            "/annotations/0/name",
            Some(json!("Team")),
            "annotations[0].name: \"Team\" is not an AC Identifier",
        ),
        (
            "user labels",
            "/userLabels",
            Some(json!({"a": 1})),
            "userLabels.a: expected a string",
        ),
    ];
    for (label, pointer, value, expected) in cases {
        check_rejected(label, mutate(pod_base(), pointer, value.clone()), expected);
    }
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let doc = mutate(
        mutate(image_base(), "/name", Some(json!("Bad Name"))),
        "/app/workingDirectory",
        Some(json!("rel")),
    );
    let lines = errors_of(&doc).expect("rejected");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with("name: "));
    assert!(lines[1].starts_with("app.workingDirectory: "));
}

#[test]
fn one_bad_isolator_does_not_hide_the_list_rules() {
    let isolators = json!([
        {"name": "resource/memory", "value": {"limit": "1X"}},
        {"name": "os/unix/sysctl", "value": {"net.core.somaxconn": "1024"}}
    ]);
    let doc = mutate(image_base(), "/app/isolators", Some(isolators));
    let lines = errors_of(&doc).expect("rejected");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("app.isolators[0].value.limit: "),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("app.isolators[1]: "), "{lines:#?}");
}

#[test]
fn syntax_errors_name_the_position() {
    let e: SchemaErrors =
        Manifest::parse("{\"acKind\": \"ImageManifest\",\n \"name\": }").unwrap_err();
    assert!(e.to_string().starts_with("line 2, column "), "{e}");
    assert!(Manifest::parse("").is_err());
    assert!(
        Manifest::parse("[]")
            .unwrap_err()
            .to_string()
            .contains("expected an object, found an array")
    );
}

// ---------------------------------------------------------------------------------------------
// Warnings: accepted under the policy, but said out loud.

fn warnings_of(doc: &Value) -> Vec<String> {
    let d = Manifest::parse(&doc.to_string()).unwrap_or_else(|e| panic!("rejected: {e}"));
    d.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn policy_warnings() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "key case",
            mutate(
                mutate(image_base(), "/app/supplementaryGids", Some(json!([5]))),
                "/app/exec",
                None,
            ),
            "app.supplementaryGids: key \"supplementaryGids\" read as \"supplementaryGIDs\"",
        ),
        (
            "unknown field",
            mutate(image_base(), "/app/restartPolicy", Some(json!("always"))),
            "app.restartPolicy: unknown field, ignored",
        ),
        (
            "loose identifier",
            mutate(image_base(), "/name", Some(json!("example.com/a..b"))),
            "name: \"example.com/a..b\" has separators in a row",
        ),
        (
            "loose name",
            mutate(pod_base(), "/apps/0/name", Some(json!("web--1"))),
            "apps[0].name: \"web--1\" has \"--\"",
        ),
        (
            "short image id",
            mutate(
                image_base(),
                "/dependencies/0/imageID",
                Some(json!("sha512-...")),
            ),
            "dependencies[0].imageID: \"sha512-...\" is not a full sha512 digest",
        ),
        (
            "old version",
            mutate(image_base(), "/acVersion", Some(json!("0.7.4"))),
            "acVersion: 0.7.4 predates 0.8.0",
        ),
        (
            "new version",
            mutate(image_base(), "/acVersion", Some(json!("0.9.0"))),
            "acVersion: 0.9.0 is newer",
        ),
        (
            "pod version",
            mutate(pod_base(), "/acVersion", None),
            "acVersion: missing; read as 0.8.11",
        ),
        (
            "unknown isolator",
            mutate(
                image_base(),
                "/app/isolators/1",
                Some(json!({"name": "example.com/gpu", "value": {"count": 1}})),
            ),
            "app.isolators[1]: unknown isolator \"example.com/gpu\" ignored",
        ),
        (
            "other protocol",
            mutate(image_base(), "/app/ports/0/protocol", Some(json!("sctp"))),
            "app.ports[0].protocol: protocol is neither tcp nor udp",
        ),
    ];
    for (label, doc, expected) in cases {
        let w = warnings_of(doc);
        assert!(
            w.iter().any(|l| l.starts_with(expected)),
            "{label}: expected {expected:?} in {w:#?}"
        );
    }
    assert!(
        warnings_of(&image_base()).is_empty(),
        "base has warnings: {:?}",
        warnings_of(&image_base())
    );
}

#[test]
fn unknown_isolators_round_trip() {
    let doc = mutate(
        image_base(),
        "/app/isolators/1",
        Some(json!({"name": "example.com/gpu", "value": {"count": 1}})),
    );
    let m = ImageManifest::parse(&doc.to_string())
        .expect("accepted")
        .value;
    let out: Value = serde_json::from_str(&m.to_canonical_json()).expect("json");
    assert_eq!(
        out.pointer("/app/isolators/1"),
        doc.pointer("/app/isolators/1")
    );
}

/// Found by the fuzzer: numbers in an unknown isolator's value must survive the canonical form
/// exactly (serde_json without `float_roundtrip` read `1e-30` back as a neighbouring float).
#[test]
fn unknown_isolator_numbers_round_trip_exactly() {
    for number in ["1e-30", "6e100", "9.999999999999941e56", "0.1", "-2.5e-300"] {
        let text = format!(
            r#"{{"acKind":"PodManifest","apps":[],"isolators":[{{"name":"x/y","value":{number}}}]}}"#
        );
        let first = PodManifest::parse(&text).expect("accepted").value;
        let again = PodManifest::parse(&first.to_canonical_json())
            .expect("canonical form accepted")
            .value;
        assert_eq!(first, again, "{number} changed in the canonical form");
    }
}

#[test]
fn pod_manifest_always_writes_annotations() {
    let doc = mutate(pod_base(), "/annotations", None);
    let m = PodManifest::parse(&doc.to_string())
        .expect("accepted")
        .value;
    let out: Value = serde_json::from_str(&m.to_canonical_json()).expect("json");
    assert_eq!(out["annotations"], json!([]));
    assert_eq!(out["acVersion"], json!("0.8.11"));
    assert_eq!(out["acKind"], json!("PodManifest"));
}

// ---------------------------------------------------------------------------------------------
// Property tests for the name types.

proptest! {
    #[test]
    fn strict_identifiers_parse_and_round_trip(s in "[a-z0-9]{1,8}([-._~/][a-z0-9]{1,8}){0,6}") {
        let id = AcIdentifier::parse(&s).expect("strict grammar must parse");
        prop_assert!(id.is_strict());
        prop_assert_eq!(id.to_string(), s.clone());
        let json = serde_json::to_string(&id).expect("ser");
        prop_assert_eq!(serde_json::from_str::<AcIdentifier>(&json).expect("de"), id);
    }

    #[test]
    fn strict_names_parse(s in "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,6}") {
        let n = AcName::parse(&s).expect("strict grammar must parse");
        prop_assert!(n.is_strict());
        prop_assert!(AcIdentifier::parse(&s).is_ok(), "every AC Name is an AC Identifier");
    }

    #[test]
    fn any_string_accepted_as_name_has_only_name_characters(s in "\\PC{0,24}") {
        if let Ok(n) = AcName::parse(&s) {
            prop_assert!(n.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!n.as_str().starts_with('-') && !n.as_str().ends_with('-'));
        }
        if let Ok(id) = AcIdentifier::parse(&s) {
            prop_assert!(!id.as_str().is_empty());
            prop_assert!(id.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~/".contains(c)));
        }
    }

    #[test]
    fn sanitized_names_are_strict(s in "\\PC{0,32}") {
        if let Some(n) = AcName::sanitize(&s) {
            prop_assert!(n.is_strict(), "{n}");
            prop_assert_eq!(AcName::parse(n.as_str()).expect("reparse"), n);
        } else {
            prop_assert!(!s.chars().any(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn uuids_round_trip(bytes in any::<[u8; 16]>()) {
        prop_assume!(bytes != [0; 16]);
        let text = uuid::Uuid::from_bytes(bytes).simple().to_string().to_uppercase();
        let u = PodUuid::parse(&text).expect("parse");
        prop_assert_eq!(PodUuid::parse(&u.to_string()).expect("reparse"), u);
        prop_assert_eq!(u.as_bytes(), &bytes);
    }

    /// Found by the fuzzer: a key holding a newline made a two-line message. Whatever keys a
    /// document has, every error and warning stays one line.
    #[test]
    fn messages_stay_one_line_whatever_the_keys(key in "\\PC{0,3}[\n\r\t\u{1b}]\\PC{0,3}", bad in any::<bool>()) {
        let mut doc = mutate(pod_base(), &format!("/ports/0/{}", key.replace('~', "~0").replace('/', "~1")), Some(json!(1)));
        if bad {
            doc = mutate(doc, "/userLabels", Some(json!({key.clone(): 5})));
        }
        let lines: Vec<String> = match Manifest::parse(&doc.to_string()) {
            Ok(d) => d.warnings.iter().map(ToString::to_string).collect(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        };
        prop_assert!(!lines.is_empty());
        for l in &lines {
            prop_assert!(!l.contains('\n') && !l.contains('\r'), "{l:?}");
        }
    }

    #[test]
    fn image_ids_from_digests_are_full(digest in proptest::collection::vec(any::<u8>(), 64)) {
        let d: [u8; 64] = digest.try_into().expect("64 bytes");
        let id = ImageId::from_sha512(&d);
        prop_assert!(id.is_full());
        prop_assert_eq!(ImageId::parse(id.as_str()).expect("parse"), id);
    }
}
