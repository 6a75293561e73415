//! Logging setup for the two kinds of process: JSON lines for functions (CloudWatch / SLS parse
//! them), terse text on stderr for the CLI.
//!
//! The filter comes from `AI_RUNNER_LOG`, then `RUST_LOG`. Secrets never reach a log line because
//! no code logs a [`crate::Secret`]'s value and its `Debug` is masked.

use tracing_subscriber::EnvFilter;

// Logging starts before the settings are read, so its one variable is read here.
#[allow(clippy::disallowed_methods)]
fn filter(default: &str) -> EnvFilter {
    std::env::var("AI_RUNNER_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// JSON logs on stdout, for Lambda and Function Compute.
pub fn init_json() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter("info"))
        .with_current_span(true)
        .with_target(false)
        .try_init();
}

/// Text logs on stderr, for the CLI: errors only by default (the CLI prints its own
/// `CODE: message` line), more with `AI_RUNNER_LOG=info`.
pub fn init_cli() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("error"))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
