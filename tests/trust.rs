//! Tier 2: image signatures and the trust store. Keys and signatures are made here with
//! sequoia (the same library the store uses, but through its signing side); the store is
//! driven both as a library (`TrustStore::verify`) and through the real `appcctl trust`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use appc_pod::schema::AcIdentifier;
use appc_pod::trust::{TrustError, TrustStore};
use openpgp::Cert;
use openpgp::armor::Kind;
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::types::ReasonForRevocation;
use sequoia_openpgp as openpgp;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

// ---- keys, signatures and store layout -------------------------------------------------------

/// A certificate with a certification-only primary key and a signing subkey.
fn key(uid: &str) -> Cert {
    key_at(uid, SystemTime::now() - HOUR, Some(365 * DAY))
}

fn key_at(uid: &str, created: SystemTime, validity: Option<Duration>) -> Cert {
    CertBuilder::new()
        .add_userid(uid)
        .add_signing_subkey()
        .set_creation_time(created)
        .set_validity_period(validity)
        .generate()
        .expect("generate key")
        .0
}

/// Detached signature over `data`, made at `at` with the signing key valid at `valid_at`.
fn sign_at(cert: &Cert, data: &mut dyn Read, at: SystemTime, valid_at: SystemTime) -> Vec<u8> {
    let p = StandardPolicy::new();
    let keypair = cert
        .keys()
        .with_policy(&p, valid_at)
        .for_signing()
        .secret()
        .next()
        .expect("signing key")
        .key()
        .clone()
        .into_keypair()
        .expect("keypair");
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message)
            .kind(Kind::Signature)
            .build()
            .expect("armorer");
        let mut signer = Signer::new(message, keypair)
            .expect("signer")
            .detached()
            .creation_time(at)
            .build()
            .expect("build signer");
        std::io::copy(data, &mut signer).expect("sign");
        signer.finalize().expect("finalize");
    }
    out
}

fn sign(cert: &Cert, data: &[u8]) -> Vec<u8> {
    let now = SystemTime::now();
    sign_at(cert, &mut &data[..], now, now)
}

/// The same signature, de-armored (binary OpenPGP).
fn binary(armored: &[u8]) -> Vec<u8> {
    let mut r = openpgp::armor::Reader::from_bytes(
        armored,
        openpgp::armor::ReaderMode::Tolerant(Some(Kind::Signature)),
    );
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("dearmor");
    out
}

fn public_armored(cert: &Cert) -> Vec<u8> {
    cert.armored().to_vec().expect("armor")
}

fn revoke(cert: Cert, reason: ReasonForRevocation, at: SystemTime) -> Cert {
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .expect("secret primary")
        .into_keypair()
        .expect("keypair");
    let rev = CertRevocationBuilder::new()
        .set_signature_creation_time(at)
        .expect("time")
        .set_reason_for_revocation(reason, b"test")
        .expect("reason")
        .build(&mut signer, &cert, None)
        .expect("revocation");
    cert.insert_packets(rev).expect("merge revocation").0
}

/// Puts `cert` (public) into `<base>/trustedkeys/prefix.d/<prefix>/` or `root.d/` (`None`).
fn trust_in(base: &Path, prefix: Option<&str>, cert: &Cert) -> PathBuf {
    let dir = match prefix {
        Some(p) => base.join("trustedkeys/prefix.d").join(p),
        None => base.join("trustedkeys/root.d"),
    };
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(cert.fingerprint().to_hex());
    std::fs::write(&path, public_armored(cert)).expect("write key");
    path
}

struct Dirs {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    vendor: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("etc-appc");
    let vendor = tmp.path().join("usr-lib-appc");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::create_dir_all(&vendor).expect("mkdir");
    Dirs {
        _tmp: tmp,
        config,
        vendor,
    }
}

impl Dirs {
    fn store(&self) -> TrustStore {
        TrustStore::open(&self.config, &self.vendor).expect("open store")
    }

    fn verify(&self, name: &str, image: &[u8], sig: &[u8]) -> Result<String, TrustError> {
        let name = AcIdentifier::parse(name).expect("name");
        self.store()
            .verify(&name, &mut &image[..], &mut &sig[..])
            .map(|v| v.prefix)
    }
}

const IMAGE: &[u8] = b"not really an ACI, but signatures cover bytes, not formats";

// ---- TrustStore::verify ------------------------------------------------------------------------

