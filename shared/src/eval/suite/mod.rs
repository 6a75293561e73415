//! Datasets and suites, read from the `evals:` shape of a YAML file:
//!
//! ```yaml
//! datasets:
//!   - name: summaries
//!     cases:                       # inline, and/or
//!       - {key: release, vars: {TEXT: ...}, expected: {情绪: 积极}, tags: [smoke],
//!          assert: [...], threshold: 0.5, active: true}
//!     cases_file: cases.jsonl      # JSONL (one case per line) or CSV (key, tags, expected,
//!                                  # and one column per variable) beside the YAML
//! suites:
//!   - name: nightly
//!     dataset: summaries
//!     targets: [{route: project/route_key}, {config: config_key}]
//!     assert: [...]                # applied to every case, before the case's own
//!     threshold: 0.8               # default case threshold
//!     repeat: 1
//!     concurrency: 4
//!     gates: {min_pass_rate: 0.9, cutoffs: {metric: 0.8}}
//! ```
//!
//! Invariants: every problem is reported at once with its YAML path (or case key), like the
//! catalog; a suite that reads without errors has every assertion parsed and every placeholder of
//! its cases known.
//!
//! This module holds the values; [`read`] turns documents into them, [`cases`] reads a dataset's
//! cases (inline, JSONL, CSV).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::eval::assert::Assertion;
use crate::model::eval::{EvalCatalog, StoredCase, StoredDataset, StoredSuite};

mod cases;
mod fields;
mod read;

pub(crate) use cases::csv_rows;
pub use read::{catalog_evals, read_evals, read_suite};

/// One case of a dataset.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique within the dataset.
    pub key: String,
    /// Runtime variables.
    pub vars: Map<String, Value>,
    /// What the answer should hold (assertions refer to it as `{{expected...}}`).
    pub expected: Option<Value>,
    /// For `--tag` selection.
    pub tags: Vec<String>,
    /// Assertions of this case only.
    pub assertions: Vec<Assertion>,
    /// Overrides the suite's threshold.
    pub threshold: Option<f64>,
    /// An object whose media variables (`MEDIA_URL` or `MEDIA_DATA`, `MEDIA_FORMAT`, ...) the
    /// case passes, as (bucket, key): resolved when the case runs, like an upload.
    pub media: Option<(String, String)>,
    /// False for a case kept in the dataset but left out of runs.
    pub active: bool,
    /// The case's own prompt (a promptfoo test's rendered prompt): sent as the conversation after
    /// the target's stored prompt (a JSON list of `{role, content}` messages, else one user
    /// message), and what the `echo` target answers.
    pub prompt: Option<String>,
    /// The case as read (what a run stores, so a resume needs no files).
    pub raw: Value,
}

/// What a suite runs against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A route.
    Route {
        /// Project.
        project: String,
        /// Route key.
        route_key: String,
    },
    /// One config.
    Config {
        /// config_key.
        config_key: String,
    },
    /// promptfoo's `echo` provider: the answer is the case's prompt, and nothing is called.
    Echo,
}

impl Target {
    /// `project/route_key` or the config key.
    pub fn label(&self) -> String {
        match self {
            Target::Route { project, route_key } => format!("{project}/{route_key}"),
            Target::Config { config_key } => config_key.clone(),
            Target::Echo => "echo".into(),
        }
    }

    /// Reads `route:P/R`, `config:K`, or a bare `P/R` (route) / `K` (config).
    pub fn parse(s: &str) -> Option<Target> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) if k == "route" || k == "config" => (Some(k), r),
            _ => (None, s),
        };
        let rest = rest.trim();
        if rest.is_empty() {
            return None;
        }
        match (kind, rest.split_once('/')) {
            (Some("config"), _) | (None, None) => Some(Target::Config {
                config_key: rest.to_owned(),
            }),
            (_, Some((p, r))) if !p.is_empty() && !r.is_empty() => Some(Target::Route {
                project: p.to_owned(),
                route_key: r.to_owned(),
            }),
            _ => None,
        }
    }
}

/// When a run fails even though it finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Gates {
    /// The share of passing cases (0..=1) a target needs.
    pub min_pass_rate: Option<f64>,
    /// Per metric, the mean score it needs.
    pub cutoffs: Vec<(String, f64)>,
}

