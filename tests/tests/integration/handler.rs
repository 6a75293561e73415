//! The run-once handler fed real API Gateway events (REST v1, HTTP API v2, a base64 Function URL
//! body) and direct invocations, with the production state (SQL store, HTTP provider).

use ai_runner::app::App;
use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::function::Call;
use ai_runner::function::Function;
use ai_runner_tests::{Backend, Seed, TestDb, fixture_json, seed};
use base64::Engine;
use serde_json::{Value, json};

struct Setup {
    tdb: TestDb,
    state: App,
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
        App::new(&tdb.settings(&[("AI_CONTENT_RETRIES", "0"), ("AI_MAX_RETRIES", "0")])).unwrap();
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
        let resp = Function::RunOnce
            .handle(&s.state, with_body(fixture, &req), Call::default())
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
    let resp = Function::RunOnce
        .handle(&s.state, ev, Call::default())
        .await
        .unwrap();
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
        let resp = Function::RunOnce
            .handle(&s.state, fixture_json(fixture), Call::default())
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
        let resp = Function::RunOnce
            .handle(
                &s.state,
                with_body("aws/apigw/http-v2-post-json-body.json", &req),
                Call::default(),
            )
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], status, "{resp}");
        let body = http_body(&resp);
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].is_string());
    }
    s._server.set_script(vec![Reply::error(500, "boom")]);
    let resp = Function::RunOnce
        .handle(
            &s.state,
            with_body(
                "aws/apigw/rest-v1-proxy-post-json-body.json",
                &json!({"config_key": "greet"}),
            ),
            Call::default(),
        )
        .await
        .unwrap();
    assert_eq!(resp["statusCode"], 502);
    assert_eq!(http_body(&resp)["error"]["code"], "HTTP_5XX_SERVER_ERROR");
}

#[tokio::test]
async fn direct_invocations_return_the_result_or_a_coded_error() {
    let s = setup(vec![Reply::content("你好")]).await;
    let ok = Function::RunOnce
        .handle(
            &s.state,
            json!({"config_key": "greet"}),
            Call {
                request_id: Some("req-1".into()),
                deadline: None,
            },
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
    let err = Function::RunOnce
        .handle(&s.state, json!({"config_key": "missing"}), Call::default())
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "CONFIG_NOT_FOUND");
    let err = Function::RunOnce
        .handle(&s.state, json!({"nonsense": true}), Call::default())
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "INVALID_INPUT");
}

mod run_route {
    use super::*;
    use ai_runner_tests::{RouteSpec, seed_route};

    async fn route_setup() -> Setup {
        let s = setup(vec![Reply::content("你好")]).await;
        seed_route(
            &s.tdb.db(),
            "proj",
            "daily",
            &RouteSpec {
                policy: "primary_backup",
                ..Default::default()
            },
            &[("greet", 1, 1)],
        )
        .await;
        s
    }

