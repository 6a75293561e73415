//! The command line, as clap structs and nothing else. Each command's behaviour is its struct's
//! `run` in [`crate::commands`]. The predecessor's spellings (`route -r/--route`, `-d/--data`,
//! `-f/--file`, `init`, `quickstart --mode`, `doctor --timeout`) are accepted with the same
//! meaning.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// What calls cost and how they went: calls, errors, tokens, cost, latency, by group.
    Usage(UsageArgs),
    /// The local web console: catalog, try a call, audit trail, uploads, evaluations.
    Dev(DevArgs),
}

/// `dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Address to listen on: `127.0.0.1` (this machine only), `localhost`, or another address,
    /// which exposes the console (behind its token) to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8899)]
    pub port: u16,
    /// Open the console in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Use this token instead of a random one (at least 16 of A-Z a-z 0-9 _ -).
    #[arg(long, env = "AI_RUNNER_DEV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `prices ...`.
#[derive(Args)]
pub struct PricesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PricesCommand,
}

/// `prices ...`.
#[derive(Subcommand)]
pub enum PricesCommand {
    /// Import LiteLLM's `model_prices_and_context_window.json` (or an excerpt); nothing is
    /// fetched. A changed price closes the old row and opens a new one.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// Recorded as each row's source (default `litellm:<file name>`).
        #[arg(long)]
        source: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set one model's prices, in USD per unit (per token; per second for audio).
    Set(PricesSet),
    /// The current prices (with --history, closed ones too).
    List {
        /// Only models starting with this.
        #[arg(long)]
        model: Option<String>,
        /// Include prices that were replaced.
        #[arg(long)]
        history: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `prices set`.
#[derive(Args)]
pub struct PricesSet {
    /// The model name a config sends, or a prefix ending in `*` (`gpt-4o*`).
    #[arg(long)]
    pub model: String,
    /// The provider (LiteLLM's name: `openai`, `dashscope`, ...) or a connection name; absent:
    /// any provider.
    #[arg(long, default_value = "")]
    pub provider: String,
    /// `input_cost_per_token`.
    #[arg(long)]
    pub input: Option<f64>,
    /// `output_cost_per_token`.
    #[arg(long)]
    pub output: Option<f64>,
    /// `cache_read_input_token_cost`.
    #[arg(long)]
    pub cache_read: Option<f64>,
    /// `cache_creation_input_token_cost`.
    #[arg(long)]
    pub cache_write: Option<f64>,
    /// `input_cost_per_audio_token`.
    #[arg(long)]
    pub audio_input: Option<f64>,
    /// `output_cost_per_audio_token`.
    #[arg(long)]
    pub audio_output: Option<f64>,
    /// `output_cost_per_reasoning_token`.
    #[arg(long)]
    pub reasoning: Option<f64>,
    /// `input_cost_per_second` (audio billed by duration).
    #[arg(long)]
    pub per_second: Option<f64>,
    /// The model's longest answer, for budget reservations when a call sets no `max_tokens`.
    #[arg(long)]
    pub max_output_tokens: Option<i64>,
    /// Recorded as the row's source.
    #[arg(long, default_value = "manual")]
    pub source: String,
}

/// `budget ...`.
#[derive(Args)]
pub struct BudgetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BudgetCommand,
}

/// What a budget caps: exactly one.
#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["project", "route", "key"])))]
pub struct BudgetTarget {
    /// Every call of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// One route, `project/route_key`.
    #[arg(long)]
    pub route: Option<String>,
    /// Every call signed by this access key.
    #[arg(long)]
    pub key: Option<String>,
}

/// `budget ...`.
#[derive(Subcommand)]
pub enum BudgetCommand {
    /// Set a limit in USD per UTC day and/or per UTC month.
    Set {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// USD per UTC day.
        #[arg(long)]
        daily: Option<f64>,
        /// USD per UTC calendar month.
        #[arg(long)]
        monthly: Option<f64>,
    },
    /// Every budget with its use in the current window.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a budget.
    Remove {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// Which window.
        #[arg(long, value_enum)]
        period: PeriodArg,
    },
}

/// `--period`.
#[derive(Clone, Copy, ValueEnum)]
pub enum PeriodArg {
    /// The daily budget.
    Day,
    /// The monthly budget.
    Month,
}

/// `usage`.
#[derive(Args)]
pub struct UsageArgs {
    /// How far back: `24h`, `7d`, `30d`, or a UTC date `YYYY-MM-DD`.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Group rows by this.
    #[arg(long, value_enum, default_value = "day")]
    pub by: ByArg,
    /// What the daily spend chart stacks by.
    #[arg(long, value_enum, default_value = "model")]
    pub stack: ByArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: UsageFormat,
    /// Also write a self-contained HTML page with charts here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// `--by`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ByArg {
    /// UTC day.
    Day,
    /// Project.
    Project,
    /// Route.
    Route,
    /// Config.
    Config,
    /// Model.
    Model,
    /// Access key.
    Key,
}

/// `usage --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum UsageFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// CSV.
    Csv,
}

