//! spec/types.md: AC Identifier, AC Name and AC Kind.
//!
//! Policy (see the module docs of `schema`): the character set and the edge rule are enforced, as
//! Go does; the spec's stricter grammar (no two separators in a row) is reported by `is_strict()`,
//! and the decoder turns a non-strict name into a warning.

use std::fmt;

use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, decode_parsed};
use super::error::InvalidValue;

const IDENTIFIER: &str = "an AC Identifier";
const NAME: &str = "an AC Name";

/// Shared check: non-empty, only `allowed` characters, lower-case, alphanumeric at both ends.
fn check_chars(
    s: &str,
    expected: &'static str,
    allowed: fn(char) -> bool,
) -> Result<(), InvalidValue> {
    let bad = |why: String| Err(InvalidValue::new(s, expected).because(why));
    if s.is_empty() {
        return bad("it is empty".into());
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return if c.is_ascii_uppercase() {
            bad("upper-case letters are not allowed".into())
        } else {
            bad(format!("character {c:?} is not allowed"))
        };
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return bad("it must start and end with a letter or digit".into());
    }
    Ok(())
}

/// True when no two separators stand next to each other: the spec's RE2 grammar
/// `^[a-z0-9]+([SEP][a-z0-9]+)*$`, given that the edges are already alphanumeric.
fn no_adjacent_separators(s: &str) -> bool {
    let sep = |c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.as_bytes()
        .windows(2)
        .any(|w| sep(w[0] as char) && sep(w[1] as char))
}

/// AC Identifier: image names, label names, isolator and annotation names
/// (`example.com/reduce-worker`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AcIdentifier(String);

impl AcIdentifier {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~/".contains(c);
        check_chars(s, IDENTIFIER, allowed)?;
        Ok(AcIdentifier(s.to_owned()))
    }

    /// Whether the identifier also matches the spec's stricter grammar (Go accepts `a..b`).
    pub fn is_strict(&self) -> bool {
        no_adjacent_separators(&self.0)
    }
}

string_newtype!(AcIdentifier, custom_decode);

impl Decode for AcIdentifier {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let id: Self = decode_parsed(v, path, cx)?;
        if !id.is_strict() {
            cx.warn(path, format!("{:?} has separators in a row, which the spec's AC Identifier grammar refuses (accepted, as actool does)", id.0));
        }
        Some(id)
    }
}

/// AC Name: app, volume, mount point and port names (`reduce-worker`), DNS-label style.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AcName(String);

impl AcName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        check_chars(s, NAME, allowed)?;
        Ok(AcName(s.to_owned()))
    }

    /// Whether the name also matches the spec's stricter grammar (Go accepts `a--b`).
    pub fn is_strict(&self) -> bool {
        no_adjacent_separators(&self.0)
    }

    /// Derives a strict AC Name from free text (an image name, a user's pod name): lower-cased,
    /// runs of other characters become one `-`, edges trimmed. Only for names the user did not
    /// spell out; a name the user gave is parsed, never sanitized. `None` when nothing is left.
    pub fn sanitize(s: &str) -> Option<Self> {
        let mut out = String::with_capacity(s.len());
        for c in s.chars().map(|c| c.to_ascii_lowercase()) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        AcName::parse(out.trim_matches('-')).ok()
    }
}

string_newtype!(AcName, custom_decode);

impl Decode for AcName {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let name: Self = decode_parsed(v, path, cx)?;
        if !name.is_strict() {
            cx.warn(path, format!("{:?} has \"--\", which the spec's AC Name grammar refuses (accepted, as actool does)", name.0));
        }
        Some(name)
    }
}

/// AC Kind: which manifest a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcKind {
    ImageManifest,
    PodManifest,
}

impl AcKind {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "ImageManifest" => Ok(AcKind::ImageManifest),
            "PodManifest" => Ok(AcKind::PodManifest),
            "" => Err(InvalidValue::new(s, "an AC Kind").because("it is empty")),
            _ => Err(InvalidValue::new(s, "an AC Kind")
                .because("expected \"ImageManifest\" or \"PodManifest\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcKind::ImageManifest => "ImageManifest",
            AcKind::PodManifest => "PodManifest",
        }
    }
}

impl fmt::Display for AcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

parsed_newtype!(AcKind);

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors re-authored from the facts of appc/spec schema/types/acidentifier_test.go.
    #[test]
    fn identifiers_good() {
        for s in [
            "asdf",
            "foo-bar-baz",
            "zab_rab_oof",
            "database",
            "my~database",
            "example.com/database",
            "example.com/~bob/database",
            "example.com/ourapp-1.0.0",
            "sub-domain.example.com/org/product/~alice/release-1.0.0",
            "sub-domain.example.com/org/product/release.1.0.0",
        ] {
            let id = AcIdentifier::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            // `/~` is two separators in a row: Go accepts it, the spec's RE2 grammar does not.
            assert_eq!(id.is_strict(), !s.contains("/~"), "{s}");
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn identifiers_bad() {
        for s in [
            "",
            "foo#",
            "EXAMPLE.com",
            "foo.com/BAR",
            "example.com/app_1/",
            "/app",
            "-foo",
            "foo-",
            ".foo",
            "foo.",
            "_foo",
            "foo_",
            "~foo",
            "foo~",
            "foo bar",
        ] {
            assert!(AcIdentifier::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn loose_identifiers_are_accepted_but_not_strict() {
        for s in ["a..b", "a//b", "a.-b"] {
            let id = AcIdentifier::parse(s).unwrap();
            assert!(!id.is_strict(), "{s}");
        }
        assert!(!AcName::parse("a--b").unwrap().is_strict());
    }

    #[test]
    fn names() {
        for s in ["asdf", "foo-bar-baz", "database"] {
            assert!(AcName::parse(s).is_ok(), "{s}");
        }
        for s in [
            "",
            "foo#",
            "EXAMPLE",
            "example.com",
            "example/database",
            "example.com/app_1",
            "-foo",
            "foo-",
        ] {
            assert!(AcName::parse(s).is_err(), "{s:?} accepted");
        }
        let e = AcName::parse("Web").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"Web\" is not an AC Name (upper-case letters are not allowed)"
        );
    }

    #[test]
    fn sanitize_names() {
        let s = |x: &str| AcName::sanitize(x).map(|n| n.to_string());
        assert_eq!(s("example.com/app_1").as_deref(), Some("example-com-app-1"));
        assert_eq!(s("-/app.name-test/-/").as_deref(), Some("app-name-test"));
        assert_eq!(s("__"), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(AcKind::parse("PodManifest").unwrap(), AcKind::PodManifest);
        assert!(AcKind::parse("podmanifest").is_err());
        assert!(AcKind::parse("").unwrap_err().to_string().contains("empty"));
    }
}
