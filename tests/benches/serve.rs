//! The latency `ai-runner serve` adds, measured the way independent gateway benchmarks do it:
//! the same client (one reused `reqwest` client, keep-alive, `TCP_NODELAY`) calls the same local
//! mock provider (a 0 ms [`ProviderServer`]) once directly and once through `ai-runner serve`, in
//! the same run, requests interleaved; added latency = through serve - direct, at p50 and p99.
//!
//! Scenarios per backend (SQLite; MariaDB when `AI_RUNNER_TEST_MYSQL_URL` is set):
//! - concurrency 1, plain (`stream: false`): total time per request;
//! - concurrency 1, streaming (`stream: true`, the mock answers a recorded SSE body): time to
//!   the first body chunk (added TTFT) and total;
//! - a concurrency sweep (1, 16, 64, 256 tasks): requests/s through serve (and directly, the
//!   mock's own ceiling), and the audit rows counted before and after: every request must have
//!   its row in `ai_call_logs`.
//!
//! Client, serve and mock share one process and one tokio runtime (as `overhead` does), so the
//! direct path pays for the client and the mock, and the serve path for all three.
//! Prints a markdown table and writes `target/bench/serve.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench serve` (`-- --quick` for fewer requests,
//! `-- --only sqlite|mariadb` for one backend).

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::Instant;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::bench::percentile;
use ai_runner_tests::{Backend, Seed, ServeServer, TestDb, fixture, runner, seed};
use serde_json::{Value, json};

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn stats(v: &[f64]) -> Value {
    json!({"p50": percentile(v, 0.5), "p90": percentile(v, 0.9), "p99": percentile(v, 0.99)})
}

/// One request: (time to the first body chunk, total), in milliseconds.
async fn once(client: &reqwest::Client, t: &Target) -> (f64, f64) {
    let url = &t.url;
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(t.body.clone());
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    let t = Instant::now();
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let mut first = None;
    let mut len = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        if first.is_none() && !c.is_empty() {
            first = Some(t.elapsed());
        }
        len += c.len();
    }
    let total = t.elapsed();
    assert!(len > 0, "{url}: empty body");
    (
        first.unwrap_or(total).as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
    )
}

/// A target: where the client sends, and what.
struct Target {
    url: String,
    body: axum::body::Bytes,
    headers: Vec<(String, String)>,
}

fn target(url: String, model: &str, stream: bool) -> Target {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": "你好"}]});
    if stream {
        b["stream"] = json!(true);
    }
    Target {
        url,
        body: serde_json::to_vec(&b).unwrap().into(),
        headers: Vec::new(),
    }
}

/// Concurrency 1, direct and through serve interleaved: a row with both and the difference.
async fn latency(
    db: &str,
    gateway: &str,
    mode: &str,
    client: &reqwest::Client,
    direct: &Target,
    serve: &Target,
    n: usize,
) -> Value {
    for _ in 0..n / 10 {
        once(client, direct).await;
        once(client, serve).await;
    }
    let (mut d_first, mut d_total, mut s_first, mut s_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        // Alternate which goes first, so neither always follows the other.
        let (d, s) = if i % 2 == 0 {
            let d = once(client, direct).await;
            (d, once(client, serve).await)
        } else {
            let s = once(client, serve).await;
            (once(client, direct).await, s)
        };
        d_first.push(d.0);
        d_total.push(d.1);
        s_first.push(s.0);
        s_total.push(s.1);
    }
    let (d_first, d_total, s_first, s_total) = (
        sorted(d_first),
        sorted(d_total),
        sorted(s_first),
        sorted(s_total),
    );
    let added = |s: &[f64], d: &[f64]| {
        json!({"p50": percentile(s, 0.5) - percentile(d, 0.5),
               "p90": percentile(s, 0.9) - percentile(d, 0.9),
               "p99": percentile(s, 0.99) - percentile(d, 0.99)})
    };
    json!({
        "db": db,
        "gateway": gateway,
        "mode": mode,
        "concurrency": 1,
        "requests": n,
        "direct_total_ms": stats(&d_total),
        "serve_total_ms": stats(&s_total),
        "added_total_ms": added(&s_total, &d_total),
        "direct_ttft_ms": stats(&d_first),
        "serve_ttft_ms": stats(&s_first),
        "added_ttft_ms": added(&s_first, &d_first),
    })
}

