//! The console's pages with 1,000,000 rows in `ai_call_logs`, on the embedded SQLite file and on
//! MariaDB over loopback (when `AI_RUNNER_TEST_MYSQL_URL` is set): each page fetched over HTTP
//! from the real console (token header, guard, store, rendering), as a browser would.
//!
//! The rows: one `INSERT ... SELECT` over a 10^6 digits cross join, spread over 30 days two
//! seconds apart; 10 configs in turn; every 20th row an error under one of four codes; 30% of the
//! rows route calls (`shop/ask`, `shop/other`), two rows per trace; request and response bodies of
//! about 250 bytes each. Then `ANALYZE`, as a maintained database has. Prints a markdown table
//! and writes `target/bench/console.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench console` (`-- --quick` for fewer rounds).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Instant;

use ai_runner_tests::bench::percentile;
use ai_runner_tests::{Backend, ConsoleServer, RouteSpec, Seed, TestDb, seed, seed_route};
use serde_json::{Value, json};

const TOKEN: &str = "bench-console-token-0123456789";
const ROWS: i64 = 1_000_000;

/// The generated rows, as one statement for this engine.
fn fill_sql(mysql: bool) -> String {
    let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                  SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                  SELECT 8 UNION ALL SELECT 9)";
    let n = "(a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d)";
    let (cat, at) = if mysql {
        (
            "CONCAT",
            format!("DATE_ADD('2026-11-01 00:00:00', INTERVAL {n}*2 SECOND)"),
        )
    } else {
        (
            "",
            format!("strftime('%Y-%m-%d %H:%M:%f', '2026-11-01', '+' || ({n}*2) || ' seconds')"),
        )
    };
    let concat = |parts: &[&str]| {
        if mysql {
            format!("{cat}({})", parts.join(", "))
        } else {
            parts.join(" || ")
        }
    };
    let x = format!("CAST({n} AS CHAR)");
    let config = concat(&["'bench-c'", &format!("CAST(({n} % 10) AS CHAR)")]);
    let trace = concat(&["'t'", &format!("CAST(({n} DIV 2) AS CHAR)")]);
    let trace = if mysql {
        trace
    } else {
        trace.replace(" DIV ", " / ")
    };
    let body = concat(&[
        "'{\"model\":\"bench-model\",\"messages\":[{\"role\":\"user\",\"content\":\"请总结第 '",
        &x,
        "' 条通话记录的要点，并给出情绪标签。这是一段用来撑起行宽的文字，和真实的请求差不多长。\"}],\"temperature\":0.2}'",
    ]);
    let answer = concat(&[
        "'{\"id\":\"chatcmpl-'",
        &x,
        "'\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"摘要：一切顺利；情绪：积极\"}}],\"usage\":{\"total_tokens\":120}}'",
    ]);
    format!(
        "INSERT INTO ai_call_logs (config_key, http_status, duration_ms, prompt_tokens, completion_tokens, \
         total_tokens, error_code, request_body_json, response_body_json, created_at, trace_id, status, \
         attempts, provider_ms, trigger_source, model_name, project_name, route_key, route_policy, \
         route_attempt, cost_nano_usd, cost_status) \
         SELECT {config}, CASE WHEN {n} % 20 = 0 THEN 429 ELSE 200 END, 300 + {n} % 700, 100, 20, 120, \
         CASE WHEN {n} % 20 = 0 THEN (CASE {n} % 80 WHEN 0 THEN 'UPSTREAM_TIMEOUT' WHEN 20 THEN 'HTTP_429' \
         WHEN 40 THEN 'SCHEMA_INVALID' ELSE 'PROVIDER_ERROR' END) ELSE NULL END, \
         {body}, {answer}, {at}, {trace}, CASE WHEN {n} % 20 = 0 THEN 'error' ELSE 'ok' END, 1, 250, \
         CASE WHEN {n} % 3 = 0 THEN 'apigw' ELSE 'schedule' END, 'bench-model', \
         CASE WHEN {n} % 10 < 3 THEN 'shop' ELSE NULL END, \
         CASE WHEN {n} % 10 < 2 THEN 'ask' WHEN {n} % 10 = 2 THEN 'other' ELSE NULL END, \
         CASE WHEN {n} % 10 < 3 THEN 'primary_backup' ELSE NULL END, \
         CASE WHEN {n} % 10 < 3 THEN 1 + {n} % 2 ELSE NULL END, 28000, 'priced' \
         FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f, {digits} g"
    )
}

