//! The command line of `appcctl run` and `appcctl prepare`: rkt's positional grammar
//! (reference/rkt.md §1.3), parsed into a [`RunRequest`] for `pod::compose`.
//!
//! ```text
//! appcctl run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS...] [--- IMAGE [APP FLAGS] [-- ARGS...]]...
//! appcctl run [POD FLAGS] --pod-manifest FILE
//! ```
//!
//! clap cannot express a grammar where the same flag (`--name`, `--mount`) means one thing
//! before the first image and another after it, so [`RunArgs`] only captures the raw words and
//! [`parse_run_args`] walks them. Flags take `--flag value` or `--flag=value`; boolean flags take
//! `--flag` or `--flag=BOOL`. As in rkt, images may also simply follow one another; `---` is
//! needed only to end an app's `-- ARGS`.
//!
//! Every value is parsed into its schema type here (AC Names, volumes, quantities, capabilities,
//! seccomp filters...), so it is validated once and the error names the flag that carried it.
//! The request types live in `pod::compose`, the module that consumes them.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value, json};

pub use crate::pod::compose::{AppRequest, MountRequest, NetMode, PodFlags, RunRequest};
use crate::schema::{
    AbsolutePath, AcName, CapabilitySet, CpuShares, EnvName, EnvVar, ErrnoName, Isolator,
    OomScoreAdj, Quantity, ResourceLimits, SeccompEntry, SeccompFilter, UserGroup, Volume,
    decode::decode_value, parse_capability,
};