#[test]
fn good_signature_is_accepted_armored_and_binary() {
    let d = dirs();
    let cert = key("Team <team@example.com>");
    trust_in(&d.config, Some("example.com/team"), &cert);
    let sig = sign(&cert, IMAGE);
    let name = AcIdentifier::parse("example.com/team/app").expect("name");
    let v = d
        .store()
        .verify(&name, &mut &IMAGE[..], &mut &sig[..])
        .expect("good signature");
    assert_eq!(v.fingerprint, cert.fingerprint().to_hex());
    assert_eq!(v.prefix, "example.com/team");
    assert_eq!(v.user_ids, ["Team <team@example.com>"]);
    // The same check for a binary signature, and through the Send + Sync entry point.
    let bin = binary(&sig);
    assert!(!bin.starts_with(b"-----"), "dearmored");
    assert_eq!(
        d.verify("example.com/team", IMAGE, &bin).expect("binary"),
        "example.com/team"
    );
    let v2 = d
        .store()
        .verify_reader(&name, std::io::Cursor::new(IMAGE), &mut &sig[..])
        .expect("verify_reader");
    assert_eq!(v, v2);
}

#[test]
fn tampered_image_is_refused() {
    let d = dirs();
    let cert = key("Team");
    trust_in(&d.config, Some("example.com/team"), &cert);
    let sig = sign(&cert, IMAGE);
    let mut tampered = IMAGE.to_vec();
    tampered[3] ^= 1;
    let err = d
        .verify("example.com/team/app", &tampered, &sig)
        .expect_err("tampered image accepted");
    assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("example.com/team/app") && msg.contains("modified"),
        "{msg}"
    );
    // A truncated image is tampered too.
    let err = d
        .verify("example.com/team/app", &IMAGE[..IMAGE.len() - 1], &sig)
        .expect_err("truncated image accepted");
    assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
}