/// `access ...`.
#[derive(Args)]
pub struct AccessArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// `access ...`.
#[derive(Subcommand)]
pub enum AccessCommand {
    /// Create a key and print its secret once (it is stored only encrypted).
    Create(AccessCreate),
    /// List the keys (never a secret).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key (its calls get AUTH_KEY_DISABLED from now on).
    Disable {
        /// The access key id.
        access_key_id: String,
    },
    /// Enable a disabled key again.
    Enable {
        /// The access key id.
        access_key_id: String,
    },
    /// Give a key a new secret (printed once); the old one keeps working for the grace period.
    Rotate {
        /// The access key id.
        access_key_id: String,
        /// How long the old secret still works: `90s`, `30m`, `24h`, `7d`; `0` ends it now.
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Calls let through and refused per key and UTC day.
    Usage {
        /// Only this key.
        access_key_id: Option<String>,
        /// Days back from today (UTC), today included.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `access create`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["project", "user"])))]
pub struct AccessCreate {
    /// A project credential: only this project's routes.
    #[arg(long)]
    pub project: Option<String>,
    /// A user key, owned by this user (created if missing).
    #[arg(long)]
    pub user: Option<String>,
    /// Projects it may run routes of: `*`, `a,b` or `prefix*` (default `*`).
    #[arg(long)]
    pub projects: Option<String>,
    /// Routes it may run, as `project/route_key` patterns (default `*`).
    #[arg(long)]
    pub routes: Option<String>,
    /// Config keys it may run directly with run-once (default: `*` for user keys, none for
    /// project keys).
    #[arg(long)]
    pub configs: Option<String>,
    /// May ask for dry runs (they show prompts and the request, key masked).
    #[arg(long)]
    pub allow_dry_run: bool,
    /// May start evaluation runs.
    #[arg(long)]
    pub allow_eval: bool,
    /// Calls per UTC day (0 or absent: unlimited).
    #[arg(long)]
    pub daily_quota: Option<u32>,
    /// Requests per second (0 or absent: unlimited).
    #[arg(long)]
    pub rps: Option<u32>,
    /// An allowed caller address or network (repeatable; none: any address).
    #[arg(long = "allow-ip")]
    pub allow_ips: Vec<String>,
    /// Expires after this long: `30m`, `12h`, `90d`.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `audit ...`.
#[derive(Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `audit ...`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write spooled rows into ai_call_logs (oldest first; a row already there is not written
    /// twice); exit 1 if some stay spooled.
    Replay {
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How many rows wait in the spool, and the oldest one's age.
    Pending {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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

/// Which database quickstart sets up.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuickstartMode {
    /// The embedded SQLite file (`AI_RUNNER_DB_PATH`), whatever else is configured.
    Local,
    /// The configured MySQL / MariaDB (`DATABASE_URL` or `MYSQL_*`).
    Rds,
    /// The predecessor's media demo: upload a file and run it through the upload pipeline.
    Demo,
}

/// `quickstart`.
#[derive(Args)]
pub struct QuickstartArgs {
    /// local (embedded file), rds (the configured MySQL) or demo (the upload pipeline).
    #[arg(long, value_enum, default_value = "local")]
    pub mode: QuickstartMode,
    /// The media file the demo mode uploads (default: a generated 1 KiB file, tmp/demo/2.mp3).
    #[arg(long)]
    pub media_path: Option<PathBuf>,
    /// The demo provider's loopback port (0 = any free port).
    #[arg(long, env = "AI_RUNNER_DEMO_PORT", default_value_t = ai_runner::demo::DEFAULT_DEMO_PORT)]
    pub demo_port: u16,
    /// Print the whole run results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `init`.
#[derive(Args)]
pub struct InitArgs {
    /// Only the environment.
    #[arg(long, conflicts_with = "db_only")]
    pub env_only: bool,
    /// Only the database.
    #[arg(long)]
    pub db_only: bool,
    /// Accepted for the predecessor's scripts (its dev server port); not used by the check.
    #[arg(long)]
    pub dev_port: Option<u16>,
    /// Seconds to wait for each connection.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// `doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Only the environment.
    #[arg(long, conflicts_with = "db_only")]
    pub env_only: bool,
    /// Only the database (reachability, schema, keys).
    #[arg(long)]
    pub db_only: bool,
    /// Seconds to wait for each connection (database, provider host lookups).
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `media`.
#[derive(Args)]
pub struct MediaArgs {
    /// The media command.
    #[command(subcommand)]
    pub command: MediaCommand,
}

/// `media ...`.
#[derive(Subcommand)]
pub enum MediaCommand {
    /// Run the pipeline for one object now (re-processes it even if its job already finished).
    Process {
        /// Bucket.
        bucket: String,
        /// Object key (as stored, not URL-encoded).
        key: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recent jobs, newest first.
    Jobs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which route processes which objects.
    Map {
        /// The mapping command.
        #[command(subcommand)]
        command: MapCommand,
    },
}

/// `media map ...`.
#[derive(Subcommand)]
pub enum MapCommand {
    /// List mappings.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a mapping (the most specific match wins: exact bucket, longer prefix, longer suffix).
    Add {
        /// Bucket name, or `*` for any.
        #[arg(long)]
        bucket: String,
        /// Key prefix to watch (e.g. `uploads/`).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Key suffix (e.g. `.wav`).
        #[arg(long, default_value = "")]
        suffix: String,
        /// Route project.
        #[arg(short = 'p', long)]
        project: String,
        /// Route key.
        #[arg(short = 'r', long = "route-key", alias = "route")]
        route_key: String,
        /// Extra variables for the run, KEY=VALUE (e.g. MEDIA_MODE=inline).
        #[arg(long = "var", value_name = "KEY=VALUE")]
        var: Vec<String>,
    },
    /// Remove a mapping by id.
    Remove {
        /// The mapping id (see `media map list`).
        id: i64,
    },
}

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

/// `db`.
#[derive(Args)]
pub struct DbArgs {
    /// The schema command.
    #[command(subcommand)]
    pub command: DbCommand,
}

/// `db ...`.
#[derive(Subcommand)]
pub enum DbCommand {
    /// Create the schema where missing (SQLite: ours; MySQL: the predecessor's tables), then migrate.
    Init {
        /// Show the SQL instead of running it.
        #[arg(long)]
        print: bool,
    },
    /// Apply our additive, idempotent migrations.
    Migrate {
        /// Show the statements that would run, without running them.
        #[arg(long)]
        print: bool,
    },
}

/// `keys`.
#[derive(Args)]
pub struct KeysArgs {
    /// The keys command.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `keys ...`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Encrypt a plain key read from stdin (never from argv) for one connection; prints the blob.
    Encrypt {
        /// The ai_connection.name the blob is for (it is bound to that row).
        #[arg(long)]
        connection: String,
    },
    /// Which stored secrets decrypt, and in which format (never prints a secret).
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every stored secret under the current pepper (v1 or an older key id), in one transaction.
    Rotate {
        /// Count what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The evaluation command.
    #[command(subcommand)]
    pub command: EvalCommand,
}

/// `eval ...`.
#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run a suite: every case through every target, graded; exit 0 passed, 1 a gate failed,
    /// 2 bad input or setup.
    Run {
        /// The suite's name.
        suite: String,
        /// The YAML file holding `datasets:` and `suites:` (or an `evals:` section). Without it the
        /// suite comes from the database's evaluation catalog (applied by `cfg gen`), else from
        /// ./evals.yaml.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Run only this target: `project/route_key` or `config:KEY` (repeatable).
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
        /// Calls in flight at once (default: the suite's, else 4).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Repetitions of every case (flaky cases pass some and fail others).
        #[arg(long)]
        repeat: Option<u32>,
        /// At most this many cases.
        #[arg(long)]
        limit: Option<usize>,
        /// Only cases with this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Write a report; the extension picks the format: .json, .xml (JUnit) or .html (repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Gate: every target needs at least this pass rate (0..1).
        #[arg(long)]
        min_pass_rate: Option<f64>,
        /// Gate: every target needs this metric's mean score at least, METRIC=VALUE (repeatable).
        #[arg(long = "cutoff", value_name = "METRIC=VALUE")]
        cutoffs: Vec<String>,
        /// Compare with this earlier run (`last`: the suite's latest finished run).
        #[arg(long)]
        baseline: Option<String>,
        /// Gate: no target's pass rate may fall more than this (0..1) below the baseline's.
        #[arg(long, requires = "baseline")]
        max_regression: Option<f64>,
        /// Stop after this many consecutive provider failures (0 = never; default: the suite's,
        /// else 20).
        #[arg(long)]
        stop_after_failures: Option<u32>,
        /// Check the suite and its targets and print the plan; call nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Datasets in the database's evaluation catalog: list them, or add cases from the audit
    /// trail or from stored audio.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Go on with an interrupted run: only cases without a stored result are called.
    Resume {
        /// The run id (see `eval list`).
        run: String,
        /// Write a report (.json, .xml, .html; repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Recent runs, newest first.
    List {
        /// Only this suite's runs.
        #[arg(long)]
        suite: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run's summary (and reports rebuilt from its stored results).
    Show {
        /// The run id.
        run: String,
        /// Write a report (.json, .xml, .html; repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run B against run A: per target side by side, per case what newly fails or passes.
    Compare {
        /// Run A (before).
        a: String,
        /// Run B (after).
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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
