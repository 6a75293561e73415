//! Assertions: what an evaluation checks about one answer, in promptfoo's vocabulary where the
//! meaning is the same (so suites move over), and how each one scores.
//!
//! Types: `equals`, `contains`, `icontains`, `contains-any`, `contains-all`, `starts-with`,
//! `regex`, `is-json` (optionally with a JSON Schema as `value`), `contains-json`, `json-path`
//! (`path: $.情绪`, compared with `value`), `levenshtein` (`threshold` = most edits allowed),
//! `latency` (`threshold` = most milliseconds), `finish-reason`, `cost` (`threshold` = most USD;
//! not evaluated when the model has no price, and never reported as passed then), `llm-rubric`
//! (`value`: rubric items a judge call grades; see [`crate::eval::run`]). Any type takes a
//! `not-` prefix, a `weight` (0 = informational: shown, never counted) and a `metric` name.
//! A `value` may refer to the case: `{{expected}}`, `{{expected.FIELD}}`, `{{vars.NAME}}`.
//!
//! Invariants: parsing happens once ([`Assertion::parse`]) and rejects unknown types, bad regexes
//! and bad schemas with the path they sit at; grading ([`Assertion::grade`]) is pure, never
//! panics, and always says why.

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::model::eval::{Graded, Verdict};

/// What an assertion looks at: one target's answer to one case.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// The assistant content (None when the call failed).
    pub text: Option<String>,
    /// The content parsed as JSON, when the request asked for JSON.
    pub parsed: Option<Value>,
    /// Whole call, milliseconds.
    pub latency_ms: u64,
    /// `choices[0].finish_reason`.
    pub finish_reason: Option<String>,
    /// Cost in USD (`None`: the model has no price).
    pub cost_usd: Option<f64>,
    /// The judge's verdict per rubric item (text), when the suite has `llm-rubric` assertions;
    /// `Err` says why the judge gave none (its call failed or its answer did not validate).
    pub rubric: Option<Result<Vec<RubricVerdict>, String>>,
}

/// The judge's verdict on one rubric item.
#[derive(Debug, Clone, PartialEq)]
pub struct RubricVerdict {
    /// The item as sent.
    pub item: String,
    /// Met or not.
    pub pass: bool,
    /// 0..=1.
    pub score: f64,
    /// The judge's words.
    pub reason: String,
    /// The judge call's audit row.
    pub audit_id: Option<i64>,
}

/// The case fields an assertion value may refer to.
#[derive(Debug, Clone, Default)]
pub struct CaseFields<'a> {
    /// The case's runtime variables.
    pub vars: Option<&'a Map<String, Value>>,
    /// The case's expected value.
    pub expected: Option<&'a Value>,
}

/// The assertion types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The text equals the value (JSON values compare as JSON when the answer parses).
    Equals,
    /// The text contains the value.
    Contains,
    /// Case-insensitive `contains`.
    Icontains,
    /// The text contains at least one of the values.
    ContainsAny,
    /// The text contains every value.
    ContainsAll,
    /// The text starts with the value.
    StartsWith,
    /// The text matches the regular expression.
    Regex,
    /// The text is JSON (and matches the schema in `value`, if any).
    IsJson,
    /// The text contains a JSON object or array somewhere (fenced or inline).
    ContainsJson,
    /// The value at `path` in the JSON answer equals `value`.
    JsonPath,
    /// The text is within `threshold` edits of the value.
    Levenshtein,
    /// The call took at most `threshold` ms.
    Latency,
    /// `finish_reason` equals the value.
    FinishReason,
    /// The call cost at most `threshold` USD.
    Cost,
    /// A judge (the suite's `judge` route or config) finds that the answer meets every rubric
    /// item in `value` (a text or a list of texts).
    LlmRubric,
}

