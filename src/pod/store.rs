//! The pod store: create, look up, list, change state and remove pods (layout in `mod.rs`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, symlinkat};

use super::fsio::{self, TMP_PREFIX};
use super::state::{PodRecord, PodState};
use super::{PodError, io_err, now};
use crate::schema::{AcName, PodManifest, PodUuid};

const MANIFEST: &str = "pod.json";
const STATE: &str = "state.json";
const LOCK: &str = "lock";
const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;

/// The `pods/` directory of a data dir.
#[derive(Debug, Clone)]
pub struct PodStore {
    pods: PathBuf,
}

/// One pod on disk, as found by [`PodStore::create`] or [`PodStore::get`].
#[derive(Debug, Clone)]
pub struct Pod {
    uuid: PodUuid,
    name: Option<AcName>,
    dir: PathBuf,
}

/// A held flock on a pod's `lock` file; released on drop (or when the holder dies).
#[derive(Debug)]
pub struct PodLock {
    file: File,
    uuid: PodUuid,
}

/// What `list` reports: the record plus the state as seen through the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub uuid: PodUuid,
    pub name: Option<AcName>,
    /// The effective state: `Exited` for a `Running` record whose lock nobody holds.
    pub state: PodState,
    /// The record says `Running` but the runner is gone (kill -9, OOM, reboot).
    pub crashed: bool,
    pub record: PodRecord,
}

impl PodLock {
    fn acquire(dir: &Path, uuid: PodUuid) -> Result<PodLock, PodError> {
        let file = fsio::try_flock(&dir.join(LOCK), FlockOperation::LockExclusive)?;
        let file = file.ok_or(PodError::Busy { uuid })?;
        Ok(PodLock { file, uuid })
    }

    pub(super) fn try_acquire(dir: &Path, uuid: PodUuid) -> Result<Option<PodLock>, PodError> {
        let op = FlockOperation::NonBlockingLockExclusive;
        let file = fsio::try_flock(&dir.join(LOCK), op)?;
        Ok(file.map(|file| PodLock { file, uuid }))
    }

    pub fn uuid(&self) -> PodUuid {
        self.uuid
    }

    /// The lock file, to hand to the pod init: a flock belongs to the open file description,
    /// so the pod stays locked while either holder lives.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Pod {
    pub fn uuid(&self) -> PodUuid {
        self.uuid
    }

    pub fn name(&self) -> Option<&AcName> {
        self.name.as_ref()
    }

    /// How messages name the pod: its name, or its uuid for a pod without one.
    pub fn label(&self) -> String {
        self.name
            .as_ref()
            .map_or_else(|| self.uuid.to_string(), |n| n.to_string())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the pod's lock; the executor holds it for the pod's lifetime.
    pub fn lock_exclusive(&self) -> Result<PodLock, PodError> {
        PodLock::acquire(&self.dir, self.uuid)
    }

    /// The lock if nobody holds it.
    pub fn try_lock_exclusive(&self) -> Result<Option<PodLock>, PodError> {
        PodLock::try_acquire(&self.dir, self.uuid)
    }

    /// Whether someone holds the lock exclusively (a live runner or a state change).
    pub fn is_locked(&self) -> Result<bool, PodError> {
        lock_held(&self.dir)
    }

    pub fn manifest(&self) -> Result<PodManifest, PodError> {
        let path = self.dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
        let corrupt = |e: String| PodError::Corrupt {
            path: path.clone(),
            reason: e,
        };
        let decoded = PodManifest::parse(&text).map_err(|e| corrupt(e.to_string()))?;
        Ok(decoded.value)
    }

    /// Writes `name` in the pod dir atomically (temp + fsync + rename), e.g. the executor's
    /// plan and isolator report.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), PodError> {
        fsio::write_atomic(&self.dir, name, bytes, FILE_MODE)
    }

    /// The stored record (not adjusted for liveness; see [`PodStore::info`]).
    pub fn record(&self) -> Result<PodRecord, PodError> {
        read_record(&self.dir)?.ok_or_else(|| PodError::NotFound {
            query: self.uuid.to_string(),
        })
    }
}

impl PodStore {
    /// Opens (creating if needed) `<dir>/pods`.
    pub fn open(dir: &Path) -> Result<PodStore, PodError> {
        let store = PodStore {
            pods: dir.join("pods"),
        };
        for d in [store.pods.clone(), store.names_dir(), store.trash_dir()] {
            fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
        }
        Ok(store)
    }

    pub fn pods_dir(&self) -> &Path {
        &self.pods
    }

    pub(super) fn pod_dir(&self, uuid: PodUuid) -> PathBuf {
        self.pods.join(uuid.to_string())
    }

