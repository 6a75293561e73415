//! The run-once handler fed real API Gateway events (REST v1, HTTP API v2, a base64 Function URL
//! body) and direct invocations, with the production state (SQL store, HTTP provider).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::service::{self, AppState};
use ai_runner_tests::{Backend, Seed, TestDb, fixture_json, seed};
use base64::Engine;
use serde_json::{Value, json};

struct Setup {
    tdb: TestDb,
    state: AppState,
    _server: ProviderServer,
}

async fn setup(replies: Vec<Reply>) -> Setup {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let server = ProviderServer::start(replies).await.unwrap();
    let url = server.url();
    seed(&tdb.db(), &Seed::text("greet", &url)).await;
    seed(
        &tdb.db(),
        &Seed {
            response_format: Some(json!({"type": "json_object"})),
            ..Seed::text("json", &url)
        },
    )
    .await;
    let state =
        AppState::new(&tdb.settings(&[("AI_CONTENT_RETRIES", "0"), ("AI_MAX_RETRIES", "0")]))
            .unwrap();
    Setup {
        tdb,
        state,
        _server: server,
    }
}

fn with_body(fixture: &str, body: &Value) -> Value {
    let mut ev = fixture_json(fixture);
    ev["body"] = json!(body.to_string());
    ev["isBase64Encoded"] = json!(false);
    ev
}

fn http_body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn rest_v1_and_http_v2_events_run_the_config_and_answer_200() {
    let s = setup(vec![Reply::content("你好")]).await;
    let req = json!({"config_key": "greet", "variables": {"TOPIC": "春天"}});
    for fixture in [
        "aws/apigw/rest-v1-proxy-post-json-body.json",
        "aws/apigw/http-v2-post-json-body.json",
        "aws/apigw/http-api-payload-v2.0-docs.json",
    ] {
        let resp = service::run_once(&s.state, with_body(fixture, &req), None)
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200, "{fixture}: {resp}");
        assert_eq!(resp["headers"]["content-type"], "application/json");
        let body = http_body(&resp);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["content"], "你好");
        let row = s
            .tdb
            .db()
            .audit_row(body["audit_id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["trigger_source"], "apigw");
        let expected_id = fixture_json(fixture)["requestContext"]["requestId"].clone();
        assert_eq!(row["request_id"], expected_id, "{fixture}");
    }
}

#[tokio::test]
async fn a_base64_function_url_body_is_decoded() {
    let s = setup(vec![Reply::content("你好")]).await;
    let mut ev = fixture_json("aws/apigw/function-url-v2-post-isBase64Encoded-true.json");
    let req = json!({"config_key": "greet"}).to_string();
    ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(req));
    let resp = service::run_once(&s.state, ev, None).await.unwrap();
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(http_body(&resp)["content"], "你好");
}

#[tokio::test]
async fn the_fixtures_own_bodies_are_rejected_as_invalid_input_with_400() {
    let s = setup(vec![Reply::content("你好")]).await;
    for fixture in [
        "aws/apigw/rest-v1-proxy-post-json-body.json",
        "aws/apigw/http-api-payload-v2.0-docs.json",
        "aws/apigw/http-v2-post-json-body.json",
        "aws/apigw/function-url-v2-post-isBase64Encoded-true.json",
    ] {
        let resp = service::run_once(&s.state, fixture_json(fixture), None)
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 400, "{fixture}: {resp}");
        assert_eq!(
            http_body(&resp)["error"]["code"],
            "INVALID_INPUT",
            "{fixture}"
        );
    }
    assert_eq!(s.tdb.db().count("ai_call_logs").await.unwrap(), 0);
}

#[tokio::test]
async fn failures_map_to_404_422_and_502() {
    let s = setup(vec![Reply::content("not json at all")]).await;
    let cases = [
        (json!({"config_key": "missing"}), 404, "CONFIG_NOT_FOUND"),
        (json!({"config_key": "json"}), 422, "SCHEMA_INVALID"),
    ];
    for (req, status, code) in cases {
        let resp = service::run_once(
            &s.state,
            with_body("aws/apigw/http-v2-post-json-body.json", &req),
            None,
        )
        .await
        .unwrap();
        assert_eq!(resp["statusCode"], status, "{resp}");
        let body = http_body(&resp);
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].is_string());
    }
    s._server.set_script(vec![Reply::error(500, "boom")]);
    let resp = service::run_once(
        &s.state,
        with_body(
            "aws/apigw/rest-v1-proxy-post-json-body.json",
            &json!({"config_key": "greet"}),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp["statusCode"], 502);
    assert_eq!(http_body(&resp)["error"]["code"], "HTTP_5XX_SERVER_ERROR");
}

#[tokio::test]
async fn direct_invocations_return_the_result_or_a_coded_error() {
    let s = setup(vec![Reply::content("你好")]).await;
    let ok = service::run_once(
        &s.state,
        json!({"config_key": "greet"}),
        Some("req-1".into()),
    )
    .await
    .unwrap();
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["meta"]["config_key"], "greet");
    let row = s
        .tdb
        .db()
        .audit_row(ok["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["request_id"], "req-1");
    assert_eq!(row["trigger_source"], "lambda");
    let err = service::run_once(&s.state, json!({"config_key": "missing"}), None)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "CONFIG_NOT_FOUND");
    let err = service::run_once(&s.state, json!({"nonsense": true}), None)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "INVALID_INPUT");
}
