//! MD6, the pod identity endpoints: HMAC-SHA512 with one key per service (so `verify` works for
//! every pod's signature, also after the signer exited), persisted so a restart keeps signatures
//! valid (rkt regenerated its key at every start, reference/rkt.md §2.8).
//!
//! The signed message is the raw 16-byte pod UUID followed by the content, as rkt did (the spec
//! leaves the layout open, appc-requirements.md §2.5.9); signatures are standard base64.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

use super::{MetadataError, io_err, persist};
use crate::schema::PodUuid;

/// The key file in the state directory.
pub const KEY_FILE: &str = "hmac.key";
/// 512 bits: the output size of SHA-512 (RFC 2104 recommends at least the output length).
const KEY_LEN: usize = 64;

/// The service's signing key.
pub struct Identity {
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { key: <secret> }")
    }
}

impl Identity {
    /// Reads `dir/hmac.key`, creating it (0600) on first use. Two services starting at once
    /// agree on one key: the file is created by a hard link, which never replaces.
    pub fn load_or_create(dir: &Path) -> Result<Identity, MetadataError> {
        let path = dir.join(KEY_FILE);
        if let Some(identity) = Self::load(&path)? {
            return Ok(identity);
        }
        let key = persist::random_bytes(KEY_LEN)?;
        if persist::create_atomic(dir, KEY_FILE, &key, 0o600)? {
            return Ok(Identity { key });
        }
        Self::load(&path)?.ok_or_else(|| MetadataError::Key {
            path,
            reason: "vanished while being created".into(),
        })
    }

    fn load(path: &Path) -> Result<Option<Identity>, MetadataError> {
        match std::fs::read(path) {
            Ok(key) if key.len() == KEY_LEN => Ok(Some(Identity { key })),
            Ok(key) => Err(MetadataError::Key {
                path: path.to_owned(),
                reason: format!("holds {} bytes, expected {KEY_LEN}", key.len()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    fn mac(&self, uuid: &PodUuid, content: &[u8]) -> Hmac<Sha512> {
        let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(uuid.as_bytes());
        mac.update(content);
        mac
    }

    /// base64(HMAC-SHA512(key, uuid ‖ content)).
    pub fn sign(&self, uuid: &PodUuid, content: &[u8]) -> String {
        STANDARD.encode(self.mac(uuid, content).finalize().into_bytes())
    }

    /// Whether `signature` (base64) is `uuid`'s signature of `content`; compared in constant
    /// time. A signature that is not base64 is simply invalid.
    pub fn verify(&self, uuid: &PodUuid, content: &[u8], signature: &str) -> bool {
        let Ok(raw) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        self.mac(uuid, content).verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_persists_and_signatures_verify_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let uuid = PodUuid::new_random();
        let sig = a.sign(&uuid, b"Old MacDonald Had A Farm");
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert!(b.verify(&uuid, b"Old MacDonald Had A Farm", &sig));
        assert!(!b.verify(&uuid, b"Old MacDonald Had A Farm!", &sig));
        assert!(!b.verify(&PodUuid::new_random(), b"Old MacDonald Had A Farm", &sig));
        assert!(!b.verify(&uuid, b"x", "not base64!"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_truncated_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = Identity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 5 bytes"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), b"short");
    }
}
