//! The readers a suite and its cases share: targets, assertions, fractions, bounded counts and
//! gates, each reporting what it cannot read at its YAML path.
//!
//! Invariants: a reader returns a usable value (empty, or its default) beside its finding, so
//! reading goes on and every problem is reported at once.

use serde_json::{Map, Value};

use super::{Gates, Target};
use crate::catalog::fields::{Ctx, check_keys, items};
use crate::code::Code;
use crate::eval::assert::Assertion;

pub(super) fn targets(s: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Vec<Target> {
    let mut out = Vec::new();
    for (tp, t) in items(s, "targets", cx) {
        let tp = format!("{path}.{tp}");
        check_keys(t, &["route", "config", "echo"], &tp, cx);
        let parsed = match (t.get("route"), t.get("config"), t.get("echo")) {
            (Some(Value::String(r)), None, None) => {
                Target::parse(&format!("route:{r}")).filter(|t| matches!(t, Target::Route { .. }))
            }
            (None, Some(Value::String(c)), None) => Target::parse(&format!("config:{c}")),
            (None, None, Some(Value::Bool(true))) => Some(Target::Echo),
            _ => None,
        };
        match parsed {
            Some(t) => out.push(t),
            None => cx.err(
                tp,
                Code::BadType,
                "a target is {route: project/route_key}, {config: config_key} or {echo: true}",
            ),
        }
    }
    if out.is_empty() {
        cx.err(
            format!("{path}.targets"),
            Code::MissingField,
            "at least one target is needed",
        );
    }
    out
}

pub(super) fn assertions(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Vec<Assertion> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .filter_map(
                |(i, a)| match Assertion::parse(a, &format!("{path}[{i}]")) {
                    Ok(a) => Some(a),
                    Err((at, message)) => {
                        cx.err(at, Code::BadType, message);
                        None
                    }
                },
            )
            .collect(),
        Some(_) => {
            cx.err(path, Code::BadType, "expected a list of assertions");
            Vec::new()
        }
    }
}

pub(super) fn fraction(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Option<f64> {
    match v {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_f64().filter(|f| (0.0..=1.0).contains(f)) {
            Some(f) => Some(f),
            None => {
                cx.err(path, Code::BadType, "expected a number from 0 to 1");
                None
            }
        },
    }
}

pub(super) fn count(v: Option<&Value>, path: &str, default: u64, max: u64, cx: &mut Ctx) -> u64 {
    match v {
        None | Some(Value::Null) => default,
        Some(x) => match x.as_u64().filter(|n| (1..=max).contains(n)) {
            Some(n) => n,
            None => {
                cx.err(
                    path,
                    Code::BadType,
                    format!("expected a whole number from 1 to {max}"),
                );
                default
            }
        },
    }
}

pub(super) fn gates(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Gates {
    let mut g = Gates::default();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return g;
    };
    let Some(o) = v.as_object() else {
        cx.err(path, Code::BadType, "expected a mapping");
        return g;
    };
    check_keys(o, &["min_pass_rate", "cutoffs"], path, cx);
    g.min_pass_rate = fraction(o.get("min_pass_rate"), &format!("{path}.min_pass_rate"), cx);
    if let Some(c) = o.get("cutoffs").filter(|c| !c.is_null()) {
        match c.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if let Some(f) = fraction(Some(v), &format!("{path}.cutoffs.{k}"), cx) {
                        g.cutoffs.push((k.clone(), f));
                    }
                }
            }
            None => cx.err(
                format!("{path}.cutoffs"),
                Code::BadType,
                "expected metric: minimum",
            ),
        }
    }
    g
}
