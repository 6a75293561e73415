//! End-to-end overhead: what a run costs on top of the provider, on the real stack (SQL store,
//! HTTP client, audit write) against an OpenAI-protocol server with a fixed latency.
//!
//! Per scenario (config or two-member route x provider latency 0/50 ms x concurrency 1/8/64 x
//! the configuration snapshot on, and off at 0 ms and concurrency 1; plus, at 0 ms and one call
//! at a time, a route of one member (`route-one`) beside a route whose first member's circuit
//! breaker is open (`route-open`: the member is skipped, with its audit row) x
//! SQLite / MariaDB): total wall time per run, provider time, overhead = total - provider, as
//! p50/p95/p99, runs per second and peak RSS. Prints a markdown table and writes
//! `target/bench/overhead.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench overhead` (`-- --quick` for fewer runs,
//! `-- --only sqlite|mariadb` for one backend).
//! MariaDB scenarios run when `AI_RUNNER_TEST_MYSQL_URL` is set.

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::bench::percentile;
use ai_runner_tests::{Backend, RouteSpec, Seed, TestDb, runner, seed, seed_route};
use serde_json::{Value, json};

struct Scenario {
    backend: Backend,
    target: &'static str,
    latency_ms: u64,
    concurrency: usize,
    runs: usize,
    /// The configuration snapshot on (the default) or off (`AI_CONFIG_CACHE_MS=0`: a query per
    /// call, as before issue #24).
    snapshot: bool,
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn run_scenario(sc: &Scenario) -> Option<Value> {
    let tdb = TestDb::new(sc.backend).await?;
    let reply = if sc.latency_ms == 0 {
        Reply::content("好的")
    } else {
        Reply::Delayed(
            Duration::from_millis(sc.latency_ms),
            Box::new(Reply::content("好的")),
        )
    };
    let server = ProviderServer::start(vec![reply]).await.unwrap();
    let backup = ProviderServer::start(vec![Reply::content("备用")])
        .await
        .unwrap();
    let url = server.url();
    let burl = backup.url();
    seed(&tdb.db(), &Seed::text("bench", &url)).await;
    seed(&tdb.db(), &Seed::text("bench-backup", &burl)).await;
    // A member that always answers 503: its breaker opens during the warm-up and stays open.
    let dead = ProviderServer::start(vec![Reply::Json {
        status: 503,
        body: json!({"error": {"message": "down"}}),
        headers: Vec::new(),
    }])
    .await
    .unwrap();
    seed(&tdb.db(), &Seed::text("bench-dead", &dead.url())).await;
    for (key, members) in [
        ("open", &[("bench-dead", 1, 1), ("bench-backup", 2, 1)][..]),
        ("one", &[("bench-backup", 1, 1)][..]),
    ] {
        seed_route(
            &tdb.db(),
            "bench",
            key,
            &RouteSpec {
                policy: "primary_backup",
                ..Default::default()
            },
            members,
        )
        .await;
    }
    seed_route(
        &tdb.db(),
        "bench",
        "two",
        &RouteSpec {
            policy: "primary_backup",
            ..Default::default()
        },
        &[("bench", 1, 1), ("bench-backup", 2, 1)],
    )
    .await;
    let cache = if sc.snapshot { "10000" } else { "0" };
    let r = Arc::new(runner(&tdb.settings(&[
        ("AI_CONFIG_CACHE_MS", cache),
        ("AI_MAX_RETRIES", "0"),
        ("AI_BREAKER_COOLDOWN_S", "3600"),
    ])));
    // Opens the dead member's breaker (5 counted failures), for `route-open`.
    for _ in 0..8 {
        let res = r
            .run_route(
                "bench",
                "open",
                &Variables::new(),
                &RunContext::new(Trigger::Library),
            )
            .await;
        assert!(res.result.is_ok(), "{:?}", res.result.error);
    }
    // Warm up: pool, HTTP keep-alive, key cache.
    for _ in 0..20 {
        let res = r
            .run_once(
                "bench",
                &Variables::new(),
                &RunContext::new(Trigger::Library),
            )
            .await;
        assert!(res.is_ok(), "{:?}", res.error);
    }
    let per_task = sc.runs / sc.concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sc.concurrency {
        let r = Arc::clone(&r);
        let target = sc.target;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let provider_us = if target == "config" {
                    let res = r
                        .run_once(
                            "bench",
                            &Variables::new(),
                            &RunContext::new(Trigger::Library),
                        )
                        .await;
                    assert!(res.is_ok());
                    res.provider_us
                } else {
                    let route = match target {
                        "route-open" => "open",
                        "route-one" => "one",
                        _ => "two",
                    };
                    let res = r
                        .run_route(
                            "bench",
                            route,
                            &Variables::new(),
                            &RunContext::new(Trigger::Library),
                        )
                        .await;
                    assert!(res.result.is_ok());
                    if target == "route-open" {
                        let skipped = &res.member_attempts[0];
                        assert_eq!(
                            skipped.error.as_ref().map(|e| e.code.as_str()),
                            Some("CIRCUIT_OPEN"),
                            "the dead member is skipped, not called"
                        );
                    }
                    res.result.provider_us
                };
                let total = t.elapsed().as_micros() as f64;
                samples.push((total, provider_us as f64));
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    let mut totals: Vec<f64> = samples.iter().map(|s| s.0 / 1000.0).collect();
    let mut providers: Vec<f64> = samples.iter().map(|s| s.1 / 1000.0).collect();
    let mut overheads: Vec<f64> = samples.iter().map(|s| (s.0 - s.1) / 1000.0).collect();
    for v in [&mut totals, &mut providers, &mut overheads] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let rps = samples.len() as f64 / wall;
    let ideal = if sc.latency_ms > 0 {
        Some(sc.concurrency as f64 * 1000.0 / sc.latency_ms as f64)
    } else {
        None
    };
    r.store().close().await;
    tdb.cleanup().await;
    Some(json!({
        "db": match sc.backend { Backend::Sqlite => "sqlite", _ => "mariadb" },
        "target": sc.target,
        "provider_latency_ms": sc.latency_ms,
        "concurrency": sc.concurrency,
        "snapshot": sc.snapshot,
        "runs": samples.len(),
        "total_ms": {"p50": percentile(&totals, 0.5), "p95": percentile(&totals, 0.95), "p99": percentile(&totals, 0.99)},
        "provider_ms": {"p50": percentile(&providers, 0.5), "p95": percentile(&providers, 0.95), "p99": percentile(&providers, 0.99)},
        "overhead_ms": {"p50": percentile(&overheads, 0.5), "p95": percentile(&overheads, 0.95), "p99": percentile(&overheads, 0.99)},
        "runs_per_second": rps,
        "ideal_runs_per_second": ideal,
        "share_of_ideal": ideal.map(|i| rps / i),
        "peak_rss_kb": peak_rss_kb(),
    }))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only sqlite` / `--only mariadb` runs one backend.
    let backends = ai_runner_tests::bench::backends();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for &backend in &backends {
        for target in ["config", "route", "route-one", "route-open"] {
            for latency_ms in [0, 50] {
                for concurrency in [1, 8, 64] {
                    if target == "route" && concurrency == 8 {
                        continue;
                    }
                    if target.starts_with("route-") && (latency_ms > 0 || concurrency > 1) {
                        continue;
                    }
                    let runs = match (quick, latency_ms, concurrency) {
                        (true, 0, _) => 200,
                        (true, _, c) => (c * 4).max(40),
                        (false, 0, _) => 2000,
                        (false, _, 1) => 100,
                        (false, _, c) => c * 20,
                    };
                    let runs = runs / concurrency * concurrency;
                    // The snapshot off too where the difference shows: no provider latency, one
                    // call at a time.
                    let modes: &[bool] = if latency_ms == 0 && concurrency == 1 {
                        &[true, false]
                    } else {
                        &[true]
                    };
                    for &snapshot in modes {
                        let sc = Scenario {
                            backend,
                            target,
                            latency_ms,
                            concurrency,
                            runs,
                            snapshot,
                        };
                        if let Some(v) = rt.block_on(run_scenario(&sc)) {
                            eprintln!("done: {v}");
                            results.push(v);
                        }
                    }
                }
            }
        }
    }
    println!(
        "| db | target | snapshot | provider | conc | runs | overhead p50 / p95 / p99 (ms) | total p50 (ms) | runs/s | of ideal | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {} | {} ms | {} | {} | {:.3} / {:.3} / {:.3} | {:.3} | {:.0} | {} | {} MB |",
            r["db"].as_str().unwrap(),
            r["target"].as_str().unwrap(),
            if r["snapshot"].as_bool().unwrap() {
                "on"
            } else {
                "off"
            },
            r["provider_latency_ms"],
            r["concurrency"],
            r["runs"],
            r["overhead_ms"]["p50"].as_f64().unwrap(),
            r["overhead_ms"]["p95"].as_f64().unwrap(),
            r["overhead_ms"]["p99"].as_f64().unwrap(),
            r["total_ms"]["p50"].as_f64().unwrap(),
            r["runs_per_second"].as_f64().unwrap(),
            r["share_of_ideal"]
                .as_f64()
                .map_or("-".into(), |s| format!("{:.0}%", s * 100.0)),
            r["peak_rss_kb"].as_u64().unwrap() / 1024,
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("overhead.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"results": results})).unwrap(),
    )
    .unwrap();
    eprintln!("wrote {}", path.display());
}
