//! `appcctl image build` through the library API (`aci::build`): spec/aci.md A1, A2, A5, A6, I1
//! and appc-requirements.md §4 rows 17–18. Archives are read back with the `tar` crate.
//!
//! Device nodes and ownership need root; xattrs need a file system with user xattrs. Missing
//! either prints `SKIP: ...`, and fails instead when `APPC_TEST_NO_SKIP=1`.

use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use appc_pod::aci::AciError;
use appc_pod::aci::build::{BuildOptions, BuildReport, BuildWarning, build_image};
use appc_pod::aci::compress::{Compression, decompress, sniff};
use appc_pod::schema::ImageManifest;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use sha2::{Digest, Sha512};
use tar::EntryType;
use tempfile::TempDir;

const MANIFEST: &str = r#"{
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/build-test",
    "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}]
}"#;

/// A fixed time, so expected mtimes are known.
const T0: i64 = 1_500_000_000;

// ------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------

/// Prints SKIP and returns false, or fails under `APPC_TEST_NO_SKIP=1`.
fn skip(reason: &str) -> bool {
    if std::env::var_os("APPC_TEST_NO_SKIP").is_some_and(|v| v == "1") {
        panic!("cannot skip under APPC_TEST_NO_SKIP=1: {reason}");
    }
    eprintln!("SKIP: {reason}");
    false
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
}

/// A minimal valid layout under `root/image`: manifest, rootfs/etc/hostname.
fn layout(root: &Path) -> PathBuf {
    let dir = root.join("image");
    fs::create_dir_all(dir.join("rootfs/etc")).expect("mkdir");
    fs::write(dir.join("manifest"), MANIFEST).expect("manifest");
    fs::write(dir.join("rootfs/etc/hostname"), "pod\n").expect("file");
    for p in ["manifest", "rootfs/etc/hostname", "rootfs/etc", "rootfs"] {
        set_mtime(&dir.join(p), T0);
    }
    dir
}

fn opts(compression: Compression) -> BuildOptions {
    BuildOptions {
        compression,
        ..BuildOptions::default()
    }
}

fn build(dir: &Path, out: &Path) -> BuildReport {
    build_image(dir, out, &opts(Compression::Gzip)).expect("build")
}

/// The uncompressed tar inside an image file.
fn tar_of(aci: &Path) -> (Compression, Vec<u8>) {
    let file = fs::File::open(aci).expect("open aci");
    let (c, mut r) = decompress(BufReader::new(file)).expect("decompress");
    let mut tar = Vec::new();
    r.read_to_end(&mut tar).expect("read tar");
    (c, tar)
}

fn sha512_id(tar: &[u8]) -> String {
    let digest = Sha512::digest(tar);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha512-{hex}")
}

/// One archive entry as the `tar` crate reads it.
#[derive(Debug)]
struct Rec {
    path: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    device: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
    data: Vec<u8>,
}

