//! Reading suites and datasets from the `evals:` shape (a file's, or a catalog's section): one
//! reader per part (suite, targets, assertions, gates, counts), each reporting every problem at
//! its YAML path.
//!
//! Invariants: a suite comes back only when no finding is an error; defaults are applied here and
//! nowhere else.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value};

use super::cases::read_cases;
use super::fields::{assertions, count, fraction, gates, targets};
use super::{DEFAULT_STOP_AFTER_FAILURES, Dataset, Evals, Parts, Suite, SuiteDef, Target};
use crate::catalog::fields::{Ctx, check_keys, has_errors, items, opt_str, req_str};
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::eval::assert::Assertion;

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
    let rubric = assertions.iter().any(Assertion::needs_judge);
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
                Target::Echo => true,
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
