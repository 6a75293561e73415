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

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::assert::Assertion;
use crate::catalog::fields::{Ctx, check_keys, has_errors, items, opt_str, req_str};
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::model::eval::{EvalCatalog, StoredCase, StoredDataset, StoredSuite};

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
}

impl Target {
    /// `project/route_key` or the config key.
    pub fn label(&self) -> String {
        match self {
            Target::Route { project, route_key } => format!("{project}/{route_key}"),
            Target::Config { config_key } => config_key.clone(),
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
        }
    }
}

impl Evals {
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

/// Reads suite `name` from an evals document; `dir` is where `cases_file`s are looked up.
/// Problems anywhere in the document are reported (every one at once).
pub fn read_suite(doc: &Value, name: &str, dir: &Path) -> (Option<Suite>, Vec<Finding>) {
    let (evals, mut findings) = read_evals(doc, dir, &BTreeSet::new());
    let Some(evals) = evals else {
        return (None, findings);
    };
    match evals.suite(name) {
        Ok(s) => (Some(s), findings),
        Err(f) => {
            findings.push(f);
            (None, findings)
        }
    }
}

/// Reads a whole evals document (the `evals:` section of a catalog file, or a file of its own):
/// every dataset, case and suite, each problem with its path. A suite's dataset must be in the
/// document or in `known_datasets` (the database's). `cases_file`s are read from `dir`.
pub fn read_evals(
    doc: &Value,
    dir: &Path,
    known_datasets: &BTreeSet<String>,
) -> (Option<Evals>, Vec<Finding>) {
    let mut cx = Ctx::default();
    let Some(root) = doc.as_object() else {
        cx.err(
            "$",
            Code::BadType,
            "expected a mapping with datasets and suites",
        );
        return (None, cx.findings);
    };
    let root = match root.get("evals").and_then(Value::as_object) {
        Some(inner) => inner,
        None => root,
    };
    check_keys(root, &["datasets", "suites"], "$", &mut cx);
    let mut evals = Evals::default();
    let mut names = BTreeSet::new();
    for (dpath, d) in items(root, "datasets", &mut cx) {
        let Some(name) = req_str(d, "name", &dpath, &mut cx) else {
            continue;
        };
        if !names.insert(name.clone()) {
            cx.err(
                format!("{dpath}.name"),
                Code::Duplicate,
                format!("dataset {name:?} is defined twice"),
            );
        }
        let description = opt_str(d, "description", &dpath, &mut cx);
        let cases = read_cases(d, &dpath, dir, &mut cx);
        evals.datasets.push(Dataset {
            name,
            description,
            cases,
        });
    }
    let mut suite_names = BTreeSet::new();
    for (spath, s) in items(root, "suites", &mut cx) {
        let Some(def) = suite_def(s, &spath, &mut cx) else {
            continue;
        };
        if !suite_names.insert(def.name.clone()) {
            cx.err(
                format!("{spath}.name"),
                Code::Duplicate,
                format!("suite {:?} is defined twice", def.name),
            );
        }
        if !names.contains(&def.dataset) && !known_datasets.contains(&def.dataset) {
            cx.err(
                format!("{spath}.dataset"),
                Code::UnknownReference,
                format!("no dataset named {:?}", def.dataset),
            );
        }
        evals.suites.push(def);
    }
    let ok = !has_errors(&cx);
    (ok.then_some(evals), cx.findings)
}

fn suite_def(s: &Map<String, Value>, spath: &str, cx: &mut Ctx) -> Option<SuiteDef> {
    check_keys(
        s,
        &[
            "name",
            "dataset",
            "targets",
            "assert",
            "threshold",
            "repeat",
            "concurrency",
            "gates",
            "description",
            "stop_after_failures",
            "judge",
        ],
        spath,
        cx,
    );
    let name = req_str(s, "name", spath, cx);
    let dataset = req_str(s, "dataset", spath, cx);
    let targets = targets(s, spath, cx);
    let assertions = assertions(s.get("assert"), &format!("{spath}.assert"), cx);
    let threshold = fraction(s.get("threshold"), &format!("{spath}.threshold"), cx);
    let repeat = count(s.get("repeat"), &format!("{spath}.repeat"), 1, 100, cx);
    let concurrency = count(
        s.get("concurrency"),
        &format!("{spath}.concurrency"),
        4,
        256,
        cx,
    );
    let gates = gates(s.get("gates"), &format!("{spath}.gates"), cx);
    let _ = opt_str(s, "description", spath, cx);
    let stop_after_failures = match s.get("stop_after_failures") {
        None | Some(Value::Null) => DEFAULT_STOP_AFTER_FAILURES,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                cx.err(
                    format!("{spath}.stop_after_failures"),
                    Code::BadType,
                    "expected a whole number (0 = never stop early)",
                );
                DEFAULT_STOP_AFTER_FAILURES
            }
        },
    };
    let judge = match s.get("judge") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match Target::parse(t) {
            Some(t) => Some(t),
            None => {
                cx.err(
                    format!("{spath}.judge"),
                    Code::BadType,
                    "a judge is project/route_key or config:KEY",
                );
                None
            }
        },
        Some(_) => {
            cx.err(
                format!("{spath}.judge"),
                Code::BadType,
                "a judge is project/route_key or config:KEY",
            );
            None
        }
    };
    let rubric = assertions.iter().any(Assertion::is_rubric);
    if rubric && judge.is_none() {
        cx.err(
            format!("{spath}.judge"),
            Code::MissingField,
            "llm-rubric assertions need the suite's judge (project/route_key or config:KEY)",
        );
    }
    Some(SuiteDef {
        name: name?,
        dataset: dataset?,
        raw: s.clone(),
        parts: Parts {
            targets,
            assertions,
            threshold,
            repeat: u32::try_from(repeat).unwrap_or(1),
            concurrency: usize::try_from(concurrency).unwrap_or(4),
            gates,
            stop_after_failures,
            judge,
        },
    })
}