async fn pages(backend: Backend, label: &str, rounds: usize) -> Option<Value> {
    let mysql = matches!(backend, Backend::MariaDb);
    let tdb = TestDb::new(backend).await?;
    let db = tdb.db();
    for i in 0..10 {
        let key = format!("bench-c{i}");
        seed(
            &db,
            &Seed::text(&key, "http://127.0.0.1:9/v1/chat/completions"),
        )
        .await;
    }
    seed_route(
        &db,
        "shop",
        "ask",
        &RouteSpec::default(),
        &[("bench-c0", 1, 1), ("bench-c1", 2, 1)],
    )
    .await;
    db.close().await;
    let t = Instant::now();
    {
        use sqlx::Executor;
        if mysql {
            let pool = sqlx::MySqlPool::connect(&tdb.url).await.unwrap();
            pool.execute(fill_sql(true).as_str()).await.unwrap();
            pool.execute("ANALYZE TABLE ai_call_logs").await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
            pool.execute(fill_sql(false).as_str()).await.unwrap();
            pool.execute("ANALYZE").await.unwrap();
            pool.close().await;
        }
    }
    let fill_s = t.elapsed().as_secs_f64();
    let count = tdb.db().count("ai_call_logs").await.unwrap();
    assert_eq!(count, ROWS, "rows generated");

    let console = ConsoleServer::start(&tdb.settings(&[]), TOKEN).await;
    let base = console.base.clone();
    let http = reqwest::Client::new();
    let middle = {
        let db = tdb.db();
        let row = db.audit_row(ROWS / 2).await.unwrap().unwrap();
        db.close().await;
        format!("{}~{}", ROWS / 2, row["created_at_text"].as_str().unwrap())
    };
    let trace = format!("t{}", ROWS / 4);
    let cases: Vec<(&str, String)> = vec![
        ("catalog", "/".into()),
        ("route page", "/routes/shop/ask".into()),
        ("config page", "/configs/bench-c3".into()),
        ("trail, newest", "/audit".into()),
        (
            "trail, page 10,000 (keyset)",
            format!("/audit?after={}", urlencode(&middle)),
        ),
        ("trail, config", "/audit?config=bench-c3".into()),
        ("trail, status=error", "/audit?status=error".into()),
        ("trail, error code", "/audit?code=HTTP_429".into()),
        (
            "trail, project + route",
            "/audit?project=shop&route=ask".into(),
        ),
        (
            "trail, one day",
            "/audit?since=2026-11-15&until=2026-11-15".into(),
        ),
        ("trail, trace id", format!("/audit?trace={trace}")),
        ("row detail", format!("/audit/{}", ROWS / 2)),
        ("trace", format!("/trace/{trace}")),
        ("uploads", "/uploads".into()),
        ("evaluations", "/evals".into()),
        ("GET /routes?project=", "/routes?project=shop".into()),
    ];
    let mut out = Vec::new();
    for (name, path) in &cases {
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for i in 0..rounds + 3 {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("authorization", format!("token {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{name}: {path}");
            let body = r.text().await.unwrap();
            let took = t.elapsed().as_secs_f64() * 1e3;
            if path.starts_with("/audit?") || path == "/audit" {
                let rows = body.matches("<tr><td><a href=\"/audit/").count();
                let want = if path.contains("trace=") { 2 } else { 50 };
                assert_eq!(rows, want, "{name}: a full page");
            }
            bytes = body.len();
            if i >= 3 {
                times.push(took);
            }
        }
        times.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
        println!("| {label} | {name} | {p50:.1} | {p95:.1} | {bytes} |");
        out.push(json!({"page": name, "path": path, "p50_ms": p50, "p95_ms": p95, "bytes": bytes}));
    }
    drop(console);
    tdb.cleanup().await;
    Some(json!({"backend": label, "rows": ROWS, "fill_s": fill_s, "rounds": rounds, "pages": out}))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 10 } else { 40 };
    println!("| backend | page | p50 ms | p95 ms | bytes |");
    println!("|---|---|---|---|---|");
    let mut results = vec![];
    results.extend(pages(Backend::Sqlite, "SQLite", rounds).await);
    if ai_runner_tests::mysql_url().is_some() {
        results.extend(pages(Backend::MariaDb, "MariaDB (loopback)", rounds).await);
    }
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/console.json",
        serde_json::to_string_pretty(&json!({"console": results})).unwrap(),
    )
    .unwrap();
}
