//! From what the user asked for to the reified pod manifest: spec/pods.md P4 (a pod manifest may
//! override each app's `app` section and late-bind volumes) and P5 (before execution every app
//! is pinned by image ID and every mount point is satisfied by a volume); ace.md volume setup
//! (appc-requirements.md §2.4, §2.5.3). The grammar of `appcctl run` is in `cli::run_args`.
//!
//! The request types ([`RunRequest`], [`PodFlags`], [`AppRequest`]) live here, in the library
//! module that consumes them, and the command-line parser produces them: `pod` never depends
//! on `cli` types, and a request can be built by hand (tests, a future API) without a parser.
//! Their fields are schema newtypes, so every value was validated once, when it was parsed.
//!
//! Decisions:
//! - **Every composed app carries its `app` section**, even for a `--pod-manifest` app that had
//!   none (the image's is copied, which is what the spec means by its absence): the executor
//!   never needs the image manifest to know what to run.
//! - **Environment precedence** (rkt): image < `--set-env` < per-app `--environment`.
//! - **An isolator flag replaces** the image's isolator of the same name, and also the one it may
//!   not be combined with (`--caps-retain` drops an image's capabilities remove-set; seccomp
//!   likewise): the command line is the user's last word, and the pair would be invalid.
//! - **Mounts**: pod-level `--mount`s go to every app; an app's own `--mount` at the same target
//!   replaces the pod-level one. Mount points are matched to mounts by path; a mount point with
//!   no mount gets the volume of its name, or else an implicit `empty` volume with a warning
//!   (rkt's behaviour, reference/rkt.md §1.3).
//! - **Image arguments are fetched** with `appcctl fetch`'s rules (`crate::fetch`): local `.aci`
//!   files are imported (signature beside them, or `--insecure-options=image`); names and URLs
//!   follow the pull policy (`--pull-policy`, default `new`: the store's copy if there is one,
//!   else discovery and download). IDs must be in the store. [`compose`] itself never goes to
//!   the network (policy `never`); `appcctl run` calls [`compose_with`].
//! - **The result is checked by the schema decoder** (canonical JSON, parsed back), so a
//!   composed manifest is exactly as valid as a hand-written one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fetch::{FetchConfig, FetchError, Fetcher, ImageRef, PullPolicy};
use crate::schema::{
    AbsolutePath, AcIdentifier, AcName, App, AppString, EnvVar, Environment, ExposedPort, FileMode,
    ImageId, Isolator, IsolatorKind, Mount, PodManifest, RuntimeApp, RuntimeImage, SchemaErrors,
    UserGroup, Volume, VolumeKind,
};
use crate::store::{ImageRecord, Store, StoreError};

/// How long `appcctl stop` waits between SIGTERM and SIGKILL unless `--stop-timeout` says.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// The pod's network (`crate::net`): `default` (a veth on the bridge network), `none` (a
/// private namespace with only loopback) or the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    #[default]
    Default,
    None,
    Host,
}

/// Flags before the first image: they apply to the whole pod (or, for `--mount`, to every app).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFlags {
    /// The pod's name (`--name` before any image).
    pub name: Option<AcName>,
    pub uuid_file_save: Option<PathBuf>,
    pub pod_manifest: Option<PathBuf>,
    pub volumes: Vec<Volume>,
    /// Mounts for every app.
    pub mounts: Vec<MountRequest>,
    /// `--set-env`, in order (a later one wins).
    pub set_env: Vec<EnvVar>,
    pub hostname: Option<String>,
    pub interactive: bool,
    pub net: NetMode,
    /// `--port`: exposed ports, written to the manifest's `ports`.
    pub ports: Vec<ExposedPort>,
    /// `--dns*`, `--hosts-entry`.
    pub dns: crate::net::DnsOptions,
    pub no_overlay: bool,
    pub stop_timeout_ms: Option<u64>,
    /// `--slice`: the slice of the pod's scope (default machine.slice).
    pub slice: Option<String>,
    /// `--keep-unit`: the pod stays in appcctl's own unit instead of a scope of its own.
    pub keep_unit: bool,
    /// `--pull-policy`: when the store's copy of an image will do (default: the caller's).
    pub pull_policy: Option<PullPolicy>,
}