fn records(tar: &[u8]) -> Vec<Rec> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut e = entry.expect("entry");
        let xattrs = match e.pax_extensions().expect("pax") {
            Some(pax) => pax
                .map(|x| x.expect("pax record"))
                .filter_map(|x| {
                    let name = x.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_owned();
                    Some((name, x.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let h = e.header().clone();
        let mut data = Vec::new();
        let path = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        e.read_to_end(&mut data).expect("data");
        out.push(Rec {
            path,
            kind: h.entry_type(),
            mode: h.mode().expect("mode"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mtime: h.mtime().expect("mtime"),
            link,
            device: (
                h.device_major().expect("major").unwrap_or(0),
                h.device_minor().expect("minor").unwrap_or(0),
            ),
            xattrs,
            data,
        });
    }
    out
}

fn find<'a>(recs: &'a [Rec], path: &str) -> &'a Rec {
    recs.iter()
        .find(|r| r.path == path.as_bytes())
        .unwrap_or_else(|| panic!("no entry {path}"))
}

/// Names in the directory, for "nothing was left behind" checks.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Raw walk over the ustar headers: every header is POSIX ustar and none is a GNU extension.
fn raw_typeflags(tar: &[u8]) -> Vec<u8> {
    let mut flags = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let h = &tar[at..at + 512];
        assert_eq!(
            &h[257..265],
            b"ustar\x0000",
            "header at {at} is not POSIX ustar"
        );
        let size_field = std::str::from_utf8(&h[124..136]).expect("size");
        let size = u64::from_str_radix(size_field.trim_matches(['\0', ' ']), 8).expect("octal");
        flags.push(h[156]);
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    flags
}

// ------------------------------------------------------------------------------------------
// entries and metadata (A5, §4 row 18)
// ------------------------------------------------------------------------------------------

/// Populates rootfs with one of everything; returns whether xattrs could be set.
fn populate_everything(rootfs: &Path) -> bool {
    let p = |rel: &str| rootfs.join(rel);
    fs::create_dir(p("bin")).expect("mkdir");
    fs::write(p("bin/tool"), b"#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(p("bin/tool"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::create_dir(p("tmp")).expect("mkdir");
    fs::set_permissions(p("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::write(p("a_first"), b"shared").expect("write");
    fs::hard_link(p("a_first"), p("z_second")).expect("link");
    symlink("/etc/passwd", p("passwd")).expect("symlink");
    symlink("../../..", p("escape")).expect("symlink");
    let long_target = format!("/{}", "t".repeat(200));
    symlink(&long_target, p("long_link")).expect("symlink");
    fs::write(p(&"n".repeat(150)), b"long name").expect("long name");
    rustix::fs::mknodat(CWD, p("fifo"), FileType::Fifo, Mode::from(0o640), 0).expect("mkfifo");
    let _socket = std::os::unix::net::UnixListener::bind(p("sock")).expect("socket");
    let xattrs = rustix::fs::lsetxattr(p("a_first"), "user.test", b"hello", XattrFlags::empty());
    match xattrs {
        Ok(()) => true,
        Err(e) => skip(&format!(
            "user xattrs unsupported here ({e}): xattr checks skipped"
        )),
    }
}

#[test]
fn every_entry_kind_is_recorded_with_its_metadata() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let rootfs = dir.join("rootfs");
    let has_xattrs = populate_everything(&rootfs);
    let root = is_root() || skip("not root: no chown, no device node");
    if root {
        rustix::fs::mknodat(
            CWD,
            rootfs.join("null"),
            FileType::CharacterDevice,
            Mode::from(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod");
        // mknod(2) applies the umask.
        fs::set_permissions(rootfs.join("null"), fs::Permissions::from_mode(0o666)).expect("chmod");
        std::os::unix::fs::lchown(rootfs.join("bin/tool"), Some(1234), Some(5678)).expect("chown");
        // chown(2) clears setuid: restore it.
        fs::set_permissions(rootfs.join("bin/tool"), fs::Permissions::from_mode(0o4755))
            .expect("chmod");
        std::os::unix::fs::lchown(rootfs.join("passwd"), Some(42), Some(43)).expect("lchown");
        rustix::fs::lsetxattr(
            rootfs.join("bin"),
            "trusted.appc",
            b"t",
            XattrFlags::empty(),
        )
        .expect("trusted xattr as root");
    }
    set_mtime(&rootfs.join("bin/tool"), T0 + 1);
    set_mtime(&rootfs.join("passwd"), T0 + 2);
    let out = tmp.path().join("all.aci");
    let report = build(&dir, &out);
    let (_, tar) = tar_of(&out);
    let recs = records(&tar);

    let manifest = find(&recs, "manifest");
    assert_eq!(
        (manifest.kind, manifest.mode, manifest.uid, manifest.gid),
        (EntryType::Regular, 0o644, 0, 0)
    );
    assert_eq!(manifest.mtime, T0 as u64);
    let canonical = ImageManifest::parse(MANIFEST)
        .expect("manifest")
        .value
        .to_canonical_json();
    assert_eq!(manifest.data, canonical.as_bytes());

    let tool = find(&recs, "rootfs/bin/tool");
    assert_eq!(
        (tool.kind, tool.mode, tool.mtime),
        (EntryType::Regular, 0o4755, T0 as u64 + 1)
    );
    assert_eq!(tool.data, b"#!/bin/sh\necho hi\n");
    let tmpdir = find(&recs, "rootfs/tmp/");
    assert_eq!((tmpdir.kind, tmpdir.mode), (EntryType::Directory, 0o1777));

    let passwd = find(&recs, "rootfs/passwd");
    assert_eq!(passwd.kind, EntryType::Symlink);
    assert_eq!(passwd.link.as_deref(), Some(&b"/etc/passwd"[..]));
    assert_eq!(passwd.mtime, T0 as u64 + 2);
    assert_eq!(
        find(&recs, "rootfs/escape").link.as_deref(),
        Some(&b"../../.."[..])
    );
    let long_link = find(&recs, "rootfs/long_link");
    assert_eq!(long_link.link.as_deref().map(<[u8]>::len), Some(201));

    let second = find(&recs, "rootfs/z_second");
    assert_eq!(second.kind, EntryType::Link);
    assert_eq!(second.link.as_deref(), Some(&b"rootfs/a_first"[..]));
    assert_eq!(find(&recs, "rootfs/a_first").data, b"shared");

    let fifo = find(&recs, "rootfs/fifo");
    assert_eq!((fifo.kind, fifo.mode), (EntryType::Fifo, 0o640));
    let long = find(&recs, &format!("rootfs/{}", "n".repeat(150)));
    assert_eq!(long.data, b"long name");

    assert!(
        recs.iter().all(|r| r.path != b"rootfs/sock"),
        "socket archived"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| matches!(w, BuildWarning::SocketSkipped { path } if path.ends_with("sock")))
    );
    if has_xattrs {
        let first = find(&recs, "rootfs/a_first");
        assert_eq!(
            first.xattrs,
            vec![("user.test".to_owned(), b"hello".to_vec())]
        );
    }
    if root {
        let null = find(&recs, "rootfs/null");
        assert_eq!(
            (null.kind, null.device, null.mode),
            (EntryType::Char, (1, 3), 0o666)
        );
        assert_eq!((tool.uid, tool.gid), (1234, 5678));
        assert_eq!((passwd.uid, passwd.gid), (42, 43));
        let bin = find(&recs, "rootfs/bin/");
        assert!(
            bin.xattrs
                .contains(&("trusted.appc".to_owned(), b"t".to_vec())),
            "{:?}",
            bin.xattrs
        );
    }
    // POSIX pax only: ustar headers, PAX 'x' records, no GNU 'L'/'K' long-name entries.
    let flags = raw_typeflags(&tar);
    assert!(flags.contains(&b'x'), "long names need PAX records");
    assert!(
        !flags.iter().any(|f| matches!(f, b'L' | b'K' | b'g')),
        "{flags:?}"
    );
    // No names: they depend on the build host's /etc/passwd.
    let mut archive = tar::Archive::new(&tar[..]);
    for e in archive.entries().expect("entries") {
        let e = e.expect("entry");
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
    }
    assert_eq!(report.entries, recs.len() as u64);
}

#[test]
fn entries_come_manifest_first_then_sorted_depth_first() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let rootfs = dir.join("rootfs");
    for d in ["b", "a", "a/z", "a/y", "B"] {
        fs::create_dir(rootfs.join(d)).expect("mkdir");
    }
    for f in ["a/z/1", "a/x", "b/0", "c", "A"] {
        fs::write(rootfs.join(f), f).expect("write");
    }
    let out = tmp.path().join("order.aci");
    build(&dir, &out);
    let (_, tar) = tar_of(&out);
    let names: Vec<String> = records(&tar)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.path).into_owned())
        .collect();
    let expected = [
        "manifest",
        "rootfs/",
        "rootfs/A",
        "rootfs/B/",
        "rootfs/a/",
        "rootfs/a/x",
        "rootfs/a/y/",
        "rootfs/a/z/",
        "rootfs/a/z/1",
        "rootfs/b/",
        "rootfs/b/0",
        "rootfs/c",
        "rootfs/etc/",
        "rootfs/etc/hostname",
    ];
    assert_eq!(names, expected);
}

#[test]
fn long_and_non_ascii_names_round_trip() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let rootfs = dir.join("rootfs");
    let deep = rootfs.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&deep).expect("mkdir");
    fs::write(deep.join("f".repeat(200)), b"deep").expect("write");
    fs::write(rootfs.join("café ☕"), b"utf8").expect("write");
    let out = tmp.path().join("names.aci");
    build(&dir, &out);
    let (_, tar) = tar_of(&out);
    let recs = records(&tar);
    let deep_name = format!(
        "rootfs/{}/{}/{}",
        "d".repeat(120),
        "e".repeat(120),
        "f".repeat(200)
    );
    assert_eq!(find(&recs, &deep_name).data, b"deep");
    assert_eq!(find(&recs, "rootfs/café ☕").data, b"utf8");
}

