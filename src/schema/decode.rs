//! The decoding layer: JSON value → validated schema types, collecting every problem with its path.
//!
//! Why not plain `serde::Deserialize`: serde stops at the first error, cannot match keys
//! case-insensitively (Go's `encoding/json` does, and real manifests carry `supplementaryGids`), and
//! cannot report accepted-but-suspicious input. `appcctl validate` must print one line per
//! problem, so manifests are first parsed into a `serde_json::Value` and then walked here. Writing
//! stays with serde's derived `Serialize`, which gives the canonical form.

use std::fmt;

use serde_json::{Map, Value};

use super::error::{InvalidValue, SchemaError, SchemaErrors, Warning};

/// Where a value sits in a document: `apps[1].app.isolators[0].value.limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// Appends an object key: `a.b` for plain keys, `a["net.ipv4.ip_forward"]` (JSON-escaped)
    /// for any other, so a path is unambiguous and always one line.
    pub fn key(&self, key: &str) -> Self {
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (plain, self.0.is_empty()) {
            (true, true) => JsonPath(key.to_owned()),
            (true, false) => JsonPath(format!("{}.{key}", self.0)),
            (false, _) => {
                let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
                JsonPath(format!("{}[{quoted}]", self.0))
            }
        }
    }

    pub fn index(&self, index: usize) -> Self {
        JsonPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// The decoding context: the problems found so far.
#[derive(Debug, Default)]
pub struct Cx {
    errors: Vec<SchemaError>,
    warnings: Vec<Warning>,
}

impl Cx {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn missing(&mut self, path: &JsonPath) {
        self.errors.push(SchemaError::Missing {
            path: path.to_string(),
        });
    }

    pub fn wrong_type(&mut self, path: &JsonPath, expected: &'static str, found: &Value) {
        let found = json_type(found);
        self.errors.push(SchemaError::WrongType {
            path: path.to_string(),
            expected,
            found,
        });
    }

    pub fn invalid(&mut self, path: &JsonPath, source: InvalidValue) {
        self.errors.push(SchemaError::Value {
            path: path.to_string(),
            source,
        });
    }

    pub fn rule(&mut self, path: &JsonPath, rule: impl Into<String>) {
        self.errors.push(SchemaError::Rule {
            path: path.to_string(),
            rule: rule.into(),
        });
    }

    pub fn warn(&mut self, path: &JsonPath, message: impl Into<String>) {
        let path = path.as_str().to_owned();
        self.warnings.push(Warning {
            path,
            message: message.into(),
        });
    }
}

/// What a JSON value is, with its article, for "expected X, found Y".
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A successfully decoded document and what was accepted with a warning.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    pub value: T,
    pub warnings: Vec<Warning>,
}

/// Types that can be decoded from a JSON value under the strictness policy.
///
/// `None` means a problem was recorded in `cx`; the caller keeps going so that every problem of a
/// document is reported in one pass.
pub trait Decode: Sized {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self>;
}

/// Parses `text` as JSON and decodes it as a `T`, collecting every problem.
pub fn decode_document<T: Decode>(text: &str) -> Result<Decoded<T>, SchemaErrors> {
    decode_value(&parse_json(text)?)
}

/// Parses `text` as JSON; a syntax error becomes the document's one problem, with its position.
pub fn parse_json(text: &str) -> Result<Value, SchemaErrors> {
    serde_json::from_str(text).map_err(|e| {
        let message = strip_position(&e.to_string());
        SchemaErrors::new(vec![SchemaError::Syntax {
            line: e.line(),
            column: e.column(),
            message,
        }])
    })
}