/// `--mount volume=V,target=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub volume: AcName,
    pub target: AbsolutePath,
}

/// One image of the command line with its app flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppRequest {
    /// As given: an image ID (or unique prefix), `name[:version][,label=value]...`, a path or
    /// `file://` URL to an `.aci`.
    pub image: String,
    /// The app's name (`--name` after the image).
    pub name: Option<AcName>,
    /// Replaces `exec[0]`.
    pub exec: Option<String>,
    /// The words after `--`: replace `exec[1..]` (`Some(vec![])` clears them).
    pub args: Option<Vec<String>>,
    pub user: Option<UserGroup>,
    pub group: Option<UserGroup>,
    pub supplementary_gids: Option<Vec<u32>>,
    pub working_dir: Option<AbsolutePath>,
    /// `--environment`, in order (a later one wins).
    pub environment: Vec<EnvVar>,
    pub readonly_rootfs: Option<bool>,
    /// From `--memory`, `--cpu`, `--cpu-shares`, `--caps-*`, `--seccomp`, `--oom-score-adj`:
    /// at most one of each kind, and never a retain-set together with its remove-set.
    pub isolators: Vec<Isolator>,
    pub mounts: Vec<MountRequest>,
}

impl AppRequest {
    pub fn new(image: impl Into<String>) -> Self {
        AppRequest {
            image: image.into(),
            ..AppRequest::default()
        }
    }
}

/// A parsed `appcctl run` / `appcctl prepare` command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    pub pod: PodFlags,
    /// Empty exactly when `pod.pod_manifest` is given.
    pub apps: Vec<AppRequest>,
}

/// The pod settings that are not part of the appc manifest, kept with the pod for the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodOptions {
    pub hostname: Option<String>,
    pub interactive: bool,
    pub net: NetMode,
    #[serde(default)]
    pub dns: crate::net::DnsOptions,
    pub no_overlay: bool,
    pub stop_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_unit: bool,
}

impl PodOptions {
    pub fn from_flags(flags: &PodFlags) -> Self {
        PodOptions {
            hostname: flags.hostname.clone(),
            interactive: flags.interactive,
            net: flags.net,
            dns: flags.dns.clone(),
            no_overlay: flags.no_overlay,
            stop_timeout_ms: flags.stop_timeout_ms.unwrap_or(DEFAULT_STOP_TIMEOUT_MS),
            slice: flags.slice.clone(),
            keep_unit: flags.keep_unit,
        }
    }
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions::from_flags(&PodFlags::default())
    }
}

/// A reified pod, ready to be created and run.
#[derive(Debug, Clone)]
pub struct Composed {
    /// Every app pinned by full image ID, with its `app` section; every mount point mounted.
    pub manifest: PodManifest,
    pub options: PodOptions,
    /// The pod's name, if the user gave one.
    pub name: Option<AcName>,
    /// Things the user should hear about (implicit volumes, unverified images, manifest leniency).
    pub warnings: Vec<String>,
}

