//! `appcctl`: the appc-pod command line. Parses flags, runs the verb, maps failures to rkt's exit
//! convention (254 for appcctl's own errors) with a one-line message.

use std::process::ExitCode;

use appc_pod::cli::{Cli, EXIT_INTERNAL, printable};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            // Once, at the boundary (STYLE.md rule 11): stderr and, under systemd, the journal.
            tracing::error!("{}", one_line(&e));
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

/// The error and its causes on one line. Our error types already print their source inside
/// their own message, so a cause whose text is already there is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    printable(&line.replace('\n', "; "))
}
