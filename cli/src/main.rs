//! The `ai-runner` command. Parses arguments, calls the library, prints, and maps failures to
//! exit codes (0 success, 1 a run that failed, 2 bad input or setup). No logic lives here.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use ai_runner::config::DatabaseTarget;
use ai_runner::demo::{self, ProviderServer, QuickstartProvider, Reply};
use ai_runner::provider::HttpProvider;
use ai_runner::routing::RouteResult;
use ai_runner::store::{Db, migrate};
use ai_runner::{RunContext, RunError, RunResult, Runner, Settings, Variables};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "ai-runner",
    version,
    about = "Run database-configured AI calls, audited"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one config_key and print its content (or the whole result with --json).
    RunOnce {
        /// The ai_config.config_key to run.
        config_key: String,
        #[command(flatten)]
        vars: VarArgs,
        /// Print the whole run result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a route (policy over member configs, with failover) or show its dry run.
    Route {
        /// The ai_project_v2.name.
        #[arg(short = 'p', long)]
        project: String,
        /// The ai_route_v2.route_key.
        #[arg(short = 'r', long = "route-key", alias = "route")]
        route_key: String,
        #[command(flatten)]
        vars: VarArgs,
        /// Resolve the route and print the exact first request (key masked); send and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the whole result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set up the embedded database with a demo config and run it against a local demo provider.
    Quickstart {
        /// Print the whole run result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The upload pipeline: process an object on demand, list jobs, manage mappings.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// Configuration as YAML: sample, verify, gen (apply), export.
    Cfg {
        #[command(subcommand)]
        command: CfgCommand,
    },
    /// Check the setup exactly as the functions read it (env, database, schema, keys, providers, objects).
    Doctor {
        /// Only the environment.
        #[arg(long, conflicts_with = "db_only")]
        env_only: bool,
        /// Only the database (reachability, schema, keys).
        #[arg(long)]
        db_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the schema.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Encrypt provider keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Args)]
struct VarArgs {
    /// A runtime variable, KEY=VALUE (repeatable; wins over the vars file).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    var: Vec<String>,
    /// A JSON object file of runtime variables.
    #[arg(long = "vars-file", value_name = "FILE")]
    vars_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CfgCommand {
    /// Print a full-stack YAML template (connections, models, params, prompts, configs, routes).
    Sample {
        /// openrouter, openai or custom.
        #[arg(long, default_value = "openrouter")]
        provider: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
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
        /// Write Markdown here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MediaCommand {
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
        #[command(subcommand)]
        command: MapCommand,
    },
}

#[derive(Subcommand)]
enum MapCommand {
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
        #[arg(short = 'r', long = "route-key")]
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

#[derive(Subcommand)]
enum DbCommand {
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

#[derive(Subcommand)]
enum KeysCommand {
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

/// A CLI failure: a stable code, a message, and the exit code.
struct Failure {
    code: String,
    message: String,
    exit: u8,
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
            exit: e.exit_code() as u8,
        }
    }
}

fn usage(code: &str, message: impl Into<String>) -> Failure {
    Failure {
        code: code.to_owned(),
        message: message.into(),
        exit: 2,
    }
}

macro_rules! from_run_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self { RunError::from(e).into() }
        }
    )*};
}
from_run_error!(
    ai_runner::config::ConfigError,
    ai_runner::store::StoreError,
    ai_runner::crypto::CryptoError,
    ai_runner::provider::ProviderError
);

#[tokio::main]
async fn main() -> ExitCode {
    ai_runner::telemetry::init_cli();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}: {}", f.code, f.message);
            if let Some(h) = ai_runner::error::hint(&f.code) {
                eprintln!("hint: {h}");
            }
            ExitCode::from(f.exit)
        }
    }
}

/// The runner every run command uses, configured exactly as the functions are.
fn runtime() -> Result<ai_runner::service::AppRunner, Failure> {
    let settings = Settings::load()?;
    Ok(ai_runner::service::AppState::new(&settings)?.runner)
}

async fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::RunOnce {
            config_key,
            vars,
            json,
        } => {
            let vars = parse_vars(&vars)?;
            let runner = runtime()?;
            let result = runner
                .run_once(&config_key, &vars, &RunContext::new("cli"))
                .await;
            runner.store().close().await;
            print_result(&result, json)
        }
        Command::Route {
            project,
            route_key,
            vars,
            dry_run,
            json,
        } => {
            let vars = parse_vars(&vars)?;
            let runner = runtime()?;
            let out = if dry_run {
                runner
                    .dry_run(&project, &route_key, &vars)
                    .await
                    .map(|d| println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default()))
                    .map_err(Failure::from)
            } else {
                let result = runner
                    .run_route(&project, &route_key, &vars, &RunContext::new("cli"))
                    .await;
                print_route(&result, json)
            };
            runner.store().close().await;
            out
        }
        Command::Cfg { command } => cfg_command(command).await,
        Command::Media { command } => {
            let state = ai_runner::service::AppState::from_env()?;
            let out = media_command(&state, command).await;
            state.runner.store().close().await;
            out
        }
        Command::Quickstart { json } => quickstart(json).await,
        Command::Db { command } => {
            let settings = Settings::load()?;
            let db = match &settings.database {
                DatabaseTarget::Sqlite(_) => Db::creating(settings.database.clone()),
                DatabaseTarget::MySql(_) => Db::new(settings.database.clone()),
            };
            let out = db_command(&db, command).await;
            db.close().await;
            out
        }
        Command::Doctor {
            env_only,
            db_only,
            json,
        } => {
            let scope = if env_only {
                ai_runner::health::Scope::Env
            } else if db_only {
                ai_runner::health::Scope::Db
            } else {
                ai_runner::health::Scope::All
            };
            let checks = ai_runner::health::run(scope).await;
            if json {
                print_pretty(&checks);
            } else {
                for c in &checks {
                    println!(
                        "{} {:9} {}",
                        if c.ok { "ok  " } else { "FAIL" },
                        c.name,
                        c.detail
                    );
                    if let Some(h) = &c.hint {
                        println!("     hint: {h}");
                    }
                }
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                return Err(Failure {
                    code: "DOCTOR_FAILED".into(),
                    message: format!("{failed} check(s) failed"),
                    exit: 1,
                });
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Check { json },
        } => {
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
            let ring = ai_runner::crypto::Keyring::new(settings.pepper, settings.previous_pepper);
            let keys = db.check_keys(&ring).await;
            db.close().await;
            let keys = keys?;
            if json {
                print_pretty(&keys);
            } else {
                for k in &keys {
                    println!(
                        "{} {}:{} {}{}",
                        if k.decrypts { "ok  " } else { "FAIL" },
                        k.table,
                        k.name,
                        k.format,
                        if k.current { " (current)" } else { "" }
                    );
                }
            }
            match keys.iter().filter(|k| !k.decrypts).count() {
                0 => Ok(()),
                n => Err(Failure {
                    code: "DECRYPT_FAILED".into(),
                    message: format!("{n} stored secret(s) do not decrypt"),
                    exit: 1,
                }),
            }
        }
        Command::Keys {
            command: KeysCommand::Rotate { dry_run },
        } => {
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
            let ring = ai_runner::crypto::Keyring::new(settings.pepper, settings.previous_pepper);
            let r = db.rotate_keys(&ring, dry_run).await;
            db.close().await;
            let r = r?;
            println!(
                "{} {} of {} stored secret(s) ({} already current){}",
                if dry_run {
                    "would re-encrypt"
                } else {
                    "re-encrypted"
                },
                r.rotated,
                r.total,
                r.already_current,
                if dry_run { "; nothing written" } else { "" }
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Encrypt { connection },
        } => {
            let settings = Settings::load()?;
            let mut plain = String::new();
            std::io::stdin()
                .read_to_string(&mut plain)
                .map_err(|e| usage("INVALID_INPUT", format!("cannot read stdin: {e}")))?;
            let plain = plain.trim_end_matches(['\r', '\n']);
            if plain.is_empty() {
                return Err(usage("INVALID_INPUT", "no key on stdin"));
            }
            let ring = ai_runner::crypto::Keyring::new(settings.pepper, settings.previous_pepper);
            let blob = ring.encrypt(plain, &ai_runner::store::connection_binding(&connection))?;
            println!("{blob}");
            Ok(())
        }
    }
}

