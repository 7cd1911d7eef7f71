//! The `app` object of spec/aci.md (also the `apps[].app` override of spec/pods.md): exec, user
//! and group, event handlers, environment, isolators, mount points and ports.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, Obj, check_unique, decode_list, decode_slots};
use super::error::InvalidValue;
use super::isolator::{Isolator, IsolatorScope, check_isolator_slots};
use super::names::AcName;
use super::scalars::AbsolutePath;

/// `app.user` / `app.group`: a name looked up in the image's `/etc/passwd` or `/etc/group`, a
/// numeric ID, or an absolute path whose owner is used (spec X5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserGroup(String);

/// What a [`UserGroup`] refers to, in the spec's resolution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserGroupRef<'a> {
    /// Looked up in the image first; if that fails and it is all digits, the number itself.
    NameOrId(&'a str, Option<u32>),
    /// The owner of this file inside the app's root.
    PathOwner(&'a str),
}

impl UserGroup {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &'static str| Err(InvalidValue::new(s, "a user or group").because(why));
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.chars().any(|c| c.is_control()) {
            return bad("it contains a control character");
        }
        if !s.starts_with('/') && s.contains(':') {
            return bad("':' cannot appear in a user or group name");
        }
        Ok(UserGroup(s.to_owned()))
    }

    pub fn kind(&self) -> UserGroupRef<'_> {
        if self.0.starts_with('/') {
            UserGroupRef::PathOwner(&self.0)
        } else {
            let id = self
                .0
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| self.0.parse().ok())
                .flatten();
            UserGroupRef::NameOrId(&self.0, id)
        }
    }
}

string_newtype!(UserGroup);

/// An environment variable name: `^[A-Za-z_][A-Za-z_0-9.-]*$` (0.8.11 allows `.` and `-`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why: &'static str| {
            Err(InvalidValue::new(s, "an environment variable name").because(why))
        };
        let mut chars = s.chars();
        match chars.next() {
            None => return bad("it is empty"),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                return bad("it must start with a letter or '_'");
            }
            Some(_) => {}
        }
        if chars.any(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
            return bad("only letters, digits, '_', '.' and '-' are allowed");
        }
        Ok(EnvName(s.to_owned()))
    }
}

string_newtype!(EnvName);

/// One environment variable; its value is literal (no substitution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: EnvName,
    pub value: String,
}

impl Decode for EnvVar {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let value = o.req("value", cx);
        o.finish(cx);
        Some(EnvVar {
            name: name?,
            value: value?,
        })
    }
}

/// `environment`: variables with unique names, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Environment(Vec<EnvVar>);

impl Environment {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.name.as_str() == name)
            .map(|e| e.value.as_str())
    }

    /// Sets `name`, replacing an earlier value in place.
    pub fn set(&mut self, name: EnvName, value: String) {
        match self.0.iter_mut().find(|e| e.name == name) {
            Some(e) => e.value = value,
            None => self.0.push(EnvVar { name, value }),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &EnvVar> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Decode for Environment {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let list: Vec<EnvVar> = decode_list(v, path, cx, EnvVar::decode)?;
        check_unique(&list, path, cx, "environment variable", |e| e.name.clone());
        Some(Environment(list))
    }
}

/// The two event handlers the spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventName {
    #[serde(rename = "pre-start")]
    PreStart,
    #[serde(rename = "post-stop")]
    PostStop,
}

impl EventName {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "pre-start" => Ok(EventName::PreStart),
            "post-stop" => Ok(EventName::PostStop),
            _ => Err(InvalidValue::new(s, "an event handler name")
                .because("expected \"pre-start\" or \"post-stop\"")),
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventName::PreStart => "pre-start",
            EventName::PostStop => "post-stop",
        })
    }
}

impl Decode for EventName {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        super::decode::decode_parsed::<ParsedEvent>(v, path, cx).map(|p| p.0)
    }
}

/// Adapter so `EventName` can go through `decode_parsed` without serde's derive getting in the way.
struct ParsedEvent(EventName);

impl std::str::FromStr for ParsedEvent {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        EventName::parse(s).map(ParsedEvent)
    }
}

/// A command run around the app's main process, in its root and with its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHandler {
    pub name: EventName,
    pub exec: Vec<String>,
}

impl Decode for EventHandler {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let exec: Option<Vec<String>> = o.req("exec", cx);
        if exec.as_ref().is_some_and(Vec::is_empty) {
            cx.rule(&path.key("exec"), "an event handler needs a command");
        }
        o.finish(cx);
        Some(EventHandler {
            name: name?,
            exec: exec?,
        })
    }
}

/// A place in the app's root where a volume is mounted (`mountPoints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub name: AcName,
    pub path: AbsolutePath,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
}

