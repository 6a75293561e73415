//! `keys encrypt / check / rotate`: the stored secrets, never printed.

use std::io::Read;

use ai_runner::Code;
use ai_runner::model::connection_binding;
use clap::{Args, Subcommand};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

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

impl KeysArgs {
    /// Runs the keys command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        match self.command {
            KeysCommand::Encrypt { connection } => {
                let mut plain = String::new();
                std::io::stdin().read_to_string(&mut plain).map_err(|e| {
                    Failure::usage(Code::InvalidInput, format!("cannot read stdin: {e}"))
                })?;
                let plain = plain.trim_end_matches(['\r', '\n']);
                if plain.is_empty() {
                    return Err(Failure::usage(Code::InvalidInput, "no key on stdin"));
                }
                let blob = cx
                    .keyring()?
                    .encrypt(plain, &connection_binding(&connection))?;
                outln!("{blob}");
                Ok(())
            }
            KeysCommand::Check { json } => {
                let keys = cx.db()?.check_keys(cx.keyring()?).await?;
                if json {
                    output::pretty(&keys);
                } else {
                    for k in &keys {
                        outln!(
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
                    n => Err(Failure::found(
                        Code::DecryptFailed,
                        format!("{n} stored secret(s) do not decrypt"),
                    )),
                }
            }
            KeysCommand::Rotate { dry_run } => {
                let r = cx.db()?.rotate_keys(cx.keyring()?, dry_run).await?;
                outln!(
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
        }
    }
}
