//! A CSV `__expected` cell read by promptfoo's prefix rules: `javascript:` / `fn:` / `eval:`,
//! `python:`, `grade:` / `llm-rubric:`, `[not-]TYPE[(THRESHOLD)][:VALUE]` for promptfoo's
//! assertion types, else an exact match (`equals`).
//!
//! Invariants: the result is a promptfoo assertion (JSON), translated like any other; a cell
//! never fails to read here (what cannot run is refused by the translation, with the cell's
//! path).

use serde_json::{Value, json};

/// promptfoo's base assertion types (0.121): the names the `TYPE:` prefix recognises.
pub(super) const PROMPTFOO_TYPES: [&str; 66] = [
    "agent-rubric",
    "answer-relevance",
    "bleu",
    "classifier",
    "contains",
    "contains-all",
    "contains-any",
    "contains-html",
    "contains-json",
    "contains-sql",
    "contains-xml",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "conversation-relevance",
    "cost",
    "equals",
    "factuality",
    "finish-reason",
    "g-eval",
    "gleu",
    "guardrails",
    "icontains",
    "icontains-all",
    "icontains-any",
    "is-html",
    "is-json",
    "is-refusal",
    "is-sql",
    "is-valid-function-call",
    "is-valid-openai-function-call",
    "is-valid-openai-tools-call",
    "is-xml",
    "javascript",
    "latency",
    "levenshtein",
    "llm-rubric",
    "pi",
    "meteor",
    "model-graded-closedqa",
    "model-graded-factuality",
    "moderation",
    "perplexity",
    "perplexity-score",
    "python",
    "regex",
    "rouge-n",
    "ruby",
    "similar",
    "similar:cosine",
    "similar:dot",
    "similar:euclidean",
    "starts-with",
    "tool-call-f1",
    "skill-used",
    "trajectory:goal-success",
    "trajectory:tool-args-match",
    "trajectory:step-count",
    "trajectory:tool-sequence",
    "trajectory:tool-used",
    "trace-error-spans",
    "trace-span-count",
    "trace-span-duration",
    "search-rubric",
    "webhook",
    "word-count",
];

/// Types whose prefix form takes `(THRESHOLD)`, with promptfoo's default when it is left out
/// (0.8 for `similar`, else 0.75: a `levenshtein:` cell allows no edit).
const THRESHOLD_TYPES: [&str; 13] = [
    "answer-relevance",
    "classifier",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "cost",
    "latency",
    "levenshtein",
    "perplexity-score",
    "perplexity",
    "rouge-n",
    "similar",
    "starts-with",
];

/// The promptfoo assertion an `__expected` cell stands for.
pub(super) fn assertion_from_string(cell: &str) -> Value {
    for (prefix, ty) in [
        ("javascript:", "javascript"),
        ("fn:", "javascript"),
        ("eval:", "javascript"),
        ("python:", "python"),
    ] {
        if let Some(rest) = cell.strip_prefix(prefix) {
            return json!({"type": ty, "value": rest.trim()});
        }
    }
    if let Some(path) = cell.strip_prefix("file://") {
        let ty = if path.ends_with(".py") || path.contains(".py:") {
            Some("python")
        } else if [".js", ".ts", ".mjs", ".cjs"]
            .iter()
            .any(|e| path.ends_with(e) || path.contains(&format!("{e}:")))
        {
            Some("javascript")
        } else {
            None
        };
        if let Some(ty) = ty {
            return json!({"type": ty, "value": path.trim()});
        }
    }
    for prefix in ["grade:", "llm-rubric:"] {
        if let Some(rest) = cell.strip_prefix(prefix) {
            return json!({"type": "llm-rubric", "value": rest});
        }
    }
    match typed(cell) {
        Some(a) => a,
        None => json!({"type": "equals", "value": cell}),
    }
}