    #[tokio::test]
    async fn a_scheduled_event_whose_detail_names_the_route_runs_it() {
        let s = route_setup().await;
        let mut ev = fixture_json("aws/eventbridge/scheduled-event-docs.json");
        ev["detail"] =
            json!({"project": "proj", "route_key": "daily", "variables": {"TOPIC": "日报"}});
        let out = Function::RunRoute
            .handle(&s.state, ev, Call::default())
            .await
            .unwrap();
        assert_eq!(out["status"], "ok", "{out}");
        assert_eq!(out["answered_by"], "greet");
        let row = s
            .tdb
            .db()
            .audit_row(out["audit_id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["trigger_source"], "schedule");
        assert_eq!(row["request_id"], "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa");
        assert_eq!(row["route_key"], "daily");
    }

    #[tokio::test]
    async fn a_scheduled_event_without_a_route_is_a_coded_failure() {
        let s = route_setup().await;
        let err = Function::RunRoute
            .handle(
                &s.state,
                fixture_json("aws/eventbridge/scheduled-event-docs.json"),
                Call::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type, "INVALID_INPUT");
        assert!(
            err.error_message.contains("route_key"),
            "{}",
            err.error_message
        );
    }

    #[tokio::test]
    async fn a_rule_with_constant_input_is_a_direct_invocation_labelled_schedule() {
        let s = route_setup().await;
        let out = Function::RunRoute
            .handle(
                &s.state,
                json!({"project": "proj", "route_key": "daily", "trigger": "schedule"}),
                Call {
                    request_id: Some("lambda-req".into()),
                    deadline: None,
                },
            )
            .await
            .unwrap();
        let row = s
            .tdb
            .db()
            .audit_row(out["audit_id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["trigger_source"], "schedule");
        assert_eq!(row["request_id"], "lambda-req");
    }

    #[tokio::test]
    async fn api_gateway_events_run_routes_and_map_route_errors_to_statuses() {
        let s = route_setup().await;
        for fixture in [
            "aws/apigw/rest-v1-proxy-post-json-body.json",
            "aws/apigw/http-v2-post-json-body.json",
        ] {
            let resp = Function::RunRoute
                .handle(
                    &s.state,
                    with_body(fixture, &json!({"project": "proj", "route_key": "daily"})),
                    Call::default(),
                )
                .await
                .unwrap();
            assert_eq!(resp["statusCode"], 200, "{resp}");
            assert_eq!(http_body(&resp)["answered_by"], "greet");
        }
        let resp = Function::RunRoute
            .handle(
                &s.state,
                with_body(
                    "aws/apigw/http-v2-post-json-body.json",
                    &json!({"project": "proj", "route_key": "nope"}),
                ),
                Call::default(),
            )
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 404);
        assert_eq!(http_body(&resp)["error"]["code"], "ROUTE_NOT_FOUND");
        let db = s.tdb.db();
        let route = seed_route(
            &db,
            "proj",
            "empty",
            &RouteSpec {
                policy: "primary_backup",
                ..Default::default()
            },
            &[],
        )
        .await;
        let _ = route;
        let resp = Function::RunRoute
            .handle(
                &s.state,
                with_body(
                    "aws/apigw/http-v2-post-json-body.json",
                    &json!({"project": "proj", "route_key": "empty"}),
                ),
                Call::default(),
            )
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 503);
        assert_eq!(http_body(&resp)["error"]["code"], "NO_ACTIVE_MEMBERS");
        let resp = Function::RunRoute
            .handle(
                &s.state,
                fixture_json("aws/apigw/rest-v1-proxy-post-json-body.json"),
                Call::default(),
            )
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 400);
    }

    #[tokio::test]
    async fn the_trigger_label_comes_from_the_event_not_from_what_the_caller_writes() {
        let s = route_setup().await;
        let db = s.tdb.db();
        let label = |out: &Value| {
            let out = if out.get("statusCode").is_some() {
                http_body(out)
            } else {
                out.clone()
            };
            out["member_attempts"][0]["audit_id"].as_i64().unwrap()
        };
        for (body, expected) in [
            (
                json!({"project": "proj", "route_key": "daily", "trigger": "schedule"}),
                "apigw",
            ),
            (
                json!({"project": "proj", "route_key": "daily", "trigger": "x".repeat(40)}),
                "apigw",
            ),
        ] {
            let resp = Function::RunRoute
                .handle(
                    &s.state,
                    with_body("aws/apigw/http-v2-post-json-body.json", &body),
                    Call::default(),
                )
                .await
                .unwrap();
            assert_eq!(resp["statusCode"], 200, "{resp}");
            let row = db.audit_row(label(&resp)).await.unwrap().unwrap();
            assert_eq!(row["trigger_source"], expected);
        }
        // A direct invocation (a schedule's constant input) may say `schedule`, nothing else.
        for (trigger, expected) in [
            ("schedule", "schedule"),
            ("eval", "lambda"),
            ("cli", "lambda"),
        ] {
            let out = Function::RunRoute
                .handle(
                    &s.state,
                    json!({"project": "proj", "route_key": "daily", "trigger": trigger}),
                    Call::default(),
                )
                .await
                .unwrap();
            let row = db.audit_row(label(&out)).await.unwrap().unwrap();
            assert_eq!(row["trigger_source"], expected, "{trigger}");
        }
        db.close().await;
    }

    #[tokio::test]
    async fn a_dry_run_invocation_returns_the_request_and_writes_nothing() {
        let s = route_setup().await;
        let out = Function::RunRoute
            .handle(
                &s.state,
                json!({"project": "proj", "route_key": "daily", "dry_run": true}),
                Call::default(),
            )
            .await
            .unwrap();
        assert_eq!(out["order"], json!(["greet"]));
        assert_eq!(out["request"]["body"]["model"], "model-greet");
        assert!(
            out["request"]["headers"]["Authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer ***")
        );
        assert_eq!(s.tdb.db().count("ai_call_logs").await.unwrap(), 0);
        assert!(s._server.requests().is_empty());
    }
}

#[tokio::test]
async fn an_api_caller_is_told_its_row_waits_in_the_spool_but_not_where() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("你好")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("greet", &server.url())).await;
    let objects = tempfile::tempdir().unwrap();
    let dir = objects.path().display().to_string();
    let state = App::new(&tdb.settings(&[("AI_RUNNER_OBJECTS_DIR", dir.as_str())])).unwrap();
    // The audit table goes away after the config is resolvable: the row must be spooled.
    let db = tdb.db();
    let ai_runner::store::Pool::Sqlite(p) = db.pool().await.unwrap() else {
        panic!("sqlite")
    };
    sqlx::query("ALTER TABLE ai_call_logs RENAME TO ai_call_logs_away")
        .execute(p)
        .await
        .unwrap();
    let resp = Function::RunOnce
        .handle(
            &state,
            with_body(
                "aws/apigw/http-v2-post-json-body.json",
                &json!({"config_key": "greet"}),
            ),
            Call::default(),
        )
        .await
        .unwrap();
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body = http_body(&resp);
    assert_eq!(body["content"], "你好");
    assert_eq!(body["audit_deferred"], "spooled", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("audit-spool") && !text.contains(&dir),
        "{text}"
    );
    assert!(
        body["audit_error"].as_str().is_some_and(
            |e| !e.contains(' ') && e.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        ),
        "the code alone: {body}"
    );
    // A direct invocation (an operator's) still says where the row waits.
    let direct = Function::RunOnce
        .handle(&state, json!({"config_key": "greet"}), Call::default())
        .await
        .unwrap();
    assert!(
        direct["audit_deferred"]
            .as_str()
            .is_some_and(|d| d.contains("audit-spool")),
        "{direct}"
    );
}