impl Kind {
    /// Every type with its name.
    pub const NAMES: [(&'static str, Kind); 15] = [
        ("equals", Kind::Equals),
        ("contains", Kind::Contains),
        ("icontains", Kind::Icontains),
        ("contains-any", Kind::ContainsAny),
        ("contains-all", Kind::ContainsAll),
        ("starts-with", Kind::StartsWith),
        ("regex", Kind::Regex),
        ("is-json", Kind::IsJson),
        ("contains-json", Kind::ContainsJson),
        ("json-path", Kind::JsonPath),
        ("levenshtein", Kind::Levenshtein),
        ("latency", Kind::Latency),
        ("finish-reason", Kind::FinishReason),
        ("cost", Kind::Cost),
        ("llm-rubric", Kind::LlmRubric),
    ];

    fn from_name(s: &str) -> Option<Kind> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A checked assertion, ready to grade.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// The type.
    pub kind: Kind,
    /// `not-` prefix.
    pub negate: bool,
    /// The expected value (may refer to case fields).
    pub value: Option<Value>,
    /// `json-path`'s path.
    pub path: Option<String>,
    /// Limit for `levenshtein` (edits), `latency` (ms), `cost` (USD).
    pub threshold: Option<f64>,
    /// Weight in the case score (0 = informational).
    pub weight: f64,
    /// Named score this assertion feeds.
    pub metric: Option<String>,
    regex: Option<Regex>,
    schema: Option<Value>,
}

const KEYS: [&str; 6] = ["type", "value", "path", "threshold", "weight", "metric"];

impl Assertion {
    /// Reads one assertion (`{type, value, path, threshold, weight, metric}`); the error is
    /// `(path, message)` relative to `at`.
    pub fn parse(v: &Value, at: &str) -> Result<Self, (String, String)> {
        let o = v.as_object().ok_or_else(|| {
            (
                at.to_owned(),
                "an assertion is a mapping with a type".into(),
            )
        })?;
        if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err((
                format!("{at}.{k}"),
                format!("unknown key {k:?} (known: {})", KEYS.join(", ")),
            ));
        }
        let ty = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{at}.type"), "type is required".into()))?;
        let (negate, base) = match ty.strip_prefix("not-") {
            Some(rest) => (true, rest),
            None => (false, ty),
        };
        let kind = Kind::from_name(base).ok_or_else(|| {
            (
                format!("{at}.type"),
                format!(
                    "unknown assertion type {ty:?} (known: {}; any may take a not- prefix)",
                    Kind::NAMES.map(|(n, _)| n).join(", ")
                ),
            )
        })?;
        let num = |key: &str| -> Result<Option<f64>, (String, String)> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .map(Some)
                    .ok_or_else(|| (format!("{at}.{key}"), "expected a number >= 0".into())),
            }
        };
        let value = o.get("value").filter(|v| !v.is_null()).cloned();
        let threshold = num("threshold")?;
        let weight = num("weight")?.unwrap_or(1.0);
        let metric = match o.get("metric") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err((format!("{at}.metric"), "expected a name".into())),
        };
        let path = match o.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err((
                    format!("{at}.path"),
                    "expected a JSON path like $.a.b".into(),
                ));
            }
        };
        let need = |what: &str| (format!("{at}.{what}"), format!("{ty} needs {what}"));
        let mut regex = None;
        let mut schema = None;
        match kind {
            Kind::Equals
            | Kind::Contains
            | Kind::Icontains
            | Kind::StartsWith
            | Kind::FinishReason => {
                value.as_ref().ok_or_else(|| need("value"))?;
            }
            Kind::ContainsAny | Kind::ContainsAll => {
                if !value
                    .as_ref()
                    .is_some_and(|v| v.is_array() || v.is_string())
                {
                    return Err(need("value (a list of strings)"));
                }
            }
            Kind::Regex => {
                let pattern = value
                    .as_ref()
                    .and_then(Value::as_str)
                    .ok_or_else(|| need("value (a regular expression)"))?;
                regex = Some(Regex::new(pattern).map_err(|e| {
                    (
                        format!("{at}.value"),
                        format!("bad regular expression: {e}"),
                    )
                })?);
            }
            Kind::IsJson => {
                if let Some(s) = &value {
                    jsonschema::validator_for(s)
                        .map_err(|e| (format!("{at}.value"), format!("bad JSON Schema: {e}")))?;
                    schema = Some(s.clone());
                }
            }
            Kind::ContainsJson => {}
            Kind::JsonPath => {
                let p = path.as_deref().ok_or_else(|| need("path"))?;
                json_path(p).map_err(|m| (format!("{at}.path"), m))?;
                value.as_ref().ok_or_else(|| need("value"))?;
            }
            Kind::Levenshtein => {
                value.as_ref().ok_or_else(|| need("value"))?;
                threshold.ok_or_else(|| need("threshold (most edits)"))?;
            }
            Kind::Latency => {
                threshold.ok_or_else(|| need("threshold (ms)"))?;
            }
            Kind::Cost => {
                threshold.ok_or_else(|| need("threshold (USD)"))?;
            }
            Kind::LlmRubric => {
                let ok = match &value {
                    Some(Value::String(t)) => !t.trim().is_empty(),
                    Some(Value::Array(a)) => {
                        !a.is_empty()
                            && a.iter()
                                .all(|i| i.as_str().is_some_and(|t| !t.trim().is_empty()))
                    }
                    _ => false,
                };
                if !ok {
                    return Err(need("value (a rubric text or a list of texts)"));
                }
            }
        }
        Ok(Self {
            kind,
            negate,
            value,
            path,
            threshold,
            weight,
            metric,
            regex,
            schema,
        })
    }

    /// True for `llm-rubric` (graded by a judge call).
    pub fn is_rubric(&self) -> bool {
        self.kind == Kind::LlmRubric
    }

    /// The rubric items of an `llm-rubric` assertion, references to the case filled.
    pub fn rubric_items(&self, case: &CaseFields<'_>) -> Vec<String> {
        if !self.is_rubric() {
            return Vec::new();
        }
        list(self.value.as_ref().map(|v| resolve(v, case)).as_ref())
    }

    /// The type as written.
    pub fn label(&self) -> String {
        format!(
            "{}{}",
            if self.negate { "not-" } else { "" },
            self.kind.name()
        )
    }

    /// Grades `answer`; `case` fills references in the value.
    pub fn grade(&self, answer: &Answer, case: &CaseFields<'_>) -> Graded {
        let value = self.value.as_ref().map(|v| resolve(v, case));
        let (verdict, score, reason) = match self.check(answer, value.as_ref()) {
            Check::Skip(why) => (Verdict::NotEvaluated, 0.0, why),
            Check::Scored(pass, score, why) => {
                let (pass, score) = if self.negate {
                    (!pass, 1.0 - score)
                } else {
                    (pass, score)
                };
                let verdict = if pass { Verdict::Pass } else { Verdict::Fail };
                (verdict, score.clamp(0.0, 1.0), why)
            }
        };
        Graded {
            label: self.label(),
            verdict,
            score,
            reason,
            weight: self.weight,
            metric: self.metric.clone(),
            audit_id: None,
        }
    }

    fn check(&self, a: &Answer, value: Option<&Value>) -> Check {
        let text = a.text.as_deref().unwrap_or("");
        let want = || value.map(as_text).unwrap_or_default();
        let bool_check =
            |pass: bool, what: String| Check::Scored(pass, f64::from(u8::from(pass)), what);
        match self.kind {
            Kind::Equals => match (value, parsed(a)) {
                (Some(v), Some(p)) if !v.is_string() => bool_check(
                    &p == v,
                    format!("answer {} {}", relation(&p == v, "equals"), v),
                ),
                _ => {
                    let w = want();
                    bool_check(
                        text.trim() == w.trim(),
                        format!("text {} {w:?}", relation(text.trim() == w.trim(), "equals")),
                    )
                }
            },
            Kind::Contains => {
                let w = want();
                bool_check(
                    text.contains(&w),
                    format!("text {} {w:?}", relation(text.contains(&w), "contains")),
                )
            }
            Kind::Icontains => {
                let w = want();
                let hit = text.to_lowercase().contains(&w.to_lowercase());
                bool_check(
                    hit,
                    format!("text {} {w:?} (any case)", relation(hit, "contains")),
                )
            }
            Kind::ContainsAny | Kind::ContainsAll => {
                let items = list(value);
                let found: Vec<&String> =
                    items.iter().filter(|i| text.contains(i.as_str())).collect();
                let pass = if self.kind == Kind::ContainsAny {
                    !found.is_empty()
                } else {
                    found.len() == items.len()
                };
                let score = if items.is_empty() {
                    0.0
                } else {
                    found.len() as f64 / items.len() as f64
                };
                Check::Scored(
                    pass,
                    if self.kind == Kind::ContainsAny {
                        f64::from(u8::from(pass))
                    } else {
                        score
                    },
                    format!("found {} of {}: {found:?}", found.len(), items.len()),
                )
            }
            Kind::StartsWith => {
                let w = want();
                let hit = text.trim_start().starts_with(&w);
                bool_check(hit, format!("text {} {w:?}", relation(hit, "starts with")))
            }
            Kind::Regex => {
                let hit = self.regex.as_ref().is_some_and(|r| r.is_match(text));
                bool_check(
                    hit,
                    format!("text {} /{}/", relation(hit, "matches"), want()),
                )
            }
            Kind::IsJson => match parsed(a) {
                None => bool_check(false, "the answer is not JSON".into()),
                Some(p) => match &self.schema {
                    None => bool_check(true, "the answer is JSON".into()),
                    Some(s) => match jsonschema::validator_for(s) {
                        Err(e) => Check::Skip(format!("schema does not compile: {e}")),
                        Ok(v) => match v.iter_errors(&p).next() {
                            None => bool_check(true, "the answer matches the schema".into()),
                            Some(e) => {
                                bool_check(false, format!("schema: {e} at {}", e.instance_path()))
                            }
                        },
                    },
                },
            },
            Kind::ContainsJson => {
                let hit = embedded_json(text).is_some();
                bool_check(hit, format!("the text {} JSON", relation(hit, "contains")))
            }
            Kind::JsonPath => {
                let path = self.path.as_deref().unwrap_or("$");
                match parsed(a) {
                    None => bool_check(false, "the answer is not JSON".into()),
                    Some(p) => {
                        let got = json_path(path)
                            .ok()
                            .and_then(|steps| select(&p, &steps).cloned());
                        let want = value.cloned().unwrap_or(Value::Null);
                        let hit = got.as_ref().is_some_and(|g| loosely_equal(g, &want));
                        bool_check(
                            hit,
                            match &got {
                                None => format!("{path} is absent"),
                                Some(g) => format!(
                                    "{path} is {g}, {} {want}",
                                    if hit { "as expected" } else { "expected" }
                                ),
                            },
                        )
                    }
                }
            }
            Kind::Levenshtein => {
                let w = want();
                let d = levenshtein(text.trim(), w.trim());
                let max = self.threshold.unwrap_or(0.0);
                let longest = text
                    .trim()
                    .chars()
                    .count()
                    .max(w.trim().chars().count())
                    .max(1);
                Check::Scored(
                    d as f64 <= max,
                    1.0 - d as f64 / longest as f64,
                    format!("{d} edit(s) from {w:?} (at most {max})"),
                )
            }
            Kind::Latency => {
                let max = self.threshold.unwrap_or(0.0);
                let ms = a.latency_ms as f64;
                bool_check(ms <= max, format!("{ms} ms (at most {max})"))
            }
            Kind::FinishReason => {
                let w = want();
                let got = a.finish_reason.as_deref().unwrap_or("");
                bool_check(got == w, format!("finish_reason {got:?}, expected {w:?}"))
            }
            Kind::Cost => match a.cost_usd {
                None => Check::Skip("no cost recorded for this call: not evaluated".into()),
                Some(c) => {
                    let max = self.threshold.unwrap_or(0.0);
                    bool_check(c <= max, format!("${c} (at most ${max})"))
                }
            },
            Kind::LlmRubric => {
                let items = list(value);
                match &a.rubric {
                    None => Check::Scored(false, 0.0, "no judge verdict".into()),
                    Some(Err(why)) => Check::Scored(false, 0.0, format!("judge: {why}")),
                    Some(Ok(verdicts)) => {
                        let mine: Vec<&RubricVerdict> = items
                            .iter()
                            .filter_map(|i| verdicts.iter().find(|v| &v.item == i))
                            .collect();
                        if mine.len() < items.len() {
                            return Check::Scored(
                                false,
                                0.0,
                                "judge: an item has no verdict".into(),
                            );
                        }
                        let pass = mine.iter().all(|v| v.pass);
                        let score =
                            mine.iter().map(|v| v.score).sum::<f64>() / mine.len().max(1) as f64;
                        let why = mine
                            .iter()
                            .map(|v| {
                                format!("{}: {}", if v.pass { "met" } else { "not met" }, v.reason)
                            })
                            .collect::<Vec<_>>()
                            .join("; ");
                        Check::Scored(pass, score, format!("judge: {why}"))
                    }
                }
            }
        }
    }
}