/// Reads the `evals:` section of a catalog document (`None` without one) like [`read_evals`],
/// finding paths under `evals.`; every suite target and judge must name a config or route of the
/// catalog file or, when `known` comes from the database, of the database (otherwise a name not
/// in the file is a warning: it is checked when the suite runs).
pub fn catalog_evals(
    doc: &Value,
    dir: &Path,
    cat: &crate::catalog::Catalog,
    known: &crate::catalog::Known,
    known_datasets: &BTreeSet<String>,
) -> (Option<Evals>, Vec<Finding>) {
    let Some(section) = doc.get("evals").filter(|v| !v.is_null()) else {
        return (None, Vec::new());
    };
    let (evals, mut findings) = read_evals(section, dir, known_datasets);
    for f in &mut findings {
        f.path = format!("evals.{}", f.path);
    }
    let Some(evals) = evals else {
        return (None, findings);
    };
    let configs: BTreeSet<&str> = cat
        .configs
        .iter()
        .map(|c| c.config_key.as_str())
        .chain(known.configs.iter().map(String::as_str))
        .collect();
    let routes: BTreeSet<String> = cat
        .routes
        .iter()
        .map(|r| format!("{}/{}", r.project, r.route_key))
        .chain(known.routes.iter().cloned())
        .collect();
    for (i, s) in evals.suites.iter().enumerate() {
        let named = s
            .parts
            .targets
            .iter()
            .enumerate()
            .map(|(j, t)| (format!("evals.suites[{i}].targets[{j}]"), t))
            .chain(
                s.parts
                    .judge
                    .iter()
                    .map(|t| (format!("evals.suites[{i}].judge"), t)),
            );
        for (path, t) in named {
            let exists = match t {
                Target::Config { config_key } => configs.contains(config_key.as_str()),
                Target::Route { .. } => routes.contains(&t.label()),
            };
            if exists {
                continue;
            }
            findings.push(Finding {
                severity: if known.from_database {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                path,
                code: Code::UnknownReference,
                message: format!(
                    "{} is not a config or route of this file{}",
                    t.label(),
                    if known.from_database {
                        " or the database"
                    } else {
                        " (the database is checked with --db-check and gen)"
                    }
                ),
            });
        }
    }
    let ok = !findings.iter().any(|f| f.severity == Severity::Error);
    (ok.then_some(evals), findings)
}

/// Consecutive provider failures (unreachable, timeouts, 5xx, 429, refused keys) after which a
/// run stops early, unless the suite says otherwise (`stop_after_failures`, 0 = never).
pub const DEFAULT_STOP_AFTER_FAILURES: u32 = 20;

fn targets(s: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Vec<Target> {
    let mut out = Vec::new();
    for (tp, t) in items(s, "targets", cx) {
        let tp = format!("{path}.{tp}");
        check_keys(t, &["route", "config"], &tp, cx);
        let parsed = match (t.get("route"), t.get("config")) {
            (Some(Value::String(r)), None) => {
                Target::parse(&format!("route:{r}")).filter(|t| matches!(t, Target::Route { .. }))
            }
            (None, Some(Value::String(c))) => Target::parse(&format!("config:{c}")),
            _ => None,
        };
        match parsed {
            Some(t) => out.push(t),
            None => cx.err(
                tp,
                Code::BadType,
                "a target is {route: project/route_key} or {config: config_key}",
            ),
        }
    }
    if out.is_empty() {
        cx.err(
            format!("{path}.targets"),
            Code::MissingField,
            "at least one target is needed",
        );
    }
    out
}

fn assertions(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Vec<Assertion> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .filter_map(
                |(i, a)| match Assertion::parse(a, &format!("{path}[{i}]")) {
                    Ok(a) => Some(a),
                    Err((at, message)) => {
                        cx.err(at, Code::BadType, message);
                        None
                    }
                },
            )
            .collect(),
        Some(_) => {
            cx.err(path, Code::BadType, "expected a list of assertions");
            Vec::new()
        }
    }
}

fn fraction(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Option<f64> {
    match v {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_f64().filter(|f| (0.0..=1.0).contains(f)) {
            Some(f) => Some(f),
            None => {
                cx.err(path, Code::BadType, "expected a number from 0 to 1");
                None
            }
        },
    }
}

fn count(v: Option<&Value>, path: &str, default: u64, max: u64, cx: &mut Ctx) -> u64 {
    match v {
        None | Some(Value::Null) => default,
        Some(x) => match x.as_u64().filter(|n| (1..=max).contains(n)) {
            Some(n) => n,
            None => {
                cx.err(
                    path,
                    Code::BadType,
                    format!("expected a whole number from 1 to {max}"),
                );
                default
            }
        },
    }
}

fn gates(v: Option<&Value>, path: &str, cx: &mut Ctx) -> Gates {
    let mut g = Gates::default();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return g;
    };
    let Some(o) = v.as_object() else {
        cx.err(path, Code::BadType, "expected a mapping");
        return g;
    };
    check_keys(o, &["min_pass_rate", "cutoffs"], path, cx);
    g.min_pass_rate = fraction(o.get("min_pass_rate"), &format!("{path}.min_pass_rate"), cx);
    if let Some(c) = o.get("cutoffs").filter(|c| !c.is_null()) {
        match c.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if let Some(f) = fraction(Some(v), &format!("{path}.cutoffs.{k}"), cx) {
                        g.cutoffs.push((k.clone(), f));
                    }
                }
            }
            None => cx.err(
                format!("{path}.cutoffs"),
                Code::BadType,
                "expected metric: minimum",
            ),
        }
    }
    g
}

