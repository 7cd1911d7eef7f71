//! Support for `tests/store_reliability.rs`: building test ACIs, driving `appcctl` against one
//! store directory, and inspecting the store's on-disk state (`src/store/mod.rs` has the layout).
#![allow(dead_code)] // not every helper is used by every test

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256, Sha512};

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-randomness

/// SplitMix64: tiny, deterministic, good enough to spread delays and contents.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// 4 MiB of incompressible bytes that file contents are cut from.
fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = Rng::new(0x0051_ab1e_c0de);
        let mut v = Vec::with_capacity(4 << 20);
        while v.len() < 4 << 20 {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v
    })
}

/// A file content unique to `(tag, i)`, `len` bytes long (at least the unique prefix).
pub fn file_content(tag: &str, i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}:{i}\n").into_bytes();
    let want = len.max(v.len());
    let rest = want - v.len();
    let pool = pool();
    let mut h = Rng::new(tag.bytes().fold(i as u64, |a, b| {
        a.wrapping_mul(131).wrapping_add(u64::from(b))
    }));
    let off = h.below((pool.len() - rest) as u64) as usize;
    v.extend_from_slice(&pool[off..off + rest]);
    v
}

// ---------------------------------------------------------------------------------------------
// Test images

pub const MTIME: u64 = 1_600_000_000;

#[derive(Debug, Clone)]
pub enum Kind {
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to an earlier file (a path under `rootfs/`).
    HardLink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Path under `rootfs/`.
    pub path: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    pub entries: Vec<Entry>,
}

impl ImageSpec {
    /// `nfiles` files (about `total` bytes together) in 20 directories, contents unique to `tag`.
    pub fn big(name: &str, tag: &str, nfiles: usize, total: usize) -> ImageSpec {
        let mut rng = Rng::new(0xb16_1a6e);
        let avg = total / nfiles.max(1);
        let entries = (0..nfiles)
            .map(|i| {
                let len = avg / 2 + rng.below(avg as u64) as usize;
                Entry {
                    path: format!("d{:02}/f{i:05}", i % 20),
                    kind: Kind::File(file_content(tag, i, len)),
                }
            })
            .collect();
        ImageSpec {
            name: name.into(),
            entries,
        }
    }

    /// A copy named `name` whose files number `0, step, 2*step, …` get new contents unique to
    /// `tag`; every other file is shared with `self` (same path, content and metadata).
    pub fn variant(&self, name: &str, tag: &str, step: usize) -> ImageSpec {
        let mut v = self.clone();
        v.name = name.into();
        for (i, e) in v.entries.iter_mut().enumerate() {
            if i % step == 0
                && let Kind::File(c) = &e.kind
            {
                e.kind = Kind::File(file_content(tag, i, c.len()));
            }
        }
        v
    }

