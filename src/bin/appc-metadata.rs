//! appc-metadata: the appc metadata service (spec/ace.md), socket-activated by
//! `appc-metadata.socket` or, without systemd, listening by itself. See `appc_pod::metadata`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use appc_pod::metadata::{self, activation, server};
use clap::Parser;

/// The appc metadata service: pod and app metadata and pod identity for running pods.
///
/// Started by appc-metadata.socket, it uses the sockets systemd passes (LISTEN_FDS) and ignores
/// --socket and --listen; started by hand, it binds them itself.
#[derive(Debug, Parser)]
#[command(name = "appc-metadata", version)]
struct Args {
    /// Where the HMAC key and the registrations are kept.
    #[arg(long, value_name = "DIR", default_value = metadata::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The registration socket (standalone start only).
    #[arg(long, value_name = "PATH", default_value = metadata::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Address for the pods' endpoints, repeatable (standalone start only).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:18112")]
    listen: Vec<SocketAddr>,
    /// Worker threads answering requests.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The errors name their cause themselves (no `{:#}`: it would repeat it).
            eprintln!("appc-metadata: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let (listeners, activated) = match activation::listeners_from_env()? {
        Some(l) => (l, true),
        None => (server::bind_standalone(&args.socket, &args.listen)?, false),
    };
    let service = server::open_service(&args.state_dir)?;
    let pods: Vec<String> = server::public_addresses(&listeners)
        .iter()
        .map(ToString::to_string)
        .collect();
    // Tests read the bound address from this line (a port of 0 picks a free one).
    eprintln!(
        "appc-metadata: serving pods on {} ({}), {} pods registered",
        pods.join(" "),
        if activated {
            "socket-activated"
        } else {
            "standalone"
        },
        service.registry.list().len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.threads))
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(server::serve(service, listeners, server::termination()))?;
    if !activated {
        let _ = std::fs::remove_file(&args.socket); // best effort: a stale socket is replaced anyway
    }
    Ok(())
}
