//! `cfg sample / verify / gen / export / route-pool / dump-schema`: the configuration as YAML.
//!
//! Every write goes through the library's one writer ([`ai_runner::store::Db::apply_catalog`]):
//! one transaction, idempotent. `${VAR}` key references are read from the environment when
//! applying, never stored. A file's `evals:` section (datasets and suites) is verified with it
//! and applied after it by the evaluation catalog's writer ([`ai_runner::store::Db::apply_evals`],
//! a second transaction: its suites name the configs and routes the first one wrote).

use std::path::Path;
use std::path::PathBuf;

use ai_runner::catalog::{self, Action, Catalog, Known, Severity};
use ai_runner::eval::suite::catalog_evals;
use ai_runner::{Code, config};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `cfg`.
#[derive(Args)]
pub struct CfgArgs {
    /// The catalog command.
    #[command(subcommand)]
    pub command: CfgCommand,
}

/// `cfg ...`.
#[derive(Subcommand)]
pub enum CfgCommand {
    /// Write a full-stack YAML template (connections, models, params, prompts, configs, routes).
    Sample {
        /// openrouter, openai or custom.
        #[arg(long, default_value = "openrouter")]
        provider: String,
        /// Where to write it (`-` for stdout).
        #[arg(long, default_value = "tmp/configs_full.yaml")]
        out: PathBuf,
    },
    /// Report every structural and referential problem of a file, each with its YAML path.
    Verify {
        /// The YAML file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Also resolve references against the database (read-only) and show what gen would do.
        #[arg(long)]
        db_check: bool,
        /// Print findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply a file to the database in one transaction (idempotent).
    Gen {
        /// The YAML file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Print the plan (create / update / unchanged per object) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the database's configuration as YAML that gen re-imports unchanged (keys as ${ENV} references).
    Export {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Apply the predecessor's route members YAML (project_name, route_key, policy, members).
    RoutePool {
        /// The YAML file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Keep members the file does not list (default: they are deactivated).
        #[arg(long)]
        append: bool,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export table definitions read-only (SHOW CREATE TABLE / SHOW FULL COLUMNS; SQLite equivalents).
    DumpSchema {
        /// MySQL database name (default: the configured one).
        #[arg(long)]
        db: Option<String>,
        /// Only tables whose names start with this.
        #[arg(long, default_value = "ai_")]
        prefix: String,
        /// Write Markdown here (`-` for stdout).
        #[arg(long, default_value = "docs/SCHEMA_AUTO.md")]
        out: PathBuf,
        /// Also write JSON here.
        #[arg(long, default_value = "docs/schema_dump.json")]
        json: PathBuf,
    },
}

impl CfgArgs {
    /// Runs the catalog command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        match self.command {
            CfgCommand::Sample { provider, out } => sample(&provider, &out),
            CfgCommand::Verify {
                file,
                db_check,
                json,
            } => verify(cx, &file, db_check, json).await,
            CfgCommand::Gen {
                file,
                dry_run,
                json,
            } => gen_(cx, &file, dry_run, json).await,
            CfgCommand::Export { out } => export(cx, out.as_deref()).await,
            CfgCommand::RoutePool {
                file,
                append,
                dry_run,
            } => route_pool(cx, &file, append, dry_run).await,
            CfgCommand::DumpSchema {
                db,
                prefix,
                out,
                json,
            } => dump_schema(cx, db.as_deref(), &prefix, &out, &json).await,
        }
    }
}

fn sample(provider: &str, out: &Path) -> Result<(), Failure> {
    if !catalog::sample::PROVIDERS.contains(&provider) {
        return Err(Failure::usage(
            Code::InvalidInput,
            format!(
                "--provider must be {}, not {provider:?}",
                catalog::sample::PROVIDERS.join(", ")
            ),
        ));
    }
    output::write_out(Some(out), &catalog::sample(provider))?;
    if out.as_os_str() != "-" {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Where a catalog's `cases_file`s are looked up: beside it.
fn dir_of(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

fn invalid(file: &Path, what: &str) -> Failure {
    Failure::found(Code::CatalogInvalid, format!("{} {what}", file.display()))
}

async fn verify(cx: &Cx, file: &Path, db_check: bool, json: bool) -> Result<(), Failure> {
    let doc = super::read_yaml(file)?;
    let snap = if db_check {
        Some(cx.db()?.snapshot().await?)
    } else {
        None
    };
    let known = snap
        .as_ref()
        .map(|s| s.known())
        .unwrap_or_else(Known::default);
    let (cat, mut findings) = catalog::verify_with(&doc, &known);
    let datasets = match &snap {
        Some(_) => cx.db()?.dataset_names().await?,
        None => Default::default(),
    };
    let (evals, eval_findings) = catalog_evals(
        &doc,
        dir_of(file),
        cat.as_ref().unwrap_or(&Catalog::default()),
        &known,
        &datasets,
    );
    findings.extend(eval_findings);
    findings.extend(ai_runner::catalog::prices::catalog_prices(&doc).1);
    output::findings(&findings, json);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if let (Some(cat), Some(snap)) = (&cat, &snap) {
        match catalog::plan(snap, cat, cx.keyring()?, &config::process_var) {
            Ok((items, _)) if !json => output::plan(&items),
            Ok(_) => {}
            Err(e) => outln!("note: gen would fail: {}: {e}", e.code()),
        }
        if let (Some(evals), false) = (&evals, json) {
            output::plan(&cx.db()?.plan_evals(&evals.catalog()).await?);
        }
    }
    if errors > 0 {
        return Err(invalid(file, &format!("has {errors} problem(s)")));
    }
    if !json {
        eprintln!("{}: ok ({} warning(s))", file.display(), findings.len());
    }
    Ok(())
}

async fn gen_(cx: &Cx, file: &Path, dry_run: bool, json: bool) -> Result<(), Failure> {
    let doc = super::read_yaml(file)?;
    let db = cx.db()?;
    let snap = db.snapshot().await?;
    let known = snap.known();
    let (cat, mut findings) = catalog::verify_with(&doc, &known);
    let (evals, eval_findings) = catalog_evals(
        &doc,
        dir_of(file),
        cat.as_ref().unwrap_or(&Catalog::default()),
        &known,
        &db.dataset_names().await?,
    );
    let has_evals = doc.get("evals").is_some_and(|e| !e.is_null());
    findings.extend(eval_findings);
    let has_prices = doc.get("prices").is_some_and(|e| !e.is_null());
    let (prices, price_findings) = ai_runner::catalog::prices::catalog_prices(&doc);
    findings.extend(price_findings);
    let (Some(cat), true, true) = (
        cat,
        evals.is_some() || !has_evals,
        prices.is_some() || !has_prices,
    ) else {
        output::findings(&findings, false);
        return Err(invalid(file, "does not verify; nothing was written"));
    };
    let ring = cx.keyring()?;
    let items = if dry_run {
        catalog::plan(&snap, &cat, ring, &config::process_var).map(|(i, _)| i)
    } else {
        db.apply_catalog(&cat, ring, &config::process_var).await
    };
    let mut items =
        items.map_err(|e| Failure::found(e.code(), format!("{e} (nothing was written)")))?;
    // The evaluation catalog goes second: its suites name the configs and routes just applied.
    if let Some(evals) = &evals {
        let eval_items = if dry_run {
            db.plan_evals(&evals.catalog()).await
        } else {
            db.apply_evals(&evals.catalog()).await
        };
        items.extend(eval_items.map_err(|e| {
            Failure::found(
                e.code(),
                format!("{e} (the configuration part was applied; the evals part was not)"),
            )
        })?);
    }
    // Prices go last: nothing else refers to them.
    if let (Some(prices), false) = (&prices, dry_run) {
        let changes = db
            .set_prices(prices, ai_runner::model::now_ms())
            .await
            .map_err(|e| {
                Failure::found(
                    e.code(),
                    format!("{e} (the configuration part was applied; the prices were not)"),
                )
            })?;
        if !json {
            eprintln!(
                "prices: {} added, {} changed, {} unchanged",
                changes.added, changes.changed, changes.unchanged
            );
        }
    }
    if json {
        output::pretty(&items);
    } else {
        output::plan(&items);
        let changed = items
            .iter()
            .filter(|i| i.action != Action::Unchanged)
            .count();
        eprintln!(
            "{} {changed} change(s){}",
            if dry_run { "would apply" } else { "applied" },
            if dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn export(cx: &Cx, out: Option<&Path>) -> Result<(), Failure> {
    let db = cx.db()?;
    let cat = db.snapshot().await?.to_catalog();
    let mut doc =
        serde_json::to_value(&cat).map_err(|e| Failure::usage(Code::IoError, e.to_string()))?;
    if let (Some(evals), Value::Object(m)) = (db.evals_document(None).await?, &mut doc) {
        m.insert("evals".into(), evals);
    }
    // Prices a catalog file set (imports from LiteLLM's map stay out: thousands of rows).
    let prices: Vec<Value> = match db.list_prices(None, false).await {
        Ok(p) => p
            .iter()
            .filter(|p| p.source == "catalog")
            .map(super::cost::catalog_price)
            .collect(),
        Err(ai_runner::ports::StoreError::Outdated(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if let (false, Value::Object(m)) = (prices.is_empty(), &mut doc) {
        m.insert("prices".into(), Value::Array(prices));
    }
    let yaml =
        serde_yaml_ng::to_string(&doc).map_err(|e| Failure::usage(Code::IoError, e.to_string()))?;
    output::write_out(
        out,
        &format!(
            "# exported by `ai-runner cfg export`; keys are ${{ENV}} references (unset: gen keeps the stored key)\n{yaml}"
        ),
    )
}

async fn route_pool(cx: &Cx, file: &Path, append: bool, dry_run: bool) -> Result<(), Failure> {
    let doc = super::read_yaml(file)?;
    let (routes, findings) = catalog::route_pool(&doc);
    output::findings(&findings, false);
    let Some(routes) = routes else {
        return Err(invalid(file, "does not verify; nothing was written"));
    };
    let db = cx.db()?;
    let snap = db.snapshot().await?;
    let cat = snap.route_pool(routes);
    let known = snap.known();
    let missing: Vec<String> = cat
        .routes
        .iter()
        .flat_map(|r| r.members.iter())
        .filter(|m| !known.configs.contains(&m.config_key))
        .map(|m| m.config_key.clone())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::found(
            Code::ConfigNotFound,
            format!(
                "no config named {} in the database; nothing was written",
                missing.join(", ")
            ),
        ));
    }
    let ring = cx.keyring()?;
    let items = if dry_run {
        catalog::plan_with(&snap, &cat, ring, &config::process_var, !append).map(|(i, _)| i)
    } else {
        db.apply_catalog_with(&cat, ring, &config::process_var, !append)
            .await
    };
    let items =
        items.map_err(|e| Failure::found(e.code(), format!("{e} (nothing was written)")))?;
    output::plan(&items);
    if dry_run {
        eprintln!("dry run: nothing written");
    }
    Ok(())
}

async fn dump_schema(
    cx: &Cx,
    database: Option<&str>,
    prefix: &str,
    out: &Path,
    json: &Path,
) -> Result<(), Failure> {
    let tables = cx.db()?.dump_schema(database, prefix).await?;
    let title = format!(
        "Schema of {} (tables {prefix}*)",
        database.map_or_else(
            || cx
                .settings()
                .map(|s| s.database.describe())
                .unwrap_or_default(),
            str::to_owned
        )
    );
    output::write_out(Some(out), &output::schema_markdown(&tables, &title))?;
    output::write_out(
        Some(json),
        &serde_json::to_string_pretty(&tables).unwrap_or_default(),
    )?;
    for p in [out, json].into_iter().filter(|p| p.as_os_str() != "-") {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
