//! Getting images into the store (spec/discovery.md, spec/aci.md A8–A12; rkt's
//! `image-fetching-behavior`): image arguments, meta discovery, HTTPS downloads with auth,
//! retries, caching and resume, signature checks, dependencies, and the one-pass import.
//!
//! Image arguments ([`ImageRef`]): `name[:version][,label=value]` (discovery), `https://…`,
//! `http://…` (only with `--insecure-options=http`), a path or `file://` URL, or an image ID
//! (or unique prefix) already in the store.
//!
//! The order for a remote image, so that nothing unverified ever becomes visible:
//! 1. discovery (names) gives the image and signature URLs; the pull policy decides whether
//!    the store's copy will do (`new`, `never`) or the server is asked (`update`, with the
//!    cached `ETag` and `max-age`; a 304 re-uses the stored image);
//! 2. the archive is downloaded into the store's `tmp/` (resumable);
//! 3. its manifest is read: name and labels must be what was asked (DS15);
//! 4. the signature (`.aci.asc`) is downloaded and checked by the trust store against the
//!    manifest's name (`--insecure-options=image` skips this, with a warning);
//! 5. its dependencies are fetched the same way, in parallel, and each must have the
//!    `imageID` its dependent names (D1);
//! 6. only then does the store's one-pass import make it visible; the cache row follows.
//!
//! Local files take steps 3–4 (`x.aci.asc` beside `x.aci`) and 6; their dependencies are not
//! fetched (they may be imported from files too, and rendering checks they are there).

mod archive;
pub mod auth;
pub mod http;

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha512};
use url::Url;

use crate::discovery::{DiscoveryError, Want, discover};
use crate::schema::{AcIdentifier, AppString, Dependency, ImageId, ImageManifest, Labels};
use crate::store::{ImportOptions, RemoteRecord, Store, StoreError, StoreLock, import_image};
use crate::trust::{TrustError, TrustStore};
use auth::AuthConfig;
use http::{Downloaded, Http, HttpConfig, chain};

/// Where distributions put trusted keys (`trustedkeys/` below it), as rkt used `/usr/lib/rkt`.
pub const VENDOR_DIR: &str = "/usr/lib/appc";
/// How deep dependencies may nest before we suspect a cycle.
const MAX_DEPENDENCY_DEPTH: usize = 16;

/// A public key as downloaded, before anyone decided to trust it.
#[derive(Debug, Clone)]
pub struct PubkeyDownload {
    /// Where the key came from (shown to the user with its fingerprint).
    pub url: String,
    /// The key as served (ASCII-armored or binary OpenPGP).
    pub key: Vec<u8>,
}

/// How far downloads may relax the usual checks (`--insecure-options`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Relaxed {
    /// Plain http:// is allowed.
    pub http: bool,
    /// TLS certificates are not checked.
    pub tls: bool,
}

/// When the store's copy is good enough (rkt's `--pull-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Use the store's copy if there is one, else fetch (`run`'s default).
    #[default]
    New,
    /// Ask the server; `ETag`/`max-age` avoid downloading again (`fetch`'s default).
    Update,
    /// Only the store.
    Never,
}

impl FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "new" => Ok(PullPolicy::New),
            "update" => Ok(PullPolicy::Update),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "{other:?} is not a pull policy (new, update, never)"
            )),
        }
    }
}

