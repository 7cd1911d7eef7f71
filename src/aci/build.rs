//! `appcctl image build DIR OUT.aci`: an image layout to an image archive, like `actool build`
//! (appc-requirements.md §5.2) but reproducible and complete.
//!
//! Spec rules covered: A1 (layout: `manifest` + `rootfs/`), A2 (`.aci` suffix), A5 (timestamps,
//! modes, xattrs kept), A6 (compression), I1 (image ID = sha512 of the uncompressed tar), and
//! §4 rows 17–18 (exactly `manifest` and `rootfs` at the top; xattrs as PAX `SCHILY.xattr.*`).
//!
//! # Decisions
//!
//! - **Reproducible.** The same tree gives the same bytes, hence the same image ID: entries come
//!   in a fixed order (`manifest`, `rootfs/`, then a depth-first walk with children sorted by their
//!   byte names, because `readdir` order differs between file systems and copies); no build time
//!   is recorded anywhere; owners are numeric only (user and group *names* depend on the build
//!   host's `/etc/passwd`); only mtime is kept, in whole seconds (atime changes on every read and
//!   ctime on every `cp -a`); xattrs are sorted by name. actool instead writes the manifest with
//!   the build time and in `readdir` order.
//! - **Manifest first**, in canonical form, mode 0644, owned by 0:0, with the manifest file's
//!   mtime: a reader can check the manifest before streaming through the rootfs.
//! - **POSIX pax (ustar + PAX records), never GNU extensions**, and encoded the way Go's
//!   `archive/tar` does, since Go tools (actool, rkt) are the other readers of ACIs: an ASCII path
//!   too long for the 100-byte name field is split into the 155-byte ustar prefix when possible;
//!   otherwise (or when not ASCII) a PAX `path` record holds it. Link targets likewise
//!   (`linkpath`). uid/gid, size and mtime that do not fit their octal fields go to PAX records
//!   (files over 8 GiB, negative mtimes), never to GNU base-256. PAX headers are named
//!   `<dir>/PaxHeaders.0/<file>` as Go names them, so a pax-unaware extractor still drops them
//!   inside `rootfs/`.
//! - **Nothing is followed.** The walk uses `lstat`, stores symlinks as symlinks (target as read
//!   by `readlink`), never descends through one, and opens regular files with `O_NOFOLLOW`,
//!   checking the opened inode is the one `lstat` saw. DIR is the builder's own tree, so races
//!   against a concurrent writer of DIR are detected where cheap (a file changing under us is an
//!   error), not defended against in general.
//! - **Every kind of file** is stored: regular files, directories, symlinks, hard links (a later
//!   path of an inode seen before names the first path), FIFOs, character and block devices.
//!   Sockets cannot be stored in tar; they are skipped with a warning, as actool does.
//! - **Crash-safe output.** The archive is written to `.OUT.aci.tmp-<pid>-<random>` next to OUT,
//!   fsync'd, renamed into place (with `RENAME_NOREPLACE` unless `--overwrite`), then the
//!   directory is fsync'd. On failure the temporary file is removed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use rustix::io::Errno;
use sha2::{Digest, Sha512};
use tar::{EntryType, Header};

use crate::aci::AciError;
use crate::aci::compress::{Compression, Compressor};
use crate::schema::{ImageId, ImageManifest, Warning};

/// How to build an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub compression: Compression,
    /// Compression level; `None` is the codec's default ([`Compression::default_level`]).
    pub level: Option<u32>,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Show a spinner on stderr (the CLI sets this when stderr is a terminal).
    pub progress: bool,
}

impl Default for BuildOptions {
    /// gzip, as `actool build`; no overwriting; no progress display.
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Gzip,
            level: None,
            overwrite: false,
            progress: false,
        }
    }
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// sha512 of the uncompressed tar (spec I1).
    pub image_id: ImageId,
    /// Archive entries, `manifest` and `rootfs/` included, PAX headers not counted.
    pub entries: u64,
    /// Size of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Size of the file written.
    pub compressed_size: u64,
    pub compression: Compression,
    pub warnings: Vec<BuildWarning>,
}

/// Something the build left out or accepted leniently; the image was still written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildWarning {
    /// Sockets cannot be stored in a tar archive.
    SocketSkipped { path: PathBuf },
    /// An extended attribute could not be read or cannot be encoded.
    XattrSkipped {
        path: PathBuf,
        name: String,
        reason: String,
    },
    /// The manifest was accepted under the lenient reading policy (see `schema`).
    Manifest(Warning),
}

