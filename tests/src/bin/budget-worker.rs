//! A separate process spending against a shared budget: the budget race tests start several of
//! these at once, each running the config `race` through the real runner (SQL store, HTTP
//! provider) as many times as asked, all at once.
//!
//! Environment: `DATABASE_URL`, `AI_PEPPER`, `PROJECT_NAME` (the budgeted project),
//! `WORKER_CALLS`, `WORKER_START_MS` (epoch ms to fire at, so every process fires together),
//! `WORKER_CONFIG` (default `race`; the circuit-breaker tests share this worker).
//! Prints `{"ok": n, "refused": n, "other": {code: n}}`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;

use ai_runner::Settings;
use ai_runner::run::{RunContext, Trigger, Variables};

#[tokio::main]
async fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is required"));
    let settings = Settings::builder()
        .with_process_env()
        .var("AI_CONTENT_RETRIES", "0")
        .build()
        .unwrap();
    let runner = ai_runner_tests::runner(&settings);
    let calls: usize = env("WORKER_CALLS").parse().unwrap();
    let start_ms: i64 = env("WORKER_START_MS").parse().unwrap();
    // Connect before the start line.
    runner.store().pool().await.unwrap();
    let wait = start_ms - ai_runner::model::now_ms();
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait.unsigned_abs())).await;
    }
    let ctx = RunContext::new(Trigger::Library);
    let mut vars = Variables::new();
    vars.insert("X".into(), serde_json::json!("并发"));
    let config = std::env::var("WORKER_CONFIG").unwrap_or_else(|_| "race".into());
    let runs = (0..calls).map(|_| runner.run_once(&config, &vars, &ctx));
    let (mut ok, mut refused) = (0, 0);
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    for r in futures_util::future::join_all(runs).await {
        match r.error.as_ref().map(|e| e.code.as_str()) {
            None => ok += 1,
            Some("BUDGET_EXCEEDED") => refused += 1,
            Some(code) => *other.entry(code.to_owned()).or_default() += 1,
        }
    }
    runner.store().close().await;
    println!(
        "{}",
        serde_json::json!({"ok": ok, "refused": refused, "other": other})
    );
}
