//! Tier 2: `appcctl run` arguments to the reified pod manifest (spec/pods.md P4/P5, ace.md
//! volume setup): real images imported into a temporary store, the command line parsed by
//! `cli::run_args`, composed by `pod::compose`, and the result checked field by field and
//! round-tripped through the schema decoder. Runs as root (the store keeps file ownership).

mod common;

use std::path::{Path, PathBuf};

use appc_pod::cli::run_args::parse_run_args;
use appc_pod::pod::compose::{ComposeError, Composed, NetMode, compose};
use appc_pod::schema::{App, Isolator, PodManifest, RuntimeApp, VolumeKind};
use appc_pod::store::{ImportOptions, Store, import_image};
use serde_json::{Value, json};

/// An uncompressed ACI: `manifest` plus a rootfs holding one file.
fn aci(manifest: &Value) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], dir: bool| {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        if dir {
            h.set_entry_type(tar::EntryType::Directory);
        }
        b.append_data(&mut h, path, data).expect("append");
    };
    add("manifest", manifest.to_string().as_bytes(), false);
    add("rootfs", &[], true);
    add("rootfs/hello", b"hello\n", false);
    b.into_inner().expect("tar")
}

fn image_manifest(name: &str, version: &str, app: Option<Value>) -> Value {
    let mut m = json!({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
        "labels": [{"name": "version", "value": version}, {"name": "os", "value": "linux"}]
    });
    if let Some(app) = app {
        m["app"] = app;
    }
    m
}

/// The app section of `example.com/web`: everything a flag can override.
fn web_app() -> Value {
    json!({
        "exec": ["/bin/web", "--port", "80"],
        "user": "1000", "group": "1000",
        "environment": [
            {"name": "A", "value": "image"}, {"name": "B", "value": "image"},
            {"name": "C", "value": "image"}
        ],
        "isolators": [
            {"name": "resource/memory", "value": {"limit": "1G"}},
            {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_CHOWN"]}}
        ],
        "mountPoints": [
            {"name": "data", "path": "/data"},
            {"name": "cache", "path": "/cache", "readOnly": true}
        ]
    })
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    web_id: String,
}

impl Fixture {
    /// A store holding `example.com/web:1.0`, `example.com/tools:2.0` and
    /// `example.com/noapp:1.0` (no app section).
    fn new() -> Option<Fixture> {
        if !rustix::process::geteuid().is_root() {
            common::skip("the store keeps file ownership: run as root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("open store");
        let mut f = Fixture {
            dir,
            store,
            web_id: String::new(),
        };
        f.web_id = f.import(&image_manifest("example.com/web", "1.0", Some(web_app())));
        let tools = json!({"exec": ["/bin/tool"], "user": "0", "group": "0"});
        f.import(&image_manifest("example.com/tools", "2.0", Some(tools)));
        f.import(&image_manifest("example.com/noapp", "1.0", None));
        Some(f)
    }

    fn import(&self, manifest: &Value) -> String {
        let bytes = aci(manifest);
        let outcome =
            import_image(&self.store, &bytes[..], &ImportOptions::default()).expect("import");
        outcome.id.to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn try_run(&self, line: &str, allow_unsigned: bool) -> Result<Composed, String> {
        let words = shell_words(line);
        let req = parse_run_args(&words).map_err(|e| e.to_string())?;
        compose(&req, &self.store, allow_unsigned).map_err(|e| e.to_string())
    }

    /// Parses and composes `line`, and checks the invariants every composed pod has.
    fn run(&self, line: &str) -> Composed {
        let c = self
            .try_run(line, false)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        check_reified(&c.manifest);
        c
    }

    fn fail(&self, line: &str) -> String {
        match self.try_run(line, false) {
            Ok(c) => panic!("{line}: expected an error, got {:#?}", c.manifest),
            Err(e) => e,
        }
    }
}

/// Whitespace-separated words; `'...'` keeps spaces (enough for these tests).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut quoted = false;
    let mut cur: Option<String> = None;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    words
}

/// P5 and round-trip: full image IDs, an app section, every mount point mounted, and the
/// canonical JSON parses back to the same manifest without a problem.
fn check_reified(m: &PodManifest) {
    assert_eq!(m.unresolved_apps().count(), 0);
    for app in &m.apps {
        let section = app.app.as_ref().expect("app section");
        assert!(!section.exec.is_empty());
        for mp in &section.mount_points {
            let mount = app.mounts.iter().find(|x| x.path == mp.path);
            let mount = mount.unwrap_or_else(|| panic!("{}: {} not mounted", app.name, mp.path));
            assert!(m.volume(&mount.volume).is_some());
        }
    }
    let json = m.to_canonical_json();
    let back = PodManifest::parse(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(&back.value, m);
    assert_eq!(back.value.to_canonical_json(), json);
}

fn app<'a>(c: &'a Composed, name: &str) -> &'a RuntimeApp {
    c.manifest
        .apps
        .iter()
        .find(|a| a.name.as_str() == name)
        .unwrap_or_else(|| panic!("no app {name}"))
}

fn section<'a>(c: &'a Composed, name: &str) -> &'a App {
    app(c, name).app.as_ref().expect("app section")
}