enum Check {
    Scored(bool, f64, String),
    Skip(String),
}

fn relation(held: bool, verb: &str) -> String {
    if held {
        verb.to_owned()
    } else {
        format!("does not satisfy `{verb}`")
    }
}

/// The answer as JSON: the parsed content, else the text parsed (a single Markdown fence is
/// tolerated, as the validator does).
pub(crate) fn parsed(a: &Answer) -> Option<Value> {
    if let Some(p) = &a.parsed {
        return Some(p.clone());
    }
    let t = a.text.as_deref()?.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .unwrap_or(t);
    serde_json::from_str(t.trim()).ok()
}

/// The first JSON object or array inside a text, if any.
fn embedded_json(text: &str) -> Option<Value> {
    for (i, c) in text.char_indices() {
        if c == '{' || c == '[' {
            let mut de = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
            if let Some(Ok(v)) = de.next() {
                return Some(v);
            }
        }
    }
    None
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(as_text).collect(),
        Some(other) => vec![as_text(other)],
        None => Vec::new(),
    }
}

/// Equal as JSON, or as text when one side is a string (`1` matches `"1"`).
fn loosely_equal(a: &Value, b: &Value) -> bool {
    a == b || as_text(a) == as_text(b)
}

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

fn references(s: &str, case: &CaseFields<'_>) -> Map<String, Value> {
    crate::template::placeholders(s)
        .into_iter()
        .filter_map(|name| lookup(&name, case).map(|v| (name, Value::String(as_text(&v)))))
        .collect()
}

