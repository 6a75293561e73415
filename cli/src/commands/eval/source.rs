//! Where `eval run` finds its suite ([`Source`]: a named suite, or a promptfoo config as
//! written, with the `--provider` mapping) and `eval import`, which writes a promptfoo config
//! into the database's evaluation catalog.

use std::path::{Path, PathBuf};

use ai_runner::Code;
use ai_runner::eval::promptfoo;

use super::invalid;
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// Where `eval run` reads its suite: a named suite (from a file, the catalog or ./evals.yaml)
/// or a promptfoo config.
pub(super) struct Source {
    pub(super) name: Option<String>,
    pub(super) file: Option<PathBuf>,
    pub(super) providers: promptfoo::ProviderMap,
    /// `--skip-unsupported`: what a promptfoo config asks that ai-runner cannot honour is
    /// reported as not evaluated instead of stopping the run.
    pub(super) skip_unsupported: bool,
}

impl Source {
    /// `eval run NAME [-f FILE]`, `eval run promptfooconfig.yaml`, `eval run -c FILE`, or
    /// `eval run` beside a ./promptfooconfig.yaml.
    pub(super) fn of(
        suite: Option<String>,
        file: Option<PathBuf>,
        providers: promptfoo::ProviderMap,
        skip_unsupported: bool,
    ) -> Result<Self, Failure> {
        let looks_like_file = |s: &str| {
            [".yaml", ".yml", ".json"].iter().any(|e| s.ends_with(e)) && Path::new(s).is_file()
        };
        let (name, file) = match (suite, file) {
            (Some(s), None) if looks_like_file(&s) => (None, Some(PathBuf::from(s))),
            (None, None) if Path::new("promptfooconfig.yaml").is_file() => {
                (None, Some(PathBuf::from("promptfooconfig.yaml")))
            }
            (None, None) => {
                return Err(Failure::usage(
                    Code::InvalidInput,
                    "give the suite's name (and -f FILE), or a promptfoo config file",
                ));
            }
            (name, file) => (name, file),
        };
        Ok(Self {
            name,
            file,
            providers,
            skip_unsupported,
        })
    }
}

/// `--provider ID=TARGET` flags.
pub(super) fn mapping(providers: &[String]) -> Result<promptfoo::ProviderMap, Failure> {
    providers
        .iter()
        .map(|p| {
            promptfoo::parse_mapping(p).ok_or_else(|| {
                Failure::usage(
                    Code::InvalidInput,
                    format!("--provider {p:?} is not ID=config:KEY, ID=PROJECT/ROUTE or ID=echo"),
                )
            })
        })
        .collect()
}

/// `eval import`: the promptfoo config translated, read as any evals document, and planned or
/// applied by the evaluation catalog's writer (as `cfg gen` applies an `evals:` section).
pub(super) async fn import(
    cx: &Cx,
    file: &Path,
    dataset: Option<String>,
    suite: Option<String>,
    map: &promptfoo::ProviderMap,
    skip_unsupported: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let doc = super::super::read_yaml(file)?;
    if !promptfoo::is_promptfoo(&doc) {
        return Err(Failure::usage(
            Code::SuiteInvalid,
            format!(
                "{} is not a promptfoo config (an evals document goes in with cfg gen)",
                file.display()
            ),
        ));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let suite = suite.unwrap_or_else(|| promptfoo_name(file));
    let (translated, findings) = promptfoo::translate(&doc, dir, &suite, map, skip_unsupported);
    output::findings(&findings, false);
    let mut doc = translated.ok_or_else(|| invalid(&findings))?;
    if let Some(d) = dataset {
        // `translate` builds one dataset and one suite; renamed in place.
        if let Some(name) = doc.pointer_mut("/datasets/0/name") {
            *name = serde_json::Value::String(d.clone());
        }
        if let Some(name) = doc.pointer_mut("/suites/0/dataset") {
            *name = serde_json::Value::String(d);
        }
    }
    let (evals, findings) =
        ai_runner::eval::suite::read_evals(&doc, dir, &std::collections::BTreeSet::new());
    output::findings(&findings, false);
    let mut evals = evals.ok_or_else(|| invalid(&findings))?;
    let db = cx.db()?;
    // The file is the dataset: cases it no longer lists are kept, inactive.
    if let Some(stored) = db.evals_document(None).await? {
        let known = std::collections::BTreeSet::new();
        if let (Some(stored), _) = ai_runner::eval::suite::read_evals(&stored, dir, &known) {
            evals.retire_missing(&stored);
        }
    }
    let items = if dry_run {
        db.plan_evals(&evals.catalog()).await?
    } else {
        db.apply_evals(&evals.catalog()).await?
    };
    output::plan(&items);
    outln!(
        "suite {suite}: {} case(s){}",
        evals
            .datasets
            .first()
            .map_or(0, |d| d.cases.iter().filter(|c| c.active).count()),
        if dry_run { "; nothing written" } else { "" }
    );
    Ok(())
}

/// A promptfoo config's suite name: the file's stem, or its directory's name for
/// `promptfooconfig.*` (promptfoo's examples are one directory each).
pub(super) fn promptfoo_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("promptfoo");
    if stem != "promptfooconfig" {
        return stem.to_owned();
    }
    std::fs::canonicalize(file)
        .ok()
        .and_then(|p| p.parent()?.file_name()?.to_str().map(str::to_owned))
        .unwrap_or_else(|| stem.to_owned())
}