/// A suite: a dataset, its targets, its assertions and gates.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Name.
    pub name: String,
    /// The cases (active ones only).
    pub cases: Vec<Case>,
    /// Targets compared.
    pub targets: Vec<Target>,
    /// Applied to every case.
    pub assertions: Vec<Assertion>,
    /// Default case threshold.
    pub threshold: Option<f64>,
    /// Repetitions of every case.
    pub repeat: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Gates.
    pub gates: Gates,
    /// Stop the run after this many consecutive provider failures (0 = never).
    pub stop_after_failures: u32,
    /// The route or config that grades `llm-rubric` assertions.
    pub judge: Option<Target>,
    /// The suite and its dataset as read, cases inline: an evals document that reads back into
    /// this suite without any file (stored with each run).
    pub snapshot: Value,
}

/// A dataset as read: every case, active or not, inline ones first.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Its cases.
    pub cases: Vec<Case>,
}

/// A suite as read, before its dataset's cases are attached.
#[derive(Debug, Clone)]
pub struct SuiteDef {
    /// Unique name.
    pub name: String,
    /// The dataset it runs.
    pub dataset: String,
    /// The mapping as read (what is stored and exported).
    pub raw: Map<String, Value>,
    parts: Parts,
}

#[derive(Debug, Clone)]
struct Parts {
    targets: Vec<Target>,
    assertions: Vec<Assertion>,
    threshold: Option<f64>,
    repeat: u32,
    concurrency: usize,
    gates: Gates,
    stop_after_failures: u32,
    judge: Option<Target>,
}

/// A whole evals document: datasets and suites.
#[derive(Debug, Clone, Default)]
pub struct Evals {
    /// Datasets.
    pub datasets: Vec<Dataset>,
    /// Suites.
    pub suites: Vec<SuiteDef>,
}

impl Evals {
    /// The runnable suite `name`: its definition with its dataset's active cases. An unknown
    /// suite or dataset, or a dataset without an active case, is a finding.
    pub fn suite(&self, name: &str) -> Result<Suite, Finding> {
        let err = |path: String, code, message: String| Finding {
            severity: Severity::Error,
            path,
            code,
            message,
        };
        let Some((i, def)) = self.suites.iter().enumerate().find(|(_, s)| s.name == name) else {
            let known: Vec<&str> = self.suites.iter().map(|s| s.name.as_str()).collect();
            return Err(err(
                "suites".into(),
                Code::UnknownReference,
                format!("no suite named {name:?} (suites: {})", known.join(", ")),
            ));
        };
        let Some(ds) = self.datasets.iter().find(|d| d.name == def.dataset) else {
            return Err(err(
                format!("suites[{i}].dataset"),
                Code::UnknownReference,
                format!("no dataset named {:?}", def.dataset),
            ));
        };
        let cases: Vec<Case> = ds.cases.iter().filter(|c| c.active).cloned().collect();
        if cases.is_empty() {
            return Err(err(
                format!("suites[{i}].dataset"),
                Code::MissingField,
                format!("dataset {:?} has no active case", ds.name),
            ));
        }
        let snapshot = serde_json::json!({
            "datasets": [{
                "name": ds.name,
                "cases": cases.iter().map(|c| c.raw.clone()).collect::<Vec<_>>(),
            }],
            "suites": [Value::Object(def.raw.clone())],
        });
        let p = def.parts.clone();
        Ok(Suite {
            name: def.name.clone(),
            cases,
            targets: p.targets,
            assertions: p.assertions,
            threshold: p.threshold,
            repeat: p.repeat,
            concurrency: p.concurrency,
            gates: p.gates,
            stop_after_failures: p.stop_after_failures,
            judge: p.judge,
            snapshot,
        })
    }

    /// The document that reads back into these datasets and suites (cases inline): what
    /// `cfg export` writes under `evals:`.
    pub fn to_document(&self) -> Value {
        let datasets: Vec<Value> = self
            .datasets
            .iter()
            .map(|d| {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(d.name.clone()));
                if let Some(text) = &d.description {
                    m.insert("description".into(), Value::String(text.clone()));
                }
                m.insert(
                    "cases".into(),
                    Value::Array(d.cases.iter().map(|c| c.raw.clone()).collect()),
                );
                Value::Object(m)
            })
            .collect();
        let suites: Vec<Value> = self
            .suites
            .iter()
            .map(|s| Value::Object(s.raw.clone()))
            .collect();
        serde_json::json!({"datasets": datasets, "suites": suites})
    }
}