// ------------------------------------------------------------------------------------------
// image ID (I1) and reproducibility
// ------------------------------------------------------------------------------------------

#[test]
fn image_id_is_the_sha512_of_the_uncompressed_tar() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let out = tmp.path().join("id.aci");
    let report = build(&dir, &out);
    let (c, tar) = tar_of(&out);
    assert_eq!(c, Compression::Gzip);
    assert_eq!(report.image_id.as_str(), sha512_id(&tar));
    assert!(report.image_id.is_full());
    assert_eq!(report.uncompressed_size, tar.len() as u64);
    assert_eq!(
        report.compressed_size,
        fs::metadata(&out).expect("stat").len()
    );
    assert_eq!(report.entries, 4);
}

#[test]
fn the_same_tree_gives_the_same_bytes() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    populate_everything(&dir.join("rootfs"));
    let (one, two) = (tmp.path().join("one.aci"), tmp.path().join("two.aci"));
    let first = build(&dir, &one);
    let second = build(&dir, &two);
    assert_eq!(first.image_id, second.image_id);
    assert!(fs::read(&one).expect("one") == fs::read(&two).expect("two"));

    // A copy elsewhere (new inodes, another readdir order) is the same image.
    let copy = tmp.path().join("copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&dir)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    fs::remove_file(copy.join("rootfs/sock")).ok(); // cp -a may or may not copy sockets
    // Removing the socket touched the copy's rootfs mtime (seconds are in the
    // tar header): put back the original's, or the test races the clock.
    let mtime = fs::metadata(dir.join("rootfs"))
        .expect("stat")
        .modified()
        .expect("mtime");
    fs::File::open(copy.join("rootfs"))
        .and_then(|d| d.set_modified(mtime))
        .expect("set mtime");
    let copied = build(&copy, &tmp.path().join("copy.aci"));
    assert_eq!(copied.image_id, first.image_id);
}

