//! Hostile app roots against `exec::inroot` and `exec::user` (spec/ace.md F1, V2–V5, V10, X5):
//! absolute and `..` symlinks, loops and `/proc/self/root` magic links must never make the
//! executor read, create or modify anything outside the root. Each test keeps a sentinel
//! outside the root and checks it afterwards.

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use appc_pod::exec::inroot::{
    InRootError, create_file_in_root, fd_path, mkdir_all_in_root, open_in_root, open_root,
    prepare_mount_target, read_in_root, stat_in_root,
};
use appc_pod::exec::user::{UserError, resolve_ids};
use rustix::fs::{OFlags, fstat};

const SENTINEL: &str = "HOST CONTENT";

/// `<t>/outside/secret` (the sentinel) and `<t>/root` (the app root) with its hostile links.
struct World {
    _t: tempfile::TempDir,
    top: PathBuf,
    outside: PathBuf,
    root_dir: PathBuf,
    root: OwnedFd,
}

impl World {
    fn new() -> World {
        let t = tempfile::tempdir().expect("test setup");
        let top = t.path().to_owned();
        let outside = top.join("outside");
        fs::create_dir_all(outside.join("etc")).expect("test setup");
        fs::write(outside.join("secret"), SENTINEL).expect("test setup");
        fs::write(outside.join("etc/passwd"), "evil:x:666:666::/:/bin/sh\n").expect("test setup");
        fs::write(outside.join("etc/group"), "evil:x:666:\n").expect("test setup");
        let root_dir = top.join("root");
        fs::create_dir(&root_dir).expect("test setup");
        let link =
            |target: &Path, name: &str| symlink(target, root_dir.join(name)).expect("test setup");
        link(&outside, "abs"); // absolute host path
        link(Path::new("/"), "slash");
        link(Path::new(".."), "up");
        link(Path::new("../../.."), "a");
        link(Path::new("l2"), "l1");
        link(Path::new("l1"), "l2");
        link(Path::new("/proc/self/root"), "magic");
        link(&outside.join("secret"), "file-link");
        link(&outside.join("etc"), "etc");
        let root = open_root(&root_dir).expect("test setup");
        World {
            _t: t,
            top,
            outside,
            root_dir,
            root,
        }
    }

    fn root(&self) -> std::os::fd::BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// `p` relative to the host's `/`, e.g. the sentinel's host path spelled inside the root.
    fn host_path_in_root(&self, p: &Path) -> String {
        p.display().to_string()
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.outside.join("secret")).expect("test setup"),
            SENTINEL
        );
        let mut names: Vec<_> = fs::read_dir(&self.outside)
            .expect("test setup")
            .map(|e| {
                e.expect("test setup")
                    .file_name()
                    .into_string()
                    .expect("test setup")
            })
            .collect();
        names.sort();
        assert_eq!(names, ["etc", "secret"], "nothing created outside the root");
        let mut top: Vec<_> = fs::read_dir(&self.top)
            .expect("test setup")
            .map(|e| {
                e.expect("test setup")
                    .file_name()
                    .into_string()
                    .expect("test setup")
            })
            .collect();
        top.sort();
        assert_eq!(top, ["outside", "root"], "nothing created beside the root");
    }
}

#[test]
fn reads_through_escaping_symlinks_stay_inside() {
    let w = World::new();
    let secret = w.host_path_in_root(&w.outside.join("secret"));
    let candidates = [
        "/abs/secret".to_owned(),
        format!("/slash{secret}"),
        format!("/up{secret}"),
        format!("/a/{}", secret.trim_start_matches('/')),
        format!("/../../..{secret}"),
        "/file-link".to_owned(),
        secret.clone(),
    ];
    for p in &candidates {
        assert_eq!(read_in_root(w.root(), p, 1 << 20).unwrap(), None, "{p}");
    }
    // The same path does resolve once the file exists inside the root: proof that the
    // escaping links landed in the root, not nowhere.
    let inside = w.root_dir.join(secret.trim_start_matches('/'));
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    fs::write(&inside, "INSIDE").unwrap();
    for p in &candidates {
        let got = read_in_root(w.root(), p, 1 << 20).unwrap();
        assert_eq!(got.as_deref(), Some(&b"INSIDE"[..]), "{p}");
    }
    w.assert_outside_untouched();
}

