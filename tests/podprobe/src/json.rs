//! A tiny JSON value and writer: the probe stays std + libc only (small, fast to build, static).

use std::fmt::Write as _;

/// A JSON value. Objects keep insertion order.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    S(String),
    A(Vec<J>),
    O(Vec<(String, J)>),
}

impl J {
    /// An object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: Vec<(K, J)>) -> J {
        J::O(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Serialises compactly.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::I(i) => {
                let _ = write!(out, "{i}");
            }
            J::U(u) => {
                let _ = write!(out, "{u}");
            }
            J::F(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            J::F(_) => out.push_str("null"),
            J::S(s) => write_str(out, s),
            J::A(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::O(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}
impl From<i64> for J {
    fn from(i: i64) -> J {
        J::I(i)
    }
}
impl From<i32> for J {
    fn from(i: i32) -> J {
        J::I(i.into())
    }
}
impl From<u32> for J {
    fn from(u: u32) -> J {
        J::U(u.into())
    }
}
impl From<u64> for J {
    fn from(u: u64) -> J {
        J::U(u)
    }
}
impl From<f64> for J {
    fn from(f: f64) -> J {
        J::F(f)
    }
}
impl From<&str> for J {
    fn from(s: &str) -> J {
        J::S(s.to_owned())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::S(s)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(o: Option<T>) -> J {
        o.map_or(J::Null, Into::into)
    }
}
impl<T: Into<J>> From<Vec<T>> for J {
    fn from(v: Vec<T>) -> J {
        J::A(v.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::J;

    #[test]
    fn escapes_and_nests() {
        let j = J::obj(vec![
            ("a", J::from("x\"y\\\n\u{1}")),
            ("b", J::from(vec![1u64, 2])),
            ("c", J::Null),
            ("d", J::from(0.5)),
            ("e", J::from(-3i64)),
        ]);
        assert_eq!(
            j.dump(),
            r#"{"a":"x\"y\\\n\u0001","b":[1,2],"c":null,"d":0.5,"e":-3}"#
        );
    }
}