#[test]
fn a_changed_mtime_or_mode_changes_the_id() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let id = |name: &str| build(&dir, &tmp.path().join(name)).image_id;
    let base = id("base.aci");
    let file = dir.join("rootfs/etc/hostname");
    set_mtime(&file, T0 + 60);
    let touched = id("touched.aci");
    assert_ne!(touched, base);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let chmoded = id("chmod.aci");
    assert_ne!(chmoded, touched);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    set_mtime(&file, T0);
    assert_eq!(
        id("back.aci"),
        base,
        "restoring the metadata restores the ID"
    );
}

#[test]
fn every_compression_gives_the_same_tar() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    fs::write(dir.join("rootfs/data"), "x".repeat(100_000)).expect("write");
    let plain = tmp.path().join("none.aci");
    let reference = build_image(&dir, &plain, &opts(Compression::None)).expect("build");
    let (_, reference_tar) = tar_of(&plain);
    assert_eq!(
        fs::read(&plain).expect("read"),
        reference_tar,
        "none writes the tar itself"
    );
    for c in Compression::ALL {
        let out = tmp.path().join(format!("with-{c}.aci"));
        let report = build_image(&dir, &out, &opts(c)).expect("build");
        let head = fs::read(&out).expect("read");
        assert_eq!(sniff(&head[..head.len().min(512)]), Some(c));
        let (found, tar) = tar_of(&out);
        assert_eq!(found, c);
        assert!(tar == reference_tar, "{c}: different tar");
        assert_eq!(report.image_id, reference.image_id, "{c}");
        assert_eq!(report.compression, c);
        if c != Compression::None {
            assert!(report.compressed_size < report.uncompressed_size / 4, "{c}");
        }
    }
}

