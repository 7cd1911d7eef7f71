//! spec/types.md scalars: AC Version, Image ID, UUID, timestamps, URLs, and the absolute paths
//! manifests carry.

use std::fmt;

use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, decode_parsed};
use super::error::InvalidValue;

/// The spec version this implementation writes and complies with.
pub const SPEC_VERSION: &str = "0.8.11";

/// AC Version: a SemVer 2.0.0 version of the spec a manifest was written against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AcVersion(semver::Version);

impl AcVersion {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let v = semver::Version::parse(s).map_err(|e| {
            InvalidValue::new(s, "an AC Version").because(format!("not SemVer: {e}"))
        })?;
        if v.major == 0 && v.minor == 0 && v.patch == 0 {
            return Err(InvalidValue::new(s, "an AC Version").because("it cannot be zero"));
        }
        Ok(AcVersion(v))
    }

    /// The version this implementation writes.
    pub fn current() -> Self {
        AcVersion(semver::Version::new(0, 8, 11))
    }

    pub fn semver(&self) -> &semver::Version {
        &self.0
    }

    /// How this version relates to what we implement (policy decision 15).
    pub fn support(&self) -> VersionSupport {
        let v = &self.0;
        if v.major != 0 {
            VersionSupport::OtherMajor
        } else if (v.minor, v.patch) > (8, 11) {
            VersionSupport::Newer
        } else if v.minor < 8 {
            VersionSupport::Older
        } else {
            VersionSupport::Supported
        }
    }
}

/// See [`AcVersion::support`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSupport {
    Supported,
    /// Before 0.8.0: some fields were renamed since (e.g. `supplementaryGroups`).
    Older,
    /// A later 0.x: fields we do not know are ignored.
    Newer,
    /// Not 0.x: no compatibility is promised across major versions.
    OtherMajor,
}

impl fmt::Display for AcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

parsed_newtype!(AcVersion);

const SHA512_PREFIX: &str = "sha512-";

/// Image ID: `sha512-` followed by the hex SHA-512 of the uncompressed image tar (spec I1).
///
/// Accepts any non-empty value after the prefix, as the reference tools do (policy decision 4);
/// [`ImageId::is_full`] says whether it is a real digest that can match an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageId(String);

impl ImageId {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &'static str| Err(InvalidValue::new(s, "an image ID").because(why));
        let Some(value) = s.strip_prefix(SHA512_PREFIX) else {
            return match s.split_once('-') {
                Some((algo, _)) if !algo.is_empty() => bad("only sha512 image IDs are supported"),
                _ => bad("expected \"sha512-\" followed by the hex digest"),
            };
        };
        if value.is_empty() {
            return bad("the digest is empty");
        }
        if value.contains('-') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("the digest may hold neither '-' nor white space");
        }
        Ok(ImageId(s.to_owned()))
    }

    /// Builds the ID of a tar whose SHA-512 digest is `digest`.
    pub fn from_sha512(digest: &[u8; 64]) -> Self {
        use std::fmt::Write;
        let mut s = String::with_capacity(SHA512_PREFIX.len() + 128);
        s.push_str(SHA512_PREFIX);
        for b in digest {
            let _ = write!(s, "{b:02x}"); // writing to a String cannot fail
        }
        ImageId(s)
    }

    /// The part after `sha512-`.
    pub fn digest_hex(&self) -> &str {
        &self.0[SHA512_PREFIX.len()..]
    }

    /// Whether this is a full digest: 128 lower-case hex digits.
    pub fn is_full(&self) -> bool {
        let d = self.digest_hex();
        d.len() == 128
            && d.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

string_newtype!(ImageId, custom_decode);

impl Decode for ImageId {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let id: Self = decode_parsed(v, path, cx)?;
        if !id.is_full() {
            cx.warn(path, format!("{:?} is not a full sha512 digest (128 lower-case hex digits); it can match no image", id.0));
        }
        Some(id)
    }
}

/// A pod UUID (RFC 4122), printed in canonical lower-case 8-4-4-4-12 form (spec E1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodUuid(uuid::Uuid);

impl PodUuid {
    /// Accepts dashes anywhere and either case, as Go does; the nil UUID is refused.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let bad = |why: &'static str| Err(InvalidValue::new(s, "a UUID").because(why));
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("expected 32 hex digits");
        }
        match uuid::Uuid::try_parse(&hex) {
            Ok(u) if u.is_nil() => bad("the nil UUID is not a pod UUID"),
            Ok(u) => Ok(PodUuid(u)),
            Err(_) => bad("expected 32 hex digits"),
        }
    }

    /// A fresh random (version 4) UUID.
    pub fn new_random() -> Self {
        PodUuid(uuid::Uuid::new_v4())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for PodUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

parsed_newtype!(PodUuid);

/// An RFC 3339 `date-time` with a literal `T`, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Date {
    text: String,
    at: time::OffsetDateTime,
}

