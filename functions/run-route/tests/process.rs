//! The built `run-route` binary as a process: Lambda Runtime API with API Gateway and
//! EventBridge schedule fixtures, and Function Compute mode with the FC timer fixture.

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::Path;
use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner_tests::lambda_api::{
    Outcome, RuntimeApi, free_port, lambda_env, spawn, wait_listening,
};
use ai_runner_tests::{Backend, RouteSpec, Seed, TestDb, app_env, fixture_json, seed, seed_route};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_run-route");

async fn setup() -> (TestDb, ProviderServer, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let down = ProviderServer::start(vec![Reply::error(503, "down")])
        .await
        .unwrap();
    let up = ProviderServer::start(vec![Reply::content("备用")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("primary", &down.url())).await;
    seed(&tdb.db(), &Seed::text("backup", &up.url())).await;
    seed_route(
        &tdb.db(),
        "proj",
        "daily",
        &RouteSpec {
            policy: "primary_backup",
            ..Default::default()
        },
        &[("primary", 1, 1), ("backup", 2, 1)],
    )
    .await;
    (tdb, down, up)
}

#[tokio::test]
async fn the_binary_runs_routes_for_api_calls_and_schedules() {
    let (tdb, _down, _up) = setup().await;
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-route");
    env.extend(app_env(&tdb));
    let _p = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let mut ev = fixture_json("aws/apigw/http-v2-post-json-body.json");
    ev["body"] = json!(json!({"project": "proj", "route_key": "daily"}).to_string());
    let out = api.invoke(ev).await;
    let Outcome::Response(resp) = out else {
        panic!("{out:?}")
    };
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["answered_by"], "backup");
    assert_eq!(
        body["member_attempts"][0]["error"]["code"],
        "HTTP_5XX_SERVER_ERROR"
    );

    let mut sched = fixture_json("aws/eventbridge/scheduled-event-docs.json");
    sched["detail"] = json!({"project": "proj", "route_key": "daily"});
    let out = api.invoke(sched).await;
    let Outcome::Response(body) = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["answered_by"], "backup");
    let rows = tdb
        .db()
        .audit_rows_for_trace(body["trace_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["trigger_source"] == "schedule"));

    let out = api
        .invoke(fixture_json("aws/eventbridge/scheduled-event-docs.json"))
        .await;
    let Outcome::Error { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["errorType"], "INVALID_INPUT");

    let out = api
        .invoke(json!({"project": "proj", "route_key": "nope"}))
        .await;
    let Outcome::Error { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["errorType"], "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn in_function_compute_mode_timer_events_drive_routes() {
    let (tdb, _down, _up) = setup().await;
    let port = free_port();
    let mut env = app_env(&tdb);
    env.push(("FC_SERVER_PORT".into(), port.to_string()));
    env.push(("FC_FUNCTION_NAME".into(), "run-route".into()));
    let _p = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(wait_listening(port, Duration::from_secs(20)).await);
    let client = reqwest::Client::new();
    let mut timer = fixture_json("alibaba-fc/timer-trigger-fc-docs.json");
    timer["payload"] = json!(json!({"project": "proj", "route_key": "daily"}).to_string());
    let resp = client
        .post(format!("http://127.0.0.1:{port}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("content-type", "application/octet-stream")
        .header("x-fc-request-id", "fc-timer-1")
        .body(timer.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["answered_by"], "backup");
    let rows = tdb
        .db()
        .audit_rows_for_trace(body["trace_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r["trigger_source"] == "schedule" && r["request_id"] == "fc-timer-1"),
        "{rows:?}"
    );

    // The docs' own timer payload ("awesome-fc") is not a route request.
    let resp = client
        .post(format!("http://127.0.0.1:{port}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("x-fc-request-id", "fc-test-invoke")
        .body(fixture_json("alibaba-fc/timer-trigger-fc-docs.json").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-fc-status"], "404");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorType"], "INVALID_INPUT");
}

/// Two configs (always positive / always negative) and a suite of 3 cases over both (6 results)
/// in the evaluation catalog.
async fn eval_setup() -> (TestDb, ProviderServer, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let (good, bad) = ai_runner_tests::seed_good_and_bad(&db).await;
    ai_runner_tests::apply_moods_suite(&db).await;
    db.close().await;
    (tdb, good, bad)
}

#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
#[tokio::test]
async fn a_scheduled_evaluation_fans_out_through_sqs_and_finishes_exactly_once() {
    use ai_runner::ports::EvalStore;
    use ai_runner_tests::{SqsServer, sqs_event};
    let (tdb, good, bad) = eval_setup().await;
    let sqs = SqsServer::start().await;
    let url = sqs.create_queue("ai-runner-eval").await;
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-route");
    env.extend(app_env(&tdb));
    env.extend(sqs.env(&url).into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.push(("EVAL_CHUNK_SIZE".into(), "2".into()));
    let _p = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    // The schedule's constant input starts the run and queues it.
    let out = api
        .invoke(json!({"eval": "moods", "trigger": "schedule"}))
        .await;
    let Outcome::Response(started) = out else {
        panic!("{out:?}")
    };
    assert_eq!(started["status"], "queued");
    assert_eq!(
        (started["total"].as_u64(), started["chunks"].as_u64()),
        (Some(6), Some(3))
    );
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let mut messages = sqs.drain(&url).await;
    assert_eq!(messages.len(), 3);
    messages.sort_by_key(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["start"].as_u64());

    // Batches as the event source mapping delivers them: reordered, with duplicates, and a
    // message that is not a chunk (dropped, never redelivered).
    let junk = ("junk-1".to_owned(), "not json".to_owned());
    let batches = [
        vec![messages[2].clone(), junk],
        vec![messages[0].clone(), messages[2].clone()],
        vec![messages[1].clone()],
        vec![messages[1].clone(), messages[0].clone()],
    ];
    let mut finalized = 0;
    for batch in &batches {
        let out = api.invoke(sqs_event(batch)).await;
        let Outcome::Response(body) = out else {
            panic!("{out:?}")
        };
        assert_eq!(body["batchItemFailures"], json!([]), "{body}");
        finalized += body["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["worked"]["finalized"] == true)
            .count();
    }
    assert_eq!(finalized, 1, "finalized exactly once");
    assert_eq!(
        good.requests().len() + bad.requests().len(),
        6,
        "each call once"
    );
    let db = tdb.db();
    let run = db.eval_run(&run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.trigger.as_str()),
        ("finished", "schedule")
    );
    let summary = run.summary.unwrap();
    assert_eq!(
        summary
            .iter()
            .map(|t| (t.target.as_str(), t.results, t.passed))
            .collect::<Vec<_>>(),
        [("good", 3, 2), ("bad", 3, 1)]
    );
    assert_eq!(db.eval_results(&run_id).await.unwrap().len(), 6);
    let logs = db.count("ai_call_logs").await.unwrap();
    assert_eq!(logs, 6, "every call audited once");

    // An unknown suite is bad input, answered with its code.
    let out = api.invoke(json!({"eval": "nope"})).await;
    let Outcome::Error { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["errorType"], "SUITE_INVALID");
    db.close().await;
}

#[tokio::test]
async fn without_a_queue_a_scheduled_evaluation_runs_in_the_invocation() {
    use ai_runner::ports::EvalStore;
    let (tdb, good, bad) = eval_setup().await;
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-route");
    env.extend(app_env(&tdb));
    let _p = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);
    let mut sched = fixture_json("aws/eventbridge/scheduled-event-docs.json");
    sched["detail"] = json!({"eval": "moods", "targets": ["config:good"]});
    let out = api.invoke(sched).await;
    let Outcome::Response(body) = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["status"], "finished");
    assert_eq!(body["targets"][0]["passed"], 2);
    assert_eq!((good.requests().len(), bad.requests().len()), (3, 0));
    let db = tdb.db();
    let run = db
        .eval_run(body["run_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.status.as_str(), run.trigger.as_str()),
        ("finished", "schedule")
    );
    db.close().await;
}

#[tokio::test]
async fn signed_api_calls_are_admitted_or_refused_by_the_bootstrap() {
    use ai_runner::model::access::{KeyOwner, Patterns, Scope};
    use ai_runner::store::access::NewKey;
    use ai_runner_tests::{PEPPER, api_event, keyring, python_sign};

    let (tdb, down, up) = setup().await;
    let db = tdb.db();
    let owner = KeyOwner::Project("proj".into());
    let new = |routes: &str, quota: Option<u32>| NewKey {
        scope: Scope {
            routes: Patterns::parse(routes),
            ..Scope::default_for(&owner)
        },
        daily_quota: quota,
        ..NewKey::new(owner.clone())
    };
    let (ak, sk) = db
        .create_access_key(&keyring(), &new("*", Some(2)))
        .await
        .unwrap();
    let (narrow_ak, narrow_sk) = db
        .create_access_key(&keyring(), &new("proj/other", None))
        .await
        .unwrap();
    db.close().await;

    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-route");
    env.extend(app_env(&tdb));
    env.push(("ACCESS_MODE".into(), "iam+hmac".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let payload = json!({"project": "proj", "route_key": "daily", "variables": {"TOPIC": "雨"}});
    let call = |ak: &str, sk: &str| {
        let s = python_sign(ak, sk, &payload, None, None, "/run-route");
        let mut ev = api_event("/run-route", &s.body, &s.headers, "203.0.113.9");
        // iam+hmac: API Gateway's IAM authorizer let the caller in, and said who it is.
        ev["requestContext"]["authorizer"] =
            json!({"iam": {"userArn": "arn:aws:iam::123456789012:role/reporting"}});
        ev
    };
    let http = |o: Outcome| match o {
        Outcome::Response(r) => {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (
                r["statusCode"].as_u64().unwrap(),
                body,
                r["headers"].clone(),
            )
        }
        other @ (Outcome::Error { .. } | Outcome::Streamed { .. }) => panic!("{other:?}"),
    };

    let good = call(&ak, sk.expose());
    let (st, body, headers) = http(api.invoke(good.clone()).await);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["content"], "备用");
    assert_eq!(headers["x-ratelimit-remaining"], "1");
    let (st, body, _) = http(api.invoke(good).await);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (401, Some("AUTH_REPLAY"))
    );
    let (st, body, _) = http(api.invoke(call(&ak, "sk_not_the_secret")).await);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (401, Some("AUTH_SIGNATURE_INVALID"))
    );
    let (st, body, _) = http(api.invoke(call(&narrow_ak, narrow_sk.expose())).await);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("AUTH_SCOPE_DENIED"))
    );
    let (st, _, _) = http(api.invoke(call(&ak, sk.expose())).await);
    assert_eq!(st, 200);
    let (st, body, headers) = http(api.invoke(call(&ak, sk.expose())).await);
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (429, Some("QUOTA_EXCEEDED"))
    );
    assert!(headers["retry-after"].as_str().is_some());
    assert_eq!(headers["x-ratelimit-limit"], "2");

    // Only the two admitted calls reached the providers (the primary fails, the backup answers).
    assert_eq!(up.requests().len(), 2);
    assert_eq!(
        down.requests().len(),
        2 * 3,
        "3 attempts on the failing primary per call"
    );
    let logs = ai_runner_tests::lambda_api::stdout_of(proc_).await;
    assert!(logs.contains("AUTH_SIGNATURE_INVALID") && logs.contains("AUTH_SCOPE_DENIED"));
    for secret in [
        sk.expose(),
        narrow_sk.expose(),
        PEPPER,
        "sk-test-provider-key-000",
    ] {
        assert!(!logs.contains(secret), "a secret in the logs");
    }
}