/// Why a pod could not be composed; each message names the image, app, flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no app to run: give an image or --pod-manifest")]
    NoApps,
    #[error("{0} cannot be combined with --pod-manifest; put it in the pod manifest instead")]
    NotWithPodManifest(&'static str),
    #[error("image {image:?}: {reason}")]
    BadImage { image: String, reason: String },
    #[error(
        "image {image:?} is not in the store; import it first with `appcctl fetch` (see `appcctl image list`)"
    )]
    NotInStore { image: String },
    #[error("image {image:?}: {source}")]
    Store {
        image: String,
        source: Box<StoreError>,
    },
    #[error("{message}")]
    Fetch { message: String },
    #[error("cannot open {}: {source}", path.display())]
    OpenImage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot derive an app name from image {image}; give one with --name after the image")]
    NoAppName { image: String },
    #[error("two apps are named {name:?}; give one of them another --name")]
    DuplicateAppName { name: String },
    #[error("app {app}: image {image} has no app section; give --exec to say what to run")]
    NoAppSection { app: String, image: String },
    #[error("app {app}: nothing to execute (the image has no exec); give --exec")]
    NoExec { app: String },
    #[error("two volumes are named {name:?}; volume names must be unique")]
    DuplicateVolume { name: String },
    #[error(
        "app {app}: --mount volume={volume},target={target}: no volume named {volume:?}; declare it with --volume {volume},kind=empty (or kind=host,source=PATH)"
    )]
    UnknownVolume {
        app: String,
        volume: String,
        target: String,
    },
    #[error("app {app}: two --mount flags target {target}")]
    DuplicateMount { app: String, target: String },
    #[error("cannot read pod manifest {}: {source}", path.display())]
    ReadPodManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", list_problems(path, errors))]
    PodManifest { path: PathBuf, errors: SchemaErrors },
    #[error(
        "pod manifest {}: apps[{index}] asks for image {wanted} but its id is image {found}",
        path.display()
    )]
    ImageMismatch {
        path: PathBuf,
        index: usize,
        wanted: String,
        found: String,
    },
    #[error(
        "the composed pod manifest is invalid: {}",
        list_problems(Path::new("pod"), errors)
    )]
    Invalid { errors: SchemaErrors },
}

/// One `FILE: path: problem` line per problem.
fn list_problems(path: &Path, errors: &SchemaErrors) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {e}", path.display()))
        .collect();
    lines.join("\n")
}

/// Composes the reified pod manifest for `req`: resolves (or imports) every image, names the
/// apps, applies the app flags to each image's `app` section, and satisfies every mount point.
/// `allow_unsigned` is `--insecure-options=image`; it matters only for local `.aci` files, since
/// this never downloads (pull policy `never`; see [`compose_with`]).
///
/// ```no_run
/// # use appc_pod::pod::compose::{compose, AppRequest, RunRequest};
/// # use appc_pod::store::Store;
/// let store = Store::open(std::path::Path::new("/var/lib/appc"))?;
/// let req = RunRequest { apps: vec![AppRequest::new("example.com/busybox")], ..Default::default() };
/// let pod = compose(&req, &store, false)?;
/// println!("{}", pod.manifest.to_canonical_json());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compose(
    req: &RunRequest,
    store: &Store,
    allow_unsigned: bool,
) -> Result<Composed, ComposeError> {
    let cfg = FetchConfig {
        allow_unsigned,
        pull_policy: PullPolicy::Never,
        ..FetchConfig::default()
    };
    compose_with(req, store, &cfg)
}

/// [`compose`] with the fetch settings of the command line: images not in the store are
/// discovered and downloaded as `cfg` (and `--pull-policy` in `req`) allow.
pub fn compose_with(
    req: &RunRequest,
    store: &Store,
    cfg: &FetchConfig,
) -> Result<Composed, ComposeError> {
    let mut fetch = cfg.clone();
    fetch.pull_policy = req.pod.pull_policy.unwrap_or(cfg.pull_policy);
    let mut composer = Composer {
        store,
        fetch,
        fetcher: None,
        warnings: Vec::new(),
    };
    let manifest = match &req.pod.pod_manifest {
        Some(path) => composer.compose_file(path, req)?,
        None => composer.compose_flags(req)?,
    };
    check_reified(&manifest)?;
    Ok(Composed {
        manifest,
        options: PodOptions::from_flags(&req.pod),
        name: req.pod.name.clone(),
        warnings: composer.warnings,
    })
}

