//! One-pass import of an image archive (DESIGN.md "Store"): the compressed input is read once;
//! the decompressed stream is hashed (its SHA-512 is the image ID), split into tar-split records,
//! and its regular files are written into a staging tree, which is deduplicated against the CAS
//! and renamed into place when the whole archive has been read and found sound.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha512};

use super::cas::{self, DedupStats};
use super::lock::StoreLock;
use super::tarsplit::TarSplitWriter;
use super::tree::{Meta, TreeBuilder};
use super::{ImageRecord, Store, StoreError, io_err};
use crate::aci::compress::{Compression, decompress};
use crate::aci::reader::{
    AciPath, EntryKind, MAX_MANIFEST_SIZE, PathRefusal, classify_path, classify_type,
};
use crate::schema::{ImageId, ImageManifest};

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Refuse archives that expand beyond this many bytes (decompression bombs).
    pub max_size: u64,
    /// Where the image came from, recorded in the index.
    pub source: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_size: 64 << 30,
            source: None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub id: ImageId,
    pub manifest: ImageManifest,
    pub compression: Compression,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// The image was in the store already; nothing was added.
    pub already_present: bool,
    pub dedup: DedupStats,
    pub warnings: Vec<String>,
}

/// Imports one archive into the store. On any error nothing of it stays visible, and nothing of
/// it stays at all once the staging directory is gone (it is removed on the way out).
pub fn import_image(
    store: &Store,
    input: impl Read + Send,
    opts: &ImportOptions,
) -> Result<ImportOutcome, StoreError> {
    let _shared = store.lock_shared()?;
    let staging = Staging::create(&store.tmp_dir())?;
    // Decompression runs on its own thread, overlapping with hashing and writing the tree here:
    // the same two-core parallelism `gzip -dc | sha512sum` gets from two processes.
    std::thread::scope(|scope| {
        let (compression, plain, hashed) = spawn_decompressor(scope, input, opts.max_size)?;
        let finish = || {
            hashed
                .join()
                .unwrap_or(None)
                .ok_or_else(|| read_error(io::Error::other("decompression thread failed")))
        };
        import_stream(store, staging, compression, plain, finish, opts)
    })
}

/// What the decompression thread saw of the whole stream: its SHA-512 (the image ID) and size.
struct StreamSummary {
    digest: [u8; 64],
    size: u64,
}

fn import_stream(
    store: &Store,
    staging: Staging,
    compression: Compression,
    plain: ChannelReader,
    finish: impl FnOnce() -> Result<StreamSummary, StoreError>,
    opts: &ImportOptions,
) -> Result<ImportOutcome, StoreError> {
    let split = TarSplitWriter::new(create(&staging.dir.join("tarsplit"))?)
        .map_err(io_err("write", &staging.dir))?;
    let state = Rc::new(RefCell::new(TapState {
        recording: true,
        split,
    }));
    let tap = Tap {
        inner: plain,
        state: Rc::clone(&state),
    };
    let tree_fd = open_dir(&staging.dir.join("tree"))?;
    let mut builder = TreeBuilder::new(tree_fd);
    let (mut tap, manifest_text) = read_entries(tap, &mut builder, &state)?;
    io::copy(&mut tap, &mut io::sink()).map_err(read_error)?; // end blocks and trailing bytes
    drop(tap);
    let StreamSummary { digest, size } = finish()?;
    let split = Rc::try_unwrap(state)
        .map_err(|_| io::Error::other("tap still shared"))
        .map_err(read_error)?;
    let (file, _) = split
        .into_inner()
        .split
        .finish()
        .map_err(io_err("write", &staging.dir))?;
    file.sync_all().map_err(io_err("sync", &staging.dir))?;
    let text = manifest_text.ok_or(StoreError::NoManifest)?;
    if !builder.has_rootfs() {
        return Err(StoreError::Entry {
            entry: "rootfs".into(),
            reason: "missing (A1: an image holds manifest and rootfs/)".into(),
        });
    }
    let manifest = ImageManifest::parse(&text)
        .map_err(StoreError::BadManifest)?
        .value;
    let pending = Pending {
        id: ImageId::from_sha512(&digest),
        manifest,
        text,
        size,
        compression,
    };
    commit(store, staging, builder, pending, opts)
}

