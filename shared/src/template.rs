//! Templates: `{{NAME}}` placeholders in prompt strings, found and filled.
//!
//! One reading of the placeholder syntax for every module that touches it (the request builder,
//! the catalog's verifier, evaluations, the console's try-it form), so what the verifier warns
//! about is exactly what the runner would leave unfilled.
//!
//! Invariants: a placeholder is `{{` + optional spaces + a name of letters, digits, `_`, `-` or
//! `.` + optional spaces + `}}`; anything else (an unknown name, an unclosed `{{`) is kept
//! verbatim; substitution touches string values only, never keys or raw JSON text.

use serde_json::{Map, Value};

/// Variables the upload pipeline sets at run time: a prompt or an evaluation case may use them
/// without defining them (not reported as unfillable).
pub const RUNTIME_VARS: [&str; 6] = [
    "MEDIA_URL",
    "MEDIA_DATA",
    "MEDIA_FORMAT",
    "MEDIA_KEY",
    "MEDIA_BUCKET",
    "MEDIA_SIZE",
];

/// Replaces `{{NAME}}` in every string value of `v` (keys are left alone).
pub fn substitute(v: Value, vars: &Map<String, Value>) -> Value {
    match v {
        Value::String(s) => Value::String(render(&s, vars)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| substitute(i, vars)).collect())
        }
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| (k, substitute(v, vars)))
                .collect(),
        ),
        other => other,
    }
}

/// Renders one template string; unknown placeholders are kept verbatim.
pub fn render(template: &str, vars: &Map<String, Value>) -> String {
    if !template.contains("{{") {
        return template.to_owned();
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.get(name).filter(|_| is_var_name(name)) {
                    Some(value) => out.push_str(&value_text(value)),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholders still present in `s`.
pub fn placeholders(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if is_var_name(name) {
            found.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    found
}

/// Every string value inside `v`, depth first.
pub fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(o) => o.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn placeholders_are_found_with_spaces_and_bad_names_are_skipped() {
        assert_eq!(
            placeholders("{{ A }} {{b.c}} {{}} {{x y}} {{"),
            ["A", "b.c"]
        );
    }

    #[test]
    fn substitution_fills_strings_at_any_depth_and_leaves_keys_alone() {
        let vars = obj(json!({"N": 3, "S": "s", "Z": null}));
        let out = substitute(
            json!({"{{N}}": ["{{N}}", {"k": "{{S}}{{Z}}"}], "n": 1}),
            &vars,
        );
        assert_eq!(out, json!({"{{N}}": ["3", {"k": "s"}], "n": 1}));
    }

    #[test]
    fn strings_are_collected_depth_first() {
        let mut out = Vec::new();
        collect_strings(&json!({"a": ["x", {"b": "y"}], "c": 1}), &mut out);
        assert_eq!(out, ["x", "y"]);
    }
}
