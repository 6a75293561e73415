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
        .body(fixture_json("alibaba-fc/timer-trigger-fc-docs.json").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-fc-status"], "404");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorType"], "INVALID_INPUT");
}
