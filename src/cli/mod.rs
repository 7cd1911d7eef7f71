//! The `appcctl` command line: rkt's verbs and flags, so its users feel at home.
//!
//! Each verb group has its own file; `Cli::run` dispatches. Results go to stdout, problems to
//! stderr, one line each; appcctl's own failures exit 254 (rkt's convention).

mod diag;
mod fetch;
mod image;
mod image_build;
mod logs;
mod output;
mod pods;
mod run;
pub mod run_args;
mod trust;

pub use output::printable;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// appcctl: run App Container (appc) pods as systemd units.
#[derive(Debug, Parser)]
#[command(name = "appcctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every verb takes, before or after it.
#[derive(Debug, Args)]
pub struct GlobalArgs {
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

    /// Checks to skip, comma-separated: none, http, image, tls, pubkey, all.
    #[arg(long = "insecure-options", global = true, value_name = "OPTIONS", default_value = "none", value_parser = InsecureOptions::parse)]
    pub insecure: InsecureOptions,

    /// Print diagnostics to stderr.
    #[arg(long, global = true)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and image archives against the appc spec (like `actool validate`).
    Validate(validate::ValidateArgs),
    /// Put images into the store and print their IDs.
    Fetch(fetch::FetchArgs),
    /// Build, list, inspect and remove stored images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Run a pod in the foreground: IMAGE [APP FLAGS] [-- ARGS] [--- IMAGE ...].
    Run(run_args::RunArgs),
    /// Create a pod without starting it; prints its uuid (start it with run-prepared).
    Prepare(run_args::RunArgs),
    /// Run a prepared pod in the foreground.
    RunPrepared(run::RunPreparedArgs),
    /// Stop running pods: SIGTERM, then SIGKILL after --timeout.
    Stop(run::StopArgs),
    /// Run a command (default /bin/sh) inside an app of a running pod.
    Enter(run::EnterArgs),
    /// List pods with their state, apps and exit code.
    List(pods::ListArgs),
    /// Show a pod's state, times, exit codes and isolator report.
    Status(pods::StatusArgs),
    /// Remove exited, prepared or garbage pods now.
    Rm(pods::RmArgs),
    /// Remove exited pods past the grace period and prepared pods never run.
    Gc(pods::GcArgs),
    /// Print a pod's manifest.
    CatManifest(pods::CatManifestArgs),
    /// Show a pod's app output from the journal, also after it exited.
    Logs(logs::LogsArgs),
    /// Trust keys to sign images (--prefix P or --root), or list / rm trusted keys.
    Trust(trust::TrustArgs),
}

/// The security checks `--insecure-options` can turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    /// Plain HTTP downloads.
    Http,
    /// Image signature verification.
    Image,
    /// TLS certificate checks.
    Tls,
    /// Fetching keys over HTTP(S) without review.
    Pubkey,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsecureOptions(u8);

impl InsecureOptions {
    fn bit(i: Insecure) -> u8 {
        1 << (i as u8)
    }

    pub fn contains(self, i: Insecure) -> bool {
        self.0 & Self::bit(i) != 0
    }

    fn parse(s: &str) -> Result<InsecureOptions, String> {
        let mut set = 0u8;
        for word in s.split(',').map(str::trim) {
            set |= match word {
                "none" | "" => 0,
                "http" => Self::bit(Insecure::Http),
                "image" => Self::bit(Insecure::Image),
                "tls" => Self::bit(Insecure::Tls),
                "pubkey" => Self::bit(Insecure::Pubkey),
                "all" => 0b1111,
                other => {
                    return Err(format!(
                        "{other:?} is not one of none, http, image, tls, pubkey, all"
                    ));
                }
            };
        }
        Ok(InsecureOptions(set))
    }
}

/// Exit status when appcctl itself fails, as rkt did (a pod's own status passes through as is).
pub const EXIT_INTERNAL: u8 = 254;

impl Cli {
    /// Runs the parsed command; the returned code is the process exit status.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        diag::init(self.global.debug);
        match &self.command {
            Command::Validate(args) => validate::run(args),
            Command::Fetch(args) => fetch::run(&self.global, args),
            Command::Image(cmd) => image::run(&self.global, cmd),
            Command::Run(a) => run::run(&self.global, a),
            Command::Prepare(a) => run::prepare(&self.global, a),
            Command::RunPrepared(a) => run::run_prepared(&self.global, a),
            Command::Stop(a) => run::stop(&self.global, a),
            Command::Enter(a) => run::enter(&self.global, a),
            Command::List(a) => pods::list(&self.global, a),
            Command::Status(a) => pods::status(&self.global, a),
            Command::Rm(a) => pods::rm(&self.global, a),
            Command::Gc(a) => pods::gc(&self.global, a),
            Command::CatManifest(a) => pods::cat_manifest(&self.global, a),
            Command::Logs(a) => logs::logs(&self.global, a),
            Command::Trust(a) => trust::run(&self.global, a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_options() {
        let o = InsecureOptions::parse("image,http").unwrap();
        assert!(
            o.contains(Insecure::Image) && o.contains(Insecure::Http) && !o.contains(Insecure::Tls)
        );
        assert!(
            InsecureOptions::parse("all")
                .unwrap()
                .contains(Insecure::Pubkey)
        );
        assert!(
            !InsecureOptions::parse("none")
                .unwrap()
                .contains(Insecure::Image)
        );
        assert!(InsecureOptions::parse("images").is_err());
    }
}