impl Decode for MountPoint {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let mp_path = o.req("path", cx);
        let read_only = o.opt("readOnly", cx).unwrap_or(false);
        o.finish(cx);
        Some(MountPoint {
            name: name?,
            path: mp_path?,
            read_only,
        })
    }
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

fn is_one(n: &u16) -> bool {
    *n == 1
}

/// A port the app listens on (`ports`): informational, and the target of `--port` mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub name: AcName,
    pub protocol: String,
    pub port: u16,
    /// How many consecutive ports, starting at `port`; at least 1.
    #[serde(skip_serializing_if = "is_one")]
    pub count: u16,
    #[serde(skip_serializing_if = "is_false")]
    pub socket_activated: bool,
}

impl Decode for Port {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let protocol: Option<String> = o.req("protocol", cx);
        let port: Option<u16> = o.req("port", cx);
        let count = o.opt::<u16>("count", cx).unwrap_or(1).max(1); // Go: count 0 means 1
        let socket_activated = o.opt("socketActivated", cx).unwrap_or(false);
        o.finish(cx);
        if port == Some(0) {
            cx.rule(&path.key("port"), "port must be between 1 and 65535");
        } else if port.is_some_and(|p| u32::from(p) + u32::from(count) > 65536) {
            cx.rule(
                &path.key("count"),
                format!("port + count ({count}) goes past 65535"),
            );
        }
        if protocol
            .as_deref()
            .is_some_and(|p| p != "tcp" && p != "udp")
        {
            cx.warn(&path.key("protocol"), "protocol is neither tcp nor udp");
        }
        Some(Port {
            name: name?,
            protocol: protocol?,
            port: port?,
            count,
            socket_activated,
        })
    }
}

/// `app`: how to run the image's program.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    pub user: UserGroup,
    pub group: UserGroup,
    #[serde(rename = "supplementaryGIDs", skip_serializing_if = "Vec::is_empty")]
    pub supplementary_gids: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_handlers: Vec<EventHandler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<AbsolutePath>,
    #[serde(skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolators: Vec<Isolator>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_labels: BTreeMap<String, String>,
}

impl App {
    pub fn event_handler(&self, name: EventName) -> Option<&EventHandler> {
        self.event_handlers.iter().find(|h| h.name == name)
    }
}

impl Decode for App {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let exec = o.opt("exec", cx).unwrap_or_default();
        let user = o.req("user", cx);
        let group = o.req("group", cx);
        let supplementary_gids = o.opt("supplementaryGIDs", cx).unwrap_or_default();
        let event_handlers: Vec<EventHandler> = o.opt("eventHandlers", cx).unwrap_or_default();
        let working_directory = o.opt("workingDirectory", cx);
        let environment = o.opt("environment", cx).unwrap_or_default();
        let isolators: Vec<Option<Isolator>> = o
            .opt_with("isolators", cx, decode_slots)
            .unwrap_or_default();
        let mount_points: Vec<MountPoint> = o.opt("mountPoints", cx).unwrap_or_default();
        let ports: Vec<Port> = o.opt("ports", cx).unwrap_or_default();
        let user_annotations = o
            .opt_with("userAnnotations", cx, decode_string_map)
            .unwrap_or_default();
        let user_labels = o
            .opt_with("userLabels", cx, decode_string_map)
            .unwrap_or_default();
        o.finish(cx);
        check_unique(
            &event_handlers,
            &path.key("eventHandlers"),
            cx,
            "event handler",
            |h| h.name,
        );
        let slots: Vec<Option<&Isolator>> = isolators.iter().map(Option::as_ref).collect();
        check_isolator_slots(&slots, IsolatorScope::App, &path.key("isolators"), cx);
        let isolators: Vec<Isolator> = isolators.into_iter().flatten().collect();
        check_unique(
            &mount_points,
            &path.key("mountPoints"),
            cx,
            "mount point name",
            |m| m.name.clone(),
        );
        check_unique(&ports, &path.key("ports"), cx, "port name", |p| {
            p.name.clone()
        });
        Some(App {
            exec,
            user: user?,
            group: group?,
            supplementary_gids,
            event_handlers,
            working_directory,
            environment,
            isolators,
            mount_points,
            ports,
            user_annotations,
            user_labels,
        })
    }
}

