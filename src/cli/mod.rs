//! The `appcctl` command line: rkt's verbs and flags, so its users feel at home.
//!
//! Each verb group has its own file; `run` dispatches. Output goes through [`Output`] so that
//! every verb's result lands on stdout and every problem on stderr, one line each.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// appcctl: run App Container (appc) pods as systemd units.
#[derive(Debug, Parser)]
#[command(name = "appcctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory: image store and pods.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/appc",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Configuration directory: trusted keys, auth, pod files.
    #[arg(long, global = true, default_value = "/etc/appc", value_name = "DIR")]
    pub config_dir: PathBuf,

    /// Print diagnostics to stderr.
    #[arg(long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check image manifests and pod manifests against the appc spec (like `actool validate`).
    Validate(validate::ValidateArgs),
}

/// Exit status when appcctl itself fails, as rkt did (a pod's own status passes through as is).
pub const EXIT_INTERNAL: u8 = 254;

impl Cli {
    /// Runs the parsed command; the returned code is the process exit status.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Validate(args) => validate::run(&args),
        }
    }
}