fn isolator<'a>(a: &'a App, name: &str) -> Option<&'a Isolator> {
    a.isolators.iter().find(|i| i.name() == name)
}

fn env(a: &App) -> Vec<(String, String)> {
    a.environment
        .iter()
        .map(|e| (e.name.to_string(), e.value.clone()))
        .collect()
}

#[test]
fn plain_image_keeps_its_app_and_gets_implicit_volumes() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run("example.com/web");
    let web = app(&c, "web");
    assert_eq!(
        web.image.id.as_ref().map(ToString::to_string),
        Some(f.web_id.clone())
    );
    assert_eq!(
        web.image.name.as_ref().map(|n| n.as_str()),
        Some("example.com/web")
    );
    assert_eq!(web.image.labels.get("version"), Some("1.0"));
    assert_eq!(section(&c, "web").exec, ["/bin/web", "--port", "80"]);
    assert!(!web.read_only_root_fs);
    // P5: both mount points get implicit empty volumes, each with rkt's warning.
    let names: Vec<&str> = c.manifest.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["data", "cache"]);
    for v in &c.manifest.volumes {
        assert!(
            matches!(v.kind, VolumeKind::Empty { uid: 0, gid: 0, .. }),
            "{v:?}"
        );
        assert_eq!(v.read_only, None);
    }
    assert_eq!(
        c.warnings,
        [
            "mount point data of app web has no volume; using an empty volume",
            "mount point cache of app web has no volume; using an empty volume"
        ]
    );
    assert_eq!(c.name, None);
    assert_eq!(c.options.net, NetMode::Default);
    assert_eq!(c.options.stop_timeout_ms, 10_000);
}

#[test]
fn declared_volumes_satisfy_mount_points_by_name() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run("--volume data,kind=host,source=/srv/data,readOnly=true example.com/web");
    let data = c
        .manifest
        .volumes
        .iter()
        .find(|v| v.name.as_str() == "data")
        .unwrap();
    assert!(
        matches!(&data.kind, VolumeKind::Host { source, .. } if source.as_str() == "/srv/data")
    );
    assert_eq!(data.read_only, Some(true));
    let mounts: Vec<(&str, &str)> = app(&c, "web")
        .mounts
        .iter()
        .map(|m| (m.volume.as_str(), m.path.as_str()))
        .collect();
    assert_eq!(mounts, [("data", "/data"), ("cache", "/cache")]);
    assert_eq!(
        c.warnings,
        ["mount point cache of app web has no volume; using an empty volume"]
    );
}

#[test]
fn mounts_pod_level_app_level_and_unknown_volumes() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run(
        "--volume v,kind=empty --volume w,kind=empty --mount volume=v,target=/cache \
         example.com/web --mount volume=w,target=/data --- example.com/tools",
    );
    let web: Vec<(&str, &str)> = app(&c, "web")
        .mounts
        .iter()
        .map(|m| (m.volume.as_str(), m.path.as_str()))
        .collect();
    assert_eq!(web, [("v", "/cache"), ("w", "/data")]);
    let tools: Vec<&str> = app(&c, "tools")
        .mounts
        .iter()
        .map(|m| m.path.as_str())
        .collect();
    assert_eq!(tools, ["/cache"], "a pod-level --mount goes to every app");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.manifest.volumes.len(), 2, "no implicit volume was needed");

    let e = f.fail("example.com/web --mount volume=nope,target=/x");
    assert!(e.contains("no volume named \"nope\""), "{e}");
    assert!(e.contains("--volume nope,kind=empty"), "{e}");
    let e = f.fail("--mount volume=nope,target=/x example.com/tools");
    assert!(
        e.contains("app tools: --mount volume=nope,target=/x"),
        "{e}"
    );
}

