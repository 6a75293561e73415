//! Assertions: what an evaluation checks about one answer, in promptfoo's vocabulary where the
//! meaning is the same (so suites move over), and how each one scores.
//!
//! Types: `equals`, `contains`, `icontains`, `contains-any`, `contains-all`, `icontains-any`,
//! `icontains-all`, `starts-with`, `regex`, `is-json` (optionally with a JSON Schema as
//! `value`), `contains-json`, `json-path` (`path: $.情绪`, compared with `value`), `levenshtein`
//! (`threshold` = most edits allowed, default 5), `latency` (`threshold` = most milliseconds), `finish-reason`, `cost` (`threshold` = most USD;
//! not evaluated when the model has no price, and never reported as passed then), `llm-rubric`
//! (`value`: rubric items a judge call grades, a `threshold` the judge's score must reach too; see
//! [`crate::eval::run`]). Any check takes a `not-` prefix (`assert-set` and `unsupported` do
//! not), a `weight` (0 = informational: shown, never counted) and a `metric` name; `assert-set`
//! groups assertions (`assert: [...]`) that score as one; `unsupported` stands for a promptfoo
//! check ai-runner cannot make (always not evaluated). A `value` may refer to the case:
//! `{{expected}}`,
//! `{{expected.FIELD}}`, `{{vars.NAME}}`, and a bare `{{NAME}}` for a case variable (promptfoo's
//! form); a reference nothing in the case fills is found before any call
//! ([`Assertion::unresolved`]).
//!
//! Same name, same meaning as promptfoo: every assertion but `llm-rubric` scores 1 or 0 (no
//! partial credit), `not-` inverts the verdict and the score.
//!
//! Invariants: parsing happens once ([`Assertion::parse`]) and rejects unknown types, bad regexes
//! and bad schemas with the path they sit at; grading ([`Assertion::grade`]) is pure, never
//! panics, and always says why.
//!
//! This module holds the vocabulary; [`parse`] reads an assertion, [`grade`] checks an answer
//! against it, [`lookup`] resolves references to the case and JSON paths.

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::model::eval::{Graded, Verdict};

mod grade;
mod lookup;
mod parse;

pub use grade::levenshtein;
pub(crate) use grade::{embedded_json, parsed};
pub use lookup::resolve;

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
    /// Case-insensitive `contains-any`.
    IcontainsAny,
    /// Case-insensitive `contains-all`.
    IcontainsAll,
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
    /// promptfoo's group: its `assert` list scores as one assertion (the weighted mean), passing
    /// when every member passes, or, with a `threshold`, when the score reaches it.
    AssertSet,
    /// A check ai-runner cannot make (a promptfoo type it lacks, kept by `--skip-unsupported`):
    /// `value` names it; always not evaluated, never passed.
    Unsupported,
}

