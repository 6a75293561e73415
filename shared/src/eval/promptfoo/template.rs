//! promptfoo's templates (Nunjucks): prompts and assertion values rendered with a test's vars,
//! by minijinja with Nunjucks' `dump` filter added.
//!
//! Invariants: rendering is strict: a variable the test does not define is an error naming it,
//! never an empty string (a prompt or an assertion that silently lost a value would be graded
//! against the wrong text); nothing is escaped (prompts are not HTML).

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// The environment every promptfoo template renders in.
pub(super) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Nunjucks' `dump` is JSON.stringify; minijinja's `tojson` would escape for HTML.
    env.add_filter(
        "dump",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        },
    );
    env
}

/// `text` rendered with `vars`; the error says what is undefined or does not parse.
pub(super) fn render(
    env: &Environment<'_>,
    text: &str,
    vars: &Map<String, Value>,
) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_owned());
    }
    env.render_str(text, vars).map_err(|e| {
        let mut msg = e.kind().to_string();
        if let Some(detail) = e.detail() {
            msg = format!("{msg}: {detail}");
        }
        if let Some(line) = e.line() {
            msg = format!("{msg} (template line {line})");
        }
        msg
    })
}

/// Every string inside `v` rendered with `vars` (assertion values may be lists and mappings).
pub(super) fn render_value(
    env: &Environment<'_>,
    v: &Value,
    vars: &Map<String, Value>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(render(env, s, vars)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|i| render_value(env, i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, i)| Ok((k.clone(), render_value(env, i, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn variables_dotted_paths_and_common_filters_render_as_nunjucks_does() {
        let env = environment();
        let v = vars(json!({"topic": "bananas", "user": {"name": "Ada"}, "items": ["a", "b"]}));
        assert_eq!(
            render(&env, "Tell me about {{topic}}, {{ user.name | upper }}", &v).unwrap(),
            "Tell me about bananas, ADA"
        );
        assert_eq!(
            render(&env, "{{ items | join(', ') }} {{ items | dump }}", &v).unwrap(),
            "a, b [\"a\",\"b\"]"
        );
        assert_eq!(
            render(&env, "{{ '<b>' }}", &v).unwrap(),
            "<b>",
            "nothing is escaped"
        );
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_problem() {
        let env = environment();
        let e = render(&env, "Hi {{ nope }}", &Map::new()).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let e = render(&env, "{% if %}", &Map::new()).unwrap_err();
        assert!(e.contains("syntax"), "{e}");
    }
}
