//! Labels (spec/aci.md `labels`, with the os/arch table) and annotations (`annotations`, with the
//! typed `created`, `homepage` and `documentation` entries).

use serde::Serialize;
use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, Obj, check_unique, decode_list};
use super::names::AcIdentifier;
use super::scalars::{Date, HttpUrl};

/// Valid `arch` values per `os`: Go's `ValidOSArch`, wider than the spec text's seven pairs, which
/// the spec says "can be updated" (policy decision 8).
pub const VALID_OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// The appc `os` and `arch` label values of the machine we run on (used as discovery defaults).
pub fn host_os_arch() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" if cfg!(target_endian = "big") => "aarch64_be",
        "aarch64" => "aarch64",
        "arm" => "armv7l",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    };
    (std::env::consts::OS, arch)
}

/// Checks an `os`/`arch` pair; `Err` says why not.
pub fn check_os_arch(os: Option<&str>, arch: Option<&str>) -> Result<(), String> {
    let Some(os) = os else { return Ok(()) }; // arch alone is meaningless but harmless (as Go)
    let Some((_, arches)) = VALID_OS_ARCH.iter().find(|(o, _)| *o == os) else {
        let known: Vec<&str> = VALID_OS_ARCH.iter().map(|(o, _)| *o).collect();
        return Err(format!("os {os:?} is not one of {}", known.join(", ")));
    };
    match arch {
        Some(a) if !arches.contains(&a) => Err(format!(
            "arch {a:?} is not valid for os {os:?} (valid: {})",
            arches.join(", ")
        )),
        _ => Ok(()),
    }
}

/// One `{name, value}` pair, for labels and annotations alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: AcIdentifier,
    pub value: String,
}

impl Decode for NameValue {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let value = o.req("value", cx);
        o.finish(cx);
        Some(NameValue {
            name: name?,
            value: value?,
        })
    }
}

fn lookup<'a>(list: &'a [NameValue], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|l| l.name.as_str() == name)
        .map(|l| l.value.as_str())
}

/// Image labels: unique names, never `name`, a valid os/arch pair.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Labels(Vec<NameValue>);

impl Labels {
    /// Builds labels from pairs, checking the same rules as the decoder; `Err` names the problem.
    pub fn new(list: Vec<NameValue>) -> Result<Self, String> {
        if let Some(i) = list
            .iter()
            .enumerate()
            .position(|(i, l)| list[..i].iter().any(|p| p.name == l.name))
        {
            return Err(format!("duplicate label name {:?}", list[i].name.as_str()));
        }
        if list.iter().any(|l| l.name.as_str() == "name") {
            return Err("\"name\" is not allowed as a label name".into());
        }
        check_os_arch(lookup(&list, "os"), lookup(&list, "arch"))?;
        Ok(Labels(list))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        lookup(&self.0, name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NameValue> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether these labels satisfy a request: every requested label is present with the same
    /// value; labels not requested may hold anything (spec DS15, D1).
    pub fn satisfy(&self, requested: &Labels) -> bool {
        requested
            .iter()
            .all(|r| self.get(r.name.as_str()) == Some(r.value.as_str()))
    }
}

impl Decode for Labels {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let list: Vec<NameValue> = decode_list(v, path, cx, NameValue::decode)?;
        check_unique(&list, path, cx, "label name", |l| l.name.clone());
        for (i, l) in list.iter().enumerate() {
            if l.name.as_str() == "name" {
                cx.rule(
                    &path.index(i).key("name"),
                    "\"name\" is not allowed as a label name",
                );
            }
        }
        if let Err(rule) = check_os_arch(lookup(&list, "os"), lookup(&list, "arch")) {
            let at = list
                .iter()
                .position(|l| l.name.as_str() == "os")
                .unwrap_or_default();
            cx.rule(&path.index(at).key("value"), rule);
        }
        Some(Labels(list))
    }
}

/// Annotations: unique names; `created` a timestamp, `homepage`/`documentation` http(s) URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Annotations(Vec<NameValue>);

impl Annotations {
    pub fn get(&self, name: &str) -> Option<&str> {
        lookup(&self.0, name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NameValue> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `self` with `overrides` applied: an existing name is replaced in place, new names are
    /// appended in order. This is how the metadata service merges a pod app's annotations over
    /// its image's (the ACE validator compares the result order-sensitively).
    pub fn merged_with(&self, overrides: &Annotations) -> Annotations {
        let mut out = self.0.clone();
        for o in &overrides.0 {
            match out.iter_mut().find(|a| a.name == o.name) {
                Some(a) => a.value.clone_from(&o.value),
                None => out.push(o.clone()),
            }
        }
        Annotations(out)
    }
}

/// Checks the value of a well-known annotation; `None` when it is fine or not well-known.
fn check_annotation_value(a: &NameValue) -> Option<super::InvalidValue> {
    match a.name.as_str() {
        "created" => Date::parse(&a.value).err(),
        "homepage" | "documentation" => HttpUrl::parse(&a.value).err(),
        _ => None,
    }
}

impl Decode for Annotations {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let list: Vec<NameValue> = decode_list(v, path, cx, NameValue::decode)?;
        check_unique(&list, path, cx, "annotation name", |a| a.name.clone());
        for (i, a) in list.iter().enumerate() {
            if let Some(e) = check_annotation_value(a) {
                cx.invalid(&path.index(i).key("value"), e);
            }
        }
        Some(Annotations(list))
    }
}

impl TryFrom<Vec<NameValue>> for Annotations {
    type Error = String;

