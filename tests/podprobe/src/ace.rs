//! `ace MODE`: the appc ACE validator's checks (appc-requirements §5.1), in its order and with
//! its output: `<mode> OK` on stdout and exit 0, or `<mode> FAIL` and one `==> <reason>` line
//! per failed check on stderr and exit 1.
//!
//! One deliberate difference: each metadata request may take up to 5 s (mds.rs) instead of the
//! validator's 100 ms, so a loaded CI machine does not fail the run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::json::{self, J};
use crate::mds::{self, Answer};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CWD: &str = "/opt/acvalidator";
const MAIN_APP: &str = "ace-validator-main";
const DB: &str = "/db";
/// How long main and sidekick wait for each other's file in `/db` (the validator's 5 s).
const PEER_WAIT: Duration = Duration::from_secs(5);
const JSON_TYPE: &str = "application/json";
const TEXT_TYPE: &str = "text/plain; charset=us-ascii";
const SIGNED: &str = "Old MacDonald Had A Farm";
const V1: &str = "/acMetadata/v1";

/// The validator's status for a wrong argument count or an unknown mode (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

pub const MODES: [&str; 4] = ["prestart", "main", "sidekick", "poststop"];

/// Runs `mode`'s checks and reports them; the exit status.
pub fn run(mode: &str) -> u8 {
    let mut errs = Vec::new();
    match mode {
        "prestart" => prestart(&mut errs),
        "main" => main(&mut errs),
        "sidekick" => sidekick(&mut errs),
        _ => poststop(&mut errs),
    }
    if errs.is_empty() {
        println!("{mode} OK");
        0
    } else {
        let mut text = format!("{mode} FAIL\n");
        for e in &errs {
            text.push_str(&format!("==> {e}\n"));
        }
        eprint!("{text}");
        1
    }
}

type Errs = Vec<String>;

fn exists(path: &str, errs: &mut Errs) {
    if !Path::new(path).exists() {
        errs.push(format!("{path} does not exist"));
    }
}

fn absent(path: &str, errs: &mut Errs) {
    if Path::new(path).exists() {
        errs.push(format!("{path} exists already"));
    }
}

fn absent_then_create(path: &str, errs: &mut Errs) {
    if Path::new(path).exists() {
        errs.push(format!("{path} exists already"));
        return;
    }
    if let Err(e) = std::fs::write(path, b"") {
        errs.push(format!("creating {path}: {e}"));
    }
}