/// Decodes an already parsed JSON value as a `T`, collecting every problem.
pub fn decode_value<T: Decode>(value: &Value) -> Result<Decoded<T>, SchemaErrors> {
    let mut cx = Cx::default();
    let decoded = T::decode(value, &JsonPath::root(), &mut cx);
    match decoded {
        Some(value) if !cx.has_errors() => Ok(Decoded {
            value,
            warnings: cx.warnings,
        }),
        _ => {
            if cx.errors.is_empty() {
                // A decoder returned None without saying why: a bug, but never a silent pass.
                cx.rule(&JsonPath::root(), "document could not be decoded");
            }
            Err(SchemaErrors::new(cx.errors))
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A JSON object being decoded: tracks which keys were read, so the rest can be reported.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: JsonPath,
    used: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    /// Starts decoding `v` as an object; records a type error and returns `None` otherwise.
    pub fn new(v: &'a Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                path: path.clone(),
                used: Vec::new(),
            }),
            other => {
                cx.wrong_type(path, "an object", other);
                None
            }
        }
    }

    pub fn path(&self) -> &JsonPath {
        &self.path
    }

    /// Finds `key`, exactly or, as Go's `encoding/json` does, case-insensitively (with a warning).
    /// A `null` value counts as absent: Go writes `null` for empty lists.
    fn lookup(&mut self, key: &'static str, cx: &mut Cx) -> Option<(JsonPath, &'a Value)> {
        let (found, value) = match self.map.get_key_value(key) {
            Some((k, v)) => (k.as_str(), v),
            None => {
                let (k, v) = self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))?;
                let path = self.path.key(k);
                cx.warn(
                    &path,
                    format!("key {k:?} read as {key:?} (keys are case-sensitive in the spec)"),
                );
                (k.as_str(), v)
            }
        };
        self.used.push(found);
        if value.is_null() {
            None
        } else {
            Some((self.path.key(key), value))
        }
    }

    /// A field the spec requires.
    pub fn req<T: Decode>(&mut self, key: &'static str, cx: &mut Cx) -> Option<T> {
        match self.lookup(key, cx) {
            Some((path, v)) => T::decode(v, &path, cx),
            None => {
                cx.missing(&self.path.key(key));
                None
            }
        }
    }

    /// An optional field: `None` when absent, `null`, or invalid (the problem is then recorded).
    pub fn opt<T: Decode>(&mut self, key: &'static str, cx: &mut Cx) -> Option<T> {
        let (path, v) = self.lookup(key, cx)?;
        T::decode(v, &path, cx)
    }

    /// An optional field decoded by a custom function that also gets the field's path.
    pub fn opt_with<T>(
        &mut self,
        key: &'static str,
        cx: &mut Cx,
        f: impl FnOnce(&'a Value, &JsonPath, &mut Cx) -> Option<T>,
    ) -> Option<T> {
        let (path, v) = self.lookup(key, cx)?;
        f(v, &path, cx)
    }

    /// Whether `key` is present with a non-null value (without consuming it).
    pub fn has(&self, key: &str) -> bool {
        self.map
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
    }

    /// Ends decoding: keys nobody read are reported as warnings (Go ignores them silently, and a
    /// misspelt optional field would otherwise vanish without a trace).
    pub fn finish(self, cx: &mut Cx) {
        for key in self.map.keys() {
            if !self.used.contains(&key.as_str()) {
                cx.warn(&self.path.key(key), "unknown field, ignored");
            }
        }
    }
}

/// Decodes a JSON array element by element; `None` if it is not an array or any element failed.
pub fn decode_list<T>(
    v: &Value,
    path: &JsonPath,
    cx: &mut Cx,
    mut element: impl FnMut(&Value, &JsonPath, &mut Cx) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Array(items) = v else {
        cx.wrong_type(path, "an array", v);
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match element(item, &path.index(i), cx) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Reports every element whose key repeats an earlier one: `what` names the key ("label name").
pub fn check_unique<T, K: PartialEq + fmt::Display>(
    items: &[T],
    path: &JsonPath,
    cx: &mut Cx,
    what: &str,
    key: impl Fn(&T) -> K,
) {
    let keys: Vec<K> = items.iter().map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            cx.rule(
                &path.index(i),
                format!("duplicate {what} {:?}", k.to_string()),
            );
        }
    }
}