impl fmt::Display for BuildWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildWarning::SocketSkipped { path } => {
                write!(
                    f,
                    "{}: socket skipped (tar cannot store sockets)",
                    path.display()
                )
            }
            BuildWarning::XattrSkipped { path, name, reason } => write!(
                f,
                "{}: extended attribute {name} skipped: {reason}",
                path.display()
            ),
            BuildWarning::Manifest(w) => write!(f, "manifest: {w}"),
        }
    }
}

/// Builds the image archive `out` from the image layout `dir` (a `manifest` file and a `rootfs`
/// directory) and returns its image ID.
///
/// ```no_run
/// use std::path::Path;
/// use appc_pod::aci::build::{build_image, BuildOptions};
///
/// let report = build_image(Path::new("hello"), Path::new("hello.aci"), &BuildOptions::default())?;
/// println!("{}", report.image_id);
/// # Ok::<(), appc_pod::aci::AciError>(())
/// ```
pub fn build_image(dir: &Path, out: &Path, opts: &BuildOptions) -> Result<BuildReport, AciError> {
    check_output_name(out)?;
    let layout = read_layout(dir)?;
    check_output_place(out, &layout.rootfs, opts.overwrite)?;
    let (tmp, file) = TempFile::create(out)?;
    let result = write_image(&layout, file, out, opts).and_then(|report| {
        publish(&tmp.path, out, opts.overwrite)?;
        Ok(report)
    });
    match result {
        Ok(report) => {
            tmp.keep();
            Ok(report)
        }
        Err(error) => Err(tmp.discard(error)),
    }
}

// ---------------------------------------------------------------------------------------------
// Layout and output checks
// ---------------------------------------------------------------------------------------------

/// An image layout that passed rule A1, with its manifest already parsed and re-serialised.
struct Layout {
    manifest_json: String,
    manifest_mtime: i64,
    rootfs: PathBuf,
    warnings: Vec<BuildWarning>,
}

fn read_layout(dir: &Path) -> Result<Layout, AciError> {
    let meta = fs::metadata(dir).map_err(|e| AciError::io("open the image directory", dir, e))?;
    let layout_error = |problem| AciError::Layout {
        dir: dir.to_path_buf(),
        problem,
    };
    if !meta.is_dir() {
        return Err(layout_error("not a directory"));
    }
    let manifest_path = dir.join("manifest");
    let rootfs = dir.join("rootfs");
    let (manifest, rootfs_meta) = (lstat_if_any(&manifest_path)?, lstat_if_any(&rootfs)?);
    let problem = match (&manifest, &rootfs_meta) {
        (None, None) => Some("no manifest file and no rootfs directory"),
        (None, _) => Some("no manifest file"),
        (_, None) => Some("no rootfs directory"),
        (Some(m), _) if !m.is_file() => Some("manifest is not a regular file"),
        (_, Some(r)) if !r.is_dir() => Some("rootfs is not a directory"),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(layout_error(problem));
    }
    let (manifest_json, warnings) = read_manifest(&manifest_path)?;
    Ok(Layout {
        manifest_mtime: manifest.map_or(0, |m| m.mtime()),
        manifest_json,
        rootfs,
        warnings,
    })
}

fn lstat_if_any(path: &Path) -> Result<Option<Metadata>, AciError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AciError::io("stat", path, e)),
    }
}

