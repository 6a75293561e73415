//! A separate process checking signed calls against a shared database: the quota and rate-limit
//! race tests start several of these at once.
//!
//! Environment: `DATABASE_URL`, `AI_PEPPER`, `WORKER_AK`, `WORKER_SK`, `WORKER_CALLS`,
//! `WORKER_START_MS` (epoch ms to fire at, so every process fires together). Prints
//! `{"granted": n, "refused": {code: n}, "calls": [...]}`, each call with the database seconds
//! read just before and just after it (`from`, `to`: the second it was counted in lies between),
//! its refusal `code` (or null) and, when granted, its rate-limit headers' `limit` and
//! `remaining`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;

use ai_runner::Settings;
use ai_runner::access::{self, HttpCall, signature};
use ai_runner::crypto::Keyring;
use ai_runner::model::access::Action;
use ai_runner::store::Db;

#[tokio::main]
async fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is required"));
    let settings = Settings::builder()
        .with_process_env()
        .var("ACCESS_MODE", "hmac")
        .build()
        .unwrap();
    let db = Db::new(settings.database.clone());
    let ring = Keyring::new(settings.pepper.clone(), None);
    let (ak, sk) = (env("WORKER_AK"), env("WORKER_SK"));
    let calls: usize = env("WORKER_CALLS").parse().unwrap();
    let start_ms: i64 = env("WORKER_START_MS").parse().unwrap();
    // Connect and warm the key cache before the start line.
    db.pool().await.unwrap();
    let wait = start_ms - ai_runner::model::now_ms();
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait.unsigned_abs())).await;
    }
    let body = br#"{"config_key":"greet"}"#.to_vec();
    let pid = std::process::id();
    let checks = (0..calls).map(|i| {
        let ts = (ai_runner::model::now_ms() / 1000).to_string();
        let nonce = format!("{pid}-{i}");
        let message = signature::v1_message(&ts, &nonce, std::str::from_utf8(&body).unwrap());
        let call = HttpCall {
            method: "POST".into(),
            paths: vec!["/run-once".into()],
            headers: vec![
                ("x-ak".into(), ak.clone()),
                ("x-timestamp".into(), ts),
                ("x-nonce".into(), nonce),
                ("x-signature".into(), signature::v1_sign(&sk, &message)),
            ],
            body: body.clone(),
            source_ip: Some("127.0.0.1".into()),
            principal: None,
        };
        let (db, ring, settings) = (&db, &ring, &settings.access);
        async move {
            let from = ai_runner_tests::db_second(db).await;
            let outcome = access::check(
                db,
                ring,
                settings,
                &call,
                Some(&Action::Config("greet".into())),
                ai_runner::model::now_ms(),
            )
            .await;
            let to = ai_runner_tests::db_second(db).await;
            (from, to, outcome)
        }
    });
    let mut granted = 0;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = Vec::new();
    for (from, to, outcome) in futures_util::future::join_all(checks).await {
        seen.push(match outcome {
            Ok(g) => {
                granted += 1;
                serde_json::json!({"from": from, "to": to, "code": null,
                                   "limit": g.limits.map(|l| l.limit),
                                   "remaining": g.limits.map(|l| l.remaining)})
            }
            Err(d) => {
                *refused.entry(d.code.as_str().to_owned()).or_default() += 1;
                serde_json::json!({"from": from, "to": to, "code": d.code.as_str()})
            }
        });
    }
    db.close().await;
    println!(
        "{}",
        serde_json::json!({"granted": granted, "refused": refused, "calls": seen})
    );
}
