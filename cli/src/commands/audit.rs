//! `audit replay / pending`: the audit spool, where rows wait when the database did not take them
//! (the library's [`ai_runner::spool`] does the work).

use ai_runner::Code;
use clap::{Args, Subcommand};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

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

impl AuditArgs {
    /// Runs the audit command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let app = cx.app()?;
        let spool = app.runner.audit_spool().ok_or_else(|| {
            Failure::usage(
                Code::ConfigMissing,
                "no audit spool: set OSS_BUCKET (the spool is <OSS_BUCKET>/<AUDIT_SPOOL_PREFIX>)",
            )
        })?;
        match self.command {
            AuditCommand::Pending { json } => {
                let (_, pending) = spool.pending(usize::MAX).await?;
                if json {
                    output::pretty(&pending);
                } else {
                    outln!(
                        "{} row(s) spooled in {}/{}{}",
                        pending.rows,
                        spool.bucket,
                        spool.prefix,
                        pending
                            .oldest_ms
                            .map(|ms| format!(", the oldest {} s old", ms / 1000))
                            .unwrap_or_default()
                    );
                }
                Ok(())
            }
            AuditCommand::Replay { limit, json } => {
                let done = spool.replay(app.runner.store(), limit).await?;
                if json {
                    output::pretty(&done);
                } else {
                    outln!(
                        "replayed {} row(s); {} still spooled",
                        done.replayed,
                        done.remaining
                    );
                    for (key, code) in &done.failed {
                        outln!("kept {key}: {code}");
                    }
                }
                if done.failed.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::found(
                        Code::DbUnavailable,
                        format!(
                            "{} spooled row(s) could not be written yet",
                            done.failed.len()
                        ),
                    ))
                }
            }
        }
    }
}
