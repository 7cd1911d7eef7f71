//! The one error type of the `aci` module.
//!
//! Every variant names the object it is about (a path, an archive, a codec) and carries the
//! underlying cause, so the binary can print it once, on one line, without further context.

use std::io;
use std::path::PathBuf;

use crate::schema::SchemaErrors;

/// Why reading, writing or building an App Container Image failed.
#[derive(Debug, thiserror::Error)]
pub enum AciError {
    /// A file-system operation on `path` failed; `op` says which ("read", "stat", "rename"...).
    #[error("cannot {op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The first bytes of an archive could not be read.
    #[error("cannot read the start of the archive: {source}")]
    ReadHead { source: io::Error },
    /// The magic bytes are none of tar, gzip, bzip2, xz, zstd.
    #[error("not an ACI (unknown format)")]
    UnknownFormat,
    /// A compressor or decompressor could not be set up.
    #[error("cannot set up the {codec} codec: {source}")]
    Codec {
        codec: &'static str,
        source: io::Error,
    },
    /// The image directory breaks layout rule A1 (`manifest` file plus `rootfs` directory).
    #[error("{dir}: not an image layout: {problem}", dir = .dir.display())]
    Layout { dir: PathBuf, problem: &'static str },
    /// The manifest is not UTF-8 text.
    #[error("{path}: not a UTF-8 JSON manifest", path = .path.display())]
    ManifestNotText { path: PathBuf },
    /// The manifest is not a valid image manifest.
    #[error("{path}: not a valid image manifest: {}", first_errors(.errors), path = .path.display())]
    InvalidManifest { path: PathBuf, errors: SchemaErrors },
    /// Spec rule A2: image files are named `*.aci`.
    #[error("{out}: an image file name must end in .aci", out = .out.display())]
    NotAciName { out: PathBuf },
    /// The output exists and replacing it was not asked for.
    #[error("{out}: refusing to overwrite an existing file (use --overwrite)", out = .out.display())]
    OutputExists { out: PathBuf },
    /// The output would land inside the tree being archived.
    #[error("{out}: refusing to write the image inside its own rootfs {rootfs}",
        out = .out.display(), rootfs = .rootfs.display())]
    OutputInsideRootfs { out: PathBuf, rootfs: PathBuf },
    /// A source file changed while it was being archived (the archive would be inconsistent).
    #[error("{path}: changed while the image was being built", path = .path.display())]
    Changed { path: PathBuf },
    /// A file has a property that tar cannot record.
    #[error("{path}: cannot be stored in a tar archive: {what}", path = .path.display())]
    Unrepresentable { path: PathBuf, what: String },
    /// A build failed and removing its temporary file failed too: both are reported.
    #[error("{error} (and the temporary file {tmp} could not be removed: {cleanup})",
        tmp = .tmp.display())]
    Cleanup {
        error: Box<AciError>,
        tmp: PathBuf,
        cleanup: io::Error,
    },
}

impl AciError {
    /// Shorthand for [`AciError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        AciError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// How many schema errors one message shows; the rest are counted.
const SHOWN_SCHEMA_ERRORS: usize = 3;

/// The first few schema errors on one line: each names its JSON field.
fn first_errors(errors: &SchemaErrors) -> String {
    let mut text: Vec<String> = errors
        .iter()
        .take(SHOWN_SCHEMA_ERRORS)
        .map(ToString::to_string)
        .collect();
    if errors.len() > SHOWN_SCHEMA_ERRORS {
        text.push(format!("and {} more", errors.len() - SHOWN_SCHEMA_ERRORS));
    }
    text.join("; ")
}