    fn try_from(list: Vec<NameValue>) -> Result<Self, String> {
        if let Some(i) = list
            .iter()
            .enumerate()
            .position(|(i, a)| list[..i].iter().any(|p| p.name == a.name))
        {
            return Err(format!(
                "duplicate annotation name {:?}",
                list[i].name.as_str()
            ));
        }
        if let Some(e) = list.iter().find_map(check_annotation_value) {
            return Err(e.to_string());
        }
        Ok(Annotations(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::decode::decode_document;

    fn labels(json: &str) -> Result<Labels, String> {
        decode_document::<Labels>(json)
            .map(|d| d.value)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn os_arch_table() {
        assert!(
            labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]"#).is_ok()
        );
        assert!(
            labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"armv7l"}]"#).is_ok()
        );
        assert!(
            labels(r#"[{"name":"os","value":"darwin"},{"name":"arch","value":"x86_64"}]"#).is_ok()
        );
        let e = labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"arm64"}]"#)
            .unwrap_err();
        assert!(
            e.starts_with("[0].value: arch \"arm64\" is not valid for os \"linux\""),
            "{e}"
        );
        assert!(
            labels(r#"[{"name":"os","value":"linux"},{"name":"arch","value":"arm"}]"#).is_err()
        );
        assert!(labels(r#"[{"name":"os","value":"plan9"}]"#).is_err());
        assert!(labels(r#"[{"name":"arch","value":"anything"}]"#).is_ok());
    }

    #[test]
    fn label_rules() {
        let e = labels(r#"[{"name":"version","value":"1"},{"name":"version","value":"2"}]"#)
            .unwrap_err();
        assert_eq!(e, "[1]: duplicate label name \"version\"");
        let e = labels(r#"[{"name":"name","value":"x"}]"#).unwrap_err();
        assert_eq!(e, "[0].name: \"name\" is not allowed as a label name");
        assert!(labels(r#"[{"name":"Version","value":"1"}]"#).is_err());
        assert!(labels(r#"{"version":"1"}"#).is_err());
    }

    #[test]
    fn satisfy_treats_missing_labels_as_wildcards() {
        let have =
            labels(r#"[{"name":"version","value":"1.0"},{"name":"os","value":"linux"}]"#).unwrap();
        let want = labels(r#"[{"name":"version","value":"1.0"}]"#).unwrap();
        assert!(have.satisfy(&want));
        assert!(have.satisfy(&Labels::default()));
        let want = labels(r#"[{"name":"version","value":"2.0"}]"#).unwrap();
        assert!(!have.satisfy(&want));
        let want = labels(r#"[{"name":"channel","value":"beta"}]"#).unwrap();
        assert!(!have.satisfy(&want));
    }

    #[test]
    fn annotation_values_are_typed() {
        let a = |json: &str| decode_document::<Annotations>(json).map_err(|e| e.to_string());
        assert!(a(r#"[{"name":"created","value":"2014-10-27T19:32:27.67021798Z"}]"#).is_ok());
        let e = a(r#"[{"name":"created","value":"yesterday"}]"#).unwrap_err();
        assert!(
            e.starts_with("[0].value: \"yesterday\" is not an RFC 3339 timestamp"),
            "{e}"
        );
        assert!(a(r#"[{"name":"homepage","value":"ftp://x"}]"#).is_err());
        assert!(a(r#"[{"name":"lorem","value":"ipsum"},{"name":"lorem","value":"x"}]"#).is_err());
    }

    #[test]
    fn merge_replaces_in_place_and_appends() {
        let parse = |j: &str| decode_document::<Annotations>(j).unwrap().value;
        let image = parse(r#"[{"name":"a","value":"1"},{"name":"b","value":"2"}]"#);
        let pod = parse(r#"[{"name":"c","value":"3"},{"name":"a","value":"9"}]"#);
        let merged: Vec<(String, String)> = image
            .merged_with(&pod)
            .iter()
            .map(|a| (a.name.to_string(), a.value.clone()))
            .collect();
        let want =
            [("a", "9"), ("b", "2"), ("c", "3")].map(|(n, v)| (n.to_string(), v.to_string()));
        assert_eq!(merged, want);
    }

    #[test]
    fn host_arch_is_valid_for_linux() {
        let (os, arch) = host_os_arch();
        assert_eq!(os, "linux");
        assert!(check_os_arch(Some(os), Some(arch)).is_ok(), "{arch}");
    }
}
