//! Downloads over HTTPS (reqwest + rustls): images, signatures and keys, with auth, retries,
//! caching and resume. Skeleton: the fetch work fills it in.

use std::path::Path;

/// A public key as downloaded, before anyone decided to trust it.
#[derive(Debug, Clone)]
pub struct PubkeyDownload {
    /// Where the key came from (shown to the user with its fingerprint).
    pub url: String,
    /// The key as served (ASCII-armored or binary OpenPGP).
    pub key: Vec<u8>,
}

/// How far downloads may relax the usual checks (`--insecure-options`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Relaxed {
    /// Plain http:// is allowed.
    pub http: bool,
    /// TLS certificates are not checked.
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading is not built yet")]
    NotImplemented,
}

/// Downloads the public keys for `prefix`: from `url` when given, else from every
/// `ac-discovery-pubkeys` location that meta discovery finds for the prefix.
/// `config_dir` holds `auth.d/`.
pub fn download_pubkeys(
    prefix: &str,
    url: Option<&str>,
    config_dir: &Path,
    relaxed: Relaxed,
) -> Result<Vec<PubkeyDownload>, FetchError> {
    let _ = (prefix, url, config_dir, relaxed);
    Err(FetchError::NotImplemented)
}
