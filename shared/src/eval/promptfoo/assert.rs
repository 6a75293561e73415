//! One promptfoo assertion translated into ai-runner's: the types both have keep promptfoo's
//! value forms (comma-separated lists, YAML schemas, `file://` values) and are rendered with the
//! test's vars, as promptfoo renders them before grading.
//!
//! Invariants: what ai-runner cannot honour (code assertions, webhooks, `similar`,
//! per-assertion graders, transforms, unknown types) is an error finding at the assertion's
//! path, never an assertion that passes; every translated assertion has been parsed by
//! [`Assertion::parse`], so the suite reader cannot refuse it later.

use std::path::Path;

use serde_json::{Map, Value};

use super::expected::{PROMPTFOO_TYPES, split_commas};
use super::template::render_value;
use super::{Reader, files};
use crate::catalog::fields::Ctx;
use crate::code::Code;
use crate::eval::assert::Assertion;

/// The types ai-runner grades as promptfoo does (same name, same meaning).
const SHARED: [&str; 16] = [
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "regex",
    "is-json",
    "contains-json",
    "levenshtein",
    "latency",
    "cost",
    "finish-reason",
    "llm-rubric",
];

const KEYS: [&str; 10] = [
    "type",
    "value",
    "threshold",
    "weight",
    "metric",
    "provider",
    "rubricPrompt",
    "transform",
    "contextTransform",
    "config",
];

