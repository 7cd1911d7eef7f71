//! What a certificate says about itself (for the review prompt and `trust list`) and whether it
//! may be imported: public only, valid under the standard policy, alive, not revoked, and able
//! to sign.

use std::time::SystemTime;

use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::cert::ValidCert;
use sequoia_openpgp::cert::amalgamation::ValidAmalgamation;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::{Policy, StandardPolicy};
use sequoia_openpgp::types::RevocationStatus;
use sequoia_openpgp::{Cert, Fingerprint};

use super::TrustError;

/// A certificate as shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Upper-case hex, no spaces: the file name in the store.
    pub fingerprint: String,
    /// User IDs as the key claims them (not verified by anyone).
    pub user_ids: Vec<String>,
    /// When the certificate expires, if it does.
    pub expires: Option<SystemTime>,
    /// `valid`, `expired`, `revoked`, `cannot sign` or `invalid: <why>`, as of now.
    pub state: String,
}

impl KeyInfo {
    pub fn of(cert: &Cert) -> KeyInfo {
        let policy = StandardPolicy::new();
        let now = SystemTime::now();
        let user_ids = cert
            .userids()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .collect();
        let (expires, state) = match cert.with_policy(&policy, now) {
            Err(e) => (None, format!("invalid: {e}")),
            Ok(vc) => (
                vc.primary_key().key_expiration_time(),
                match usable(cert, &policy, now) {
                    Ok(()) => "valid".to_owned(),
                    Err(Unusable::Revoked(_)) => "revoked".to_owned(),
                    Err(Unusable::Expired(_)) => "expired".to_owned(),
                    Err(Unusable::CannotSign) => "cannot sign".to_owned(),
                    Err(Unusable::Invalid(why)) => format!("invalid: {why}"),
                },
            ),
        };
        KeyInfo {
            fingerprint: cert.fingerprint().to_hex(),
            user_ids,
            expires,
            state,
        }
    }
}

/// Why a certificate cannot vouch for anything at a given time.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// Revoked, with the reason the revocation gives.
    Revoked(String),
    /// Not alive: `expired on <RFC 3339>`, or sequoia's words (`is not live: ...`).
    Expired(String),
    CannotSign,
    /// Not valid under the policy (weak algorithms, no binding signature).
    Invalid(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Revoked(why) => write!(f, "it is revoked ({why})"),
            Unusable::Expired(when) => write!(f, "it {when}"),
            Unusable::CannotSign => f.write_str("it has no valid signing key"),
            Unusable::Invalid(why) => write!(f, "it is not valid under the standard policy: {why}"),
        }
    }
}

/// Whether `cert` as a whole can sign at `t`: valid, not revoked, alive, with at least one
/// alive, unrevoked signing-capable key.
pub(crate) fn usable(cert: &Cert, policy: &dyn Policy, t: SystemTime) -> Result<(), Unusable> {
    let vc = valid_cert(cert, policy, t)?;
    if vc
        .keys()
        .for_signing()
        .alive()
        .revoked(false)
        .next()
        .is_none()
    {
        return Err(Unusable::CannotSign);
    }
    Ok(())
}

/// Whether the key `signer` of `cert` could sign at `t`: the certificate as in [`usable`], and
/// that very (sub)key bound, alive, unrevoked and signing-capable.
pub(crate) fn key_usable(
    cert: &Cert,
    signer: &Fingerprint,
    policy: &dyn Policy,
    t: SystemTime,
) -> Result<(), Unusable> {
    let vc = valid_cert(cert, policy, t)?;
    let Some(ka) = vc.keys().key_handle(signer.clone()).next() else {
        return Err(Unusable::Invalid(format!(
            "its key {signer} is not bound to it"
        )));
    };
    if let RevocationStatus::Revoked(sigs) = ka.revocation_status() {
        return Err(Unusable::Revoked(revocation_reason(&sigs)));
    }
    if let Err(e) = ka.alive() {
        return Err(Unusable::Expired(expiry_text(ka.key_expiration_time(), &e)));
    }
    if !ka.for_signing() {
        return Err(Unusable::CannotSign);
    }
    Ok(())
}

/// The certificate bound, unrevoked and alive at `t`.
fn valid_cert<'a>(
    cert: &'a Cert,
    policy: &'a dyn Policy,
    t: SystemTime,
) -> Result<ValidCert<'a>, Unusable> {
    let vc = cert
        .with_policy(policy, t)
        .map_err(|e| Unusable::Invalid(format!("{e:#}")))?;
    if let RevocationStatus::Revoked(sigs) = vc.revocation_status() {
        return Err(Unusable::Revoked(revocation_reason(&sigs)));
    }
    if let Err(e) = vc.alive() {
        return Err(Unusable::Expired(expiry_text(
            vc.primary_key().key_expiration_time(),
            &e,
        )));
    }
    Ok(vc)
}

/// `on 2026-01-01T00:00:00Z`, or sequoia's explanation when there is no expiry time (a key
/// created in the future, for instance).
pub(crate) fn expiry_text(expiry: Option<SystemTime>, err: &anyhow::Error) -> String {
    match expiry {
        Some(t) if t <= SystemTime::now() => format!("expired on {}", rfc3339(t)),
        _ => format!("is not live ({err})"),
    }
}

pub(crate) fn revocation_reason(sigs: &[&sequoia_openpgp::packet::Signature]) -> String {
    sigs.iter()
        .find_map(|s| s.reason_for_revocation())
        .map(|(code, msg)| {
            let msg = String::from_utf8_lossy(msg);
            if msg.is_empty() {
                code.to_string()
            } else {
                format!("{code}: {msg}")
            }
        })
        .unwrap_or_else(|| "no reason given".to_owned())
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Parses every certificate in `bytes` (armored or binary, one key or a keyring) from
/// `origin` (a path or URL, for messages).
pub fn parse_certs(origin: &str, bytes: &[u8]) -> Result<Vec<Cert>, TrustError> {
    let not_a_key = |reason: String| TrustError::NotAKey {
        origin: origin.to_owned(),
        reason,
    };
    let parser = CertParser::from_bytes(bytes).map_err(|e| not_a_key(format!("{e:#}")))?;
    let mut certs = Vec::new();
    for cert in parser {
        certs.push(cert.map_err(|e| not_a_key(format!("{e:#}")))?);
    }
    if certs.is_empty() {
        return Err(not_a_key("it holds no key".into()));
    }
    Ok(certs)
}

/// Refuses what must never enter the trust store: secret keys, and keys that cannot sign now.
pub fn check_importable(origin: &str, cert: &Cert) -> Result<(), TrustError> {
    let fingerprint = cert.fingerprint().to_hex();
    if cert.is_tsk() {
        return Err(TrustError::SecretKey {
            origin: origin.to_owned(),
            fingerprint,
        });
    }
    usable(cert, &StandardPolicy::new(), SystemTime::now()).map_err(|why| TrustError::KeyRefused {
        origin: origin.to_owned(),
        fingerprint,
        reason: why.to_string(),
    })
}