#[test]
fn prefix_trust_is_hierarchical_on_whole_components() {
    let d = dirs();
    let team = key("Team");
    let teamx = key("Team X");
    trust_in(&d.config, Some("example.com/team"), &team);
    trust_in(&d.config, Some("example.com/teamx"), &teamx);

    // example.com/team trusts itself and below.
    let sig = sign(&team, IMAGE);
    d.verify("example.com/team", IMAGE, &sig).expect("own name");
    d.verify("example.com/team/deep/app", IMAGE, &sig)
        .expect("below");
    // ...but not a sibling that merely shares the string prefix, nor the parent.
    for name in ["example.com/teamx", "example.com/teamx/app", "example.com"] {
        let err = d.verify(name, IMAGE, &sig).expect_err(name);
        assert!(
            matches!(
                err,
                TrustError::UntrustedSigner { .. } | TrustError::NoTrustedKey { .. }
            ),
            "{name}: {err:?}"
        );
    }
    // A key trusted for a sibling prefix is refused, and the message says where it is trusted.
    let sig_x = sign(&teamx, IMAGE);
    let err = d
        .verify("example.com/team/app", IMAGE, &sig_x)
        .expect_err("sibling key accepted");
    assert!(matches!(err, TrustError::UntrustedSigner { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("trusted for example.com/teamx only")
            && msg.contains("appcctl trust --prefix example.com/team/app"),
        "{msg}"
    );
    // Nothing trusted at all for a name: the fix is named.
    let err = d
        .verify("other.org/app", IMAGE, &sig)
        .expect_err("untrusted name");
    assert!(matches!(err, TrustError::NoTrustedKey { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("appcctl trust --prefix other.org/app"),
        "{err}"
    );
}

#[test]
fn root_key_trusts_every_name() {
    let d = dirs();
    let root = key("Root");
    trust_in(&d.config, None, &root);
    let sig = sign(&root, IMAGE);
    for name in ["example.com/app", "a.org/b/c", "x"] {
        assert_eq!(d.verify(name, IMAGE, &sig).expect(name), "");
    }
    // A key both in root.d and a prefix reports the prefix for names below it.
    trust_in(&d.config, Some("a.org"), &root);
    assert_eq!(d.verify("a.org/b", IMAGE, &sig).expect("a.org/b"), "a.org");
}

#[test]
fn vendor_keys_count() {
    let d = dirs();
    let vendor = key("Distribution");
    trust_in(&d.vendor, Some("example.com"), &vendor);
    let sig = sign(&vendor, IMAGE);
    assert_eq!(
        d.verify("example.com/app", IMAGE, &sig)
            .expect("vendor key"),
        "example.com"
    );
    let root = key("Vendor root");
    trust_in(&d.vendor, None, &root);
    d.verify("any.org/app", IMAGE, &sign(&root, IMAGE))
        .expect("vendor root key");
}

#[test]
fn expired_key_is_refused_at_signing_time_and_now() {
    let d = dirs();
    let now = SystemTime::now();
    // Created two days ago, valid for one: expired a day ago.
    let cert = key_at("Old", now - 2 * DAY, Some(DAY));
    trust_in(&d.config, Some("example.com"), &cert);
    let while_valid = now - 2 * DAY + HOUR;

    // Signed while the key was valid: still refused now (see the verify module docs).
    let sig = sign_at(&cert, &mut &IMAGE[..], while_valid, while_valid);
    let err = d
        .verify("example.com/app", IMAGE, &sig)
        .expect_err("expired key accepted");
    match &err {
        TrustError::KeyExpired { at, state, .. } => {
            assert_eq!(at, "as of now");
            assert!(state.starts_with("expired on "), "{state}");
        }
        other => panic!("{other:?}"),
    }
    // Signed after it expired.
    let sig = sign_at(&cert, &mut &IMAGE[..], now, while_valid);
    let err = d
        .verify("example.com/app", IMAGE, &sig)
        .expect_err("signature by an expired key accepted");
    match &err {
        TrustError::KeyExpired { at, .. } => {
            assert!(at.starts_with("as of the signing time"), "{at}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains(&cert.fingerprint().to_hex()),
        "{err}"
    );
}

#[test]
fn revoked_key_is_refused() {
    let d = dirs();
    let now = SystemTime::now();
    // Compromised: a hard revocation, so even signatures from before it are refused.
    let cert = key_at("Leaked", now - 2 * HOUR, None);
    let sig = sign_at(&cert, &mut &IMAGE[..], now - HOUR, now - HOUR);
    let revoked = revoke(cert, ReasonForRevocation::KeyCompromised, now - HOUR / 2);
    trust_in(&d.config, Some("example.com"), &revoked);
    let err = d
        .verify("example.com/app", IMAGE, &sig)
        .expect_err("compromised key accepted");
    assert!(matches!(err, TrustError::KeyRevoked { .. }), "{err:?}");
    assert!(err.to_string().contains("appcctl trust rm"), "{err}");

    // Retired after signing: a soft revocation, valid at signing time, refused now.
    let d = dirs();
    let cert = key_at("Retired", now - 2 * HOUR, None);
    let sig = sign_at(&cert, &mut &IMAGE[..], now - HOUR, now - HOUR);
    let retired = revoke(cert, ReasonForRevocation::KeyRetired, now - HOUR / 2);
    trust_in(&d.config, Some("example.com"), &retired);
    let err = d
        .verify("example.com/app", IMAGE, &sig)
        .expect_err("retired key accepted");
    assert!(matches!(err, TrustError::KeyRevoked { .. }), "{err:?}");
}

#[test]
fn garbage_and_missing_signatures_are_refused() {
    let d = dirs();
    let cert = key("Team");
    trust_in(&d.config, Some("example.com"), &cert);
    let not_a_signature = public_armored(&cert);
    let cases: [(&str, &[u8]); 4] = [
        ("empty", b""),
        ("garbage", b"this is not a signature\n"),
        ("a public key", &not_a_signature),
        (
            "broken armor",
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
        ),
    ];
    for (what, sig) in cases {
        let err = d.verify("example.com/app", IMAGE, sig).expect_err(what);
        assert!(
            matches!(err, TrustError::MalformedSignature { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("example.com/app"), "{what}: {err}");
    }
    // A valid signature by a key nobody trusts.
    let stranger = key("Stranger");
    let err = d
        .verify("example.com/app", IMAGE, &sign(&stranger, IMAGE))
        .expect_err("stranger accepted");
    assert!(matches!(err, TrustError::UntrustedSigner { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not in the trust store"), "{msg}");
    // Named once, by fingerprint (the signature also carries the key ID, its last 16 digits).
    let keyid = stranger
        .keys()
        .subkeys()
        .next()
        .expect("subkey")
        .key()
        .keyid()
        .to_hex();
    assert_eq!(msg.matches(&keyid).count(), 1, "{msg}");
}

#[test]
fn a_broken_key_file_is_reported_with_its_path() {
    let d = dirs();
    let dir = d.config.join("trustedkeys/prefix.d/example.com");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("0123456789ABCDEF0123456789ABCDEF01234567"),
        b"junk",
    )
    .expect("write");
    let cert = key("Team");
    let err = d
        .verify("example.com/app", IMAGE, &sign(&cert, IMAGE))
        .expect_err("broken key file ignored");
    assert!(matches!(err, TrustError::BadKeyFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains("prefix.d/example.com/0123"),
        "{err}"
    );
    // A name with `..` components is never mapped onto the prefix tree.
    let err = d
        .verify("victim.com/../evil.com", IMAGE, &sign(&cert, IMAGE))
        .expect_err("dot-dot name");
    assert!(matches!(err, TrustError::InvalidName { .. }), "{err:?}");
}

/// A reader that is neither `Send` nor `Sync` (it holds an `Rc`), producing `len` bytes of a
/// pattern: `verify` must stream it, whatever its size.
struct Pattern {
    left: u64,
    served: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        let start = self.served.get();
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((start + i as u64) % 251) as u8;
        }
        self.left -= n as u64;
        self.served.set(start + n as u64);
        Ok(n)
    }
}

#[test]
fn large_images_are_streamed_from_any_reader() {
    const LEN: u64 = 64 << 20;
    let d = dirs();
    let cert = key("Team");
    trust_in(&d.config, Some("example.com"), &cert);
    let pattern = |len| Pattern {
        left: len,
        served: Default::default(),
    };
    let now = SystemTime::now();
    let sig = sign_at(&cert, &mut pattern(LEN), now, now);
    let name = AcIdentifier::parse("example.com/big").expect("name");
    let mut image = pattern(LEN);
    let served = image.served.clone();
    d.store()
        .verify(&name, &mut image, &mut &sig[..])
        .expect("streamed image");
    assert_eq!(served.get(), LEN, "the whole image was read");
    let err = d
        .store()
        .verify(&name, &mut pattern(LEN - 1), &mut &sig[..])
        .expect_err("short image accepted");
    assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
}

// ---- appcctl trust ------------------------------------------------------------------------------

fn appcctl(d: &Dirs, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .arg("--config-dir")
        .arg(&d.config)
        .args(args)
        .env("APPC_VENDOR_DIR", &d.vendor)
        .stdin(Stdio::null())
        .output()
        .expect("run appcctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts appcctl failed with its own exit code and a one-line message; returns the message.
fn failed(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "stderr:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("appcctl: "), "{stderr}");
    last
}

fn write_key_file(d: &Dirs, cert: &Cert) -> String {
    let path = d
        .config
        .parent()
        .expect("parent")
        .join(format!("{}.asc", cert.fingerprint().to_hex()));
    std::fs::write(&path, public_armored(cert)).expect("write");
    path.display().to_string()
}

fn list_json(d: &Dirs) -> Vec<serde_json::Value> {
    let out = appcctl(d, &["trust", "list", "--format", "json"]);
    serde_json::from_str(&ok(&out)).expect("json")
}

#[test]
fn cli_trust_list_and_rm() {
    let d = dirs();
    let cert = key("Team <team@example.com>");
    let fpr = cert.fingerprint().to_hex();
    let file = write_key_file(&d, &cert);

    let out = appcctl(
        &d,
        &[
            "trust",
            "--prefix",
            "example.com/team",
            "--skip-fingerprint-review",
            &file,
        ],
    );
    let stdout = ok(&out);
    let stored = d
        .config
        .join("trustedkeys/prefix.d/example.com/team")
        .join(&fpr);
    assert!(stdout.contains(&stored.display().to_string()), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&cert.fingerprint().to_spaced_hex())
            && stderr.contains("team@example.com")
            && stderr.contains("example.com/team"),
        "the review shows fingerprint, user ID and prefix: {stderr}"
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&stored), 0o644);
    assert_eq!(
        mode(&d.config.join("trustedkeys/prefix.d/example.com")),
        0o755
    );
    let back = Cert::from_bytes(&std::fs::read(&stored).expect("read")).expect("parse");
    assert_eq!(back.fingerprint(), cert.fingerprint());
    assert!(!back.is_tsk());
    assert!(
        std::fs::read(&stored)
            .expect("read")
            .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );

    // The trusted key verifies images for the prefix.
    d.verify("example.com/team/app", IMAGE, &sign(&cert, IMAGE))
        .expect("trusted through the CLI");

    // A vendor key shows up too.
    let vendor = key("Vendor");
    trust_in(&d.vendor, None, &vendor);
    let list = list_json(&d);
    assert_eq!(list.len(), 2, "{list:?}");
    let mine = list
        .iter()
        .find(|k| k["fingerprint"] == fpr.as_str())
        .expect("listed");
    assert_eq!(mine["scope"], "prefix");
    assert_eq!(mine["prefix"], "example.com/team");
    assert_eq!(mine["source"], "config");
    assert_eq!(mine["user_ids"][0], "Team <team@example.com>");
    assert_eq!(mine["state"], "valid");
    assert!(mine["expires"].is_string(), "{mine}");
    let theirs = list
        .iter()
        .find(|k| k["fingerprint"] == vendor.fingerprint().to_hex().as_str())
        .expect("vendor key listed");
    assert_eq!(theirs["scope"], "root");
    assert_eq!(theirs["source"], "vendor");
    let table = ok(&appcctl(&d, &["trust", "list"]));
    assert!(
        table.starts_with("PREFIX") && table.contains("(root)") && table.contains("vendor"),
        "{table}"
    );

    // rm: a vendor key is not ours to remove, an unknown one is named, ours goes.
    let msg = failed(&appcctl(
        &d,
        &["trust", "rm", &vendor.fingerprint().to_hex()],
    ));
    assert!(msg.contains("vendor key"), "{msg}");
    let msg = failed(&appcctl(
        &d,
        &["trust", "rm", &key("Nobody").fingerprint().to_hex()],
    ));
    assert!(msg.contains("no trusted key"), "{msg}");
    let msg = failed(&appcctl(&d, &["trust", "rm", "../../etc/passwd"]));
    assert!(msg.contains("not a key fingerprint"), "{msg}");
    let out = appcctl(&d, &["trust", "rm", &fpr.to_lowercase()]);
    assert!(ok(&out).contains(&stored.display().to_string()));
    assert!(!stored.exists());
    assert!(
        !d.config.join("trustedkeys/prefix.d/example.com").exists(),
        "emptied prefix directories are removed"
    );
    assert_eq!(list_json(&d).len(), 1);
}

#[test]
fn cli_trust_root() {
    let d = dirs();
    let cert = key("Root");
    let file = write_key_file(&d, &cert);
    ok(&appcctl(
        &d,
        &["trust", "--root", "--skip-fingerprint-review", &file],
    ));
    assert!(
        d.config
            .join("trustedkeys/root.d")
            .join(cert.fingerprint().to_hex())
            .is_file()
    );
    d.verify("any.org/app", IMAGE, &sign(&cert, IMAGE))
        .expect("root key trusted through the CLI");
    let msg = failed(&appcctl(
        &d,
        &["trust", "--root", "--skip-fingerprint-review"],
    ));
    assert!(msg.contains("--root needs a key file"), "{msg}");
}

#[test]
fn cli_trust_refuses_without_review_or_with_bad_keys() {
    let d = dirs();
    let trusted_dir = d.config.join("trustedkeys");
    let cert = key("Team");
    let file = write_key_file(&d, &cert);

    // stdin is not a terminal (null): no review possible, so no trust.
    let msg = failed(&appcctl(&d, &["trust", "--prefix", "example.com", &file]));
    assert!(
        msg.contains("--skip-fingerprint-review") && msg.contains("not a terminal"),
        "{msg}"
    );
    assert!(!trusted_dir.exists(), "nothing written");

    // Secret keys, expired, revoked and non-signing keys, bad prefixes, non-keys.
    let secret = d.config.parent().expect("parent").join("secret.asc");
    std::fs::write(&secret, cert.as_tsk().armored().to_vec().expect("tsk")).expect("write");
    let expired = key_at("Old", SystemTime::now() - 2 * DAY, Some(DAY));
    let revoked = revoke(
        key("Gone"),
        ReasonForRevocation::KeyCompromised,
        SystemTime::now(),
    );
    let no_sign = CertBuilder::new()
        .add_userid("Encrypt only")
        .add_transport_encryption_subkey()
        .generate()
        .expect("generate")
        .0;
    let junk = d.config.parent().expect("parent").join("junk.asc");
    std::fs::write(&junk, b"hello").expect("write");
    let cases = [
        (secret.display().to_string(), "secret key material"),
        (write_key_file(&d, &expired), "expired"),
        (write_key_file(&d, &revoked), "revoked"),
        (write_key_file(&d, &no_sign), "no valid signing key"),
        (junk.display().to_string(), "no OpenPGP public key"),
    ];
    for (file, why) in &cases {
        let msg = failed(&appcctl(
            &d,
            &[
                "trust",
                "--prefix",
                "example.com",
                "--skip-fingerprint-review",
                file,
            ],
        ));
        assert!(msg.contains(why), "{why}: {msg}");
    }
    for prefix in ["../etc", "/etc", "example.com/../x", "Example.com"] {
        let msg = failed(&appcctl(
            &d,
            &[
                "trust",
                "--prefix",
                prefix,
                "--skip-fingerprint-review",
                &file,
            ],
        ));
        assert!(msg.contains("not a valid trust prefix"), "{prefix}: {msg}");
    }
    assert!(!trusted_dir.exists(), "nothing written");

    // A key URL that cannot be downloaded (loopback, nothing listens on port 1).
    let url = "http://127.0.0.1:1/key.asc";
    let out = appcctl(
        &d,
        &[
            "trust",
            "--prefix",
            "example.com",
            "--skip-fingerprint-review",
            url,
        ],
    );
    let msg = failed(&out);
    assert!(msg.contains(&format!("cannot download {url}")), "{msg}");
    assert!(!trusted_dir.exists(), "nothing written");
}

/// Runs `appcctl` with stdin on a pseudo-terminal, typing `answer` into it.
fn appcctl_on_tty(d: &Dirs, args: &[&str], answer: &str) -> Output {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let child = Command::new(env!("CARGO_BIN_EXE_appcctl"))
        .arg("--config-dir")
        .arg(&d.config)
        .args(args)
        .env("APPC_VENDOR_DIR", &d.vendor)
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn appcctl");
    // The line discipline holds the answer until appcctl reads it.
    let mut master = std::fs::File::from(pty.master);
    std::io::Write::write_all(&mut master, answer.as_bytes()).expect("type answer");
    child.wait_with_output().expect("wait appcctl")
}

#[test]
fn cli_trust_asks_on_a_terminal() {
    let d = dirs();
    let cert = key("Team");
    let file = write_key_file(&d, &cert);
    let stored = d
        .config
        .join("trustedkeys/prefix.d/example.com/team")
        .join(cert.fingerprint().to_hex());
    let args = ["trust", "--prefix", "example.com/team", file.as_str()];

    let out = appcctl_on_tty(&d, &args, "n\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "declined: {stderr}");
    assert!(
        stderr.contains("Trust this key for example.com/team? [y/N]"),
        "{stderr}"
    );
    assert!(stderr.contains("not trusted (declined)"), "{stderr}");
    assert!(!stored.exists(), "a declined key is not written");

    let out = appcctl_on_tty(&d, &args, "y\n");
    ok(&out);
    assert!(stored.is_file(), "an accepted key is written");
}

#[test]
fn one_good_signature_among_several_is_enough() {
    let d = dirs();
    let trusted = key("Team");
    let stranger = key("Stranger");
    trust_in(&d.config, Some("example.com"), &trusted);
    // The same key in the vendor tree as well is still one key.
    trust_in(&d.vendor, None, &trusted);
    let p = StandardPolicy::new();
    let keypair = |c: &Cert| {
        c.keys()
            .with_policy(&p, None)
            .for_signing()
            .secret()
            .next()
            .expect("signing key")
            .key()
            .clone()
            .into_keypair()
            .expect("keypair")
    };
    let mut sig = Vec::new();
    {
        let message = Armorer::new(Message::new(&mut sig))
            .kind(Kind::Signature)
            .build()
            .expect("armorer");
        let mut signer = Signer::new(message, keypair(&stranger))
            .expect("signer")
            .add_signer(keypair(&trusted))
            .expect("second signer")
            .detached()
            .build()
            .expect("build");
        std::io::Write::write_all(&mut signer, IMAGE).expect("sign");
        signer.finalize().expect("finalize");
    }
    assert_eq!(
        d.verify("example.com/app", IMAGE, &sig)
            .expect("two signers"),
        "example.com"
    );
    // Tampered: the trusted signer's verdict (bad signature) wins over the stranger's.
    let err = d
        .verify("example.com/app", b"something else", &sig)
        .expect_err("tampered");
    assert!(matches!(err, TrustError::BadSignature { .. }), "{err:?}");
}