/// Reads and validates the manifest; returns its canonical JSON and the parse warnings.
fn read_manifest(path: &Path) -> Result<(String, Vec<BuildWarning>), AciError> {
    let mut bytes = Vec::new();
    open_nofollow(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| AciError::io("read", path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| AciError::ManifestNotText {
        path: path.to_path_buf(),
    })?;
    let decoded = ImageManifest::parse(&text).map_err(|errors| AciError::InvalidManifest {
        path: path.to_path_buf(),
        errors,
    })?;
    let warnings = decoded
        .warnings
        .into_iter()
        .map(BuildWarning::Manifest)
        .collect();
    Ok((decoded.value.to_canonical_json(), warnings))
}

/// Spec rule A2: image files end in `.aci`, whatever their compression.
fn check_output_name(out: &Path) -> Result<(), AciError> {
    if out
        .file_name()
        .is_some_and(|n| n.as_bytes().ends_with(b".aci"))
    {
        Ok(())
    } else {
        Err(AciError::NotAciName {
            out: out.to_path_buf(),
        })
    }
}

/// Refuses to replace OUT unless asked, and to write into the tree being archived (the walk
/// would meet the growing temporary file).
fn check_output_place(out: &Path, rootfs: &Path, overwrite: bool) -> Result<(), AciError> {
    if lstat_if_any(out)?.is_some() && !overwrite {
        return Err(AciError::OutputExists {
            out: out.to_path_buf(),
        });
    }
    let out_dir = parent_dir(out);
    let out_dir = fs::canonicalize(out_dir)
        .map_err(|e| AciError::io("open the output directory", out_dir, e))?;
    let rootfs_real = fs::canonicalize(rootfs).map_err(|e| AciError::io("open", rootfs, e))?;
    if out_dir.starts_with(&rootfs_real) {
        return Err(AciError::OutputInsideRootfs {
            out: out.to_path_buf(),
            rootfs: rootfs.to_path_buf(),
        });
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// ---------------------------------------------------------------------------------------------
// Output file: temporary, then renamed into place
// ---------------------------------------------------------------------------------------------

/// The temporary output file; removed unless [`TempFile::keep`] is called.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Creates `.OUT.tmp-<pid>-<random>` next to OUT, exclusively (`O_EXCL`, so an existing name
    /// or a planted symlink is never written through).
    fn create(out: &Path) -> Result<(TempFile, File), AciError> {
        let base = out.file_name().unwrap_or(out.as_os_str());
        let mut last_error = None;
        for attempt in 0u32..16 {
            let mut name = OsString::from(".");
            name.push(base);
            name.push(format!(
                ".tmp-{}-{:016x}",
                std::process::id(),
                random(attempt)
            ));
            let path = parent_dir(out).join(name);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path);
            match opened {
                Ok(file) => return Ok((TempFile { path, armed: true }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some((path, e)),
                Err(e) => return Err(AciError::io("create", path, e)),
            }
        }
        let (path, e) =
            last_error.unwrap_or_else(|| (out.to_path_buf(), io::ErrorKind::AlreadyExists.into()));
        Err(AciError::io("create", path, e))
    }

    fn keep(mut self) {
        self.armed = false;
    }

    /// Removes the file after `error`; a failed removal is reported together with `error`.
    fn discard(mut self, error: AciError) -> AciError {
        self.armed = false;
        match fs::remove_file(&self.path) {
            Ok(()) => error,
            Err(e) if e.kind() == io::ErrorKind::NotFound => error,
            Err(cleanup) => AciError::Cleanup {
                error: Box::new(error),
                tmp: self.path.clone(),
                cleanup,
            },
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path); // best effort: only a panic gets here
        }
    }
}

/// A random number for temporary names, from std's per-process random hash keys.
fn random(salt: u32) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(salt)
}

/// Renames the finished temporary file to OUT and makes the rename durable.
fn publish(tmp: &Path, out: &Path, overwrite: bool) -> Result<(), AciError> {
    if overwrite {
        fs::rename(tmp, out).map_err(|e| AciError::io("rename into place", out, e))?;
    } else {
        rename_noreplace(tmp, out)?;
    }
    // The rename lives in the directory: without this fsync a crash can lose it.
    let dir = parent_dir(out);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AciError::io("sync", dir, e))
}

