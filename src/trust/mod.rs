//! Image signatures and the trust store (spec/discovery.md "Validation", rkt's `trust`).
//!
//! Skeleton: the API the fetcher calls. The trust work fills it in with sequoia-openpgp.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::schema::AcIdentifier;

/// Trusted keys: `<config>/trustedkeys/{prefix.d/<prefix>,root.d}/<fingerprint>` and the same
/// tree under the vendor directory (`/usr/lib/appc/trustedkeys`).
#[derive(Debug, Clone)]
pub struct TrustStore {
    pub config_dir: PathBuf,
    pub vendor_dir: PathBuf,
}

/// Who signed an image, once the signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signing key's fingerprint (hex, upper case).
    pub fingerprint: String,
    /// The prefix the key is trusted for (`""` for a root key).
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("signature verification is not built yet: use --insecure-options=image")]
    NotImplemented,
}

impl TrustStore {
    /// The store under the configuration directory (`--config-dir`, default `/etc/appc`) and
    /// the vendor directory (`/usr/lib/appc`).
    pub fn open(config_dir: &Path, vendor_dir: &Path) -> Result<Self, TrustError> {
        Ok(TrustStore {
            config_dir: config_dir.to_owned(),
            vendor_dir: vendor_dir.to_owned(),
        })
    }

    /// Verifies the detached ASCII-armored `signature` over `image` (the downloaded file as
    /// is) with a key trusted for `name`.
    pub fn verify(
        &self,
        name: &AcIdentifier,
        image: &mut dyn Read,
        signature: &mut dyn Read,
    ) -> Result<Verified, TrustError> {
        let _ = (name, image, signature);
        Err(TrustError::NotImplemented)
    }
}
