//! Isolators (stub; being written).
use serde_json::Value;

use super::decode::{Cx, Decode, JsonPath, Obj};
use super::names::AcIdentifier;

/// Where an isolator list sits: pod-level isolators bound app-level ones (spec G1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolatorScope {
    App,
    Pod,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Isolator {
    pub name: AcIdentifier,
    pub value: Value,
}

impl Decode for Isolator {
    fn decode(v: &Value, path: &JsonPath, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(v, path, cx)?;
        let name = o.req("name", cx);
        let value = o.req("value", cx);
        o.finish(cx);
        Some(Isolator {
            name: name?,
            value: value?,
        })
    }
}

/// Checks a whole isolator list: multiplicity, conflicts and scope.
pub fn check_isolators(_list: &[Isolator], _scope: IsolatorScope, _path: &JsonPath, _cx: &mut Cx) {}
