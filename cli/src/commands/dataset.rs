//! `eval dataset list / add-from-audit / add-from-objects`: the database's evaluation datasets,
//! grown from the audit trail or from stored audio (the library's [`ai_runner::eval::harvest`]
//! builds the cases; [`ai_runner::store::Db::add_cases`] stores them, never overwriting a case).

use std::collections::BTreeMap;
use std::path::Path;

use ai_runner::Code;
use ai_runner::eval::harvest::{self, Harvest};
use ai_runner::eval::suite::read_evals;
use ai_runner::ports::Store;
use ai_runner::run::policy::{Failover, effective_config};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `eval dataset ...`.
#[derive(Subcommand)]
pub enum DatasetCommand {
    /// The stored datasets with their case counts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recent successful calls of a config or route become cases: their variables recovered from
    /// the logged request, the logged answer as a candidate expected value (tagged `candidate`).
    AddFromAudit {
        /// The dataset (created if missing).
        dataset: String,
        /// Calls of this config.
        #[arg(long, conflicts_with = "route", required_unless_present = "route")]
        config: Option<String>,
        /// Calls of this route (`project/route_key`).
        #[arg(long)]
        route: Option<String>,
        /// At most this many of the latest calls.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Each audio object under a prefix becomes a media case (`media: {bucket, key}`).
    AddFromObjects {
        /// The dataset (created if missing).
        dataset: String,
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
        /// At most this many objects.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

impl DatasetCommand {
    /// Runs the dataset command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        match self {
            DatasetCommand::List { json } => list(cx, json).await,
            DatasetCommand::AddFromAudit {
                dataset,
                config,
                route,
                limit,
            } => {
                let harvest = from_audit(cx, config.as_deref(), route.as_deref(), limit).await?;
                let skipped = harvest.skipped;
                let added = store(cx, &dataset, harvest.cases, "audit").await?;
                if skipped > 0 {
                    eprintln!(
                        "{skipped} call(s) skipped: their request does not match the prompt as it is now (changed since, or spilled to object storage)"
                    );
                }
                eprintln!("{added}");
                Ok(())
            }
            DatasetCommand::AddFromObjects {
                dataset,
                bucket,
                prefix,
                limit,
            } => {
                let keys = cx.app()?.objects.list(&bucket, &prefix, limit).await?;
                let cases = harvest::from_objects(&bucket, &keys);
                let skipped = keys.len() - cases.len();
                let added = store(cx, &dataset, cases, "objects").await?;
                if skipped > 0 {
                    eprintln!("{skipped} object(s) skipped: not audio");
                }
                eprintln!("{added}");
                Ok(())
            }
        }
    }
}

async fn list(cx: &Cx, json: bool) -> Result<(), Failure> {
    let doc = cx.db()?.evals_document(None).await?.unwrap_or(Value::Null);
    let empty = Vec::new();
    let datasets = doc
        .get("datasets")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let suites = doc
        .get("suites")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let rows: Vec<Value> = datasets
        .iter()
        .map(|d| {
            let cases = d.get("cases").and_then(Value::as_array);
            json!({
                "dataset": d.get("name"),
                "cases": cases.map_or(0, Vec::len),
                "active": cases.map_or(0, |c| c.iter().filter(|c| c.get("active") != Some(&Value::Bool(false))).count()),
                "suites": suites.iter().filter(|s| s.get("dataset") == d.get("name")).filter_map(|s| s.get("name")).collect::<Vec<_>>(),
            })
        })
        .collect();
    if json {
        output::pretty(&rows);
        return Ok(());
    }
    for r in &rows {
        outln!(
            "{:<32} {:>6} case(s) ({} active)  suites: {}",
            r["dataset"].as_str().unwrap_or(""),
            r["cases"],
            r["active"],
            r["suites"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The latest answered calls of the config or route, as cases.
async fn from_audit(
    cx: &Cx,
    config: Option<&str>,
    route: Option<&str>,
    limit: i64,
) -> Result<Harvest, Failure> {
    let app = cx.app()?;
    let store = app.runner.store();
    let mut prompts = BTreeMap::new();
    let prompt_of = |cfg: &ai_runner::model::ResolvedConfig| {
        cfg.prompt.as_ref().map(|p| {
            let defaults = match &p.variables {
                Some(Value::Object(m)) => Some(m.clone()),
                _ => None::<Map<String, Value>>,
            };
            (p.messages.clone(), defaults)
        })
    };
    let rows = match (config, route) {
        (Some(k), _) => {
            let cfg = store.resolve_config(k).await?;
            if let Some(p) = prompt_of(&cfg) {
                prompts.insert(cfg.config_key.clone(), p);
            }
            store.recent_answers(Some(k), None, limit).await?
        }
        (None, Some(r)) => {
            let (project, key) = r.split_once('/').ok_or_else(|| {
                Failure::usage(
                    Code::InvalidInput,
                    format!("--route {r:?} is not project/route_key"),
                )
            })?;
            let resolved = store.resolve_route(project, key).await?;
            let failover = Failover::from_config(resolved.policy_config.as_ref());
            for m in &resolved.members {
                let eff = effective_config(&resolved, &m.config, &failover);
                if let Some(p) = prompt_of(&eff) {
                    prompts.insert(m.config.config_key.clone(), p);
                }
            }
            store
                .recent_answers(None, Some((project, key)), limit)
                .await?
        }
        (None, None) => {
            return Err(Failure::usage(
                Code::InvalidInput,
                "give --config KEY or --route project/route_key",
            ));
        }
    };
    Ok(harvest::from_audit_rows(&rows, &prompts))
}

/// Reads the case documents like a file's (every check applies), then stores the new ones.
async fn store(cx: &Cx, dataset: &str, cases: Vec<Value>, source: &str) -> Result<String, Failure> {
    let found = cases.len();
    let doc = json!({"datasets": [{"name": dataset, "cases": cases}]});
    let (evals, findings) = read_evals(&doc, Path::new("."), &Default::default());
    output::findings(&findings, false);
    let evals = evals.ok_or_else(|| {
        Failure::found(
            Code::SuiteInvalid,
            "the harvested cases do not read; nothing was stored",
        )
    })?;
    let cases = evals
        .datasets
        .into_iter()
        .next()
        .map(|d| d.cases)
        .unwrap_or_default();
    let cases: Vec<_> = cases
        .iter()
        .map(ai_runner::eval::suite::Case::stored)
        .collect();
    let added = cx.db()?.add_cases(dataset, &cases, source).await?;
    Ok(format!(
        "dataset {dataset}: {added} case(s) added, {} already there",
        found as u64 - added.min(found as u64)
    ))
}
