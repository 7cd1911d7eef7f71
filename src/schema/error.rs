//! Errors of the schema layer.
//!
//! Two levels: [`InvalidValue`] says why one scalar is not a valid appc value (it knows nothing of
//! where the value sits), and [`SchemaError`] places a problem at a JSON path inside a manifest,
//! e.g. `apps[1].app.isolators[0].value.limit: "1X" is not a resource quantity`.

use std::borrow::Cow;
use std::fmt;

/// A scalar that failed its type's rule. Produced by the `FromStr`/`TryFrom` of every newtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}{}", reason_suffix(.reason))]
pub struct InvalidValue {
    /// The offending input, as given.
    pub value: String,
    /// What it should have been, with its article: "an AC Name", "a resource quantity".
    pub expected: &'static str,
    /// Why not, when the type can say more than "it isn't".
    pub reason: Option<Cow<'static, str>>,
}

fn reason_suffix(reason: &Option<Cow<'static, str>>) -> String {
    reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

impl InvalidValue {
    pub fn new(value: impl Into<String>, expected: &'static str) -> Self {
        InvalidValue {
            value: value.into(),
            expected,
            reason: None,
        }
    }

    pub fn because(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// One problem found in a manifest, at a JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The document is not JSON at all.
    #[error("line {line}, column {column}: not valid JSON: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A required field is absent (or `null`).
    #[error("{path}: required field is missing")]
    Missing { path: String },
    /// The field holds the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A scalar broke its type's rule.
    #[error("{path}: {source}")]
    Value { path: String, source: InvalidValue },
    /// A structural rule of the spec is broken (duplicates, scope, conflicts).
    #[error("{path}: {rule}")]
    Rule { path: String, rule: String },
}

impl SchemaError {
    /// The JSON path the problem sits at (empty for syntax errors and the document root).
    pub fn path(&self) -> &str {
        match self {
            SchemaError::Syntax { .. } => "",
            SchemaError::Missing { path }
            | SchemaError::WrongType { path, .. }
            | SchemaError::Value { path, .. }
            | SchemaError::Rule { path, .. } => path,
        }
    }
}

/// Every problem of one document, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaErrors(Vec<SchemaError>);

impl SchemaErrors {
    pub(crate) fn new(errors: Vec<SchemaError>) -> Self {
        debug_assert!(!errors.is_empty());
        SchemaErrors(errors)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SchemaError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<SchemaError> {
        self.0
    }
}

impl fmt::Display for SchemaErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SchemaErrors {}

/// Something accepted under the strictness policy (see the module docs) that a stricter reading of
/// the spec would refuse, or that will not do what the author may expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
