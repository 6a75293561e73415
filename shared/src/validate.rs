//! Output validation: JSON where it was asked for, the no-English rule, and JSON Schema.
//!
//! Invariants: nothing is demanded of content whose request did not ask for JSON (the
//! predecessor forced JSON on everything); with enforcement off nothing is rejected; errors name
//! the first offending JSON path.

use serde_json::Value;

use crate::code::Code;
use crate::request::OutputSpec;

/// The content came back but is not what the request demanded.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// Not JSON though JSON was asked for, or JSON that violates the schema.
    #[error("{0}")]
    SchemaInvalid(String),
    /// A JSON string value holds Latin letters while the no-English rule is on.
    #[error("Latin letters in JSON value at {path}")]
    LetterDetected {
        /// Path of the first offending value, e.g. `$.items[2].name`.
        path: String,
    },
}

impl ValidationError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::SchemaInvalid(_) => Code::SchemaInvalid,
            Self::LetterDetected { .. } => Code::LetterDetected,
        }
    }
}

/// Checks `content` against `spec`; returns the parsed JSON when JSON was asked for.
pub fn check(content: &str, spec: &OutputSpec) -> Result<Option<Value>, ValidationError> {
    if !spec.expects_json {
        return Ok(None);
    }
    let parsed = match serde_json::from_str::<Value>(strip_fence(content)) {
        Ok(v) => v,
        Err(e) if spec.enforce_json => {
            return Err(ValidationError::SchemaInvalid(format!(
                "content is not valid JSON ({e})"
            )));
        }
        Err(_) => return Ok(None),
    };
    if !spec.enforce_json {
        return Ok(Some(parsed));
    }
    if let Some(schema) = &spec.schema {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            ValidationError::SchemaInvalid(format!("the configured JSON schema is invalid: {e}"))
        })?;
        if let Err(e) = validator.validate(&parsed) {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            return Err(ValidationError::SchemaInvalid(format!(
                "content violates the schema at {path}: {e}"
            )));
        }
    }
    if spec.no_english
        && let Some(path) = first_latin_value(&parsed, "$")
    {
        return Err(ValidationError::LetterDetected { path });
    }
    Ok(Some(parsed))
}

/// Models often wrap JSON in a Markdown fence; accept exactly one surrounding fence.
fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("```")
        && let Some(inner) = inner.strip_suffix("```")
    {
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        return inner.trim();
    }
    t
}

/// The path of the first string value (not key) containing `[A-Za-z]`.
pub fn first_latin_value(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) if s.bytes().any(|b| b.is_ascii_alphabetic()) => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_latin_value(item, &format!("{path}[{i}]"))),
        Value::Object(obj) => obj
            .iter()
            .find_map(|(k, item)| first_latin_value(item, &format!("{path}.{k}"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(schema: Option<Value>, no_english: bool) -> OutputSpec {
        OutputSpec {
            expects_json: true,
            schema,
            enforce_json: true,
            no_english,
        }
    }

    #[test]
    fn plain_text_passes_when_json_was_not_asked_for() {
        assert_eq!(check("Hello, world", &OutputSpec::default()).unwrap(), None);
    }

    #[test]
    fn invalid_json_is_schema_invalid_when_json_was_asked_for() {
        let e = check("not json", &spec(None, false)).unwrap_err();
        assert_eq!(e.code(), Code::SchemaInvalid);
        let mut off = spec(None, true);
        off.enforce_json = false;
        assert_eq!(check("not json", &off).unwrap(), None);
    }

    #[test]
    fn a_fenced_json_answer_is_accepted() {
        let v = check("```json\n{\"a\": 1}\n```", &spec(None, false)).unwrap();
        assert_eq!(v, Some(json!({"a": 1})));
    }

    #[test]
    fn latin_letters_in_values_are_detected_but_keys_are_ignored() {
        assert!(check(r#"{"summary": "你好", "n": 3}"#, &spec(None, true)).is_ok());
        let e = check(
            r#"{"summary": "你好", "items": ["好", "ok"]}"#,
            &spec(None, true),
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::LetterDetected);
        assert!(e.to_string().contains("$.items[1]"), "{e}");
        assert!(check(r#"{"items": ["ok"]}"#, &spec(None, false)).is_ok());
    }

    #[test]
    fn schema_violations_name_the_first_failing_path() {
        let schema =
            json!({"type":"object","required":["score"],"properties":{"score":{"type":"integer"}}});
        assert!(check(r#"{"score": 3}"#, &spec(Some(schema.clone()), false)).is_ok());
        let e = check(r#"{"score": "high"}"#, &spec(Some(schema.clone()), false)).unwrap_err();
        assert_eq!(e.code(), Code::SchemaInvalid);
        assert!(e.to_string().contains("/score"), "{e}");
        let e = check(r#"{}"#, &spec(Some(schema), false)).unwrap_err();
        assert!(e.to_string().contains("score"), "{e}");
    }
}
