//! The app string of spec/discovery.md: `name[:version][,label=value]...`, how users name an
//! image by name and labels (`example.com/web:1.0,os=linux`).
//!
//! Rules, as the reference parser applies them: the colon may appear once, right after the name,
//! and means `version=`; labels are comma-separated `name=value` pairs with AC Identifier names;
//! a label may not repeat (so `:1.0` together with `version=` is an error); values may hold any
//! character but `,` (e.g. `!*'();@&+$/?#[]`).

use std::fmt;

use super::error::InvalidValue;
use super::labels::{Labels, NameValue};
use super::names::AcIdentifier;

const EXPECTED: &str = "an app string (name[:version][,label=value]...)";

/// An image named by name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppString {
    pub name: AcIdentifier,
    pub labels: Labels,
}

impl AppString {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: String| InvalidValue::new(s, EXPECTED).because(why);
        let (head, rest) = s.split_once(',').map_or((s, None), |(h, r)| (h, Some(r)));
        if rest.is_some_and(|r| r.contains(':')) {
            return Err(bad("a ':' may appear only right after the name".into()));
        }
        let (name, version) = match head.split_once(':') {
            Some((_, v)) if v.contains(':') => {
                return Err(bad("a ':' may appear only once".into()));
            }
            Some((n, v)) => (n, Some(v)),
            None => (head, None),
        };
        let name = AcIdentifier::parse(name).map_err(|e| bad(e.to_string()))?;
        let mut pairs = Vec::new();
        if let Some(v) = version {
            pairs.push(label("version", v).map_err(bad)?);
        }
        for part in rest.into_iter().flat_map(|r| r.split(',')) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad(format!("label {part:?} is not name=value")));
            };
            pairs.push(label(k, v).map_err(bad)?);
        }
        let labels = Labels::new(pairs).map_err(bad)?;
        Ok(AppString { name, labels })
    }
}

fn label(name: &str, value: &str) -> Result<NameValue, String> {
    if value.is_empty() {
        return Err(format!("label {name:?} has an empty value"));
    }
    let name = AcIdentifier::parse(name).map_err(|e| e.to_string())?;
    Ok(NameValue {
        name,
        value: value.to_owned(),
    })
}

impl fmt::Display for AppString {
    /// The canonical form: `name[:version][,label=value]...` in the given label order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        if let Some(v) = self.labels.get("version") {
            write!(f, ":{v}")?;
        }
        for l in self.labels.iter().filter(|l| l.name.as_str() != "version") {
            write!(f, ",{}={}", l.name, l.value)?;
        }
        Ok(())
    }
}

parsed_newtype!(AppString);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, Vec<(String, String)>), String> {
        AppString::parse(s)
            .map(|a| {
                let labels = a
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.clone()))
                    .collect();
                (a.name.to_string(), labels)
            })
            .map_err(|e| e.to_string())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good() {
        assert_eq!(
            parse("example.com/app").unwrap(),
            ("example.com/app".into(), vec![])
        );
        assert_eq!(
            parse("example.com/app:1.0.0").unwrap().1,
            pairs(&[("version", "1.0.0")])
        );
        assert_eq!(
            parse("example.com/app:1.0.0,os=linux,arch=amd64")
                .unwrap()
                .1,
            pairs(&[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")])
        );
        assert_eq!(
            parse("example.com/app,channel=alpha").unwrap().1,
            pairs(&[("channel", "alpha")])
        );
        // Values may carry characters that are special in URLs.
        let special = "!*'();@&+$/?#[]";
        assert_eq!(
            parse(&format!("example.com/app,channel={special}"))
                .unwrap()
                .1,
            pairs(&[("channel", special)])
        );
    }

    #[test]
    fn bad() {
        for s in [
            "",
            "Example.com/app",
            "example.com/app:1.0:2.0",
            "example.com/app,os=linux:1.0",
            "example.com/app:1.0,version=2.0",
            "example.com/app,os=linux,os=freebsd",
            "example.com/app,channel",
            "example.com/app,Channel=alpha",
            "example.com/app:",
            "example.com/app,os=plan9",
        ] {
            assert!(AppString::parse(s).is_err(), "{s:?} accepted");
        }
        let e = AppString::parse("example.com/app:1.0,version=2.0").unwrap_err();
        assert!(
            e.to_string().contains("duplicate label name \"version\""),
            "{e}"
        );
    }

    #[test]
    fn display_is_canonical() {
        for s in [
            "example.com/app",
            "example.com/app:1.0.0,os=linux",
            "a/b,channel=beta",
        ] {
            assert_eq!(AppString::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            AppString::parse("a/b,os=linux,version=2")
                .unwrap()
                .to_string(),
            "a/b:2,os=linux"
        );
    }
}
