//! `breaker list / reset / limits`: the connections' circuit breakers shared in SQL (the
//! library's [`ai_runner::breaker`] decides, [`ai_runner::store::breaker`] stores them).

use ai_runner::Code;
use ai_runner::model::now_ms;
use clap::{Args, Subcommand};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `breaker ...`.
#[derive(Args)]
pub struct BreakerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BreakerCommand,
}

/// `breaker ...`.
#[derive(Subcommand)]
pub enum BreakerCommand {
    /// Every stored breaker: its state, streak, how often it opened, its own limits.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Close a connection's breaker by hand (its own limits stay).
    Reset {
        /// The connection's name (`ai_connection.name`).
        connection: String,
    },
    /// Set a connection's own threshold and cooldown (omitted: the process's default).
    Limits {
        /// The connection's name.
        connection: String,
        /// Consecutive counted failures that open it (instead of AI_BREAKER_FAILURES).
        #[arg(long)]
        failures: Option<u32>,
        /// Seconds it stays open (instead of AI_BREAKER_COOLDOWN_S).
        #[arg(long)]
        cooldown_s: Option<u64>,
    },
}

impl BreakerArgs {
    /// Runs the breaker command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        match self.command {
            BreakerCommand::List { json } => {
                let rows = db.list_breakers().await?;
                let now = now_ms();
                if json {
                    output::pretty(&serde_json::json!(
                        rows.iter()
                            .map(|r| serde_json::json!({
                                "connection": r.connection, "state": r.state(now),
                                "failures": r.failures, "opened": r.opened,
                                "failures_max": r.failures_max, "cooldown_ms": r.cooldown_ms,
                            }))
                            .collect::<Vec<_>>()
                    ));
                    return Ok(());
                }
                if rows.is_empty() {
                    outln!("no breaker has counted a failure yet");
                }
                for r in &rows {
                    outln!(
                        "{}  {}  failures {}  opened {}x{}",
                        r.connection,
                        r.describe(now),
                        r.failures,
                        r.opened,
                        match (r.failures_max, r.cooldown_ms) {
                            (None, None) => String::new(),
                            (f, c) => format!(
                                "  own limits: {} failures, {} s",
                                f.map_or("default".into(), |f| f.to_string()),
                                c.map_or("default".into(), |c| (c / 1000).to_string())
                            ),
                        }
                    );
                }
                Ok(())
            }
            BreakerCommand::Reset { connection } => {
                if db.reset_breaker(&connection).await? {
                    outln!("breaker of {connection} closed");
                    Ok(())
                } else {
                    Err(Failure::usage(
                        Code::InvalidInput,
                        format!("no breaker is stored for a connection named {connection:?}"),
                    ))
                }
            }
            BreakerCommand::Limits {
                connection,
                failures,
                cooldown_s,
            } => {
                let cooldown_ms = cooldown_s.map(|s| s.saturating_mul(1000));
                if db
                    .set_breaker_limits(&connection, failures, cooldown_ms)
                    .await?
                {
                    outln!("limits of {connection}'s breaker set");
                    Ok(())
                } else {
                    Err(Failure::usage(
                        Code::InvalidInput,
                        format!("no connection is named {connection:?}"),
                    ))
                }
            }
        }
    }
}
