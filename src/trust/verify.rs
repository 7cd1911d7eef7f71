//! Detached signature verification with sequoia's streaming `DetachedVerifier`
//! (spec/aci.md "Image Signing", A8–A10: an ASCII-armored detached OpenPGP signature over the
//! `.aci` file as distributed; binary signatures are accepted too).
//!
//! Rule for time (what `fetch` can rely on): a signature counts only when
//! - sequoia accepts it under `StandardPolicy`: the certificate and the signing (sub)key were
//!   bound, alive, unrevoked and signing-capable **at the signature's creation time**, the
//!   signature is not expired and not created in the future (beyond sequoia's clock-skew
//!   tolerance), and its algorithms are not rejected by the policy; and
//! - the certificate and the signing key are also alive and unrevoked **now**.
//!
//! The second check is ours. An expired key is retired: its signatures no longer admit images,
//! even ones made while it was valid, because a signature's creation time is chosen by whoever
//! holds the key, and a key that leaks after it expired could otherwise sign with a back-dated
//! time. Any revocation (hard or soft) refuses the key from then on.

use std::io::Read;
use std::time::SystemTime;

use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::parse::stream::{
    DetachedVerifierBuilder, GoodChecksum, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use sequoia_openpgp::policy::{Policy, StandardPolicy};
use sequoia_openpgp::{Cert, KeyHandle};

use super::key::{self, Unusable};
use super::keystore::Scope;
use super::{TrustError, TrustStore, Verified};

/// A certificate trusted for the image name being verified, with the most specific scope that
/// trusts it.
#[derive(Debug)]
pub(super) struct Trusted {
    pub cert: Cert,
    pub scope: Scope,
}

/// Verifies the detached signature `sig` over `image` (read to its end) for image `name`
/// against the `trusted` certificates. `store` is only used to explain an untrusted signer.
pub(super) fn run<R: Read + Send + Sync>(
    store: &TrustStore,
    name: &str,
    trusted: &[Trusted],
    sig: &[u8],
    image: R,
) -> Result<Verified, TrustError> {
    let policy = StandardPolicy::new();
    let now = SystemTime::now();
    let malformed = |e: anyhow::Error| TrustError::MalformedSignature {
        name: name.to_owned(),
        reason: format!("{e:#}"),
    };
    let helper = Helper {
        store,
        name,
        trusted,
        policy: &policy,
        now,
        verdict: None,
    };
    // Parses the signature packets (armored or binary) before any image byte is read.
    let mut verifier = DetachedVerifierBuilder::from_bytes(sig)
        .map_err(malformed)?
        .with_policy(&policy, now, helper)
        .map_err(malformed)?;
    // `check` always returns Ok and leaves its verdict in the helper, so an error here is the
    // image failing to read (or the signature stream failing to parse).
    if let Err(e) = verifier.verify_reader(image) {
        return Err(match e.downcast::<std::io::Error>() {
            Ok(source) => TrustError::ReadImage {
                name: name.to_owned(),
                source,
            },
            Err(e) => malformed(e),
        });
    }
    verifier
        .into_helper()
        .verdict
        .unwrap_or_else(|| Err(malformed(anyhow::anyhow!("it holds no signature"))))
}

struct Helper<'a> {
    store: &'a TrustStore,
    name: &'a str,
    trusted: &'a [Trusted],
    policy: &'a dyn Policy,
    now: SystemTime,
    verdict: Option<Result<Verified, TrustError>>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> sequoia_openpgp::Result<Vec<Cert>> {
        // Only keys trusted for this name take part: a signature by any other key is a
        // MissingKey result, however valid it is.
        Ok(self.trusted.iter().map(|t| t.cert.clone()).collect())
    }

    fn check(&mut self, structure: MessageStructure) -> sequoia_openpgp::Result<()> {
        self.verdict = Some(self.judge(structure));
        Ok(())
    }
}