#[test]
fn environment_precedence_image_set_env_environment() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run(
        "--set-env B=pod --set-env C=pod --set-env D=pod example.com/web --environment C=app \
         --- example.com/tools",
    );
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        env(section(&c, "web")),
        want(&[("A", "image"), ("B", "pod"), ("C", "app"), ("D", "pod")])
    );
    assert_eq!(
        env(section(&c, "tools")),
        want(&[("B", "pod"), ("C", "pod"), ("D", "pod")])
    );
}

#[test]
fn isolator_flags_replace_image_isolators() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run(
        "example.com/web --memory 128M --cpu 500m --cpu-shares 512 --caps-retain CAP_KILL \
         --seccomp mode=retain,errno=EPERM,read,write --oom-score-adj -100",
    );
    let web = section(&c, "web");
    let names: Vec<&str> = web.isolators.iter().map(Isolator::name).collect();
    assert_eq!(
        names,
        [
            "resource/memory",
            "resource/cpu",
            "os/linux/cpu-shares",
            "os/linux/capabilities-retain-set",
            "os/linux/seccomp-retain-set",
            "os/linux/oom-score-adj"
        ],
        "the image's 1G memory limit and its remove-set are replaced"
    );
    let Some(Isolator::Memory(m)) = isolator(web, "resource/memory") else {
        panic!()
    };
    assert_eq!(m.limit().and_then(|q| q.to_bytes()), Some(128_000_000));
    let Some(Isolator::Cpu(cpu)) = isolator(web, "resource/cpu") else {
        panic!()
    };
    assert_eq!(cpu.limit().and_then(|q| q.to_milli()), Some(500));
    let Some(Isolator::CapabilitiesRetainSet(caps)) =
        isolator(web, "os/linux/capabilities-retain-set")
    else {
        panic!()
    };
    assert_eq!(caps.as_slice().len(), 1);
    let Some(Isolator::SeccompRetainSet(s)) = isolator(web, "os/linux/seccomp-retain-set") else {
        panic!()
    };
    assert_eq!(s.set().len(), 2);
    // Without flags the image's isolators stay.
    let plain = f.run("example.com/web");
    let names: Vec<&str> = section(&plain, "web")
        .isolators
        .iter()
        .map(Isolator::name)
        .collect();
    assert_eq!(
        names,
        ["resource/memory", "os/linux/capabilities-remove-set"]
    );
}

#[test]
fn exec_user_group_and_rootfs_overrides() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run(
        "example.com/web --exec /bin/other --user 0 --group 10 --supplementary-gids 4,5 \
         --working-dir /srv --readonly-rootfs -- -x 'a b'",
    );
    let web = section(&c, "web");
    assert_eq!(web.exec, ["/bin/other", "-x", "a b"]);
    assert_eq!(web.user.as_str(), "0");
    assert_eq!(web.group.as_str(), "10");
    assert_eq!(web.supplementary_gids, [4, 5]);
    assert_eq!(
        web.working_directory.as_ref().map(|p| p.as_str()),
        Some("/srv")
    );
    assert!(app(&c, "web").read_only_root_fs);

    let only_exec = f.run("example.com/web --exec /bin/other");
    assert_eq!(
        section(&only_exec, "web").exec,
        ["/bin/other", "--port", "80"]
    );
    let only_args = f.run("example.com/web -- --port 8080");
    assert_eq!(
        section(&only_args, "web").exec,
        ["/bin/web", "--port", "8080"]
    );
    let no_args = f.run("example.com/web --");
    assert_eq!(section(&no_args, "web").exec, ["/bin/web"]);
}

#[test]
fn image_without_app_section_needs_exec() {
    let Some(f) = Fixture::new() else { return };
    let e = f.fail("example.com/noapp");
    assert_eq!(
        e,
        "app noapp: image example.com/noapp has no app section; give --exec to say what to run"
    );
    let c = f.run("example.com/noapp --exec /hello -- world");
    let a = section(&c, "noapp");
    assert_eq!(a.exec, ["/hello", "world"]);
    assert_eq!((a.user.as_str(), a.group.as_str()), ("0", "0"));
}

