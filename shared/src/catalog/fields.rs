//! Reading raw YAML mappings field by field, recording every problem with its path instead of
//! stopping at the first.
//!
//! Invariants: a reader never panics on any input; it returns `None` (or the field's default) and
//! records a finding; paths are YAML paths (`configs[2].model`).

use serde_json::{Map, Value};

use super::types::{Member, PromptRef};
use super::{Finding, Severity};
use crate::code::Code;

/// The findings of one pass over a file.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// Everything found so far, in file order.
    pub(crate) findings: Vec<Finding>,
}

impl Ctx {
    /// Records an error.
    pub(crate) fn err(&mut self, path: impl Into<String>, code: Code, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Error,
            path: path.into(),
            code,
            message: message.into(),
        });
    }
    /// Records a warning.
    pub(crate) fn warn(&mut self, path: impl Into<String>, code: Code, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            path: path.into(),
            code,
            message: message.into(),
        });
    }
}

pub(crate) fn check_keys(o: &Map<String, Value>, known: &[&str], path: &str, cx: &mut Ctx) {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            cx.err(
                format!("{path}.{k}"),
                Code::UnknownKey,
                format!("unknown key {k:?} (known: {})", known.join(", ")),
            );
        }
    }
}

pub(crate) fn req_str(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    cx: &mut Ctx,
) -> Option<String> {
    match o.get(key) {
        Some(v) => match scalar_text(v).filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(s),
            None => {
                cx.err(
                    format!("{path}.{key}"),
                    Code::BadType,
                    "expected a non-empty string",
                );
                None
            }
        },
        None => {
            cx.err(
                format!("{path}.{key}"),
                Code::MissingField,
                format!("{key} is required"),
            );
            None
        }
    }
}

pub(crate) fn opt_str(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    cx: &mut Ctx,
) -> Option<String> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(v) {
            Some(s) => Some(s),
            None => {
                cx.err(format!("{path}.{key}"), Code::BadType, "expected a string");
                None
            }
        },
    }
}

pub(crate) fn opt_bool(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx) -> bool {
    match o.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => crate::config::value_flag(v).unwrap_or_else(|| {
            cx.err(
                format!("{path}.{key}"),
                Code::BadType,
                "expected true or false",
            );
            true
        }),
    }
}

pub(crate) fn opt_obj(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    cx: &mut Ctx,
) -> Option<Map<String, Value>> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            cx.err(format!("{path}.{key}"), Code::BadType, "expected a mapping");
            None
        }
    }
}

pub(crate) fn opt_int(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    cx: &mut Ctx,
    min: i64,
) -> i64 {
    match o.get(key) {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_i64().filter(|n| *n >= min) {
            Some(n) => n,
            None => {
                cx.err(
                    format!("{path}.{key}"),
                    Code::BadType,
                    format!("expected a whole number >= {min}"),
                );
                1
            }
        },
    }
}

pub(crate) fn items<'a>(
    root: &'a Map<String, Value>,
    section: &str,
    cx: &mut Ctx,
) -> Vec<(String, &'a Map<String, Value>)> {
    match root.get(section) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let path = format!("{section}[{i}]");
                match v.as_object() {
                    Some(o) => Some((path, o)),
                    None => {
                        cx.err(path, Code::BadType, "expected a mapping");
                        None
                    }
                }
            })
            .collect(),
        Some(_) => {
            cx.err(section, Code::BadType, "expected a list");
            Vec::new()
        }
    }
}

/// Reads `name@version` or `{name, version}`.
pub(crate) fn prompt_ref(v: &Value, path: &str, cx: &mut Ctx) -> Option<PromptRef> {
    match v {
        Value::String(s) => match s.rsplit_once('@') {
            Some((n, ver)) if !n.is_empty() && !ver.is_empty() => Some(PromptRef {
                name: n.into(),
                version: ver.into(),
            }),
            _ => {
                cx.err(
                    path,
                    Code::BadPromptReference,
                    format!("{s:?} is not name@version"),
                );
                None
            }
        },
        Value::Object(o) => {
            check_keys(o, &["name", "version"], path, cx);
            match (
                o.get("name").and_then(Value::as_str),
                o.get("version").and_then(scalar_text),
            ) {
                (Some(n), Some(v)) => Some(PromptRef {
                    name: n.into(),
                    version: v,
                }),
                _ => {
                    cx.err(path, Code::BadPromptReference, "expected {name, version}");
                    None
                }
            }
        }
        _ => {
            cx.err(
                path,
                Code::BadPromptReference,
                "expected name@version or {name, version}",
            );
            None
        }
    }
}

pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a route's `members` list.
pub(crate) fn members(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Vec<Member> {
    let mut out = Vec::new();
    for (mp, m) in items(o, "members", cx) {
        let mp = format!("{path}.{mp}");
        check_keys(m, &["config_key", "priority", "weight", "active"], &mp, cx);
        if let Some(config_key) = req_str(m, "config_key", &mp, cx) {
            out.push(Member {
                config_key,
                priority: opt_int(m, "priority", &mp, cx, i64::MIN),
                weight: opt_int(m, "weight", &mp, cx, 0),
                active: opt_bool(m, "active", &mp, cx),
            });
        }
    }
    out
}

/// Whether any error (not warning) was found so far.
pub(crate) fn has_errors(cx: &Ctx) -> bool {
    cx.findings.iter().any(|f| f.severity == Severity::Error)
}
