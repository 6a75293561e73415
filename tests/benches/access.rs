//! What access control adds to an API call: signature verification (both schemes), the nonce
//! insert and the quota and rate upserts, through `access::check` on the real store (the embedded
//! SQLite file, and MariaDB over loopback when `AI_RUNNER_TEST_MYSQL_URL` is set).
//!
//! Per backend: p50 / p95 / p99 of one check, sequential, for a key with a daily quota and a
//! requests-per-second limit (so every check does the key lookup, the decryption of its secret,
//! the HMAC, one nonce insert and both counter upserts); and the signature alone (no database),
//! for the raw body and for a body that must be written back in Python's compact form.
//! Prints a markdown table and writes `target/bench/access.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench access` (`-- --quick` for fewer checks).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Instant;

use ai_runner::access::{self, HttpCall, signature};
use ai_runner::config::{AccessMode, AccessSettings};
use ai_runner::model::access::{Action, KeyOwner};
use ai_runner::store::access::NewKey;
use ai_runner_tests::bench::percentile;
use ai_runner_tests::{Backend, RouteSpec, TestDb, keyring, seed_route};
use serde_json::{Value, json};

fn stats(mut us: Vec<f64>) -> (f64, f64, f64) {
    us.sort_by(f64::total_cmp);
    (
        percentile(&us, 0.5),
        percentile(&us, 0.95),
        percentile(&us, 0.99),
    )
}

/// A typical route call body, as `requests.post(json=...)` sends it (spaces, `\u` escapes).
fn wire_body() -> String {
    r#"{"project": "shop", "route_key": "chat", "variables": {"QUESTION": "\u4eca\u5929\u5929\u6c14\u600e\u4e48\u6837\uff1f", "temperature": 0.7, "n": 3, "tags": ["a", "b"]}}"#.to_owned()
}

fn call(ak: &str, sk: &str, nonce: &str, body: &str, compact: &str) -> HttpCall {
    let ts = (ai_runner::model::now_ms() / 1000).to_string();
    let sig = signature::v1_sign(sk, &signature::v1_message(&ts, nonce, compact));
    HttpCall {
        method: "POST".into(),
        paths: vec!["/run-route".into()],
        headers: vec![
            ("x-ak".into(), ak.into()),
            ("x-timestamp".into(), ts),
            ("x-nonce".into(), nonce.into()),
            ("x-signature".into(), sig),
        ],
        body: body.as_bytes().to_vec(),
        source_ip: Some("203.0.113.7".into()),
        principal: None,
    }
}

async fn backend(backend: Backend, label: &str, n: usize) -> Option<Value> {
    let tdb = TestDb::new(backend).await?;
    let db = tdb.db();
    seed_route(&db, "shop", "chat", &RouteSpec::default(), &[]).await;
    let owner = KeyOwner::User("bench".into());
    let (ak, sk) = db
        .create_access_key(
            &keyring(),
            &NewKey {
                daily_quota: Some(1_000_000_000),
                rps_limit: Some(1_000_000),
                allow_ips: vec!["203.0.113.0/24".into()],
                ..NewKey::new(owner)
            },
        )
        .await
        .unwrap();
    let settings = AccessSettings {
        mode: AccessMode::Hmac,
        max_skew: std::time::Duration::from_secs(300),
        fail_open: false,
        trusted_proxy_hops: 0,
    };
    let ring = keyring();
    let action = Action::Route {
        project: "shop".into(),
        route_key: "chat".into(),
        dry_run: false,
    };
    let body = wire_body();
    let compact = signature::python_compact(&serde_json::from_str(&body).unwrap());
    let mut us = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let c = call(&ak, sk.expose(), &format!("n{i}"), &body, &compact);
        let t = Instant::now();
        let out = access::check(
            &db,
            &ring,
            &settings,
            &c,
            Some(&action),
            ai_runner::model::now_ms(),
        )
        .await;
        let took = t.elapsed().as_secs_f64() * 1e6;
        assert!(out.is_ok(), "{out:?}");
        if i >= 50 {
            us.push(took);
        }
    }
    let (p50, p95, p99) = stats(us);
    println!(
        "| {label} | full check (lookup, decrypt, HMAC, nonce, rate, quota) | {:.0} | {:.0} | {:.0} |",
        p50, p95, p99
    );
    db.close().await;
    tdb.cleanup().await;
    Some(json!({"backend": label, "p50_us": p50, "p95_us": p95, "p99_us": p99, "checks": n}))
}

fn signature_only(n: usize) -> Value {
    let body = wire_body();
    let compact = signature::python_compact(&serde_json::from_str(&body).unwrap());
    let mut rows = Vec::new();
    for (label, sent) in [
        ("signature, compact body", compact.as_str()),
        ("signature, re-serialised body", body.as_str()),
    ] {
        let c = call("ak", "sk_secret", "nonce", sent, &compact);
        let signed = signature::read_headers(|h| c.header(h)).unwrap();
        let req = signature::Request {
            method: "POST",
            paths: &c.paths,
            body: &c.body,
        };
        let mut us = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            assert!(signature::verify("sk_secret", &signed, &req));
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (p50, p95, p99) = stats(us);
        println!("| - | {label} | {p50:.1} | {p95:.1} | {p99:.1} |");
        rows.push(json!({"case": label, "p50_us": p50, "p95_us": p95, "p99_us": p99}));
    }
    Value::Array(rows)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 2000 };
    println!("| backend | what | p50 µs | p95 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    let sig = signature_only(n * 5);
    let mut results = vec![];
    results.extend(backend(Backend::Sqlite, "SQLite", n).await);
    if ai_runner_tests::mysql_url().is_some() {
        results.extend(backend(Backend::MariaDb, "MariaDB (loopback)", n).await);
    }
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/access.json",
        serde_json::to_string_pretty(&json!({"signature": sig, "checks": results})).unwrap(),
    )
    .unwrap();
}
