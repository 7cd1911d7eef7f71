//! Removing images (`image rm`) and collecting garbage (`image gc`): images unused past a grace
//! period, leftovers of crashed imports, and CAS blobs no tree links to any more.
//!
//! Both take the store lock exclusively, so they wait for running imports and exports (which hold
//! it shared) and never pull a tree from under them.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::lock::StoreLock;
use super::{Store, StoreError, io_err};
use crate::schema::ImageId;

/// What `image gc` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub images: Vec<ImageId>,
    pub leftovers: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
}

/// Removes one image: its index row first (it is invisible from then on), then its tree, then
/// the blobs only it used.
pub fn remove_image(store: &Store, id: &ImageId) -> Result<(), StoreError> {
    let _exclusive = store.lock_exclusive()?;
    remove_locked(store, id)?;
    Ok(())
}

fn remove_locked(store: &Store, id: &ImageId) -> Result<(u64, u64), StoreError> {
    if !store.index().remove(id)? {
        return Err(StoreError::NotFound {
            query: id.to_string(),
        });
    }
    let dir = store.image_dir(id);
    let keys = std::fs::read_to_string(dir.join("blobs")).unwrap_or_default();
    remove_tree(store, &dir)?;
    let mut freed = (0, 0);
    for key in keys.lines().filter(|k| k.len() > 2) {
        let (n, bytes) =
            remove_blob_if_unused(&store.root().join("cas").join(&key[..2]).join(key))?;
        freed.0 += n;
        freed.1 += bytes;
    }
    Ok(freed)
}

/// Renames a directory into `tmp/` and deletes it there, so a crash midway leaves a leftover
/// for gc rather than a half-deleted image in `images/`.
fn remove_tree(store: &Store, dir: &Path) -> Result<(), StoreError> {
    if !dir.exists() {
        return Ok(());
    }
    let trash = store
        .tmp_dir()
        .join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::rename(dir, &trash).map_err(io_err("move aside", dir))?;
    std::fs::remove_dir_all(&trash).map_err(io_err("remove", &trash))
}

/// A blob with a single link is in no tree: remove it. Returns (removed count, bytes).
fn remove_blob_if_unused(blob: &Path) -> Result<(u64, u64), StoreError> {
    match std::fs::symlink_metadata(blob) {
        Ok(m) if m.is_file() && m.nlink() == 1 => {
            std::fs::remove_file(blob).map_err(io_err("remove", blob))?;
            Ok((1, m.len()))
        }
        Ok(_) => Ok((0, 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(io_err("inspect", blob)(e)),
    }
}

/// `image gc`: removes images not used for `grace_secs` (except those in `keep`: images a live
/// pod needs), then leftovers and unused blobs.
pub fn collect_garbage(
    store: &Store,
    grace_secs: u64,
    now: i64,
    keep: &BTreeSet<ImageId>,
) -> Result<GcReport, StoreError> {
    let _exclusive = store.lock_exclusive()?;
    let mut report = GcReport::default();
    let cutoff = now.saturating_sub(grace_secs as i64);
    for rec in store.index().list()? {
        if rec.last_used < cutoff && !keep.contains(&rec.id) {
            remove_locked(store, &rec.id)?;
            report.images.push(rec.id);
        }
    }
    report.leftovers = remove_leftovers(store)?;
    let (blobs, bytes) = sweep_blobs(store)?;
    report.blobs = blobs as usize;
    report.blob_bytes = bytes;
    Ok(report)
}

/// Staging directories of dead imports (their flock is free), trash, and image directories with
/// no index row (a crash between rename and insert).
fn remove_leftovers(store: &Store) -> Result<usize, StoreError> {
    let mut removed = remove_dead_staging(store)?;
    removed += remove_lock_files(&store.root().join("locks"))?;
    let images = store.root().join("images");
    for entry in std::fs::read_dir(&images).map_err(io_err("list", &images))? {
        let path = entry.map_err(io_err("list", &images))?.path();
        let hex = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let known = match ImageId::parse(&format!("sha512-{hex}")) {
            Ok(id) => store.index().get(&id)?.is_some(),
            Err(_) => false,
        };
        if !known {
            remove_tree(store, &path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Staging directories of dead importers (whose flock is free), and their lock files: a kill
/// after publishing but before cleanup leaves a lock file without a directory.
fn remove_dead_staging(store: &Store) -> Result<usize, StoreError> {
    let mut removed = 0;
    let tmp = store.tmp_dir();
    for entry in std::fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
        let path = entry.map_err(io_err("list", &tmp))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (dir, lock) = match name.strip_suffix(".lock") {
            Some(stem) => (tmp.join(stem), path.clone()),
            None if path.is_dir() => (path.clone(), tmp.join(format!("{name}.lock"))),
            None => continue,
        };
        let Some(_held) = StoreLock::try_exclusive(&lock)? else {
            continue;
        }; // importer alive
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
            removed += 1;
        }
        let _ = std::fs::remove_file(&lock); // best effort: an empty lock file is harmless
    }
    Ok(removed)
}

/// Per-image commit locks. Safe to remove under the exclusive store lock: committers hold the
/// store lock shared while they hold one of these, so none is held now.
fn remove_lock_files(locks: &Path) -> Result<usize, StoreError> {
    for entry in std::fs::read_dir(locks).map_err(io_err("list", locks))? {
        let path = entry.map_err(io_err("list", locks))?.path();
        std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
    }
    Ok(0) // lock files are bookkeeping, not leftovers worth reporting
}

fn sweep_blobs(store: &Store) -> Result<(u64, u64), StoreError> {
    let cas = store.root().join("cas");
    let mut total = (0, 0);
    for fan in std::fs::read_dir(&cas).map_err(io_err("list", &cas))? {
        let fan = fan.map_err(io_err("list", &cas))?.path();
        for blob in std::fs::read_dir(&fan).map_err(io_err("list", &fan))? {
            let (n, bytes) = remove_blob_if_unused(&blob.map_err(io_err("list", &fan))?.path())?;
            total.0 += n;
            total.1 += bytes;
        }
    }
    Ok(total)
}
