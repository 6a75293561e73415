//! The command line's top level: the list of commands. Each command is a clap struct with its
//! `run()` beside it in [`crate::commands`] (its arguments, subcommands and behaviour in one
//! file). The predecessor's spellings (`route -r/--route`, `-d/--data`, `-f/--file`, `init`,
//! `quickstart --mode`, `doctor --timeout`) are accepted with the same meaning.

use clap::{Parser, Subcommand};

use crate::commands::access::AccessArgs;
use crate::commands::audit::AuditArgs;
use crate::commands::breaker::BreakerArgs;
use crate::commands::cfg::CfgArgs;
use crate::commands::cost::{BudgetArgs, PricesArgs, UsageArgs};
use crate::commands::db::DbArgs;
use crate::commands::dev::DevArgs;
use crate::commands::doctor::{DoctorArgs, InitArgs};
use crate::commands::eval::EvalArgs;
use crate::commands::keys::KeysArgs;
use crate::commands::media::MediaArgs;
use crate::commands::quickstart::QuickstartArgs;
use crate::commands::run::{RouteArgs, RunOnceArgs};
use crate::commands::serve::ServeArgs;

/// `ai-runner`: run database-configured AI calls, audited.
#[derive(Parser)]
#[command(
    name = "ai-runner",
    version,
    about = "Run database-configured AI calls, audited"
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand)]
pub enum Command {
    /// Run one config_key and print its content (or the whole result with --json).
    RunOnce(RunOnceArgs),
    /// Run a route (policy over member configs, with failover) or show its dry run.
    Route(RouteArgs),
    /// Set up a database with demo configs and run them against a local demo provider.
    Quickstart(QuickstartArgs),
    /// The predecessor's readiness check: configuration, database, keys (no side effects but ./tmp).
    Init(InitArgs),
    /// The upload pipeline: process an object on demand, list jobs, manage mappings.
    Media(MediaArgs),
    /// Configuration as YAML: sample, verify, gen (apply), export, route-pool, dump-schema.
    Cfg(CfgArgs),
    /// Check the setup exactly as the functions read it (env, database, schema, keys, providers, objects).
    Doctor(DoctorArgs),
    /// Create or upgrade the schema.
    Db(DbArgs),
    /// Encrypt, check and rotate stored keys.
    Keys(KeysArgs),
    /// Evaluations: run a suite of cases through routes and configs, graded, reported, gated.
    Eval(EvalArgs),
    /// The audit spool: rows the database did not take, waiting to be written.
    Audit(AuditArgs),
    /// Access keys for signed API calls: create, list, disable, rotate, usage.
    Access(AccessArgs),
    /// Model prices (USD per token or second, LiteLLM's field names): import, set, list.
    Prices(PricesArgs),
    /// Spending limits per project, route or access key, per UTC day or month.
    Budget(BudgetArgs),
    /// The connections' circuit breakers, shared by every instance: list, reset, limits.
    Breaker(BreakerArgs),
    /// What calls cost and how they went: calls, errors, tokens, cost, latency, by group.
    Usage(UsageArgs),
    /// The local web console: catalog, try a call, audit trail, uploads, evaluations.
    Dev(DevArgs),
    /// Serve the OpenAI-compatible API (/v1/chat/completions, /v1/models) and the JSON API.
    Serve(ServeArgs),
}
