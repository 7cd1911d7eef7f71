//! appc-init: the pod's PID 1, started by `appcctl run` from a sealed memfd (see
//! `appc_pod::exec::init`). Not meant to be run by hand.

use std::process::ExitCode;

use appc_pod::exec::init::{self, InitArgs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = InitArgs::parse(&args).and_then(init::main);
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(254)),
        Err(e) => {
            eprintln!("appc-init: {e}");
            ExitCode::from(254)
        }
    }
}