fn lookup(reference: &str, case: &CaseFields<'_>) -> Option<Value> {
    let (head, rest) = match reference.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (reference, None),
    };
    let root = match head {
        "expected" => case.expected.cloned()?,
        "vars" => Value::Object(case.vars.cloned()?),
        _ => return None,
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
enum Step {
    Key(String),
    Index(usize),
}

/// Parses the JSON path subset assertions use: `$`, `.name` (any characters but `.` and `[`),
/// `['name']` / `["name"]`, `[n]`.
fn json_path(p: &str) -> Result<Vec<Step>, String> {
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

fn select<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(v, |cur, s| match s {
        Step::Key(k) => cur.get(k.as_str()),
        Step::Index(i) => cur.get(*i),
    })
}

/// Edit distance in characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A case's score and verdict from its graded assertions: the weighted mean of the evaluated
/// assertions with weight > 0; with a `threshold` the case passes when the score reaches it,
/// without one when every such assertion passed. A case with nothing to count passes with
/// score 1 only if it has no assertions at all.
pub fn case_score(graded: &[Graded], threshold: Option<f64>) -> (bool, f64) {
    let counted: Vec<&Graded> = graded
        .iter()
        .filter(|g| g.weight > 0.0 && g.verdict != Verdict::NotEvaluated)
        .collect();
    let total: f64 = counted.iter().map(|g| g.weight).sum();
    if total <= 0.0 {
        return (true, 1.0);
    }
    let score = counted.iter().map(|g| g.weight * g.score).sum::<f64>() / total;
    let pass = match threshold {
        Some(t) => score + 1e-9 >= t,
        None => counted.iter().all(|g| g.verdict == Verdict::Pass),
    };
    (pass, score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a(v: Value) -> Assertion {
        Assertion::parse(&v, "assert[0]").unwrap()
    }

    fn answer(text: &str) -> Answer {
        Answer {
            text: Some(text.into()),
            latency_ms: 120,
            finish_reason: Some("stop".into()),
            ..Answer::default()
        }
    }

    fn verdict(v: Value, text: &str) -> Verdict {
        a(v).grade(&answer(text), &CaseFields::default()).verdict
    }

    #[test]
    fn every_type_has_a_passing_and_a_failing_answer() {
        use Verdict::{Fail, Pass};
        let cases = [
            (json!({"type": "equals", "value": "好"}), "好", "坏"),
            (
                json!({"type": "equals", "value": {"a": 1}}),
                r#"{"a": 1}"#,
                r#"{"a": 2}"#,
            ),
            (
                json!({"type": "contains", "value": "顺利"}),
                "发布顺利",
                "发布失败",
            ),
            (
                json!({"type": "icontains", "value": "ok"}),
                "All OK",
                "all bad",
            ),
            (
                json!({"type": "contains-any", "value": ["甲", "乙"]}),
                "乙方",
                "丙方",
            ),
            (
                json!({"type": "contains-all", "value": ["甲", "乙"]}),
                "甲乙",
                "甲丙",
            ),
            (
                json!({"type": "starts-with", "value": "结论"}),
                "结论：好",
                "好的结论",
            ),
            (json!({"type": "regex", "value": "^\\d{3}$"}), "123", "12a"),
            (json!({"type": "is-json"}), r#"{"x": 1}"#, "not json"),
            (
                json!({"type": "is-json", "value": {"type": "object", "required": ["情绪"]}}),
                r#"{"情绪": "积极"}"#,
                r#"{"摘要": "x"}"#,
            ),
            (
                json!({"type": "contains-json"}),
                r#"答案：{"a": 1} 完"#,
                "没有",
            ),
            (
                json!({"type": "json-path", "path": "$.情绪", "value": "积极"}),
                r#"{"情绪": "积极"}"#,
                r#"{"情绪": "消极"}"#,
            ),
            (
                json!({"type": "json-path", "path": "$.items[1]['名']", "value": "乙"}),
                r#"{"items": [{"名": "甲"}, {"名": "乙"}]}"#,
                r#"{"items": [{"名": "甲"}]}"#,
            ),
            (
                json!({"type": "levenshtein", "value": "kitten", "threshold": 3}),
                "sitting",
                "elephant",
            ),
            (json!({"type": "finish-reason", "value": "stop"}), "x", "x"),
        ];
        for (v, good, bad) in cases {
            assert_eq!(verdict(v.clone(), good), Pass, "{v} on {good:?}");
            if v["type"] != "finish-reason" {
                assert_eq!(verdict(v.clone(), bad), Fail, "{v} on {bad:?}");
            }
        }
        let mut stopped = answer("x");
        stopped.finish_reason = Some("length".into());
        let fr = a(json!({"type": "finish-reason", "value": "stop"}));
        assert_eq!(fr.grade(&stopped, &CaseFields::default()).verdict, Fail);
        let lat = a(json!({"type": "latency", "threshold": 200}));
        assert_eq!(
            lat.grade(&answer("x"), &CaseFields::default()).verdict,
            Pass
        );
        let strict = a(json!({"type": "latency", "threshold": 100}));
        assert_eq!(
            strict.grade(&answer("x"), &CaseFields::default()).verdict,
            Fail
        );
    }

    #[test]
    fn an_llm_rubric_passes_only_when_the_judge_met_every_item() {
        let rubric = a(json!({"type": "llm-rubric", "value": ["简洁", "{{vars.TOPIC}} 被提到"]}));
        let vars: Map<String, Value> = json!({"TOPIC": "发布"}).as_object().cloned().unwrap();
        let case = CaseFields {
            vars: Some(&vars),
            expected: None,
        };
        assert_eq!(rubric.rubric_items(&case), ["简洁", "发布 被提到"]);
        let verdict = |item: &str, pass: bool, score: f64| RubricVerdict {
            item: item.into(),
            pass,
            score,
            reason: format!("{item}?"),
            audit_id: Some(9),
        };
        let mut judged = answer("x");
        judged.rubric = Some(Ok(vec![
            verdict("简洁", true, 1.0),
            verdict("发布 被提到", true, 0.8),
        ]));
        let g = rubric.grade(&judged, &case);
        assert_eq!((g.verdict, g.score), (Verdict::Pass, 0.9));
        judged.rubric = Some(Ok(vec![
            verdict("简洁", true, 1.0),
            verdict("发布 被提到", false, 0.0),
        ]));
        let g = rubric.grade(&judged, &case);
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.5));
        judged.rubric = Some(Err("the judge call failed: NETWORK_TIMEOUT".into()));
        let g = rubric.grade(&judged, &case);
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.0));
        assert!(g.reason.contains("NETWORK_TIMEOUT"));
        assert_eq!(rubric.grade(&answer("x"), &case).verdict, Verdict::Fail);
        assert!(Assertion::parse(&json!({"type": "llm-rubric"}), "a").is_err());
        assert!(Assertion::parse(&json!({"type": "llm-rubric", "value": []}), "a").is_err());
    }

    #[test]
    fn not_inverts_the_verdict_and_the_score() {
        let g = a(json!({"type": "not-contains", "value": "error"}))
            .grade(&answer("all fine"), &CaseFields::default());
        assert_eq!(
            (g.verdict, g.score, g.label.as_str()),
            (Verdict::Pass, 1.0, "not-contains")
        );
        let g = a(json!({"type": "not-contains", "value": "fine"}))
            .grade(&answer("all fine"), &CaseFields::default());
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.0));
    }

    #[test]
    fn cost_without_a_recorded_cost_is_not_evaluated_never_passed() {
        let c = a(json!({"type": "cost", "threshold": 0.01}));
        let g = c.grade(&answer("x"), &CaseFields::default());
        assert_eq!(g.verdict, Verdict::NotEvaluated);
        let mut priced = answer("x");
        priced.cost_usd = Some(0.002);
        assert_eq!(
            c.grade(&priced, &CaseFields::default()).verdict,
            Verdict::Pass
        );
        priced.cost_usd = Some(0.2);
        assert_eq!(
            c.grade(&priced, &CaseFields::default()).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn values_refer_to_the_cases_expected_fields_and_variables() {
        let expected = json!({"情绪": "积极", "n": 2});
        let vars: Map<String, Value> = json!({"NAME": "张三"}).as_object().cloned().unwrap();
        let case = CaseFields {
            vars: Some(&vars),
            expected: Some(&expected),
        };
        let path = a(json!({"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}"}));
        assert_eq!(
            path.grade(&answer(r#"{"情绪": "积极"}"#), &case).verdict,
            Verdict::Pass
        );
        let num = a(json!({"type": "json-path", "path": "$.n", "value": "{{expected.n}}"}));
        assert_eq!(
            num.grade(&answer(r#"{"n": 2}"#), &case).verdict,
            Verdict::Pass
        );
        let greet = a(json!({"type": "contains", "value": "你好，{{vars.NAME}}"}));
        assert_eq!(
            greet.grade(&answer("你好，张三！"), &case).verdict,
            Verdict::Pass
        );
        let whole = a(json!({"type": "equals", "value": "{{expected}}"}));
        assert_eq!(
            whole
                .grade(&answer(r#"{"n": 2, "情绪": "积极"}"#), &case)
                .verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn bad_assertions_are_refused_with_their_path() {
        for (v, path) in [
            (json!({"type": "similar", "value": "x"}), "assert[0].type"),
            (
                json!({"type": "regex", "value": "(unclosed"}),
                "assert[0].value",
            ),
            (
                json!({"type": "is-json", "value": {"type": "nope"}}),
                "assert[0].value",
            ),
            (
                json!({"type": "json-path", "path": "a.b", "value": 1}),
                "assert[0].path",
            ),
            (json!({"type": "contains"}), "assert[0].value"),
            (json!({"type": "latency"}), "assert[0].threshold (ms)"),
            (
                json!({"type": "equals", "value": 1, "weight": -1}),
                "assert[0].weight",
            ),
            (
                json!({"type": "equals", "value": 1, "colour": "red"}),
                "assert[0].colour",
            ),
        ] {
            let e = Assertion::parse(&v, "assert[0]").unwrap_err();
            assert_eq!(e.0, path, "{v}: {}", e.1);
        }
    }

    #[test]
    fn a_case_scores_the_weighted_mean_and_informational_assertions_do_not_count() {
        let g = |verdict, score, weight| Graded {
            label: "x".into(),
            verdict,
            score,
            reason: String::new(),
            weight,
            metric: None,
            audit_id: None,
        };
        let graded = [
            g(Verdict::Pass, 1.0, 3.0),
            g(Verdict::Fail, 0.0, 1.0),
            g(Verdict::Fail, 0.0, 0.0),
            g(Verdict::NotEvaluated, 0.0, 5.0),
        ];
        let (pass, score) = case_score(&graded, None);
        assert!(!pass, "an unthresholded case needs every counted assertion");
        assert!((score - 0.75).abs() < 1e-9, "{score}");
        assert_eq!(case_score(&graded, Some(0.7)), (true, score));
        assert!(!case_score(&graded, Some(0.8)).0);
        assert_eq!(case_score(&[], None), (true, 1.0));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("情绪积极", "情绪消极"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
