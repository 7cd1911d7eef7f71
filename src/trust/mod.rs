//! Image signatures and the trust store (spec/aci.md "Image Signing" A8–A12,
//! spec/discovery.md "Validation", rkt's `trust`; reference/rkt.md §2.13).
//!
//! - [`keystore`]: the key files, `<dir>/trustedkeys/prefix.d/<prefix>/<FINGERPRINT>` and
//!   `<dir>/trustedkeys/root.d/<FINGERPRINT>`, under the configuration directory
//!   (`--config-dir`, `/etc/appc`) and the vendor directory (`/usr/lib/appc`, or
//!   `$APPC_VENDOR_DIR`); keys in both count. A prefix key trusts the names at and below its
//!   prefix on whole path components; a root key trusts every name.
//! - `verify`: the detached-signature check, streamed (images can be GiBs); its module docs
//!   state the rule for key expiry and revocation.
//! - [`key`]: what a key says about itself, and what may be imported.

pub mod key;
pub mod keystore;
mod verify;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sequoia_openpgp::Cert;
use sequoia_openpgp::Fingerprint;

pub use key::KeyInfo;
pub use keystore::{KeyFile, Prefix, Scope, Source};

use crate::schema::AcIdentifier;
use verify::Trusted;

/// Where distributions ship trusted keys (rkt: `/usr/lib/rkt`).
pub const VENDOR_DIR: &str = "/usr/lib/appc";