impl Helper<'_> {
    /// The first signature that holds up wins; otherwise the most telling refusal.
    fn judge(&self, structure: MessageStructure) -> Result<Verified, TrustError> {
        let mut best: Option<TrustError> = None;
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                let refusal = match result {
                    Ok(good) => match self.still_valid(&good) {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    },
                    Err(e) => self.refusal(e),
                };
                if best.as_ref().is_none_or(|b| rank(&refusal) < rank(b)) {
                    best = Some(refusal);
                }
            }
        }
        Err(best.unwrap_or_else(|| TrustError::MalformedSignature {
            name: self.name.to_owned(),
            reason: "it holds no signature".into(),
        }))
    }

    /// Sequoia vouched for the signature at its creation time; the key must still be good now.
    fn still_valid(&self, good: &GoodChecksum) -> Result<Verified, TrustError> {
        let cert = good.ka.cert();
        let signer = good.ka.key().fingerprint();
        key::key_usable(cert, &signer, self.policy, self.now)
            .map_err(|why| self.unusable(cert, why, "as of now".into()))?;
        let scope = self
            .trusted
            .iter()
            .filter(|t| t.cert.fingerprint() == cert.fingerprint())
            .map(|t| t.scope.clone())
            .max_by_key(|s| s.prefix_str().len())
            .unwrap_or(Scope::Root);
        Ok(Verified {
            fingerprint: cert.fingerprint().to_hex(),
            prefix: scope.prefix_str().to_owned(),
            user_ids: key::KeyInfo::of(cert).user_ids,
        })
    }

    fn refusal(&self, e: VerificationError) -> TrustError {
        let name = self.name.to_owned();
        match e {
            VerificationError::MissingKey { sig } => self.untrusted(&sig.get_issuers()),
            VerificationError::UnboundKey { cert, error, .. } => TrustError::KeyUnusable {
                name,
                fingerprint: cert.fingerprint().to_hex(),
                reason: format!("it was not valid when the image was signed: {error:#}"),
            },
            VerificationError::BadKey { sig, ka, error } => {
                let at = sig.signature_creation_time().unwrap_or(self.now);
                let why = key::key_usable(ka.cert(), &ka.key().fingerprint(), self.policy, at)
                    .err()
                    .unwrap_or_else(|| Unusable::Invalid(format!("{error:#}")));
                self.unusable(
                    ka.cert(),
                    why,
                    format!("as of the signing time, {}", key::rfc3339(at)),
                )
            }
            VerificationError::BadSignature { sig, ka, error } => {
                let fingerprint = ka.cert().fingerprint().to_hex();
                if let Err(e) = sig.signature_alive(self.now, None::<std::time::Duration>) {
                    TrustError::SignatureNotAlive {
                        name,
                        fingerprint,
                        reason: format!("{e:#}"),
                    }
                } else if let Err(e) = self.policy.signature(sig, Default::default()) {
                    TrustError::KeyUnusable {
                        name,
                        fingerprint,
                        reason: format!("the signature is rejected by the policy: {e:#}"),
                    }
                } else {
                    TrustError::BadSignature {
                        name,
                        fingerprint,
                        reason: format!("{error:#}"),
                    }
                }
            }
            VerificationError::MalformedSignature { error, .. } => TrustError::MalformedSignature {
                name,
                reason: format!("{error:#}"),
            },
            VerificationError::UnknownSignature { sig } => TrustError::MalformedSignature {
                name,
                reason: format!("{:#}", sig.error()),
            },
            other => TrustError::MalformedSignature {
                name,
                reason: other.to_string(),
            },
        }
    }

    fn unusable(&self, cert: &Cert, why: Unusable, at: String) -> TrustError {
        let name = self.name.to_owned();
        let fingerprint = cert.fingerprint().to_hex();
        match why {
            Unusable::Revoked(reason) => TrustError::KeyRevoked {
                name,
                fingerprint,
                reason,
            },
            Unusable::Expired(state) => TrustError::KeyExpired {
                name,
                fingerprint,
                state,
                at,
            },
            other => TrustError::KeyUnusable {
                name,
                fingerprint,
                reason: format!("{other} ({at})"),
            },
        }
    }

    /// A signer no key trusted for this name matches; says where it is trusted, if anywhere.
    fn untrusted(&self, issuers: &[KeyHandle]) -> TrustError {
        let name = self.name.to_owned();
        if issuers.is_empty() {
            return TrustError::UntrustedSigner {
                name,
                signer: "an unnamed key (the signature has no issuer)".into(),
                hint: String::new(),
            };
        }
        // A signature usually names its issuer twice, by fingerprint and by key ID.
        let fingerprints: Vec<&KeyHandle> = issuers
            .iter()
            .filter(|h| matches!(h, KeyHandle::Fingerprint(_)))
            .collect();
        let shown = if fingerprints.is_empty() {
            issuers.iter().collect()
        } else {
            fingerprints
        };
        let hex: Vec<String> = shown.iter().map(|h| h.to_hex()).collect();
        let mut signer = format!("key {}", hex.join(", "));
        let mut scopes = Vec::new();
        // Best effort: the explanation must not turn one refusal into another error.
        for k in self.store.list().unwrap_or_default() {
            let Ok(cert) = &k.cert else { continue };
            if cert.keys().key_handles(issuers.iter()).next().is_some() {
                signer = format!("key {}", cert.fingerprint().to_hex());
                scopes.push(match &k.scope {
                    Scope::Root => "every image".to_owned(),
                    Scope::Prefix(p) => p.to_string(),
                });
            }
        }
        let hint = if scopes.is_empty() {
            " and is not in the trust store".to_owned()
        } else {
            format!(" (it is trusted for {} only)", scopes.join(", "))
        };
        TrustError::UntrustedSigner { name, signer, hint }
    }
}

/// Which refusal to report when no signature holds up: problems with a trusted key first.
fn rank(e: &TrustError) -> u8 {
    match e {
        TrustError::KeyRevoked { .. } => 0,
        TrustError::BadSignature { .. } => 1,
        TrustError::KeyExpired { .. } => 2,
        TrustError::SignatureNotAlive { .. } => 3,
        TrustError::KeyUnusable { .. } => 4,
        TrustError::UntrustedSigner { .. } => 5,
        _ => 6,
    }
}