/// Everything a fetch needs to know besides the store.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `--config-dir`: `auth.d/` and `trustedkeys/`.
    pub config_dir: PathBuf,
    /// The vendor trust directory ([`VENDOR_DIR`]).
    pub vendor_dir: PathBuf,
    pub relaxed: Relaxed,
    /// `--insecure-options=image`: import without checking signatures.
    pub allow_unsigned: bool,
    pub pull_policy: PullPolicy,
    /// Refuse images that expand beyond this (decompression bombs).
    pub max_size: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            config_dir: PathBuf::from("/etc/appc"),
            vendor_dir: PathBuf::from(VENDOR_DIR),
            relaxed: Relaxed::default(),
            allow_unsigned: false,
            pull_policy: PullPolicy::New,
            max_size: ImportOptions::default().max_size,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: {status}")]
    Status { url: String, status: String },
    #[error("{url}: 401 Unauthorized; {hint}")]
    Unauthorized { url: String, hint: String },
    #[error("{url}: plain http is refused; allow it with --insecure-options=http")]
    InsecureHttp { url: String },
    #[error("{url}: {scheme}:// is not supported (https, or http with --insecure-options=http)")]
    Scheme { url: String, scheme: String },
    #[error("CA certificates {} (SSL_CERT_FILE): {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Auth { path: PathBuf, reason: String },
    #[error("cannot set up the HTTP client: {reason}")]
    Client { reason: String },
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an image archive: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    #[error(
        "{image}: image is not signed ({reason}); use --insecure-options=image to import it anyway"
    )]
    Unsigned { image: String, reason: String },
    #[error("{image}: signature check failed, refusing the image: {source}")]
    Verify { image: String, source: TrustError },
    #[error("{url}: the image is named {found}, but {wanted} was asked for (DS15); refusing it")]
    NameMismatch {
        url: String,
        wanted: String,
        found: String,
    },
    #[error("{url}: the image's labels ({found}) do not match {wanted} (DS15); refusing it")]
    LabelMismatch {
        url: String,
        wanted: String,
        found: String,
    },
    #[error(
        "image {image}: dependency {dependency} must be image {wanted}, but discovery gave {found}; refusing it"
    )]
    DependencyMismatch {
        image: String,
        dependency: String,
        wanted: String,
        found: String,
    },
    #[error("image {image}: dependencies nest deeper than {MAX_DEPENDENCY_DEPTH} (a cycle?)")]
    TooDeep { image: String },
    #[error("{image}: {source}")]
    Store {
        image: String,
        source: Box<StoreError>,
    },
    #[error("image {image:?} is not in the store and --pull-policy=never forbids fetching it")]
    NotInStore { image: String },
    #[error("image {image:?}: {reason}")]
    BadArg { image: String, reason: String },
}

/// An image argument, classified by its shape (as rkt guessed image types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `sha512-…`: a full ID or unique prefix, from the store only.
    Id(String),
    /// A path or `file://` URL of an `.aci`.
    File(PathBuf),
    /// `https://…` or `http://…`.
    Url(Url),
    /// `name[:version][,label=value]`: meta discovery.
    Name(AppString),
}

impl ImageRef {
    pub fn parse(arg: &str) -> Result<ImageRef, FetchError> {
        let bad = |reason: String| FetchError::BadArg {
            image: arg.to_owned(),
            reason,
        };
        if arg.starts_with("sha512-") {
            return Ok(ImageRef::Id(arg.to_owned()));
        }
        if let Some(rest) = arg.strip_prefix("file://") {
            return Ok(ImageRef::File(PathBuf::from(rest)));
        }
        if arg.contains("://") {
            let url = Url::parse(arg).map_err(|e| bad(format!("not a URL: {e}")))?;
            return match url.scheme() {
                "https" | "http" => Ok(ImageRef::Url(url)),
                other => Err(bad(format!(
                    "{other}:// images are not supported (https://, a name, a path or an image ID)"
                ))),
            };
        }
        // An AC Identifier starts with a letter or digit, so '/' and '.' can only be paths; an
        // existing file wins over a name, as in rkt.
        if arg.starts_with('/')
            || arg.starts_with('.')
            || arg.ends_with(".aci")
            || Path::new(arg).is_file()
        {
            return Ok(ImageRef::File(PathBuf::from(arg)));
        }
        AppString::parse(arg)
            .map(ImageRef::Name)
            .map_err(|e| bad(e.to_string()))
    }
}

/// What a fetch gave.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub id: ImageId,
    /// The image was imported by this fetch (it was not in the store before).
    pub new: bool,
    /// Things the user should hear about (unverified images, manifest leniency).
    pub warnings: Vec<String>,
}

