//! What costs and budgets add to a call: choosing a price and computing the charge (the
//! per-process cache warm, no database), and the budget reservation plus its settlement through
//! the real store (the embedded SQLite file, and MariaDB over loopback when
//! `AI_RUNNER_TEST_MYSQL_URL` is set).
//!
//! Pricing: the full LiteLLM excerpt's rows plus 2,000 more models and 50 prefixes in the
//! candidate list, a usage object with cached and reasoning tokens. Budgets: a call covered by
//! three budgets (project day, project month, access key day), each reserved in one
//! transaction, then settled in another. Prints a markdown table and writes
//! `target/bench/costs.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench costs` (`-- --quick` for fewer rounds).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Instant;

use ai_runner::cost::{Usage, book, litellm};
use ai_runner::model::cost::{BudgetScope, Claim, Period, Price, Rate, Rates, femto};
use ai_runner::ports::CostStore;
use ai_runner_tests::bench::percentile;
use ai_runner_tests::{Backend, TestDb, fixture};
use serde_json::{Value, json};

fn stats(mut us: Vec<f64>) -> (f64, f64, f64) {
    us.sort_by(f64::total_cmp);
    (
        percentile(&us, 0.5),
        percentile(&us, 0.95),
        percentile(&us, 0.99),
    )
}

fn filler(i: usize, prefix: bool) -> Price {
    let mut rates = Rates::default();
    rates.0[Rate::Input as usize] = Some(femto(1e-6).unwrap());
    Price {
        id: 10_000 + i as i64,
        provider: "bench".into(),
        model: if prefix {
            format!("family-{i}*")
        } else {
            format!("model-{i}")
        },
        rates,
        max_output_tokens: None,
        valid_from_ms: 0,
        valid_to_ms: None,
        source: "bench".into(),
    }
}

/// Choosing the price among cached rows and charging a usage object.
fn pricing(n: usize) -> Value {
    let map: Value = serde_json::from_str(&fixture("litellm/model_prices_excerpt.json")).unwrap();
    let (mut rows, _) = litellm::parse(&map, "bench").unwrap();
    for (i, p) in rows.iter_mut().enumerate() {
        p.id = i as i64 + 1;
    }
    // What the store hands the cache for one model: its exact rows and every prefix row.
    rows.extend((0..50).map(|i| filler(i, true)));
    let usage = json!({"prompt_tokens": 2006, "completion_tokens": 900,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 600}});
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "今天的天气怎么样？".repeat(20)}], "max_tokens": 512});
    let body = body.as_object().unwrap().clone();
    let mut us = Vec::with_capacity(n);
    let mut sink = 0i64;
    for _ in 0..n {
        let t = Instant::now();
        let chosen = book::choose(&rows, "gpt-4o", &["openai", "conn"], 1);
        let u = Usage::from_value(&usage);
        let c = book::charge(chosen.as_ref(), u, None, None);
        let max = book::max_cost(&chosen.as_ref().unwrap().price, &body, None).unwrap();
        sink = sink.wrapping_add(c.nano.unwrap_or(0) + max);
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert!(sink != 0);
    let (p50, p95, p99) = stats(us);
    println!(
        "| - | price choice + charge + maximum ({} rows) | {p50:.1} | {p95:.1} | {p99:.1} |",
        rows.len()
    );
    json!({"case": "pricing", "rows": rows.len(), "p50_us": p50, "p95_us": p95, "p99_us": p99})
}

async fn budgets(backend: Backend, label: &str, n: usize) -> Option<Value> {
    let tdb = TestDb::new(backend).await?;
    let db = tdb.db();
    for (scope, target, period) in [
        (BudgetScope::Project, "shop", Period::Day),
        (BudgetScope::Project, "shop", Period::Month),
        (BudgetScope::Key, "AKBENCH", Period::Day),
    ] {
        db.set_budget(scope, target, period, i64::MAX / 4)
            .await
            .unwrap();
    }
    let now = ai_runner::model::now_ms();
    let claims: Vec<Claim> = db
        .active_budgets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| Claim {
            window: b.period.window(now),
            budget: b,
            amount: 170_000,
        })
        .collect();
    let (mut reserve, mut settle) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + 50 {
        let hold = ai_runner::model::cost::Hold {
            id: format!("{i:032x}"),
            created_ms: now,
            expires_ms: now + 3_600_000,
            trace_id: "bench".into(),
        };
        let t = Instant::now();
        let r = db.reserve(&hold, &claims).await.unwrap();
        let took = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(r, ai_runner::model::cost::Reserved::Granted);
        let t = Instant::now();
        db.settle(&hold, &claims, 28_000).await.unwrap();
        let settled = t.elapsed().as_secs_f64() * 1e6;
        if i >= 50 {
            reserve.push(took);
            settle.push(settled);
        }
    }
    let (r50, r95, r99) = stats(reserve);
    let (s50, s95, s99) = stats(settle);
    println!(
        "| {label} | reservation, 3 budgets, one transaction | {r50:.0} | {r95:.0} | {r99:.0} |"
    );
    println!(
        "| {label} | settlement, 3 budgets, one transaction | {s50:.0} | {s95:.0} | {s99:.0} |"
    );
    db.close().await;
    tdb.cleanup().await;
    Some(json!({"backend": label, "calls": n,
        "reserve": {"p50_us": r50, "p95_us": r95, "p99_us": r99},
        "settle": {"p50_us": s50, "p95_us": s95, "p99_us": s99}}))
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 2000 };
    println!("| backend | what | p50 µs | p95 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    let price = pricing(n * 10);
    let mut results = vec![];
    results.extend(budgets(Backend::Sqlite, "SQLite", n).await);
    if ai_runner_tests::mysql_url().is_some() {
        results.extend(budgets(Backend::MariaDb, "MariaDB (loopback)", n).await);
    }
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/costs.json",
        serde_json::to_string_pretty(&json!({"pricing": price, "budgets": results})).unwrap(),
    )
    .unwrap();
}