/// `[not-]TYPE[(THRESHOLD)][:VALUE]`, when TYPE is one of promptfoo's: the first name in
/// promptfoo's order that lets the whole cell fit, as its regular expression's alternation
/// picks (`similar:cosine:x` is `similar` with the value `cosine:x`).
fn typed(cell: &str) -> Option<Value> {
    let (not, rest) = match cell.strip_prefix("not-") {
        Some(r) => ("not-", r),
        None => ("", cell),
    };
    PROMPTFOO_TYPES
        .iter()
        .filter_map(|ty| {
            let after = rest.strip_prefix(ty)?;
            let (threshold, after) = match after.strip_prefix('(') {
                Some(a) => {
                    let (num, tail) = a.split_once(')')?;
                    let ok = !num.is_empty()
                        && num.split_once('.').map_or(
                            num.chars().all(|c| c.is_ascii_digit()),
                            |(i, f)| {
                                !i.is_empty()
                                    && !f.is_empty()
                                    && i.chars().chain(f.chars()).all(|c| c.is_ascii_digit())
                            },
                        );
                    if !ok {
                        return None;
                    }
                    (num.parse::<f64>().ok(), tail)
                }
                None => (None, after),
            };
            let value = match after.strip_prefix(':') {
                Some(v) => Some(v),
                None if after.is_empty() => None,
                None => return None,
            };
            Some((ty, threshold, value))
        })
        .next()
        .map(|(ty, threshold, value)| {
            let full = format!("{not}{ty}");
            let mut a = serde_json::Map::new();
            a.insert("type".into(), Value::String(full));
            match *ty {
                "contains-all" | "contains-any" | "icontains-all" | "icontains-any" => {
                    if let Some(v) = value {
                        a.insert("value".into(), Value::from(split_commas(v)));
                    }
                }
                "contains-json" | "is-json" => {
                    if let Some(v) = value {
                        a.insert("value".into(), Value::String(v.to_owned()));
                    }
                }
                t => {
                    if let Some(v) = value {
                        a.insert("value".into(), Value::String(v.trim().to_owned()));
                    }
                    if THRESHOLD_TYPES.contains(&t) {
                        let default = if t == "similar" { 0.8 } else { 0.75 };
                        a.insert(
                            "threshold".into(),
                            Value::from(threshold.unwrap_or(default)),
                        );
                    }
                }
            }
            Value::Object(a)
        })
}

/// promptfoo's comma-separated assertion values: items trimmed, a `"quoted item"` may hold
/// commas (and `""` for a quote).
pub(super) fn split_commas(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut item = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
            out.push(item);
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            out.push(item.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_read_as_promptfoo_reads_them() {
        assert_eq!(
            assertion_from_string("contains:Paris"),
            json!({"type": "contains", "value": "Paris"})
        );
        assert_eq!(
            assertion_from_string("not-icontains: sorry "),
            json!({"type": "not-icontains", "value": "sorry"})
        );
        assert_eq!(
            assertion_from_string("contains-any:a, \"b, c\",d"),
            json!({"type": "contains-any", "value": ["a", "b, c", "d"]})
        );
        assert_eq!(
            assertion_from_string("levenshtein(3):hello"),
            json!({"type": "levenshtein", "value": "hello", "threshold": 3.0})
        );
        assert_eq!(
            assertion_from_string("levenshtein:hello"),
            json!({"type": "levenshtein", "value": "hello", "threshold": 0.75})
        );
        assert_eq!(
            assertion_from_string("similar:close to this"),
            json!({"type": "similar", "value": "close to this", "threshold": 0.8})
        );
        assert_eq!(assertion_from_string("is-json"), json!({"type": "is-json"}));
        assert_eq!(
            assertion_from_string("grade:is polite"),
            json!({"type": "llm-rubric", "value": "is polite"})
        );
        assert_eq!(
            assertion_from_string("javascript: output.length > 3")["type"],
            "javascript"
        );
        assert_eq!(assertion_from_string("file://check.py")["type"], "python");
    }

    #[test]
    fn anything_else_is_an_exact_match() {
        for cell in ["Paris", "containsX:1", "equals(x):y", "Note: fine"] {
            let a = assertion_from_string(cell);
            assert_eq!(a, json!({"type": "equals", "value": cell}));
        }
        assert_eq!(assertion_from_string("Paris")["value"], "Paris");
        assert_eq!(
            assertion_from_string("Note: fine"),
            json!({"type": "equals", "value": "Note: fine"})
        );
        assert_eq!(
            assertion_from_string("contains"),
            json!({"type": "contains"})
        );
    }
}
