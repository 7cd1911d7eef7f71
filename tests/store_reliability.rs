//! Tier 2/3: store reliability through the real `appcctl` — imports killed with SIGKILL at
//! pseudo-random and at syscall-exact points, imports racing each other and `image gc`, blobs
//! freed by `image rm`, and byte-exact export across compressions and tar padding.
//!
//! The invariants come from `src/store/mod.rs`: an image is visible exactly when its index row
//! exists; everything an import writes before that is invisible, and `image gc` removes it.
//!
//! - Runs as root (the importer chowns files); skips out loud otherwise.
//! - Stores live on tmpfs (`/dev/shm`) when there is one (`reliability::scratch`): a killed
//!   process leaves the same state there, and imports do not wait on the machine's disk.
//!   `APPC_RELIABILITY_TMPDIR=<dir>` runs them elsewhere.
//! - The kill delays derive from a fixed seed; `APPC_RELIABILITY_SEED=<n>` replays another
//!   sequence, and every failure message names the seed, the round and the kill point.
//! - With `strace` installed, further kills land exactly on chosen syscalls
//!   (`strace -e inject=SYSCALL:signal=KILL:when=N`), one per step of the commit.

mod common;
mod reliability;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reliability::*;

const DEFAULT_SEED: u64 = 0x5eed_0a99_c0d5_2024;

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    common::skip("store reliability tests need root (the importer chowns files)");
    false
}

