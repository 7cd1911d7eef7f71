//! Re-creating an image's exact tar from its tar-split record and its tree (`image export`), and
//! checking that the result still hashes to the image ID (`image verify`).

use std::fs::File;
use std::io::{self, Read, Write};

use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
use sha2::{Digest, Sha512};

use super::tarsplit::{Record, TarSplitReader};
use super::{Store, StoreError, io_err};
use crate::schema::ImageId;

/// Writes the image's uncompressed tar to `out`; returns the number of bytes written. Its SHA-512
/// is the image ID (`image verify` checks exactly that).
pub fn export_image(store: &Store, id: &ImageId, out: &mut impl Write) -> Result<u64, StoreError> {
    let _shared = store.lock_shared()?;
    still_stored(store, id)?;
    replay(store, id, out)
}

/// Under the shared lock, the image may have been removed since it was resolved (`rm` and `gc`
/// take the lock exclusively): that is "not found", not damage.
fn still_stored(store: &Store, id: &ImageId) -> Result<(), StoreError> {
    match store.index().get(id)? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound {
            query: id.to_string(),
        }),
    }
}

/// Re-hashes a stored image; `Err(Damaged)` when its tree or record no longer give the image ID.
pub fn verify_image(store: &Store, id: &ImageId) -> Result<u64, StoreError> {
    let _shared = store.lock_shared()?;
    still_stored(store, id)?;
    let mut hashing = HashingWriter(Sha512::new());
    let size = replay(store, id, &mut hashing)?;
    let digest: [u8; 64] = hashing.0.finalize().into();
    if ImageId::from_sha512(&digest) != *id {
        return Err(StoreError::Damaged {
            id: id.clone(),
            reason: "its content no longer hashes to its ID".into(),
        });
    }
    Ok(size)
}

fn replay(store: &Store, id: &ImageId, out: &mut impl Write) -> Result<u64, StoreError> {
    let dir = store.image_dir(id);
    let damaged = |reason: String| StoreError::Damaged {
        id: id.clone(),
        reason,
    };
    let split_path = dir.join("tarsplit");
    let split =
        File::open(&split_path).map_err(|e| damaged(format!("{}: {e}", split_path.display())))?;
    let mut records =
        TarSplitReader::new(io::BufReader::new(split)).map_err(|e| damaged(e.to_string()))?;
    let tree_path = dir.join("tree");
    let tree =
        File::open(&tree_path).map_err(|e| damaged(format!("{}: {e}", tree_path.display())))?;
    let mut written = 0u64;
    while let Some(record) = records.next_record().map_err(|e| damaged(e.to_string()))? {
        match record {
            Record::Raw(bytes) => {
                out.write_all(&bytes)
                    .map_err(io_err("write", "the export"))?;
                written += bytes.len() as u64;
            }
            Record::File { size, tree_path } => {
                copy_file(&tree, &tree_path, size, out).map_err(damaged)?;
                written += size;
            }
        }
    }
    Ok(written)
}

/// Copies exactly `size` bytes of a tree file, opened without following symlinks.
fn copy_file(tree: &File, path: &[u8], size: u64, out: &mut impl Write) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let shown = String::from_utf8_lossy(path).into_owned();
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
    let fd = openat2(
        tree,
        std::ffi::OsStr::from_bytes(path),
        flags,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| format!("{shown}: {e}"))?;
    let mut file = File::from(fd).take(size);
    let n = io::copy(&mut file, out).map_err(|e| format!("{shown}: {e}"))?;
    if n != size {
        return Err(format!("{shown}: {n} of {size} bytes"));
    }
    Ok(())
}

struct HashingWriter(Sha512);

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
