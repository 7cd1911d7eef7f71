//! `appcctl validate FILE...`: image and pod manifests (and, with the image store, `.aci` files).
//!
//! Like `actool validate`: exit 0 when every file is valid, 1 with one line per problem otherwise.
//! Unlike actool, every problem of a file is reported, not only the first.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::aci::compress::sniff;
use crate::aci::validate::validate_archive;
use crate::schema::{Manifest, PodManifest};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Treat warnings (input accepted under the lenient reading policy) as problems.
    #[arg(long)]
    pub strict: bool,

    /// Do not print warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut all_valid = true;
    for file in &args.files {
        all_valid &= validate_file(file, args);
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn open_input(path: &Path) -> std::io::Result<BufReader<Box<dyn Read>>> {
    let inner: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    Ok(BufReader::with_capacity(64 * 1024, inner))
}

/// Checks one file (an image archive, told by its magic bytes, or a manifest), printing its
/// verdict; true when valid.
fn validate_file(path: &Path, args: &ValidateArgs) -> bool {
    let shown = path.display();
    let read = open_input(path).and_then(|mut input| {
        let is_archive = sniff(input.fill_buf()?).is_some();
        Ok((input, is_archive))
    });
    let (mut input, is_archive) = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return false;
        }
    };
    if is_archive {
        return validate_archive_file(path, input, args);
    }
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        eprintln!("{shown}: cannot read: {e}");
        return false;
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        eprintln!("{shown}: neither an image archive nor a UTF-8 JSON manifest");
        return false;
    };
    match Manifest::parse(text) {
        Ok(decoded) => {
            let warned = !decoded.warnings.is_empty();
            if !args.quiet || args.strict {
                for w in &decoded.warnings {
                    eprintln!("{shown}: warning: {w}");
                }
            }
            if args.strict && warned {
                eprintln!(
                    "{shown}: invalid under --strict ({} warnings)",
                    decoded.warnings.len()
                );
                return false;
            }
            println!("{shown}: valid {}", describe(&decoded.value));
            true
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{shown}: {e}");
            }
            false
        }
    }
}

fn validate_archive_file(path: &Path, input: impl Read, args: &ValidateArgs) -> bool {
    let shown = path.display();
    let mut problems = Vec::new();
    if path != Path::new("-") && path.extension().is_none_or(|e| e != "aci") {
        problems.push("an image file name must end in .aci (A2)".to_string());
    }
    match (validate_archive(input), problems.is_empty()) {
        (Ok(report), true) => {
            if !args.quiet || args.strict {
                for w in &report.warnings {
                    eprintln!("{shown}: warning: manifest: {w}");
                }
            }
            if args.strict && !report.warnings.is_empty() {
                eprintln!(
                    "{shown}: invalid under --strict ({} warnings)",
                    report.warnings.len()
                );
                return false;
            }
            let m = &report.manifest;
            println!(
                "{shown}: valid image {} ({}, {} entries)",
                m.name,
                report.compression.name(),
                report.entries
            );
            true
        }
        (result, _) => {
            problems.extend(result.err().unwrap_or_default());
            for p in &problems {
                eprintln!("{shown}: {}", super::printable(p));
            }
            false
        }
    }
}

fn describe(manifest: &Manifest) -> String {
    match manifest {
        Manifest::Image(m) => format!("ImageManifest {}", m.name),
        Manifest::Pod(m) => describe_pod(m),
    }
}

fn describe_pod(m: &PodManifest) -> String {
    let unresolved: Vec<&str> = m.unresolved_apps().map(|a| a.name.as_str()).collect();
    if unresolved.is_empty() {
        format!("PodManifest ({} apps)", m.apps.len())
    } else {
        format!(
            "PodManifest template ({} apps; resolved at run time: {})",
            m.apps.len(),
            unresolved.join(", ")
        )
    }
}