/// The active cases of a dataset: inline ones, then those of its `cases_file`.
fn read_cases(d: &Map<String, Value>, path: &str, dir: &Path, cx: &mut Ctx) -> Vec<Case> {
    check_keys(d, &["name", "cases", "cases_file", "description"], path, cx);
    let mut raw: Vec<(String, Value)> = match d.get("cases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{path}.cases[{i}]"), c.clone()))
            .collect(),
        Some(_) => {
            cx.err(format!("{path}.cases"), Code::BadType, "expected a list");
            Vec::new()
        }
    };
    if let Some(file) = opt_str(d, "cases_file", path, cx) {
        let at = format!("{path}.cases_file");
        match std::fs::read_to_string(dir.join(&file)) {
            Err(e) => cx.err(at, Code::IoError, format!("cannot read {file}: {e}")),
            Ok(text) if file.ends_with(".csv") => raw.extend(csv_cases(&text, &file, cx)),
            Ok(text) => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    match serde_json::from_str::<Value>(line) {
                        Ok(v) => raw.push((format!("{file}:{}", n + 1), v)),
                        Err(e) => cx.err(
                            format!("{file}:{}", n + 1),
                            Code::YamlInvalid,
                            format!("not a JSON line: {e}"),
                        ),
                    }
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (at, c) in raw {
        let Some(o) = c.as_object() else {
            cx.err(at, Code::BadType, "a case is a mapping with a key");
            continue;
        };
        check_keys(
            o,
            &[
                "key",
                "vars",
                "expected",
                "tags",
                "assert",
                "threshold",
                "active",
                "media",
            ],
            &at,
            cx,
        );
        let Some(key) = req_str(o, "key", &at, cx) else {
            continue;
        };
        if !seen.insert(key.clone()) {
            cx.err(
                format!("{at}.key"),
                Code::Duplicate,
                format!("case {key:?} is defined twice"),
            );
        }
        let active = o.get("active").and_then(Value::as_bool) != Some(false);
        let mut vars = match o.get("vars") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                cx.err(format!("{at}.vars"), Code::BadType, "expected a mapping");
                Map::new()
            }
        };
        let mut media_ref = None;
        if let Some(media) = o.get("media").filter(|m| !m.is_null()) {
            match (
                media.get("bucket").and_then(Value::as_str),
                media.get("key").and_then(Value::as_str),
            ) {
                (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => {
                    vars.insert("MEDIA_BUCKET".into(), Value::String(b.into()));
                    vars.insert("MEDIA_KEY".into(), Value::String(k.into()));
                    media_ref = Some((b.to_owned(), k.to_owned()));
                }
                _ => cx.err(
                    format!("{at}.media"),
                    Code::BadType,
                    "media is {bucket, key}",
                ),
            }
        }
        let tags = match o.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_owned()).collect(),
            Some(_) => {
                cx.err(format!("{at}.tags"), Code::BadType, "expected a list");
                Vec::new()
            }
        };
        out.push(Case {
            key,
            vars,
            expected: o.get("expected").filter(|e| !e.is_null()).cloned(),
            tags,
            assertions: assertions(o.get("assert"), &format!("{at}.assert"), cx),
            threshold: fraction(o.get("threshold"), &format!("{at}.threshold"), cx),
            media: media_ref,
            active,
            raw: c.clone(),
        });
    }
    out
}

