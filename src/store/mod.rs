//! The image store (spec/aci.md images, GUIDE.md store; DESIGN.md "Store"): a file-level
//! content-addressed store, exploded image trees, tar-split records for byte-exact export, and a
//! SQLite index.
//!
//! Layout under the store root (`--dir`, default `/var/lib/appc`):
//!
//! ```text
//! store.lock              flock: shared while importing/reading trees, exclusive for rm and gc
//! index.lock              flock: serializes the first-time setup of the index
//! index.db                SQLite (WAL): one row per image; readers never block on a writer
//! cas/ab/<key>            regular files, keyed by content + the metadata hard links share
//! images/<sha512 hex>/    one image: tree/ (manifest + rootfs, files hard-linked from cas/)
//!                         and tarsplit (raw tar headers and padding, zstd-compressed)
//! tmp/                    imports being staged (same filesystem, so commit is a rename)
//! locks/                  per-image flocks that serialize the commit of one image ID
//! ```
//!
//! An image is visible exactly when its index row exists. Every step before that writes only to
//! `tmp/`, and the row is inserted after the tree is renamed into `images/` and synced: a crash
//! at any point leaves at most an invisible leftover that `image gc` removes.

mod cas;
mod copy;
mod export;
mod fsutil;
mod gc;
mod import;
mod index;
mod lock;
mod render;
mod tarsplit;
mod tree;

use std::io;
use std::path::{Path, PathBuf};

pub use copy::{CopyOptions, copy_image};
pub use export::{export_image, verify_image};
pub use gc::{GcReport, collect_garbage, remove_image};
pub use import::{ImportOptions, ImportOutcome, import_image, now};
pub use index::{ImageRecord, Index, RemoteRecord};
pub use lock::StoreLock;
pub use render::{Layer, Whitelist, layers, tree_rootfs};

use crate::schema::{AppString, ImageId, SchemaErrors};

/// Everything that can go wrong in the store; messages name the path or entry involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("image index {}: cannot {op}: {source}", path.display())]
    Index {
        op: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{entry}: {reason}, refusing the image")]
    Entry { entry: String, reason: String },
    #[error("cannot read the image: {source}")]
    Read { source: io::Error },
    #[error(
        "the image expands to more than {limit} bytes (a decompression bomb?); raise --max-size if it is legitimate"
    )]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Archive(#[from] crate::aci::AciError),
    #[error("the image has no manifest")]
    NoManifest,
    #[error("manifest: {}", first_line(.0))]
    BadManifest(SchemaErrors),
    #[error("no image in the store matches {query:?} (see `appcctl image list`)")]
    NotFound { query: String },
    #[error("{query:?} matches {count} images; give more of the ID or add labels")]
    Ambiguous { query: String, count: usize },
    #[error("image {image}: {reason}")]
    Dependency { image: String, reason: String },
    #[error(
        "image {id}: stored tree is damaged: {reason}; remove it with `appcctl image rm` and import it again"
    )]
    Damaged { id: ImageId, reason: String },
}

fn first_line(errors: &SchemaErrors) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// Shorthand for the common I/O error construction.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}

/// The most recently imported of several matches, as rkt picked "latest" among equal names.
pub(crate) fn newest(records: Vec<ImageRecord>) -> Option<ImageRecord> {
    records
        .into_iter()
        .max_by_key(|r| (r.import_time, r.id.clone()))
}

/// The store at one root directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    index: Index,
}

impl Store {
    /// Opens the store at `root`, creating its directories and index on first use.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["", "cas", "images", "tmp", "locks"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        // SQLite answers "busy" at once, not after the busy timeout, when two processes switch a
        // fresh database to WAL together: the first opener sets it up alone.
        let _init = StoreLock::acquire(&root.join("index.lock"), true)?;
        let index = Index::open(&root.join("index.db"))?;
        Ok(Store {
            root: root.to_owned(),
            index,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn image_dir(&self, id: &ImageId) -> PathBuf {
        self.root.join("images").join(id.digest_hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Takes the store lock shared: imports, exports and renders run side by side, but never
    /// while `rm` or `gc` removes trees.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(&self.root.join("store.lock"), false)
    }

    /// Takes the store lock exclusively, waiting for running imports and exports to finish.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(&self.root.join("store.lock"), true)
    }

    /// Finds one image by full ID, unique ID prefix (at least `sha512-` and 2 hex digits), or
    /// `name[:version][,label=value]` (the newest import wins when several match).
    pub fn resolve(&self, query: &str) -> Result<ImageRecord, StoreError> {
        if let Some(hex) = query.strip_prefix("sha512-") {
            return self.resolve_prefix(query, hex);
        }
        let wanted: AppString = query.parse().map_err(|_| StoreError::NotFound {
            query: query.into(),
        })?;
        let mut matches = self.index.find_by_name(&wanted.name)?;
        matches.retain(|r| r.labels.satisfy(&wanted.labels));
        newest(matches).ok_or_else(|| StoreError::NotFound {
            query: query.into(),
        })
    }

    fn resolve_prefix(&self, query: &str, hex: &str) -> Result<ImageRecord, StoreError> {
        let valid = hex.len() >= 2
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(StoreError::NotFound {
                query: query.into(),
            });
        }
        let mut found = self.index.find_by_id_prefix(hex)?;
        match found.len() {
            0 => Err(StoreError::NotFound {
                query: query.into(),
            }),
            1 => Ok(found.remove(0)),
            count => Err(StoreError::Ambiguous {
                query: query.into(),
                count,
            }),
        }
    }
}