/// Like [`decode_list`], but keeps a slot per element (`None` where it failed) so that whole-list
/// rules (isolator scope and conflicts) can still be checked, at the right indices.
pub fn decode_slots<T: Decode>(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Vec<Option<T>>> {
    let Value::Array(items) = v else {
        cx.wrong_type(path, "an array", v);
        return None;
    };
    let slots = items
        .iter()
        .enumerate()
        .map(|(i, item)| T::decode(item, &path.index(i), cx));
    Some(slots.collect())
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        decode_list(v, path, cx, T::decode)
    }
}

impl Decode for String {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                cx.wrong_type(path, "a string", other);
                None
            }
        }
    }
}

impl Decode for bool {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                cx.wrong_type(path, "a boolean", other);
                None
            }
        }
    }
}

impl Decode for Value {
    fn decode(v: &Value, _path: &JsonPath, _cx: &mut Cx) -> Option<Self> {
        Some(v.clone())
    }
}

macro_rules! decode_integer {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
                let n = match v {
                    Value::Number(n) => n,
                    other => {
                        cx.wrong_type(path, "an integer", other);
                        return None;
                    }
                };
                let parsed = n.as_i64().and_then(|i| <$t>::try_from(i).ok())
                    .or_else(|| n.as_u64().and_then(|u| <$t>::try_from(u).ok()));
                if parsed.is_none() {
                    let expected = concat!("an integer in the range of ", stringify!($t));
                    cx.invalid(path, InvalidValue::new(n.to_string(), expected));
                }
                parsed
            }
        }
    )*};
}

decode_integer!(u16, u32, u64, i32, i64);

/// Decodes a JSON string through `T: FromStr<Err = InvalidValue>`: the glue every string
/// newtype uses.
pub fn decode_parsed<T: std::str::FromStr<Err = InvalidValue>>(
    v: &Value,
    path: &JsonPath,
    cx: &mut Cx,
) -> Option<T> {
    let s = String::decode(v, path, cx)?;
    s.parse().map_err(|e| cx.invalid(path, e)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_javascript_accessors() {
        let p = JsonPath::root()
            .key("apps")
            .index(1)
            .key("app")
            .key("isolators")
            .index(0);
        assert_eq!(p.as_str(), "apps[1].app.isolators[0]");
        assert_eq!(JsonPath::root().to_string(), "(top level)");
        let sysctl = JsonPath::root().key("value").key("net.ipv4.ip_forward");
        assert_eq!(sysctl.as_str(), r#"value["net.ipv4.ip_forward"]"#);
        let hostile = JsonPath::root().key("ports").index(0).key("\nhostIP");
        assert_eq!(hostile.as_str(), r#"ports[0]["\nhostIP"]"#);
        assert_eq!(JsonPath::root().key("a b").as_str(), r#"["a b"]"#);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = decode_document::<String>("{\n  \"a\": ,\n}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("line 2, column"), "{msg}");
        assert!(!msg.contains(" at line "), "position repeated: {msg}");
    }

    #[test]
    fn integers_are_range_checked() {
        let err = decode_document::<u16>("70000").unwrap_err();
        assert_eq!(
            err.to_string(),
            "(top level): \"70000\" is not an integer in the range of u16"
        );
        assert_eq!(decode_document::<u16>("65535").unwrap().value, 65535);
        assert!(decode_document::<u32>("-1").is_err());
        assert!(decode_document::<u32>("1.5").is_err());
    }

    #[test]
    fn case_insensitive_keys_warn() {
        #[derive(Debug)]
        struct S(u32);
        impl Decode for S {
            fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
                let mut o = Obj::new(v, path, cx)?;
                let x = o.req("supplementaryGIDs", cx);
                o.finish(cx);
                Some(S(x?))
            }
        }
        let d = decode_document::<S>(r#"{"supplementaryGids": 7, "extra": 1}"#).unwrap();
        assert_eq!(d.value.0, 7);
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(
            d.warnings[1]
                .to_string()
                .starts_with("extra: unknown field")
        );
        let e = decode_document::<S>(r#"{}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "supplementaryGIDs: required field is missing"
        );
    }
}
