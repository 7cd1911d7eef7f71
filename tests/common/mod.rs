//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;

/// The project's `shared/` directory (spec test data from appc/spec), beside the repository.
/// `APPC_SHARED_DIR` overrides the location.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("APPC_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.join("appc").is_dir().then_some(dir)
}

/// Skips a test out loud, or fails it when `APPC_TEST_NO_SKIP=1` (CI): a skip is never a silent
/// pass (tests/README.md).
pub fn skip(reason: &str) {
    if std::env::var("APPC_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("cannot run, and APPC_TEST_NO_SKIP=1 forbids skipping: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// The spec's test data directory `shared/appc/<sub>`, or a skip.
pub fn appc_data(sub: &str) -> Option<PathBuf> {
    match shared_dir() {
        Some(d) => Some(d.join("appc").join(sub)),
        None => {
            skip("shared/appc test data not found (set APPC_SHARED_DIR)");
            None
        }
    }
}
