//! Evaluation throughput and overhead on the real stack (SQLite store, HTTP client, audit and
//! result writes) against an OpenAI-protocol server with a fixed latency, and report rendering.
//!
//! Prints a markdown table and writes `target/bench/eval.json`:
//! - overhead per case: an evaluated case (call, grading, result row) minus a plain `run_once`
//!   call, both sequential against a 0 ms provider, p50;
//! - cases per second at concurrency 16 with a 0 ms provider, and at 64 with a 50 ms provider
//!   against the ideal (64 / 50 ms = 1 280 cases/s);
//! - rendering a 10 000-result report as JSON, JUnit and HTML.
//!
//! Run: `cargo bench -p ai-runner-tests --bench eval` (`-- --quick` for smaller runs).

// Benches read their own environment and drive servers with their own HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::eval::report;
use ai_runner::eval::run::{self, CaseResult, Options, Report, Start, summarise};
use ai_runner::eval::suite::read_suite;
use ai_runner::model::eval::{GateOutcome, Graded, Verdict};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::{Backend, Seed, TestDb, runner, seed};
use serde_json::{Value, json};

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn suite(cases: usize, concurrency: usize) -> ai_runner::eval::suite::Suite {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"key": format!("c{i}"), "vars": {"TEXT": format!("第{i}条")}, "expected": {"情绪": "积极"}}))
        .collect();
    let doc = json!({
        "datasets": [{"name": "d", "cases": cases}],
        "suites": [{"name": "bench", "dataset": "d", "targets": [{"config": "bench"}],
                    "concurrency": concurrency,
                    "assert": [{"type": "is-json"},
                               {"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}"}]}]
    });
    read_suite(&doc, "bench", std::path::Path::new("."))
        .0
        .unwrap()
}

async fn setup(latency_ms: u64) -> (TestDb, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let answer = Reply::content(r#"{"情绪": "积极"}"#);
    let reply = if latency_ms == 0 {
        answer
    } else {
        Reply::Delayed(Duration::from_millis(latency_ms), Box::new(answer))
    };
    let server = ProviderServer::start(vec![reply]).await.unwrap();
    let url = server.url();
    let mut s = Seed::text("bench", &url);
    s.messages = json!([{"role": "user", "content": "判断：{{TEXT}}"}]);
    s.variables = None;
    s.response_format = Some(json!({"type": "json_object"}));
    seed(&tdb.db(), &s).await;
    (tdb, server)
}

async fn overhead(n: usize) -> (f64, f64) {
    let (tdb, _server) = setup(0).await;
    let r = runner(&tdb.settings(&[]));
    let mut vars = Variables::new();
    vars.insert("TEXT".into(), json!("基准"));
    let ctx = RunContext::new(Trigger::Library);
    let _ = r.run_once("bench", &vars, &ctx).await;
    let mut plain = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _ = r.run_once("bench", &vars, &ctx).await;
        plain.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let s = suite(n, 1);
    let last = Mutex::new(Instant::now());
    let per_case = Mutex::new(Vec::with_capacity(n));
    let how = Start {
        trigger: ai_runner::Trigger::Library,
        baseline: None,
    };
    *last.lock().unwrap() = Instant::now();
    let progress = |_: &CaseResult, _: usize, _: usize| {
        let mut l = last.lock().unwrap();
        per_case
            .lock()
            .unwrap()
            .push(l.elapsed().as_secs_f64() * 1000.0);
        *l = Instant::now();
    };
    run::start(&r, &s, &Options::default(), &how, &progress)
        .await
        .unwrap();
    let (plain, eval) = (p50(plain), p50(per_case.into_inner().unwrap()));
    r.store().close().await;
    (plain, eval)
}

async fn throughput(latency_ms: u64, concurrency: usize, n: usize) -> f64 {
    let (tdb, _server) = setup(latency_ms).await;
    let r = runner(&tdb.settings(&[]));
    let s = suite(n, concurrency);
    let how = Start {
        trigger: ai_runner::Trigger::Library,
        baseline: None,
    };
    let t = Instant::now();
    let report = run::start(&r, &s, &Options::default(), &how, &|_, _, _| {})
        .await
        .unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(report.targets[0].passed, n, "every case passed");
    r.store().close().await;
    rate
}

fn render(n: usize) -> (f64, usize) {
    let results: Vec<CaseResult> = (0..n)
        .map(|i| CaseResult {
            target: format!("target-{}", i % 3),
            case_key: format!("case-{i}"),
            repeat: 0,
            pass: i % 7 != 0,
            score: (i % 10) as f64 / 10.0,
            output: Some(format!("{{\"情绪\": \"积极\", \"i\": {i}}}")),
            parsed: None,
            assertions: vec![Graded {
                label: "json-path".into(),
                verdict: if i % 7 != 0 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                score: 1.0,
                reason: "$.情绪 is \"积极\"".into(),
                weight: 1.0,
                audit_id: None,
                metric: Some("sentiment".into()),
            }],
            latency_ms: (i % 500) as u64,
            error_code: None,
            error_message: None,
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            audit_ids: vec![i as i64],
        })
        .collect();
    let r = Report {
        run_id: "bench".into(),
        suite: "bench".into(),
        total_ms: 1,
        targets: summarise(&results),
        gate: GateOutcome {
            passed: true,
            failures: Vec::new(),
        },
        results,
        stopped: None,
    };
    let t = Instant::now();
    let bytes = report::html(&r).len() + report::json(&r).len() + report::junit(&r).len();
    (t.elapsed().as_secs_f64() * 1000.0, bytes)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 4 } else { 1 };
    let (plain, eval) = overhead(400 / scale).await;
    let fast = throughput(0, 16, 2000 / scale).await;
    let slow = throughput(50, 64, 2560 / scale).await;
    let (render_ms, bytes) = render(10_000);
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| overhead per case (p50, eval case - plain run_once, SQLite, 0 ms provider) | {:.3} ms ({eval:.3} - {plain:.3}) | < 1 ms |",
        eval - plain
    );
    println!("| cases/s at c = 16, 0 ms provider | {fast:.0} | >= 500 |");
    println!(
        "| cases/s at c = 64, 50 ms provider | {slow:.0} ({:.1}% of 1 280) | >= 90% |",
        slow * 100.0 / 1280.0
    );
    println!(
        "| 10 000-result report: JSON + JUnit + HTML | {render_ms:.0} ms ({} MB) | < 1 s |",
        bytes / 1_000_000
    );
    let out = json!({
        "overhead_p50_ms": eval - plain, "eval_case_p50_ms": eval, "run_once_p50_ms": plain,
        "cases_per_s_c16_0ms": fast, "cases_per_s_c64_50ms": slow,
        "ideal_share_c64_50ms": slow / 1280.0, "report_10k_ms": render_ms, "quick": quick,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("eval.json"),
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
}