struct Composer<'a> {
    store: &'a Store,
    fetch: FetchConfig,
    /// Made on first use: most runs name stored images and need no HTTP client.
    fetcher: Option<Fetcher>,
    warnings: Vec<String>,
}

impl Composer<'_> {
    fn compose_flags(&mut self, req: &RunRequest) -> Result<PodManifest, ComposeError> {
        if req.apps.is_empty() {
            return Err(ComposeError::NoApps);
        }
        let records = req
            .apps
            .iter()
            .map(|a| self.resolve_arg(&a.image))
            .collect::<Result<Vec<_>, _>>()?;
        let names = assign_names(&req.apps, &records)?;
        check_unique_volumes(&req.pod.volumes)?;
        let mut manifest = PodManifest::new();
        manifest.volumes = req.pod.volumes.clone();
        manifest.ports = req.pod.ports.clone();
        for ((request, record), name) in req.apps.iter().zip(&records).zip(names) {
            let app = build_app(request, record, &req.pod.set_env, &name)?;
            let mounts = build_mounts(&name, &req.pod.mounts, &request.mounts, &manifest.volumes)?;
            manifest.apps.push(RuntimeApp {
                name,
                image: runtime_image(record),
                app: Some(app),
                read_only_root_fs: request.readonly_rootfs.unwrap_or(false),
                mounts,
                annotations: Default::default(),
            });
        }
        self.reify_mount_points(&mut manifest);
        Ok(manifest)
    }

    fn compose_file(&mut self, path: &Path, req: &RunRequest) -> Result<PodManifest, ComposeError> {
        reject_flags_with_manifest(req)?;
        let text =
            std::fs::read_to_string(path).map_err(|source| ComposeError::ReadPodManifest {
                path: path.to_owned(),
                source,
            })?;
        let decoded = PodManifest::parse(&text).map_err(|errors| ComposeError::PodManifest {
            path: path.to_owned(),
            errors,
        })?;
        self.warnings.extend(
            decoded
                .warnings
                .iter()
                .map(|w| format!("{}: {w}", path.display())),
        );
        let mut manifest = decoded.value;
        for (index, app) in manifest.apps.iter_mut().enumerate() {
            let record = self.resolve_runtime_image(&app.image)?;
            if let Some(wanted) = app.image.name.as_ref().filter(|n| **n != record.name) {
                return Err(ComposeError::ImageMismatch {
                    path: path.to_owned(),
                    index,
                    wanted: wanted.to_string(),
                    found: record.name.to_string(),
                });
            }
            app.image = runtime_image(&record);
            if app.app.is_none() {
                app.app = Some(image_app(&record, &app.name)?);
            }
        }
        self.reify_mount_points(&mut manifest);
        Ok(manifest)
    }

    /// An image argument of the command line: from the store, or fetched as the pull policy
    /// allows (local files are always imported).
    fn resolve_arg(&mut self, image: &str) -> Result<ImageRecord, ComposeError> {
        let parsed = ImageRef::parse(image).map_err(|e| match e {
            FetchError::BadArg { reason, .. } => ComposeError::BadImage {
                image: image.to_owned(),
                reason,
            },
            e => fetch_error(image, e),
        })?;
        match parsed {
            ImageRef::Id(q) => self.lookup(&q),
            ImageRef::Name(_) if self.fetch.pull_policy != PullPolicy::Update => {
                match self.lookup(image) {
                    Err(ComposeError::NotInStore { .. })
                        if self.fetch.pull_policy == PullPolicy::New =>
                    {
                        self.fetch_image(image)
                    }
                    other => other,
                }
            }
            _ => self.fetch_image(image),
        }
    }

    fn lookup(&self, query: &str) -> Result<ImageRecord, ComposeError> {
        self.store.resolve(query).map_err(|e| match e {
            StoreError::NotFound { .. } => ComposeError::NotInStore {
                image: query.to_owned(),
            },
            source => ComposeError::Store {
                image: query.to_owned(),
                source: Box::new(source),
            },
        })
    }

    /// Fetches an image exactly as `appcctl fetch` would (same path rules, same refusal of
    /// unsigned images), so `run ./x.aci` is never a way around the signature policy.
    fn fetch_image(&mut self, image: &str) -> Result<ImageRecord, ComposeError> {
        let fetcher = match &mut self.fetcher {
            Some(f) => f,
            slot @ None => {
                slot.insert(Fetcher::new(self.fetch.clone()).map_err(|e| fetch_error(image, e))?)
            }
        };
        let fetched = fetcher
            .fetch(self.store, image)
            .map_err(|e| fetch_error(image, e))?;
        self.warnings.extend(fetched.warnings);
        let store_err = |source| ComposeError::Store {
            image: image.to_owned(),
            source: Box::new(source),
        };
        self.store
            .index()
            .get(&fetched.id)
            .map_err(store_err)?
            .ok_or_else(|| ComposeError::NotInStore {
                image: fetched.id.to_string(),
            })
    }

    /// `apps[].image` of a pod manifest file: by ID (full or prefix), else by name and labels.
    fn resolve_runtime_image(&self, image: &RuntimeImage) -> Result<ImageRecord, ComposeError> {
        match (&image.id, &image.name) {
            (Some(id), _) if id.is_full() => self.by_full_id(id),
            (Some(id), _) => self.lookup(id.as_str()),
            (None, Some(name)) => self.by_name(name, image),
            // The schema decoder refuses an image with neither.
            (None, None) => Err(ComposeError::BadImage {
                image: String::new(),
                reason: "an app image needs an id or a name".into(),
            }),
        }
    }

    fn by_full_id(&self, id: &ImageId) -> Result<ImageRecord, ComposeError> {
        let store_err = |source| ComposeError::Store {
            image: id.to_string(),
            source: Box::new(source),
        };
        self.store
            .index()
            .get(id)
            .map_err(store_err)?
            .ok_or_else(|| ComposeError::NotInStore {
                image: id.to_string(),
            })
    }

    fn by_name(
        &self,
        name: &AcIdentifier,
        image: &RuntimeImage,
    ) -> Result<ImageRecord, ComposeError> {
        let wanted = AppString {
            name: name.clone(),
            labels: image.labels.clone(),
        }
        .to_string();
        let mut found =
            self.store
                .index()
                .find_by_name(name)
                .map_err(|source| ComposeError::Store {
                    image: wanted.clone(),
                    source: Box::new(source),
                })?;
        found.retain(|r| r.labels.satisfy(&image.labels));
        crate::store::newest(found).ok_or(ComposeError::NotInStore { image: wanted })
    }

    /// P5: every mount point of every app gets a mount. One without a mount at its path takes the
    /// volume of its own name; if there is none, an `empty` volume of that name is added, which
    /// the apps sharing the mount point name then share (as rkt did).
    fn reify_mount_points(&mut self, manifest: &mut PodManifest) {
        let mut implicit: Vec<AcName> = Vec::new();
        for app in &mut manifest.apps {
            let Some(section) = app.app.as_ref() else {
                continue;
            };
            for mp in &section.mount_points {
                if app.mounts.iter().any(|m| m.path == mp.path) {
                    continue;
                }
                if !manifest.volumes.iter().any(|v| v.name == mp.name) {
                    manifest.volumes.push(empty_volume(mp.name.clone()));
                    implicit.push(mp.name.clone());
                }
                if implicit.contains(&mp.name) {
                    self.warnings.push(format!(
                        "mount point {} of app {} has no volume; using an empty volume",
                        mp.name, app.name
                    ));
                }
                app.mounts.push(Mount {
                    volume: mp.name.clone(),
                    path: mp.path.clone(),
                    app_volume: None,
                });
            }
        }
    }
}

