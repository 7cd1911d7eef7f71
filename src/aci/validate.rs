//! `appcctl validate X.aci`: the archive rules A1–A5 and the manifest, checked by streaming the
//! archive once without writing anything (the same entry policy the importer applies).

use std::io::{BufReader, Read};

use super::compress::{Compression, decompress};
use super::reader::{
    AciPath, EntryKind, EntryTracker, MAX_MANIFEST_SIZE, Node, PathRefusal, classify_path,
    classify_type,
};
use crate::schema::{ImageManifest, Warning};

/// A valid archive: its compression, manifest and the warnings its manifest raised.
#[derive(Debug)]
pub struct ArchiveReport {
    pub compression: Compression,
    pub manifest: ImageManifest,
    pub warnings: Vec<Warning>,
    pub entries: usize,
}

/// Checks an archive; `Err` holds one line per problem (entry problems do not stop the scan,
/// unreadable data does).
pub fn validate_archive(input: impl Read) -> Result<ArchiveReport, Vec<String>> {
    let (compression, plain) =
        decompress(BufReader::with_capacity(64 * 1024, input)).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let mut tracker = EntryTracker::default();
    let mut manifest_text = None;
    let mut entries = 0;
    let mut archive = tar::Archive::new(plain);
    let iter = archive
        .entries()
        .map_err(|e| vec![format!("cannot read the archive: {e}")])?;
    for entry in iter {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("cannot read the archive: {e}"));
                return Err(problems);
            }
        };
        entries += 1;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match check_entry(&mut entry, &mut tracker) {
            Ok(Some(text)) => manifest_text = Some(text),
            Ok(None) => {}
            Err(reason) => problems.push(format!("{shown}: {reason}")),
        }
    }
    finish(compression, manifest_text, &tracker, entries, problems)
}

fn finish(
    compression: Compression,
    manifest_text: Option<String>,
    tracker: &EntryTracker,
    entries: usize,
    mut problems: Vec<String>,
) -> Result<ArchiveReport, Vec<String>> {
    if tracker.get(b"rootfs").is_none() {
        problems.push("rootfs: missing (A1: an image holds manifest and rootfs/)".into());
    }
    let Some(text) = manifest_text else {
        problems.push("manifest: missing (A1: an image holds manifest and rootfs/)".into());
        return Err(problems);
    };
    match ImageManifest::parse(&text) {
        Ok(d) if problems.is_empty() => Ok(ArchiveReport {
            compression,
            manifest: d.value,
            warnings: d.warnings,
            entries,
        }),
        Ok(_) => Err(problems),
        Err(errors) => {
            problems.extend(errors.iter().map(|e| format!("manifest: {e}")));
            Err(problems)
        }
    }
}

/// Checks one entry against A3/A4 and the type policy; returns the manifest text if it is the
/// manifest.
fn check_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    tracker: &mut EntryTracker,
) -> Result<Option<String>, String> {
    let kind = classify_type(entry.header().entry_type())?;
    if kind == EntryKind::GlobalHeader {
        return Ok(None);
    }
    let path = match classify_path(&entry.path_bytes()) {
        Ok(p) => p,
        Err(PathRefusal::Empty) if kind == EntryKind::Directory => return Ok(None),
        Err(r) => return Err(r.to_string()),
    };
    let tree_path = path.tree_path();
    tracker.check(&tree_path, kind == EntryKind::Directory)?;
    let node = match kind {
        EntryKind::Directory => Node::Dir { implicit: false },
        EntryKind::Regular => Node::File,
        _ => Node::Other,
    };
    let result = match (&path, kind) {
        (AciPath::Manifest, EntryKind::Regular) => read_manifest(entry).map(Some),
        (AciPath::Manifest, _) => Err("manifest must be a regular file".into()),
        (AciPath::Rootfs(rel), k) if rel.is_empty() && k != EntryKind::Directory => {
            Err("rootfs must be a directory".into())
        }
        (_, EntryKind::HardLink) => check_hardlink(entry, tracker).map(|()| None),
        _ => Ok(None),
    };
    mark_parents(tracker, &path);
    tracker.insert(&tree_path, node);
    result
}

fn read_manifest<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<String, String> {
    if entry.size() > MAX_MANIFEST_SIZE {
        return Err(format!("manifest larger than {MAX_MANIFEST_SIZE} bytes"));
    }
    let mut text = String::new();
    entry
        .read_to_string(&mut text)
        .map_err(|e| format!("unreadable: {e}"))?;
    Ok(text)
}

fn check_hardlink<R: Read>(
    entry: &tar::Entry<'_, R>,
    tracker: &EntryTracker,
) -> Result<(), String> {
    let target = entry
        .link_name_bytes()
        .ok_or("hard link without a target")?;
    match classify_path(&target) {
        Ok(t @ AciPath::Rootfs(_)) if tracker.get(&t.tree_path()) == Some(Node::File) => Ok(()),
        _ => Err("hard link pointing outside the image's rootfs or to no earlier file".into()),
    }
}

/// Parents implied by an entry count as directories (a tar need not list them).
fn mark_parents(tracker: &mut EntryTracker, path: &AciPath) {
    let mut p = path.parent();
    while let Some(parent) = p {
        let tp = parent.tree_path();
        if tracker.get(&tp).is_none() {
            tracker.insert(&tp, Node::Dir { implicit: true });
        }
        p = parent.parent();
    }
}
