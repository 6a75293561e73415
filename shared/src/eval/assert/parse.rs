//! Reading one assertion from YAML or JSON: its type (with `not-`), value, path, threshold,
//! weight and metric.
//!
//! Invariants: unknown types and keys, bad regexes, bad JSON paths and bad schemas are refused
//! with the path they sit at; a parsed [`Assertion`] never needs checking again.

use regex::Regex;
use serde_json::Value;

use super::grade::list;
use super::lookup::{json_path, resolve};
use super::{Assertion, CaseFields, Kind};

const KEYS: [&str; 7] = [
    "type",
    "value",
    "path",
    "threshold",
    "weight",
    "metric",
    "assert",
];

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
        let mut members = Vec::new();
        if kind != Kind::AssertSet && o.contains_key("assert") {
            return Err((
                format!("{at}.assert"),
                format!("only assert-set takes assert (this is {ty})"),
            ));
        }
        match kind {
            Kind::Equals
            | Kind::Contains
            | Kind::Icontains
            | Kind::StartsWith
            | Kind::FinishReason => {
                value.as_ref().ok_or_else(|| need("value"))?;
            }
            Kind::ContainsAny | Kind::ContainsAll | Kind::IcontainsAny | Kind::IcontainsAll => {
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
            }
            Kind::Latency => {
                threshold.ok_or_else(|| need("threshold (ms)"))?;
            }
            Kind::Cost => {
                threshold.ok_or_else(|| need("threshold (USD)"))?;
            }
            Kind::AssertSet => {
                if negate || value.is_some() || path.is_some() {
                    return Err((
                        at.to_owned(),
                        "assert-set takes assert, threshold, weight and metric only".into(),
                    ));
                }
                let list = o
                    .get("assert")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| {
                        (
                            format!("{at}.assert"),
                            "assert-set needs assert: a list of assertions".to_owned(),
                        )
                    })?;
                for (i, m) in list.iter().enumerate() {
                    let member = Assertion::parse(m, &format!("{at}.assert[{i}]"))?;
                    if member.kind == Kind::AssertSet {
                        return Err((
                            format!("{at}.assert[{i}].type"),
                            "an assert-set holds assertions, not sets".into(),
                        ));
                    }
                    members.push(member);
                }
            }
            Kind::Unsupported => {
                if negate || !value.as_ref().is_some_and(Value::is_string) {
                    return Err(need("value (the type it stands for)"));
                }
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
            members,
        })
    }

    /// True when grading needs the suite's judge: an `llm-rubric`, or a set holding one.
    pub fn needs_judge(&self) -> bool {
        self.is_rubric() || self.members.iter().any(Assertion::needs_judge)
    }

    /// True for `llm-rubric` (graded by a judge call).
    pub fn is_rubric(&self) -> bool {
        self.kind == Kind::LlmRubric
    }

    /// The rubric items of an `llm-rubric` assertion (or of an `assert-set`'s), references to
    /// the case filled.
    pub fn rubric_items(&self, case: &CaseFields<'_>) -> Vec<String> {
        if self.kind == Kind::AssertSet {
            return self
                .members
                .iter()
                .flat_map(|m| m.rubric_items(case))
                .collect();
        }
        if !self.is_rubric() {
            return Vec::new();
        }
        list(self.value.as_ref().map(|v| resolve(v, case)).as_ref())
    }

    /// The type as written (for `unsupported`, the type it stands for).
    pub fn label(&self) -> String {
        if self.kind == Kind::Unsupported
            && let Some(Value::String(ty)) = &self.value
        {
            return ty.clone();
        }
        format!(
            "{}{}",
            if self.negate { "not-" } else { "" },
            self.kind.name()
        )
    }
}
