//! `appcctl trust`: add, list and remove trusted signing keys (as `rkt trust`).
//!
//! - `appcctl trust --prefix P [KEYFILE|URL]...`: trust keys for images named P or below it.
//!   With no argument the prefix's keys are discovered (`ac-discovery-pubkeys`).
//! - `appcctl trust --root KEYFILE...`: trust keys for every image.
//! - `appcctl trust list [--format json]`, `appcctl trust rm FINGERPRINT`.
//!
//! Each key is shown (fingerprint, user IDs, expiry) before it is trusted; on a terminal the
//! user confirms it, elsewhere `--skip-fingerprint-review` must say that someone checked.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sequoia_openpgp::Cert;

use super::output::{Format, print_table, printable};
use super::{GlobalArgs, Insecure};
use crate::fetch::{self, Relaxed};
use crate::trust::{KeyFile, KeyInfo, Prefix, Scope, TrustStore, key};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: Option<TrustCommand>,

    #[command(flatten)]
    pub add: AddArgs,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Trust the keys for images named PREFIX or below it, on whole path components
    /// (example.com/team trusts example.com/team/app, not example.com/teamx).
    #[arg(
        long,
        value_name = "PREFIX",
        conflicts_with = "root",
        required_unless_present = "root"
    )]
    pub prefix: Option<String>,

    /// Trust the keys for every image.
    #[arg(long)]
    pub root: bool,

    /// Trust without asking; needed when stdin is not a terminal. Compare the fingerprint
    /// with the publisher's first.
    #[arg(long)]
    pub skip_fingerprint_review: bool,

    /// Key files (armored or binary) or http(s):// URLs. None: discover the prefix's keys.
    #[arg(value_name = "KEYFILE|URL")]
    pub keys: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// List the trusted keys of the configuration and vendor directories.
    List(ListArgs),
    /// Stop trusting a key: remove it from every prefix of the configuration directory.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Leave out the header line.
    #[arg(long)]
    pub no_legend: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Fingerprints as `appcctl trust list` shows them.
    #[arg(required = true, value_name = "FINGERPRINT")]
    pub fingerprints: Vec<String>,
}

pub fn run(g: &GlobalArgs, args: &TrustArgs) -> anyhow::Result<ExitCode> {
    let store = TrustStore::open(&g.config_dir, &TrustStore::default_vendor_dir())?;
    match &args.command {
        Some(TrustCommand::List(a)) => list(&store, a),
        Some(TrustCommand::Rm(a)) => rm(&store, a),
        None => add(g, &store, &args.add),
    }
}

/// A key as obtained, before review.
struct Candidate {
    origin: String,
    cert: Cert,
}

