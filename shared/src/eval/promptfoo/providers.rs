//! promptfoo's `providers` (and its grader, `defaultTest.options.provider`) as ai-runner
//! targets: the caller's mapping (`--provider ID=TARGET`, by label or id) first, then ai-runner's
//! own ids (`ai-runner:config:KEY`, `ai-runner:route:PROJECT/ROUTE`) and `echo`.
//!
//! Invariants: a provider with no mapping is an error finding naming the flag that maps it,
//! never a skipped target; `echo` never grades.

use serde_json::{Value, json};

use super::ProviderMap;
use super::testcases::Test;
use crate::catalog::fields::Ctx;
use crate::code::Code;
use crate::eval::suite::Target;

/// promptfoo's providers as targets.
pub(super) fn providers(v: Option<&Value>, map: &ProviderMap, cx: &mut Ctx) -> Vec<Target> {
    let mut list: Vec<(String, Value)> = Vec::new();
    match v {
        None | Some(Value::Null) => {
            cx.err(
                "providers",
                Code::MissingField,
                "a promptfoo config needs providers",
            );
        }
        Some(s @ Value::String(_)) => list.push(("providers".into(), s.clone())),
        Some(Value::Array(a)) => list.extend(
            a.iter()
                .enumerate()
                .map(|(i, p)| (format!("providers[{i}]"), p.clone())),
        ),
        Some(_) => cx.err("providers", Code::BadType, "expected a list of providers"),
    }
    let mut out: Vec<Target> = Vec::new();
    for (at, p) in list {
        let (id, label) = match &p {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) if o.contains_key("id") => {
                for k in o.keys() {
                    match k.as_str() {
                        "id" | "label" => {}
                        "config" if o["config"].as_object().is_some_and(|c| !c.is_empty()) => cx.warn(
                            format!("{at}.config"),
                            Code::UnsupportedFeature,
                            "a provider's config is not applied: the target's own model and params are",
                        ),
                        "config" | "delay" | "env" => {}
                        other => cx.err(format!("{at}.{other}"), Code::UnsupportedFeature, format!("a provider's {other} is not supported")),
                    }
                }
                (
                    o.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    o.get("label").and_then(Value::as_str).map(str::to_owned),
                )
            }
            // The `{id: {config}}` form.
            Value::Object(o) if o.len() == 1 => match o.keys().next() {
                Some(k) => (k.clone(), None),
                None => continue,
            },
            _ => {
                cx.err(
                    &at,
                    Code::BadType,
                    "a provider is an id or {id, label, config}",
                );
                continue;
            }
        };
        match resolve(&id, label.as_deref(), map) {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => {}
            None => cx.err(&at, Code::UnsupportedFeature, unmapped(&id)),
        }
    }
    out
}

/// A provider id (or its label) as a target: the caller's mapping first, then ai-runner's ids.
fn resolve(id: &str, label: Option<&str>, map: &ProviderMap) -> Option<Target> {
    if let Some((_, t)) = map
        .iter()
        .find(|(k, _)| Some(k.as_str()) == label || k == id)
    {
        return Some(t.clone());
    }
    if id == "echo" || id == "promptfoo:echo" {
        return Some(Target::Echo);
    }
    if let Some(key) = id.strip_prefix("ai-runner:config:") {
        return Target::parse(&format!("config:{key}"));
    }
    if let Some(route) = id.strip_prefix("ai-runner:route:") {
        return Target::parse(&format!("route:{route}"))
            .filter(|t| matches!(t, Target::Route { .. }));
    }
    None
}

fn unmapped(id: &str) -> String {
    format!(
        "no mapping for provider {id:?}: map it with --provider '{id}=config:KEY' (or route:PROJECT/ROUTE), or write ai-runner:config:KEY"
    )
}

/// The judge of `llm-rubric`: `defaultTest.options.provider`, else the mapping's `grader`.
pub(super) fn grader(
    default: &Test,
    map: &ProviderMap,
    needed: bool,
    cx: &mut Ctx,
) -> Option<String> {
    let asked = match default.options.get("provider") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
            Some(id) => Some(id.to_owned()),
            None => {
                cx.err(
                    "defaultTest.options.provider",
                    Code::UnsupportedFeature,
                    "a grader is a provider id or {id}",
                );
                return None;
            }
        },
        Some(_) => {
            cx.err(
                "defaultTest.options.provider",
                Code::BadType,
                "a grader is a provider id or {id}",
            );
            return None;
        }
    };
    let target = match &asked {
        Some(id) => match resolve(id, None, map) {
            Some(t) => t,
            None => {
                cx.err(
                    "defaultTest.options.provider",
                    Code::UnsupportedFeature,
                    unmapped(id),
                );
                return None;
            }
        },
        None => match map.iter().find(|(k, _)| k == "grader") {
            Some((_, t)) => t.clone(),
            None if needed => {
                cx.err("defaultTest.options.provider", Code::MissingField, "llm-rubric needs a grader: set defaultTest.options.provider or map --provider grader=config:KEY");
                return None;
            }
            None => return None,
        },
    };
    match target {
        Target::Echo => {
            cx.err(
                "defaultTest.options.provider",
                Code::UnsupportedFeature,
                "echo cannot grade",
            );
            None
        }
        t @ Target::Config { .. } => Some(format!("config:{}", t.label())),
        t => Some(t.label()),
    }
}

pub(super) fn target_doc(t: &Target) -> Value {
    match t {
        Target::Config { config_key } => json!({"config": config_key}),
        Target::Route { .. } => json!({"route": t.label()}),
        Target::Echo => json!({"echo": true}),
    }
}
