//! Tier 2/3: the image store through the real `appcctl` — import, list, resolve, export,
//! dedup, rm, gc, and rendering with dependencies (spec F3–F6, pathWhitelist). Runs as root (the
//! store preserves ownership); skips out loud otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use sha2::{Digest, Sha512};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Builds an uncompressed ACI with the given manifest and rootfs entries.
fn aci(manifest: &Value, entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let text = manifest.to_string();
    let mut h = header();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "manifest", text.as_bytes())
        .expect("manifest");
    let mut d = header();
    d.set_entry_type(tar::EntryType::Directory);
    d.set_mode(0o755);
    d.set_mtime(1_600_000_000);
    d.set_size(0);
    b.append_data(&mut d.clone(), "rootfs", &[][..])
        .expect("rootfs");
    for e in entries {
        match e {
            E::Dir(p) => b
                .append_data(&mut d.clone(), format!("rootfs/{p}"), &[][..])
                .expect("dir"),
            E::File(p, content) => {
                let mut f = header();
                f.set_size(content.len() as u64);
                f.set_mode(0o644);
                f.set_mtime(1_600_000_000);
                b.append_data(&mut f, format!("rootfs/{p}"), *content)
                    .expect("file");
            }
            E::Link(p, target) => {
                let mut l = header();
                l.set_entry_type(tar::EntryType::Symlink);
                l.set_mode(0o777);
                l.set_size(0);
                l.set_mtime(1_600_000_000);
                b.append_link(&mut l, format!("rootfs/{p}"), target)
                    .expect("link");
            }
        }
    }
    b.into_inner().expect("tar")
}

fn manifest(name: &str, deps: &[&str], whitelist: &[&str]) -> Value {
    let mut m = json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
                       "labels": [{"name": "version", "value": "1.0"}]});
    if !deps.is_empty() {
        m["dependencies"] = deps.iter().map(|d| json!({"imageName": d})).collect();
    }
    if !whitelist.is_empty() {
        m["pathWhitelist"] = json!(whitelist);
    }
    m
}

fn id_of(tar: &[u8]) -> String {
    let d = Sha512::digest(tar);
    format!(
        "sha512-{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Option<Store> {
        if !rustix::process::geteuid().is_root() {
            common::skip("the store keeps file ownership: run as root");
            return None;
        }
        Some(Store {
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_appcctl"))
            .arg("--dir")
            .arg(self.path().join("store"))
            .args(args)
            .output()
            .expect("run appcctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "appcctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn fetch(&self, name: &str, tar: &[u8]) -> String {
        let file = self.path().join(format!("{name}.aci"));
        std::fs::write(&file, tar).expect("write aci");
        let id = self.ok(&[
            "--insecure-options=image",
            "fetch",
            file.to_str().expect("path"),
        ]);
        assert_eq!(id.trim(), id_of(tar));
        id.trim().to_owned()
    }

    fn store_bytes(&self) -> u64 {
        du(&self.path().join("store"))
    }
}

/// Disk usage counting each inode once (hard links are the point of the CAS).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert(m.ino()) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            stack.extend(
                std::fs::read_dir(&p)
                    .expect("read_dir")
                    .map(|e| e.expect("entry").path()),
            );
        }
    }
    total
}

#[test]
fn import_list_resolve_export_verify() {
    let Some(s) = Store::new() else { return };
    let tar = aci(
        &manifest("example.com/app", &[], &[]),
        &[E::Dir("bin"), E::File("bin/app", b"#!/bin/sh\n")],
    );
    let id = s.fetch("app", &tar);
    let list: Value =
        serde_json::from_str(&s.ok(&["image", "list", "--format", "json"])).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["name"], json!("example.com/app"));
    assert_eq!(list[0]["size"], json!(tar.len()));
    let bare = s.ok(&["image", "list", "--no-legend"]);
    assert_eq!(bare.lines().count(), 1, "{bare}");
    assert!(bare.starts_with(&id[..39]), "{bare}");
    let table = s.ok(&["image", "list"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("example.com/app") && l.contains("1.0")),
        "{table}"
    );
    // Every way of naming it resolves to it.
    for query in [
        id.as_str(),
        &id[..9],
        "example.com/app",
        "example.com/app:1.0",
    ] {
        let m = s.ok(&["image", "cat-manifest", query]);
        assert!(m.contains("\"example.com/app\""), "{query}: {m}");
    }
    let out = s.cmd(&["image", "cat-manifest", "example.com/app:2.0"]);
    assert_eq!(out.status.code(), Some(254));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let exported = s.path().join("out.aci");
    s.ok(&["image", "export", &id, exported.to_str().expect("path")]);
    assert_eq!(
        std::fs::read(&exported).expect("read"),
        tar,
        "export is byte-exact"
    );
    assert!(
        s.cmd(&["image", "export", &id, exported.to_str().expect("path")])
            .status
            .code()
            == Some(254)
    );
    assert!(s.ok(&["image", "verify"]).contains(": ok"));
}