impl Case {
    /// The case as the evaluation catalog stores it.
    pub fn stored(&self) -> StoredCase {
        StoredCase {
            key: self.key.clone(),
            vars: self
                .raw
                .get("vars")
                .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                .cloned(),
            expected: self.expected.clone(),
            media: self.media.clone(),
            tags: self.tags.clone(),
            assert: self
                .raw
                .get("assert")
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
                .cloned(),
            threshold: self.threshold,
            active: self.active,
            prompt: self.prompt.clone(),
            description: self
                .raw
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: self
                .raw
                .get("metadata")
                .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
                .cloned(),
        }
    }
}

impl Evals {
    /// Keeps, inactive, every case `stored` holds in one of these datasets that these do not
    /// list (a dataset re-imported from an edited file: removed cases leave its runs, and their
    /// rows and past results stay).
    pub fn retire_missing(&mut self, stored: &Evals) {
        for d in &mut self.datasets {
            let Some(old) = stored.datasets.iter().find(|o| o.name == d.name) else {
                continue;
            };
            let gone: Vec<Case> = old
                .cases
                .iter()
                .filter(|c| c.active && !d.cases.iter().any(|n| n.key == c.key))
                .map(|c| Case {
                    active: false,
                    ..c.clone()
                })
                .collect();
            d.cases.extend(gone);
        }
    }

    /// What the evaluation catalog stores of these datasets and suites.
    pub fn catalog(&self) -> EvalCatalog {
        EvalCatalog {
            datasets: self
                .datasets
                .iter()
                .map(|d| StoredDataset {
                    name: d.name.clone(),
                    description: d.description.clone(),
                    cases: d.cases.iter().map(Case::stored).collect(),
                })
                .collect(),
            suites: self
                .suites
                .iter()
                .map(|s| StoredSuite {
                    name: s.name.clone(),
                    dataset: s.dataset.clone(),
                    definition: s.raw.clone(),
                })
                .collect(),
        }
    }
}

/// Consecutive provider failures (unreachable, timeouts, 5xx, 429, refused keys) after which a
/// run stops early, unless the suite says otherwise (`stop_after_failures`, 0 = never).
pub const DEFAULT_STOP_AFTER_FAILURES: u32 = 20;