    pub(super) fn names_dir(&self) -> PathBuf {
        self.pods.join("names")
    }

    pub(super) fn trash_dir(&self) -> PathBuf {
        self.pods.join("trash")
    }

    /// Creates a `Prepared` pod. `state.json` is written last, so a crash leaves an invisible
    /// embryo for gc. Without `name`, one is derived from the first app and the uuid.
    pub fn create(&self, name: Option<AcName>, manifest: &PodManifest) -> Result<Pod, PodError> {
        let uuid = PodUuid::new_random();
        let name = match name {
            Some(n) => n,
            None => generated_name(uuid, manifest)?,
        };
        let dir = self.pod_dir(uuid);
        fsio::create_dir(&dir, DIR_MODE).map_err(io_err("create pod directory", &dir))?;
        let lock = PodLock::acquire(&dir, uuid)?;
        let record = PodRecord::new(Some(name.clone()), uuid, now());
        let filled = self.fill(&dir, &name, manifest, &record);
        if let Err(e) = filled {
            let _ = fsio::remove_tree(&dir);
            return Err(e);
        }
        drop(lock);
        let name = Some(name);
        Ok(Pod { uuid, name, dir })
    }

    fn fill(
        &self,
        dir: &Path,
        name: &AcName,
        manifest: &PodManifest,
        record: &PodRecord,
    ) -> Result<(), PodError> {
        let json = manifest.to_canonical_json();
        fsio::write_atomic(dir, MANIFEST, json.as_bytes(), FILE_MODE)?;
        self.claim_name(name, record.uuid)?;
        write_record(dir, record)?;
        fsio::sync_dir(&self.pods)
    }

    /// Finds a pod by full uuid, name, or a unique uuid prefix of at least 4 characters.
    pub fn get(&self, query: &str) -> Result<Pod, PodError> {
        let not_found = || PodError::NotFound {
            query: query.to_owned(),
        };
        if let Ok(uuid) = PodUuid::parse(query) {
            return self.load(uuid)?.ok_or_else(not_found);
        }
        if let Ok(name) = AcName::parse(query)
            && let Some(uuid) = self.resolve_name(&name)?
            && let Some(pod) = self.load(uuid)?
        {
            return Ok(pod);
        }
        self.by_prefix(query)
    }

    fn by_prefix(&self, query: &str) -> Result<Pod, PodError> {
        let q = query.to_ascii_lowercase();
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(PodError::NotFound { query: q });
        }
        if q.len() < 4 {
            return Err(PodError::PrefixTooShort { query: q });
        }
        let mut found = Vec::new();
        for uuid in self.uuids()? {
            if uuid.to_string().starts_with(&q)
                && let Some(pod) = self.load(uuid)?
            {
                found.push(pod);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(PodError::NotFound { query: q }),
            count => Err(PodError::Ambiguous { query: q, count }),
        }
    }

    /// The pod if its dir and `state.json` exist (a half-created pod is not a pod).
    pub(super) fn load(&self, uuid: PodUuid) -> Result<Option<Pod>, PodError> {
        let dir = self.pod_dir(uuid);
        Ok(read_record(&dir)?.map(|r| Pod {
            uuid,
            name: r.name,
            dir,
        }))
    }

