//! `media process / jobs / map`: the upload pipeline from the command line.

use ai_runner::media::{self, Outcome};
use ai_runner::model::media::ObjectRef;
use ai_runner::{Code, RunContext, Trigger};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::commands::run::VarArgs;
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

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

impl MediaArgs {
    /// Runs the media command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let app = cx.app()?;
        let db = app.runner.store();
        match self.command {
            MediaCommand::Process { bucket, key, json } => {
                let _demo = ai_runner::demo::serve_stored(db).await;
                let obj = ObjectRef {
                    bucket,
                    key,
                    size: None,
                    etag: None,
                    version_id: None,
                };
                let report = media::process(
                    &app.runner,
                    app.objects.as_ref(),
                    app.object_settings(),
                    &obj,
                    &RunContext::new(Trigger::Cli),
                    true,
                )
                .await;
                if json {
                    output::pretty(&report);
                } else {
                    outln!(
                        "{}",
                        serde_json::to_string(&report.outcome).unwrap_or_default()
                    );
                }
                match report.outcome {
                    Outcome::Failed { code, message, .. }
                    | Outcome::Rejected { code, message, .. } => Err(Failure::found(code, message)),
                    Outcome::Skipped { .. }
                    | Outcome::Duplicate { .. }
                    | Outcome::InProgress { .. }
                    | Outcome::Succeeded { .. } => Ok(()),
                }
            }
            MediaCommand::Jobs { limit, json } => {
                let jobs = db.list_jobs(limit).await?;
                if json {
                    output::pretty(&jobs);
                } else {
                    for j in &jobs {
                        outln!(
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
                    output::pretty(&maps);
                } else {
                    for m in &maps {
                        outln!(
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
                let results = &app.object_settings().results_prefix;
                if results.starts_with(&prefix) {
                    return Err(Failure::usage(
                        Code::ConfigInvalid,
                        format!(
                            "the results prefix {results:?} is inside the watched prefix {prefix:?}: results would trigger the pipeline again; watch a narrower prefix or set OSS_RESULTS_PREFIX elsewhere"
                        ),
                    ));
                }
                let vars = VarArgs {
                    var,
                    ..VarArgs::default()
                }
                .parse()?;
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
                outln!("added mapping #{id}");
                Ok(())
            }
            MediaCommand::Map {
                command: MapCommand::Remove { id },
            } => {
                if db.remove_mapping(id).await? {
                    outln!("removed mapping #{id}");
                    Ok(())
                } else {
                    Err(Failure::usage(
                        Code::MappingNotFound,
                        format!("no mapping #{id}"),
                    ))
                }
            }
        }
    }
}
