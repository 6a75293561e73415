//! `run-once` and `route`: one audited run from the command line, configured exactly as the
//! functions are. Demo endpoints the stored configs point at (quickstart's) are served for the
//! length of the command, so those configs keep answering after quickstart has exited.

use std::path::PathBuf;

use ai_runner::{Code, RunContext, Trigger, Variables};
use clap::Args;
use serde_json::Value;

use crate::context::Cx;
use crate::failure::Failure;
use crate::output;

/// Runtime variables, from a file, a JSON argument and KEY=VALUE pairs (later wins).
#[derive(Args, Default)]
pub struct VarArgs {
    /// A runtime variable, KEY=VALUE (repeatable; wins over --data and the vars file).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub var: Vec<String>,
    /// Runtime variables as a JSON object (the predecessor's `-d/--data`).
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    pub data: Option<String>,
    /// A JSON object file of runtime variables (the predecessor's `-f/--file`).
    #[arg(short = 'f', long = "vars-file", alias = "file", value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
}

/// `run-once`.
#[derive(Args)]
pub struct RunOnceArgs {
    /// The ai_config.config_key to run.
    pub config_key: String,
    /// Runtime variables.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Print the whole run result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds: no attempt or retry starts that could not finish by then
    /// (`DEADLINE_EXCEEDED`, with its audit row).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `route`.
#[derive(Args)]
pub struct RouteArgs {
    /// The ai_project_v2.name.
    #[arg(short = 'p', long)]
    pub project: String,
    /// The ai_route_v2.route_key.
    #[arg(short = 'r', long = "route-key", alias = "route")]
    pub route_key: String,
    /// Runtime variables.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Resolve the route and print the exact first request (key masked); send and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the whole result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds: no attempt, retry or member handover starts that could
    /// not finish by then (`DEADLINE_EXCEEDED`, with the audit rows).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

impl RunOnceArgs {
    /// Runs the config.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let vars = self.vars.parse()?;
        let app = cx.app()?;
        let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
        let result = app
            .runner
            .run_once(&self.config_key, &vars, &context(self.timeout)?)
            .await;
        output::result(&result, self.json)
    }
}

impl RouteArgs {
    /// Runs (or dry-runs) the route.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let vars = self.vars.parse()?;
        let app = cx.app()?;
        if self.dry_run {
            let dry = app
                .runner
                .dry_run(&self.project, &self.route_key, &vars)
                .await?;
            output::pretty(&dry);
            return Ok(());
        }
        let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
        let result = app
            .runner
            .run_route(
                &self.project,
                &self.route_key,
                &vars,
                &context(self.timeout)?,
            )
            .await;
        output::route(&result, self.json)
    }
}

/// The CLI's run context: trigger `cli`, and a deadline `--timeout` seconds from now.
fn context(timeout: Option<f64>) -> Result<RunContext, Failure> {
    let mut ctx = RunContext::new(Trigger::Cli);
    if let Some(secs) = timeout {
        let d = std::time::Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Failure::usage(
                    Code::InvalidInput,
                    "--timeout is a positive number of seconds",
                )
            })?;
        ctx.deadline = Some(std::time::Instant::now() + d);
    }
    Ok(ctx)
}

impl VarArgs {
    /// The runtime variables: the file, then `--data`, then each `--var` (later wins).
    pub fn parse(&self) -> Result<Variables, Failure> {
        let mut vars = Variables::new();
        if let Some(path) = &self.vars_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(
                    Code::InvalidInput,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            vars.extend(object(&text, &path.display().to_string())?);
        }
        if let Some(data) = &self.data {
            vars.extend(object(data, "--data")?);
        }
        for kv in &self.var {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Failure::usage(Code::InvalidInput, format!("--var {kv:?} is not KEY=VALUE"))
                })?;
            vars.insert(k.to_owned(), Value::String(v.to_owned()));
        }
        Ok(vars)
    }
}

fn object(text: &str, what: &str) -> Result<Variables, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Failure::usage(
            Code::InvalidInput,
            format!("{what} must hold a JSON object"),
        )),
    }
}