/// `userAnnotations` / `userLabels`: free-form string maps that must not change runtime behaviour.
pub(crate) fn decode_string_map(
    v: &Value,
    path: &JsonPath,
    cx: &mut Cx,
) -> Option<BTreeMap<String, String>> {
    let Value::Object(map) = v else {
        cx.wrong_type(path, "an object of strings", v);
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if let Some(s) = String::decode(v, &path.key(k), cx) {
            out.insert(k.clone(), s);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::decode::decode_document;

    fn app(json: &str) -> Result<App, String> {
        decode_document::<App>(json)
            .map(|d| d.value)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn user_and_group_are_required() {
        let e = app(r#"{"exec":["/bin/sh"]}"#).unwrap_err();
        assert_eq!(
            e,
            "user: required field is missing\ngroup: required field is missing"
        );
        assert!(app(r#"{"user":"","group":"0"}"#).is_err());
    }

    #[test]
    fn user_group_kinds() {
        let k = |s: &str| UserGroup::parse(s).unwrap();
        assert_eq!(k("0").kind(), UserGroupRef::NameOrId("0", Some(0)));
        assert_eq!(k("nobody").kind(), UserGroupRef::NameOrId("nobody", None));
        assert_eq!(
            k("/etc/passwd").kind(),
            UserGroupRef::PathOwner("/etc/passwd")
        );
        assert_eq!(
            k("99999999999").kind(),
            UserGroupRef::NameOrId("99999999999", None)
        );
        assert!(UserGroup::parse("a:b").is_err());
    }

    #[test]
    fn working_directory_must_be_absolute() {
        let e = app(r#"{"user":"0","group":"0","workingDirectory":"opt"}"#).unwrap_err();
        assert!(
            e.starts_with("workingDirectory: \"opt\" is not an absolute path"),
            "{e}"
        );
    }

    #[test]
    fn environment_names() {
        for good in ["PATH", "_x", "a.b-c", "A1"] {
            assert!(EnvName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "0DEBUG", "A B", "A=B", "-x"] {
            assert!(EnvName::parse(bad).is_err(), "{bad:?}");
        }
        let e = app(r#"{"user":"0","group":"0","environment":[{"name":"A","value":"1"},{"name":"A","value":"2"}]}"#)
            .unwrap_err();
        assert_eq!(e, "environment[1]: duplicate environment variable \"A\"");
    }

    #[test]
    fn event_handlers() {
        let e = app(r#"{"user":"0","group":"0","eventHandlers":[{"name":"pre-start","exec":["/a"]},{"name":"pre-start","exec":["/b"]}]}"#)
            .unwrap_err();
        assert_eq!(e, "eventHandlers[1]: duplicate event handler \"pre-start\"");
        let e =
            app(r#"{"user":"0","group":"0","eventHandlers":[{"name":"on-crash","exec":["/a"]}]}"#)
                .unwrap_err();
        assert!(
            e.starts_with("eventHandlers[0].name: \"on-crash\" is not an event handler name"),
            "{e}"
        );
        assert!(
            app(r#"{"user":"0","group":"0","eventHandlers":[{"name":"post-stop","exec":[]}]}"#)
                .is_err()
        );
    }

    #[test]
    fn ports() {
        let p = |port: &str| app(&format!(r#"{{"user":"0","group":"0","ports":[{port}]}}"#));
        assert!(p(r#"{"name":"www","protocol":"tcp","port":80}"#).is_ok());
        assert_eq!(
            p(r#"{"name":"www","protocol":"tcp","port":80,"count":0}"#)
                .unwrap()
                .ports[0]
                .count,
            1
        );
        assert!(p(r#"{"name":"www","protocol":"tcp","port":0}"#).is_err());
        assert!(p(r#"{"name":"www","protocol":"tcp","port":65536}"#).is_err());
        assert!(p(r#"{"name":"www","protocol":"tcp","port":65535,"count":2}"#).is_err());
        assert!(p(r#"{"protocol":"tcp","port":80}"#).is_err());
        assert!(p(r#"{"name":"www","port":80}"#).is_err());
        assert!(p(r#"{"name":"www","protocol":"tcp","port":80},{"name":"www","protocol":"udp","port":81}"#).is_err());
    }

    #[test]
    fn supplementary_gids_key_alias_and_sign() {
        let d = decode_document::<App>(r#"{"user":"0","group":"0","supplementaryGids":[1,2]}"#)
            .unwrap();
        assert_eq!(d.value.supplementary_gids, vec![1, 2]);
        assert_eq!(d.warnings.len(), 1);
        assert!(app(r#"{"user":"0","group":"0","supplementaryGIDs":[-1]}"#).is_err());
    }

    #[test]
    fn user_maps_must_hold_strings() {
        assert!(app(r#"{"user":"0","group":"0","userLabels":{"a":"b"}}"#).is_ok());
        let e = app(r#"{"user":"0","group":"0","userLabels":{"a":1}}"#).unwrap_err();
        assert_eq!(e, "userLabels.a: expected a string, found a number");
    }
}
