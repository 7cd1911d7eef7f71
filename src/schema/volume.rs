//! spec/pods.md volumes, mounts and exposed ports (also the volume half of spec/ace.md V1–V12).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::app::Port;
use super::decode::{Cx, Decode, JsonPath, Obj};
use super::error::InvalidValue;
use super::names::AcName;
use super::scalars::AbsolutePath;

/// The permission bits of an `empty` volume's directory, written as an octal string (`"0755"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// The spec's default for `empty` volumes.
    pub const DEFAULT_EMPTY: FileMode = FileMode(0o755);

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = || {
            InvalidValue::new(s, "an octal file mode")
                .because("expected up to 4 octal digits, like \"0755\"")
        };
        if s.is_empty() || s.len() > 4 {
            return Err(bad());
        }
        u32::from_str_radix(s, 8).map(FileMode).map_err(|_| bad())
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

parsed_newtype!(FileMode);

/// What backs a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VolumeKind {
    /// A bind mount of a host path. `recursive` unset means recursive (spec: SHOULD default to it).
    Host {
        source: AbsolutePath,
        #[serde(skip_serializing_if = "Option::is_none")]
        recursive: Option<bool>,
    },
    /// A fresh empty directory that lives as long as the pod, shared by its apps.
    Empty { mode: FileMode, uid: u32, gid: u32 },
}

/// A named volume of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: AcName,
    /// `None` when unset: the spec leaves its precedence against a mount point's `readOnly` open
    /// (V12), so "unset" and "false" are kept apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(flatten)]
    pub kind: VolumeKind,
}

impl Decode for Volume {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let kind_name: Option<String> = o.req("kind", cx);
        let read_only = o.opt("readOnly", cx);
        let kind = match kind_name.as_deref() {
            Some("host") => decode_host(&mut o, cx),
            Some("empty") => decode_empty(&mut o, cx),
            Some(other) => {
                cx.rule(
                    &path.key("kind"),
                    format!("volume kind {other:?} is neither \"host\" nor \"empty\""),
                );
                None
            }
            None => None,
        };
        o.finish(cx);
        Some(Volume {
            name: name?,
            read_only,
            kind: kind?,
        })
    }
}

fn decode_host(o: &mut Obj<'_>, cx: &mut Cx) -> Option<VolumeKind> {
    for key in ["mode", "uid", "gid"] {
        if o.has(key) {
            cx.rule(
                &o.path().key(key),
                "only \"empty\" volumes take mode, uid and gid",
            );
            let _ = o.opt::<Value>(key, cx); // consumed, so it is not also reported as unknown
        }
    }
    let source = o.req("source", cx);
    let recursive = o.opt("recursive", cx);
    Some(VolumeKind::Host {
        source: source?,
        recursive,
    })
}

fn decode_empty(o: &mut Obj<'_>, cx: &mut Cx) -> Option<VolumeKind> {
    for (key, rule) in [
        ("source", "an \"empty\" volume takes no source"),
        ("recursive", "only \"host\" volumes are recursive"),
    ] {
        if o.has(key) {
            cx.rule(&o.path().key(key), rule);
            let _ = o.opt::<Value>(key, cx); // consumed, so it is not also reported as unknown
        }
    }
    let mode = o.opt("mode", cx).unwrap_or(FileMode::DEFAULT_EMPTY);
    let uid = o.opt("uid", cx).unwrap_or(0);
    let gid = o.opt("gid", cx).unwrap_or(0);
    Some(VolumeKind::Empty { mode, uid, gid })
}

/// `apps[].mounts[]`: which volume goes to which path of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub volume: AcName,
    pub path: AbsolutePath,
    /// A volume defined right here, overriding the lookup by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_volume: Option<Volume>,
}

impl Decode for Mount {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let volume = o.req("volume", cx);
        let mount_path = o.req("path", cx);
        let app_volume = o.opt("appVolume", cx);
        o.finish(cx);
        Some(Mount {
            volume: volume?,
            path: mount_path?,
            app_volume,
        })
    }
}

/// `ports[]` of a pod: an app port exposed on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposedPort {
    pub name: AcName,
    pub host_port: u16,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_port: Option<Port>,
}

impl Decode for ExposedPort {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let host_port: Option<u16> = o.req("hostPort", cx);
        let host_ip = o.opt_with("hostIP", cx, decode_ip);
        let pod_port = o.opt("podPort", cx);
        o.finish(cx);
        if host_port == Some(0) {
            cx.rule(
                &path.key("hostPort"),
                "hostPort must be between 1 and 65535",
            );
        }
        Some(ExposedPort {
            name: name?,
            host_port: host_port?,
            host_ip,
            pod_port,
        })
    }
}

fn decode_ip(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<IpAddr> {
    let s = String::decode(v, path, cx)?;
    s.parse()
        .map_err(|_| cx.invalid(path, InvalidValue::new(s, "an IP address")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::decode::decode_document;

    fn volume(json: &str) -> Result<Volume, String> {
        decode_document::<Volume>(json)
            .map(|d| d.value)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_volumes_get_defaults() {
        let v = volume(r#"{"name":"scratch","kind":"empty"}"#).unwrap();
        assert_eq!(
            v.kind,
            VolumeKind::Empty {
                mode: FileMode(0o755),
                uid: 0,
                gid: 0
            }
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name":"scratch","kind":"empty","mode":"0755","uid":0,"gid":0})
        );
    }

    #[test]
    fn volume_rules() {
        assert!(
            volume(r#"{"name":"db","kind":"host","source":"/srv/db","readOnly":true}"#).is_ok()
        );
        let e = volume(r#"{"name":"db","kind":"host"}"#).unwrap_err();
        assert_eq!(e, "source: required field is missing");
        assert!(volume(r#"{"name":"db","kind":"host","source":"srv"}"#).is_err());
        let e = volume(r#"{"name":"db","kind":"host","source":"/srv","mode":"0755"}"#).unwrap_err();
        assert_eq!(e, "mode: only \"empty\" volumes take mode, uid and gid");
        assert!(volume(r#"{"name":"db","kind":"empty","source":"/srv"}"#).is_err());
        assert!(volume(r#"{"name":"db","kind":"empty","recursive":true}"#).is_err());
        assert!(volume(r#"{"name":"db","kind":"empty","mode":"999"}"#).is_err());
        assert!(volume(r#"{"name":"db","kind":"nfs"}"#).is_err());
        assert!(volume(r#"{"name":"DB","kind":"empty"}"#).is_err());
    }

    #[test]
    fn exposed_ports() {
        let p = |j: &str| decode_document::<ExposedPort>(j).map_err(|e| e.to_string());
        assert!(p(r#"{"name":"www","hostPort":8080}"#).is_ok());
        assert!(p(r#"{"name":"www","hostPort":8080,"hostIP":"::1"}"#).is_ok());
        assert!(p(r#"{"name":"www","hostPort":8080,"hostIP":"localhost"}"#).is_err());
        assert!(p(r#"{"name":"www","hostPort":0}"#).is_err());
    }
}