/// `n` requests from `conc` tasks at once: requests per second.
async fn throughput(client: &reqwest::Client, t: &Arc<Target>, conc: usize, n: usize) -> f64 {
    let per_task = n / conc;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let client = client.clone();
        let t = Arc::clone(t);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                once(&client, &t).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per_task * conc) as f64 / started.elapsed().as_secs_f64()
}

async fn run_backend(backend: Backend, quick: bool) -> Option<Vec<Value>> {
    let tdb = TestDb::new(backend).await?;
    let db_name = match backend {
        Backend::Sqlite => "sqlite",
        _ => "mariadb",
    };
    let plain = ProviderServer::start(vec![Reply::content("好的")])
        .await
        .unwrap();
    let sse = ProviderServer::start(vec![Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: fixture("openai/chat-completions-stream-text-with-usage.recorded.sse").into_bytes(),
    }])
    .await
    .unwrap();
    seed(&tdb.db(), &Seed::text("plain", &plain.url())).await;
    seed(&tdb.db(), &Seed::text("sse", &sse.url())).await;
    let serve = ServeServer::start(&tdb.settings(&[])).await;
    let serve_url = format!("{}/v1/chat/completions", serve.base);
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let n = if quick { 300 } else { 2000 };
    let mut results = Vec::new();

    let direct = target(plain.url(), "demo-model", false);
    let via = target(serve_url.clone(), "plain", false);
    let row = latency(
        db_name,
        "ai-runner serve",
        "plain",
        &client,
        &direct,
        &via,
        n,
    )
    .await;
    eprintln!("done: {row}");
    results.push(row);

    // The library alone on the same config and database (what `overhead` measures): how much
    // of the added latency is the run itself.
    let r = runner(&tdb.settings(&[]));
    let mut lib_total = Vec::new();
    let mut lib_provider = Vec::new();
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let res = r
            .run_once(
                "plain",
                &Variables::new(),
                &RunContext::new(Trigger::Library),
            )
            .await;
        assert!(res.is_ok(), "{:?}", res.error);
        if i >= n / 10 {
            lib_total.push(t.elapsed().as_secs_f64() * 1000.0);
            lib_provider.push(res.provider_us as f64 / 1000.0);
        }
    }
    let lib_overhead: Vec<f64> = lib_total
        .iter()
        .zip(&lib_provider)
        .map(|(t, p)| t - p)
        .collect();
    r.store().close().await;
    let row = json!({
        "db": db_name,
        "mode": "library",
        "concurrency": 1,
        "requests": n,
        "run_once_total_ms": stats(&sorted(lib_total)),
        "run_once_provider_ms": stats(&sorted(lib_provider)),
        "run_once_overhead_ms": stats(&sorted(lib_overhead)),
    });
    eprintln!("done: {row}");
    results.push(row);

    let direct = target(sse.url(), "demo-model", true);
    let via = target(serve_url.clone(), "sse", true);
    let row = latency(
        db_name,
        "ai-runner serve",
        "stream",
        &client,
        &direct,
        &via,
        n,
    )
    .await;
    eprintln!("done: {row}");
    results.push(row);

    let direct = Arc::new(target(plain.url(), "demo-model", false));
    let via = Arc::new(target(serve_url, "plain", false));
    for conc in [1, 16, 64, 256] {
        let requests = if quick { 500 } else { 4000 }.max(conc * 8) / conc * conc;
        // Warm up: open the connections this concurrency needs.
        throughput(&client, &direct, conc, conc * 2).await;
        throughput(&client, &via, conc, conc * 2).await;
        let direct_rps = throughput(&client, &direct, conc, requests).await;
        let before = tdb.db().count("ai_call_logs").await.unwrap();
        let rps = throughput(&client, &via, conc, requests).await;
        let after = tdb.db().count("ai_call_logs").await.unwrap();
        let row = json!({
            "db": db_name,
            "gateway": "ai-runner serve",
            "mode": "sweep",
            "concurrency": conc,
            "requests": requests,
            "serve_requests_per_second": rps,
            "direct_requests_per_second": direct_rps,
            "audit_rows_before": before,
            "audit_rows_after": after,
            "audit_rows_written": after - before,
            "every_request_audited": after - before == requests as i64,
        });
        eprintln!("done: {row}");
        results.push(row);
    }
    if backend == Backend::Sqlite {
        results.extend(portkey(&client, &plain, &sse, n).await);
    }
    serve.shutdown().await;
    tdb.cleanup().await;
    Some(results)
}