async fn media_command(
    state: &ai_runner::service::AppState,
    cmd: MediaCommand,
) -> Result<(), Failure> {
    let db = state.runner.store();
    match cmd {
        MediaCommand::Process { bucket, key, json } => {
            let obj = ai_runner::events::ObjectRef {
                bucket,
                key,
                size: None,
                etag: None,
                version_id: None,
            };
            let report = ai_runner::media::process(
                &state.runner,
                state.objects.as_ref(),
                &state.object_settings,
                &obj,
                &RunContext::new("cli"),
                true,
            )
            .await;
            if json {
                print_pretty(&report);
            } else {
                println!(
                    "{}",
                    serde_json::to_string(&report.outcome).unwrap_or_default()
                );
            }
            match report.outcome {
                ai_runner::media::Outcome::Failed { code, message, .. } => Err(Failure {
                    code,
                    message,
                    exit: 1,
                }),
                ai_runner::media::Outcome::Rejected { code, message, .. } => Err(Failure {
                    code,
                    message,
                    exit: 1,
                }),
                _ => Ok(()),
            }
        }
        MediaCommand::Jobs { limit, json } => {
            let jobs = db.list_jobs(limit).await?;
            if json {
                print_pretty(&jobs);
            } else {
                for j in &jobs {
                    println!(
                        "#{} {} s3://{}/{} [{}] attempts={} route={}/{} {}{}",
                        j.id,
                        j.status,
                        j.bucket,
                        j.object_key,
                        j.object_version,
                        j.attempts,
                        j.project_name.as_deref().unwrap_or("-"),
                        j.route_key.as_deref().unwrap_or("-"),
                        j.error_code.as_deref().unwrap_or(""),
                        j.result_key
                            .as_deref()
                            .map(|k| format!(" result={k}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        MediaCommand::Map {
            command: MapCommand::List { json },
        } => {
            let maps = db.list_mappings().await?;
            if json {
                print_pretty(&maps);
            } else {
                for m in &maps {
                    println!(
                        "#{} bucket={} prefix={:?} suffix={:?} -> {}/{}{}{}",
                        m.id,
                        m.bucket,
                        m.key_prefix,
                        m.key_suffix,
                        m.project,
                        m.route_key,
                        m.variables
                            .as_ref()
                            .map(|v| format!(" vars={v}"))
                            .unwrap_or_default(),
                        if m.active { "" } else { " (inactive)" }
                    );
                }
            }
            Ok(())
        }
        MediaCommand::Map {
            command:
                MapCommand::Add {
                    bucket,
                    prefix,
                    suffix,
                    project,
                    route_key,
                    var,
                },
        } => {
            let results = &state.object_settings.results_prefix;
            if results.starts_with(&prefix) {
                return Err(usage(
                    "CONFIG_INVALID",
                    format!(
                        "the results prefix {results:?} is inside the watched prefix {prefix:?}: results would trigger the pipeline again; watch a narrower prefix or set OSS_RESULTS_PREFIX elsewhere"
                    ),
                ));
            }
            let vars = parse_vars(&VarArgs {
                var,
                vars_file: None,
            })?;
            let vars = (!vars.is_empty()).then(|| Value::Object(vars));
            let id = db
                .add_mapping(
                    &bucket,
                    &prefix,
                    &suffix,
                    &project,
                    &route_key,
                    vars.as_ref(),
                )
                .await?;
            println!("added mapping #{id}");
            Ok(())
        }
        MediaCommand::Map {
            command: MapCommand::Remove { id },
        } => {
            if db.remove_mapping(id).await? {
                println!("removed mapping #{id}");
                Ok(())
            } else {
                Err(usage("MAPPING_NOT_FOUND", format!("no mapping #{id}")))
            }
        }
    }
}

fn write_out(out: Option<&PathBuf>, text: &str) -> Result<(), Failure> {
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| usage("IO_ERROR", format!("cannot write {}: {e}", path.display()))),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn read_catalog_doc(file: &PathBuf) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| usage("IO_ERROR", format!("cannot read {}: {e}", file.display())))?;
    ai_runner::catalog::parse_yaml(&text)
        .map_err(|f| usage(f.code, format!("{}: {}", f.path, f.message)))
}

fn print_findings(findings: &[ai_runner::catalog::Finding], json: bool) {
    if json {
        print_pretty(&findings);
        return;
    }
    for f in findings {
        let sev = match f.severity {
            ai_runner::catalog::Severity::Error => "error",
            ai_runner::catalog::Severity::Warning => "warning",
        };
        println!("{sev}: {}: {} {}", f.path, f.code, f.message);
    }
}

async fn cfg_command(cmd: CfgCommand) -> Result<(), Failure> {
    use ai_runner::catalog::{self, Severity};
    match cmd {
        CfgCommand::Sample { provider, out } => {
            if !matches!(provider.as_str(), "openrouter" | "openai" | "custom") {
                return Err(usage(
                    "INVALID_INPUT",
                    format!("--provider must be openrouter, openai or custom, not {provider:?}"),
                ));
            }
            write_out(out.as_ref(), &catalog::sample(&provider))
        }
        CfgCommand::Verify {
            file,
            db_check,
            json,
        } => {
            let doc = read_catalog_doc(&file)?;
            let (known, db) = if db_check {
                let settings = Settings::load()?;
                let db = Db::new(settings.database.clone());
                let snap = db.snapshot().await?;
                (snap.known(), Some((db, snap, settings)))
            } else {
                (catalog::Known::default(), None)
            };
            let (cat, findings) = catalog::verify_with(&doc, &known);
            print_findings(&findings, json);
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            if let (Some(cat), Some((db, snap, settings))) = (&cat, &db) {
                let ring = ai_runner::crypto::Keyring::new(
                    settings.pepper.clone(),
                    settings.previous_pepper.clone(),
                );
                match ai_runner::store::catalog::plan(snap, cat, &ring, &|k| std::env::var(k).ok())
                {
                    Ok((items, _)) if !json => print_plan(&items),
                    Ok(_) => {}
                    Err(e) => println!("note: gen would fail: {}: {e}", e.code()),
                }
                db.close().await;
            }
            if errors > 0 {
                return Err(Failure {
                    code: "CATALOG_INVALID".into(),
                    message: format!("{errors} problem(s) in {}", file.display()),
                    exit: 1,
                });
            }
            if !json {
                eprintln!("{}: ok ({} warning(s))", file.display(), findings.len());
            }
            Ok(())
        }
        CfgCommand::Gen {
            file,
            dry_run,
            json,
        } => {
            let doc = read_catalog_doc(&file)?;
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
            let snap = db.snapshot().await?;
            let (cat, findings) = catalog::verify_with(&doc, &snap.known());
            let Some(cat) = cat else {
                print_findings(&findings, false);
                db.close().await;
                return Err(Failure {
                    code: "CATALOG_INVALID".into(),
                    message: format!("{} does not verify; nothing was written", file.display()),
                    exit: 1,
                });
            };
            let ring = ai_runner::crypto::Keyring::new(
                settings.pepper.clone(),
                settings.previous_pepper.clone(),
            );
            let env = |k: &str| std::env::var(k).ok();
            let items = if dry_run {
                ai_runner::store::catalog::plan(&snap, &cat, &ring, &env).map(|(i, _)| i)
            } else {
                db.apply_catalog(&cat, &ring, &env).await
            };
            db.close().await;
            let items = items.map_err(|e| Failure {
                code: e.code().into(),
                message: format!("{e} (nothing was written)"),
                exit: 1,
            })?;
            if json {
                print_pretty(&items);
            } else {
                print_plan(&items);
                let changed = items
                    .iter()
                    .filter(|i| i.action != ai_runner::store::catalog::Action::Unchanged)
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
        CfgCommand::RoutePool {
            file,
            append,
            dry_run,
        } => {
            let doc = read_catalog_doc(&file)?;
            let (routes, findings) = catalog::route_pool(&doc);
            print_findings(&findings, false);
            let Some(routes) = routes else {
                return Err(Failure {
                    code: "CATALOG_INVALID".into(),
                    message: format!("{} does not verify; nothing was written", file.display()),
                    exit: 1,
                });
            };
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
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
                db.close().await;
                return Err(Failure {
                    code: "CONFIG_NOT_FOUND".into(),
                    message: format!(
                        "no config named {} in the database; nothing was written",
                        missing.join(", ")
                    ),
                    exit: 1,
                });
            }
            let ring = ai_runner::crypto::Keyring::new(
                settings.pepper.clone(),
                settings.previous_pepper.clone(),
            );
            let env = |k: &str| std::env::var(k).ok();
            let items = if dry_run {
                ai_runner::store::catalog::plan_with(&snap, &cat, &ring, &env, !append)
                    .map(|(i, _)| i)
            } else {
                db.apply_catalog_with(&cat, &ring, &env, !append).await
            };
            db.close().await;
            let items = items.map_err(|e| Failure {
                code: e.code().into(),
                message: format!("{e} (nothing was written)"),
                exit: 1,
            })?;
            print_plan(&items);
            if dry_run {
                eprintln!("dry run: nothing written");
            }
            Ok(())
        }
        CfgCommand::DumpSchema {
            db: database,
            prefix,
            out,
            json,
        } => {
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
            let tables = db.dump_schema(database.as_deref(), &prefix).await;
            db.close().await;
            let tables = tables?;
            let title = format!(
                "Schema of {} (tables {prefix}*)",
                database
                    .as_deref()
                    .map_or_else(|| settings.database.describe(), str::to_owned)
            );
            write_out(
                out.as_ref(),
                &ai_runner::store::schema_dump::markdown(&tables, &title),
            )?;
            if let Some(path) = json {
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&tables).unwrap_or_default(),
                )
                .map_err(|e| usage("IO_ERROR", format!("cannot write {}: {e}", path.display())))?;
            }
            Ok(())
        }
        CfgCommand::Export { out } => {
            let settings = Settings::load()?;
            let db = Db::new(settings.database.clone());
            let snap = db.snapshot().await;
            db.close().await;
            let cat = snap?.to_catalog();
            let yaml =
                serde_yaml_ng::to_string(&cat).map_err(|e| usage("IO_ERROR", e.to_string()))?;
            write_out(
                out.as_ref(),
                &format!(
                    "# exported by `ai-runner cfg export`; keys are ${{ENV}} references (unset: gen keeps the stored key)\n{yaml}"
                ),
            )
        }
    }
}

fn print_plan(items: &[ai_runner::store::catalog::PlanItem]) {
    for i in items {
        let action = match i.action {
            ai_runner::store::catalog::Action::Create => "create",
            ai_runner::store::catalog::Action::Update => "update",
            ai_runner::store::catalog::Action::Unchanged => "unchanged",
        };
        let changes = if i.changes.is_empty() {
            String::new()
        } else {
            format!(" ({})", i.changes.join(", "))
        };
        println!("{action:9} {} {}{changes}", i.kind, i.name);
    }
}

fn print_pretty<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn db_command(db: &Db, cmd: DbCommand) -> Result<(), Failure> {
    let mysql = db.is_mysql();
    match cmd {
        DbCommand::Init { print: true } => {
            println!(
                "{}",
                if mysql {
                    ai_runner::schema::MYSQL_BASE
                } else {
                    ai_runner::schema::SQLITE_SCHEMA
                }
            );
            println!("-- then: ai-runner db migrate");
        }
        DbCommand::Init { print: false } => {
            let ran = migrate::init(db).await?;
            println!(
                "{} ready at schema version {} ({} migration statements run)",
                db.target().describe(),
                ai_runner::schema::latest_version(),
                ran.len()
            );
        }
        DbCommand::Migrate { print } => {
            let steps = if print {
                migrate::plan(db).await?
            } else {
                migrate::apply(db).await?
            };
            if steps.is_empty() {
                println!("-- {} is up to date", db.target().describe());
            }
            for s in &steps {
                println!("{};", s.sql);
            }
            if !print && !steps.is_empty() {
                eprintln!("applied {} statements", steps.len());
            }
        }
    }
    Ok(())
}

fn parse_vars(args: &VarArgs) -> Result<Variables, Failure> {
    let mut vars = Variables::new();
    if let Some(path) = &args.vars_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(
                "INVALID_INPUT",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => vars.extend(m),
            _ => {
                return Err(usage(
                    "INVALID_INPUT",
                    format!("{} must hold a JSON object", path.display()),
                ));
            }
        }
    }
    for kv in &args.var {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| usage("INVALID_INPUT", format!("--var {kv:?} is not KEY=VALUE")))?;
        vars.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(vars)
}

fn print_result(result: &RunResult, json: bool) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
    } else if let Some(content) = &result.content.as_ref().filter(|_| result.is_ok()) {
        println!("{content}");
    }
    outcome(result)
}