/// CSV cases: a header row; `key`, optional `tags` (comma-separated within the cell),
/// `expected` (JSON or text) and `threshold`; every other column is a variable.
fn csv_cases(text: &str, file: &str, cx: &mut Ctx) -> Vec<(String, Value)> {
    let mut rows = csv_rows(text).into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    if !header.iter().any(|h| h == "key") {
        cx.err(
            format!("{file}:1"),
            Code::MissingField,
            "the header needs a key column",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let mut case = Map::new();
        let mut vars = Map::new();
        for (h, cell) in header.iter().zip(row) {
            match h.as_str() {
                "key" => {
                    case.insert("key".into(), Value::String(cell));
                }
                "tags" => {
                    case.insert("tags".into(), Value::String(cell));
                }
                "threshold" if !cell.is_empty() => {
                    if let Ok(f) = cell.parse::<f64>() {
                        case.insert("threshold".into(), Value::from(f));
                    }
                }
                "expected" if !cell.is_empty() => {
                    let v = serde_json::from_str(&cell).unwrap_or(Value::String(cell));
                    case.insert("expected".into(), v);
                }
                "expected" | "threshold" => {}
                other => {
                    vars.insert(other.to_owned(), Value::String(cell));
                }
            }
        }
        case.insert("vars".into(), Value::Object(vars));
        out.push((format!("{file}:{}", n + 2), Value::Object(case)));
    }
    out
}

/// RFC 4180 rows: quoted cells may hold commas, quotes (doubled) and newlines.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push(std::mem::take(&mut row));
                }
                row.clear();
            }
            (false, '\r') => {}
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

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