    /// The uuids of every pod directory (complete or not), in no particular order.
    pub(super) fn uuids(&self) -> Result<Vec<PodUuid>, PodError> {
        let entries = fs::read_dir(&self.pods).map_err(io_err("read", &self.pods))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err("read", &self.pods))?;
            if let Some(uuid) = e.file_name().to_str().and_then(|s| PodUuid::parse(s).ok()) {
                out.push(uuid);
            }
        }
        Ok(out)
    }

    /// The pod's record and its effective state.
    pub fn info(&self, pod: &Pod) -> Result<PodInfo, PodError> {
        info_of(&pod.dir, pod.record()?)
    }

    /// Every complete pod, oldest first; temp files and half-created pods are skipped.
    pub fn list(&self) -> Result<Vec<PodInfo>, PodError> {
        let mut out = Vec::new();
        for uuid in self.uuids()? {
            let dir = self.pod_dir(uuid);
            if let Some(record) = read_record(&dir)? {
                out.push(info_of(&dir, record)?);
            }
        }
        out.sort_by_key(|i| (i.record.created, i.uuid));
        Ok(out)
    }

    /// Moves the pod to `to` through the transition table; `lock` must be this pod's.
    pub fn set_state(
        &self,
        pod: &Pod,
        lock: &PodLock,
        to: PodState,
    ) -> Result<PodRecord, PodError> {
        self.update(pod, lock, |r| r.advance(to, now()))
    }

    /// Changes the record under the pod's lock (init pid, exit codes, net info) and persists it.
    /// A state change made by `f` is checked against the transition table like `set_state`.
    pub fn update(
        &self,
        pod: &Pod,
        lock: &PodLock,
        f: impl FnOnce(&mut PodRecord) -> Result<(), PodError>,
    ) -> Result<PodRecord, PodError> {
        if lock.uuid != pod.uuid {
            let (uuid, other) = (pod.uuid, lock.uuid);
            return Err(PodError::WrongLock { uuid, other });
        }
        let mut record = pod.record()?;
        let before = record.state;
        f(&mut record)?;
        if record.state != before {
            // Re-checked, so that a direct assignment cannot bypass the table.
            super::transition(pod.uuid, before, record.state)?;
        }
        write_record(&pod.dir, &record)?;
        Ok(record)
    }

    /// Removes a pod that [`PodState::can_remove`] allows; refuses one whose lock is held.
    pub fn remove(&self, pod: &Pod) -> Result<(), PodError> {
        let Some(lock) = pod.try_lock_exclusive()? else {
            let state = self.info(pod)?.state;
            if !state.can_remove() {
                return Err(PodError::CannotRemove {
                    uuid: pod.uuid,
                    state,
                });
            }
            return Err(PodError::Busy { uuid: pod.uuid });
        };
        // We hold the lock, so a `Running` record is a crashed runner: the pod has exited.
        let record = pod.record()?;
        let state = match record.state {
            PodState::Running => PodState::Exited,
            s => s,
        };
        if !state.can_remove() {
            return Err(PodError::CannotRemove {
                uuid: pod.uuid,
                state,
            });
        }
        self.delete(pod.uuid, record.name.as_ref(), lock)
    }

    /// Renames the pod into `trash/` (atomic: the pod is gone or not), frees its name, then
    /// deletes the tree; gc finishes a deletion a crash interrupted.
    pub(super) fn delete(
        &self,
        uuid: PodUuid,
        name: Option<&AcName>,
        lock: PodLock,
    ) -> Result<(), PodError> {
        let from = self.pod_dir(uuid);
        let to = self.trash_dir().join(uuid.to_string());
        fs::rename(&from, &to).map_err(io_err("move to trash", &from))?;
        fsio::sync_dir(&self.pods)?;
        if let Some(name) = name {
            self.release_name(name, uuid)?;
        }
        drop(lock);
        fsio::remove_tree(&to)
    }

    /// Blocks until this process has the names lock.
    pub(super) fn names_lock(&self) -> Result<File, PodError> {
        let path = self.pods.join("names.lock");
        let file = fsio::try_flock(&path, FlockOperation::LockExclusive)?;
        file.ok_or(PodError::Io {
            op: "lock",
            path,
            source: io::ErrorKind::WouldBlock.into(),
        })
    }

    /// Points `names/<name>` at the pod: symlinkat fails if it exists; a dead owner's link is
    /// replaced by symlink-to-temp + rename. All under the names lock.
    fn claim_name(&self, name: &AcName, uuid: PodUuid) -> Result<(), PodError> {
        let _names = self.names_lock()?;
        let names = self.names_dir();
        let link = names.join(name.as_str());
        let target = format!("../{uuid}");
        let dir = File::open(&names).map_err(io_err("open", &names))?;
        match symlinkat(target.as_str(), &dir, name.as_str()) {
            Ok(()) => return fsio::sync_dir(&names),
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io_err("create name link", &link)(e.into())),
        }
        if let Some((owner, state)) = self.name_owner(name)? {
            let name = name.clone();
            return Err(PodError::NameTaken {
                name,
                uuid: owner,
                state,
            });
        }
        let tmp = fsio::tmp_path(&names, name.as_str());
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("create name link", &tmp))?;
        fs::rename(&tmp, &link).map_err(io_err("replace name link", &link))?;
        fsio::sync_dir(&names)
    }

    /// The live pod a name belongs to, with its effective state; `None` if the name is free
    /// (no link, pod gone, `Garbage`, or a half-created pod whose creator died).
    pub(super) fn name_owner(
        &self,
        name: &AcName,
    ) -> Result<Option<(PodUuid, PodState)>, PodError> {
        let Some(uuid) = self.resolve_name(name)? else {
            return Ok(None);
        };
        let dir = self.pod_dir(uuid);
        if !dir.exists() {
            return Ok(None);
        }
        let state = match read_record(&dir)? {
            Some(r) => info_of(&dir, r)?.state,
            None if lock_held(&dir)? => PodState::Embryo,
            None => return Ok(None),
        };
        Ok(state.holds_name().then_some((uuid, state)))
    }

    /// The uuid `names/<name>` points at, if any.
    fn resolve_name(&self, name: &AcName) -> Result<Option<PodUuid>, PodError> {
        let link = self.names_dir().join(name.as_str());
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_err("read name link", &link)(e)),
        };
        let uuid = target.file_name().and_then(|s| s.to_str());
        Ok(uuid.and_then(|s| PodUuid::parse(s).ok()))
    }

    /// Removes `names/<name>` if it still points at `uuid`.
    fn release_name(&self, name: &AcName, uuid: PodUuid) -> Result<(), PodError> {
        let _names = self.names_lock()?;
        if self.resolve_name(name)? != Some(uuid) {
            return Ok(());
        }
        let link = self.names_dir().join(name.as_str());
        match fs::remove_file(&link) {
            Err(e) if !is_missing(&e) => Err(io_err("remove name link", &link)(e)),
            _ => fsio::sync_dir(&self.names_dir()),
        }
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `<first app>-<6 hex of the uuid>`, sanitized to a strict AC Name.
fn generated_name(uuid: PodUuid, manifest: &PodManifest) -> Result<AcName, PodError> {
    let first = manifest.apps.first().map_or("pod", |a| a.name.as_str());
    let hex = uuid.to_string();
    let text = format!("{first}-{}", &hex[..6]);
    AcName::sanitize(&text).ok_or(PodError::NoName { from: text })
}

/// Whether someone holds the pod's lock exclusively: a non-blocking shared lock fails.
/// A pod deleted meanwhile (its dir renamed away) holds nothing.
fn lock_held(dir: &Path) -> Result<bool, PodError> {
    match fsio::try_flock(&dir.join(LOCK), FlockOperation::NonBlockingLockShared) {
        Ok(file) => Ok(file.is_none()),
        Err(PodError::Io { source, .. }) if is_missing(&source) => Ok(false),
        Err(e) => Err(e),
    }
}

fn info_of(dir: &Path, record: PodRecord) -> Result<PodInfo, PodError> {
    let crashed = record.state == PodState::Running && !lock_held(dir)?;
    let state = if crashed {
        PodState::Exited
    } else {
        record.state
    };
    Ok(PodInfo {
        uuid: record.uuid,
        name: record.name.clone(),
        state,
        crashed,
        record,
    })
}

/// `state.json`, or `None` when the pod dir or the file is missing (a half-created pod).
pub(super) fn read_record(dir: &Path) -> Result<Option<PodRecord>, PodError> {
    let path = dir.join(STATE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PodError::Corrupt {
            path,
            reason: format!("not a pod state record: {e}"),
        })
}

pub(super) fn write_record(dir: &Path, record: &PodRecord) -> Result<(), PodError> {
    let json = serde_json::to_vec_pretty(record).map_err(|e| PodError::Corrupt {
        path: dir.join(STATE),
        reason: format!("cannot encode the record: {e}"),
    })?;
    fsio::write_atomic(dir, STATE, &json, FILE_MODE)
}

/// Removes `.tmp-*` leftovers of interrupted writes in `dir`; returns what it removed.
pub(super) fn remove_tmp_files(dir: &Path) -> Result<Vec<PathBuf>, PodError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_missing(&e) => return Ok(out),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err("read", dir))?;
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = e.path();
            match fs::remove_file(&path) {
                Err(err) if !is_missing(&err) => return Err(io_err("remove", &path)(err)),
                _ => out.push(path),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(app: Option<&str>) -> PodManifest {
        let mut m = PodManifest::new();
        if let Some(app) = app {
            let text = format!(
                r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{{"name":"{app}","image":{{"name":"x.com/a"}}}}]}}"#
            );
            m = PodManifest::parse(&text).unwrap().value;
        }
        m
    }

    #[test]
    fn generated_names_are_strict_ac_names() {
        let uuid = PodUuid::new_random();
        let hex = &uuid.to_string()[..6];
        let named = generated_name(uuid, &manifest_with(Some("web--app"))).unwrap();
        assert_eq!(named.as_str(), format!("web-app-{hex}"));
        assert!(named.is_strict());
        let empty = generated_name(uuid, &manifest_with(None)).unwrap();
        assert_eq!(empty.as_str(), format!("pod-{hex}"));
    }

    #[test]
    fn a_corrupt_record_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE), b"{").unwrap();
        let err = read_record(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("state.json: not a pod state record"),
            "{err}"
        );
        assert!(read_record(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn lock_held_is_false_for_a_vanished_pod() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!lock_held(&dir.path().join("gone")).unwrap());
    }
}