/// `RENAME_NOREPLACE` closes the window between our existence check and the rename.
fn rename_noreplace(tmp: &Path, out: &Path) -> Result<(), AciError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let exists = || AciError::OutputExists {
        out: out.to_path_buf(),
    };
    match renameat_with(CWD, tmp, CWD, out, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => Err(exists()),
        // File systems without RENAME_NOREPLACE: link(2) refuses an existing name as well.
        Err(Errno::INVAL | Errno::NOSYS) => match fs::hard_link(tmp, out) {
            Ok(()) => fs::remove_file(tmp).map_err(|e| AciError::io("remove", tmp, e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(AciError::io("rename into place", out, e)),
        },
        Err(e) => Err(AciError::io("rename into place", out, e.into())),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the archive
// ---------------------------------------------------------------------------------------------

/// Writes the whole archive into `file`, fsyncs it, and reports.
fn write_image(
    layout: &Layout,
    file: File,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuildReport, AciError> {
    let sink = Compressor::new(
        BufWriter::with_capacity(1 << 17, file),
        opts.compression,
        opts.level,
    )?;
    let mut archive = ArchiveWriter::new(HashWriter::new(sink), out, opts.progress);
    archive.warnings.extend(layout.warnings.iter().cloned());
    archive.append_manifest(layout)?;
    archive.append_tree(&layout.rootfs)?;
    let (hashed, entries, warnings) = archive.finish()?;
    let (digest, uncompressed_size, sink) = hashed.into_parts();
    let write_error = |e| AciError::io("write", out, e);
    let buffered = sink.finish().map_err(write_error)?;
    let file = buffered
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?;
    file.sync_all().map_err(|e| AciError::io("sync", out, e))?;
    let compressed_size = file
        .metadata()
        .map_err(|e| AciError::io("stat", out, e))?
        .len();
    Ok(BuildReport {
        image_id: ImageId::from_sha512(&digest),
        entries,
        uncompressed_size,
        compressed_size,
        compression: opts.compression,
        warnings,
    })
}

/// Passes the tar stream through while hashing it: the image ID (spec I1) is the sha512 of the
/// uncompressed tar, so it is computed on the way to the compressor, in the same single pass.
struct HashWriter<W> {
    inner: W,
    sha512: Sha512,
    written: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            sha512: Sha512::new(),
            written: 0,
        }
    }

    fn into_parts(self) -> ([u8; 64], u64, W) {
        (self.sha512.finalize().into(), self.written, self.inner)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha512.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An extended attribute: name (e.g. `user.test`) and value.
type Xattr = (Vec<u8>, Vec<u8>);

/// One path of the walk: where it is on disk, and its archive name (no trailing `/`).
struct Node {
    path: PathBuf,
    name: Vec<u8>,
}

/// The tar stream being built, with the walk's bookkeeping.
struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    out: PathBuf,
    /// First archive name of each multiply-linked inode, keyed by (st_dev, st_ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
    warnings: Vec<BuildWarning>,
    progress: ProgressBar,
}

impl<W: Write> ArchiveWriter<W> {
    fn new(sink: W, out: &Path, show_progress: bool) -> Self {
        ArchiveWriter {
            tar: tar::Builder::new(sink),
            out: out.to_path_buf(),
            links: HashMap::new(),
            entries: 0,
            warnings: Vec::new(),
            progress: progress_bar(show_progress),
        }
    }

    /// Writes the end-of-archive blocks; returns the sink, the entry count and the warnings.
    fn finish(self) -> Result<(W, u64, Vec<BuildWarning>), AciError> {
        self.progress.finish_and_clear();
        let sink = self
            .tar
            .into_inner()
            .map_err(|e| AciError::io("write", &self.out, e))?;
        Ok((sink, self.entries, self.warnings))
    }

    fn append_manifest(&mut self, layout: &Layout) -> Result<(), AciError> {
        let json = layout.manifest_json.as_bytes();
        let entry = EntryMeta {
            size: json.len() as u64,
            mtime: layout.manifest_mtime,
            ..EntryMeta::new(b"manifest", EntryType::Regular, 0o644)
        };
        self.append(&entry, &mut &json[..])
            .map_err(|e| AciError::io("write", &self.out, e))
    }

    /// Depth-first, children sorted by byte name (an explicit stack: no recursion limit).
    fn append_tree(&mut self, rootfs: &Path) -> Result<(), AciError> {
        let mut pending = vec![Node {
            path: rootfs.to_path_buf(),
            name: b"rootfs".to_vec(),
        }];
        while let Some(node) = pending.pop() {
            let meta = fs::symlink_metadata(&node.path)
                .map_err(|e| AciError::io("stat", &node.path, e))?;
            self.append_node(&node, &meta)?;
            if meta.is_dir() {
                pending.extend(sorted_children(&node)?.into_iter().rev());
            }
        }
        Ok(())
    }

    fn append_node(&mut self, node: &Node, meta: &Metadata) -> Result<(), AciError> {
        let kind = meta.file_type();
        if kind.is_socket() {
            self.warnings.push(BuildWarning::SocketSkipped {
                path: node.path.clone(),
            });
            return Ok(());
        }
        if !kind.is_dir() && meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&inode).cloned() {
                return self.append_hard_link(node, meta, &first);
            }
            self.links.insert(inode, node.name.clone());
        }
        let xattrs = self.read_xattrs(&node.path)?;
        if kind.is_file() {
            return self.append_file(node, meta, &xattrs);
        }
        self.append_special(node, meta, &xattrs)
    }

    fn append_file(
        &mut self,
        node: &Node,
        meta: &Metadata,
        xattrs: &[Xattr],
    ) -> Result<(), AciError> {
        let file = open_regular(&node.path, meta)?;
        let entry = EntryMeta {
            size: meta.len(),
            xattrs,
            ..EntryMeta::from_stat(&node.name, EntryType::Regular, meta)
        };
        let mut data = ExactReader::new(file, meta.len(), self.progress.clone());
        match self.append(&entry, &mut data) {
            Ok(()) => Ok(()),
            Err(e) => Err(match data.fault {
                Some(Fault::Read) => AciError::io("read", &node.path, e),
                Some(Fault::Changed) => AciError::Changed {
                    path: node.path.clone(),
                },
                None => AciError::io("write", &self.out, e),
            }),
        }
    }

    /// Directories, symlinks, FIFOs and devices: entries without data.
    fn append_special(
        &mut self,
        node: &Node,
        meta: &Metadata,
        xattrs: &[Xattr],
    ) -> Result<(), AciError> {
        let file_type = meta.file_type();
        let mut name = node.name.clone();
        let mut link = None;
        let mut device = (0, 0);
        let kind = if file_type.is_dir() {
            // A trailing slash marks directories, as GNU tar and Go write them.
            name.push(b'/');
            EntryType::Directory
        } else if file_type.is_symlink() {
            let target = fs::read_link(&node.path)
                .map_err(|e| AciError::io("read the link", &node.path, e))?;
            link = Some(target.into_os_string().into_vec());
            EntryType::Symlink
        } else if file_type.is_char_device() {
            device = device_numbers(&node.path, meta.rdev())?;
            EntryType::Char
        } else if file_type.is_block_device() {
            device = device_numbers(&node.path, meta.rdev())?;
            EntryType::Block
        } else {
            EntryType::Fifo
        };
        let entry = EntryMeta {
            link: link.as_deref(),
            device,
            xattrs,
            ..EntryMeta::from_stat(&name, kind, meta)
        };
        self.append(&entry, &mut io::empty())
            .map_err(|e| AciError::io("write", &self.out, e))
    }

    fn append_hard_link(
        &mut self,
        node: &Node,
        meta: &Metadata,
        first: &[u8],
    ) -> Result<(), AciError> {
        let entry = EntryMeta {
            link: Some(first),
            ..EntryMeta::from_stat(&node.name, EntryType::Link, meta)
        };
        self.append(&entry, &mut io::empty())
            .map_err(|e| AciError::io("write", &self.out, e))
    }

    /// Writes one entry: its PAX header when needed, then the ustar header and the data.
    fn append(&mut self, entry: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        let (header, pax) = encode_header(entry);
        if !pax.is_empty() {
            self.tar
                .append(&pax_header(entry.name, pax.len()), &pax[..])?;
        }
        self.tar.append(&header, data)?;
        self.entries += 1;
        self.progress
            .set_message(format!("{} entries,", self.entries));
        Ok(())
    }

    /// All extended attributes of `path` (not following a symlink), sorted by name.
    fn read_xattrs(&mut self, path: &Path) -> Result<Vec<Xattr>, AciError> {
        let xattr_error =
            |e: Errno| AciError::io("read the extended attributes of", path, e.into());
        let names = match read_sized(
            || rustix::fs::llistxattr_query(path),
            |buf| rustix::fs::llistxattr(path, buf),
        ) {
            Ok(names) => names,
            Err(Errno::NOTSUP) => return Ok(Vec::new()), // the file system has none
            Err(e) => return Err(xattr_error(e)),
        };
        let mut xattrs = Vec::new();
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if name.contains(&b'=') {
                // `=` ends a PAX key: such a name cannot be encoded.
                self.skip_xattr(path, name, "its name contains '='");
                continue;
            }
            let value = read_sized(
                || rustix::fs::lgetxattr_query(path, name),
                |buf| rustix::fs::lgetxattr(path, name, buf),
            );
            match value {
                Ok(value) => xattrs.push((name.to_vec(), value)),
                Err(Errno::NODATA) => {} // removed since it was listed
                Err(e @ (Errno::PERM | Errno::ACCESS)) => {
                    self.skip_xattr(path, name, &e.to_string())
                }
                Err(e) => return Err(xattr_error(e)),
            }
        }
        xattrs.sort();
        Ok(xattrs)
    }

    fn skip_xattr(&mut self, path: &Path, name: &[u8], reason: &str) {
        self.warnings.push(BuildWarning::XattrSkipped {
            path: path.to_path_buf(),
            name: String::from_utf8_lossy(name).into_owned(),
            reason: reason.to_owned(),
        });
    }
}

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    // Cleared also when dropped on an error path, so the error line starts on a clean line.
    let bar = ProgressBar::new_spinner()
        .with_finish(ProgressFinish::AndClear)
        .with_message("0 entries,");
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} building image: {msg} {binary_bytes} ({binary_bytes_per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The children of a directory node, sorted by their byte names so that the archive does not
/// depend on `readdir` order (which differs between file systems and after a copy).
fn sorted_children(dir: &Node) -> Result<Vec<Node>, AciError> {
    let list_error = |e| AciError::io("list", &dir.path, e);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir.path).map_err(list_error)? {
        names.push(entry.map_err(list_error)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names
        .into_iter()
        .map(|child| {
            let mut name = dir.name.clone();
            name.push(b'/');
            name.extend_from_slice(child.as_bytes());
            Node {
                path: dir.path.join(&child),
                name,
            }
        })
        .collect())
}

/// Calls a size-query-then-read xattr syscall pair; retries when the data grew in between.
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    for _ in 0..8 {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; size];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// Opens without following a symlink; `O_NONBLOCK` so a FIFO swapped in cannot hang us.
fn open_nofollow(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

/// Opens a regular file found by `lstat` and checks it is still the same inode.
fn open_regular(path: &Path, seen: &Metadata) -> Result<File, AciError> {
    let file = open_nofollow(path).map_err(|e| AciError::io("open", path, e))?;
    let now = file.metadata().map_err(|e| AciError::io("stat", path, e))?;
    if (now.dev(), now.ino()) != (seen.dev(), seen.ino()) || !now.is_file() {
        return Err(AciError::Changed {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

fn device_numbers(path: &Path, rdev: u64) -> Result<(u32, u32), AciError> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    if u64::from(major) > MAX_OCTAL_7 || u64::from(minor) > MAX_OCTAL_7 {
        return Err(AciError::Unrepresentable {
            path: path.to_path_buf(),
            what: format!("device number {major}:{minor} does not fit ustar's 7 octal digits"),
        });
    }
    Ok((major, minor))
}

/// Why reading a file's data failed, so the error names the right culprit.
enum Fault {
    Read,
    Changed,
}

/// Yields exactly the `size` bytes the header announced: a file that shrank or grew while it
/// was archived is an error, never a header that disagrees with its data.
struct ExactReader<R> {
    inner: R,
    left: u64,
    fault: Option<Fault>,
    /// Counts bytes as they are read, so one big file still shows progress.
    progress: ProgressBar,
}

impl<R: Read> ExactReader<R> {
    fn new(inner: R, size: u64, progress: ProgressBar) -> Self {
        ExactReader {
            inner,
            left: size,
            fault: None,
            progress,
        }
    }

    fn fail(&mut self, fault: Fault, e: io::Error) -> io::Result<usize> {
        self.fault = Some(fault);
        Err(e)
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let changed = || io::Error::other("file changed while it was read");
        if self.left == 0 {
            // One more byte would mean the file grew past the size in its header.
            return match self.inner.read(&mut [0u8; 1]) {
                Ok(0) => Ok(0),
                Ok(_) => self.fail(Fault::Changed, changed()),
                Err(e) => self.fail(Fault::Read, e),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..max]) {
            Ok(0) => self.fail(Fault::Changed, changed()),
            Ok(n) => {
                self.left -= n as u64;
                self.progress.inc(n as u64);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => self.fail(Fault::Read, e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ustar headers and PAX records
// ---------------------------------------------------------------------------------------------

/// Largest value of a 7-digit octal field (uid, gid, devmajor, devminor).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime): 8 GiB - 1.
const MAX_OCTAL_11: u64 = 0o77777777777;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;

/// What one tar entry records, before encoding.
struct EntryMeta<'a> {
    name: &'a [u8],
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<&'a [u8]>,
    device: (u32, u32),
    xattrs: &'a [Xattr],
}

impl<'a> EntryMeta<'a> {
    fn new(name: &'a [u8], kind: EntryType, mode: u32) -> Self {
        EntryMeta {
            name,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            device: (0, 0),
            xattrs: &[],
        }
    }

    /// Mode (with setuid, setgid and sticky bits), numeric owner and mtime seconds from `lstat`.
    fn from_stat(name: &'a [u8], kind: EntryType, meta: &Metadata) -> Self {
        EntryMeta {
            uid: meta.uid().into(),
            gid: meta.gid().into(),
            mtime: meta.mtime(),
            ..EntryMeta::new(name, kind, meta.mode() & 0o7777)
        }
    }
}

/// Encodes an entry as a ustar header plus the PAX records it needs (empty when none).
fn encode_header(e: &EntryMeta) -> (Header, Vec<u8>) {
    let mut pax = PaxRecords::default();
    let mut h = Header::new_ustar();
    set_name(&mut h, e.name, &mut pax);
    h.set_mode(e.mode);
    h.set_uid(octal_or_pax(&mut pax, "uid", e.uid, MAX_OCTAL_7));
    h.set_gid(octal_or_pax(&mut pax, "gid", e.gid, MAX_OCTAL_7));
    h.set_size(octal_or_pax(&mut pax, "size", e.size, MAX_OCTAL_11));
    h.set_mtime(match u64::try_from(e.mtime) {
        Ok(t) => octal_or_pax(&mut pax, "mtime", t, MAX_OCTAL_11),
        Err(_) => {
            pax.push(b"mtime", e.mtime.to_string().as_bytes());
            0
        }
    });
    h.set_entry_type(e.kind);
    if let Some(link) = e.link {
        set_link_name(&mut h, link, &mut pax);
    }
    set_device(&mut h, e.device);
    for (name, value) in e.xattrs {
        pax.push(&[b"SCHILY.xattr.", &name[..]].concat(), value);
    }
    h.set_cksum();
    (h, pax.finish())
}

/// The value for an octal field, or 0 with a PAX record carrying the real value.
fn octal_or_pax(pax: &mut PaxRecords, key: &str, value: u64, max: u64) -> u64 {
    if value <= max {
        value
    } else {
        pax.push(key.as_bytes(), value.to_string().as_bytes());
        0
    }
}

/// ustar name (and prefix) when the name is ASCII and fits; otherwise a PAX `path` record, with
/// the first 100 bytes in the header for pax-unaware readers (as Go writes it).
fn set_name(h: &mut Header, name: &[u8], pax: &mut PaxRecords) {
    if name.is_ascii() && name.len() <= NAME_LEN {
        copy_field(&mut h.as_old_mut().name, name);
        return;
    }
    if let (true, Some((prefix, rest))) = (name.is_ascii(), split_ustar_path(name)) {
        copy_field(&mut h.as_old_mut().name, rest);
        if let Some(ustar) = h.as_ustar_mut() {
            copy_field(&mut ustar.prefix, prefix);
        }
        return;
    }
    pax.push_path(b"path", name);
    copy_field(&mut h.as_old_mut().name, &name[..name.len().min(NAME_LEN)]);
}

fn set_link_name(h: &mut Header, link: &[u8], pax: &mut PaxRecords) {
    if !(link.is_ascii() && link.len() <= NAME_LEN) {
        pax.push_path(b"linkpath", link);
    }
    copy_field(
        &mut h.as_old_mut().linkname,
        &link[..link.len().min(NAME_LEN)],
    );
}

/// Every header gets valid octal device fields (0 when not a device), as readers expect numbers.
fn set_device(h: &mut Header, (major, minor): (u32, u32)) {
    if let Some(ustar) = h.as_ustar_mut() {
        ustar.set_device_major(major);
        ustar.set_device_minor(minor);
    }
}

/// Go's `splitUSTARPath`: the longest prefix (≤ 155 bytes) ending at a `/` that leaves a
/// non-empty name of ≤ 100 bytes.
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut end = name.len().min(PREFIX_LEN + 1);
    if end == name.len() && name.ends_with(b"/") {
        end -= 1;
    }
    let i = name[..end].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    let fits = i > 0 && !rest.is_empty() && rest.len() <= NAME_LEN && prefix.len() <= PREFIX_LEN;
    fits.then_some((prefix, rest))
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// The header of a PAX extended-header entry for `name`: named `<dir>/PaxHeaders.0/<file>`,
/// ASCII, at most 100 bytes (Go's naming), root-owned 0644 with mtime 0 so it stays
/// reproducible.
fn pax_header(name: &[u8], size: usize) -> Header {
    let split = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (dir, file) = name.split_at(split);
    let mut pax_name = [dir, b"PaxHeaders.0"].concat();
    if !file.is_empty() {
        pax_name.push(b'/');
        pax_name.extend_from_slice(file);
    }
    pax_name.retain(|b| b.is_ascii() && *b != 0);
    pax_name.truncate(NAME_LEN);
    let mut h = Header::new_ustar();
    copy_field(&mut h.as_old_mut().name, &pax_name);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size as u64);
    h.set_entry_type(EntryType::XHeader);
    set_device(&mut h, (0, 0));
    h.set_cksum();
    h
}

/// PAX extended header records (POSIX.1-2001 `pax`, "extended header").
#[derive(Default)]
struct PaxRecords {
    data: Vec<u8>,
    /// A `path`/`linkpath` value is not UTF-8: say so with `hdrcharset=BINARY`.
    binary: bool,
}

impl PaxRecords {
    /// Appends `"<len> <key>=<value>\n"`, where `len` counts the whole record, its own digits
    /// included.
    fn push(&mut self, key: &[u8], value: &[u8]) {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + decimal_digits(len) {
            len = rest + decimal_digits(len);
        }
        self.data.extend_from_slice(len.to_string().as_bytes());
        self.data.push(b' ');
        self.data.extend_from_slice(key);
        self.data.push(b'=');
        self.data.extend_from_slice(value);
        self.data.push(b'\n');
    }

    fn push_path(&mut self, key: &[u8], value: &[u8]) {
        self.binary |= std::str::from_utf8(value).is_err();
        self.push(key, value);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.binary {
            self.push(b"hdrcharset", b"BINARY");
        }
        self.data
    }
}

fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(name: &[u8]) -> (Header, Vec<u8>) {
        encode_header(&EntryMeta::new(name, EntryType::Regular, 0o644))
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for value_len in 0..300 {
            let mut pax = PaxRecords::default();
            pax.push(b"path", &vec![b'x'; value_len]);
            let text = String::from_utf8(pax.finish()).expect("utf-8");
            let (len, _) = text.split_once(' ').expect("length");
            assert_eq!(
                len.parse::<usize>().expect("number"),
                text.len(),
                "{value_len}"
            );
        }
    }

    #[test]
    fn short_ascii_names_need_no_pax() {
        let (h, pax) = header_of(b"rootfs/etc/hostname");
        assert!(pax.is_empty());
        assert_eq!(&h.path_bytes()[..], b"rootfs/etc/hostname");
    }

    #[test]
    fn long_names_use_the_ustar_prefix_when_possible() {
        let name = [&b"rootfs/"[..], &[b'd'; 90], b"/", &[b'f'; 90]].concat();
        let (h, pax) = header_of(&name);
        assert!(pax.is_empty());
        assert_eq!(&h.path_bytes()[..], &name[..]);
    }

    #[test]
    fn names_that_cannot_split_use_pax_path() {
        let name = [&b"rootfs/"[..], &[b'f'; 150]].concat();
        let (h, pax) = header_of(&name);
        let expected = [&b"167 path="[..], &name, b"\n"].concat();
        assert_eq!(pax, expected);
        assert_eq!(h.as_old().name, name[..100]);
    }

    #[test]
    fn non_utf8_names_are_marked_binary() {
        let (_, pax) = header_of(b"rootfs/caf\xe9");
        let text = String::from_utf8_lossy(&pax);
        assert!(text.contains(" path=rootfs/caf"), "{text}");
        assert!(text.ends_with("hdrcharset=BINARY\n"), "{text}");
        let (_, pax) = header_of("rootfs/café".as_bytes());
        assert!(!String::from_utf8_lossy(&pax).contains("hdrcharset"));
    }

    #[test]
    fn out_of_range_numbers_go_to_pax() {
        let entry = EntryMeta {
            uid: 1 << 32,
            size: 10 << 30,
            mtime: -1,
            ..EntryMeta::new(b"rootfs/big", EntryType::Regular, 0o644)
        };
        let (h, pax) = encode_header(&entry);
        let text = String::from_utf8(pax).expect("utf-8");
        assert_eq!(
            text,
            "18 uid=4294967296\n20 size=10737418240\n12 mtime=-1\n"
        );
        // The octal fields hold zero, never GNU base-256.
        assert_eq!(h.uid().expect("uid"), 0);
        assert_eq!(h.size().expect("size"), 0);
        assert_eq!(h.as_old().size[0] & 0x80, 0);
    }

    #[test]
    fn split_follows_go() {
        assert_eq!(split_ustar_path(b"short"), None);
        let name = [&[b'a'; 120][..], b"/b"].concat();
        assert_eq!(split_ustar_path(&name), Some((&name[..120], &b"b"[..])));
        let no_slash = [b'a'; 160];
        assert_eq!(split_ustar_path(&no_slash), None);
        let dir = [&[b'a'; 120][..], b"/"].concat();
        assert_eq!(split_ustar_path(&dir), None, "would leave an empty name");
    }

    #[test]
    fn pax_header_names_stay_inside_their_directory() {
        let name = |n: &[u8]| pax_header(n, 1).path_bytes().into_owned();
        assert_eq!(name(b"rootfs/"), b"rootfs/PaxHeaders.0");
        assert_eq!(name(b"rootfs/a/b"), b"rootfs/a/PaxHeaders.0/b");
        assert_eq!(name(b"rootfs/caf\xe9"), b"rootfs/PaxHeaders.0/caf");
        assert_eq!(name(&[b'x'; 300]).len(), 100);
    }

    #[test]
    fn output_name_must_end_in_aci() {
        assert!(check_output_name(Path::new("a.aci")).is_ok());
        assert!(check_output_name(Path::new("dir/a.aci")).is_ok());
        for bad in ["a.tar", "a.aci.gz", "a", "a.ACI", "/"] {
            assert!(check_output_name(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_reader_notices_changes() {
        let mut out = Vec::new();
        let mut shrank = ExactReader::new(&b"abc"[..], 4, ProgressBar::hidden());
        assert!(io::copy(&mut shrank, &mut out).is_err());
        assert!(matches!(shrank.fault, Some(Fault::Changed)));
        let mut grew = ExactReader::new(&b"abcde"[..], 4, ProgressBar::hidden());
        assert!(io::copy(&mut grew, &mut out).is_err());
        assert!(matches!(grew.fault, Some(Fault::Changed)));
        let mut exact = ExactReader::new(&b"abcd"[..], 4, ProgressBar::hidden());
        assert_eq!(io::copy(&mut exact, &mut out).expect("copy"), 4);
    }
}