/// Reads every entry into the tree; returns the tap (for the trailing bytes) and the manifest.
fn read_entries<R: Read>(
    tap: Tap<R>,
    builder: &mut TreeBuilder,
    state: &Rc<RefCell<TapState>>,
) -> Result<(Tap<R>, Option<String>), StoreError> {
    let mut archive = tar::Archive::new(tap);
    let mut manifest = None;
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let refuse = |reason: String| StoreError::Entry {
            entry: shown.clone(),
            reason,
        };
        let kind = classify_type(entry.header().entry_type()).map_err(refuse)?;
        if kind == EntryKind::GlobalHeader {
            continue;
        }
        let path = match classify_path(&raw_path) {
            Ok(p) => p,
            // The archive's own top directory (`tar -C dir -c .`): nothing to create.
            Err(PathRefusal::Empty) if kind == EntryKind::Directory => continue,
            Err(r) => return Err(refuse(r.to_string())),
        };
        builder
            .check(&path.tree_path(), kind == EntryKind::Directory)
            .map_err(refuse)?;
        let meta = read_meta(&mut entry).map_err(refuse)?;
        let text =
            add_entry(builder, state, &mut entry, kind, &path, meta).map_err(|e| match e {
                EntryError::Refused(reason) => refuse(reason),
                EntryError::Store(e) => e,
            })?;
        manifest = manifest.or(text);
    }
    Ok((archive.into_inner(), manifest))
}

enum EntryError {
    Refused(String),
    Store(StoreError),
}

impl From<StoreError> for EntryError {
    fn from(e: StoreError) -> Self {
        EntryError::Store(e)
    }
}