fn fetch_error(image: &str, e: FetchError) -> ComposeError {
    match e {
        FetchError::NotInStore { .. } => ComposeError::NotInStore {
            image: image.to_owned(),
        },
        e => ComposeError::Fetch {
            message: e.to_string(),
        },
    }
}

fn runtime_image(record: &ImageRecord) -> RuntimeImage {
    RuntimeImage {
        name: Some(record.name.clone()),
        id: Some(record.id.clone()),
        labels: record.labels.clone(),
    }
}

/// The image's own `app` section, for an app that does not override it.
fn image_app(record: &ImageRecord, app: &AcName) -> Result<App, ComposeError> {
    record
        .manifest
        .app
        .clone()
        .ok_or_else(|| ComposeError::NoAppSection {
            app: app.to_string(),
            image: record.name.to_string(),
        })
}

/// Explicit names are reserved first, so a derived name steps around them (`busybox-2`).
fn assign_names(apps: &[AppRequest], records: &[ImageRecord]) -> Result<Vec<AcName>, ComposeError> {
    let mut taken: Vec<AcName> = Vec::new();
    for name in apps.iter().filter_map(|a| a.name.as_ref()) {
        if taken.contains(name) {
            return Err(ComposeError::DuplicateAppName {
                name: name.to_string(),
            });
        }
        taken.push(name.clone());
    }
    let mut names = Vec::with_capacity(apps.len());
    for (app, record) in apps.iter().zip(records) {
        let name = match &app.name {
            Some(name) => name.clone(),
            None => {
                let name = unique_name(derive_name(&record.name)?, &taken)?;
                taken.push(name.clone());
                name
            }
        };
        names.push(name);
    }
    Ok(names)
}