#[test]
fn app_names_are_derived_and_made_unique() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run("example.com/web example.com/web --- example.com/web --name web");
    let names: Vec<&str> = c.manifest.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["web-2", "web-3", "web"],
        "an explicit name is reserved first"
    );
    let c = f.run("--name mypod example.com/tools --name t1 example.com/tools");
    let names: Vec<&str> = c.manifest.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["t1", "tools"]);
    assert_eq!(c.name.as_ref().map(|n| n.as_str()), Some("mypod"));
    let e = f.fail("example.com/web --name x example.com/tools --name x");
    assert_eq!(
        e,
        "two apps are named \"x\"; give one of them another --name"
    );
}

#[test]
fn images_by_id_prefix_and_labels() {
    let Some(f) = Fixture::new() else { return };
    let prefix = &f.web_id[..20];
    let c = f.run(prefix);
    assert_eq!(
        app(&c, "web").image.id.as_ref().map(ToString::to_string),
        Some(f.web_id.clone())
    );
    f.run("example.com/web:1.0,os=linux");
    let e = f.fail("example.com/web:2.0");
    assert!(
        e.contains("\"example.com/web:2.0\" is not in the store"),
        "{e}"
    );
    assert!(e.contains("appcctl fetch"), "{e}");
    let e = f.fail("example.com/nothing");
    assert!(e.contains("is not in the store"), "{e}");
    let e = f.fail("sha512-0000");
    assert!(e.contains("\"sha512-0000\" is not in the store"), "{e}");
    let e = f.fail("Example.com/Web");
    assert!(e.contains("is not an AC Identifier"), "{e}");
    let e = f.fail("https://example.com/web.aci");
    assert!(e.contains("is not in the store"), "{e}");
}

#[test]
fn local_aci_needs_insecure_options_image() {
    let Some(f) = Fixture::new() else { return };
    let file = f.path("local.aci");
    let tools = json!({"exec": ["/bin/local"], "user": "0", "group": "0"});
    std::fs::write(
        &file,
        aci(&image_manifest("example.com/local", "0.1", Some(tools))),
    )
    .expect("write aci");
    let line = format!("{} --name loc", file.display());
    let e = f.try_run(&line, false).unwrap_err();
    assert!(e.contains("image is not signed"), "{e}");
    assert!(e.contains("--insecure-options=image"), "{e}");
    assert!(
        f.fail("example.com/local").contains("is not in the store"),
        "refused, not imported"
    );

    let c = f
        .try_run(&line, true)
        .expect("imported with --insecure-options=image");
    check_reified(&c.manifest);
    assert_eq!(section(&c, "loc").exec, ["/bin/local"]);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("signature not verified")),
        "{:?}",
        c.warnings
    );
    // Now in the store, by name, and also as a file:// URL.
    f.run("example.com/local");
    let url = format!("file://{}", file.display());
    assert!(f.try_run(&url, true).is_ok());
    let e = f
        .try_run(&f.path("missing.aci").display().to_string(), true)
        .unwrap_err();
    assert!(e.starts_with("cannot open "), "{e}");
}

#[test]
fn pod_options_come_from_pod_flags() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run(
        "--hostname box --interactive --net host --no-overlay --stop-timeout 1m \
         --uuid-file-save /tmp/u example.com/tools",
    );
    assert_eq!(c.options.hostname.as_deref(), Some("box"));
    assert!(c.options.interactive && c.options.no_overlay);
    assert_eq!(c.options.net, NetMode::Host);
    assert_eq!(c.options.stop_timeout_ms, 60_000);
}

fn write_pod(f: &Fixture, name: &str, json: &Value) -> PathBuf {
    let path = f.path(name);
    std::fs::write(&path, json.to_string()).expect("write pod manifest");
    path
}