/// Adds one classified entry; returns the manifest text when the entry is the manifest.
fn add_entry<R: Read>(
    builder: &mut TreeBuilder,
    state: &Rc<RefCell<TapState>>,
    entry: &mut tar::Entry<'_, Tap<R>>,
    kind: EntryKind,
    path: &AciPath,
    meta: Meta,
) -> Result<Option<String>, EntryError> {
    let tree_path = path.tree_path();
    let fs_err = |e: io::Error| EntryError::Refused(format!("cannot be stored: {e}"));
    match (kind, path) {
        (EntryKind::Regular, AciPath::Manifest) => {
            if entry.size() > MAX_MANIFEST_SIZE {
                return Err(EntryError::Refused(format!(
                    "manifest larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            let mut text = Vec::new();
            add_content(builder, state, entry, &tree_path, &meta, &mut text)?;
            let text = String::from_utf8(text)
                .map_err(|_| EntryError::Refused("manifest is not UTF-8".into()))?;
            return Ok(Some(text));
        }
        (_, AciPath::Manifest) => {
            return Err(EntryError::Refused(
                "manifest must be a regular file".into(),
            ));
        }
        (k, AciPath::Rootfs(rel)) if rel.is_empty() && k != EntryKind::Directory => {
            return Err(EntryError::Refused("rootfs must be a directory".into()));
        }
        (EntryKind::Regular, _) => {
            add_content(builder, state, entry, &tree_path, &meta, &mut io::sink())?
        }
        (EntryKind::Directory, _) => builder.add_dir(&tree_path, meta).map_err(fs_err)?,
        (EntryKind::Symlink, _) => {
            let target = entry
                .link_name_bytes()
                .ok_or(EntryError::Refused("symlink without a target".into()))?;
            builder
                .add_symlink(&tree_path, &target, &meta)
                .map_err(fs_err)?;
        }
        (EntryKind::HardLink, _) => {
            let raw = entry
                .link_name_bytes()
                .ok_or(EntryError::Refused("hard link without a target".into()))?;
            let target = match classify_path(&raw) {
                Ok(t @ AciPath::Rootfs(_)) => t,
                _ => {
                    return Err(EntryError::Refused(
                        "hard link pointing outside the image's rootfs".into(),
                    ));
                }
            };
            builder
                .add_hardlink(&tree_path, &target.tree_path())
                .map_err(EntryError::Refused)?
                .map_err(fs_err)?;
        }
        (EntryKind::Fifo, _) => builder.add_fifo(&tree_path, &meta).map_err(fs_err)?,
        (EntryKind::Device, _) => builder.add_device(&tree_path),
        (EntryKind::GlobalHeader, _) => {}
    }
    Ok(None)
}

/// Streams a regular file's content into the tree (and `copy`), recording it in the tar-split.
fn add_content<R: Read>(
    builder: &mut TreeBuilder,
    state: &Rc<RefCell<TapState>>,
    entry: &mut tar::Entry<'_, Tap<R>>,
    tree_path: &[u8],
    meta: &Meta,
    copy: &mut impl io::Write,
) -> Result<(), EntryError> {
    let size = entry.size();
    state.borrow_mut().recording = false;
    let mut counted = CountingTee {
        inner: entry,
        copy,
        count: 0,
        read_failed: false,
    };
    let written = builder.add_file(tree_path, meta, &mut counted);
    let (count, read_failed) = (counted.count, counted.read_failed);
    state.borrow_mut().recording = true;
    written.map_err(|e| match read_failed {
        true => EntryError::Store(read_error(e)),
        // The stream is fine but the tree cannot hold this entry (name, permissions, space).
        false => EntryError::Refused(format!("cannot be stored: {e}")),
    })?;
    if count != size {
        return Err(EntryError::Refused(format!(
            "truncated: {count} of {size} bytes"
        )));
    }
    let mut s = state.borrow_mut();
    s.split
        .file(size, tree_path)
        .map_err(|e| EntryError::Store(read_error(e)))
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
    let h = entry.header();
    let bad = |what: &str, e: io::Error| format!("bad {what} in header: {e}");
    let mode = h.mode().map_err(|e| bad("mode", e))? & 0o7777;
    let uid = u32::try_from(h.uid().map_err(|e| bad("uid", e))?)
        .map_err(|_| "uid out of range".to_string())?;
    let gid = u32::try_from(h.gid().map_err(|e| bad("gid", e))?)
        .map_err(|_| "gid out of range".to_string())?;
    let mtime = i64::try_from(h.mtime().map_err(|e| bad("mtime", e))?)
        .map_err(|_| "mtime out of range".to_string())?;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX record", e))? {
        for ext in pax {
            let ext = ext.map_err(|e| bad("PAX record", e))?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

struct Pending {
    id: ImageId,
    manifest: ImageManifest,
    text: String,
    size: u64,
    compression: Compression,
}

/// Makes the staged image visible: dedup into the CAS, sync, rename into `images/`, then the
/// index row, all under the image's own lock so concurrent imports of one ID commit once.
fn commit(
    store: &Store,
    mut staging: Staging,
    mut builder: TreeBuilder,
    p: Pending,
    opts: &ImportOptions,
) -> Result<ImportOutcome, StoreError> {
    let tree = staging.dir.join("tree");
    builder
        .finish_dirs()
        .map_err(io_err("set metadata in", &tree))?;
    let mut outcome = ImportOutcome {
        id: p.id.clone(),
        manifest: p.manifest.clone(),
        compression: p.compression,
        size: p.size,
        already_present: false,
        dedup: DedupStats::default(),
        warnings: std::mem::take(&mut builder.warnings),
    };
    let _image_lock =
        StoreLock::acquire(&store.root().join("locks").join(p.id.digest_hex()), true)?;
    if store.index().get(&p.id)?.is_some() {
        // Fetching it again counts as a use: `image gc` must not take it right away.
        store.index().touch(&p.id, now())?;
        outcome.already_present = true;
        return Ok(outcome); // the staging directory goes with `staging`
    }
    let cas_dir = store.root().join("cas");
    let cas_fd = open_dir(&cas_dir)?;
    outcome.dedup = cas::dedup(&cas_fd, builder.root(), &builder.files)
        .map_err(io_err("deduplicate into", &cas_dir))?;
    cas::relink(builder.root(), &builder.hardlinks).map_err(io_err("link in", &tree))?;
    write_blob_list(&staging.dir, &builder)?;
    // One syncfs instead of an fsync per file: the rename below must not reach the disk before
    // the files it publishes.
    rustix::fs::syncfs(builder.root()).map_err(|e| io_err("sync", &tree)(e.into()))?;
    publish(store, &mut staging, &p.id)?;
    let now = now();
    let rec = ImageRecord {
        id: p.id,
        name: p.manifest.name.clone(),
        labels: p.manifest.labels.clone(),
        manifest: p.manifest,
        manifest_text: p.text,
        size: p.size,
        import_time: now,
        last_used: now,
        source: opts.source.clone(),
    };
    store.index().insert(&rec)?;
    Ok(outcome)
}

/// The CAS keys this image uses, so `image rm` can free exactly its blobs.
fn write_blob_list(dir: &Path, builder: &TreeBuilder) -> Result<(), StoreError> {
    let mut keys: Vec<&str> = builder.files.iter().map(|f| f.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let path = dir.join("blobs");
    let mut text = keys.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(io_err("write", &path))
}

/// Renames the staging directory to `images/<hex>`, replacing an invisible leftover of a
/// crashed import of the same image.
fn publish(store: &Store, staging: &mut Staging, id: &ImageId) -> Result<(), StoreError> {
    let dest = store.image_dir(id);
    if dest.exists() {
        let trash = store
            .tmp_dir()
            .join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&dest, &trash).map_err(io_err("move aside", &dest))?;
        std::fs::remove_dir_all(&trash).map_err(io_err("remove", &trash))?;
    }
    std::fs::rename(&staging.dir, &dest).map_err(io_err("publish", &dest))?;
    staging.committed = true;
    let images = store.root().join("images");
    File::open(&images)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", &images))
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn create(path: &Path) -> Result<File, StoreError> {
    File::create_new(path).map_err(io_err("create", path))
}

fn open_dir(path: &Path) -> Result<std::os::fd::OwnedFd, StoreError> {
    use rustix::fs::{Mode, OFlags, open};
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    open(path, flags, Mode::empty()).map_err(|e| io_err("open", path)(e.into()))
}

/// Errors while reading the stream: a size-limit trip becomes its own error.
fn read_error(e: io::Error) -> StoreError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitExceeded>())
    {
        Some(l) => StoreError::TooLarge { limit: l.0 },
        None => StoreError::Read { source: e },
    }
}

/// A private staging directory in `tmp/`, removed on drop unless published. Its flock tells
/// `gc` that its importer is alive.
struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: StoreLock,
    committed: bool,
}

impl Staging {
    fn create(tmp: &Path) -> Result<Staging, StoreError> {
        let name = format!(
            "import-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let lock_path = tmp.join(format!("{name}.lock"));
        let lock = StoreLock::acquire(&lock_path, true)?;
        let dir = tmp.join(name);
        std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        std::fs::create_dir(dir.join("tree")).map_err(io_err("create", &dir))?;
        Ok(Staging {
            dir,
            lock_path,
            _lock: lock,
            committed: false,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir); // best effort: gc removes what is left
        }
        let _ = std::fs::remove_file(&self.lock_path); // best effort, as above
    }
}

/// Chunks of decompressed data, from the decompression thread to the importer.
type Chunk = io::Result<Vec<u8>>;

/// Size of the chunks handed from the decompression thread to the importer.
const CHUNK: usize = 256 * 1024;

/// Starts decompressing `input` on a scoped thread, which also hashes the decompressed stream
/// and enforces the size limit (it has CPU to spare; the importer's thread is the busy one).
/// Returns the detected compression, a reader of the decompressed stream, and the thread, whose
/// result is the stream's summary once it has been read to the end.
fn spawn_decompressor<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    input: R,
    limit: u64,
) -> Result<
    (
        Compression,
        ChannelReader,
        std::thread::ScopedJoinHandle<'scope, Option<StreamSummary>>,
    ),
    StoreError,
> {
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(8);
    let (pool_tx, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let handle = scope.spawn(move || {
        let (compression, plain) = match decompress(BufReader::with_capacity(256 * 1024, input)) {
            Ok(ok) => ok,
            Err(e) => return started_tx.send(Err(e)).map(|()| None).unwrap_or(None),
        };
        started_tx.send(Ok(compression)).ok()?;
        pump(plain, &tx, &pool_rx, limit)
    });
    let compression = started_rx
        .recv()
        .map_err(|_| read_error(io::Error::other("decompression thread died")))??;
    Ok((
        compression,
        ChannelReader {
            rx,
            pool: pool_tx,
            current: Vec::new(),
            pos: 0,
        },
        handle,
    ))
}

/// The decompression thread's loop: read, count, hash, hand over. `None` when it stopped early
/// (an error, sent to the importer, or the importer hung up).
fn pump(
    mut plain: impl Read,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
    pool: &std::sync::mpsc::Receiver<Vec<u8>>,
    limit: u64,
) -> Option<StreamSummary> {
    let mut hasher = Sha512::new();
    let mut size = 0u64;
    loop {
        // Buffers come back from the importer: no allocating and zeroing per chunk.
        let mut buf = pool.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let n = match read_full(&mut plain, &mut buf) {
            Ok(0) => {
                return Some(StreamSummary {
                    digest: hasher.finalize().into(),
                    size,
                });
            }
            Ok(n) => n,
            Err(e) => return tx.send(Err(e)).ok().and(None),
        };
        size += n as u64;
        if size > limit {
            return tx
                .send(Err(io::Error::other(LimitExceeded(limit))))
                .ok()
                .and(None);
        }
        hasher.update(&buf[..n]);
        buf.truncate(n);
        // A closed channel means the importer stopped (refused the image): stop too.
        tx.send(Ok(buf)).ok()?;
    }
}

/// Fills `buf` as far as the stream allows (fewer, larger chunks cost less to hand over).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The importer's end of the decompression channel.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Chunk>,
    /// Where spent buffers go back for reuse.
    pool: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    let spent = std::mem::replace(&mut self.current, chunk?);
                    let _ = self.pool.send(spent); // best effort: the thread may be done
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // the decompressor finished
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Marker error for the expanded-size limit.
#[derive(Debug)]
struct LimitExceeded(u64);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expanded size limit of {} bytes exceeded", self.0)
    }
}

impl std::error::Error for LimitExceeded {}

struct TapState {
    recording: bool,
    split: TarSplitWriter<File>,
}

/// Records every byte the tar reader consumes into the tar-split, except file content (which the
/// tree keeps). The tar crate reads exactly what it needs, never ahead, so the split is exact.
struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        if s.recording {
            s.split.raw(&buf[..n]);
        }
        Ok(n)
    }
}

/// Passes content through to the tree while counting it and copying it to `copy`.
struct CountingTee<'a, R, W> {
    inner: &'a mut R,
    copy: &'a mut W,
    count: u64,
    /// Whether an error came from the archive stream rather than from writing the tree.
    read_failed: bool,
}

impl<R: Read, W: io::Write> Read for CountingTee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| self.read_failed = true)?;
        self.copy.write_all(&buf[..n])?;
        self.count += n as u64;
        Ok(n)
    }
}
