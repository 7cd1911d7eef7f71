//! Pods on disk through the library API: create/get/list, names, liveness from the flock, gc,
//! crash leftovers and the state machine (src/pod, reference/rkt.md §2.6, §2.11).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use appc_pod::pod::{PodError, PodState, PodStore, now, transition};
use appc_pod::schema::{AcName, PodManifest, PodUuid};

const HOUR: u64 = 3600;

fn manifest(app: &str) -> PodManifest {
    let id = format!("sha512-{}", "ab".repeat(64));
    let text = format!(
        r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{{"name":"{app}","image":{{"name":"example.com/{app}","id":"{id}"}}}}]}}"#
    );
    PodManifest::parse(&text).expect("test manifest").value
}

fn store() -> (tempfile::TempDir, PodStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PodStore::open(dir.path()).expect("open store");
    (dir, store)
}

fn name(s: &str) -> Option<AcName> {
    Some(AcName::parse(s).expect("test name"))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

fn states(store: &PodStore) -> Vec<(PodUuid, PodState)> {
    store
        .list()
        .expect("list")
        .into_iter()
        .map(|i| (i.uuid, i.state))
        .collect()
}

/// Moves a fresh pod to `to` through valid transitions, holding its lock while doing so.
fn drive(store: &PodStore, pod: &appc_pod::pod::Pod, path: &[PodState]) {
    let lock = pod.lock_exclusive().expect("lock");
    for s in path {
        store.set_state(pod, &lock, *s).expect("set state");
    }
}

#[test]
fn create_writes_files_with_modes_and_round_trips_the_manifest() {
    let (_d, store) = store();
    let m = manifest("web");
    let pod = store.create(name("web"), &m).unwrap();
    let dir = pod.dir();
    assert_eq!(mode(dir), 0o750);
    assert_eq!(mode(&dir.join("pod.json")), 0o640);
    assert_eq!(mode(&dir.join("state.json")), 0o640);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    let text = fs::read_to_string(dir.join("pod.json")).unwrap();
    assert_eq!(PodManifest::parse(&text).unwrap().value, m);
    assert_eq!(pod.manifest().unwrap(), m);
    let link = store.pods_dir().join("names/web");
    assert_eq!(
        fs::read_link(link).unwrap().to_str().unwrap(),
        format!("../{}", pod.uuid())
    );
    let rec = pod.record().unwrap();
    assert_eq!(rec.state, PodState::Prepared);
    assert_eq!(rec.name, name("web"));
    assert!((now() - rec.created).abs() < 60);
    let leftovers: Vec<_> = fs::read_dir(dir).unwrap().collect();
    assert_eq!(leftovers.len(), 3, "no temp files left behind");
}

#[test]
fn get_by_uuid_prefix_and_name() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    let uuid = pod.uuid().to_string();
    assert_eq!(store.get(&uuid).unwrap().uuid(), pod.uuid());
    assert_eq!(store.get(&uuid.to_uppercase()).unwrap().uuid(), pod.uuid());
    assert_eq!(store.get(&uuid[..4]).unwrap().uuid(), pod.uuid());
    assert_eq!(store.get("web").unwrap().uuid(), pod.uuid());
    assert!(matches!(
        store.get(&uuid[..3]),
        Err(PodError::PrefixTooShort { .. })
    ));
    assert!(matches!(store.get("nope"), Err(PodError::NotFound { .. })));
    let other = PodUuid::new_random().to_string();
    assert!(matches!(store.get(&other), Err(PodError::NotFound { .. })));
}

#[test]
fn ambiguous_prefix_is_refused() {
    let (_d, store) = store();
    // A second pod whose uuid shares its first 8 characters with a real one.
    let pod = store.create(None, &manifest("web")).unwrap();
    let uuid = pod.uuid().to_string();
    let twin = format!("{}{}", &uuid[..9], "0000-4000-8000-000000000001");
    let twin_dir = store.pods_dir().join(&twin);
    fs::create_dir(&twin_dir).unwrap();
    let rec = pod.record().unwrap();
    let mut twin_rec = serde_json::to_value(&rec).unwrap();
    twin_rec["uuid"] = serde_json::json!(twin);
    twin_rec["name"] = serde_json::Value::Null;
    fs::write(twin_dir.join("state.json"), twin_rec.to_string()).unwrap();
    match store.get(&uuid[..8]) {
        Err(PodError::Ambiguous { count: 2, .. }) => {}
        other => panic!("expected ambiguous, got {other:?}"),
    }
    assert_eq!(store.get(&uuid[..20]).unwrap().uuid(), pod.uuid());
}