impl Date {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: String| InvalidValue::new(s, "an RFC 3339 timestamp").because(why);
        if s.as_bytes().get(10) != Some(&b'T') {
            return Err(bad("expected a literal 'T' between date and time".into()));
        }
        let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Date {
            text: s.to_owned(),
            at,
        })
    }

    pub fn at(&self) -> time::OffsetDateTime {
        self.at
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

parsed_newtype!(Date);

/// An `http` or `https` URL (annotations `homepage`, `documentation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: String| InvalidValue::new(s, "an http(s) URL").because(why);
        let u = url::Url::parse(s).map_err(|e| bad(e.to_string()))?;
        match u.scheme() {
            "http" | "https" => Ok(HttpUrl(u)),
            other => Err(bad(format!("scheme {other:?} is not http or https"))),
        }
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

parsed_newtype!(HttpUrl);

/// An absolute path inside an image or on the host, as manifests spell them. Only the syntax is
/// checked here; resolving it safely inside a root is the executor's job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsolutePath(String);

impl AbsolutePath {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if !s.starts_with('/') {
            return Err(InvalidValue::new(s, "an absolute path").because("it must start with '/'"));
        }
        if s.contains('\0') {
            return Err(InvalidValue::new(s, "an absolute path").because("it contains a NUL byte"));
        }
        Ok(AbsolutePath(s.to_owned()))
    }

    pub fn as_path(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

string_newtype!(AbsolutePath);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            AcVersion::parse("0.8.11").unwrap().support(),
            VersionSupport::Supported
        );
        assert_eq!(
            AcVersion::parse("0.3.0").unwrap().support(),
            VersionSupport::Older
        );
        assert_eq!(
            AcVersion::parse("0.9.0").unwrap().support(),
            VersionSupport::Newer
        );
        assert_eq!(
            AcVersion::parse("1.0.0").unwrap().support(),
            VersionSupport::OtherMajor
        );
        assert_eq!(
            AcVersion::parse("0.8.11+git").unwrap().support(),
            VersionSupport::Supported
        );
        for bad in ["", "v0.8.11", "0.8", "1", "0.0.0", "0.8.11 "] {
            assert!(AcVersion::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AcVersion::current().to_string(), SPEC_VERSION);
    }

    #[test]
    fn image_ids() {
        let full = format!("sha512-{}", "ab".repeat(64));
        assert!(ImageId::parse(&full).unwrap().is_full());
        let loose = ImageId::parse("sha512-...").unwrap();
        assert!(!loose.is_full());
        assert!(
            !ImageId::parse(&format!("sha512-{}", "AB".repeat(64)))
                .unwrap()
                .is_full()
        );
        let e = ImageId::parse("sha256-abc").unwrap_err();
        assert!(e.to_string().contains("only sha512"), "{e}");
        for bad in [
            "",
            "sha512-",
            "sha512",
            "abc",
            "sha512-a-b",
            "SHA512-abc",
            "sha512-a b",
        ] {
            assert!(ImageId::parse(bad).is_err(), "{bad:?}");
        }
        let id = ImageId::from_sha512(&[0xab; 64]);
        assert_eq!(id.as_str(), full);
    }

    #[test]
    fn uuids() {
        let canonical = "6733c088-4c4b-4c2f-9c18-2ac2a27b1b5a";
        for s in [
            canonical,
            "6733C088-4C4B-4C2F-9C18-2AC2A27B1B5A",
            "6733c0884c4b4c2f9c182ac2a27b1b5a",
            "6733-c0884c4b4c2f9c182ac2a27b1b5a",
        ] {
            assert_eq!(PodUuid::parse(s).unwrap().to_string(), canonical, "{s}");
        }
        for bad in [
            "",
            "00000000-0000-0000-0000-000000000000",
            "6733c088",
            "g733c088-4c4b-4c2f-9c18-2ac2a27b1b5a",
        ] {
            assert!(PodUuid::parse(bad).is_err(), "{bad:?}");
        }
        assert_ne!(PodUuid::new_random(), PodUuid::new_random());
    }

    #[test]
    fn dates() {
        for s in ["2014-10-27T19:32:27.67021798Z", "2015-01-01T00:00:00+01:00"] {
            assert_eq!(Date::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "2014-10-27 19:32:27Z",
            "2014-10-27",
            "yesterday",
            "2014-13-27T19:32:27Z",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert!(HttpUrl::parse("https://example.com/docs").is_ok());
        assert!(HttpUrl::parse("http://example.com").is_ok());
        assert!(
            HttpUrl::parse("ftp://example.com")
                .unwrap_err()
                .to_string()
                .contains("ftp")
        );
        assert!(HttpUrl::parse("example.com").is_err());
    }

    #[test]
    fn absolute_paths() {
        assert!(AbsolutePath::parse("/var/lib/db").is_ok());
        assert!(AbsolutePath::parse("var/lib").is_err());
        assert!(AbsolutePath::parse("").is_err());
        assert!(AbsolutePath::parse("/a\0b").is_err());
    }
}