fn seed() -> u64 {
    match std::env::var("APPC_RELIABILITY_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("APPC_RELIABILITY_SEED={s:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

/// Asserts a finished `fetch` succeeded and printed exactly `id`.
fn assert_fetched(out: &Output, id: &str, store: &Path, ctx: &str) {
    assert!(
        out.status.success(),
        "{ctx}: fetch failed\n{}\n{}",
        show("fetch", out),
        dump(store)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        id,
        "{ctx}: fetch printed the wrong ID\n{}",
        show("fetch", out)
    );
}

/// What a killed command left behind, before anything else touches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AfterKill {
    /// The command finished before the signal.
    Completed,
    /// Killed, yet the image is visible: the kill came after the index row.
    Visible,
    /// Its tree is in `images/` without an index row (killed between rename and insert).
    PublishedUnindexed,
    /// A staging or trash directory is left in `tmp/`.
    Staging,
    /// Only a staging lock file is left in `tmp/`.
    LockOnly,
    /// No trace at all (killed before staging started).
    Nothing,
}

/// When to SIGKILL a command.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after its start (`Child::kill`).
    Delay(Duration),
    /// On entering the `n`th call of a syscall, before it runs: `strace -e inject=…:signal=KILL`
    /// delivers the SIGKILL, so the point is exact.
    Syscall(&'static str, u32),
}

/// One round of the kill test: the fetches to kill one after the other (each starting from
/// what the previous one left), then optionally an `image rm` to kill after the clean import.
#[derive(Debug, Clone)]
struct Round {
    fetch_kills: Vec<KillAt>,
    rm_kill: Option<KillAt>,
    why: &'static str,
}

fn strace_available() -> bool {
    std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The store and image of the kill test.
struct KillRig {
    store: PathBuf,
    aci: PathBuf,
    id: String,
    expected: Listed,
}

impl KillRig {
    /// Runs `appcctl <args>` and kills it at `at`; returns how it ended.
    fn run_killed(&self, args: &[&str], at: KillAt, ctx: &str) -> Output {
        match at {
            KillAt::Delay(d) => {
                let mut child = appcctl(&self.store)
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn appcctl");
                std::thread::sleep(d);
                let _ = child.kill(); // Err only once reaped, and nobody reaped it
                child.wait_with_output().expect("wait for appcctl")
            }
            KillAt::Syscall(name, n) => {
                let out = std::process::Command::new("strace")
                    .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                    .arg(format!("trace={name}"))
                    .arg("-e")
                    .arg(format!("inject={name}:signal=KILL:when={n}"))
                    .arg(env!("CARGO_BIN_EXE_appcctl"))
                    .arg("--dir")
                    .arg(&self.store)
                    .arg("--insecure-options=image")
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .expect("run strace");
                assert!(
                    !out.status.success(),
                    "{ctx}: appcctl {args:?} was not killed: it no longer calls {name} {n} \
                     times; update the kill points\n{}",
                    show("strace appcctl", &out)
                );
                out
            }
        }
    }

    /// What the store looks like right after a kill.
    fn classify(&self, completed: bool, listed: &[Listed]) -> AfterKill {
        let tmp = self.store.join("tmp");
        if completed {
            AfterKill::Completed
        } else if !listed.is_empty() {
            AfterKill::Visible
        } else if self
            .store
            .join("images")
            .join(digest_hex(&self.id))
            .exists()
        {
            AfterKill::PublishedUnindexed
        } else if !entries_named(&tmp, "", true).is_empty() {
            AfterKill::Staging
        } else if !entries_named(&tmp, "import-", false).is_empty() {
            AfterKill::LockOnly
        } else {
            AfterKill::Nothing
        }
    }

    /// Visible is nothing or exactly the complete image, and whatever is visible verifies.
    fn check_visible(&self, out: &Output, what: &str, ctx: &str) -> Vec<Listed> {
        let listed = list(&self.store);
        assert!(
            listed.is_empty() || listed == std::slice::from_ref(&self.expected),
            "{ctx}: after the kill of {what}, image list shows {listed:?}\n{}\n{}",
            show(what, out),
            dump(&self.store)
        );
        verify_ok(&self.store, ctx);
        listed
    }

    /// One round and everything that must hold after it; returns what each kill left.
    fn round(&self, r: &Round, ctx: &str) -> Vec<AfterKill> {
        let (store, id, expected) = (&self.store, &self.id, &self.expected);
        let aci = self.aci.to_str().expect("UTF-8 path");
        let mut outcomes = Vec::new();
        for at in &r.fetch_kills {
            let ctx = format!("{ctx}, fetch killed at {at:?}");
            let out = self.run_killed(&["fetch", aci], *at, &ctx);
            let completed = out.status.success();
            if completed {
                assert_fetched(&out, id, store, &ctx);
            }
            let listed = self.check_visible(&out, "fetch", &ctx);
            if completed {
                assert_eq!(
                    listed,
                    std::slice::from_ref(expected),
                    "{ctx}\n{}",
                    dump(store)
                );
            }
            outcomes.push(self.classify(completed, &listed));
        }
        // The same file imports normally afterwards, to the right ID.
        assert_fetched(&fetch(store, &self.aci), id, store, ctx);
        verify_ok(store, ctx);
        assert_eq!(
            list(store),
            std::slice::from_ref(expected),
            "{ctx}\n{}",
            dump(store)
        );
        // gc removes whatever the kills left (no staging or trash directory, no tree without an
        // index row, no unused blob) and keeps the fresh image.
        assert_ok(&gc(store, "24h"), &format!("{ctx}: image gc"), store);
        assert_collected(store, ctx);
        assert_eq!(
            list(store),
            std::slice::from_ref(expected),
            "{ctx}\n{}",
            dump(store)
        );
        // Back to an empty store: `image rm`, perhaps killed too (then gc finishes its work).
        if let Some(at) = r.rm_kill {
            let ctx = format!("{ctx}, image rm killed at {at:?}");
            let out = self.run_killed(&["image", "rm", id], at, &ctx);
            let listed = self.check_visible(&out, "image rm", &ctx);
            outcomes.push(self.classify(out.status.success(), &listed));
            if !listed.is_empty() {
                assert_ok(&run(store, &["image", "rm", id]), "image rm", store);
            }
            assert_ok(&gc(store, "24h"), &format!("{ctx}: image gc"), store);
            assert_collected(store, &ctx);
        } else {
            assert_ok(
                &run(store, &["image", "rm", id]),
                &format!("{ctx}: image rm"),
                store,
            );
        }
        assert!(list(store).is_empty(), "{ctx}\n{}", dump(store));
        let blobs = cas_blobs(store);
        assert!(
            blobs.is_empty(),
            "{ctx}: image rm left {} blobs in cas/\n{}",
            blobs.len(),
            dump(store)
        );
        assert!(
            entries_named(&store.join("images"), "", false).is_empty(),
            "{ctx}: image rm left its tree\n{}",
            dump(store)
        );
        outcomes
    }
}

/// The syscall-exact kill points (with `strace`): each phase boundary of the commit, re-imports
/// over what a kill left, and `image rm` killed midway.
fn syscall_rounds() -> Vec<Round> {
    use KillAt::Syscall as S;
    let round = |fetch_kills: Vec<KillAt>, rm_kill, why| Round {
        fetch_kills,
        rm_kill,
        why,
    };
    vec![
        round(
            vec![S("flock", 3)],
            None,
            "staged, waiting for the image lock",
        ),
        round(
            vec![S("linkat", 1000)],
            None,
            "halfway through the dedup into cas/",
        ),
        round(vec![S("syncfs", 1)], None, "deduplicated, before the sync"),
        round(
            vec![S("rename", 1)],
            None,
            "synced, before the rename into images/",
        ),
        round(
            vec![S("fsync", 2)],
            Some(S("rename", 1)),
            "renamed into images/, before the index row; rm: row gone, tree not moved",
        ),
        round(
            vec![S("unlink", 1)],
            Some(S("unlinkat", 500)),
            "index row written, before the staging lock's removal; rm: tree half deleted",
        ),
        round(
            vec![S("fsync", 2), S("rename", 2)],
            Some(S("unlink", 100)),
            "re-import over a leftover tree: moved aside and deleted, killed before its own \
             rename; rm: blobs half freed",
        ),
        round(
            vec![S("fsync", 2), S("unlinkat", 500)],
            None,
            "re-import over a leftover tree, killed while deleting it",
        ),
    ]
}

/// Test 1: `kill -9` of `fetch` at many points of an import never leaves a visible partial image,
/// never blocks a later import of the same file, and leaves only what `image gc` removes.
///
/// Kill points: 22 delays stratified over [1 ms, the whole import] and 3 more in its last third
/// (where the commit is), jittered from the seed; plus, when `strace` is installed, kills on
/// entering chosen syscalls, which hit each step of the commit exactly (delays rarely land in
/// its short windows), chain kills of re-imports, and kill `image rm` midway.
#[test]
fn sigkill_during_import_never_leaves_a_partial_image() {
    if !root_or_skip() {
        return;
    }
    let seed = seed();
    let work = scratch();
    let spec = ImageSpec::big("example.com/t-kill", "kill", 2000, 20 << 20);
    let tar = spec.tar();
    let rig = KillRig {
        store: work.path().join("store"),
        aci: write_file(work.path(), "kill.aci", &gzip(&tar, 1)),
        id: image_id(&tar),
        expected: Listed {
            id: image_id(&tar),
            name: spec.name.clone(),
            size: tar.len() as u64,
        },
    };
    let (store, id) = (&rig.store, &rig.id);

    // How long a whole import takes here (the faster of two runs).
    let mut full = Duration::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let out = fetch(store, &rig.aci);
        full = full.min(t.elapsed());
        assert_fetched(&out, id, store, "measuring the import");
        assert_ok(&run(store, &["image", "rm", id]), "image rm", store);
    }
    assert_ok(&gc(store, "24h"), "image gc", store);
    assert!(cas_blobs(store).is_empty(), "{}", dump(store));

    // Watch the store from the side the whole time: `image list` shows nothing or exactly the
    // complete image, never anything else.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let seen_visible = Arc::new(AtomicUsize::new(0));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let observer = {
        let (stop, seen, seen_visible, problems) = (
            Arc::clone(&stop),
            Arc::clone(&seen),
            Arc::clone(&seen_visible),
            Arc::clone(&problems),
        );
        let (store, expected) = (store.clone(), rig.expected.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match try_list(&store) {
                    Ok(l) if l.is_empty() => {}
                    Ok(l) if l == std::slice::from_ref(&expected) => {
                        seen_visible.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(l) => problems
                        .lock()
                        .expect("lock")
                        .push(format!("image list showed {l:?}")),
                    Err(e) => problems.lock().expect("lock").push(e),
                }
                seen.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };

    let mut rng = Rng::new(seed);
    let uniform = 22;
    let mut delays: Vec<Duration> = (0..uniform)
        .map(|i| full.mul_f64((i as f64 + rng.unit()) / uniform as f64))
        .collect();
    delays[0] = Duration::from_millis(1);
    delays.extend((0..3).map(|_| full.mul_f64(0.67 + 0.33 * rng.unit())));
    let mut rounds: Vec<Round> = delays
        .into_iter()
        .map(|d| Round {
            fetch_kills: vec![KillAt::Delay(d)],
            rm_kill: None,
            why: "pseudo-random delay",
        })
        .collect();
    if strace_available() {
        rounds.extend(syscall_rounds());
    } else {
        eprintln!("note: strace is not installed: only the delay kill points run");
    }

    let mut outcomes: BTreeMap<AfterKill, usize> = BTreeMap::new();
    let mut exact: Vec<String> = Vec::new();
    // Staging lock files gc left behind: name → the round that left it.
    let mut orphan_locks: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    for (i, r) in rounds.iter().enumerate() {
        let ctx = format!(
            "seed={seed:#x} round={i} ({}; a whole import took {full:?}; replay with \
             APPC_RELIABILITY_SEED={seed:#x})",
            r.why
        );
        let left = rig.round(r, &ctx);
        for o in &left {
            *outcomes.entry(*o).or_default() += 1;
        }
        if !matches!(r.fetch_kills[0], KillAt::Delay(_)) {
            exact.push(format!("{:?}/{:?} → {left:?}", r.fetch_kills, r.rm_kill));
        }
        for n in entries_named(&store.join("tmp"), "import-", false) {
            if n.ends_with(".lock") {
                orphan_locks.entry(n).or_insert(i);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    observer.join().expect("observer thread");
    let problems = problems.lock().expect("lock").clone();
    eprintln!(
        "kill test: seed {seed:#x}, {} rounds in {:?} (an import takes {full:?}); after the \
         kills: {outcomes:?}; syscall-exact kills: {exact:#?}; the observer listed the store \
         {} times, {} times with the image; staging lock files gc left (name → round): \
         {orphan_locks:?}",
        rounds.len(),
        started.elapsed(),
        seen.load(Ordering::Relaxed),
        seen_visible.load(Ordering::Relaxed),
    );
    assert!(
        problems.is_empty(),
        "seed={seed:#x}: image list, watched during the kills, showed a partial image or failed: \
         {problems:#?}"
    );
}

/// A killed import can leave its staging lock file without its staging directory: killed
/// between the rename into `images/` (or the index row) and `Staging`'s drop, which removes the
/// lock file last, or between `flock` and `mkdir` in `Staging::create`. That is a leftover of a
/// crash like any other, and `gc` must remove it; `remove_leftovers` skips every `*.lock` name
/// and only deletes the lock of a directory it removes, so such files pile up for ever.
#[test]
fn gc_removes_the_leftovers_a_killed_import_can_leave() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    let store = work.path().join("store");
    assert!(list(&store).is_empty()); // creates the store
    let tmp = store.join("tmp");
    // The real thing: killed after its index row, before its staging's drop.
    if strace_available() {
        let spec = ImageSpec::big("example.com/t-left", "left", 20, 40 << 10);
        let tar = spec.tar();
        let id = image_id(&tar);
        let aci = write_file(work.path(), "left.aci", &tar);
        let out = std::process::Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink"])
            .args(["-e", "inject=unlink:signal=KILL:when=1"])
            .arg(env!("CARGO_BIN_EXE_appcctl"))
            .arg("--dir")
            .arg(&store)
            .args(["--insecure-options=image", "fetch"])
            .arg(&aci)
            .output()
            .expect("run strace");
        assert!(!out.status.success(), "{}", show("strace fetch", &out));
        assert_eq!(list_ids(&store), BTreeSet::from([id]), "{}", dump(&store));
        verify_ok(&store, "killed after its index row");
    } else {
        eprintln!("note: strace is not installed: only the simulated leftovers are checked");
    }
    // The same states, made by hand. Killed mid-staging: directory and lock file.
    std::fs::create_dir_all(tmp.join("import-4242-0123456789abcdef/tree/rootfs")).expect("mkdir");
    std::fs::write(tmp.join("import-4242-0123456789abcdef.lock"), b"").expect("write");
    // Killed while removing a tree.
    std::fs::create_dir_all(tmp.join("trash-0123456789abcdef/tree")).expect("mkdir");
    // Killed between flock and mkdir, or between publish and the staging's drop.
    std::fs::write(tmp.join("import-4243-fedcba9876543210.lock"), b"").expect("write");
    let out = gc(&store, "24h");
    assert_ok(&out, "image gc", &store);
    let left = entries_named(&tmp, "", false);
    assert!(
        left.is_empty(),
        "image gc left {left:?} in tmp/\n{}\n{}",
        show("image gc", &out),
        dump(&store)
    );
}

/// `image verify` lists the images, then re-hashes them one by one under the shared store lock,
/// which it releases in between; an `image rm` (or gc) waiting for the exclusive lock gets in
/// there. An image removed meanwhile is gone, not damaged: verify must not report it as
/// "stored tree is damaged" and fail.
#[test]
fn verify_racing_rm_reports_no_false_damage() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    let store = work.path().join("store");
    // One big image that takes a while to re-hash, listed first (older, or equal time and a
    // smaller ID), then small ones that `image rm` removes while the big one is verified.
    let big_tar = ImageSpec::big("example.com/t-vbig", "vbig", 1000, 24 << 20).tar();
    let big_id = image_id(&big_tar);
    let big = write_file(work.path(), "vbig.aci", &gzip(&big_tar, 1));
    assert_fetched(&fetch(&store, &big), &big_id, &store, "big image");
    let t = Instant::now();
    verify_ok(&store, "alone");
    let verify_time = t.elapsed();
    let mut small = Vec::new();
    let mut k = 0;
    while small.len() < 4 {
        k += 1;
        let spec = ImageSpec::big(&format!("example.com/t-vsmall{k}"), "vsmall", 3, 3000);
        let tar = spec.tar();
        let id = image_id(&tar);
        if id > big_id {
            small.push((id, write_file(work.path(), &format!("vs{k}.aci"), &tar)));
        }
    }
    let mut failures = Vec::new();
    for round in 0..5 {
        for (id, file) in &small {
            assert_fetched(&fetch(&store, file), id, &store, "small image");
        }
        let verify = appcctl(&store)
            .args(["image", "verify"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn image verify");
        std::thread::sleep(verify_time / 4);
        let mut rm_args = vec!["image", "rm"];
        rm_args.extend(small.iter().map(|s| s.0.as_str()));
        assert_ok(&run(&store, &rm_args), "image rm", &store);
        let out = verify.wait_with_output().expect("wait for image verify");
        if !out.status.success() {
            failures.push(format!("round {round}: {}", show("image verify", &out)));
        }
    }
    assert!(
        failures.is_empty(),
        "image verify, racing image rm, reported removed images as damaged in {} of 5 rounds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Several `appcctl` processes opening a store that does not exist yet (8 `fetch` units started
/// at boot on a fresh machine, say) must all succeed. The first open switches the new index to
/// WAL; a concurrent `PRAGMA journal_mode=WAL` gets SQLITE_BUSY straight away (SQLite skips the
/// busy handler when waiting could deadlock), so `busy_timeout` alone does not cover it.
#[test]
fn concurrent_first_use_of_a_fresh_store() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    // Up to 100 rounds of 8 processes: the race is lost in roughly one round of ten.
    let mut failures = Vec::new();
    let mut rounds = 0;
    while rounds < 100 && failures.is_empty() {
        let store = work.path().join(format!("store{rounds}"));
        let children: Vec<_> = (0..8)
            .map(|_| {
                appcctl(&store)
                    .args(["image", "list", "--format", "json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn image list")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait for image list");
            if !out.status.success() {
                failures.push(show("image list", &out));
            }
        }
        rounds += 1;
    }
    assert!(
        failures.is_empty(),
        "round {rounds}: {} of 8 processes opening a fresh store at once failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Test 2: 8 imports at once into an empty store — 4 of the same image, 4 of images sharing most
/// files with it. All succeed with the right IDs, and every shared file is stored once.
#[test]
fn eight_concurrent_imports_share_the_cas() {
    if !root_or_skip() {
        return;
    }
    const FILES: usize = 600;
    const STEP: usize = 10; // every 10th file differs between the images
    let work = scratch();
    let a = ImageSpec::big("example.com/t-a", "conc-a", FILES, 6 << 20);
    let specs: Vec<ImageSpec> = std::iter::once(a.clone())
        .chain(
            ["b", "c", "d", "e"]
                .iter()
                .map(|n| a.variant(&format!("example.com/t-{n}"), &format!("conc-{n}"), STEP)),
        )
        .collect();
    let mut ids = Vec::new();
    let mut files = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let tar = s.tar();
        ids.push(image_id(&tar));
        files.push(write_file(
            work.path(),
            &format!("img{i}.aci"),
            &gzip(&tar, 1),
        ));
    }
    // The store exists (its index is in WAL mode already): creating a store concurrently is
    // `concurrent_first_use_of_a_fresh_store`'s business.
    let store = work.path().join("store");
    assert!(list(&store).is_empty());
    let jobs: Vec<usize> = vec![0, 1, 0, 2, 0, 3, 0, 4];
    let children: Vec<_> = jobs
        .iter()
        .map(|&j| (j, spawn_fetch(&store, &files[j])))
        .collect();
    let mut failures = Vec::new();
    for (j, child) in children {
        let out = child.wait_with_output().expect("wait for fetch");
        if !out.status.success() || text(&out.stdout).trim() != ids[j] {
            failures.push(format!(
                "image {j} (expected {}): {}",
                ids[j],
                show("fetch", &out)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "concurrent imports failed:\n{}\n{}",
        failures.join("\n"),
        dump(&store)
    );
    let listed = list_ids(&store);
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(listed, want, "{}", dump(&store));
    verify_ok(&store, "after 8 concurrent imports");
    // Successful imports clean up after themselves, even the three that found A committed.
    let tmp_left = entries_named(&store.join("tmp"), "", false);
    assert!(
        tmp_left.is_empty(),
        "successful imports left {tmp_left:?} in tmp/\n{}",
        dump(&store)
    );

    // Dedup: a file shared by all five images is one inode (5 trees + the CAS link); a file of
    // one image only has 2 links.
    let tree = |k: usize| {
        store
            .join("images")
            .join(digest_hex(&ids[k]))
            .join("tree/rootfs")
    };
    for (n, e) in a.entries.iter().enumerate() {
        let inodes: Vec<(u64, u64)> = (0..specs.len())
            .map(|k| {
                let m = std::fs::symlink_metadata(tree(k).join(&e.path))
                    .unwrap_or_else(|err| panic!("{}: {err}\n{}", e.path, dump(&store)));
                (m.ino(), m.nlink())
            })
            .collect();
        let distinct: BTreeSet<u64> = inodes.iter().map(|x| x.0).collect();
        if n % STEP == 0 {
            assert_eq!(distinct.len(), 5, "{}: {inodes:?}", e.path);
            assert!(inodes.iter().all(|x| x.1 == 2), "{}: {inodes:?}", e.path);
        } else {
            assert_eq!(distinct.len(), 1, "{} is not shared: {inodes:?}", e.path);
            assert_eq!(inodes[0].1, 6, "{}: link count {inodes:?}", e.path);
        }
    }
    let mut all_files = 0;
    let mut inodes = BTreeSet::new();
    for id in &ids {
        for (_, m) in regular_files(&store.join("images").join(digest_hex(id)).join("tree")) {
            all_files += 1;
            inodes.insert(m.ino());
        }
    }
    let unique_per_image = FILES.div_ceil(STEP) + 1; // + the manifest
    let expected_inodes = (FILES - FILES.div_ceil(STEP)) + 5 * unique_per_image;
    assert_eq!(all_files, 5 * (FILES + 1));
    assert_eq!(
        inodes.len(),
        expected_inodes,
        "distinct inodes in 5 trees of {all_files} files\n{}",
        dump(&store)
    );

    let out = gc(&store, "24h");
    assert_ok(&out, "image gc", &store);
    assert!(
        !text(&out.stdout).contains("removed"),
        "{}",
        show("image gc", &out)
    );
    assert_collected(&store, "after 8 concurrent imports");
    let blobs = cas_blobs(&store);
    assert_eq!(blobs.len(), expected_inodes, "{}", dump(&store));
    assert_eq!(list_ids(&store), want);
}

/// Starts the fetches of `files` (with `stagger` between starts) while `gc --grace-period
/// <grace>` runs `gc_runs` times back to back; returns the fetch outputs (in order) and the gc
/// outputs. While any of it runs, `check` is called in a loop.
fn race_imports_with_gc(
    store: &Path,
    files: &[PathBuf],
    stagger: Duration,
    grace: &str,
    gc_runs: usize,
    check: &(dyn Fn() -> Option<String> + Sync),
) -> (Vec<Output>, Vec<Output>, Vec<String>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let gcs = s.spawn(|| {
            (0..gc_runs)
                .map(|_| {
                    let out = gc(store, grace);
                    std::thread::sleep(Duration::from_millis(20));
                    out
                })
                .collect::<Vec<_>>()
        });
        let checker = s.spawn(|| {
            let mut problems = Vec::new();
            while !done.load(Ordering::Relaxed) {
                problems.extend(check());
                std::thread::sleep(Duration::from_millis(30));
            }
            problems
        });
        let mut children = Vec::new();
        for f in files {
            children.push(spawn_fetch(store, f));
            std::thread::sleep(stagger);
        }
        let fetches: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for fetch"))
            .collect();
        let gcs = gcs.join().expect("gc thread");
        done.store(true, Ordering::Relaxed);
        let problems = checker.join().expect("checker thread");
        (fetches, gcs, problems)
    })
}

/// Test 3: `image gc` racing imports. gc takes the store lock exclusively and imports hold it
/// shared, so gc never touches a running import: every import succeeds, nothing visible is ever
/// incomplete, and a gc started during an import returns only after that import committed.
#[test]
fn gc_racing_imports_never_breaks_them() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    let store = work.path().join("store");
    let base = ImageSpec::big("example.com/t-g0", "gc-0", 600, 6 << 20);
    let mut specs = vec![base.clone()];
    for k in 1..=9 {
        specs.push(base.variant(&format!("example.com/t-g{k}"), &format!("gc-{k}"), 3 + k));
    }
    let mut ids = Vec::new();
    let mut files = Vec::new();
    let mut sizes = BTreeMap::new();
    for (k, s) in specs.iter().enumerate() {
        let tar = s.tar();
        let id = image_id(&tar);
        sizes.insert(id.clone(), tar.len() as u64);
        ids.push(id);
        files.push(write_file(
            work.path(),
            &format!("g{k}.aci"),
            &gzip(&tar, 1),
        ));
    }
    // Phase 2's image: big enough that gc starts while it still imports.
    let big_tar = ImageSpec::big("example.com/t-gbig", "gc-big", 1500, 15 << 20).tar();
    let big_id = image_id(&big_tar);
    sizes.insert(big_id.clone(), big_tar.len() as u64);
    let big_file = write_file(work.path(), "gbig.aci", &gzip(&big_tar, 1));
    assert_fetched(&fetch(&store, &files[0]), &ids[0], &store, "base image");

    // Phase 1: gc with a 1 h grace period never removes a fresh image, so all imports stay.
    // Meanwhile every visible image must be a known, complete one.
    let check = || -> Option<String> {
        let listed = match try_list(&store) {
            Ok(l) => l,
            Err(e) => return Some(e),
        };
        if let Some(bad) = listed.iter().find(|l| sizes.get(&l.id) != Some(&l.size)) {
            return Some(format!("unknown or partial image listed: {bad:?}"));
        }
        let out = run(&store, &["image", "verify"]);
        (!out.status.success()).then(|| show("image verify during the race", &out))
    };
    let (fetches, gcs, problems) = race_imports_with_gc(
        &store,
        &files[1..6],
        Duration::from_millis(150),
        "1h",
        20,
        &check,
    );
    for (k, out) in fetches.iter().enumerate() {
        assert_fetched(
            out,
            &ids[k + 1],
            &store,
            &format!("phase 1, image {}", k + 1),
        );
    }
    for out in &gcs {
        assert_ok(out, "image gc --grace-period 1h during imports", &store);
        assert!(
            !text(&out.stdout).contains("removed"),
            "{}",
            show("gc", out)
        );
    }
    assert!(problems.is_empty(), "during the race: {problems:#?}");
    let want: BTreeSet<String> = ids[..6].iter().cloned().collect();
    assert_eq!(list_ids(&store), want, "{}", dump(&store));
    verify_ok(&store, "after phase 1");
    assert_ok(&gc(&store, "1h"), "image gc", &store);
    assert_collected(&store, "after phase 1");

    // Phase 2: a gc started while an import runs waits for it. With a 0 s grace period it
    // removes the images imported before (they were used more than 0 s ago) and possibly the
    // new one, but only once that import has committed: when gc returns, the import's staging
    // directory is gone and its image is either listed or reported removed by this gc.
    std::thread::sleep(Duration::from_millis(1100)); // phase 1 images are now ≥ 1 s old
    let mut child = spawn_fetch(&store, &big_file);
    let t = Instant::now();
    while entries_named(&store.join("tmp"), "import-", true).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the import never staged"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let import_was_running = child.try_wait().expect("try_wait").is_none();
    let gc_out = gc(&store, "0s");
    let staging_after_gc = entries_named(&store.join("tmp"), "import-", true);
    let listed_after_gc = list_ids(&store);
    let out = child.wait_with_output().expect("wait for fetch");
    assert_ok(
        &gc_out,
        "image gc --grace-period 0s during an import",
        &store,
    );
    assert_fetched(&out, &big_id, &store, "import during gc 0s");
    assert!(
        staging_after_gc.is_empty(),
        "gc returned while the import was still staging: {staging_after_gc:?}\n{}\n{}",
        show("gc", &gc_out),
        dump(&store)
    );
    let removed: BTreeSet<String> = text(&gc_out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("removed "))
        .map(str::to_owned)
        .collect();
    assert!(
        listed_after_gc.contains(&big_id) || removed.contains(&big_id),
        "the image whose import gc waited for is neither listed nor reported removed\n{}\n{}",
        show("gc", &gc_out),
        dump(&store)
    );
    assert!(
        want.iter().all(|id| removed.contains(id)),
        "gc 0s kept images unused for over a second\n{}",
        show("gc", &gc_out)
    );
    assert!(
        import_was_running,
        "the import finished before gc started: the case is vacuous; make the image bigger"
    );
    verify_ok(&store, "after phase 2");
    assert_collected(&store, "after phase 2");

    // Phase 3: gc 0s in a loop while new images import. Images may be collected as soon as
    // their import committed, never before: no import fails, nothing visible is incomplete,
    // and every image ends up listed or reported removed. `image verify` runs alongside; when
    // it calls an image damaged that gc removed while it ran, that is the race
    // `verify_racing_rm_reports_no_false_damage` pins down, counted here and not failed twice.
    let verify_races = AtomicUsize::new(0);
    let check = || -> Option<String> {
        let listed = match try_list(&store) {
            Ok(l) => l,
            Err(e) => return Some(e),
        };
        if let Some(bad) = listed.iter().find(|l| sizes.get(&l.id) != Some(&l.size)) {
            return Some(format!("unknown or partial image listed: {bad:?}"));
        }
        let out = run(&store, &["image", "verify"]);
        if out.status.success() {
            return None;
        }
        let now_listed = match try_list(&store) {
            Ok(l) => l,
            Err(e) => return Some(e),
        };
        let stderr = text(&out.stderr);
        let damaged: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("stored tree is damaged"))
            .filter_map(|l| l.split(':').next())
            .collect();
        let all_removed = !damaged.is_empty()
            && damaged
                .iter()
                .all(|id| now_listed.iter().all(|l| l.id != *id));
        if all_removed {
            verify_races.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(show("image verify during the race", &out))
        }
    };
    let (fetches, gcs, problems) = race_imports_with_gc(
        &store,
        &files[6..],
        Duration::from_millis(150),
        "0s",
        20,
        &check,
    );
    eprintln!(
        "gc race: image verify called an image damaged that gc had just removed {} times",
        verify_races.load(Ordering::Relaxed)
    );
    let mut removed = BTreeSet::new();
    for out in &gcs {
        assert_ok(out, "image gc --grace-period 0s during imports", &store);
        removed.extend(
            text(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("removed "))
                .map(str::to_owned),
        );
    }
    for (k, out) in fetches.iter().enumerate() {
        assert_fetched(
            out,
            &ids[k + 6],
            &store,
            &format!("phase 3, image {}", k + 6),
        );
    }
    assert!(problems.is_empty(), "during the race: {problems:#?}");
    let listed = list_ids(&store);
    for id in &ids[6..] {
        assert!(
            listed.contains(id) || removed.contains(id),
            "{id} was imported, is not listed, and no gc reported removing it\n{}",
            dump(&store)
        );
    }
    verify_ok(&store, "after phase 3");
    assert_ok(&gc(&store, "24h"), "image gc", &store);
    assert_collected(&store, "after phase 3");
}

/// Test 4: `image rm` frees exactly the blobs no other image uses.
#[test]
fn rm_frees_only_the_blobs_no_other_image_uses() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    let store = work.path().join("store");
    let p = ImageSpec::big("example.com/t-p", "rm-p", 100, 400 << 10);
    let q = p.variant("example.com/t-q", "rm-q", 10); // 90 % of the files shared
    let (p_tar, q_tar) = (p.tar(), q.tar());
    let (p_id, q_id) = (image_id(&p_tar), image_id(&q_tar));
    let p_file = write_file(work.path(), "p.aci", &gzip(&p_tar, 1));
    let q_file = write_file(work.path(), "q.aci", &q_tar); // uncompressed: that path too
    assert_fetched(&fetch(&store, &p_file), &p_id, &store, "import P");
    assert_fetched(&fetch(&store, &q_file), &q_id, &store, "import Q");

    let digests = |s: &ImageSpec| -> BTreeSet<String> {
        s.file_contents()
            .into_iter()
            .map(sha256_hex)
            .chain(std::iter::once(sha256_hex(s.manifest().as_bytes())))
            .collect()
    };
    let (p_set, q_set) = (digests(&p), digests(&q));
    let cas_contents = || -> BTreeMap<String, u64> {
        cas_blobs(&store)
            .into_iter()
            .map(|(path, nlink, _)| {
                let data = std::fs::read(&path).expect("read blob");
                (sha256_hex(&data), nlink)
            })
            .collect()
    };
    let both = cas_contents();
    let union: BTreeSet<String> = p_set.union(&q_set).cloned().collect();
    assert_eq!(both.len(), 112, "90 shared + 2 × 10 own + 2 manifests");
    assert_eq!(both.keys().cloned().collect::<BTreeSet<_>>(), union);
    for (d, nlink) in &both {
        let users = u64::from(p_set.contains(d)) + u64::from(q_set.contains(d));
        assert_eq!(*nlink, users + 1, "blob {d}");
    }

    assert_ok(&run(&store, &["image", "rm", &p_id]), "image rm P", &store);
    assert_eq!(list_ids(&store), BTreeSet::from([q_id.clone()]));
    verify_ok(&store, "after rm P");
    let after = cas_contents();
    assert_eq!(after.len(), 101, "{}", dump(&store));
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        q_set,
        "cas/ after rm P must hold exactly Q's blobs\n{}",
        dump(&store)
    );
    assert!(after.values().all(|n| *n == 2), "{after:?}");
    assert!(!store.join("images").join(digest_hex(&p_id)).exists());

    assert_ok(&run(&store, &["image", "rm", &q_id]), "image rm Q", &store);
    assert!(list(&store).is_empty());
    let left = cas_blobs(&store);
    assert!(
        left.is_empty(),
        "{} blobs left\n{}",
        left.len(),
        dump(&store)
    );
    assert!(
        regular_files(&store.join("cas")).is_empty(),
        "{}",
        dump(&store)
    );
    assert!(entries_named(&store.join("images"), "", false).is_empty());
    assert!(entries_named(&store.join("tmp"), "", true).is_empty());
}

/// An image with the entry kinds that need extension headers or padding: long names (GNU
/// long-name entries), a long symlink target, a hard link, empty and odd-sized files.
fn export_spec() -> ImageSpec {
    let long_dir = "a-rather-long-directory-name-that-goes-on/and-on-and-on-beyond-the-ustar-limit";
    let mut entries = vec![
        Entry {
            path: "etc/hostname".into(),
            kind: Kind::File(b"byte-exact\n".to_vec()),
        },
        Entry {
            path: "empty".into(),
            kind: Kind::File(Vec::new()),
        },
        Entry {
            path: format!("{long_dir}/with-a-file-name-long-enough-too.txt"),
            kind: Kind::File(file_content("export", 1, 1537)),
        },
        Entry {
            path: "bin/link-to-long".into(),
            kind: Kind::Symlink(format!(
                "../{long_dir}/with-a-file-name-long-enough-too.txt"
            )),
        },
        Entry {
            path: "bin/hard".into(),
            kind: Kind::HardLink("etc/hostname".into()),
        },
    ];
    for i in 0..50 {
        entries.push(Entry {
            path: format!("data/blob{i:02}"),
            kind: Kind::File(file_content("export", 100 + i, 511 + 97 * i)),
        });
    }
    ImageSpec {
        name: "example.com/t-export".into(),
        entries,
    }
}

fn compress_with(data: &[u8], codec: &str) -> Vec<u8> {
    use std::io::Write;
    match codec {
        "none" => data.to_vec(),
        "gzip-1" => gzip(data, 1),
        "gzip-9" => gzip(data, 9),
        "gzip-multi" => {
            // Two concatenated gzip members (`cat a.gz b.gz`), split mid-header.
            let cut = 700.min(data.len());
            let mut v = gzip(&data[..cut], 6);
            v.extend(gzip(&data[cut..], 6));
            v
        }
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).expect("bzip2");
            e.finish().expect("bzip2")
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).expect("xz");
            e.finish().expect("xz")
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        other => panic!("unknown codec {other}"),
    }
}

/// Test 5: the same tar in any compression imports to one ID (the SHA-512 of the tar), and
/// `image export` gives back that tar byte for byte, including record padding and trailing bytes
/// after the end-of-archive blocks.
#[test]
fn export_is_byte_exact_across_compressions_and_padding() {
    if !root_or_skip() {
        return;
    }
    let work = scratch();
    let store = work.path().join("store");
    let plain = export_spec().tar();
    // GNU tar pads the archive with zeros to its 10240-byte record size.
    let mut padded = plain.clone();
    padded.resize(plain.len().div_ceil(10240) * 10240 + 10240, 0);
    // Junk after the end-of-archive blocks (a tool appending a signature, say).
    let mut trailing = plain.clone();
    trailing.extend(std::iter::repeat_n(b"trailing garbage\n".as_slice(), 300).flatten());
    let mut runs: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for codec in [
        "none",
        "gzip-1",
        "gzip-9",
        "gzip-multi",
        "bzip2",
        "xz",
        "zstd",
    ] {
        runs.push((
            format!("plain tar, {codec}"),
            plain.clone(),
            compress_with(&plain, codec),
        ));
    }
    for codec in ["none", "gzip-1", "zstd"] {
        runs.push((
            format!("tar padded to 10240-byte records, {codec}"),
            padded.clone(),
            compress_with(&padded, codec),
        ));
        runs.push((
            format!("tar with trailing garbage, {codec}"),
            trailing.clone(),
            compress_with(&trailing, codec),
        ));
    }
    if let Some(gnu) = gnu_tar_archive(work.path()) {
        runs.push(("made by GNU tar".into(), gnu.clone(), gnu.clone()));
        runs.push(("made by GNU tar, gzip-1".into(), gnu.clone(), gzip(&gnu, 1)));
    }

    for (k, (what, tar, file)) in runs.iter().enumerate() {
        let id = image_id(tar);
        let path = write_file(work.path(), &format!("e{k}.aci"), file);
        assert_fetched(&fetch(&store, &path), &id, &store, what);
        let out_path = work.path().join(format!("export{k}.aci"));
        let out = run(
            &store,
            &[
                "image",
                "export",
                &id,
                out_path.to_str().expect("UTF-8 path"),
            ],
        );
        assert_ok(&out, &format!("{what}: image export"), &store);
        let exported = std::fs::read(&out_path).expect("read the export");
        assert_eq!(
            image_id(&exported),
            id,
            "{what}: the export's sha512 is not the image ID (export {} bytes, tar {} bytes, \
             first difference at {:?})",
            exported.len(),
            tar.len(),
            exported.iter().zip(tar.iter()).position(|(x, y)| x != y)
        );
        assert!(exported == *tar, "{what}: export differs from the tar");
    }
    // The archive's hard link is one inode in the tree, after dedup re-linked it.
    let rootfs = store
        .join("images")
        .join(digest_hex(&image_id(&plain)))
        .join("tree/rootfs");
    let ino = |p: &str| {
        std::fs::symlink_metadata(rootfs.join(p))
            .map(|m| m.ino())
            .unwrap_or_else(|e| panic!("{p}: {e}\n{}", dump(&store)))
    };
    assert_eq!(ino("bin/hard"), ino("etc/hostname"), "{}", dump(&store));
    let distinct: BTreeSet<String> = runs.iter().map(|r| image_id(&r.1)).collect();
    assert_eq!(list_ids(&store), distinct, "{}", dump(&store));
    verify_ok(&store, "after the export cases");
}

/// An ACI written by the system's GNU tar (its own header layout and record padding), if there
/// is one.
fn gnu_tar_archive(dir: &Path) -> Option<Vec<u8>> {
    let src = dir.join("gnu-src");
    std::fs::create_dir_all(src.join("rootfs/usr/share/doc")).ok()?;
    std::fs::write(
        src.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/t-gnutar"}"#,
    )
    .ok()?;
    std::fs::write(
        src.join("rootfs/usr/share/doc/README"),
        b"made by GNU tar\n",
    )
    .ok()?;
    std::fs::write(
        src.join("rootfs/usr/share/doc/big"),
        file_content("gnutar", 0, 70_000),
    )
    .ok()?;
    let out = dir.join("gnu.tar");
    let status = std::process::Command::new("tar")
        .arg("--format=gnu")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&out)
        .arg("manifest")
        .arg("rootfs")
        .status();
    match status {
        Ok(s) if s.success() => std::fs::read(&out).ok(),
        _ => {
            eprintln!("note: no usable GNU tar; skipping its case");
            None
        }
    }
}
