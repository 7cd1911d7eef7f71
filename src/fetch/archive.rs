//! The manifest of a downloaded archive, read before anything is imported: its name is what
//! the signature must be trusted for, and its name and labels must be what discovery was asked
//! for (DS15). The manifest is normally the first entry, so this reads a few KiB.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::FetchError;
use crate::aci::compress::decompress;
use crate::aci::reader::{AciPath, MAX_MANIFEST_SIZE, classify_path};
use crate::schema::ImageManifest;

/// Reads the manifest of the archive in `file` and rewinds the file.
pub fn read_manifest(file: &mut File, path: &Path) -> Result<ImageManifest, FetchError> {
    let bad = |reason: String| FetchError::Archive {
        path: path.to_owned(),
        reason,
    };
    let manifest = {
        let (_, plain) = decompress(BufReader::with_capacity(64 * 1024, &*file))
            .map_err(|e| bad(e.to_string()))?;
        let mut archive = tar::Archive::new(plain);
        let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
        let mut text = None;
        for entry in entries {
            let entry = entry.map_err(|e| bad(e.to_string()))?;
            if classify_path(&entry.path_bytes()) != Ok(AciPath::Manifest) {
                continue;
            }
            if !entry.header().entry_type().is_file() {
                return Err(bad("manifest is not a regular file".into()));
            }
            let mut buf = String::new();
            entry
                .take(MAX_MANIFEST_SIZE + 1)
                .read_to_string(&mut buf)
                .map_err(|e| bad(format!("manifest: {e}")))?;
            if buf.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(bad("manifest larger than 1 MiB".into()));
            }
            text = Some(buf);
            break;
        }
        let text = text.ok_or_else(|| bad("the image has no manifest".into()))?;
        ImageManifest::parse(&text)
            .map_err(|errors| {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                bad(format!("manifest: {}", all.join("; ")))
            })?
            .value
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|source| FetchError::Io {
            op: "rewind",
            path: path.to_owned(),
            source,
        })?;
    Ok(manifest)
}
