//! Rendering (spec/ace.md Filesystem Setup, F3–F7): an image and its dependencies as an ordered
//! stack of read-only layers, for overlayfs (no copying) or for a copy (`image render`).
//!
//! Order: dependencies depth-first in list order, each before the image that depends on it, the
//! image itself last; later layers win (`A→[B,C], C→[D]` gives B, D, C, A). A layer's files are
//! filtered by its own `pathWhitelist` and by those of every image above it on its dependency
//! chain (the spec's rule; rkt's renderer also leaked a preceding sibling's whitelist, which is
//! not followed here, see appc-requirements.md §5.5).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{ImageRecord, Store, StoreError};
use crate::schema::{Dependency, ImageId};

/// Deepest dependency chain accepted (a guard against absurd or cyclic graphs).
const MAX_DEPTH: usize = 32;

/// A `pathWhitelist`: absolute paths that remain; ancestors of listed paths remain as
/// directories (a file cannot stay without the directories holding it).
pub type Whitelist = BTreeSet<String>;

/// One layer: an image's tree, filtered by the whitelists in force for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub id: ImageId,
    pub filters: Vec<Whitelist>,
}

impl Layer {
    /// Whether `path` (absolute, inside the rootfs) survives the filters.
    pub fn keeps(&self, path: &str, is_dir: bool) -> bool {
        self.filters.iter().all(|w| whitelisted(w, path, is_dir))
    }
}

fn whitelisted(w: &Whitelist, path: &str, is_dir: bool) -> bool {
    if path == "/" || w.contains(path) || w.contains(&format!("{path}/")) {
        return true;
    }
    // A directory stays when something below it is listed.
    is_dir
        && w.range(format!("{path}/")..)
            .next()
            .is_some_and(|p| p.starts_with(&format!("{path}/")))
}

/// Resolves `top` and its dependencies from the store into layers, bottom first. Identical
/// layers (same image, same filters) are kept only at their highest position: overlayfs finds
/// every path in the highest one anyway, so the view is unchanged.
pub fn layers(store: &Store, top: &ImageRecord) -> Result<Vec<Layer>, StoreError> {
    let mut out = Vec::new();
    visit(store, top, &[], &mut Vec::new(), &mut out)?;
    let mut deduped: Vec<Layer> = Vec::new();
    for (i, layer) in out.iter().enumerate() {
        if !out[i + 1..].contains(layer) {
            deduped.push(layer.clone());
        }
    }
    Ok(deduped)
}

fn visit(
    store: &Store,
    image: &ImageRecord,
    above: &[Whitelist],
    chain: &mut Vec<ImageId>,
    out: &mut Vec<Layer>,
) -> Result<(), StoreError> {
    if chain.contains(&image.id) || chain.len() >= MAX_DEPTH {
        return Err(StoreError::Dependency {
            image: image.name.to_string(),
            reason: "dependency cycle or chain deeper than 32 images".into(),
        });
    }
    let mut filters = above.to_vec();
    if !image.manifest.path_whitelist.is_empty() {
        filters.push(
            image
                .manifest
                .path_whitelist
                .iter()
                .map(|p| p.to_string())
                .collect(),
        );
    }
    chain.push(image.id.clone());
    for dep in &image.manifest.dependencies {
        let rec = resolve_dependency(store, image, dep)?;
        visit(store, &rec, &filters, chain, out)?;
    }
    chain.pop();
    out.push(Layer {
        id: image.id.clone(),
        filters,
    });
    Ok(())
}

/// Finds a dependency in the store by name and labels; its `imageID`, when given, must match
/// (spec D1). Missing labels are wildcards; the newest match wins.
fn resolve_dependency(
    store: &Store,
    of: &ImageRecord,
    dep: &Dependency,
) -> Result<ImageRecord, StoreError> {
    let err = |reason: String| StoreError::Dependency {
        image: of.name.to_string(),
        reason,
    };
    let mut found = store.index().find_by_name(&dep.image_name)?;
    found.retain(|r| r.labels.satisfy(&dep.labels));
    if let Some(want) = &dep.image_id {
        found.retain(|r| &r.id == want);
        if found.is_empty() {
            return Err(err(format!(
                "dependency {} with image ID {want} is not in the store",
                dep.image_name
            )));
        }
    }
    if let Some(size) = dep.size {
        found.retain(|r| r.size == size);
    }
    super::newest(found).ok_or_else(|| {
        err(format!(
            "dependency {} is not in the store; fetch it first",
            describe(dep)
        ))
    })
}

fn describe(dep: &Dependency) -> String {
    let labels: Vec<String> = dep
        .labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    if labels.is_empty() {
        dep.image_name.to_string()
    } else {
        format!("{},{}", dep.image_name, labels.join(","))
    }
}

/// The rootfs directory of a stored image's tree.
pub fn tree_rootfs(store: &Store, id: &ImageId) -> PathBuf {
    store.image_dir(id).join("tree").join("rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(paths: &[&str]) -> Whitelist {
        paths.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whitelist_keeps_listed_paths_and_their_directories() {
        let w = wl(&["/usr/bin/app", "/etc/systemd/system/"]);
        assert!(whitelisted(&w, "/usr/bin/app", false));
        assert!(whitelisted(&w, "/usr", true));
        assert!(whitelisted(&w, "/usr/bin", true));
        assert!(!whitelisted(&w, "/usr/bin/other", false));
        assert!(!whitelisted(&w, "/usr/lib", true));
        assert!(whitelisted(&w, "/etc/systemd/system", true));
        assert!(
            !whitelisted(&w, "/etc/systemd/system/x.service", false),
            "a trailing / lists the directory only"
        );
        assert!(
            !whitelisted(&w, "/usr/bin", false),
            "a file is not kept because of a listed child path"
        );
        assert!(whitelisted(&w, "/", true));
        assert!(
            !whitelisted(&w, "/us", true),
            "prefixes count by component, not by character"
        );
    }

    #[test]
    fn layer_filters_combine() {
        let layer = Layer {
            id: ImageId::from_sha512(&[1; 64]),
            filters: vec![wl(&["/a", "/b"]), wl(&["/b"])],
        };
        assert!(layer.keeps("/b", false));
        assert!(!layer.keeps("/a", false));
        let open = Layer {
            id: ImageId::from_sha512(&[1; 64]),
            filters: vec![],
        };
        assert!(open.keeps("/anything", false));
    }
}