#[test]
fn dotdot_links_resolve_to_the_root_itself() {
    let w = World::new();
    let root_st = fstat(&w.root).unwrap();
    for p in ["/up", "/a", "/slash", "/..", "/up/up/a/.."] {
        let st = stat_in_root(w.root(), p).unwrap().unwrap();
        assert_eq!(
            (st.st_dev, st.st_ino),
            (root_st.st_dev, root_st.st_ino),
            "{p}"
        );
    }
    let fd = open_in_root(w.root(), "/a", OFlags::PATH | OFlags::DIRECTORY).unwrap();
    let st = fs::metadata(fd_path(fd.as_fd())).unwrap();
    assert_eq!(st.ino(), root_st.st_ino);
}

#[test]
fn loops_and_magic_links_are_errors_not_hangs() {
    let w = World::new();
    for p in ["/l1", "/l1/x", "/l2/../l1"] {
        assert!(read_in_root(w.root(), p, 100).is_err(), "{p}");
        assert!(stat_in_root(w.root(), p).is_err(), "{p}");
    }
    assert!(mkdir_all_in_root(w.root(), "/l1/sub").is_err());
    // Without procfs inside the root, /proc/self/root is just a missing path in the root.
    assert_eq!(
        read_in_root(w.root(), "/magic/etc/passwd", 100).unwrap(),
        None
    );
    w.assert_outside_untouched();
}

#[test]
fn magic_links_refused_with_procfs_inside() {
    let w = World::new();
    let proc_dir = w.root_dir.join("proc");
    fs::create_dir(&proc_dir).unwrap();
    if let Err(e) = rustix::mount::mount_bind(Path::new("/proc"), &proc_dir) {
        common::skip(&format!("cannot bind-mount /proc into a test root: {e}"));
        return;
    }
    let secret = w.host_path_in_root(&w.outside.join("secret"));
    let r = read_in_root(w.root(), &format!("/proc/self/root{secret}"), 100);
    let r2 = read_in_root(w.root(), &format!("/magic{secret}"), 100);
    let _ = rustix::mount::unmount(&proc_dir, rustix::mount::UnmountFlags::DETACH);
    for r in [r, r2] {
        match r {
            Err(InRootError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}")
            }
            other => panic!("magic link followed: {other:?}"),
        }
    }
    w.assert_outside_untouched();
}

#[test]
fn mkdir_all_creates_inside_only() {
    let w = World::new();
    let fd = mkdir_all_in_root(w.root(), "/up/a/created/deep").unwrap();
    let st = fstat(&fd).unwrap();
    let made = fs::metadata(w.root_dir.join("created/deep")).unwrap();
    assert_eq!(st.st_ino, made.ino());
    assert_eq!(
        (made.mode() & 0o7777, made.uid(), made.gid()),
        (0o755, 0, 0)
    );
    // An absolute link to a host directory resolves to a missing path in the root; it is a
    // dangling link there and is refused, not followed to the host.
    assert!(matches!(
        mkdir_all_in_root(w.root(), "/abs/newdir"),
        Err(InRootError::DanglingSymlink { .. })
    ));
    assert!(matches!(
        mkdir_all_in_root(w.root(), "/file-link/x"),
        Err(InRootError::DanglingSymlink { .. })
    ));
    w.assert_outside_untouched();
}

#[test]
fn mkdir_all_over_existing_files() {
    let w = World::new();
    fs::write(w.root_dir.join("plain"), "x").unwrap();
    for p in ["/plain", "/plain/sub", "/up/plain/sub/deeper"] {
        assert!(
            matches!(
                mkdir_all_in_root(w.root(), p),
                Err(InRootError::NotADirectory { .. })
            ),
            "{p}"
        );
    }
    assert_eq!(fs::read_to_string(w.root_dir.join("plain")).unwrap(), "x");
}

