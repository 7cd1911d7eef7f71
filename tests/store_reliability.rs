//! Store reliability: the real `appcctl` killed mid-import, imports racing each other and
//! `image gc`, blobs freed by `image rm`, and byte-exact export (`src/store/mod.rs` states the
//! invariants: an image is visible exactly when its index row exists; everything before that is
//! invisible and collectable).
//!
//! Runs as root (the importer chowns files); otherwise each test prints `SKIP:` (a failure with
//! `APPC_TEST_NO_SKIP=1`). `APPC_RELIABILITY_SEED=<n>` replays one sequence of kill points.

mod common;
mod reliability;

use std::path::Path;
use std::time::{Duration, Instant};

use reliability::*;

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    common::skip("store reliability tests need root (the importer chowns files)");
    false
}

#[test]
fn timing_probe() {
    if !root_or_skip() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let spec = ImageSpec::big("example.com/kill", "kill", 2000, 20 << 20);
    let tar = spec.tar();
    let id = image_id(&tar);
    let aci = std::path::PathBuf::from("/tmp/probe/kill.aci");
    std::fs::write(&aci, gzip(&tar, 1)).expect("write");
    eprintln!("build {:?} tar {} bytes", t.elapsed(), tar.len());
    let store = work.path().join("store");
    for _ in 0..3 {
        let t = Instant::now();
        let out = fetch(&store, &aci);
        eprintln!("fetch {:?}", t.elapsed());
        assert_ok(&out, "fetch", &store);
        assert_eq!(text(&out.stdout).trim(), id);
    }
    let t = Instant::now();
    verify_ok(&store, "x");
    eprintln!("verify {:?}", t.elapsed());
    let t = Instant::now();
    assert_ok(&run(&store, &["image", "rm", &id]), "rm", &store);
    eprintln!("rm {:?}", t.elapsed());
    let t = Instant::now();
    assert_ok(&gc(&store, "24h"), "gc", &store);
    eprintln!("gc {:?}", t.elapsed());
    let _ = Path::new("/");
    let _ = Duration::from_secs(1);
}
