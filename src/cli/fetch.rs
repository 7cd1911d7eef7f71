//! `appcctl fetch IMAGE...`: put images into the store and print their IDs (as `rkt fetch`).
//! This version imports local archives (`./x.aci`, `/path/x.aci`, `file:///path/x.aci`);
//! discovery and HTTPS come with the fetch/trust work.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{GlobalArgs, Insecure};
use crate::store::{ImportOptions, Store, import_image};

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Images: a path to an .aci file or a file:// URL.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,

    /// Refuse images that expand to more than this many bytes (guards against decompression
    /// bombs); suffixes K, M, G, T (powers of 1024) are accepted.
    #[arg(long, default_value = "64G", value_parser = parse_size)]
    pub max_size: u64,
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
    for image in &args.images {
        let path = local_path(image)?;
        check_signature(&path, g.insecure.contains(Insecure::Image))?;
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(len, &path);
        let opts = ImportOptions {
            max_size: args.max_size,
            source: Some(path.display().to_string()),
        };
        let outcome = import_image(&store, bar.wrap_read(file), &opts)
            .with_context(|| format!("{}", path.display()))?;
        bar.finish_and_clear();
        for w in &outcome.warnings {
            eprintln!("warning: {}", super::printable(w));
        }
        println!("{}", outcome.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// Maps an image argument to a local file, or says which kind of image is not supported yet.
/// Also used by `appcctl run` (`pod::compose`) for its `.aci` arguments.
pub(crate) fn local_path(image: &str) -> anyhow::Result<PathBuf> {
    if let Some(rest) = image.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if image.starts_with("https://") || image.starts_with("http://") {
        bail!("{image}: remote fetching is not available yet; download it and fetch the file");
    }
    let path = PathBuf::from(image);
    if path.exists() || image.contains('/') || image.ends_with(".aci") {
        return Ok(path);
    }
    bail!(
        "{image}: image discovery is not available yet; give a path to an .aci file (./{image}.aci)"
    )
}

/// Signatures are checked by the trust store; until it exists only `--insecure-options=image`
/// lets an image in, so nothing unverified is ever imported silently. `allow_unsigned` is
/// `--insecure-options=image`. Also used by `appcctl run` (`pod::compose`).
pub(crate) fn check_signature(path: &Path, allow_unsigned: bool) -> anyhow::Result<()> {
    if allow_unsigned {
        eprintln!(
            "warning: {}: signature not verified (--insecure-options=image)",
            path.display()
        );
        return Ok(());
    }
    let asc = PathBuf::from(format!("{}.asc", path.display()));
    if asc.exists() {
        bail!(
            "{}: signature verification is not available yet; use --insecure-options=image to import without verifying {}",
            path.display(),
            asc.display()
        );
    }
    bail!(
        "{}: image is not signed (no {} next to it); use --insecure-options=image to import it anyway",
        path.display(),
        asc.display()
    )
}

fn progress_bar(len: u64, path: &Path) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
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