fn print_route(result: &RouteResult, json: bool) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
        return outcome(&result.result);
    }
    for a in &result.member_attempts {
        let what = match &a.error {
            None => "answered".to_owned(),
            Some(e) if a.handed_over => format!("failed with {}, handed over", e.code),
            Some(e) => format!("failed with {}", e.code),
        };
        eprintln!(
            "member {} {}: {} (audit row {})",
            a.attempt,
            a.config_key,
            what,
            a.audit_id.map_or("-".into(), |i| i.to_string())
        );
    }
    print_result(&result.result, false)
}

fn outcome(result: &RunResult) -> Result<(), Failure> {
    match &result.failure {
        None => Ok(()),
        Some(e) => Err(Failure {
            code: e.code().to_owned(),
            message: format!("{e} (trace_id {})", result.trace_id),
            exit: e.exit_code() as u8,
        }),
    }
}

async fn quickstart(json: bool) -> Result<(), Failure> {
    let mut settings = Settings::load()?;
    if settings.pepper.is_none() {
        if !matches!(settings.database, DatabaseTarget::Sqlite(_)) {
            return Err(RunError::from(ai_runner::crypto::CryptoError::PepperMissing).into());
        }
        let dir = ai_runner::config::env_dir();
        settings.pepper = Some(ai_runner::config::generate_pepper_file(&dir)?);
        println!(
            "generated a new AI_PEPPER in {}",
            dir.join("ai.env").display()
        );
    }
    let db = Db::creating(settings.database.clone());
    migrate::init(&db).await?;
    println!("database: {}", db.target().describe());

    let mut _server = None;
    let target = match QuickstartProvider::from_env() {
        Some(real) => {
            println!(
                "provider: {} (model {}, from OPENAI_API_KEY)",
                real.url, real.model
            );
            real
        }
        None => {
            let server = ProviderServer::start(vec![Reply::content(demo::DEMO_ANSWER)])
                .await
                .map_err(|e| usage("DEMO_PROVIDER_FAILED", e.to_string()))?;
            let p = QuickstartProvider::demo(&server);
            println!(
                "provider: DEMO provider on loopback {} (canned answers, not a real model; set OPENAI_API_KEY to use a real one)",
                p.url
            );
            _server = Some(server);
            p
        }
    };
    let runner = Runner::new(db, HttpProvider::new(settings.http.clone())?, &settings);
    demo::install_quickstart(runner.store(), runner.keyring(), &target).await?;
    println!(
        "config:   {} (key stored encrypted)",
        demo::QUICKSTART_CONFIG_KEY
    );
    let result = runner
        .run_once(
            demo::QUICKSTART_CONFIG_KEY,
            &Variables::new(),
            &RunContext::new("quickstart"),
        )
        .await;
    println!("\n== run result ==");
    let printed = print_result(&result, json);
    if !json && result.is_ok() {
        println!(
            "(trace {}, {} ms total, {} ms provider, {} attempt(s))",
            result.trace_id, result.total_ms, result.provider_ms, result.attempts
        );
    }
    if let Some(id) = result.audit_id {
        let row = runner.store().audit_row(id).await?;
        println!("\n== audit row ai_call_logs.id = {id} ==");
        println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
    }
    printed?;

    // A route whose first member always fails: the run fails over to the second.
    let flaky = ProviderServer::start(vec![Reply::error(
        503,
        "demo outage: this member always fails",
    )])
    .await
    .map_err(|e| usage("DEMO_PROVIDER_FAILED", e.to_string()))?;
    demo::install_quickstart_route(runner.store(), runner.keyring(), &flaky.url()).await?;
    println!(
        "\n== route {}/{}: member 1 {} (DEMO endpoint that always answers 503), member 2 {} ==",
        demo::QUICKSTART_PROJECT,
        demo::QUICKSTART_ROUTE,
        demo::QUICKSTART_FLAKY_KEY,
        demo::QUICKSTART_CONFIG_KEY
    );
    let routed = runner
        .run_route(
            demo::QUICKSTART_PROJECT,
            demo::QUICKSTART_ROUTE,
            &Variables::new(),
            &RunContext::new("quickstart"),
        )
        .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&routed).unwrap_or_default()
        );
    } else {
        for a in &routed.member_attempts {
            println!(
                "member {} {}: {}",
                a.attempt,
                a.config_key,
                match &a.error {
                    None => "answered".to_owned(),
                    Some(e) => format!("{} -> handed over", e.code),
                }
            );
        }
        if let Some(c) = &routed.result.content {
            println!(
                "answer from {}: {c}",
                routed.answered_by.as_deref().unwrap_or("-")
            );
        }
    }
    let rows = runner
        .store()
        .audit_rows_for_trace(&routed.result.trace_id)
        .await?;
    println!("\n== the route's audit rows (one per member attempt) ==");
    for row in &rows {
        let pick = |k: &str| row.get(k).cloned().unwrap_or(Value::Null);
        println!(
            "id={} config_key={} http_status={} error_code={} route_attempt={} handover_reason={}",
            pick("id"),
            pick("config_key"),
            pick("http_status"),
            pick("error_code"),
            pick("route_attempt"),
            pick("handover_reason")
        );
    }
    outcome(&routed.result)?;

    // An upload: a generated WAV lands in the local object store and the pipeline processes it.
    let audio = ProviderServer::start(vec![Reply::MediaProbe])
        .await
        .map_err(|e| usage("DEMO_PROVIDER_FAILED", e.to_string()))?;
    demo::install_quickstart_media(runner.store(), runner.keyring(), &audio.url()).await?;
    let objects_dir = std::path::PathBuf::from("./ai-runner-objects");
    let store = ai_runner::objects::LocalStore::new(&objects_dir);
    let key = format!(
        "{}hello-{}.wav",
        demo::QUICKSTART_MEDIA_PREFIX,
        &routed.result.trace_id[..8]
    );
    use ai_runner::objects::ObjectStore;
    store
        .put(
            demo::QUICKSTART_MEDIA_BUCKET,
            &key,
            demo::wav_tone(500, 440.0),
            "audio/wav",
        )
        .await
        .map_err(|e| usage(e.code(), e.to_string()))?;
    println!(
        "\n== upload: {} bytes of WAV into {}/{}/{} (local object store), processed by route {}/{} ==",
        demo::wav_tone(500, 440.0).len(),
        objects_dir.display(),
        demo::QUICKSTART_MEDIA_BUCKET,
        key,
        demo::QUICKSTART_PROJECT,
        demo::QUICKSTART_MEDIA_ROUTE
    );
    let mut object_settings = Settings::load()?.objects;
    object_settings.target = ai_runner::config::ObjectTarget::Local(objects_dir);
    let report = ai_runner::media::process(
        &runner,
        &store,
        &object_settings,
        &ai_runner::events::ObjectRef {
            bucket: demo::QUICKSTART_MEDIA_BUCKET.into(),
            key: key.clone(),
            size: None,
            etag: None,
            version_id: None,
        },
        &RunContext::new("quickstart"),
        false,
    )
    .await;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    let job = runner.store().list_jobs(1).await?;
    if let Some(j) = job.first() {
        println!(
            "job #{} {} result={}",
            j.id,
            j.status,
            j.result_key.as_deref().unwrap_or("-")
        );
    }
    runner.store().close().await;
    match report.outcome {
        ai_runner::media::Outcome::Succeeded { .. } => Ok(()),
        other => Err(usage("QUICKSTART_UPLOAD_FAILED", format!("{other:?}"))),
    }
}