fn wait_for(path: &str, errs: &mut Errs) {
    let start = Instant::now();
    while !Path::new(path).exists() {
        if start.elapsed() >= PEER_WAIT {
            errs.push(format!("{path} did not appear within {PEER_WAIT:?}"));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn prestart(errs: &mut Errs) {
    absent_then_create("/prestart", errs);
    absent("/main", errs);
    absent("/poststop", errs);
}

fn poststop(errs: &mut Errs) {
    exists("/prestart", errs);
    exists("/main", errs);
    absent_then_create("/poststop", errs);
}

fn sidekick(errs: &mut Errs) {
    absent_then_create("/db/sidekick", errs);
    wait_for("/db/main", errs);
}

fn main(errs: &mut Errs) {
    exists("/prestart", errs);
    absent_then_create("/main", errs);
    absent("/poststop", errs);
    env_is("PATH", PATH, errs);
    match std::env::current_dir() {
        Ok(d) if d == Path::new(CWD) => {}
        Ok(d) => errs.push(format!("cwd is {}, expected {CWD}", d.display())),
        Err(e) => errs.push(format!("cwd: {e}")),
    }
    env_is("IN_ACE_VALIDATOR", "correct", errs);
    if let Err(e) = rw_mount_point(DB) {
        errs.push(e);
    }
    env_is("AC_APP_NAME", MAIN_APP, errs);
    if let Err(e) = metadata() {
        errs.push(e);
    }
    wait_for("/db/sidekick", errs);
    absent_then_create("/db/main", errs);
}

fn env_is(name: &str, want: &str, errs: &mut Errs) {
    match std::env::var(name) {
        Ok(v) if v == want => {}
        Ok(v) => errs.push(format!("{name} is {v:?}, expected {want:?}")),
        Err(_) => errs.push(format!("{name} is not set, expected {want:?}")),
    }
}

/// `/proc/self/mountinfo` has `path` as a mount point whose (last, visible) mount is `rw`.
fn rw_mount_point(path: &str) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let opts = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 5 && unescape(f[4]) == path).then(|| f[5].to_owned())
        })
        .next_back()
        .ok_or_else(|| format!("{path} is not a mount point"))?;
    if opts.split(',').any(|o| o == "rw") {
        Ok(())
    } else {
        Err(format!("{path} is not mounted read-write ({opts})"))
    }
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|o| {
            std::str::from_utf8(o)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request that must answer 200 with exactly `content_type`; its body.
fn fetch(path: &str, form: Option<&[&str]>, content_type: &str) -> Result<String, String> {
    let url = mds::resolve(&format!("{V1}{path}"))?;
    let body = form.map(mds::form).transpose()?;
    let method = if body.is_some() { "POST" } else { "GET" };
    let Answer {
        status,
        content_type: got,
        body,
    } = mds::request(method, &url, body.as_deref())?;
    if status != 200 {
        return Err(format!("{method} {url}: status {status}: {body:?}"));
    }
    if got.as_deref() != Some(content_type) {
        return Err(format!(
            "{method} {url}: Content-Type {got:?}, expected {content_type:?}"
        ));
    }
    Ok(body)
}

fn fetch_json(path: &str) -> Result<J, String> {
    let body = fetch(path, None, JSON_TYPE)?;
    json::parse(&body).map_err(|e| format!("{path}: not JSON: {e}: {body:?}"))
}

/// The validator's metadata checks 1–6, stopping at the first failure as it does.
fn metadata() -> Result<(), String> {
    // 1.
    if std::env::var("AC_METADATA_URL")
        .unwrap_or_default()
        .is_empty()
    {
        return Err("AC_METADATA_URL is not set".into());
    }
    // 2.
    let manifest = fetch_json("/pod/manifest")?;
    let apps = pod_manifest_apps(&manifest).map_err(|e| format!("pod manifest: {e}"))?;
    // 3.
    let uuid = fetch("/pod/uuid", None, TEXT_TYPE)?;
    check_uuid(&uuid)?;
    // 4.
    let annotations = fetch_json("/pod/annotations")?;
    let want = manifest.get("annotations").unwrap_or(&J::Null);
    if !matches!(want, J::A(_)) || annotations_of(&annotations)? != annotations_of(want)? {
        return Err(format!(
            "pod annotations mismatch: {} vs {}",
            annotations.dump(),
            want.dump()
        ));
    }
    // 5.
    for (name, id, app_annotations) in &apps {
        let image = fetch_json(&format!("/apps/{name}/image/manifest"))?;
        image_manifest(&image).map_err(|e| format!("image manifest of app {name}: {e}"))?;
        let got_id = fetch(&format!("/apps/{name}/image/id"), None, TEXT_TYPE)?;
        if &got_id != id {
            return Err(format!(
                "image id of app {name}: {got_id:?}, pod manifest says {id:?}"
            ));
        }
        let got = annotations_of(&fetch_json(&format!("/apps/{name}/annotations"))?)?;
        let mut want = annotations_of(image.get("annotations").unwrap_or(&J::Null))?;
        for (k, v) in app_annotations {
            match want.iter_mut().find(|(wk, _)| wk == k) {
                Some(slot) => slot.1.clone_from(v),
                None => want.push((k.clone(), v.clone())),
            }
        }
        if got != want {
            return Err(format!(
                "annotations of app {name}: {got:?}, expected {want:?}"
            ));
        }
    }
    // 6.
    let uuid = fetch("/pod/uuid", None, TEXT_TYPE)?;
    let content = format!("content={SIGNED}");
    let sig = fetch("/pod/hmac/sign", Some(&[&content]), TEXT_TYPE)?;
    let fields = [content, format!("uuid={uuid}"), format!("signature={sig}")];
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    fetch("/pod/hmac/verify", Some(&refs), TEXT_TYPE)?;
    Ok(())
}

type Annotations = Vec<(String, String)>;

/// An annotations array (`null`/absent = empty) as name/value pairs, in order.
fn annotations_of(j: &J) -> Result<Annotations, String> {
    match j {
        J::Null => Ok(Vec::new()),
        J::A(items) => items
            .iter()
            .map(
                |a| match (a.get("name").and_then(J::as_str), a.get("value")) {
                    (Some(n), Some(J::S(v))) => Ok((n.to_owned(), v.clone())),
                    _ => Err(format!("bad annotation {}", a.dump())),
                },
            )
            .collect(),
        _ => Err(format!("annotations are not an array: {}", j.dump())),
    }
}

/// The pod manifest's apps as (name, image id, annotations); the rules of Go's
/// `schema.PodManifest` that the validator depends on.
fn pod_manifest_apps(m: &J) -> Result<Vec<(String, String, Annotations)>, String> {
    if m.get("acKind").and_then(J::as_str) != Some("PodManifest") {
        return Err("acKind is not PodManifest".into());
    }
    let mut apps: Vec<(String, String, Annotations)> = Vec::new();
    for app in m.get("apps").and_then(J::as_array).ok_or("no apps array")? {
        let name = app.get("name").and_then(J::as_str).unwrap_or_default();
        if !ac_name(name) {
            return Err(format!("app name {name:?} is not an ACName"));
        }
        if apps.iter().any(|(n, ..)| n == name) {
            return Err(format!("app name {name:?} is not unique"));
        }
        let id = app
            .get("image")
            .and_then(|i| i.get("id"))
            .and_then(J::as_str)
            .unwrap_or_default();
        if !id.starts_with("sha512-") || id.len() <= "sha512-".len() {
            return Err(format!("app {name}: image id {id:?} is not a sha512- id"));
        }
        let ann = annotations_of(app.get("annotations").unwrap_or(&J::Null))?;
        apps.push((name.to_owned(), id.to_owned(), ann));
    }
    Ok(apps)
}

fn image_manifest(m: &J) -> Result<(), String> {
    if m.get("acKind").and_then(J::as_str) != Some("ImageManifest") {
        return Err("acKind is not ImageManifest".into());
    }
    for field in ["acVersion", "name"] {
        if m.get(field)
            .and_then(J::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(format!("{field} is missing"));
        }
    }
    Ok(())
}

fn ac_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Go's `types.NewUUID`: the dashes removed, exactly 32 hex digits (so no newline).
fn check_uuid(uuid: &str) -> Result<(), String> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("pod uuid {uuid:?} is not a UUID"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_and_uuids() {
        assert_eq!(super::unescape(r"/a\040b\\x"), r"/a b\\x");
        assert!(super::check_uuid("0f9b6b4e-3a5c-4e4d-9a5c-1d2e3f4a5b6c").is_ok());
        assert!(super::check_uuid("0f9b6b4e-3a5c-4e4d-9a5c-1d2e3f4a5b6c\n").is_err());
    }
}