/// GNU tar extracts what we wrote, and rebuilding the extracted tree gives the same image:
/// every property we record survives a real extractor (interoperability of the PAX encoding).
#[test]
fn gnu_tar_extracts_it_to_the_same_image() {
    if Command::new("tar").arg("--version").output().is_err() {
        skip("no GNU tar on PATH");
        return;
    }
    if !is_root() {
        skip("not root: extraction cannot restore owners and devices");
        return;
    }
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    populate_everything(&dir.join("rootfs"));
    fs::remove_file(dir.join("rootfs/sock")).expect("rm socket");
    let out = tmp.path().join("x.aci");
    let report = build_image(&dir, &out, &opts(Compression::None)).expect("build");
    let extracted = tmp.path().join("extracted");
    fs::create_dir(&extracted).expect("mkdir");
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&out)
        .arg("-C")
        .arg(&extracted)
        .status()
        .expect("tar");
    assert!(status.success());
    let again = build_image(
        &extracted,
        &tmp.path().join("again.aci"),
        &opts(Compression::None),
    )
    .expect("rebuild");
    assert_eq!(again.image_id, report.image_id);
}

// ------------------------------------------------------------------------------------------
// symlinks are never followed
// ------------------------------------------------------------------------------------------

#[test]
fn symlinks_are_stored_never_followed() {
    let tmp = TempDir::new().expect("tempdir");
    let secret_dir = tmp.path().join("outside");
    fs::create_dir(&secret_dir).expect("mkdir");
    fs::write(secret_dir.join("secret"), b"do not archive").expect("write");
    let dir = layout(tmp.path());
    symlink(&secret_dir, dir.join("rootfs/dirlink")).expect("symlink");
    symlink(secret_dir.join("secret"), dir.join("rootfs/filelink")).expect("symlink");
    symlink("../../..", dir.join("rootfs/etc/up")).expect("symlink");
    let out = tmp.path().join("links.aci");
    build(&dir, &out);
    let (_, tar) = tar_of(&out);
    let recs = records(&tar);
    for name in ["rootfs/dirlink", "rootfs/filelink", "rootfs/etc/up"] {
        let r = find(&recs, name);
        assert_eq!((r.kind, r.data.len()), (EntryType::Symlink, 0), "{name}");
    }
    assert!(recs.iter().all(|r| !r.path.starts_with(b"rootfs/dirlink/")));
    assert!(
        !tar.windows(14).any(|w| w == b"do not archive"),
        "followed a symlink"
    );
}