impl Kind {
    /// Every type with its name.
    pub const NAMES: [(&'static str, Kind); 19] = [
        ("equals", Kind::Equals),
        ("contains", Kind::Contains),
        ("icontains", Kind::Icontains),
        ("contains-any", Kind::ContainsAny),
        ("contains-all", Kind::ContainsAll),
        ("icontains-any", Kind::IcontainsAny),
        ("icontains-all", Kind::IcontainsAll),
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
        ("assert-set", Kind::AssertSet),
        ("unsupported", Kind::Unsupported),
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
    /// `assert-set`'s members.
    members: Vec<Assertion>,
}

/// A case's score and verdict from its graded assertions: the weighted mean of the evaluated
/// assertions with weight > 0; with a `threshold` the case passes when the score reaches it,
/// without one when every such assertion passed. A case with nothing to count passes with
/// score 1 when it has no assertions (or only informational ones), and fails with 0 when its
/// counted assertions were all not evaluated.
pub fn case_score(graded: &[Graded], threshold: Option<f64>) -> (bool, f64) {
    let counted: Vec<&Graded> = graded
        .iter()
        .filter(|g| g.weight > 0.0 && g.verdict != Verdict::NotEvaluated)
        .collect();
    let total: f64 = counted.iter().map(|g| g.weight).sum();
    if total <= 0.0 {
        // Nothing was checked: a case whose counted assertions were all not evaluated is not
        // passed (there was nothing to pass on).
        let unchecked = graded
            .iter()
            .any(|g| g.weight > 0.0 && g.verdict == Verdict::NotEvaluated);
        return if unchecked { (false, 0.0) } else { (true, 1.0) };
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
        // No verdict fails a not-llm-rubric too: `not-` never turns a missing judge into a pass.
        let not_rubric = a(json!({"type": "not-llm-rubric", "value": "rude"}));
        assert_eq!(not_rubric.grade(&answer("x"), &case).verdict, Verdict::Fail);
        assert!(not_rubric.needs_judge());
        assert!(Assertion::parse(&json!({"type": "llm-rubric"}), "a").is_err());
        assert!(Assertion::parse(&json!({"type": "llm-rubric", "value": []}), "a").is_err());
    }

    #[test]
    fn an_assert_set_scores_as_one_assertion_with_its_own_threshold() {
        let answer = Answer {
            text: Some("The tide rises".into()),
            ..Answer::default()
        };
        let case = CaseFields::default();
        let set = |extra: Value| {
            let mut v = json!({"type": "assert-set", "assert": [
                {"type": "contains", "value": "tide"},
                {"type": "contains", "value": "moon", "weight": 3}
            ]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            a(v).grade(&answer, &case)
        };
        let all = set(json!({}));
        assert_eq!(all.verdict, Verdict::Fail, "a member failed");
        assert!((all.score - 0.25).abs() < 1e-9, "{}", all.score);
        let lenient = set(json!({"threshold": 0.2, "weight": 2}));
        assert_eq!(lenient.verdict, Verdict::Pass, "0.25 reaches 0.2");
        assert_eq!(lenient.weight, 2.0);
        for (bad, at) in [
            (
                json!({"type": "assert-set", "assert": []}),
                "assert[0].assert",
            ),
            (
                json!({"type": "not-assert-set", "assert": [{"type": "is-json"}]}),
                "assert[0]",
            ),
            (
                json!({"type": "assert-set", "assert": [{"type": "assert-set", "assert": [{"type": "is-json"}]}]}),
                "assert[0].assert[0].type",
            ),
            (
                json!({"type": "contains", "value": "x", "assert": []}),
                "assert[0].assert",
            ),
        ] {
            let e = Assertion::parse(&bad, "assert[0]").unwrap_err();
            assert_eq!(e.0, at, "{bad}: {e:?}");
        }
    }

    #[test]
    fn scores_mean_what_promptfoos_mean_for_the_same_names() {
        let none = CaseFields::default();
        // 2 of 3 items: fails and scores 0 (it scored 0.667 here before).
        let g = a(json!({"type": "contains-all", "value": ["甲", "乙", "丙"]}))
            .grade(&answer("甲乙"), &none);
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.0));
        // A passing 1-edit levenshtein scores 1 (it scored 0.833 here); no threshold means 5.
        let g = a(json!({"type": "levenshtein", "value": "hello!"})).grade(&answer("hello"), &none);
        assert_eq!((g.verdict, g.score), (Verdict::Pass, 1.0));
        let g =
            a(json!({"type": "levenshtein", "value": "abcdef"})).grade(&answer("uvwxyz"), &none);
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.0));
        // The answer as it came: a trailing newline is an edit, as in promptfoo.
        let g = a(json!({"type": "levenshtein", "value": "ok", "threshold": 0}))
            .grade(&answer("ok\n"), &none);
        assert_eq!(g.verdict, Verdict::Fail);
        // So a case whose only assertion passes passes under a 0.9 threshold.
        let g = a(json!({"type": "levenshtein", "value": "hello!", "threshold": 1}))
            .grade(&answer("hello"), &none);
        assert_eq!(case_score(&[g], Some(0.9)), (true, 1.0));
    }

    #[test]
    fn an_llm_rubric_with_a_threshold_needs_the_judges_score_to_reach_it() {
        let rubric = a(json!({"type": "llm-rubric", "value": "简洁", "threshold": 0.8}));
        let mut judged = answer("x");
        judged.rubric = Some(Ok(vec![RubricVerdict {
            item: "简洁".into(),
            pass: true,
            score: 0.7,
            reason: "大致简洁".into(),
            audit_id: None,
        }]));
        let g = rubric.grade(&judged, &CaseFields::default());
        assert_eq!((g.verdict, g.score), (Verdict::Fail, 0.7));
        let lenient = a(json!({"type": "llm-rubric", "value": "简洁", "threshold": 0.7}));
        assert_eq!(
            lenient.grade(&judged, &CaseFields::default()).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_bare_variable_is_filled_and_a_reference_to_nothing_is_found() {
        let vars: Map<String, Value> = json!({"topic": "发布"}).as_object().cloned().unwrap();
        let expected = json!({"x": "甲"});
        let case = CaseFields {
            vars: Some(&vars),
            expected: Some(&expected),
        };
        let c = a(json!({"type": "contains", "value": "{{topic}} 顺利"}));
        assert_eq!(c.grade(&answer("发布 顺利"), &case).verdict, Verdict::Pass);
        assert!(c.unresolved(&case).is_empty());
        let typo = a(json!({"type": "contains-any",
            "value": ["{{expected.nope}}", "{{vars.NOPE}}", "{{NOPE}}", "{{expected.x}}", "{{NOPE}}"]}));
        assert_eq!(
            typo.unresolved(&case),
            ["expected.nope", "vars.NOPE", "NOPE"]
        );
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
        assert_eq!(
            case_score(&graded[2..], None),
            (false, 0.0),
            "not evaluated is never passed"
        );
        assert_eq!(
            case_score(&graded[2..3], None),
            (true, 1.0),
            "informational only"
        );
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("情绪积极", "情绪消极"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
