//! Cold start, size and memory of the release bootstraps, measured through the same Lambda
//! Runtime API harness the process tests use: time from spawning a bootstrap to its first
//! `/next` (init) and to its first response, over many spawns; stripped binary sizes; RSS after
//! the first and the hundredth invocation. Writes `target/bench/cold_start.json`.
//!
//! Needs release binaries: `cargo build --release -p run-once -p run-route -p oss-trigger`
//! (what `bash bench/run` does), or set `AI_RUNNER_BOOTSTRAP_DIR` to a directory holding
//! `run-once`, `run-route`, `oss-trigger` (e.g. `target/lambda/<name>/bootstrap` copies).

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner_tests::lambda_api::{Outcome, RuntimeApi, lambda_env, spawn};
use ai_runner_tests::{Backend, PEPPER, Seed, TestDb, seed};
use serde_json::json;

fn bootstrap(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("AI_RUNNER_BOOTSTRAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release"));
    let names = ["run-once", "run-route", "oss-trigger"];
    if !bootstrap(&dir, "run-once").is_file() {
        eprintln!(
            "no release bootstrap in {}: run `cargo build --release -p run-once -p run-route -p oss-trigger` first",
            dir.display()
        );
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
        let server = ProviderServer::start(vec![Reply::content("好")]).await.unwrap();
        seed(&tdb.db(), &Seed::text("cold", &server.url())).await;
        let spawns = if quick { 5 } else { 30 };
        let mut sizes = serde_json::Map::new();
        for n in names {
            sizes.insert(n.into(), json!(std::fs::metadata(bootstrap(&dir, n)).map(|m| m.len()).unwrap_or(0)));
        }
        let mut init_ms = Vec::new();
        let mut first_ms = Vec::new();
        let mut rss_first = 0;
        let mut rss_hundredth = 0;
        for i in 0..spawns {
            let api = RuntimeApi::start().await;
            let mut env = lambda_env(&api, "run-once");
            env.push(("DATABASE_URL".into(), tdb.url.clone()));
            env.push(("AI_PEPPER".into(), PEPPER.into()));
            env.push(("AI_RUNNER_LOG".into(), "warn".into()));
            let id = api.push(json!({"config_key": "cold"}));
            let p = spawn(&bootstrap(&dir, "run-once"), Path::new("/"), &env);
            let spawned = p.spawned;
            let out = api.outcome(&id, Duration::from_secs(30)).await;
            let answered = Instant::now();
            assert!(matches!(&out, Outcome::Response(v) if v["status"] == "ok"), "{out:?}");
            init_ms.push(api.first_next().unwrap().duration_since(spawned).as_secs_f64() * 1000.0);
            first_ms.push(answered.duration_since(spawned).as_secs_f64() * 1000.0);
            if i == 0 {
                let pid = p.child.id().unwrap();
                rss_first = rss_kb(pid);
                for _ in 1..100 {
                    let out = api.invoke(json!({"config_key": "cold"})).await;
                    assert!(matches!(out, Outcome::Response(_)));
                }
                rss_hundredth = rss_kb(pid);
            }
            drop(p);
        }
        json!({
            "binary_bytes": sizes,
            "spawns": spawns,
            "init_ms": {"p50": pct(&mut init_ms.clone(), 0.5), "p95": pct(&mut init_ms.clone(), 0.95), "min": pct(&mut init_ms, 0.0)},
            "first_response_ms": {"p50": pct(&mut first_ms.clone(), 0.5), "p95": pct(&mut first_ms.clone(), 0.95), "min": pct(&mut first_ms, 0.0)},
            "rss_kb_after_first_invocation": rss_first,
            "rss_kb_after_100_invocations": rss_hundredth,
        })
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("cold_start.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
