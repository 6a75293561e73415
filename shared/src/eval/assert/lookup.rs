//! What an assertion's value refers to: the case's `{{expected}}`, `{{expected.FIELD}}` and
//! `{{vars.NAME}}`, and the JSON paths (`$.a.b[0]`) that select inside an answer.
//!
//! Invariants: a reference nothing fills is kept verbatim when graded, and found before any
//! call by [`super::Assertion::unresolved`]; a bad JSON path is an error, never a silent miss.

use serde_json::{Map, Value};

use super::CaseFields;
use super::grade::as_text;

/// Replaces `{{expected}}`, `{{expected.X}}` and `{{vars.X}}` in a value: a string that is only
/// a reference becomes the referenced value (its JSON type kept); references inside longer
/// strings become text.
pub fn resolve(v: &Value, case: &CaseFields<'_>) -> Value {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
                && !inner.contains("{{")
                && let Some(found) = lookup(inner.trim(), case)
            {
                return found;
            }
            Value::String(crate::template::render(s, &references(s, case)))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, case)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve(x, case)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl super::Assertion {
    /// The references in this assertion's value that nothing in `case` fills (each once, in
    /// order): checked before any call, so a typo is a finding rather than a quiet failure
    /// against the literal text.
    pub fn unresolved(&self, case: &CaseFields<'_>) -> Vec<String> {
        let mut texts = Vec::new();
        if let Some(v) = &self.value {
            crate::template::collect_strings(v, &mut texts);
        }
        let mut out: Vec<String> = Vec::new();
        for name in texts.iter().flat_map(|t| crate::template::placeholders(t)) {
            if lookup(&name, case).is_none() && !out.contains(&name) {
                out.push(name);
            }
        }
        for name in self.members.iter().flat_map(|m| m.unresolved(case)) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

pub(super) fn references(s: &str, case: &CaseFields<'_>) -> Map<String, Value> {
    crate::template::placeholders(s)
        .into_iter()
        .filter_map(|name| lookup(&name, case).map(|v| (name, Value::String(as_text(&v)))))
        .collect()
}

pub(super) fn lookup(reference: &str, case: &CaseFields<'_>) -> Option<Value> {
    let (head, rest) = match reference.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (reference, None),
    };
    let root = match head {
        "expected" => case.expected.cloned()?,
        "vars" => Value::Object(case.vars.cloned()?),
        // promptfoo writes a case variable bare: `{{topic}}`.
        name => case.vars?.get(name)?.clone(),
    };
    match rest {
        None => Some(root),
        Some(r) => {
            let steps = json_path(&format!("$.{r}")).ok()?;
            select(&root, &steps).cloned()
        }
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// Parses the JSON path subset assertions use: `$`, `.name` (any characters but `.` and `[`),
/// `['name']` / `["name"]`, `[n]`.
pub(super) fn json_path(p: &str) -> Result<Vec<Step>, String> {
    let bad = || format!("{p:?} is not a JSON path like $.a.b[0] or $['键']");
    let mut rest = p.trim().strip_prefix('$').ok_or_else(bad)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            let inner = r[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')));
            steps.push(match quoted {
                Some(k) => Step::Key(k.to_owned()),
                None => Step::Index(inner.parse().map_err(|_| bad())?),
            });
            rest = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    Ok(steps)
}

pub(super) fn select<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(v, |cur, s| match s {
        Step::Key(k) => cur.get(k.as_str()),
        Step::Index(i) => cur.get(*i),
    })
}