#[test]
fn generated_name_comes_from_the_first_app_and_the_uuid() {
    let (_d, store) = store();
    let pod = store.create(None, &manifest("my-app")).unwrap();
    let expected = format!("my-app-{}", &pod.uuid().to_string()[..6]);
    assert_eq!(pod.name().unwrap().as_str(), expected);
    assert_eq!(store.get(&expected).unwrap().uuid(), pod.uuid());
}

#[test]
fn taken_name_is_refused_while_the_pod_lives_and_reusable_after() {
    let (_d, store) = store();
    let first = store.create(name("web"), &manifest("web")).unwrap();
    let err = store.create(name("web"), &manifest("web")).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            PodError::NameTaken {
                state: PodState::Prepared,
                ..
            }
        ),
        "{msg}"
    );
    assert_eq!(
        msg,
        format!(
            "pod name \"web\" is taken by prepared pod {}; pick another --name or remove it",
            first.uuid()
        )
    );
    // Running (lock held): still taken, and the message says running.
    let lock = first.lock_exclusive().unwrap();
    store.set_state(&first, &lock, PodState::Running).unwrap();
    let err = store.create(name("web"), &manifest("web")).unwrap_err();
    assert!(err.to_string().contains("taken by running pod"), "{err}");
    // Exited: still taken (its name identifies it until it is garbage).
    store.set_state(&first, &lock, PodState::Exited).unwrap();
    assert!(matches!(
        store.create(name("web"), &manifest("web")),
        Err(PodError::NameTaken { .. })
    ));
    // Garbage: the name is free again and moves to the new pod.
    store.set_state(&first, &lock, PodState::Garbage).unwrap();
    drop(lock);
    let second = store.create(name("web"), &manifest("web")).unwrap();
    assert_eq!(store.get("web").unwrap().uuid(), second.uuid());
    // Removed: free again.
    store.remove(&second).unwrap();
    assert!(matches!(store.get("web"), Err(PodError::NotFound { .. })));
    let third = store.create(name("web"), &manifest("web")).unwrap();
    assert_eq!(store.get("web").unwrap().uuid(), third.uuid());
    // Only the pods still on disk are listed; a failed create leaves nothing behind.
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn eight_threads_racing_for_one_name_exactly_one_wins() {
    for round in 0..5 {
        let (_d, store) = store();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.create(name("race"), &manifest("web"))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, PodError::NameTaken { .. }), "{e}");
            }
        }
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(store.get("race").unwrap().uuid(), winners[0].uuid());
    }
}