/// The ai-runner assertion for promptfoo's `a` (at `path`), values rendered with `vars`; `None`
/// with a finding when it cannot be honoured.
pub(super) fn translate(
    a: &Value,
    vars: &Map<String, Value>,
    rd: &Reader<'_>,
    path: &str,
    cx: &mut Ctx,
) -> Option<Value> {
    let (env, dir) = (&rd.env, rd.dir);
    let Some(o) = a.as_object() else {
        cx.err(path, Code::BadType, "an assertion is a mapping with a type");
        return None;
    };
    let Some(ty) = o.get("type").and_then(Value::as_str) else {
        cx.err(
            format!("{path}.type"),
            Code::MissingField,
            "type is required",
        );
        return None;
    };
    let base = ty.strip_prefix("not-").unwrap_or(ty);
    if ty == "assert-set" {
        return set(o, vars, rd, path, cx);
    }
    if !SHARED.contains(&base) && rd.skip_unsupported && PROMPTFOO_TYPES.contains(&base) {
        return Some(unsupported(ty, o, path, cx));
    }
    if !SHARED.contains(&base) {
        let why = if ["javascript", "python", "ruby", "webhook"].contains(&base) {
            format!("{ty} runs code or calls a service; ai-runner grades only declared assertions")
        } else if base.starts_with("similar") {
            format!("{ty} needs embeddings, which ai-runner does not compute yet")
        } else if PROMPTFOO_TYPES.contains(&base)
            || ["select-best", "human", "max-score"].contains(&base)
        {
            format!("promptfoo's {ty} has no ai-runner equivalent")
        } else {
            format!("unknown assertion type {ty:?}")
        };
        let code = if PROMPTFOO_TYPES.contains(&base) {
            Code::UnsupportedFeature
        } else {
            Code::BadType
        };
        cx.err(format!("{path}.type"), code, why);
        return None;
    }
    let mut ok = true;
    for k in o.keys() {
        match k.as_str() {
            "provider" | "rubricPrompt" | "transform" | "contextTransform"
                if rd.skip_unsupported =>
            {
                return Some(unsupported(ty, o, &format!("{path}.{k}"), cx));
            }
            "provider" | "rubricPrompt" | "transform" | "contextTransform" => {
                cx.err(
                    format!("{path}.{k}"),
                    Code::UnsupportedFeature,
                    format!(
                        "{k} is not supported: the suite's grader and the answer as given are used"
                    ),
                );
                ok = false;
            }
            "config" => cx.warn(
                format!("{path}.config"),
                Code::UnsupportedFeature,
                "an assertion's config is not used",
            ),
            k if !KEYS.contains(&k) => {
                cx.err(
                    format!("{path}.{k}"),
                    Code::UnknownKey,
                    format!("unknown key {k:?} (known: {})", KEYS.join(", ")),
                );
                ok = false;
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(ty.to_owned()));
    if let Some(v) = o.get("value").filter(|v| !v.is_null()) {
        let v = match v.as_str().and_then(|s| s.strip_prefix("file://")) {
            Some(file) => match value_file(dir, file) {
                Ok(v) => v,
                Err(why) => {
                    cx.err(format!("{path}.value"), Code::IoError, why);
                    return None;
                }
            },
            None => v.clone(),
        };
        let v = match render_value(env, &v, vars) {
            Ok(v) => v,
            Err(why) => {
                cx.err(format!("{path}.value"), Code::UnfilledPlaceholder, why);
                return None;
            }
        };
        let v = match (base, v) {
            (
                "contains-any" | "contains-all" | "icontains-any" | "icontains-all",
                Value::String(s),
            ) => Value::from(split_commas(&s)),
            // promptfoo takes a JSON Schema written as YAML (or JSON) text.
            ("is-json", Value::String(s)) => match serde_yaml_ng::from_str::<Value>(&s) {
                Ok(schema @ Value::Object(_)) => schema,
                _ => {
                    cx.err(
                        format!("{path}.value"),
                        Code::BadType,
                        "is-json's value is a JSON Schema",
                    );
                    return None;
                }
            },
            ("contains-json", _) => {
                cx.err(
                    format!("{path}.value"),
                    Code::UnsupportedFeature,
                    "contains-json with a schema is not supported yet (is-json takes one)",
                );
                return None;
            }
            (_, v) => v,
        };
        out.insert("value".into(), v);
    }
    for k in ["threshold", "weight", "metric"] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    let out = Value::Object(out);
    if let Err((at, message)) = Assertion::parse(&out, path) {
        cx.err(at, Code::BadType, message);
        return None;
    }
    ok.then_some(out)
}

/// promptfoo's `assert-set`: its members translated at `path.assert[i]`, its threshold, weight
/// and metric kept.
fn set(
    o: &Map<String, Value>,
    vars: &Map<String, Value>,
    rd: &Reader<'_>,
    path: &str,
    cx: &mut Ctx,
) -> Option<Value> {
    let mut ok = true;
    for k in o.keys() {
        if !["type", "assert", "threshold", "weight", "metric", "config"].contains(&k.as_str()) {
            cx.err(
                format!("{path}.{k}"),
                Code::UnknownKey,
                format!(
                    "unknown key {k:?} (an assert-set takes assert, threshold, weight, metric)"
                ),
            );
            ok = false;
        }
    }
    let Some(list) = o.get("assert").and_then(Value::as_array) else {
        cx.err(
            format!("{path}.assert"),
            Code::MissingField,
            "an assert-set needs an assert list",
        );
        return None;
    };
    let members: Vec<Option<Value>> = list
        .iter()
        .enumerate()
        .map(|(i, m)| translate(m, vars, rd, &format!("{path}.assert[{i}]"), cx))
        .collect();
    let mut out = Map::new();
    out.insert("type".into(), Value::String("assert-set".into()));
    out.insert(
        "assert".into(),
        Value::Array(members.iter().flatten().cloned().collect()),
    );
    for k in ["threshold", "weight", "metric"] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if !ok || members.iter().any(Option::is_none) {
        return None;
    }
    let out = Value::Object(out);
    if let Err((at, message)) = Assertion::parse(&out, path) {
        cx.err(at, Code::BadType, message);
        return None;
    }
    Some(out)
}

/// `--skip-unsupported`: what cannot be honoured is kept as an `unsupported` assertion (shown
/// as not evaluated, never passed) with a warning at `at`, instead of stopping the run.
fn unsupported(ty: &str, o: &Map<String, Value>, at: &str, cx: &mut Ctx) -> Value {
    cx.warn(
        at,
        Code::UnsupportedFeature,
        format!("{ty} cannot be honoured: reported as not evaluated (--skip-unsupported)"),
    );
    let mut out = Map::new();
    out.insert("type".into(), Value::String("unsupported".into()));
    out.insert("value".into(), Value::String(ty.to_owned()));
    for k in ["weight", "metric"] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// An assertion value read from a file beside the config: `.json` and `.yaml` parsed, anything
/// else as text; code files are refused.
fn value_file(dir: &Path, file: &str) -> Result<Value, String> {
    if files::is_code(file) {
        return Err(format!("{file} is code; ai-runner runs none"));
    }
    let text = files::read(dir, file)?;
    if file.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))
    } else if file.ends_with(".yaml") || file.ends_with(".yml") {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{file}: {e}"))
    } else {
        Ok(Value::String(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(a: Value, vars: Value) -> (Option<Value>, Vec<(String, Code)>) {
        let rd = Reader {
            env: super::super::template::environment(),
            dir: Path::new("."),
            skip_unsupported: false,
        };
        let mut cx = Ctx::default();
        let out = translate(
            &a,
            vars.as_object().unwrap(),
            &rd,
            "tests[0].assert[0]",
            &mut cx,
        );
        let f = cx.findings.into_iter().map(|f| (f.path, f.code)).collect();
        (out, f)
    }

    #[test]
    fn shared_types_keep_promptfoo_value_forms_rendered_with_the_vars() {
        let (a, f) = one(
            json!({"type": "contains-any", "value": "{{city}}, Lyon", "weight": 2, "metric": "geo"}),
            json!({"city": "Paris"}),
        );
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(
            a.unwrap(),
            json!({"type": "contains-any", "value": ["Paris", "Lyon"], "weight": 2, "metric": "geo"})
        );
        let (a, _) = one(
            json!({"type": "is-json", "value": "type: object\nrequired: [name]"}),
            json!({}),
        );
        assert_eq!(
            a.unwrap()["value"],
            json!({"type": "object", "required": ["name"]})
        );
        let (a, _) = one(
            json!({"type": "not-icontains", "value": "sorry"}),
            json!({}),
        );
        assert_eq!(a.unwrap()["type"], "not-icontains");
    }

    #[test]
    fn what_cannot_be_honoured_is_a_finding_at_its_path() {
        for (a, at, code) in [
            (
                json!({"type": "javascript", "value": "output.length > 1"}),
                "tests[0].assert[0].type",
                Code::UnsupportedFeature,
            ),
            (
                json!({"type": "similar", "value": "x"}),
                "tests[0].assert[0].type",
                Code::UnsupportedFeature,
            ),
            (
                json!({"type": "assert-set", "assert": []}),
                "tests[0].assert[0].assert",
                Code::BadType,
            ),
            (
                json!({"type": "assert-set", "assert": [{"type": "python", "value": "x"}]}),
                "tests[0].assert[0].assert[0].type",
                Code::UnsupportedFeature,
            ),
            (
                json!({"type": "sounds-right"}),
                "tests[0].assert[0].type",
                Code::BadType,
            ),
            (
                json!({"type": "llm-rubric", "value": "ok", "provider": "openai:gpt-4o"}),
                "tests[0].assert[0].provider",
                Code::UnsupportedFeature,
            ),
            (
                json!({"type": "contains", "value": "x", "transform": "output.trim()"}),
                "tests[0].assert[0].transform",
                Code::UnsupportedFeature,
            ),
            (
                json!({"type": "contains", "value": "{{nope}}"}),
                "tests[0].assert[0].value",
                Code::UnfilledPlaceholder,
            ),
            (
                json!({"type": "regex", "value": "("}),
                "tests[0].assert[0].value",
                Code::BadType,
            ),
            (
                json!({"type": "contains", "value": "file://missing.txt"}),
                "tests[0].assert[0].value",
                Code::IoError,
            ),
        ] {
            let (out, f) = one(a.clone(), json!({}));
            assert!(out.is_none(), "{a}");
            assert!(f.contains(&(at.to_owned(), code)), "{a}: {f:?}");
        }
    }
}