fn add(g: &GlobalArgs, store: &TrustStore, a: &AddArgs) -> anyhow::Result<ExitCode> {
    let scope = match &a.prefix {
        Some(p) if !a.root => Scope::Prefix(Prefix::parse(p)?),
        _ => Scope::Root,
    };
    let candidates = obtain(g, &scope, &a.keys)?;
    // Refuse bad keys before asking anything, so the user is never asked about a key that
    // would be rejected anyway.
    for c in &candidates {
        key::check_importable(&c.origin, &c.cert)?;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut declined = 0;
    for c in &candidates {
        show(&scope, c);
        if !a.skip_fingerprint_review {
            if !interactive {
                bail!(
                    "refusing to trust key {} without a fingerprint review: stdin is not a terminal; compare the fingerprint with the publisher's and run again with --skip-fingerprint-review",
                    c.cert.fingerprint().to_hex()
                );
            }
            if !confirm(&scope)? {
                eprintln!(
                    "key {} not trusted (declined)",
                    c.cert.fingerprint().to_hex()
                );
                declined += 1;
                continue;
            }
        }
        let path = store.add(&scope, &c.cert, &c.origin)?;
        match &scope {
            Scope::Root => println!(
                "Added root key {} at {}",
                c.cert.fingerprint().to_hex(),
                path.display()
            ),
            Scope::Prefix(p) => println!(
                "Added key {} for prefix {p} at {}",
                c.cert.fingerprint().to_hex(),
                path.display()
            ),
        }
    }
    Ok(if declined > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads local key files; downloads URLs, and discovers the prefix's keys when none is given.
fn obtain(g: &GlobalArgs, scope: &Scope, keys: &[String]) -> anyhow::Result<Vec<Candidate>> {
    let relaxed = Relaxed {
        http: g.insecure.contains(Insecure::Http),
        tls: g.insecure.contains(Insecure::Tls),
    };
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    if keys.is_empty() {
        let Scope::Prefix(p) = scope else {
            bail!("--root needs a key file: appcctl trust --root KEYFILE");
        };
        sources.extend(download(p.as_str(), None, g, relaxed)?);
    }
    for k in keys {
        if k.starts_with("https://") || k.starts_with("http://") {
            sources.extend(download(scope.prefix_str(), Some(k), g, relaxed)?);
        } else {
            let path = PathBuf::from(k.strip_prefix("file://").unwrap_or(k));
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read key file {}", path.display()))?;
            sources.push((path.display().to_string(), bytes));
        }
    }
    let mut out = Vec::new();
    for (origin, bytes) in sources {
        for cert in key::parse_certs(&origin, &bytes)? {
            out.push(Candidate {
                origin: origin.clone(),
                cert,
            });
        }
    }
    Ok(out)
}

fn download(
    prefix: &str,
    url: Option<&str>,
    g: &GlobalArgs,
    relaxed: Relaxed,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let what = url.map_or_else(|| format!("the keys of prefix {prefix}"), str::to_owned);
    let keys = fetch::download_pubkeys(prefix, url, &g.config_dir, relaxed)
        .with_context(|| format!("cannot download {what}; download the key and give its file"))?;
    if keys.is_empty() {
        bail!("no keys found for prefix {prefix}; give a key file or URL");
    }
    Ok(keys.into_iter().map(|k| (k.url, k.key)).collect())
}

/// The review text, on stderr: stdout carries only results.
fn show(scope: &Scope, c: &Candidate) {
    let info = KeyInfo::of(&c.cert);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "Key from {}", printable(&c.origin));
    match scope {
        Scope::Root => {
            let _ = writeln!(err, "  Scope:       root (every image)");
        }
        Scope::Prefix(p) => {
            let _ = writeln!(err, "  Prefix:      {p}");
        }
    }
    let _ = writeln!(
        err,
        "  Fingerprint: {}",
        c.cert.fingerprint().to_spaced_hex()
    );
    for uid in &info.user_ids {
        let _ = writeln!(err, "  User ID:     {}", printable(uid));
    }
    let _ = writeln!(
        err,
        "  Expires:     {}",
        info.expires.map_or("never".to_owned(), key::rfc3339)
    );
}

fn confirm(scope: &Scope) -> anyhow::Result<bool> {
    let what = match scope {
        Scope::Root => "all images (root)".to_owned(),
        Scope::Prefix(p) => p.to_string(),
    };
    eprint!("Trust this key for {what}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer from stdin")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn list(store: &TrustStore, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let keys = store.list()?;
    if a.format == Format::Json {
        let out: Vec<serde_json::Value> = keys.iter().map(key_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let (fingerprint, uids, expires, state) = describe(k);
            vec![
                match &k.scope {
                    Scope::Root => "(root)".to_owned(),
                    Scope::Prefix(p) => p.to_string(),
                },
                fingerprint,
                printable(&uids.join(", ")),
                k.source.as_str().to_owned(),
                expires.unwrap_or_else(|| "never".into()),
                printable(&state),
            ]
        })
        .collect();
    let header = [
        "PREFIX",
        "FINGERPRINT",
        "USER IDS",
        "SOURCE",
        "EXPIRES",
        "STATE",
    ];
    let header: &[&str] = if a.no_legend { &[] } else { &header };
    print_table(header, &rows);
    Ok(ExitCode::SUCCESS)
}

/// Fingerprint, user IDs, expiry and state of a key file (the file name and the parse error
/// for a file that is not a key).
fn describe(k: &KeyFile) -> (String, Vec<String>, Option<String>, String) {
    match &k.cert {
        Ok(cert) => {
            let info = KeyInfo::of(cert);
            (
                info.fingerprint,
                info.user_ids,
                info.expires.map(key::rfc3339),
                info.state,
            )
        }
        Err(reason) => (
            k.file_name.clone(),
            Vec::new(),
            None,
            format!("invalid: {reason}"),
        ),
    }
}

fn key_json(k: &KeyFile) -> serde_json::Value {
    let (fingerprint, user_ids, expires, state) = describe(k);
    serde_json::json!({
        "scope": match k.scope { Scope::Root => "root", Scope::Prefix(_) => "prefix" },
        "prefix": match &k.scope { Scope::Root => None, Scope::Prefix(p) => Some(p.as_str()) },
        "fingerprint": fingerprint,
        "user_ids": user_ids,
        "source": k.source.as_str(),
        "path": k.path,
        "expires": expires,
        "state": state,
    })
}

fn rm(store: &TrustStore, a: &RmArgs) -> anyhow::Result<ExitCode> {
    for fp in &a.fingerprints {
        for path in store.remove(fp)? {
            println!("Removed {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