/// `example.com/web-server` → `web-server`: the last path component, sanitized.
fn derive_name(image: &AcIdentifier) -> Result<AcName, ComposeError> {
    let last = image.as_str().rsplit('/').next().unwrap_or_default();
    AcName::sanitize(last)
        .or_else(|| AcName::sanitize(image.as_str()))
        .ok_or_else(|| ComposeError::NoAppName {
            image: image.to_string(),
        })
}

fn unique_name(base: AcName, taken: &[AcName]) -> Result<AcName, ComposeError> {
    if !taken.contains(&base) {
        return Ok(base);
    }
    for n in 2..=taken.len() + 2 {
        let candidate =
            AcName::parse(&format!("{base}-{n}")).map_err(|e| ComposeError::BadImage {
                image: base.to_string(),
                reason: e.to_string(),
            })?;
        if !taken.contains(&candidate) {
            return Ok(candidate);
        }
    }
    // Among taken.len() + 1 candidates one is always free.
    Err(ComposeError::DuplicateAppName {
        name: base.to_string(),
    })
}

/// P4: the image's `app` cloned, then the app flags applied.
fn build_app(
    req: &AppRequest,
    record: &ImageRecord,
    set_env: &[EnvVar],
    name: &AcName,
) -> Result<App, ComposeError> {
    let mut app = match &record.manifest.app {
        Some(app) => app.clone(),
        None if req.exec.is_some() => bare_app(),
        None => return image_app(record, name),
    };
    apply_exec(&mut app, req, name)?;
    if let Some(user) = &req.user {
        app.user = user.clone();
    }
    if let Some(group) = &req.group {
        app.group = group.clone();
    }
    if let Some(gids) = &req.supplementary_gids {
        app.supplementary_gids = gids.clone();
    }
    if let Some(dir) = &req.working_dir {
        app.working_directory = Some(dir.clone());
    }
    for var in set_env.iter().chain(&req.environment) {
        app.environment.set(var.name.clone(), var.value.clone());
    }
    for isolator in &req.isolators {
        replace_isolator(&mut app.isolators, isolator.clone());
    }
    Ok(app)
}