#[test]
fn ambiguous_prefixes_and_short_ones_are_refused() {
    let Some(s) = Store::new() else { return };
    let a = s.fetch("a", &aci(&manifest("example.com/a", &[], &[]), &[]));
    let out = s.cmd(&["image", "cat-manifest", "sha512-"]);
    assert_eq!(
        out.status.code(),
        Some(254),
        "an empty prefix must not match everything"
    );
    let out = s.cmd(&["image", "cat-manifest", &a[..8]]);
    assert_eq!(out.status.code(), Some(254), "one hex digit is too short");
}

#[test]
fn shared_files_are_stored_once() {
    let Some(s) = Store::new() else { return };
    let big: Vec<Vec<u8>> = (0..9).map(|i| vec![i as u8 + 1; 256 * 1024]).collect();
    let files = |extra: &'static [u8]| {
        let mut v: Vec<E<'_>> = big
            .iter()
            .enumerate()
            .map(|(i, c)| E::File(["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"][i], c))
            .collect();
        v.push(E::File("own", extra));
        v
    };
    let base = s.store_bytes();
    let own_a = vec![0xaa; 256 * 1024];
    let own_b = vec![0xbb; 256 * 1024];
    let a: &'static [u8] = Box::leak(own_a.into_boxed_slice());
    let b: &'static [u8] = Box::leak(own_b.into_boxed_slice());
    s.fetch("a", &aci(&manifest("example.com/a", &[], &[]), &files(a)));
    let after_a = s.store_bytes();
    s.fetch("b", &aci(&manifest("example.com/b", &[], &[]), &files(b)));
    let after_b = s.store_bytes();
    let first = after_a.saturating_sub(base) as f64;
    let second = after_b.saturating_sub(after_a) as f64;
    eprintln!(
        "store growth: first {first} bytes, second {second} bytes ({:.3}x)",
        second / first
    );
    assert!(
        second <= 0.15 * first,
        "second image grew the store by {second} vs {first}"
    );
}

#[test]
fn rm_and_gc() {
    let Some(s) = Store::new() else { return };
    let id = s.fetch(
        "a",
        &aci(
            &manifest("example.com/a", &[], &[]),
            &[E::File("x", b"unique content")],
        ),
    );
    s.ok(&["image", "rm", "example.com/a"]);
    assert_eq!(s.ok(&["image", "list", "--format", "json"]).trim(), "[]");
    let store = s.path().join("store");
    assert!(!store.join("images").join(&id[7..]).exists());
    let blobs = walk_files(&store.join("cas"));
    assert!(blobs.is_empty(), "blobs left after rm: {blobs:?}");
    s.fetch(
        "a",
        &aci(
            &manifest("example.com/a", &[], &[]),
            &[E::File("x", b"unique content")],
        ),
    );
    s.ok(&["image", "gc", "--grace-period", "24h"]);
    assert_eq!(
        serde_json::from_str::<Value>(&s.ok(&["image", "list", "--format", "json"]))
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.ok(&["image", "gc", "--grace-period", "0s"]);
    assert_eq!(s.ok(&["image", "list", "--format", "json"]).trim(), "[]");
    assert!(walk_files(&store.join("cas")).is_empty());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p))
        } else {
            out.push(p)
        }
    }
    out
}

/// A→[B,C], C→[D] renders B, D, C, A: each later layer wins (spec F3, F6).
#[test]
fn render_orders_dependencies_depth_first() {
    let Some(s) = Store::new() else { return };
    s.fetch(
        "d",
        &aci(
            &manifest("example.com/d", &[], &[]),
            &[
                E::File("x", b"D"),
                E::File("y", b"D"),
                E::File("only-d", b"D"),
            ],
        ),
    );
    s.fetch(
        "b",
        &aci(
            &manifest("example.com/b", &[], &[]),
            &[E::File("x", b"B"), E::File("z", b"B")],
        ),
    );
    s.fetch(
        "c",
        &aci(
            &manifest("example.com/c", &["example.com/d"], &[]),
            &[E::File("y", b"C"), E::File("z", b"C"), E::File("w", b"C")],
        ),
    );
    s.fetch(
        "a",
        &aci(
            &manifest("example.com/a", &["example.com/b", "example.com/c"], &[]),
            &[E::File("w", b"A")],
        ),
    );
    let out = s.path().join("render");
    s.ok(&[
        "image",
        "render",
        "example.com/a",
        out.to_str().expect("path"),
    ]);
    let read = |p: &str| {
        std::fs::read_to_string(out.join("rootfs").join(p)).unwrap_or_else(|e| format!("<{e}>"))
    };
    assert_eq!(read("x"), "D", "D comes after B");
    assert_eq!(read("y"), "C", "C comes after D");
    assert_eq!(read("z"), "C", "C comes after B");
    assert_eq!(read("w"), "A", "the image itself comes last");
    assert_eq!(read("only-d"), "D");
    assert!(out.join("manifest").is_file());
    // extract is the image alone.
    let ex = s.path().join("extract");
    s.ok(&[
        "image",
        "extract",
        "--rootfs-only",
        "example.com/a",
        ex.to_str().expect("path"),
    ]);
    assert!(ex.join("w").is_file() && !ex.join("x").exists());
}

