//! `appcctl validate FILE...`: image and pod manifests (and, with the image store, `.aci` files).
//!
//! Like `actool validate`: exit 0 when every file is valid, 1 with one line per problem otherwise.
//! Unlike actool, every problem of a file is reported, not only the first.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

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

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// Checks one file, printing its verdict; true when valid.
fn validate_file(path: &Path, args: &ValidateArgs) -> bool {
    let shown = path.display();
    let bytes = match read_input(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return false;
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        eprintln!(
            "{shown}: not a UTF-8 JSON manifest (image archives are checked once the image store is in place)"
        );
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
