//! The entry policy for reading image archives (spec/aci.md A1–A4): which paths and entry types an
//! ACI may hold. Shared by the store's import and by `appcctl validate X.aci`.
//!
//! Hostile archives are the normal case here, not an edge case: every path is normalized and
//! checked before anything touches a filesystem.

use std::fmt;

/// The largest manifest an importer or validator reads into memory (a manifest is a few KiB;
/// anything near this is hostile).
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// Where an archive entry belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AciPath {
    /// The `manifest` file.
    Manifest,
    /// `rootfs` itself (`rel` empty) or a path below it (`rel` without leading or trailing `/`).
    Rootfs(Vec<u8>),
}

impl AciPath {
    /// The path relative to the image root, as stored in the exploded tree.
    pub fn tree_path(&self) -> Vec<u8> {
        match self {
            AciPath::Manifest => b"manifest".to_vec(),
            AciPath::Rootfs(rel) if rel.is_empty() => b"rootfs".to_vec(),
            AciPath::Rootfs(rel) => [b"rootfs/".as_slice(), rel].concat(),
        }
    }

    /// The parent inside the image (`None` for `manifest` and `rootfs`).
    pub fn parent(&self) -> Option<AciPath> {
        match self {
            AciPath::Rootfs(rel) if !rel.is_empty() => {
                let cut = rel.iter().rposition(|b| *b == b'/').unwrap_or(0);
                Some(AciPath::Rootfs(rel[..cut].to_vec()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for AciPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.tree_path()))
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// Nothing but `.` and `/`: the archive's own top directory (`tar -C dir -c .` writes one).
    /// A directory entry like that is skipped; anything else there is refused.
    Empty,
    Absolute,
    DotDot,
    OutsideLayout,
    NulByte,
    NameTooLong,
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRefusal::Empty => "empty path",
            PathRefusal::Absolute => "absolute path",
            PathRefusal::DotDot => "path with a '..' component",
            PathRefusal::OutsideLayout => "entry outside manifest and rootfs/",
            PathRefusal::NulByte => "path with a NUL byte",
            PathRefusal::NameTooLong => "path component longer than 255 bytes",
        })
    }
}

/// Normalizes an archive path (`./` prefixes, `.` and empty components, trailing `/` dropped) and
/// places it in the image layout. `..` anywhere and absolute paths are refused outright rather
/// than cleaned, so a hostile name never aliases a legitimate one.
pub fn classify_path(raw: &[u8]) -> Result<AciPath, PathRefusal> {
    if raw.starts_with(b"/") {
        return Err(PathRefusal::Absolute);
    }
    if raw.contains(&0) {
        return Err(PathRefusal::NulByte); // possible through PAX records
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(PathRefusal::DotDot),
            p if p.len() > 255 => return Err(PathRefusal::NameTooLong), // NAME_MAX
            p => parts.push(p),
        }
    }
    match parts.split_first() {
        None => Err(PathRefusal::Empty),
        Some((&b"manifest", [])) => Ok(AciPath::Manifest),
        Some((&b"rootfs", rest)) => Ok(AciPath::Rootfs(rest.join(&b'/'))),
        Some(_) => Err(PathRefusal::OutsideLayout),
    }
}

/// The entry types an image may hold, by what the importer does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    HardLink,
    Fifo,
    /// Recorded so export stays byte-exact, never created in a tree: a device node in an image
    /// would hand its users the host's hardware.
    Device,
    /// A global PAX header: metadata about the archive, kept verbatim.
    GlobalHeader,
}

/// Maps a tar entry type to what the importer does; `Err` names an unsupported type.
pub fn classify_type(t: tar::EntryType) -> Result<EntryKind, String> {
    use tar::EntryType as T;
    Ok(match t {
        T::Regular | T::Continuous => EntryKind::Regular,
        T::Directory => EntryKind::Directory,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::HardLink,
        T::Fifo => EntryKind::Fifo,
        T::Char | T::Block => EntryKind::Device,
        T::XGlobalHeader => EntryKind::GlobalHeader,
        T::GNUSparse => return Err("sparse files are not supported".into()),
        other => {
            return Err(format!(
                "entry type {:?} is not supported",
                other.as_byte() as char
            ));
        }
    })
}

/// What an archive has put at a path so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A directory; `implicit` when only implied by entries below it (no entry of its own yet).
    Dir {
        implicit: bool,
    },
    File,
    Other,
}

/// Tracks the entries of an archive as it streams, refusing duplicates (A3) and any entry below
/// something that is not a directory: a symlink planted by one entry must never be written
/// through by a later one.
#[derive(Debug, Default)]
pub struct EntryTracker {
    nodes: std::collections::HashMap<Vec<u8>, Node>,
}

