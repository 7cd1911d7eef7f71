//! `appcctl`: the appc-pod command line. Parses flags, runs the verb, maps failures to rkt's exit
//! convention (254 for appcctl's own errors) with a one-line message.

use std::process::ExitCode;

use appc_pod::cli::{Cli, EXIT_INTERNAL};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("appcctl: {e:#}");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}