#[test]
fn pod_manifest_file_is_resolved_and_reified() {
    let Some(f) = Fixture::new() else { return };
    let pod = json!({
        "acKind": "PodManifest", "acVersion": "0.8.11",
        "apps": [
            {"name": "front", "image": {"name": "example.com/web",
                                        "labels": [{"name": "version", "value": "1.0"}]},
             "mounts": [{"volume": "shared", "path": "/data"}]},
            {"name": "side", "image": {"name": "example.com/tools"},
             "app": {"exec": ["/bin/side"], "user": "5", "group": "5"}}
        ],
        "volumes": [{"name": "shared", "kind": "empty"}]
    });
    let path = write_pod(&f, "pod.json", &pod);
    let c = f.run(&format!(
        "--name p --net host --pod-manifest {}",
        path.display()
    ));
    let front = app(&c, "front");
    assert_eq!(
        front.image.id.as_ref().map(ToString::to_string),
        Some(f.web_id.clone())
    );
    assert_eq!(
        section(&c, "front").exec,
        ["/bin/web", "--port", "80"],
        "filled from the image"
    );
    assert_eq!(
        section(&c, "side").exec,
        ["/bin/side"],
        "the manifest's app section is kept"
    );
    let mounts: Vec<(&str, &str)> = front
        .mounts
        .iter()
        .map(|m| (m.volume.as_str(), m.path.as_str()))
        .collect();
    assert_eq!(mounts, [("shared", "/data"), ("cache", "/cache")]);
    assert_eq!(
        c.warnings,
        ["mount point cache of app front has no volume; using an empty volume"]
    );
    assert_eq!(c.options.net, NetMode::Host);
    assert_eq!(c.name.as_ref().map(|n| n.as_str()), Some("p"));
}

#[test]
fn pod_manifest_errors() {
    let Some(f) = Fixture::new() else { return };
    let missing = f.path("absent.json");
    let e = f.fail(&format!("--pod-manifest {}", missing.display()));
    assert!(e.starts_with("cannot read pod manifest"), "{e}");

    let bad = write_pod(
        &f,
        "bad.json",
        &json!({"acKind": "PodManifest", "apps": [{"name": "A"}]}),
    );
    let e = f.fail(&format!("--pod-manifest {}", bad.display()));
    assert!(
        e.contains("bad.json: apps[0].name: \"A\" is not an AC Name"),
        "{e}"
    );
    assert!(
        e.contains("bad.json: apps[0].image: required field is missing"),
        "{e}"
    );

    let unknown = write_pod(
        &f,
        "unknown.json",
        &json!({"acKind": "PodManifest", "acVersion": "0.8.11",
                "apps": [{"name": "x", "image": {"name": "example.com/web",
                          "labels": [{"name": "version", "value": "9"}]}}]}),
    );
    let e = f.fail(&format!("--pod-manifest {}", unknown.display()));
    assert!(
        e.contains("\"example.com/web:9\" is not in the store"),
        "{e}"
    );

    let mismatch = write_pod(
        &f,
        "mismatch.json",
        &json!({"acKind": "PodManifest", "acVersion": "0.8.11",
                "apps": [{"name": "x", "image": {"name": "example.com/tools", "id": f.web_id}}]}),
    );
    let e = f.fail(&format!("--pod-manifest {}", mismatch.display()));
    assert!(
        e.contains("asks for image example.com/tools but its id is image example.com/web"),
        "{e}"
    );

    let noapp = write_pod(
        &f,
        "noapp.json",
        &json!({"acKind": "PodManifest", "acVersion": "0.8.11",
                "apps": [{"name": "x", "image": {"name": "example.com/noapp"}}]}),
    );
    let e = f.fail(&format!("--pod-manifest {}", noapp.display()));
    assert!(e.contains("has no app section"), "{e}");

    let e = f.fail(&format!(
        "--pod-manifest {} example.com/web",
        noapp.display()
    ));
    assert!(e.contains("--pod-manifest brings its own apps"), "{e}");
}

/// A request built by hand (not by the parser) still gets the `--pod-manifest` exclusions.
#[test]
fn pod_manifest_with_flags_built_by_hand_is_refused() {
    let Some(f) = Fixture::new() else { return };
    let mut req = parse_run_args(&shell_words("example.com/web")).unwrap();
    req.pod.pod_manifest = Some(Path::new("/nonexistent").to_owned());
    let e = compose(&req, &f.store, false).unwrap_err();
    assert!(matches!(e, ComposeError::NotWithPodManifest(_)), "{e}");
    req.apps.clear();
    req.pod.pod_manifest = None;
    assert!(matches!(
        compose(&req, &f.store, false),
        Err(ComposeError::NoApps)
    ));
}