#[test]
fn running_without_a_lock_holder_is_reported_exited() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    let lock = pod.lock_exclusive().unwrap();
    store.set_state(&pod, &lock, PodState::Running).unwrap();
    assert_eq!(states(&store), vec![(pod.uuid(), PodState::Running)]);
    assert!(pod.is_locked().unwrap());
    assert!(!store.info(&pod).unwrap().crashed);
    drop(lock); // the runner died (kill -9 drops the flock the same way)
    let info = store.info(&pod).unwrap();
    assert_eq!((info.state, info.crashed), (PodState::Exited, true));
    assert_eq!(info.record.state, PodState::Running);
    assert_eq!(states(&store), vec![(pod.uuid(), PodState::Exited)]);
    // A crashed pod can be removed.
    store.remove(&pod).unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn remove_refuses_live_pods() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    let lock = pod.lock_exclusive().unwrap();
    store.set_state(&pod, &lock, PodState::Running).unwrap();
    let err = store.remove(&pod).unwrap_err();
    assert!(
        matches!(
            err,
            PodError::CannotRemove {
                state: PodState::Running,
                ..
            }
        ),
        "{err}"
    );
    drop(lock);
    let other = store.create(name("db"), &manifest("db")).unwrap();
    let held = other.lock_exclusive().unwrap();
    assert!(matches!(store.remove(&other), Err(PodError::Busy { .. })));
    drop(held);
    store.remove(&other).unwrap();
    assert!(!other.dir().exists());
    assert_eq!(
        fs::read_dir(store.pods_dir().join("trash"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn set_state_needs_the_pods_own_lock() {
    let (_d, store) = store();
    let a = store.create(name("a"), &manifest("a")).unwrap();
    let b = store.create(name("b"), &manifest("b")).unwrap();
    let lock_b = b.lock_exclusive().unwrap();
    let err = store.set_state(&a, &lock_b, PodState::Running).unwrap_err();
    assert!(matches!(err, PodError::WrongLock { .. }), "{err}");
    assert_eq!(a.record().unwrap().state, PodState::Prepared);
}

#[test]
fn update_records_pid_and_exit_codes() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    let lock = pod.lock_exclusive().unwrap();
    store.set_state(&pod, &lock, PodState::Running).unwrap();
    store
        .update(&pod, &lock, |r| {
            r.init_pid = Some(42);
            r.app_exit_codes.insert("web".into(), 3);
            r.advance(PodState::Exited, now())
        })
        .unwrap();
    let rec = pod.record().unwrap();
    assert_eq!((rec.init_pid, rec.app_exit_codes["web"]), (Some(42), 3));
    assert_eq!(rec.state, PodState::Exited);
    assert!(rec.started.is_some() && rec.exited.is_some());
    let err = store
        .update(&pod, &lock, |r| {
            r.state = PodState::Running;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, PodError::InvalidTransition { .. }), "{err}");
    assert_eq!(pod.record().unwrap().state, PodState::Exited);
}

#[test]
fn gc_marks_exited_past_grace_then_removes_and_frees_the_name() {
    let (_d, store) = store();
    let old = store.create(name("old"), &manifest("web")).unwrap();
    let fresh = store.create(name("fresh"), &manifest("web")).unwrap();
    drive(&store, &old, &[PodState::Running, PodState::Exited]);
    drive(&store, &fresh, &[PodState::Running, PodState::Exited]);
    // Within the grace period nothing happens.
    let report = store.gc(HOUR, 24 * HOUR, now()).unwrap();
    assert!(
        report.marked.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    // Past it, both go; a later `now` is how the test ages them.
    let later = now() + HOUR as i64 + 1;
    let report = store.gc(HOUR, 24 * HOUR, later).unwrap();
    assert_eq!(report.marked.len(), 2, "{report:?}");
    assert_eq!(report.removed.len(), 2, "{report:?}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.pods_dir().join("names/old").exists());
    store.create(name("old"), &manifest("web")).unwrap();
}

#[test]
fn gc_removes_garbage_and_expired_prepared_but_never_a_locked_pod() {
    let (_d, store) = store();
    let garbage = store.create(name("g"), &manifest("web")).unwrap();
    drive(&store, &garbage, &[PodState::Garbage]);
    let prepared = store.create(name("p"), &manifest("web")).unwrap();
    let locked = store.create(name("l"), &manifest("web")).unwrap();
    let running = store.create(name("r"), &manifest("web")).unwrap();
    let run_lock = running.lock_exclusive().unwrap();
    store
        .set_state(&running, &run_lock, PodState::Running)
        .unwrap();
    let held = locked.lock_exclusive().unwrap();

    let report = store.gc(HOUR, 24 * HOUR, now()).unwrap();
    assert_eq!(report.removed, vec![garbage.uuid()]);
    assert!(prepared.dir().exists(), "not expired yet");

    let much_later = now() + 48 * HOUR as i64;
    let report = store.gc(HOUR, 24 * HOUR, much_later).unwrap();
    assert_eq!(report.removed, vec![prepared.uuid()]);
    let mut busy = report.busy.clone();
    busy.sort();
    let mut expect = vec![locked.uuid(), running.uuid()];
    expect.sort();
    assert_eq!(busy, expect);
    assert_eq!(locked.record().unwrap().state, PodState::Prepared);
    assert_eq!(store.info(&running).unwrap().state, PodState::Running);
    drop((held, run_lock));
}

#[test]
fn gc_records_a_crashed_runner_as_exited_and_starts_its_grace_then() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    drive(&store, &pod, &[PodState::Running]); // lock dropped: runner gone
    let t = now() + 10;
    let report = store.gc(HOUR, 24 * HOUR, t).unwrap();
    assert_eq!(report.crashed, vec![pod.uuid()]);
    let rec = pod.record().unwrap();
    assert_eq!((rec.state, rec.exited), (PodState::Exited, Some(t)));
    let report = store.gc(HOUR, 24 * HOUR, t + HOUR as i64).unwrap();
    assert_eq!(report.removed, vec![pod.uuid()]);
}

#[test]
fn crash_leftovers_are_ignored_by_list_and_cleaned_by_gc() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    // A write interrupted between create and rename.
    let tmp = pod.dir().join(".tmp-state.json-deadbeef");
    fs::write(&tmp, b"{ half").unwrap();
    // A create interrupted before state.json, with its name link already made.
    let half = PodUuid::new_random();
    let half_dir = store.pods_dir().join(half.to_string());
    fs::create_dir(&half_dir).unwrap();
    fs::write(half_dir.join("pod.json"), manifest("x").to_canonical_json()).unwrap();
    std::os::unix::fs::symlink(format!("../{half}"), store.pods_dir().join("names/half")).unwrap();
    // A delete interrupted after the rename into trash.
    let trashed = store
        .pods_dir()
        .join("trash")
        .join(PodUuid::new_random().to_string());
    fs::create_dir_all(trashed.join("rootfs/etc")).unwrap();
    // A name claim interrupted between symlink and rename.
    let tmp_link = store.pods_dir().join("names/.tmp-web-0123");
    std::os::unix::fs::symlink("../nowhere", &tmp_link).unwrap();

    assert_eq!(states(&store), vec![(pod.uuid(), PodState::Prepared)]);
    assert!(matches!(
        store.get(&half.to_string()),
        Err(PodError::NotFound { .. })
    ));

    let report = store.gc(HOUR, 24 * HOUR, now()).unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(!tmp.exists());
    assert!(!half_dir.exists());
    assert!(!trashed.exists());
    assert!(fs::symlink_metadata(&tmp_link).is_err());
    assert!(fs::symlink_metadata(store.pods_dir().join("names/half")).is_err());
    assert!(report.leftovers.contains(&tmp), "{report:?}");
    assert_eq!(states(&store), vec![(pod.uuid(), PodState::Prepared)]);
}

#[test]
fn the_name_of_a_half_created_pod_is_free_once_its_creator_died() {
    let (_d, store) = store();
    let half = PodUuid::new_random();
    let half_dir = store.pods_dir().join(half.to_string());
    fs::create_dir(&half_dir).unwrap();
    let link = store.pods_dir().join("names/web");
    std::os::unix::fs::symlink(format!("../{half}"), &link).unwrap();
    // While its creator holds the lock, the name is taken.
    let lock = fs::File::create(half_dir.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let err = store.create(name("web"), &manifest("web")).unwrap_err();
    assert!(
        matches!(
            err,
            PodError::NameTaken {
                state: PodState::Embryo,
                ..
            }
        ),
        "{err}"
    );
    drop(lock);
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    assert_eq!(store.get("web").unwrap().uuid(), pod.uuid());
    assert_eq!(
        fs::read_link(&link).unwrap().to_str().unwrap(),
        format!("../{}", pod.uuid())
    );
    let names: Vec<_> = fs::read_dir(store.pods_dir().join("names"))
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1, "no temp link left behind");
}

#[test]
fn a_half_created_pod_whose_creator_lives_is_left_alone() {
    let (_d, store) = store();
    let uuid = PodUuid::new_random();
    let dir = store.pods_dir().join(uuid.to_string());
    fs::create_dir(&dir).unwrap();
    let lock = fs::File::create(dir.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let report = store.gc(0, 0, now() + 1000).unwrap();
    assert_eq!(report.busy, vec![uuid]);
    assert!(dir.exists());
    drop(lock);
    store.gc(0, 0, now()).unwrap();
    assert!(!dir.exists());
}

#[test]
fn state_machine_table() {
    use PodState::*;
    let allowed = [
        (Embryo, Prepared),
        (Embryo, Garbage),
        (Prepared, Running),
        (Prepared, Garbage),
        (Running, Exited),
        (Exited, Garbage),
    ];
    let uuid = PodUuid::new_random();
    for from in PodState::ALL {
        for to in PodState::ALL {
            let ok = transition(uuid, from, to).is_ok();
            assert_eq!(ok, allowed.contains(&(from, to)), "{from} -> {to}");
        }
    }
    let err = transition(uuid, Garbage, Running).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pod {uuid}: cannot go from garbage to running")
    );
}

#[test]
fn invalid_transitions_through_the_store_change_nothing() {
    let (_d, store) = store();
    let pod = store.create(name("web"), &manifest("web")).unwrap();
    let lock = pod.lock_exclusive().unwrap();
    let bad = [PodState::Exited, PodState::Prepared, PodState::Embryo];
    for to in bad {
        let err = store.set_state(&pod, &lock, to).unwrap_err();
        assert!(
            matches!(err, PodError::InvalidTransition { .. }),
            "{to}: {err}"
        );
        assert_eq!(pod.record().unwrap().state, PodState::Prepared);
    }
    store.set_state(&pod, &lock, PodState::Garbage).unwrap();
    let err = store.set_state(&pod, &lock, PodState::Running).unwrap_err();
    assert!(matches!(err, PodError::InvalidTransition { .. }), "{err}");
}
