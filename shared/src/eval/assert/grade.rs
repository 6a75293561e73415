//! Grading one answer against one assertion: the verdict, the score and why.
//!
//! Invariants: pure, never panics, always says why; a check that cannot be made is never
//! passed: not evaluated (no cost), or failed whatever `not-` says (no judge verdict).

use serde_json::Value;

use super::lookup::{json_path, resolve, select};
use super::{Answer, Assertion, CaseFields, Kind, RubricVerdict};
use crate::model::eval::{Graded, Verdict};

/// The edits `levenshtein` allows when its assertion sets no `threshold` (promptfoo's default).
pub const LEVENSHTEIN_DEFAULT_EDITS: f64 = 5.0;

impl Assertion {
    /// Grades `answer`; `case` fills references in the value.
    pub fn grade(&self, answer: &Answer, case: &CaseFields<'_>) -> Graded {
        let value = self.value.as_ref().map(|v| resolve(v, case));
        let checked = if self.kind == Kind::AssertSet {
            self.set(answer, case)
        } else {
            self.check(answer, value.as_ref())
        };
        let (verdict, score, reason) = match checked {
            Check::Skip(why) => (Verdict::NotEvaluated, 0.0, why),
            Check::Failed(why) => (Verdict::Fail, 0.0, why),
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

    /// promptfoo's assert-set: the members' weighted mean (evaluated ones), passing when every
    /// member passed, or with a `threshold` when the score reaches it.
    fn set(&self, answer: &Answer, case: &CaseFields<'_>) -> Check {
        let graded: Vec<Graded> = self.members.iter().map(|m| m.grade(answer, case)).collect();
        let counted: Vec<&Graded> = graded
            .iter()
            .filter(|g| g.verdict != Verdict::NotEvaluated)
            .collect();
        if counted.is_empty() {
            return Check::Skip("no member of the set was evaluated".into());
        }
        let total: f64 = counted.iter().map(|g| g.weight).sum();
        let score = if total > 0.0 {
            counted.iter().map(|g| g.weight * g.score).sum::<f64>() / total
        } else {
            0.0
        };
        let pass = match self.threshold {
            Some(t) => score + 1e-9 >= t,
            None => counted
                .iter()
                .all(|g| g.verdict == Verdict::Pass || g.weight <= 0.0),
        };
        let why = graded
            .iter()
            .map(|g| format!("{} {:?}: {}", g.label, g.verdict, g.reason))
            .collect::<Vec<_>>()
            .join("; ");
        Check::Scored(pass, score, format!("set of {}: {why}", graded.len()))
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
            Kind::ContainsAny | Kind::ContainsAll | Kind::IcontainsAny | Kind::IcontainsAll => {
                let items = list(value);
                let any_case = matches!(self.kind, Kind::IcontainsAny | Kind::IcontainsAll);
                let lower = text.to_lowercase();
                let found: Vec<&String> = items
                    .iter()
                    .filter(|i| {
                        if any_case {
                            lower.contains(&i.to_lowercase())
                        } else {
                            text.contains(i.as_str())
                        }
                    })
                    .collect();
                let pass = if matches!(self.kind, Kind::ContainsAny | Kind::IcontainsAny) {
                    !found.is_empty()
                } else {
                    found.len() == items.len()
                };
                // promptfoo's score: 1 or 0, never partial credit.
                bool_check(
                    pass,
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
                // promptfoo's meaning: the distance between the answer and the value as they
                // are, at most `threshold` edits (default 5), scored 1 or 0.
                let w = want();
                let d = levenshtein(text, &w);
                let max = self.threshold.unwrap_or(LEVENSHTEIN_DEFAULT_EDITS);
                bool_check(
                    d as f64 <= max,
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
            // Graded by `set`; never reached.
            Kind::AssertSet => Check::Skip("an assert-set is graded by its members".into()),
            Kind::Unsupported => Check::Skip(format!(
                "{} is not evaluated by ai-runner (--skip-unsupported)",
                want()
            )),
            Kind::LlmRubric => {
                let items = list(value);
                match &a.rubric {
                    None => Check::Failed("no judge verdict".into()),
                    Some(Err(why)) => Check::Failed(format!("judge: {why}")),
                    Some(Ok(verdicts)) => {
                        let mine: Vec<&RubricVerdict> = items
                            .iter()
                            .filter_map(|i| verdicts.iter().find(|v| &v.item == i))
                            .collect();
                        if mine.len() < items.len() {
                            return Check::Failed("judge: an item has no verdict".into());
                        }
                        let score =
                            mine.iter().map(|v| v.score).sum::<f64>() / mine.len().max(1) as f64;
                        // promptfoo's "pass vs. score": with a threshold, the judge's pass
                        // also needs its score to reach it.
                        let pass = mine.iter().all(|v| v.pass)
                            && self.threshold.is_none_or(|t| score + 1e-9 >= t);
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
    /// Failed whatever the `not-` prefix says: the check could not be made in a way that must
    /// never pass (a judge that gave no verdict).
    Failed(String),
}

pub(super) fn relation(held: bool, verb: &str) -> String {
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
pub(crate) fn embedded_json(text: &str) -> Option<Value> {
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

pub(super) fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(as_text).collect(),
        Some(other) => vec![as_text(other)],
        None => Vec::new(),
    }
}

/// Equal as JSON, or as text when one side is a string (`1` matches `"1"`).
pub(super) fn loosely_equal(a: &Value, b: &Value) -> bool {
    a == b || as_text(a) == as_text(b)
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