/// Signatures larger than this are not signatures (a detached one is a few hundred bytes).
const MAX_SIGNATURE: u64 = 1 << 20;

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
    /// The signing certificate's (primary key) fingerprint: hex, upper case, no spaces.
    pub fingerprint: String,
    /// The most specific prefix the key is trusted for (`""` for a root key).
    pub prefix: String,
    /// The key's user IDs, as it claims them.
    pub user_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "image {name}: no key is trusted for this name; trust its publisher's key with `appcctl trust --prefix {name}` (or a parent prefix), or skip the check with --insecure-options=image"
    )]
    NoTrustedKey { name: String },
    #[error(
        "image {name}: signed by {signer}, which is not trusted for this name{hint}; if you trust it, add it with `appcctl trust --prefix {name} KEYFILE`"
    )]
    UntrustedSigner {
        name: String,
        signer: String,
        hint: String,
    },
    #[error(
        "image {name}: does not match its signature by key {fingerprint} ({reason}): the image was modified or corrupted; download it again from its publisher"
    )]
    BadSignature {
        name: String,
        fingerprint: String,
        reason: String,
    },
    #[error(
        "image {name}: the signature by key {fingerprint} is not valid now ({reason}); ask the publisher to sign the image again"
    )]
    SignatureNotAlive {
        name: String,
        fingerprint: String,
        reason: String,
    },
    #[error(
        "image {name}: signing key {fingerprint} {state} ({at}), and a key must be valid both when the image was signed and now; get the image signed with the publisher's current key and trust that key with `appcctl trust --prefix {name}`"
    )]
    KeyExpired {
        name: String,
        fingerprint: String,
        state: String,
        at: String,
    },
    #[error(
        "image {name}: signing key {fingerprint} is revoked ({reason}); do not use images it signed, and stop trusting it with `appcctl trust rm {fingerprint}`"
    )]
    KeyRevoked {
        name: String,
        fingerprint: String,
        reason: String,
    },
    #[error("image {name}: signing key {fingerprint} cannot vouch for it: {reason}")]
    KeyUnusable {
        name: String,
        fingerprint: String,
        reason: String,
    },
    #[error(
        "image {name}: the signature is not a detached OpenPGP signature ({reason}); download its .aci.asc again"
    )]
    MalformedSignature { name: String, reason: String },
    #[error("image {name}: cannot read the image to check its signature: {source}")]
    ReadImage { name: String, source: io::Error },
    #[error("image {name}: cannot read the signature: {source}")]
    ReadSignature { name: String, source: io::Error },
    #[error("image {name}: cannot check its signature: {reason}")]
    Internal { name: String, reason: String },
    #[error("image name {name:?} cannot be matched against trusted prefixes: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "{path}: not a usable OpenPGP public key ({reason}); remove the file, or replace it with the key (`appcctl trust`)"
    )]
    BadKeyFile { path: PathBuf, reason: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{prefix:?} is not a valid trust prefix: {reason} (expected an image name or a leading part of one, such as example.com/team)"
    )]
    InvalidPrefix { prefix: String, reason: String },
    #[error("{origin}: no OpenPGP public key in it ({reason})")]
    NotAKey { origin: String, reason: String },
    #[error(
        "{origin}: key {fingerprint} holds secret key material; give the public key only (`gpg --export KEYID` or `sq key delete --cert-file`)"
    )]
    SecretKey { origin: String, fingerprint: String },
    #[error("{origin}: refusing to trust key {fingerprint}: {reason}")]
    KeyRefused {
        origin: String,
        fingerprint: String,
        reason: String,
    },
    #[error("cannot store key {fingerprint}: {reason}")]
    Serialize { fingerprint: String, reason: String },
    #[error(
        "{fingerprint:?} is not a key fingerprint (40 or 64 hex digits, as `appcctl trust list` shows)"
    )]
    InvalidFingerprint { fingerprint: String },
    #[error("no trusted key {fingerprint} in {dir}; `appcctl trust list` shows the trusted keys")]
    UnknownKey { fingerprint: String, dir: PathBuf },
    #[error(
        "key {fingerprint} is a vendor key ({path}); appcctl only removes keys from the configuration directory: remove the file or its package instead"
    )]
    VendorKey { fingerprint: String, path: PathBuf },
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

    /// The vendor directory: `$APPC_VENDOR_DIR` when set (tests, relocated installs), else
    /// [`VENDOR_DIR`].
    pub fn default_vendor_dir() -> PathBuf {
        std::env::var_os("APPC_VENDOR_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(VENDOR_DIR))
    }

    fn bases(&self) -> [(Source, &Path); 2] {
        [
            (Source::Config, &self.config_dir),
            (Source::Vendor, &self.vendor_dir),
        ]
    }

    /// Verifies the detached ASCII-armored (or binary) `signature` over `image` (the
    /// downloaded file as is, read to its end and never held in memory) with a key trusted
    /// for `name`. The rule for expiry and revocation is in the `verify` module docs: the key
    /// must be valid both when the image was signed and now.
    pub fn verify(
        &self,
        name: &AcIdentifier,
        image: &mut dyn Read,
        signature: &mut dyn Read,
    ) -> Result<Verified, TrustError> {
        let sig = read_signature(name, signature)?;
        let trusted = self.trusted_for(name)?;
        // sequoia's streaming verifier wants a `Send + Sync` reader, which `&mut dyn Read` is
        // not: the verifier runs on a scoped thread reading a pipe this thread fills.
        let (pipe_r, mut pipe_w) = io::pipe().map_err(|source| TrustError::Internal {
            name: name.to_string(),
            reason: format!("cannot create a pipe: {source}"),
        })?;
        std::thread::scope(|s| {
            let worker = s.spawn(|| verify::run(self, name.as_str(), &trusted, &sig, pipe_r));
            let copied = pump(image, &mut pipe_w);
            drop(pipe_w); // EOF for the verifier
            let verdict = worker.join().unwrap_or_else(|_| {
                Err(TrustError::Internal {
                    name: name.to_string(),
                    reason: "the verifier thread panicked".into(),
                })
            });
            copied.map_err(|source| TrustError::ReadImage {
                name: name.to_string(),
                source,
            })?;
            verdict
        })
    }

    /// [`TrustStore::verify`] for a reader that is `Send + Sync` (a `File`): no extra thread.
    pub fn verify_reader<R: Read + Send + Sync>(
        &self,
        name: &AcIdentifier,
        image: R,
        signature: &mut dyn Read,
    ) -> Result<Verified, TrustError> {
        let sig = read_signature(name, signature)?;
        let trusted = self.trusted_for(name)?;
        verify::run(self, name.as_str(), &trusted, &sig, image)
    }

    /// The keys trusted for `name`: root keys and the keys of every ancestor prefix, from
    /// both directories, each once with its most specific scope.
    fn trusted_for(&self, name: &AcIdentifier) -> Result<Vec<Trusted>, TrustError> {
        let mut scopes = vec![Scope::Root];
        scopes.extend(Prefix::ancestors_of(name)?.into_iter().map(Scope::Prefix));
        let mut out: Vec<Trusted> = Vec::new();
        for (source, base) in self.bases() {
            for scope in &scopes {
                for k in keystore::keys_in(base, source, scope)? {
                    let cert = k.cert.map_err(|reason| TrustError::BadKeyFile {
                        path: k.path.clone(),
                        reason,
                    })?;
                    match out
                        .iter_mut()
                        .find(|t| t.cert.fingerprint() == cert.fingerprint())
                    {
                        // Keep the most specific scope, whichever tree it came from.
                        Some(t) if scope.prefix_str().len() > t.scope.prefix_str().len() => {
                            t.scope = scope.clone()
                        }
                        Some(_) => {}
                        None => out.push(Trusted {
                            cert,
                            scope: scope.clone(),
                        }),
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(TrustError::NoTrustedKey {
                name: name.to_string(),
            });
        }
        Ok(out)
    }

    /// Every key file, configuration directory first; unparsable files are listed with the
    /// reason in `cert`.
    pub fn list(&self) -> Result<Vec<KeyFile>, TrustError> {
        let mut out = Vec::new();
        for (source, base) in self.bases() {
            out.extend(keystore::all_keys(base, source)?);
        }
        Ok(out)
    }

    /// Stores `cert` in the configuration directory for `scope`, after the import checks
    /// (public only, valid, alive, unrevoked, can sign). Returns the file written.
    pub fn add(&self, scope: &Scope, cert: &Cert, origin: &str) -> Result<PathBuf, TrustError> {
        key::check_importable(origin, cert)?;
        keystore::write_key(&self.config_dir, scope, cert)
    }

    /// Removes the key `fingerprint` (any case, spaces allowed) from every scope of the
    /// configuration directory; returns the files removed.
    pub fn remove(&self, fingerprint: &str) -> Result<Vec<PathBuf>, TrustError> {
        let wanted = parse_fingerprint(fingerprint)?;
        let matches = |k: &KeyFile| {
            k.file_name.eq_ignore_ascii_case(&wanted)
                || k.cert
                    .as_ref()
                    .is_ok_and(|c| c.fingerprint().to_hex() == wanted)
        };
        let mut removed = Vec::new();
        for k in keystore::all_keys(&self.config_dir, Source::Config)? {
            if matches(&k) {
                keystore::remove_key(&self.config_dir, &k)?;
                removed.push(k.path);
            }
        }
        if !removed.is_empty() {
            return Ok(removed);
        }
        if let Some(k) = keystore::all_keys(&self.vendor_dir, Source::Vendor)?
            .into_iter()
            .find(|k| matches(k))
        {
            return Err(TrustError::VendorKey {
                fingerprint: wanted,
                path: k.path,
            });
        }
        Err(TrustError::UnknownKey {
            fingerprint: wanted,
            dir: self.config_dir.join(keystore::TRUSTED_KEYS),
        })
    }
}

/// Upper-case hex without spaces, as stored; refuses anything that is not a v4/v6 fingerprint.
fn parse_fingerprint(s: &str) -> Result<String, TrustError> {
    let hex: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let invalid = || TrustError::InvalidFingerprint {
        fingerprint: s.to_owned(),
    };
    if !(hex.len() == 40 || hex.len() == 64) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let fp: Fingerprint = hex.parse().map_err(|_| invalid())?;
    Ok(fp.to_hex())
}

fn read_signature(name: &AcIdentifier, signature: &mut dyn Read) -> Result<Vec<u8>, TrustError> {
    let mut sig = Vec::new();
    signature
        .take(MAX_SIGNATURE + 1)
        .read_to_end(&mut sig)
        .map_err(|source| TrustError::ReadSignature {
            name: name.to_string(),
            source,
        })?;
    if sig.len() as u64 > MAX_SIGNATURE {
        return Err(TrustError::MalformedSignature {
            name: name.to_string(),
            reason: "it is larger than 1 MiB".into(),
        });
    }
    Ok(sig)
}

/// Copies `image` into the verifier's pipe. A write failing means the verifier stopped early
/// (its verdict says why), so only read errors are errors.
fn pump(image: &mut dyn Read, pipe: &mut io::PipeWriter) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match image.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if pipe.write_all(&buf[..n]).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let fp = "0123 4567 89ab CDEF 0123  4567 89AB CDEF 0123 4567";
        assert_eq!(
            parse_fingerprint(fp).unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert!(parse_fingerprint("0123").is_err());
        assert!(parse_fingerprint("../../etc/passwd").is_err());
    }
}