/// The `appcctl run --help` text after clap's usage: the grammar and every flag.
pub const RUN_HELP: &str = "\
Grammar:
  appcctl run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS...] [--- IMAGE [APP FLAGS] [-- ARGS...]]...
  appcctl run [POD FLAGS] --pod-manifest FILE

  IMAGE is an image ID (sha512-..., or a unique prefix), name[:version][,label=value]... (from
  the store, else discovered and fetched), an https:// URL, or a path or file:// URL to an .aci
  file (imported first; unsigned images need the global --insecure-options=image). Images may follow one another; `--` starts the app's
  arguments (they replace the image's exec arguments) and `---` ends them. Flags take
  `--flag VALUE` or `--flag=VALUE`; boolean flags take `--flag` or `--flag=true|false`.
  Global flags (--dir, --insecure-options...) go before `run` or right after it.

Pod flags (before the first image):
  --name NAME               name of the pod (an AC Name); pod names are unique
  --uuid-file-save FILE     write the pod's UUID to FILE
  --pod-manifest FILE       run this pod manifest; its images are looked up in the store
                            (only --name, --uuid-file-save, --hostname, --interactive, --net,
                            --dns*, --hosts-entry, --no-overlay, --stop-timeout, --slice and
                            --keep-unit may go with it; its own `ports` are forwarded)
  --volume NAME,kind=host,source=PATH[,readOnly=BOOL][,recursive=BOOL]
  --volume NAME,kind=empty[,readOnly=BOOL][,mode=0755][,uid=N][,gid=N]
                            a pod volume (repeatable); an image mount point of the same name
                            uses it, and one without any volume gets an implicit empty volume
  --mount volume=NAME,target=PATH
                            mount a volume into every app (repeatable)
  --set-env NAME=VALUE      environment for every app (repeatable); precedence:
                            image < --set-env < --environment
  --hostname HOSTNAME       the pod's host name
  --interactive             pass the terminal through to the (single) app
  --net default|none|host   the pod's network (default: default): `default` is a veth on the
                            bridge appc0 with an address from 172.16.28.0/24 (configurable in
                            <config-dir>/net.d/*.json), masqueraded; `none` is loopback only;
                            `host` is the host's network
  --port NAME:[HOSTIP:]HOSTPORT
                            forward a host port to the app port NAME of an image's `ports`
                            (repeatable; --net=default only), also reachable via localhost
  --dns IP|host             a nameserver for the apps' /etc/resolv.conf (repeatable); `host`
                            copies the host's resolv.conf
  --dns-search DOMAIN       a search domain for /etc/resolv.conf (repeatable)
  --dns-opt OPTION          a resolver option for /etc/resolv.conf, e.g. ndots:2 (repeatable)
  --hosts-entry IP=HOST|host
                            an /etc/hosts entry (repeatable); the apps' /etc/hosts is then the
                            pod's own (`host`: start from a copy of the host's)
  --no-overlay              copy image trees instead of mounting overlays
  --pull-policy new|update|never
                            images not in the store are fetched (new, the default), every
                            image is checked with its server (update), or only the store is
                            used (never); see `appcctl fetch --help`
  --stop-timeout DURATION   time between SIGTERM and SIGKILL on stop (10s, 1m30s, 500ms;
                            a bare number is seconds; default 10s)
  --slice NAME.slice        under systemd: the slice of the pod's scope (default machine.slice)
  --keep-unit               under systemd: no scope of its own; the pod stays in the unit
                            appcctl runs in (automatic in a service, as appc-pod@.service)

App flags (after the image they apply to):
  --exec PATH               run PATH instead of the image's exec[0]
  --name NAME               the app's name (default: from the image name, made unique)
  --user USER               user name, uid, or an absolute path whose owner is used
  --group GROUP             group name, gid, or an absolute path whose group is used
  --supplementary-gids N,N  supplementary group IDs
  --working-dir PATH        the app's working directory (absolute)
  --environment NAME=VALUE  app environment (repeatable)
  --readonly-rootfs[=BOOL]  mount the app's root filesystem read-only
  --memory QUANTITY         memory limit (resource/memory), e.g. 128M, 1Gi
  --cpu QUANTITY            CPU limit in cores (resource/cpu), e.g. 500m, 2
  --cpu-shares N            CPU weight, 2 to 262144 (os/linux/cpu-shares)
  --caps-retain CAP,...     keep only these capabilities, e.g. CAP_NET_BIND_SERVICE
  --caps-remove CAP,...     drop these capabilities from the default set
  --seccomp mode=retain|remove[,errno=ERRNO],SYSCALL|@GROUP,...
                            syscall filter; without errno a blocked call kills the app
  --oom-score-adj N         -1000 to 1000
  --mount volume=NAME,target=PATH
                            mount a volume into this app (repeatable); replaces a pod-level
                            --mount at the same target

Examples:
  appcctl --insecure-options=image run ./busybox.aci --exec /bin/sh -- -c 'echo hi'
  appcctl run --volume data,kind=empty --mount volume=data,target=/data \\
      example.com/web:1.0 --memory 256M --- example.com/worker --name w -- --verbose";

/// `appcctl run` / `appcctl prepare`: the raw words, parsed by [`parse_run_args`].
#[derive(Debug, Clone, Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    /// Pod flags, then each IMAGE with its app flags and `-- ARGS` (see below).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub words: Vec<String>,
}

impl RunArgs {
    pub fn request(&self) -> Result<RunRequest, RunArgsError> {
        parse_run_args(&self.words)
    }
}

/// What is wrong with a `run` command line; each message names the flag or word and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunArgsError {
    #[error(
        "no image given; usage: appcctl run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS] (see `appcctl run --help`)"
    )]
    NoImage,
    #[error("unknown flag {flag}{}; see `appcctl run --help`", did_you_mean(.suggestion))]
    UnknownFlag {
        flag: String,
        suggestion: Option<&'static str>,
    },
    #[error("{flag} needs a value: {flag} VALUE or {flag}=VALUE")]
    MissingValue { flag: String },
    #[error("{flag}: {reason}")]
    BadValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("{flag} is an app flag: put it after the image it applies to")]
    AppFlagBeforeImage { flag: String },
    #[error("{flag} is a pod flag: put it before the first image (it follows image {image:?})")]
    PodFlagAfterImage { flag: String, image: String },
    #[error("{flag} is a global flag: put it before `run` (appcctl {flag}... run ...)")]
    GlobalFlag { flag: String },
    #[error("{flag} is given twice{}", for_image(.image))]
    Repeated { flag: String, image: Option<String> },
    #[error("`--` must follow an image: the arguments after it go to that image's app")]
    ArgsBeforeImage,
    #[error("`---` must be followed by an image")]
    EmptyAppSection,
    #[error("`---` must come after an image and its flags; there is no image before it")]
    SeparatorBeforeImage,
    #[error("expected an image after `---`, found {word:?}")]
    ExpectedImage { word: String },
    #[error("an image argument is empty")]
    EmptyImage,
    #[error("--pod-manifest brings its own apps: remove image {image:?} or --pod-manifest")]
    PodManifestWithImage { image: String },
    #[error("{flag} cannot be combined with --pod-manifest; put it in the pod manifest instead")]
    NotWithPodManifest { flag: String },
    #[error("--caps-retain and --caps-remove cannot both be given for image {image:?}; choose one")]
    CapsRetainAndRemove { image: String },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean --{s}?)"))
        .unwrap_or_default()
}

fn for_image(image: &Option<String>) -> String {
    image
        .as_ref()
        .map(|i| format!(" for image {i:?}"))
        .unwrap_or_default()
}

/// Where a flag may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Pod,
    App,
}

/// Whether a flag takes a value, or is a boolean that takes at most `=BOOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    Value,
    Bool,
}

/// Every flag of the grammar; `--name` and `--mount` exist in both scopes.
const FLAGS: &[(&str, Scope, Arity)] = &[
    ("name", Scope::Pod, Arity::Value),
    ("uuid-file-save", Scope::Pod, Arity::Value),
    ("pod-manifest", Scope::Pod, Arity::Value),
    ("volume", Scope::Pod, Arity::Value),
    ("mount", Scope::Pod, Arity::Value),
    ("set-env", Scope::Pod, Arity::Value),
    ("hostname", Scope::Pod, Arity::Value),
    ("interactive", Scope::Pod, Arity::Bool),
    ("net", Scope::Pod, Arity::Value),
    ("port", Scope::Pod, Arity::Value),
    ("dns", Scope::Pod, Arity::Value),
    ("dns-search", Scope::Pod, Arity::Value),
    ("dns-opt", Scope::Pod, Arity::Value),
    ("hosts-entry", Scope::Pod, Arity::Value),
    ("no-overlay", Scope::Pod, Arity::Bool),
    ("stop-timeout", Scope::Pod, Arity::Value),
    ("slice", Scope::Pod, Arity::Value),
    ("keep-unit", Scope::Pod, Arity::Bool),
    ("pull-policy", Scope::Pod, Arity::Value),
    ("exec", Scope::App, Arity::Value),
    ("name", Scope::App, Arity::Value),
    ("user", Scope::App, Arity::Value),
    ("group", Scope::App, Arity::Value),
    ("supplementary-gids", Scope::App, Arity::Value),
    ("working-dir", Scope::App, Arity::Value),
    ("environment", Scope::App, Arity::Value),
    ("readonly-rootfs", Scope::App, Arity::Bool),
    ("memory", Scope::App, Arity::Value),
    ("cpu", Scope::App, Arity::Value),
    ("cpu-shares", Scope::App, Arity::Value),
    ("caps-retain", Scope::App, Arity::Value),
    ("caps-remove", Scope::App, Arity::Value),
    ("seccomp", Scope::App, Arity::Value),
    ("oom-score-adj", Scope::App, Arity::Value),
    ("mount", Scope::App, Arity::Value),
];

/// appcctl's global flags (`cli::GlobalArgs`): clap takes them only before the first pod flag.
const GLOBAL_FLAGS: &[&str] = &["dir", "config-dir", "insecure-options", "debug"];

/// rkt's deprecated spellings, pointed at their current names.
const ALIASES: &[(&str, &str)] = &[
    ("cap-retain", "caps-retain"),
    ("cap-remove", "caps-remove"),
    ("env", "set-env"),
    ("readonly-root-fs", "readonly-rootfs"),
    ("working-directory", "working-dir"),
];

/// Parses the words after `run` (see the module docs). Never panics.
pub fn parse_run_args(words: &[String]) -> Result<RunRequest, RunArgsError> {
    let mut cursor = Cursor { words, pos: 0 };
    let mut pod = PodFlags::default();
    parse_pod_section(&mut cursor, &mut pod)?;
    let mut apps = Vec::new();
    while let Some(image) = cursor.next_image()? {
        apps.push(parse_app_section(&mut cursor, image)?);
    }
    check_pod_manifest(&pod, &apps)?;
    if pod.pod_manifest.is_none() && apps.is_empty() {
        return Err(RunArgsError::NoImage);
    }
    Ok(RunRequest { pod, apps })
}

/// The words, with a read position.
struct Cursor<'a> {
    words: &'a [String],
    pos: usize,
}

/// One `--flag[=value]` word, split.
struct FlagWord<'a> {
    /// As written, without `=value`, for messages (`--memory`).
    shown: &'a str,
    name: &'a str,
    inline: Option<&'a str>,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).map(String::as_str)
    }

    fn bump(&mut self) -> Option<&'a str> {
        let word = self.peek()?;
        self.pos += 1;
        Some(word)
    }

    /// The next image, after an optional `---`; `None` at the end.
    fn next_image(&mut self) -> Result<Option<&'a str>, RunArgsError> {
        let Some(word) = self.bump() else {
            return Ok(None);
        };
        if word != "---" {
            return image_word(word).map(Some);
        }
        match self.bump() {
            None | Some("---") => Err(RunArgsError::EmptyAppSection),
            Some(w) if is_flag(w) || w == "--" => {
                Err(RunArgsError::ExpectedImage { word: w.into() })
            }
            Some(w) => image_word(w).map(Some),
        }
    }

    /// The value of a flag: inline (`--f=v`) or the next word, which must not be a flag or a
    /// separator (a negative number is a value: `--oom-score-adj -500`).
    fn value(&mut self, flag: &FlagWord<'a>) -> Result<&'a str, RunArgsError> {
        if let Some(v) = flag.inline {
            return Ok(v);
        }
        match self.peek() {
            Some(w) if !w.starts_with("--") => {
                self.pos += 1;
                Ok(w)
            }
            _ => Err(RunArgsError::MissingValue {
                flag: flag.shown.into(),
            }),
        }
    }
}

fn image_word(word: &str) -> Result<&str, RunArgsError> {
    if word.is_empty() {
        Err(RunArgsError::EmptyImage)
    } else {
        Ok(word)
    }
}

/// A word that looks like a flag (`-x`, `--x`), as opposed to an image or a value.
fn is_flag(word: &str) -> bool {
    word.len() > 1 && word.starts_with('-') && word != "--" && word != "---"
}

fn split_flag(word: &str) -> FlagWord<'_> {
    let (shown, inline) = match word.split_once('=') {
        Some((f, v)) => (f, Some(v)),
        None => (word, None),
    };
    FlagWord {
        shown,
        name: shown.trim_start_matches('-'),
        inline,
    }
}

fn lookup(name: &str, scope: Scope) -> Option<Arity> {
    FLAGS
        .iter()
        .find(|(n, s, _)| *n == name && *s == scope)
        .map(|(_, _, arity)| *arity)
}

/// The error for a flag not valid in `scope`: wrong section, global, or unknown.
fn misplaced(flag: &FlagWord<'_>, scope: Scope, image: Option<&str>) -> RunArgsError {
    let shown = flag.shown.to_owned();
    let single_dash = !flag.shown.starts_with("--");
    if !single_dash && GLOBAL_FLAGS.contains(&flag.name) {
        return RunArgsError::GlobalFlag { flag: shown };
    }
    let other = match scope {
        Scope::Pod => Scope::App,
        Scope::App => Scope::Pod,
    };
    if !single_dash && lookup(flag.name, other).is_some() {
        return match (scope, image) {
            (Scope::App, Some(image)) => RunArgsError::PodFlagAfterImage {
                flag: shown,
                image: image.into(),
            },
            _ => RunArgsError::AppFlagBeforeImage { flag: shown },
        };
    }
    RunArgsError::UnknownFlag {
        flag: shown,
        suggestion: suggest(flag.name),
    }
}

/// A known flag close to a mistyped one: an alias, or one edit away (two for longer names,
/// so that a swapped pair of letters, `--memroy`, is still recognised).
fn suggest(name: &str) -> Option<&'static str> {
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name) {
        return Some(to);
    }
    let allowed = if name.len() >= 5 { 2 } else { 1 };
    FLAGS
        .iter()
        .map(|(n, _, _)| *n)
        .find(|n| edit_distance(n, name) <= allowed)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The flags before the first image; stops at the first image word.
fn parse_pod_section(cursor: &mut Cursor<'_>, pod: &mut PodFlags) -> Result<(), RunArgsError> {
    let mut seen: Vec<&str> = Vec::new();
    while let Some(word) = cursor.peek() {
        match word {
            "--" => return Err(RunArgsError::ArgsBeforeImage),
            "---" => return Err(RunArgsError::SeparatorBeforeImage),
            w if !is_flag(w) => return Ok(()),
            _ => {}
        }
        cursor.bump();
        let flag = split_flag(word);
        let Some(arity) = lookup(flag.name, Scope::Pod).filter(|_| word.starts_with("--")) else {
            return Err(misplaced(&flag, Scope::Pod, None));
        };
        if !is_repeatable(flag.name) && seen.contains(&flag.name) {
            return Err(RunArgsError::Repeated {
                flag: flag.shown.into(),
                image: None,
            });
        }
        seen.push(flag.name);
        let value = match arity {
            Arity::Value => cursor.value(&flag)?,
            Arity::Bool => flag.inline.unwrap_or("true"),
        };
        apply_pod_flag(pod, flag.name, value).map_err(|reason| bad(&flag, value, reason))?;
    }
    Ok(())
}

fn is_repeatable(name: &str) -> bool {
    matches!(
        name,
        "volume"
            | "mount"
            | "set-env"
            | "environment"
            | "port"
            | "dns"
            | "dns-search"
            | "dns-opt"
            | "hosts-entry"
    )
}

fn bad(flag: &FlagWord<'_>, value: &str, reason: String) -> RunArgsError {
    RunArgsError::BadValue {
        flag: flag.shown.into(),
        value: value.into(),
        reason,
    }
}

/// Why a value is refused (becomes [`RunArgsError::BadValue`]), or a whole error of its own.
type Applied = Result<(), String>;

fn apply_pod_flag(pod: &mut PodFlags, name: &str, value: &str) -> Applied {
    match name {
        "name" => pod.name = Some(parse_name(value)?),
        "uuid-file-save" => pod.uuid_file_save = Some(parse_file(value)?),
        "pod-manifest" => pod.pod_manifest = Some(parse_file(value)?),
        "volume" => {
            let volume = parse_volume(value)?;
            if pod.volumes.iter().any(|v| v.name == volume.name) {
                return Err(format!(
                    "two volumes are named {:?}; volume names must be unique",
                    volume.name.as_str()
                ));
            }
            pod.volumes.push(volume);
        }
        "mount" => pod.mounts.push(parse_mount(value)?),
        "set-env" => pod.set_env.push(parse_env(value)?),
        "hostname" => pod.hostname = Some(parse_hostname(value)?),
        "interactive" => pod.interactive = parse_bool(value)?,
        "net" => pod.net = parse_net(value)?,
        "port" => {
            let port = crate::net::ports::parse_port_flag(value)?;
            if pod.ports.iter().any(|p| p.name == port.name) {
                return Err(format!(
                    "port {} is already forwarded; give each port name once",
                    port.name
                ));
            }
            pod.ports.push(port);
        }
        "dns" => pod.dns.add_server(value)?,
        "dns-search" => pod.dns.add_search(value)?,
        "dns-opt" => pod.dns.add_option(value)?,
        "hosts-entry" => pod.dns.add_hosts_entry(value)?,
        "no-overlay" => pod.no_overlay = parse_bool(value)?,
        "stop-timeout" => pod.stop_timeout_ms = Some(parse_duration_ms(value)?),
        "slice" => pod.slice = Some(parse_slice(value)?),
        "keep-unit" => pod.keep_unit = parse_bool(value)?,
        "pull-policy" => pod.pull_policy = Some(value.parse()?),
        other => return Err(format!("--{other} is not a pod flag")),
    }
    Ok(())
}

/// One image's flags and `-- ARGS`; stops before `---` or the next image.
fn parse_app_section(cursor: &mut Cursor<'_>, image: &str) -> Result<AppRequest, RunArgsError> {
    let mut app = AppRequest::new(image);
    let mut seen: Vec<&str> = Vec::new();
    while let Some(word) = cursor.peek() {
        match word {
            "---" => break,
            "--" => {
                cursor.bump();
                app.args = Some(take_args(cursor));
                break;
            }
            w if !is_flag(w) => break, // the next image, as `rkt run img1 img2` allows
            _ => {}
        }
        cursor.bump();
        let flag = split_flag(word);
        let Some(arity) = lookup(flag.name, Scope::App).filter(|_| word.starts_with("--")) else {
            return Err(misplaced(&flag, Scope::App, Some(image)));
        };
        if !is_repeatable(flag.name) && seen.contains(&flag.name) {
            return Err(RunArgsError::Repeated {
                flag: flag.shown.into(),
                image: Some(image.into()),
            });
        }
        seen.push(flag.name);
        let value = match arity {
            Arity::Value => cursor.value(&flag)?,
            Arity::Bool => flag.inline.unwrap_or("true"),
        };
        apply_app_flag(&mut app, flag.name, value).map_err(|reason| bad(&flag, value, reason))?;
    }
    check_caps(&app)?;
    Ok(app)
}

/// The words after `--`, up to `---` or the end, taken literally.
fn take_args(cursor: &mut Cursor<'_>) -> Vec<String> {
    let mut args = Vec::new();
    while let Some(word) = cursor.peek().filter(|w| *w != "---") {
        args.push(word.to_owned());
        cursor.bump();
    }
    args
}

fn apply_app_flag(app: &mut AppRequest, name: &str, value: &str) -> Applied {
    match name {
        "exec" => app.exec = Some(parse_exec(value)?),
        "name" => app.name = Some(parse_name(value)?),
        "user" => app.user = Some(UserGroup::parse(value).map_err(|e| e.to_string())?),
        "group" => app.group = Some(UserGroup::parse(value).map_err(|e| e.to_string())?),
        "supplementary-gids" => app.supplementary_gids = Some(parse_gids(value)?),
        "working-dir" => app.working_dir = Some(parse_abs(value)?),
        "environment" => app.environment.push(parse_env(value)?),
        "readonly-rootfs" => app.readonly_rootfs = Some(parse_bool(value)?),
        "memory" => app.isolators.push(Isolator::Memory(parse_limit(value)?)),
        "cpu" => app.isolators.push(Isolator::Cpu(parse_limit(value)?)),
        "cpu-shares" => app
            .isolators
            .push(Isolator::CpuShares(parse_cpu_shares(value)?)),
        "caps-retain" => app
            .isolators
            .push(Isolator::CapabilitiesRetainSet(parse_caps(value)?)),
        "caps-remove" => app
            .isolators
            .push(Isolator::CapabilitiesRemoveSet(parse_caps(value)?)),
        "seccomp" => app.isolators.push(parse_seccomp(value)?),
        "oom-score-adj" => app.isolators.push(Isolator::OomScoreAdj(parse_oom(value)?)),
        "mount" => app.mounts.push(parse_mount(value)?),
        other => return Err(format!("--{other} is not an app flag")),
    }
    Ok(())
}

/// The spec forbids a retain-set and a remove-set in one app (schema decision 7).
fn check_caps(app: &AppRequest) -> Result<(), RunArgsError> {
    let has = |f: fn(&Isolator) -> bool| app.isolators.iter().any(f);
    if has(|i| matches!(i, Isolator::CapabilitiesRetainSet(_)))
        && has(|i| matches!(i, Isolator::CapabilitiesRemoveSet(_)))
    {
        return Err(RunArgsError::CapsRetainAndRemove {
            image: app.image.clone(),
        });
    }
    Ok(())
}

/// `--pod-manifest` replaces the images and the flags that would build the manifest.
fn check_pod_manifest(pod: &PodFlags, apps: &[AppRequest]) -> Result<(), RunArgsError> {
    if pod.pod_manifest.is_none() {
        return Ok(());
    }
    if let Some(app) = apps.first() {
        return Err(RunArgsError::PodManifestWithImage {
            image: app.image.clone(),
        });
    }
    let given = [
        (!pod.volumes.is_empty(), "--volume"),
        (!pod.mounts.is_empty(), "--mount"),
        (!pod.set_env.is_empty(), "--set-env"),
        (!pod.ports.is_empty(), "--port"),
    ];
    match given.into_iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(RunArgsError::NotWithPodManifest { flag: flag.into() }),
        None => Ok(()),
    }
}

// ---- value parsers: each returns the reason a value is refused ----

fn parse_name(s: &str) -> Result<AcName, String> {
    AcName::parse(s)
        .map_err(|e| format!("{e}; names are lower-case letters, digits and '-', e.g. \"web-1\""))
}

fn parse_file(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the file name is empty".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_abs(s: &str) -> Result<AbsolutePath, String> {
    AbsolutePath::parse(s).map_err(|e| e.to_string())
}

fn parse_exec(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('\0') {
        return Err(format!("{s:?} is not a program to run"));
    }
    Ok(s.to_owned())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

fn parse_net(s: &str) -> Result<NetMode, String> {
    match s {
        "default" => Ok(NetMode::Default),
        "none" => Ok(NetMode::None),
        "host" => Ok(NetMode::Host),
        _ => Err(format!("{s:?} is not a network (default, none or host)")),
    }
}

/// `NAME=VALUE`; the value may be empty and may hold `=`.
fn parse_env(s: &str) -> Result<EnvVar, String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!("{s:?} is not NAME=VALUE"));
    };
    let name = EnvName::parse(name).map_err(|e| e.to_string())?;
    Ok(EnvVar {
        name,
        value: value.to_owned(),
    })
}

/// A slice unit name (`machine.slice`, `appc-web.slice`): systemd would refuse anything else,
/// after the pod's init already exists.
fn parse_slice(s: &str) -> Result<String, String> {
    let stem = s.strip_suffix(".slice").unwrap_or("");
    let valid = !stem.is_empty()
        && s.len() <= 255
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:\\".contains(&b));
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a slice unit name: letters, digits and -_.:\\ ending in .slice (e.g. machine.slice)"
        ))
    }
}

/// A host name as sethostname(2) takes it: at most 64 bytes (HOST_NAME_MAX), RFC 1123 labels.
fn parse_hostname(s: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.is_empty() || s.len() > 64 || !s.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a host name (up to 64 characters: letters, digits, '-' and '.')"
        ));
    }
    Ok(s.to_owned())
}

/// `10s`, `1m30s`, `500ms`, `2h`; a bare number is seconds.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 1m30s, 500ms)");
    if let Ok(secs) = s.parse::<u64>() {
        return secs.checked_mul(1000).ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let scale = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(scale)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    if s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

fn parse_gids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|g| {
            g.trim()
                .parse::<u32>()
                .map_err(|_| format!("{g:?} is not a group ID (a number from 0 to 4294967295)"))
        })
        .collect()
}

/// A resource quantity as the isolator's limit (the request then defaults to it).
fn parse_limit(s: &str) -> Result<ResourceLimits, String> {
    let q = Quantity::parse(s).map_err(|e| format!("{e}; e.g. 128M, 1Gi, 500m"))?;
    ResourceLimits::with_limit(q).map_err(|e| e.to_string())
}

fn parse_int(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|_| format!("{s:?} is not an integer"))
}

fn parse_cpu_shares(s: &str) -> Result<CpuShares, String> {
    CpuShares::new(parse_int(s)?).map_err(|e| e.to_string())
}

fn parse_oom(s: &str) -> Result<OomScoreAdj, String> {
    OomScoreAdj::new(parse_int(s)?).map_err(|e| e.to_string())
}

fn parse_caps(s: &str) -> Result<CapabilitySet, String> {
    let caps = s
        .split(',')
        .map(|c| parse_capability(c.trim()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    CapabilitySet::new(caps).map_err(|e| e.to_string())
}

/// `mode=retain|remove[,errno=ERRNO],ENTRY,...`: the options may sit anywhere in the list.
fn parse_seccomp(s: &str) -> Result<Isolator, String> {
    let mut mode = None;
    let mut errno = None;
    let mut set = Vec::new();
    for item in s.split(',').map(str::trim) {
        if let Some(m) = item.strip_prefix("mode=") {
            mode = Some(match m {
                "retain" => true,
                "remove" => false,
                _ => return Err(format!("mode {m:?} is neither retain nor remove")),
            });
        } else if let Some(e) = item.strip_prefix("errno=") {
            errno = Some(ErrnoName::parse(e).map_err(|e| e.to_string())?);
        } else {
            set.push(SeccompEntry::parse(item).map_err(|e| e.to_string())?);
        }
    }
    let Some(retain) = mode else {
        return Err("mode=retain or mode=remove is required".into());
    };
    if set.is_empty() {
        return Err("give at least one syscall or @group after the mode".into());
    }
    let filter = SeccompFilter::new(set, errno).map_err(|e| e.to_string())?;
    Ok(if retain {
        Isolator::SeccompRetainSet(filter)
    } else {
        Isolator::SeccompRemoveSet(filter)
    })
}

/// `key=value` pairs, each key at most once and from `known`.
fn parse_pairs<'a>(
    items: impl Iterator<Item = &'a str>,
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("{item:?} is not key=value"));
        };
        if !known.contains(&key) {
            return Err(format!("unknown key {key:?} (known: {})", known.join(", ")));
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("{key} is given twice"));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `volume=NAME,target=PATH`.
fn parse_mount(s: &str) -> Result<MountRequest, String> {
    let pairs = parse_pairs(s.split(','), &["volume", "target"])?;
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("{key}= is missing; expected volume=NAME,target=PATH"))
    };
    Ok(MountRequest {
        volume: parse_name(get("volume")?)?,
        target: parse_abs(get("target")?)?,
    })
}

/// `NAME,kind=host|empty,...`, read as the JSON volume object it stands for and decoded by the
/// schema, so a flag volume obeys exactly the rules of a manifest volume.
fn parse_volume(s: &str) -> Result<Volume, String> {
    let mut items = s.split(',');
    let name = items.next().unwrap_or_default();
    if name.is_empty() || name.contains('=') {
        return Err(format!(
            "{s:?} does not start with the volume name: NAME,kind=host,source=PATH or NAME,kind=empty"
        ));
    }
    let known = [
        "kind",
        "source",
        "readOnly",
        "recursive",
        "mode",
        "uid",
        "gid",
    ];
    let pairs = parse_pairs(items, &known)?;
    if !pairs.iter().any(|(k, _)| *k == "kind") {
        return Err(format!(
            "{s:?} has no kind: add kind=host,source=PATH or kind=empty"
        ));
    }
    let mut object = Map::new();
    object.insert("name".into(), json!(name));
    for (key, value) in pairs {
        object.insert(key.into(), volume_field(key, value)?);
    }
    let decoded = decode_value::<Volume>(&Value::Object(object)).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        all.join("; ")
    })?;
    Ok(decoded.value)
}

/// A `--volume` value as the JSON type the manifest field has.
fn volume_field(key: &str, value: &str) -> Result<Value, String> {
    Ok(match key {
        "readOnly" | "recursive" => json!(parse_bool(value).map_err(|e| format!("{key}: {e}"))?),
        "uid" | "gid" => json!(
            value
                .parse::<u32>()
                .map_err(|_| format!("{key}: {value:?} is not a number from 0 to 4294967295"))?
        ),
        _ => json!(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FileMode, VolumeKind};

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn parse(line: &str) -> Result<RunRequest, RunArgsError> {
        parse_run_args(&words(line))
    }

    fn ok(line: &str) -> RunRequest {
        parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Ok(r) => panic!("{line}: expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn name(s: &str) -> AcName {
        AcName::parse(s).unwrap()
    }

    #[test]
    fn one_image() {
        let r = ok("example.com/busybox");
        assert_eq!(r.apps, vec![AppRequest::new("example.com/busybox")]);
        assert_eq!(r.pod, PodFlags::default());
    }

    #[test]
    fn name_is_the_pod_name_before_an_image_and_the_app_name_after() {
        let r = ok("--name web img --name front");
        assert_eq!(r.pod.name, Some(name("web")));
        assert_eq!(r.apps[0].name, Some(name("front")));
    }

    #[test]
    fn both_value_forms() {
        let k = ok("--slice appc-web.slice --keep-unit img");
        assert_eq!(k.pod.slice.as_deref(), Some("appc-web.slice"));
        assert!(k.pod.keep_unit);
        let a = ok("--hostname=h1 --stop-timeout 5s img --memory=128M --cpu 500m");
        let b = ok("--hostname h1 --stop-timeout=5s img --memory 128M --cpu=500m");
        assert_eq!(a, b);
        assert_eq!(a.pod.hostname.as_deref(), Some("h1"));
        assert_eq!(a.pod.stop_timeout_ms, Some(5000));
    }

    #[test]
    fn values_may_hold_equals_signs() {
        let r = ok("--set-env=A=b=c img --environment X=");
        assert_eq!(r.pod.set_env[0].value, "b=c");
        assert_eq!(r.apps[0].environment[0].name.as_str(), "X");
        assert_eq!(r.apps[0].environment[0].value, "");
    }

    #[test]
    fn args_and_separators() {
        let r = ok("a --exec /bin/sh -- -c --name --- b -- x -- y --- c");
        assert_eq!(r.apps.len(), 3);
        assert_eq!(r.apps[0].exec.as_deref(), Some("/bin/sh"));
        assert_eq!(r.apps[0].args, Some(words("-c --name")));
        assert_eq!(r.apps[0].name, None);
        assert_eq!(r.apps[1].args, Some(words("x -- y")));
        assert_eq!(r.apps[2].args, None);
        let r = ok("a --");
        assert_eq!(r.apps[0].args, Some(vec![]));
    }

    #[test]
    fn images_may_follow_one_another() {
        let r = ok("a --name x b c --name z");
        let images: Vec<&str> = r.apps.iter().map(|a| a.image.as_str()).collect();
        assert_eq!(images, ["a", "b", "c"]);
        assert_eq!(r.apps[2].name, Some(name("z")));
    }

    #[test]
    fn pod_flags() {
        let r = ok(
            "--uuid-file-save /tmp/u --interactive --net host --no-overlay=false \
                    --set-env A=1 --set-env B=2 --mount volume=v,target=/v \
                    --volume v,kind=empty img",
        );
        let p = &r.pod;
        assert_eq!(p.uuid_file_save, Some(PathBuf::from("/tmp/u")));
        assert!(p.interactive && !p.no_overlay);
        assert_eq!(p.net, NetMode::Host);
        assert_eq!(p.set_env.len(), 2);
        assert_eq!(p.mounts[0].volume, name("v"));
        assert_eq!(p.mounts[0].target.as_str(), "/v");
        assert_eq!(ok("img").pod.net, NetMode::Default);
        let p = ok("--net=default --port www:8080 --port db:127.0.0.1:5432 --dns 10.0.0.53 \
            --dns-search example.com --dns-opt ndots:2 --hosts-entry 10.1.1.1=db --hosts-entry host img")
        .pod;
        assert_eq!(p.net, NetMode::Default);
        assert_eq!(p.ports.len(), 2);
        assert_eq!(p.ports[1].host_port, 5432);
        assert_eq!(
            p.dns.servers,
            ["10.0.0.53".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!((p.dns.search.len(), p.dns.options.len()), (1, 1));
        assert!(p.dns.host_hosts);
        assert_eq!(p.dns.hosts_entries[0].host, "db");
    }

    #[test]
    fn volumes() {
        let r = ok(
            "--volume data,kind=host,source=/srv/data,readOnly=true,recursive=false \
                    --volume scratch,kind=empty,mode=0700,uid=10,gid=20 img",
        );
        let v = &r.pod.volumes;
        assert_eq!(v[0].name, name("data"));
        assert_eq!(v[0].read_only, Some(true));
        assert!(matches!(&v[0].kind,
            VolumeKind::Host { source, recursive: Some(false) } if source.as_str() == "/srv/data"));
        assert_eq!(
            v[1].kind,
            VolumeKind::Empty {
                mode: FileMode::parse("0700").unwrap(),
                uid: 10,
                gid: 20
            }
        );
        let e = ok("--volume s,kind=empty img").pod.volumes[0].kind.clone();
        assert_eq!(
            e,
            VolumeKind::Empty {
                mode: FileMode::DEFAULT_EMPTY,
                uid: 0,
                gid: 0
            }
        );
    }

    #[test]
    fn malformed_volumes() {
        let cases = [
            (
                "--volume kind=empty img",
                "does not start with the volume name",
            ),
            ("--volume data img", "has no kind"),
            (
                "--volume data,kind=nfs img",
                "neither \"host\" nor \"empty\"",
            ),
            (
                "--volume data,kind=host img",
                "source: required field is missing",
            ),
            (
                "--volume data,kind=host,source=rel img",
                "not an absolute path",
            ),
            (
                "--volume data,kind=host,source=/x,mode=0755 img",
                "only \"empty\" volumes take",
            ),
            ("--volume data,kind=empty,source=/x img", "takes no source"),
            ("--volume data,kind=empty,mode=999 img", "octal"),
            (
                "--volume data,kind=empty,uid=-1 img",
                "uid: \"-1\" is not a number",
            ),
            (
                "--volume data,kind=empty,readOnly=yes img",
                "readOnly: \"yes\" is not a boolean",
            ),
            (
                "--volume data,kind=empty,color=red img",
                "unknown key \"color\"",
            ),
            (
                "--volume data,kind=empty,kind=host img",
                "kind is given twice",
            ),
            ("--volume Data,kind=empty img", "is not an AC Name"),
            (
                "--volume a,kind=empty --volume a,kind=empty img",
                "two volumes are named \"a\"",
            ),
        ];
        for (line, want) in cases {
            let e = err(line);
            assert!(e.starts_with("--volume: "), "{line}: {e}");
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn app_flags() {
        let r = ok(
            "img --exec /bin/app --user 1000 --group /etc/x --supplementary-gids 1,2 \
                    --working-dir /w --environment A=1 --readonly-rootfs --memory 128M \
                    --cpu 500m --cpu-shares 512 --caps-retain CAP_NET_ADMIN,CAP_KILL \
                    --seccomp mode=remove,errno=EPERM,reboot,@docker/default-blacklist \
                    --oom-score-adj -500 --mount volume=v,target=/v",
        );
        let a = &r.apps[0];
        assert_eq!(a.exec.as_deref(), Some("/bin/app"));
        assert_eq!(a.user.as_ref().map(UserGroup::as_str), Some("1000"));
        assert_eq!(a.group.as_ref().map(UserGroup::as_str), Some("/etc/x"));
        assert_eq!(a.supplementary_gids, Some(vec![1, 2]));
        assert_eq!(a.working_dir.as_ref().map(AbsolutePath::as_str), Some("/w"));
        assert_eq!(a.readonly_rootfs, Some(true));
        let names: Vec<&str> = a.isolators.iter().map(Isolator::name).collect();
        assert_eq!(
            names,
            [
                "resource/memory",
                "resource/cpu",
                "os/linux/cpu-shares",
                "os/linux/capabilities-retain-set",
                "os/linux/seccomp-remove-set",
                "os/linux/oom-score-adj"
            ]
        );
        let Isolator::Memory(m) = &a.isolators[0] else {
            unreachable!()
        };
        assert_eq!(m.limit().and_then(Quantity::to_bytes), Some(128_000_000));
        let Isolator::SeccompRemoveSet(f) = &a.isolators[4] else {
            unreachable!()
        };
        assert_eq!(f.errno().map(ErrnoName::as_str), Some("EPERM"));
        assert_eq!(f.set().len(), 2);
        let Isolator::OomScoreAdj(o) = &a.isolators[5] else {
            unreachable!()
        };
        assert_eq!(o.get(), -500);
        assert_eq!(a.mounts.len(), 1);
        assert_eq!(
            ok("img --readonly-rootfs=false").apps[0].readonly_rootfs,
            Some(false)
        );
    }

    #[test]
    fn bad_app_values() {
        let cases = [
            (
                "img --memory 12X",
                "--memory: \"12X\" is not a resource quantity",
            ),
            ("img --memory -1M", "--memory: negative quantity"),
            (
                "img --cpu-shares 1",
                "--cpu-shares: \"1\" is not a CPU shares value",
            ),
            (
                "img --cpu-shares lots",
                "--cpu-shares: \"lots\" is not an integer",
            ),
            ("img --oom-score-adj 2000", "the range is -1000 to 1000"),
            (
                "img --caps-retain cap_kill",
                "capability names are upper-case",
            ),
            ("img --caps-remove CAP_PONIES", "is not a Linux capability"),
            (
                "img --seccomp reboot",
                "mode=retain or mode=remove is required",
            ),
            (
                "img --seccomp mode=keep,reboot",
                "neither retain nor remove",
            ),
            ("img --seccomp mode=retain", "at least one syscall"),
            (
                "img --seccomp mode=retain,errno=eperm,x",
                "is not an errno name",
            ),
            (
                "img --seccomp mode=retain,Reboot",
                "is not a syscall name or @group",
            ),
            ("img --supplementary-gids 1,x", "\"x\" is not a group ID"),
            ("img --working-dir rel", "is not an absolute path"),
            (
                "img --environment 1A=x",
                "is not an environment variable name",
            ),
            ("img --environment A", "\"A\" is not NAME=VALUE"),
            ("img --user a:b", "is not a user or group"),
            ("img --name Web", "--name: \"Web\" is not an AC Name"),
            ("img --readonly-rootfs=yes", "is not a boolean"),
            ("img --mount volume=v", "target= is missing"),
            (
                "img --mount volume=v,target=/x,ro=true",
                "unknown key \"ro\"",
            ),
            ("img --mount v,/x", "is not key=value"),
        ];
        for (line, want) in cases {
            let e = err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn bad_pod_values() {
        let cases = [
            (
                "--net bridge img",
                "is not a network (default, none or host)",
            ),
            ("--port www img", "is not NAME:[HOSTIP:]HOSTPORT"),
            ("--port www:8080 --port www:8081 img", "already forwarded"),
            ("--dns 1.2.3 img", "is not an IP address"),
            ("--dns host --dns 1.1.1.1 img", "cannot be combined"),
            ("--hosts-entry db img", "is not IP=HOST"),
            ("--hostname -bad img", "is not a host name"),
            ("--hostname a_b img", "is not a host name"),
            ("--slice machine img", "is not a slice unit name"),
            ("--slice .slice img", "is not a slice unit name"),
            ("--slice a/b.slice img", "is not a slice unit name"),
            ("--stop-timeout 5x img", "is not a duration"),
            ("--stop-timeout s img", "is not a duration"),
            ("--interactive=1 img", "is not a boolean"),
            ("--set-env =x img", "is not an environment variable name"),
            ("--uuid-file-save= img", "the file name is empty"),
        ];
        for (line, want) in cases {
            let e = err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10"), Ok(10_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        for bad in ["", "ms", "1d", "1.5s", "99999999999999999999s", "-1s"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grammar_errors() {
        let cases = [
            ("", "no image given"),
            ("--net host", "no image given"),
            ("--bogus img", "unknown flag --bogus"),
            ("img --bogus", "unknown flag --bogus"),
            ("-i img", "unknown flag -i"),
            ("img --cap-retain CAP_KILL", "did you mean --caps-retain?"),
            ("img --memroy 1G", "did you mean --memory?"),
            (
                "--exec /bin/sh img",
                "--exec is an app flag: put it after the image",
            ),
            (
                "img --hostname h",
                "--hostname is a pod flag: put it before the first image",
            ),
            ("img --volume v,kind=empty", "--volume is a pod flag"),
            (
                "img --insecure-options=image",
                "--insecure-options is a global flag",
            ),
            ("--net host --dir /x img", "--dir is a global flag"),
            ("--name", "--name needs a value"),
            ("img --exec", "--exec needs a value"),
            ("img --exec --name x", "--exec needs a value"),
            ("--hostname --net host img", "--hostname needs a value"),
            ("-- img", "`--` must follow an image"),
            ("--- img", "no image before it"),
            ("img ---", "`---` must be followed by an image"),
            ("img --- --- b", "`---` must be followed by an image"),
            (
                "img --- --name x",
                "expected an image after `---`, found \"--name\"",
            ),
            (
                "img --exec /a --exec /b",
                "--exec is given twice for image \"img\"",
            ),
            ("--hostname a --hostname b img", "--hostname is given twice"),
            (
                "img --caps-retain CAP_KILL --caps-remove CAP_CHOWN",
                "cannot both be given",
            ),
            (
                "--pod-manifest /p img",
                "--pod-manifest brings its own apps",
            ),
            (
                "--pod-manifest /p --volume v,kind=empty",
                "--volume cannot be combined",
            ),
            (
                "--pod-manifest /p --set-env A=1",
                "--set-env cannot be combined",
            ),
        ];
        for (line, want) in cases {
            let e = err(line);
            assert!(e.contains(want), "{line:?}: {e}");
        }
        assert_eq!(
            parse_run_args(&["".to_string()]),
            Err(RunArgsError::EmptyImage)
        );
    }

    #[test]
    fn pod_manifest_alone() {
        let r = ok("--name p --pod-manifest /srv/pod.json --net host --interactive");
        assert_eq!(r.pod.pod_manifest, Some(PathBuf::from("/srv/pod.json")));
        assert!(r.apps.is_empty());
    }

    #[test]
    fn negative_numbers_are_values() {
        let r = ok("img --oom-score-adj -1000");
        assert!(matches!(r.apps[0].isolators[0], Isolator::OomScoreAdj(o) if o.get() == -1000));
    }

    #[test]
    fn help_documents_every_flag() {
        for (flag, _, _) in FLAGS {
            assert!(
                RUN_HELP.contains(&format!("--{flag} "))
                    || RUN_HELP.contains(&format!("--{flag}[")),
                "--{flag} is missing from RUN_HELP"
            );
        }
    }

    /// The raw words survive clap: `--`, `---` and unknown flags reach the grammar untouched.
    #[test]
    fn clap_passes_the_words_through() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[arg(long, global = true)]
            dir: Option<String>,
            #[command(subcommand)]
            cmd: Cmd,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Cmd {
            Run(RunArgs),
        }
        let line = "appcctl --dir /d run --name p img --exec /x -- -a -- --- b";
        let cli = Cli::try_parse_from(line.split(' ')).unwrap();
        let Cmd::Run(args) = cli.cmd;
        assert_eq!(cli.dir.as_deref(), Some("/d"));
        assert_eq!(args.words, words("--name p img --exec /x -- -a -- --- b"));
        let r = args.request().unwrap();
        assert_eq!(r.apps[0].args, Some(words("-a --")));
        let help = Cli::try_parse_from(["appcctl", "run", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("--caps-retain"), "{help}");
    }
}