/// The placeholders of a case's prompt that neither the case nor the prompt fills, reported as
/// findings against the case key (so a run never starts with a case that cannot be built).
pub fn unfilled(case: &Case, needed: &[String]) -> Vec<Finding> {
    needed
        .iter()
        .filter(|n| {
            !case.vars.contains_key(*n) && !crate::template::RUNTIME_VARS.contains(&n.as_str())
        })
        .map(|n| Finding {
            severity: Severity::Error,
            path: format!("case {}", case.key),
            code: Code::UnfilledPlaceholder,
            message: format!("{{{{{n}}}}} is not filled by the case's vars"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn doc() -> Value {
        json!({
            "datasets": [{"name": "d", "cases": [
                {"key": "a", "vars": {"TEXT": "一"}, "expected": {"x": 1}, "tags": ["smoke"]},
                {"key": "b", "vars": {"TEXT": "二"}, "assert": [{"type": "contains", "value": "二"}], "threshold": 0.5},
                {"key": "off", "active": false}
            ]}],
            "suites": [{"name": "s", "dataset": "d", "targets": [{"route": "p/r"}, {"config": "k"}],
                        "assert": [{"type": "is-json"}], "repeat": 2, "concurrency": 3,
                        "gates": {"min_pass_rate": 0.9, "cutoffs": {"acc": 0.8}}}]
        })
    }

    #[test]
    fn a_suite_reads_with_its_cases_targets_assertions_and_gates() {
        let (s, f) = read_suite(&doc(), "s", Path::new("."));
        assert!(f.is_empty(), "{f:?}");
        let s = s.unwrap();
        assert_eq!(s.cases.len(), 2, "the inactive case is left out");
        assert_eq!(
            s.targets,
            [
                Target::Route {
                    project: "p".into(),
                    route_key: "r".into()
                },
                Target::Config {
                    config_key: "k".into()
                }
            ]
        );
        assert_eq!((s.repeat, s.concurrency), (2, 3));
        assert_eq!(s.gates.min_pass_rate, Some(0.9));
        assert_eq!(s.gates.cutoffs, [("acc".to_owned(), 0.8)]);
        assert_eq!(s.cases[1].assertions.len(), 1);
        assert_eq!(s.cases[1].threshold, Some(0.5));
    }

    #[test]
    fn case_keys_mariadb_would_pad_or_cut_are_refused() {
        let long = "k".repeat(192);
        let bad = json!({
            "datasets": [{"name": "d", "cases": [
                {"key": "a"}, {"key": "a "}, {"key": long}, {"key": "k".repeat(191)}
            ]}],
            "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "k"}]}]
        });
        let (s, f) = read_suite(&bad, "s", Path::new("."));
        assert!(s.is_none());
        let paths: Vec<(&str, Code)> = f.iter().map(|f| (f.path.as_str(), f.code)).collect();
        assert_eq!(
            paths,
            [
                ("datasets[0].cases[1].key", Code::BadType),
                ("datasets[0].cases[2].key", Code::BadType)
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = json!({
            "datasets": [{"name": "d", "cases": [
                {"key": "a", "assert": [{"type": "sounds-good"}]},
                {"key": "a"},
                {"vars": {}}
            ]}],
            "suites": [{"name": "s", "dataset": "d", "targets": [{"route": "no-slash"}],
                        "assert": [{"type": "regex", "value": "("}], "repeat": 0}]
        });
        let (s, f) = read_suite(&bad, "s", Path::new("."));
        assert!(s.is_none());
        let paths: Vec<(&str, Code)> = f.iter().map(|f| (f.path.as_str(), f.code)).collect();
        for expected in [
            ("suites[0].targets[0]", Code::BadType),
            ("suites[0].assert[0].value", Code::BadType),
            ("suites[0].repeat", Code::BadType),
            ("datasets[0].cases[0].assert[0].type", Code::BadType),
            ("datasets[0].cases[1].key", Code::Duplicate),
            ("datasets[0].cases[2].key", Code::MissingField),
        ] {
            assert!(paths.contains(&expected), "{expected:?} in {paths:?}");
        }
        let (_, f) = read_suite(&doc(), "missing", Path::new("."));
        assert_eq!(f[0].code, Code::UnknownReference);
    }

    #[test]
    fn cases_come_from_jsonl_and_csv_files_beside_the_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.jsonl"),
            "{\"key\": \"j1\", \"vars\": {\"TEXT\": \"甲\"}}\n\n{\"key\": \"j2\", \"expected\": \"乙\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.csv"),
            "key,TEXT,expected,tags\nc1,\"你好, 世界\",\"{\"\"x\"\": 1}\",\"a,b\"\nc2,二,文本,\n",
        )
        .unwrap();
        for (file, keys) in [("c.jsonl", vec!["j1", "j2"]), ("c.csv", vec!["c1", "c2"])] {
            let d = json!({"datasets": [{"name": "d", "cases_file": file}],
                           "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "k"}]}]});
            let (s, f) = read_suite(&d, "s", dir.path());
            assert!(f.is_empty(), "{f:?}");
            let s = s.unwrap();
            assert_eq!(
                s.cases.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
                keys
            );
        }
        let d = json!({"datasets": [{"name": "d", "cases_file": "c.csv"}],
                       "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "k"}]}]});
        let s = read_suite(&d, "s", dir.path()).0.unwrap();
        assert_eq!(s.cases[0].vars["TEXT"], "你好, 世界");
        assert_eq!(s.cases[0].expected, Some(json!({"x": 1})));
        assert_eq!(s.cases[0].tags, ["a", "b"]);
        assert_eq!(s.cases[1].expected, Some(json!("文本")));
    }

    #[test]
    fn targets_parse_from_the_command_line() {
        assert_eq!(
            Target::parse("p/r"),
            Some(Target::Route {
                project: "p".into(),
                route_key: "r".into()
            })
        );
        assert_eq!(
            Target::parse("config:a/b"),
            Some(Target::Config {
                config_key: "a/b".into()
            })
        );
        assert_eq!(Target::parse("route:nokey"), None);
        assert_eq!(Target::parse(""), None);
    }
}
