//! The `ai-runner` binary as a user runs it: fresh directories, a clean environment, real
//! stdin/stdout/stderr and exit codes. One test binary, a module per area; MariaDB databases
//! come from the shared helpers (`ai_runner_tests::TestDb`).

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ai_runner::Secret;
use ai_runner::crypto::Keyring;
// MariaDB tests are `#[ignore]`d and take their database from the shared helpers, which fail
// (never pass silently) when `AI_RUNNER_TEST_MYSQL_URL` is not set.
use ai_runner_tests::{Backend, TestDb};

fn ai_runner(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ai-runner"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Tests run in parallel: each quickstart takes its own free port for the demo provider.
        .env("AI_RUNNER_DEMO_PORT", "0")
        .envs(env.iter().copied())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Points stored connections at a port nothing listens on, through `cfg gen` as a user would
/// (the keys stay: `${...}` of an unset variable keeps the stored one).
fn break_connections(dir: &Path, names: &[&str]) {
    let conns: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "  - {{name: {n}, provider: custom, base_url: \"http://127.0.0.1:1/v1/chat/completions\", api_key: \"${{AI_RUNNER_TEST_UNSET_KEY}}\"}}"
            )
        })
        .collect();
    std::fs::write(
        dir.join("broken.yaml"),
        format!("connections:\n{}\n", conns.join("\n")),
    )
    .unwrap();
    let out = ai_runner(dir, &[], &["cfg", "gen", "-f", "broken.yaml"], None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

mod access;
mod audit_spool;
mod browser;
mod cfg;
mod costs;
mod dev;
mod doctor_more;
mod eval;
mod keys_db;
mod media;
mod predecessor;
mod promptfoo;
mod run;
mod serve;