#[test]
fn symlinked_manifest_or_rootfs_is_refused() {
    let tmp = TempDir::new().expect("tempdir");
    let real = layout(tmp.path());
    let dir = tmp.path().join("linked");
    fs::create_dir(&dir).expect("mkdir");
    symlink(real.join("manifest"), dir.join("manifest")).expect("symlink");
    fs::create_dir(dir.join("rootfs")).expect("mkdir");
    let err = build_image(&dir, &tmp.path().join("a.aci"), &opts(Compression::Gzip))
        .expect_err("symlinked manifest");
    assert!(
        err.to_string().contains("manifest is not a regular file"),
        "{err}"
    );
    fs::remove_file(dir.join("manifest")).expect("rm");
    fs::copy(real.join("manifest"), dir.join("manifest")).expect("copy");
    fs::remove_dir(dir.join("rootfs")).expect("rmdir");
    symlink(real.join("rootfs"), dir.join("rootfs")).expect("symlink");
    let err = build_image(&dir, &tmp.path().join("b.aci"), &opts(Compression::Gzip))
        .expect_err("symlinked rootfs");
    assert!(
        err.to_string().contains("rootfs is not a directory"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// refusals (A1, A2, overwrite) and cleanup
// ------------------------------------------------------------------------------------------

/// Builds into `tmp/out/NAME`, expecting failure; checks the out directory holds only `before`.
fn refused(dir: &Path, out_dir: &Path, name: &str, o: &BuildOptions) -> String {
    let before = listing(out_dir);
    let err = build_image(dir, &out_dir.join(name), o).expect_err("should fail");
    assert_eq!(listing(out_dir), before, "files left behind after: {err}");
    err.to_string()
}

#[test]
fn layout_problems_are_refused_in_one_line() {
    let tmp = TempDir::new().expect("tempdir");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let dir = layout(tmp.path());
    let o = opts(Compression::Gzip);

    fs::rename(dir.join("manifest"), tmp.path().join("m")).expect("mv");
    let msg = refused(&dir, &out_dir, "x.aci", &o);
    assert!(
        msg.ends_with("not an image layout: no manifest file"),
        "{msg}"
    );
    fs::rename(dir.join("rootfs"), tmp.path().join("r")).expect("mv");
    let msg = refused(&dir, &out_dir, "x.aci", &o);
    assert!(
        msg.ends_with("no manifest file and no rootfs directory"),
        "{msg}"
    );
    fs::rename(tmp.path().join("m"), dir.join("manifest")).expect("mv");
    let msg = refused(&dir, &out_dir, "x.aci", &o);
    assert!(
        msg.ends_with("not an image layout: no rootfs directory"),
        "{msg}"
    );
    fs::write(dir.join("rootfs"), "").expect("file");
    let msg = refused(&dir, &out_dir, "x.aci", &o);
    assert!(msg.ends_with("rootfs is not a directory"), "{msg}");
    let msg = refused(&tmp.path().join("nowhere"), &out_dir, "x.aci", &o);
    assert!(msg.starts_with("cannot open the image directory"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn invalid_manifests_are_refused_naming_the_field() {
    let tmp = TempDir::new().expect("tempdir");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let dir = layout(tmp.path());
    let o = opts(Compression::Gzip);
    let cases = [
        (
            r#"{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}"#,
            "acKind",
        ),
        (
            r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name"}"#,
            "name",
        ),
        (r#"{"acKind":"ImageManifest","acVersion":"0.8.11"}"#, "name"),
        ("not json", "not valid JSON"),
    ];
    for (text, field) in cases {
        fs::write(dir.join("manifest"), text).expect("write");
        let msg = refused(&dir, &out_dir, "x.aci", &o);
        assert!(msg.contains("not a valid image manifest"), "{msg}");
        assert!(msg.contains(field), "{text}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    fs::write(dir.join("manifest"), b"\xff\xfe").expect("write");
    let msg = refused(&dir, &out_dir, "x.aci", &o);
    assert!(msg.ends_with("not a UTF-8 JSON manifest"), "{msg}");
}

#[test]
fn output_must_end_in_aci() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    for name in ["image.tar", "image.aci.gz", "image"] {
        let msg = refused(&dir, &out_dir, name, &opts(Compression::Gzip));
        assert!(
            msg.ends_with(": an image file name must end in .aci"),
            "{msg}"
        );
    }
}

#[test]
fn an_existing_output_is_kept_unless_overwrite() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("x.aci");
    fs::write(&out, b"precious").expect("write");
    let msg = refused(&dir, &out_dir, "x.aci", &opts(Compression::Gzip));
    assert!(
        msg.ends_with("x.aci: refusing to overwrite an existing file (use --overwrite)"),
        "{msg}"
    );
    assert_eq!(fs::read(&out).expect("read"), b"precious");
    let o = BuildOptions {
        overwrite: true,
        ..opts(Compression::Gzip)
    };
    let report = build_image(&dir, &out, &o).expect("overwrite");
    let (_, tar) = tar_of(&out);
    assert_eq!(report.image_id.as_str(), sha512_id(&tar));
    assert_eq!(listing(&out_dir), ["x.aci"]);
}

#[test]
fn output_inside_rootfs_is_refused() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let etc = dir.join("rootfs/etc");
    let msg = refused(&dir, &etc, "x.aci", &opts(Compression::Gzip));
    assert!(
        msg.contains("refusing to write the image inside its own rootfs"),
        "{msg}"
    );
}

/// A failure in the middle of the walk (a path too long to `lstat`) removes the temporary file.
#[test]
fn a_failure_mid_write_leaves_nothing_behind() {
    use rustix::fs::{OFlags, mkdirat, openat};
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    fs::write(dir.join("rootfs/aaa"), "x".repeat(1 << 20)).expect("write");
    // Build a tree deeper than PATH_MAX with directory-relative calls.
    let mut fd = openat(
        CWD,
        dir.join("rootfs"),
        OFlags::DIRECTORY | OFlags::RDONLY,
        Mode::empty(),
    )
    .expect("open rootfs");
    let long = "z".repeat(250);
    for _ in 0..20 {
        mkdirat(&fd, long.as_str(), Mode::from(0o755)).expect("mkdirat");
        fd = openat(
            &fd,
            long.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .expect("openat");
    }
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let msg = refused(&dir, &out_dir, "deep.aci", &opts(Compression::Xz));
    assert!(msg.starts_with("cannot stat"), "{msg}");
    assert!(listing(&out_dir).is_empty());
}

#[test]
fn error_variants_read_well() {
    let e = AciError::OutputExists {
        out: PathBuf::from("a.aci"),
    };
    assert_eq!(
        e.to_string(),
        "a.aci: refusing to overwrite an existing file (use --overwrite)"
    );
}

// ------------------------------------------------------------------------------------------
// the command line
// ------------------------------------------------------------------------------------------

#[test]
fn cli_prints_only_the_image_id() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = layout(tmp.path());
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("rootfs/sock")).expect("socket");
    let out = tmp.path().join("cli.aci");
    let run = Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .args(["image", "build", "--compression", "zstd"])
        .arg(&dir)
        .arg(&out)
        .output()
        .expect("appcctl");
    let stdout = String::from_utf8(run.stdout).expect("utf-8");
    let stderr = String::from_utf8(run.stderr).expect("utf-8");
    assert!(run.status.success(), "{stderr}");
    let (c, tar) = tar_of(&out);
    assert_eq!(c, Compression::Zstd);
    assert_eq!(stdout, format!("{}\n", sha512_id(&tar)));
    assert!(
        stderr.starts_with("warning: ") && stderr.contains("socket skipped"),
        "{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.starts_with("warning: ")),
        "{stderr}"
    );

    let again = Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .args(["image", "build"])
        .arg(&dir)
        .arg(&out)
        .output()
        .expect("appcctl");
    assert!(!again.status.success());
    assert!(again.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
}