/// The `app` of an image that has none, run with `--exec`: root, as rkt did.
fn bare_app() -> App {
    let root = || UserGroup::parse("0").unwrap_or_else(|_| unreachable!("\"0\" is a valid user"));
    App {
        exec: Vec::new(),
        user: root(),
        group: root(),
        supplementary_gids: Vec::new(),
        event_handlers: Vec::new(),
        working_directory: None,
        environment: Environment::default(),
        isolators: Vec::new(),
        mount_points: Vec::new(),
        ports: Vec::new(),
        user_annotations: Default::default(),
        user_labels: Default::default(),
    }
}

/// `--exec` replaces `exec[0]`; the words after `--` replace `exec[1..]`.
fn apply_exec(app: &mut App, req: &AppRequest, name: &AcName) -> Result<(), ComposeError> {
    if let Some(exec) = &req.exec {
        match app.exec.first_mut() {
            Some(first) => *first = exec.clone(),
            None => app.exec.push(exec.clone()),
        }
    }
    if app.exec.is_empty() {
        return Err(ComposeError::NoExec {
            app: name.to_string(),
        });
    }
    if let Some(args) = &req.args {
        app.exec.truncate(1);
        app.exec.extend(args.iter().cloned());
    }
    Ok(())
}

/// Puts `new` in place of any isolator of the same name and of the kind it conflicts with.
fn replace_isolator(list: &mut Vec<Isolator>, new: Isolator) {
    let rival = new.kind().and_then(IsolatorKind::conflicts_with);
    list.retain(|old| old.name() != new.name() && (rival.is_none() || old.kind() != rival));
    list.push(new);
}

fn check_unique_volumes(volumes: &[Volume]) -> Result<(), ComposeError> {
    for (i, v) in volumes.iter().enumerate() {
        if volumes[..i].iter().any(|w| w.name == v.name) {
            return Err(ComposeError::DuplicateVolume {
                name: v.name.to_string(),
            });
        }
    }
    Ok(())
}

/// The app's mounts: the pod-level ones, then its own (which replace a pod-level one at the same
/// target). Every mount must name a declared volume.
fn build_mounts(
    app: &AcName,
    pod: &[MountRequest],
    own: &[MountRequest],
    volumes: &[Volume],
) -> Result<Vec<Mount>, ComposeError> {
    let mut mounts: Vec<(Mount, bool)> = Vec::new();
    for (m, is_own) in pod
        .iter()
        .map(|m| (m, false))
        .chain(own.iter().map(|m| (m, true)))
    {
        if !volumes.iter().any(|v| v.name == m.volume) {
            return Err(ComposeError::UnknownVolume {
                app: app.to_string(),
                volume: m.volume.to_string(),
                target: m.target.to_string(),
            });
        }
        let mount = Mount {
            volume: m.volume.clone(),
            path: m.target.clone(),
            app_volume: None,
        };
        match mounts.iter_mut().find(|(old, _)| old.path == m.target) {
            Some(slot) if is_own && !slot.1 => *slot = (mount, true),
            Some(_) => {
                return Err(ComposeError::DuplicateMount {
                    app: app.to_string(),
                    target: m.target.to_string(),
                });
            }
            None => mounts.push((mount, is_own)),
        }
    }
    Ok(mounts.into_iter().map(|(m, _)| m).collect())
}

/// An implicit volume for an unsatisfied mount point, with the spec's `empty` defaults.
fn empty_volume(name: AcName) -> Volume {
    Volume {
        name,
        read_only: None,
        kind: VolumeKind::Empty {
            mode: FileMode::DEFAULT_EMPTY,
            uid: 0,
            gid: 0,
        },
    }
}