/// One request that must answer 200: what it said otherwise.
async fn check_ok(client: &reqwest::Client, t: &Target) -> Result<(), String> {
    let mut req = client
        .post(&t.url)
        .header("content-type", "application/json")
        .body(t.body.clone());
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if status == 200 {
        Ok(())
    } else {
        Err(format!("it answered {status}: {body}"))
    }
}

/// Portkey's gateway as a node process, killed when dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same method against Portkey's open-source gateway (`npm install @portkey-ai/gateway` in
/// `target/npm`), pointed at the same mocks with its custom-host header. Skipped (a printed note)
/// without node or the package.
async fn portkey(
    client: &reqwest::Client,
    plain: &ProviderServer,
    sse: &ProviderServer,
    n: usize,
) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/npm/node_modules/@portkey-ai/gateway/build/start-server.js");
    if !script.exists() {
        eprintln!(
            "note: Portkey skipped: no {} (npm install @portkey-ai/gateway in target/npm)",
            script.display()
        );
        return Vec::new();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("node")
        .arg(&script)
        .arg(format!("--port={port}"))
        .arg("--headless")
        .env("NODE_ENV", "production")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("note: Portkey skipped: node is not on PATH");
        return Vec::new();
    };
    let _node = Node(child);
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let via = |mock: &ProviderServer, stream: bool| {
        let mut t = target(url.clone(), "demo-model", stream);
        t.headers = vec![
            ("x-portkey-provider".into(), "openai".into()),
            (
                "x-portkey-custom-host".into(),
                format!("http://{}/v1", mock.addr()),
            ),
            ("authorization".into(), "Bearer sk-bench".into()),
        ];
        t
    };
    let probe = via(plain, false);
    let mut up = false;
    for _ in 0..150 {
        let mut req = client
            .post(&probe.url)
            .header("content-type", "application/json")
            .body(probe.body.clone());
        for (k, v) in &probe.headers {
            req = req.header(k, v);
        }
        let r = req.send().await;
        match r {
            Ok(r) if r.status() == 200 => {
                up = true;
                break;
            }
            Ok(r) => {
                let status = r.status();
                eprintln!(
                    "note: Portkey skipped: it answered {status}: {}",
                    r.text().await.unwrap_or_default()
                );
                return Vec::new();
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    if !up {
        eprintln!("note: Portkey skipped: the gateway did not start within 15 s");
        return Vec::new();
    }
    let mut rows = Vec::new();
    let direct = target(plain.url(), "demo-model", false);
    let row = latency("-", "portkey", "plain", client, &direct, &probe, n).await;
    eprintln!("done: {row}");
    rows.push(row);
    let direct = target(sse.url(), "demo-model", true);
    let stream = via(sse, true);
    match check_ok(client, &stream).await {
        Ok(()) => {
            let row = latency("-", "portkey", "stream", client, &direct, &stream, n).await;
            eprintln!("done: {row}");
            rows.push(row);
        }
        Err(e) => eprintln!("note: Portkey streaming skipped: {e}"),
    }
    let via = Arc::new(probe);
    for conc in [1, 64] {
        let requests = 4000usize.max(conc * 8) / conc * conc;
        throughput(client, &via, conc, conc * 2).await;
        let rps = throughput(client, &via, conc, requests).await;
        let row = json!({
            "db": "-", "gateway": "portkey", "mode": "sweep", "concurrency": conc,
            "requests": requests, "serve_requests_per_second": rps,
        });
        eprintln!("done: {row}");
        rows.push(row);
    }
    rows
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let backends = ai_runner_tests::bench::backends();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for &backend in &backends {
        if let Some(rows) = rt.block_on(run_backend(backend, quick)) {
            results.extend(rows);
        }
    }
    let f = |v: &Value| v.as_f64().unwrap();
    println!(
        "| gateway | db | mode | requests | direct p50 / p99 (ms) | via serve p50 / p99 (ms) | added p50 / p99 (ms) | added TTFT p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in results
        .iter()
        .filter(|r| r["mode"] == "plain" || r["mode"] == "stream")
    {
        let ttft = if r["mode"] == "stream" {
            format!(
                "{:.3} / {:.3}",
                f(&r["added_ttft_ms"]["p50"]),
                f(&r["added_ttft_ms"]["p99"])
            )
        } else {
            "-".into()
        };
        println!(
            "| {} | {} | {} | {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {} |",
            r["gateway"].as_str().unwrap(),
            r["db"].as_str().unwrap(),
            r["mode"].as_str().unwrap(),
            r["requests"],
            f(&r["direct_total_ms"]["p50"]),
            f(&r["direct_total_ms"]["p99"]),
            f(&r["serve_total_ms"]["p50"]),
            f(&r["serve_total_ms"]["p99"]),
            f(&r["added_total_ms"]["p50"]),
            f(&r["added_total_ms"]["p99"]),
            ttft,
        );
    }
    println!();
    println!(
        "| db | the library alone (`run_once`, c = 1) | runs | provider p50 / p99 (ms) | total p50 / p99 (ms) | overhead p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r["mode"] == "library") {
        println!(
            "| {} | config | {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} |",
            r["db"].as_str().unwrap(),
            r["requests"],
            f(&r["run_once_provider_ms"]["p50"]),
            f(&r["run_once_provider_ms"]["p99"]),
            f(&r["run_once_total_ms"]["p50"]),
            f(&r["run_once_total_ms"]["p99"]),
            f(&r["run_once_overhead_ms"]["p50"]),
            f(&r["run_once_overhead_ms"]["p99"]),
        );
    }
    println!();
    println!(
        "| gateway | db | concurrency | requests | via gateway req/s | direct req/s | audit rows written |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| r["mode"] == "sweep") {
        let audited = if r["gateway"] == "portkey" {
            "-".to_owned()
        } else {
            format!(
                "{} of {}{}",
                r["audit_rows_written"],
                r["requests"],
                if r["every_request_audited"] == true {
                    ""
                } else {
                    " (MISSING)"
                }
            )
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            r["gateway"].as_str().unwrap(),
            r["db"].as_str().unwrap(),
            r["concurrency"],
            r["requests"],
            f(&r["serve_requests_per_second"]),
            r["direct_requests_per_second"]
                .as_f64()
                .map_or("-".into(), |d| format!("{d:.0}")),
            audited,
        );
    }
    // Added latency, Portkey over ai-runner serve (same mock, same client, same run).
    for mode in ["plain", "stream"] {
        let added = |g: &str, key: &str| {
            results
                .iter()
                .find(|r| r["gateway"] == g && r["mode"] == mode && r["db"] != "mariadb")
                .and_then(|r| r[key]["p50"].as_f64())
        };
        let keys: &[&str] = if mode == "stream" {
            &["added_total_ms", "added_ttft_ms"]
        } else {
            &["added_total_ms"]
        };
        for &key in keys {
            if let (Some(p), Some(a)) = (added("portkey", key), added("ai-runner serve", key)) {
                println!(
                    "\nPortkey / ai-runner serve, {mode}, {key} p50: {p:.3} / {a:.3} = {:.2}x",
                    p / a
                );
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"results": results})).unwrap(),
    )
    .unwrap();
    eprintln!("wrote {}", path.display());
}
