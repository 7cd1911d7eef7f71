//! `appcctl image build DIR OUT.aci`: an image layout to an image archive (like `actool build`,
//! but reproducible: the same DIR always gives the same image ID; see `aci::build`).
//!
//! stdout gets the image ID and nothing else, so scripts can capture it; warnings go to stderr
//! as `warning: ...`, and a spinner too when stderr is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::aci::build::{BuildOptions, build_image};
use crate::aci::compress::Compression;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Image layout: a `manifest` file and a `rootfs` directory.
    /// (Not named `dir`: that is the global `--dir`, and clap would let one overwrite the other.)
    #[arg(value_name = "DIR")]
    pub layout: PathBuf,

    /// Image file to write; its name must end in `.aci`.
    #[arg(value_name = "OUT.aci")]
    pub out: PathBuf,

    /// Compression of the image file.
    #[arg(long, value_enum, value_name = "CODEC", default_value_t = Compression::Gzip)]
    pub compression: Compression,

    /// Same as `--compression none` (actool's flag).
    #[arg(long, conflicts_with = "compression")]
    pub no_compression: bool,

    /// Replace OUT.aci if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let opts = BuildOptions {
        compression: if args.no_compression {
            Compression::None
        } else {
            args.compression
        },
        level: None,
        overwrite: args.overwrite,
        progress: std::io::stderr().is_terminal(),
    };
    let report = build_image(&args.layout, &args.out, &opts)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}", report.image_id);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BuildArgs,
    }

    fn parse(argv: &[&str]) -> Result<BuildArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("build").chain(argv.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn flags() {
        let a = parse(&["dir", "out.aci"]).expect("parse");
        assert_eq!(a.compression, Compression::Gzip);
        assert!(!a.overwrite && !a.no_compression);
        for c in ["gzip", "bzip2", "xz", "zstd", "none"] {
            let a = parse(&["--compression", c, "dir", "out.aci"]).expect("parse");
            assert_eq!(a.compression.name(), c);
        }
        assert!(parse(&["--compression", "lz4", "dir", "out.aci"]).is_err());
        assert!(parse(&["--compression", "xz", "--no-compression", "d", "o.aci"]).is_err());
        assert!(
            parse(&["--overwrite", "dir", "out.aci"])
                .expect("parse")
                .overwrite
        );
        assert!(parse(&["dir"]).is_err());
    }
}
