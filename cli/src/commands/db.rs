//! `db init` and `db migrate`: create or upgrade the schema (additive, idempotent).

use ai_runner::config::DatabaseTarget;
use ai_runner::schema;
use ai_runner::store::{Db, migrate};
use clap::{Args, Subcommand};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::outln;

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

impl DbArgs {
    /// Runs the schema command against the configured database (creating the embedded file).
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let settings = cx.settings()?;
        let db = match &settings.database {
            DatabaseTarget::Sqlite(_) => Db::creating(settings.database.clone()),
            DatabaseTarget::MySql(_) => Db::new(settings.database.clone()),
        };
        let out = self.command.run(&db).await;
        db.close().await;
        out
    }
}

impl DbCommand {
    async fn run(self, db: &Db) -> Result<(), Failure> {
        match self {
            DbCommand::Init { print: true } => {
                outln!(
                    "{}",
                    if db.is_mysql() {
                        schema::MYSQL_BASE
                    } else {
                        schema::SQLITE_SCHEMA
                    }
                );
                outln!("-- then: ai-runner db migrate");
            }
            DbCommand::Init { print: false } => {
                let ran = migrate::init(db).await?;
                outln!(
                    "{} ready at schema version {} ({} migration statements run)",
                    db.target().describe(),
                    schema::latest_version(),
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
                    outln!("-- {} is up to date", db.target().describe());
                }
                for s in &steps {
                    outln!("{};", s.sql);
                }
                if !print && !steps.is_empty() {
                    eprintln!("applied {} statements", steps.len());
                }
            }
        }
        Ok(())
    }
}