#[test]
fn mount_targets_replace_escaping_links_inside() {
    let w = World::new();
    // A file volume at a link to a host file: the link is replaced by an empty file in the root.
    let (fd, info) = prepare_mount_target(w.root(), "/file-link", true).unwrap();
    assert!(info.created && info.replaced_non_dir);
    let meta = fs::symlink_metadata(w.root_dir.join("file-link")).unwrap();
    assert!(meta.is_file() && meta.len() == 0);
    assert_eq!(fstat(&fd).unwrap().st_ino, meta.ino());
    // A directory volume at a link to a host directory: replaced by a directory in the root.
    let (_fd, info) = prepare_mount_target(w.root(), "/abs", false).unwrap();
    assert!(info.replaced_non_dir);
    assert!(
        fs::symlink_metadata(w.root_dir.join("abs"))
            .unwrap()
            .is_dir()
    );
    // Through `..` links the target lands in the root.
    let (_fd, info) = prepare_mount_target(w.root(), "/up/a/vol", false).unwrap();
    assert!(info.created);
    assert!(w.root_dir.join("vol").is_dir());
    w.assert_outside_untouched();
}

#[test]
fn mount_target_follows_inner_links_of_right_type() {
    let w = World::new();
    fs::create_dir_all(w.root_dir.join("run/x")).unwrap();
    fs::create_dir(w.root_dir.join("var")).unwrap();
    symlink("/run", w.root_dir.join("var/run")).unwrap();
    let (fd, info) = prepare_mount_target(w.root(), "/var/run", false).unwrap();
    assert!(!info.created && !info.replaced_non_dir && info.masked_entries);
    let run = fs::metadata(w.root_dir.join("run")).unwrap();
    assert_eq!(fstat(&fd).unwrap().st_ino, run.ino());
    assert!(
        fs::symlink_metadata(w.root_dir.join("var/run"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn create_file_never_writes_through_links() {
    let w = World::new();
    assert!(!create_file_in_root(w.root(), "/file-link", b"pwned", 0o644).unwrap());
    assert!(!create_file_in_root(w.root(), "/l1", b"pwned", 0o644).unwrap());
    assert!(create_file_in_root(w.root(), "/up/new-file", b"ok", 0o640).unwrap());
    let m = fs::metadata(w.root_dir.join("new-file")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o640, 0));
    // `etc -> <host>/outside/etc`: clamped to a missing directory in the root, refused.
    assert!(create_file_in_root(w.root(), "/etc/hosts", b"pwned", 0o644).is_err());
    w.assert_outside_untouched();
}

#[test]
fn user_lookup_never_reads_host_files() {
    let w = World::new();
    // /etc is a link to a host directory holding "evil": it must not be found.
    let e = resolve_ids(w.root(), "evil", "0", &[]).unwrap_err();
    assert!(matches!(e, UserError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("/etc/passwd"), "{e}");
    // The owner of a path that escapes is the owner of what is inside the root.
    fs::create_dir(w.root_dir.join("owned")).unwrap();
    std::os::unix::fs::chown(w.root_dir.join("owned"), Some(321), Some(654)).unwrap();
    let ids = resolve_ids(w.root(), "/up/owned", "/a/owned", &[5, 5, 6]).unwrap();
    assert_eq!((ids.uid, ids.gid, ids.groups), (321, 654, vec![5, 6]));
    assert!(matches!(
        resolve_ids(w.root(), "/abs/secret", "0", &[]),
        Err(UserError::MissingPath { .. })
    ));
    assert!(resolve_ids(w.root(), "/l1", "0", &[]).is_err());
}

#[test]
fn hostile_account_files() {
    let w = World::new();
    fs::remove_file(w.root_dir.join("etc")).unwrap();
    fs::create_dir(w.root_dir.join("etc")).unwrap();
    // A FIFO as /etc/passwd would block a reader forever.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        w.root_dir.join("etc/passwd"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(matches!(
        resolve_ids(w.root(), "app", "0", &[]),
        Err(UserError::ReadFile { .. })
    ));
    fs::remove_file(w.root_dir.join("etc/passwd")).unwrap();
    let mut junk = Vec::new();
    for i in 0..2000u32 {
        junk.extend_from_slice(format!("u{i}:x:{i}:{i}:{}:\n", "\u{fffd}".repeat(3)).as_bytes());
        junk.extend_from_slice(b"::::::\n:\n\xff\xfe:x:1:1\n#app:x:1:1\napp\n");
    }
    junk.extend_from_slice(b"app:x:4242:1");
    fs::write(w.root_dir.join("etc/passwd"), &junk).unwrap();
    let ids = resolve_ids(w.root(), "app", "7", &[]).unwrap();
    assert_eq!((ids.uid, ids.gid), (4242, 7));
}
