//! `appcctl fetch IMAGE...`: put images into the store and print their IDs (as `rkt fetch`).
//! Images are names (meta discovery), https:// URLs, paths or file:// URLs, or IDs already in
//! the store; see `crate::fetch` for the order of checks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{GlobalArgs, Insecure};
use crate::fetch::{FetchConfig, Fetcher, PullPolicy, Relaxed, VENDOR_DIR};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Images: name[:version][,label=value] (discovery), https:// URL, path or file:// URL of
    /// an .aci, or an image ID in the store.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,

    /// Refuse images that expand to more than this many bytes (guards against decompression
    /// bombs); suffixes K, M, G, T (powers of 1024) are accepted.
    #[arg(long, default_value = "64G", value_parser = parse_size)]
    pub max_size: u64,

    /// When the store's copy will do: new (use it if present), update (ask the server; ETag and
    /// max-age avoid downloading again), never (store only).
    #[arg(long, default_value = "update", value_name = "POLICY")]
    pub pull_policy: PullPolicy,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (a number with an optional K, M, G or T)"))
}

pub fn run(g: &GlobalArgs, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&g.dir)?;
    let mut cfg = fetch_config(g, args.pull_policy);
    cfg.max_size = args.max_size;
    let fetcher = Fetcher::new(cfg)?;
    for image in &args.images {
        let fetched = fetcher.fetch(&store, image)?;
        for w in &fetched.warnings {
            eprintln!("warning: {}", super::printable(w));
        }
        println!("{}", fetched.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// The fetch settings of the global flags (`--config-dir`, `--insecure-options`); `run` uses
/// them too, with its own default policy.
pub(crate) fn fetch_config(g: &GlobalArgs, pull_policy: PullPolicy) -> FetchConfig {
    FetchConfig {
        config_dir: g.config_dir.clone(),
        vendor_dir: PathBuf::from(VENDOR_DIR),
        relaxed: Relaxed {
            http: g.insecure.contains(Insecure::Http),
            tls: g.insecure.contains(Insecure::Tls),
        },
        allow_unsigned: g.insecure.contains(Insecure::Image),
        pull_policy,
        ..FetchConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