/// `--pod-manifest` brings its own apps, volumes and environment.
fn reject_flags_with_manifest(req: &RunRequest) -> Result<(), ComposeError> {
    let pod = &req.pod;
    let given = [
        (!req.apps.is_empty(), "an image"),
        (!pod.volumes.is_empty(), "--volume"),
        (!pod.mounts.is_empty(), "--mount"),
        (!pod.set_env.is_empty(), "--set-env"),
    ];
    match given.into_iter().find(|(given, _)| *given) {
        Some((_, what)) => Err(ComposeError::NotWithPodManifest(what)),
        None => Ok(()),
    }
}

/// The composed manifest goes through the same decoder as a hand-written one (canonical JSON
/// parsed back), and must be fully reified: each app has a full image ID and something to exec.
fn check_reified(manifest: &PodManifest) -> Result<(), ComposeError> {
    PodManifest::parse(&manifest.to_canonical_json())
        .map_err(|errors| ComposeError::Invalid { errors })?;
    for app in &manifest.apps {
        let runnable = app.app.as_ref().is_some_and(|a| !a.exec.is_empty());
        if !runnable {
            return Err(ComposeError::NoExec {
                app: app.name.to_string(),
            });
        }
    }
    if let Some(app) = manifest.unresolved_apps().next() {
        return Err(ComposeError::NotInStore {
            image: app
                .image
                .name
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AcName {
        AcName::parse(s).unwrap()
    }

    #[test]
    fn derived_names_step_around_taken_ones() {
        let id = |s: &str| AcIdentifier::parse(s).unwrap();
        assert_eq!(
            derive_name(&id("example.com/web_server")).unwrap(),
            name("web-server")
        );
        assert_eq!(derive_name(&id("busybox")).unwrap(), name("busybox"));
        let taken = [name("busybox"), name("busybox-2")];
        assert_eq!(
            unique_name(name("busybox"), &taken).unwrap(),
            name("busybox-3")
        );
        assert_eq!(unique_name(name("etcd"), &taken).unwrap(), name("etcd"));
    }

    #[test]
    fn app_mounts_replace_pod_mounts_at_the_same_target() {
        let vols = [empty_volume(name("a")), empty_volume(name("b"))];
        let m = |v: &str, t: &str| MountRequest {
            volume: name(v),
            target: AbsolutePath::parse(t).unwrap(),
        };
        let got = build_mounts(&name("x"), &[m("a", "/d")], &[m("b", "/d")], &vols).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].volume, name("b"));
        let e = build_mounts(&name("x"), &[], &[m("a", "/d"), m("b", "/d")], &vols).unwrap_err();
        assert_eq!(e.to_string(), "app x: two --mount flags target /d");
        let e = build_mounts(&name("x"), &[m("c", "/d")], &[], &vols).unwrap_err();
        assert!(e.to_string().contains("no volume named \"c\""), "{e}");
    }

    #[test]
    fn isolator_flags_replace_the_image_ones_and_their_rivals() {
        use crate::schema::{CapabilitySet, ResourceLimits, parse_capability};
        let caps = |c: &str| CapabilitySet::new(vec![parse_capability(c).unwrap()]).unwrap();
        let mem =
            |q: &str| Isolator::Memory(ResourceLimits::with_limit(q.parse().unwrap()).unwrap());
        let mut list = vec![
            mem("1G"),
            Isolator::CapabilitiesRemoveSet(caps("CAP_CHOWN")),
        ];
        replace_isolator(&mut list, mem("128M"));
        replace_isolator(&mut list, Isolator::CapabilitiesRetainSet(caps("CAP_KILL")));
        assert_eq!(
            list,
            vec![
                mem("128M"),
                Isolator::CapabilitiesRetainSet(caps("CAP_KILL"))
            ]
        );
    }

    #[test]
    fn net_mode_serializes_lowercase() {
        let o = PodOptions::default();
        assert_eq!(o.stop_timeout_ms, 10_000);
        let json = serde_json::to_string(&o).unwrap();
        assert!(json.contains("\"net\":\"default\""), "{json}");
        let back: PodOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
    }
}
