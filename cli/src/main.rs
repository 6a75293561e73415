//! The `ai-runner` command: parses the command line and dispatches, one line per command. What
//! each command does is in [`commands`]; how failures look (exit code, hint) in [`failure`].

// Standard output goes through `output::stdout` (`out!`, `outln!`), which survives a closed pipe.
#![deny(clippy::print_stdout)]

mod args;
mod commands;
mod context;
mod failure;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Cx;

#[tokio::main]
async fn main() -> ExitCode {
    ai_runner::telemetry::init_cli();
    let cx = Cx::default();
    let outcome = match Cli::parse().command {
        Command::RunOnce(c) => c.run(&cx).await,
        Command::Route(c) => c.run(&cx).await,
        Command::Quickstart(c) => c.run(&cx).await,
        Command::Init(c) => c.run(&cx).await,
        Command::Media(c) => c.run(&cx).await,
        Command::Cfg(c) => c.run(&cx).await,
        Command::Doctor(c) => c.run(&cx).await,
        Command::Db(c) => c.run(&cx).await,
        Command::Keys(c) => c.run(&cx).await,
        Command::Eval(c) => c.run(&cx).await,
        Command::Audit(c) => c.run(&cx).await,
        Command::Access(c) => c.run(&cx).await,
        Command::Prices(c) => c.run(&cx).await,
        Command::Budget(c) => c.run(&cx).await,
        Command::Breaker(c) => c.run(&cx).await,
        Command::Usage(c) => c.run(&cx).await,
        Command::Dev(c) => c.run(&cx).await,
        Command::Serve(c) => c.run(&cx).await,
    };
    cx.close().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}: {}", f.code, f.message);
            if let Some(h) = failure::hint(f.code) {
                eprintln!("hint: {h}");
            }
            ExitCode::from(f.exit)
        }
    }
}