#[test]
fn render_applies_path_whitelists_of_the_image_and_its_dependents() {
    let Some(s) = Store::new() else { return };
    s.fetch(
        "base",
        &aci(
            &manifest("example.com/base", &[], &[]),
            &[
                E::Dir("usr"),
                E::Dir("usr/bin"),
                E::File("usr/bin/keep", b"k"),
                E::File("usr/bin/drop", b"d"),
                E::Dir("etc"),
                E::File("etc/conf", b"c"),
            ],
        ),
    );
    s.fetch(
        "top",
        &aci(
            &manifest(
                "example.com/top",
                &["example.com/base"],
                &["/usr/bin/keep", "/app"],
            ),
            &[E::File("app", b"a"), E::File("junk", b"j")],
        ),
    );
    let out = s.path().join("r");
    s.ok(&[
        "image",
        "render",
        "--rootfs-only",
        "example.com/top",
        out.to_str().expect("path"),
    ]);
    assert!(out.join("usr/bin/keep").is_file());
    assert!(out.join("app").is_file());
    assert!(
        !out.join("usr/bin/drop").exists(),
        "filtered by the dependent's whitelist"
    );
    assert!(
        !out.join("etc").exists(),
        "a directory with nothing whitelisted goes too"
    );
    assert!(
        !out.join("junk").exists(),
        "filtered by the image's own whitelist"
    );
}

/// A symlink from a lower layer is replaced by an upper layer's directory, never followed (F5).
#[test]
fn render_replaces_symlinks_instead_of_following_them() {
    let Some(s) = Store::new() else { return };
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().to_str().expect("path").to_owned();
    let base = aci(
        &manifest("example.com/base", &[], &[]),
        &[E::Link("lib", &target)],
    );
    s.fetch("base", &base);
    s.fetch(
        "top",
        &aci(
            &manifest("example.com/top", &["example.com/base"], &[]),
            &[E::Dir("lib"), E::File("lib/libx.so", b"x")],
        ),
    );
    let out = s.path().join("r");
    s.ok(&[
        "image",
        "render",
        "--rootfs-only",
        "example.com/top",
        out.to_str().expect("path"),
    ]);
    let lib = std::fs::symlink_metadata(out.join("lib")).expect("lib");
    assert!(lib.is_dir(), "lib must now be a real directory");
    assert!(out.join("lib/libx.so").is_file());
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("read").count(),
        0,
        "nothing written through the symlink"
    );
}

#[test]
fn missing_dependency_and_id_mismatch_are_clear_errors() {
    let Some(s) = Store::new() else { return };
    s.fetch(
        "a",
        &aci(
            &manifest("example.com/a", &["example.com/missing"], &[]),
            &[],
        ),
    );
    let out = s.cmd(&[
        "image",
        "render",
        "example.com/a",
        s.path().join("r").to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        err.contains("dependency example.com/missing is not in the store"),
        "{err}"
    );
    assert!(!s.path().join("r").exists(), "nothing half-rendered");
    let wrong = format!("sha512-{}", "0".repeat(128));
    let mut m = manifest("example.com/p", &[], &[]);
    m["dependencies"] = json!([{"imageName": "example.com/a", "imageID": wrong}]);
    s.fetch("p", &aci(&m, &[]));
    let out = s.cmd(&[
        "image",
        "render",
        "example.com/p",
        s.path().join("r2").to_str().expect("path"),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("with image ID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tar -C layout -c .` writes a `./` entry for the layout itself (Go accepts it): skipped, not
/// refused. Built with the real GNU tar, as users do.
#[test]
fn archives_made_with_tar_dot_are_accepted() {
    let Some(s) = Store::new() else { return };
    let layout = s.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).expect("mkdir");
    std::fs::write(layout.join("rootfs/etc/hello"), "hi\n").expect("write");
    std::fs::write(
        layout.join("manifest"),
        manifest("example.com/dot", &[], &[]).to_string(),
    )
    .expect("write");
    let file = s.path().join("dot.aci");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&file)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    let tar = std::fs::read(&file).expect("read");
    assert!(
        tar.windows(3).any(|w| w == b"./\0"),
        "tar wrote no ./ entry"
    );
    let id = s.fetch("dot", &tar);
    assert!(s.ok(&["image", "verify", &id]).contains(": ok"));
    let out = s.cmd(&["validate", file.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