impl EntryTracker {
    /// Checks that an entry may be added at `tree_path` (see [`AciPath::tree_path`]); `Err` says
    /// why not. Does not record it: call [`EntryTracker::insert`] once it is added.
    pub fn check(&self, tree_path: &[u8], is_dir: bool) -> Result<(), String> {
        match self.nodes.get(tree_path) {
            Some(Node::Dir { implicit: true }) if is_dir => {}
            Some(Node::Dir { implicit: true }) => {
                return Err("replaces a directory that has entries below it".into());
            }
            Some(_) => return Err("duplicate entry".into()),
            None => {}
        }
        for (i, _) in tree_path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            if let Some(Node::File | Node::Other) = self.nodes.get(&tree_path[..i]) {
                let via = String::from_utf8_lossy(&tree_path[..i]);
                return Err(format!("written through {via:?}, which is not a directory"));
            }
        }
        Ok(())
    }

    pub fn insert(&mut self, tree_path: &[u8], node: Node) {
        self.nodes.insert(tree_path.to_vec(), node);
    }

    pub fn get(&self, tree_path: &[u8]) -> Option<Node> {
        self.nodes.get(tree_path).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        assert_eq!(classify_path(b"manifest"), Ok(AciPath::Manifest));
        assert_eq!(classify_path(b"./manifest"), Ok(AciPath::Manifest));
        assert_eq!(classify_path(b"rootfs"), Ok(AciPath::Rootfs(vec![])));
        assert_eq!(classify_path(b"rootfs/"), Ok(AciPath::Rootfs(vec![])));
        assert_eq!(
            classify_path(b"./rootfs/usr//bin/./sh"),
            Ok(AciPath::Rootfs(b"usr/bin/sh".to_vec()))
        );
        assert_eq!(
            classify_path(b"rootfs/a b/\xff"),
            Ok(AciPath::Rootfs(b"a b/\xff".to_vec()))
        );
    }

    #[test]
    fn hostile_paths() {
        assert_eq!(
            classify_path(b"/rootfs/etc/passwd"),
            Err(PathRefusal::Absolute)
        );
        assert_eq!(
            classify_path(b"rootfs/../../etc/passwd"),
            Err(PathRefusal::DotDot)
        );
        assert_eq!(classify_path(b"rootfs/a/.."), Err(PathRefusal::DotDot));
        assert_eq!(classify_path(b"rootfsX/a"), Err(PathRefusal::OutsideLayout));
        assert_eq!(
            classify_path(b"manifest/x"),
            Err(PathRefusal::OutsideLayout)
        );
        assert_eq!(classify_path(b"extra"), Err(PathRefusal::OutsideLayout));
        assert_eq!(classify_path(b"./"), Err(PathRefusal::Empty));
        assert_eq!(classify_path(b""), Err(PathRefusal::Empty));
        assert_eq!(classify_path(b"rootfs/a\0b"), Err(PathRefusal::NulByte));
        let long = [b"rootfs/".as_slice(), &[b'x'; 256]].concat();
        assert_eq!(classify_path(&long), Err(PathRefusal::NameTooLong));
    }

    #[test]
    fn parents_and_tree_paths() {
        let p = classify_path(b"rootfs/usr/bin/sh").unwrap();
        assert_eq!(p.tree_path(), b"rootfs/usr/bin/sh");
        assert_eq!(p.parent(), Some(AciPath::Rootfs(b"usr/bin".to_vec())));
        assert_eq!(
            classify_path(b"rootfs/usr").unwrap().parent(),
            Some(AciPath::Rootfs(vec![]))
        );
        assert_eq!(AciPath::Rootfs(vec![]).parent(), None);
        assert_eq!(AciPath::Manifest.parent(), None);
    }

    #[test]
    fn tracker_refuses_duplicates_and_writes_through_links() {
        let mut t = EntryTracker::default();
        t.insert(b"rootfs", Node::Dir { implicit: false });
        t.insert(b"rootfs/link", Node::Other);
        t.insert(b"rootfs/file", Node::File);
        t.insert(b"rootfs/dir", Node::Dir { implicit: true });
        assert_eq!(
            t.check(b"rootfs/file", false),
            Err("duplicate entry".into())
        );
        assert!(
            t.check(b"rootfs/link/passwd", false)
                .unwrap_err()
                .contains("\"rootfs/link\"")
        );
        assert!(t.check(b"rootfs/file/x", false).is_err());
        assert_eq!(t.check(b"rootfs/dir", true), Ok(()));
        assert!(t.check(b"rootfs/dir", false).is_err());
        assert_eq!(t.check(b"rootfs/new/deeper", false), Ok(()));
    }

    #[test]
    fn entry_types() {
        assert_eq!(
            classify_type(tar::EntryType::Regular),
            Ok(EntryKind::Regular)
        );
        assert_eq!(classify_type(tar::EntryType::Char), Ok(EntryKind::Device));
        assert!(classify_type(tar::EntryType::GNUSparse).is_err());
        assert!(classify_type(tar::EntryType::new(b'V')).is_err());
    }
}