/// Fetches images into a store with one configuration.
pub struct Fetcher {
    cfg: FetchConfig,
    http: Http,
    rt: tokio::runtime::Runtime,
    bars: indicatif::MultiProgress,
}

impl Fetcher {
    pub fn new(cfg: FetchConfig) -> Result<Fetcher, FetchError> {
        let http = Http::new(http_config(&cfg.config_dir, cfg.relaxed)?)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| FetchError::Client {
                reason: e.to_string(),
            })?;
        let bars = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::MultiProgress::new()
        } else {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        Ok(Fetcher {
            cfg,
            http,
            rt,
            bars,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.cfg
    }

    /// Fetches one image argument into `store`.
    pub fn fetch(&self, store: &Store, arg: &str) -> Result<Fetched, FetchError> {
        match ImageRef::parse(arg)? {
            ImageRef::Id(q) => {
                let rec = store.resolve(&q).map_err(|e| match e {
                    StoreError::NotFound { .. } => FetchError::BadArg {
                        image: q.clone(),
                        reason: "no image with this ID is in the store (IDs are never fetched)"
                            .into(),
                    },
                    e => store_err(&q, e),
                })?;
                Ok(fetched(rec.id, false))
            }
            ImageRef::File(path) => self.fetch_file(store, &path),
            ImageRef::Url(url) => self.fetch_url(store, &url),
            ImageRef::Name(app) => self.fetch_name(store, &app, 0),
        }
    }

    /// A local archive: `x.aci.asc` beside it, checked for the manifest's name.
    pub fn fetch_file(&self, store: &Store, path: &Path) -> Result<Fetched, FetchError> {
        let asc = PathBuf::from(format!("{}.asc", path.display()));
        let shown = path.display().to_string();
        let signature = if self.cfg.allow_unsigned {
            None
        } else {
            match std::fs::read(&asc) {
                Ok(sig) => Some(sig),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(FetchError::Unsigned {
                        image: shown,
                        reason: format!("no {} next to it", asc.display()),
                    });
                }
                Err(source) => {
                    return Err(FetchError::Io {
                        op: "read",
                        path: asc,
                        source,
                    });
                }
            }
        };
        let pending = Pending {
            path,
            shown: &shown,
            wanted: None,
            signature: signature.map(Signature::Bytes),
            dependencies: false,
        };
        self.verify_and_import(store, pending, 0)
    }

    /// `https://…/x.aci`: its signature is `x.aci.asc` beside it.
    fn fetch_url(&self, store: &Store, url: &Url) -> Result<Fetched, FetchError> {
        if self.cfg.pull_policy != PullPolicy::Update
            && let Some(id) = self.cached(store, url)?
        {
            return Ok(fetched(id, false));
        }
        if self.cfg.pull_policy == PullPolicy::Never {
            return Err(FetchError::NotInStore {
                image: url.to_string(),
            });
        }
        let asc = signature_url(url)?;
        self.fetch_remote(store, url, &asc, None, 0)
    }

    /// `name[:version][,label=value]`: the store (unless `update`), then meta discovery.
    fn fetch_name(
        &self,
        store: &Store,
        app: &AppString,
        depth: usize,
    ) -> Result<Fetched, FetchError> {
        if self.cfg.pull_policy != PullPolicy::Update {
            match store.resolve(&app.to_string()) {
                Ok(rec) => return Ok(fetched(rec.id, false)),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&app.to_string(), e)),
            }
            if self.cfg.pull_policy == PullPolicy::Never {
                return Err(FetchError::NotInStore {
                    image: app.to_string(),
                });
            }
        }
        let want = Want {
            images: true,
            pubkeys: false,
        };
        let found = self.discover(app, want)?;
        let mut last: Option<FetchError> = None;
        for ep in &found.endpoints {
            let (Ok(aci), Ok(asc)) = (Url::parse(&ep.aci), Url::parse(&ep.asc)) else {
                continue;
            };
            // DS9: several templates may be offered; only the ones we can download count.
            if let Err(e) = self.http.check_scheme(&aci) {
                last.get_or_insert(e);
                continue;
            }
            match self.fetch_remote(store, &aci, &asc, Some(app), depth) {
                Ok(f) => return Ok(f),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| FetchError::BadArg {
            image: app.to_string(),
            reason: "discovery found no usable image URL".into(),
        }))
    }

    /// Runs the discovery walk with this fetcher's client (and http when allowed).
    fn discover(
        &self,
        app: &AppString,
        want: Want,
    ) -> Result<crate::discovery::Discovered, FetchError> {
        discover_with(&self.http, &self.rt, app, want)
    }

    /// The stored image a URL gave before, if the cache has it.
    fn cached(&self, store: &Store, url: &Url) -> Result<Option<ImageId>, FetchError> {
        Ok(store
            .index()
            .remote(url.as_str())
            .map_err(|e| store_err(url.as_str(), e))?
            .map(|r| r.image_id))
    }

    fn fetch_remote(
        &self,
        store: &Store,
        aci: &Url,
        asc: &Url,
        wanted: Option<&AppString>,
        depth: usize,
    ) -> Result<Fetched, FetchError> {
        self.http.check_scheme(aci)?;
        let shown = aci.to_string();
        let cached = store
            .index()
            .remote(aci.as_str())
            .map_err(|e| store_err(&shown, e))?;
        let now = crate::store::now();
        if let Some(c) = cached.as_ref().filter(|c| c.is_fresh(now)) {
            return Ok(fetched(c.image_id.clone(), false));
        }
        let part = partial_path(store, aci);
        let _lock = StoreLock::acquire(&part.with_extension("lock"), true)
            .map_err(|e| store_err(&shown, e))?;
        let bar = self.bar(aci);
        let etag = cached.as_ref().and_then(|c| c.etag.as_deref());
        let outcome = self.rt.block_on(self.http.download(aci, &part, etag, &bar));
        bar.finish_and_clear();
        match outcome? {
            Downloaded::NotModified { max_age } => {
                let Some(mut c) = cached else {
                    // A 304 answers only a request that carried a cached ETag.
                    return Err(FetchError::Http {
                        url: shown,
                        reason: "304 Not Modified without a cached copy".into(),
                    });
                };
                c.fetched = now;
                c.max_age = max_age.or(c.max_age);
                store
                    .index()
                    .record_remote(&c)
                    .map_err(|e| store_err(&shown, e))?;
                Ok(fetched(c.image_id, false))
            }
            Downloaded::Complete { etag, max_age } => {
                let signature = (!self.cfg.allow_unsigned).then(|| Signature::Url(asc.clone()));
                let pending = Pending {
                    path: &part,
                    shown: &shown,
                    wanted,
                    signature,
                    dependencies: true,
                };
                let result = self.verify_and_import(store, pending, depth);
                // A refused or imported download is done with; only a cut one is kept.
                let _ = std::fs::remove_file(&part); // best effort: gc cleans tmp/ too
                let done = result?;
                let rec = RemoteRecord {
                    url: aci.to_string(),
                    image_id: done.id.clone(),
                    etag,
                    max_age,
                    fetched: now,
                };
                store
                    .index()
                    .record_remote(&rec)
                    .map_err(|e| store_err(&shown, e))?;
                Ok(done)
            }
        }
    }

    fn bar(&self, url: &Url) -> indicatif::ProgressBar {
        let bar = self.bars.add(indicatif::ProgressBar::new(0));
        let style = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        let name = url.path_segments().and_then(|mut s| s.next_back());
        bar.set_message(name.unwrap_or_default().to_owned());
        bar
    }

    /// Steps 3–6 of the module docs for a complete archive at `pending.path`.
    fn verify_and_import(
        &self,
        store: &Store,
        pending: Pending<'_>,
        depth: usize,
    ) -> Result<Fetched, FetchError> {
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| FetchError::Io { op, path, source }
        };
        let mut file = File::open(pending.path).map_err(io("open", pending.path))?;
        let mut warnings = Vec::new();
        // An unsigned local file with nothing to match goes straight to the import, whose
        // refusals of a hostile archive name the offending entry.
        let needs_manifest =
            pending.wanted.is_some() || pending.signature.is_some() || pending.dependencies;
        if !needs_manifest {
            warnings.push(format!(
                "{}: signature not verified (--insecure-options=image)",
                pending.shown
            ));
            return self.import(store, file, pending.shown, warnings);
        }
        let manifest = archive::read_manifest(&mut file, pending.path)?;
        if let Some(app) = pending.wanted {
            check_match(pending.shown, app, &manifest)?;
        }
        match &pending.signature {
            None => warnings.push(format!(
                "{}: signature not verified (--insecure-options=image)",
                pending.shown
            )),
            Some(sig) => {
                let sig = self.signature_bytes(sig, pending.shown)?;
                let trust = TrustStore::open(&self.cfg.config_dir, &self.cfg.vendor_dir)
                    .map_err(|source| verify_err(pending.shown, source))?;
                trust
                    .verify(&manifest.name, &mut file, &mut Cursor::new(sig))
                    .map_err(|source| verify_err(pending.shown, source))?;
                std::io::Seek::rewind(&mut file).map_err(io("rewind", pending.path))?;
            }
        }
        if pending.dependencies && !manifest.dependencies.is_empty() {
            let deps = self.fetch_dependencies(store, &manifest, depth)?;
            warnings.extend(deps);
        }
        self.import(store, file, pending.shown, warnings)
    }

    /// Step 6: the one-pass import of a checked archive.
    fn import(
        &self,
        store: &Store,
        file: File,
        shown: &str,
        mut warnings: Vec<String>,
    ) -> Result<Fetched, FetchError> {
        let opts = ImportOptions {
            max_size: self.cfg.max_size,
            source: Some(shown.to_owned()),
        };
        let outcome = import_image(store, file, &opts).map_err(|e| store_err(shown, e))?;
        warnings.extend(outcome.warnings.iter().map(|w| format!("{shown}: {w}")));
        Ok(Fetched {
            id: outcome.id,
            new: !outcome.already_present,
            warnings,
        })
    }

    fn signature_bytes(&self, sig: &Signature, shown: &str) -> Result<Vec<u8>, FetchError> {
        match sig {
            Signature::Bytes(b) => Ok(b.clone()),
            Signature::Url(url) => match self.rt.block_on(self.http.get_small(url)) {
                Ok(b) => Ok(b),
                Err(FetchError::Status { status, .. }) => Err(FetchError::Unsigned {
                    image: shown.to_owned(),
                    reason: format!("{url}: {status}"),
                }),
                Err(e) => Err(e),
            },
        }
    }

    /// D1: every dependency by name and labels, in parallel; each must be the `imageID` named.
    /// Returns their warnings.
    fn fetch_dependencies(
        &self,
        store: &Store,
        manifest: &ImageManifest,
        depth: usize,
    ) -> Result<Vec<String>, FetchError> {
        if depth >= MAX_DEPENDENCY_DEPTH {
            return Err(FetchError::TooDeep {
                image: manifest.name.to_string(),
            });
        }
        let root = store.root();
        let results: Vec<Result<Fetched, FetchError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = manifest
                .dependencies
                .iter()
                .map(|dep| {
                    scope.spawn(move || {
                        // The index connection is per thread (SQLite handles are not shared).
                        let store =
                            Store::open(root).map_err(|e| store_err(dep.image_name.as_str(), e))?;
                        self.fetch_dependency(&store, &manifest.name, dep, depth + 1)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(FetchError::Client {
                            reason: "a dependency fetch panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut warnings = Vec::new();
        for r in results {
            warnings.extend(r?.warnings);
        }
        Ok(warnings)
    }

    fn fetch_dependency(
        &self,
        store: &Store,
        dependent: &AcIdentifier,
        dep: &Dependency,
        depth: usize,
    ) -> Result<Fetched, FetchError> {
        if let Some(id) = dep.image_id.as_ref().filter(|id| id.is_full())
            && store
                .index()
                .get(id)
                .map_err(|e| store_err(id.as_str(), e))?
                .is_some()
        {
            return Ok(fetched(id.clone(), false));
        }
        let app = AppString {
            name: dep.image_name.clone(),
            labels: dep.labels.clone(),
        };
        let got = self.fetch_name(store, &app, depth)?;
        match &dep.image_id {
            Some(wanted) if !id_matches(wanted, &got.id) => {
                if got.new {
                    // best effort: it was verified, but it is not what the dependent names
                    let _ = crate::store::remove_image(store, &got.id);
                }
                Err(FetchError::DependencyMismatch {
                    image: dependent.to_string(),
                    dependency: app.to_string(),
                    wanted: wanted.to_string(),
                    found: got.id.to_string(),
                })
            }
            _ => Ok(got),
        }
    }
}

/// An image ID as a dependency names it (full, or a prefix as Go's short hashes) matches.
fn id_matches(wanted: &ImageId, got: &ImageId) -> bool {
    got.as_str().starts_with(wanted.as_str())
}

/// An archive ready for steps 3–6.
struct Pending<'a> {
    path: &'a Path,
    /// How the image is named in messages (its URL or path).
    shown: &'a str,
    /// The app string discovery was asked for (DS15).
    wanted: Option<&'a AppString>,
    /// `None` with `--insecure-options=image`.
    signature: Option<Signature>,
    /// Fetch the manifest's dependencies first (remote images).
    dependencies: bool,
}

enum Signature {
    Bytes(Vec<u8>),
    Url(Url),
}

fn fetched(id: ImageId, new: bool) -> Fetched {
    Fetched {
        id,
        new,
        warnings: Vec::new(),
    }
}

fn store_err(image: &str, e: StoreError) -> FetchError {
    FetchError::Store {
        image: image.to_owned(),
        source: Box::new(e),
    }
}

fn verify_err(image: &str, source: TrustError) -> FetchError {
    FetchError::Verify {
        image: image.to_owned(),
        source,
    }
}

/// DS15: the name must be the one asked for, and every label asked for must have that value.
fn check_match(url: &str, app: &AppString, manifest: &ImageManifest) -> Result<(), FetchError> {
    if manifest.name != app.name {
        return Err(FetchError::NameMismatch {
            url: url.to_owned(),
            wanted: app.name.to_string(),
            found: manifest.name.to_string(),
        });
    }
    if !manifest.labels.satisfy(&app.labels) {
        return Err(FetchError::LabelMismatch {
            url: url.to_owned(),
            wanted: app.to_string(),
            found: show_labels(&manifest.labels),
        });
    }
    Ok(())
}

fn show_labels(labels: &Labels) -> String {
    let all: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(",")
    }
}

/// `x.aci` → `x.aci.asc` (A10).
fn signature_url(url: &Url) -> Result<Url, FetchError> {
    let mut asc = url.clone();
    asc.set_path(&format!("{}.asc", url.path()));
    Ok(asc)
}

/// The partial download of `url` in the store's `tmp/`: named by the URL's hash so a later run
/// finds it again and resumes.
fn partial_path(store: &Store, url: &Url) -> PathBuf {
    let digest = Sha512::digest(url.as_str().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    store.tmp_dir().join(format!("fetch-{hex}.part"))
}

fn http_config(config_dir: &Path, relaxed: Relaxed) -> Result<HttpConfig, FetchError> {
    HttpConfig {
        allow_http: relaxed.http,
        insecure_tls: relaxed.tls,
        auth: AuthConfig::load(config_dir)?,
        config_dir: config_dir.to_owned(),
        ..HttpConfig::default()
    }
    .from_env()
}

/// The discovery walk over `http` (DS3, DS11, DS12); with `--insecure-options=http` a failed
/// https page is tried again over http, as Go's `InsecureHTTP` did.
fn discover_with(
    http: &Http,
    rt: &tokio::runtime::Runtime,
    app: &AppString,
    want: Want,
) -> Result<crate::discovery::Discovered, FetchError> {
    let mut get = |url: &str| -> Result<crate::discovery::Page, String> {
        let https = Url::parse(url).map_err(|e| e.to_string())?;
        let first = rt.block_on(http.get_page(&https));
        match first {
            Ok(crate::discovery::Page::Found(p)) => Ok(crate::discovery::Page::Found(p)),
            other if http.config().allow_http => {
                let mut plain = https.clone();
                let _ = plain.set_scheme("http"); // https → http always succeeds
                rt.block_on(http.get_page(&plain))
                    .or(other)
                    .map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    };
    Ok(discover(app, want, &mut get)?)
}

/// Downloads the public keys for `prefix`: from `url` when given, else from every
/// `ac-discovery-pubkeys` location that meta discovery finds for the prefix.
/// `config_dir` holds `auth.d/`.
pub fn download_pubkeys(
    prefix: &str,
    url: Option<&str>,
    config_dir: &Path,
    relaxed: Relaxed,
) -> Result<Vec<PubkeyDownload>, FetchError> {
    let http = Http::new(http_config(config_dir, relaxed)?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError::Client {
            reason: e.to_string(),
        })?;
    let urls = match url {
        Some(u) => vec![u.to_owned()],
        None => {
            let name = AcIdentifier::parse(prefix).map_err(|e| FetchError::BadArg {
                image: prefix.to_owned(),
                reason: e.to_string(),
            })?;
            let app = AppString {
                name,
                labels: Labels::default(),
            };
            let want = Want {
                images: false,
                pubkeys: true,
            };
            discover_with(&http, &rt, &app, want)?.pubkeys
        }
    };
    urls.into_iter()
        .map(|u| {
            let parsed = Url::parse(&u).map_err(|e| FetchError::BadArg {
                image: u.clone(),
                reason: format!("not a URL: {}", chain(&e)),
            })?;
            let key = rt.block_on(http.get_small(&parsed))?;
            Ok(PubkeyDownload { url: u, key })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_arguments_by_shape() {
        let kind = |s: &str| match ImageRef::parse(s) {
            Ok(ImageRef::Id(_)) => "id",
            Ok(ImageRef::File(_)) => "file",
            Ok(ImageRef::Url(_)) => "url",
            Ok(ImageRef::Name(_)) => "name",
            Err(_) => "error",
        };
        assert_eq!(kind("sha512-abcd"), "id");
        assert_eq!(kind("example.com/app:1.0,os=linux"), "name");
        assert_eq!(kind("./x.aci"), "file");
        assert_eq!(kind("/srv/x"), "file");
        assert_eq!(kind("x.aci"), "file");
        assert_eq!(kind("file:///srv/x.aci"), "file");
        assert_eq!(kind("https://example.com/x.aci"), "url");
        assert_eq!(kind("http://example.com/x.aci"), "url");
        assert_eq!(kind("docker://busybox"), "error");
        assert_eq!(kind("Example.com/App"), "error");
    }

    #[test]
    fn pull_policies() {
        assert_eq!("new".parse(), Ok(PullPolicy::New));
        assert_eq!("update".parse(), Ok(PullPolicy::Update));
        assert_eq!("never".parse(), Ok(PullPolicy::Never));
        assert!("always".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn signature_next_to_the_image() {
        let u = Url::parse("https://example.com/a/x.aci?token=1").unwrap();
        assert_eq!(
            signature_url(&u).unwrap().as_str(),
            "https://example.com/a/x.aci.asc?token=1"
        );
    }
}