    pub fn manifest(&self) -> String {
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{}","labels":[{{"name":"os","value":"linux"}}]}}"#,
            self.name
        )
    }

    /// The regular files' contents (not the manifest).
    pub fn file_contents(&self) -> Vec<&[u8]> {
        self.entries
            .iter()
            .filter_map(|e| match &e.kind {
                Kind::File(c) => Some(c.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// The uncompressed ACI, as the `tar` crate writes it (GNU headers, two zero blocks at the
    /// end, no record padding).
    pub fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            h.set_size(size);
            h
        };
        let manifest = self.manifest();
        let mut h = header(tar::EntryType::Regular, 0o644, manifest.len() as u64);
        b.append_data(&mut h, "manifest", manifest.as_bytes())
            .expect("tar manifest");
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, "rootfs/", std::io::empty())
            .expect("tar rootfs");
        let mut dirs = BTreeSet::new();
        for e in &self.entries {
            let mut parent = String::new();
            let parts: Vec<&str> = e.path.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                parent.push_str(p);
                parent.push('/');
                if dirs.insert(parent.clone()) {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    b.append_data(&mut h, format!("rootfs/{parent}"), std::io::empty())
                        .expect("tar dir");
                }
            }
            let path = format!("rootfs/{}", e.path);
            match &e.kind {
                Kind::File(c) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, c.len() as u64);
                    b.append_data(&mut h, &path, c.as_slice())
                        .expect("tar file");
                }
                Kind::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    b.append_link(&mut h, &path, target).expect("tar symlink");
                }
                Kind::HardLink(target) => {
                    let mut h = header(tar::EntryType::Link, 0o644, 0);
                    b.append_link(&mut h, &path, format!("rootfs/{target}"))
                        .expect("tar hard link");
                }
            }
        }
        b.into_inner().expect("tar finish")
    }
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The image ID of an uncompressed ACI: `sha512-` and the hex SHA-512 of the tar.
pub fn image_id(tar: &[u8]) -> String {
    format!("sha512-{}", hex(&Sha512::digest(tar)))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The digest part of an ID (the directory name under `images/`).
pub fn digest_hex(id: &str) -> &str {
    id.strip_prefix("sha512-").expect("an image ID")
}

// ---------------------------------------------------------------------------------------------
// Driving appcctl

pub fn appcctl(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_appcctl"));
    c.arg("--dir")
        .arg(store)
        .arg("--insecure-options=image")
        .stdin(Stdio::null());
    c
}

pub fn run(store: &Path, args: &[&str]) -> Output {
    appcctl(store).args(args).output().expect("run appcctl")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A one-line account of a finished command, for assertion messages.
pub fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

pub fn spawn_fetch(store: &Path, aci: &Path) -> Child {
    appcctl(store)
        .arg("fetch")
        .arg(aci)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn appcctl fetch")
}

pub fn fetch(store: &Path, aci: &Path) -> Output {
    appcctl(store)
        .arg("fetch")
        .arg(aci)
        .output()
        .expect("run appcctl fetch")
}

/// One listed image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub size: u64,
}

/// `image list --format json`, parsed. `Err` carries the command's account.
pub fn try_list(store: &Path) -> Result<Vec<Listed>, String> {
    let out = run(store, &["image", "list", "--format", "json"]);
    if !out.status.success() {
        return Err(show("image list", &out));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("image list printed no JSON ({e}): {}", text(&out.stdout)))?;
    let arr = v.as_array().ok_or("image list: not a JSON array")?;
    let mut listed = Vec::new();
    for img in arr {
        listed.push(Listed {
            id: img["id"].as_str().ok_or("image list: no id")?.to_owned(),
            name: img["name"]
                .as_str()
                .ok_or("image list: no name")?
                .to_owned(),
            size: img["size"].as_u64().ok_or("image list: no size")?,
        });
    }
    listed.sort();
    Ok(listed)
}

pub fn list(store: &Path) -> Vec<Listed> {
    try_list(store).unwrap_or_else(|e| panic!("{e}\n{}", dump(store)))
}

pub fn list_ids(store: &Path) -> BTreeSet<String> {
    list(store).into_iter().map(|l| l.id).collect()
}

// ---------------------------------------------------------------------------------------------
// Inspecting the store on disk

/// Entries of `dir` whose names start with `prefix` (and are directories, if `dirs_only`).
pub fn entries_named(dir: &Path, prefix: &str, dirs_only: bool) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| !dirs_only || e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Every blob in `cas/`: (path, link count, size).
pub fn cas_blobs(store: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut blobs = Vec::new();
    let Ok(fans) = std::fs::read_dir(store.join("cas")) else {
        return blobs;
    };
    for fan in fans.filter_map(Result::ok) {
        let Ok(rd) = std::fs::read_dir(fan.path()) else {
            continue;
        };
        for blob in rd.filter_map(Result::ok) {
            if let Ok(m) = std::fs::symlink_metadata(blob.path()) {
                blobs.push((blob.path(), m.nlink(), m.len()));
            }
        }
    }
    blobs.sort();
    blobs
}

/// Every regular file below `dir`, recursively: (path, metadata).
pub fn regular_files(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.push((e.path(), m));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An `ls -laR`-like account of the store for failure messages; image trees and the CAS are
/// summarized (they hold thousands of files).
pub fn dump(store: &Path) -> String {
    let mut s = format!("=== store {} ===\n", store.display());
    let mut lines = 0;
    walk_dump(store, store, &mut s, &mut lines);
    let blobs = cas_blobs(store);
    let single = blobs.iter().filter(|b| b.1 == 1).count();
    let _ = writeln!(
        s,
        "cas: {} blobs, {} with link count 1, {} bytes",
        blobs.len(),
        single,
        blobs.iter().map(|b| b.2).sum::<u64>()
    );
    s
}

fn walk_dump(root: &Path, dir: &Path, s: &mut String, lines: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if *lines > 400 {
            s.push_str("… (cut)\n");
            return;
        }
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let summarize = m.is_dir() && (name == "tree" || rel == "cas");
        let _ = writeln!(
            s,
            "{:o} {:>3} {:>10} {rel}{}",
            m.mode(),
            m.nlink(),
            m.len(),
            if m.is_dir() { "/" } else { "" }
        );
        *lines += 1;
        if summarize {
            let n = regular_files(&path).len();
            let _ = writeln!(s, "    ({n} regular files below)");
        } else if m.is_dir() {
            walk_dump(root, &path, s, lines);
        }
    }
}

/// Asserts the state a `gc` leaves: no staging or trash directory in `tmp/`, no directory in
/// `images/` without an index row, no CAS blob that no tree uses.
pub fn assert_collected(store: &Path, ctx: &str) {
    let tmp = store.join("tmp");
    let staging = entries_named(&tmp, "import-", true);
    let trash = entries_named(&tmp, "trash-", true);
    assert!(
        staging.is_empty() && trash.is_empty(),
        "{ctx}: gc left staging {staging:?} / trash {trash:?}\n{}",
        dump(store)
    );
    let listed: BTreeSet<String> = list_ids(store)
        .iter()
        .map(|id| digest_hex(id).to_owned())
        .collect();
    let on_disk: BTreeSet<String> = entries_named(&store.join("images"), "", false)
        .into_iter()
        .collect();
    assert_eq!(
        on_disk,
        listed,
        "{ctx}: images/ must hold exactly the listed images\n{}",
        dump(store)
    );
    let single: Vec<_> = cas_blobs(store)
        .into_iter()
        .filter(|b| b.1 == 1)
        .map(|b| b.0)
        .collect();
    assert!(
        single.is_empty(),
        "{ctx}: gc left {} unused CAS blobs, e.g. {:?}\n{}",
        single.len(),
        single.first(),
        dump(store)
    );
}

pub fn assert_ok(out: &Output, what: &str, store: &Path) {
    assert!(out.status.success(), "{}\n{}", show(what, out), dump(store));
}

pub fn verify_ok(store: &Path, ctx: &str) {
    let out = run(store, &["image", "verify"]);
    assert!(
        out.status.success(),
        "{ctx}: image verify failed\n{}\n{}",
        show("image verify", &out),
        dump(store)
    );
}

pub fn gc(store: &Path, grace: &str) -> Output {
    run(store, &["image", "gc", "--grace-period", grace])
}

/// A scratch directory for a test's store and archives, removed when dropped: on tmpfs
/// (`/dev/shm`) when there is one, else in the system temp directory; `APPC_RELIABILITY_TMPDIR`
/// chooses another place. Every step of an import before its index row is about what a *killed
/// process* leaves (the page cache survives `kill -9`), so tmpfs tests the same thing, without
/// every import's `syncfs` waiting for whatever else the machine has written.
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("APPC_RELIABILITY_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("appc-reliability-");
        b
    };
    base.and_then(|b| builder().tempdir_in(b).ok())
        .unwrap_or_else(|| builder().tempdir().expect("tempdir"))
}

/// True when the test runs as root (the importer chowns files); otherwise the test is skipped.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
