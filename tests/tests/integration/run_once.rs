//! run-once end to end: the real SQL store (embedded SQLite and MariaDB loaded with the
//! predecessor's seed schema), the real HTTP provider client, and an OpenAI-protocol server on a
//! loopback port. Every audit row is checked column by column.

use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::{Backend, Seed, TestDb, fixture, fixture_json, runner, seed};
use serde_json::{Value, json};

fn vars(v: Value) -> Variables {
    v.as_object().cloned().unwrap()
}

async fn audit_row(tdb: &TestDb, id: Option<i64>) -> serde_json::Map<String, Value> {
    tdb.db()
        .audit_row(id.expect("audit id"))
        .await
        .unwrap()
        .expect("audit row")
}

fn parsed(row: &serde_json::Map<String, Value>, col: &str) -> Value {
    serde_json::from_str(row[col].as_str().unwrap_or("null")).unwrap()
}

async fn success_writes_one_row_with_every_column(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("今天晴朗。")])
        .await
        .unwrap();
    let url = server.url();
    seed(
        &tdb.db(),
        &Seed {
            params: Some(json!({"TEMPERATURE": 0.3, "TOPIC": "ignored", "MAX_TOKENS": 50})),
            ..Seed::text("ok-key", &url)
        },
    )
    .await;
    let settings = tdb.settings(&[("PROJECT_NAME", "it-project")]);
    let r = runner(&settings);
    let res = r
        .run_once(
            "ok-key",
            &vars(json!({"TOPIC": "下雨"})),
            &RunContext::new(Trigger::Library),
        )
        .await;
    assert!(res.is_ok(), "{:?}", res.error);
    assert_eq!(res.content.as_deref(), Some("今天晴朗。"));
    assert_eq!(res.attempts, 1);
    assert_eq!(res.usage.as_ref().unwrap()["total_tokens"], 20);
    assert_eq!(res.meta.model.as_deref(), Some("model-ok-key"));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].headers["authorization"],
        "Bearer sk-test-provider-key-000"
    );
    assert_eq!(reqs[0].headers["x-trace-id"], res.trace_id);
    assert_eq!(res.trace_id.len(), 32);
    let sent = &reqs[0].body;
    assert_eq!(
        sent.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["model", "messages", "temperature", "max_tokens"]
    );
    assert_eq!(sent["messages"][0]["content"], "说一句话：下雨");

    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 1);
    let row = audit_row(&tdb, res.audit_id).await;
    assert_eq!(row["config_key"], "ok-key");
    assert_eq!(row["http_status"], 200);
    assert!(row["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(row["prompt_tokens"], 12);
    assert_eq!(row["completion_tokens"], 8);
    assert_eq!(row["total_tokens"], 20);
    assert_eq!(row["response_id"], res.response.as_ref().unwrap()["id"]);
    assert_eq!(row["error_code"], Value::Null);
    assert_eq!(row["error_message"], Value::Null);
    let mut expected_body = sent.clone();
    expected_body["_trace_id"] = json!(res.trace_id);
    assert_eq!(parsed(&row, "request_body_json"), expected_body);
    assert_eq!(
        parsed(&row, "response_body_json"),
        *res.response.as_ref().unwrap()
    );
    assert!(!row["created_at_text"].is_null());
    if backend != Backend::MariaDbUnmigrated {
        assert_eq!(row["trace_id"], json!(res.trace_id));
        assert_eq!(row["status"], "ok");
        assert_eq!(row["attempts"], 1);
        assert_eq!(row["trigger_source"], "library");
        assert_eq!(row["model_name"], "model-ok-key");
        assert_eq!(row["project_name"], "it-project");
        assert!(row["provider_ms"].as_i64().is_some());
    } else {
        assert!(
            !row.contains_key("trace_id"),
            "seed schema has no extended columns"
        );
    }
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn success_writes_one_row_with_every_column_on_sqlite() {
    success_writes_one_row_with_every_column(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn success_writes_one_row_with_every_column_on_mariadb() {
    success_writes_one_row_with_every_column(Backend::MariaDb).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn an_unmigrated_seed_schema_still_gets_its_core_audit_row() {
    success_writes_one_row_with_every_column(Backend::MariaDbUnmigrated).await;
}

/// One failure scenario: how the config is set up, what the provider does, what must be recorded.
struct Case {
    name: &'static str,
    replies: Vec<Reply>,
    seed: fn(&str) -> Seed<'_>,
    vars: Value,
    extra_env: &'static [(&'static str, &'static str)],
    code: &'static str,
    http_status: i64,
    attempts: u32,
    provider_calls: usize,
    has_request_body: bool,
    has_response_body: bool,
}

fn json_seed(url: &str) -> Seed<'_> {
    Seed {
        response_format: Some(json!({"type": "json_object"})),
        ..Seed::text("k", url)
    }
}

fn schema_seed(url: &str) -> Seed<'_> {
    Seed {
        response_format: Some(
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "required": ["分数"], "properties": {"分数": {"type": "integer"}}}}}),
        ),
        ..Seed::text("k", url)
    }
}

fn media_seed(url: &str) -> Seed<'_> {
    Seed {
        messages: json!([{"role": "user", "content": [{"type": "text", "text": "看图"}, {"type": "image_url", "image_url": {"url": "{{MEDIA_URL}}"}}]}]),
        ..Seed::text("k", url)
    }
}

fn cases() -> Vec<Case> {
    let base = Case {
        name: "",
        replies: vec![],
        seed: |u| Seed::text("k", u),
        vars: json!({}),
        extra_env: &[],
        code: "",
        http_status: 0,
        attempts: 1,
        provider_calls: 1,
        has_request_body: true,
        has_response_body: true,
    };
    vec![
        Case {
            name: "provider 400",
            replies: vec![Reply::Json {
                status: 400,
                body: fixture_json("openai/error-400-context-length-exceeded.json"),
                headers: vec![],
            }],
            code: "HTTP_STATUS_ERROR",
            http_status: 400,
            ..base_clone(&base)
        },
        Case {
            name: "429 forever",
            replies: vec![Reply::Json {
                status: 429,
                body: fixture_json("openai/error-429-rate-limit-exceeded.json"),
                headers: vec![],
            }],
            code: "HTTP_429_RATE_LIMIT",
            http_status: 429,
            attempts: 3,
            provider_calls: 3,
            ..base_clone(&base)
        },
        Case {
            name: "5xx exhausted",
            replies: vec![Reply::error(503, "overloaded")],
            code: "HTTP_5XX_SERVER_ERROR",
            http_status: 503,
            attempts: 3,
            provider_calls: 3,
            ..base_clone(&base)
        },
        Case {
            name: "timeout",
            replies: vec![Reply::Delayed(
                Duration::from_millis(1500),
                Box::new(Reply::content("迟到")),
            )],
            extra_env: &[("AI_TIMEOUT", "0.3"), ("AI_MAX_RETRIES", "1")],
            code: "NETWORK_TIMEOUT",
            http_status: 0,
            attempts: 2,
            provider_calls: 2,
            has_response_body: false,
            ..base_clone(&base)
        },
        Case {
            name: "non-JSON 200",
            replies: vec![Reply::Raw {
                status: 200,
                content_type: "text/html".into(),
                body: b"<html>gateway</html>".to_vec(),
            }],
            code: "BAD_PROVIDER_RESPONSE",
            http_status: 200,
            has_response_body: false,
            ..base_clone(&base)
        },
        Case {
            name: "English in JSON values",
            replies: vec![Reply::content(r#"{"回答": "hello"}"#)],
            seed: json_seed,
            code: "LETTER_DETECTED",
            http_status: 200,
            attempts: 4,
            provider_calls: 4,
            ..base_clone(&base)
        },
        Case {
            name: "invalid JSON content",
            replies: vec![Reply::content("这不是 JSON")],
            seed: json_seed,
            extra_env: &[("AI_CONTENT_RETRIES", "1")],
            code: "SCHEMA_INVALID",
            http_status: 200,
            attempts: 2,
            provider_calls: 2,
            ..base_clone(&base)
        },
        Case {
            name: "schema violation",
            replies: vec![Reply::content(r#"{"分数": "高"}"#)],
            seed: schema_seed,
            extra_env: &[("AI_CONTENT_RETRIES", "0")],
            code: "SCHEMA_INVALID",
            http_status: 200,
            ..base_clone(&base)
        },
        Case {
            name: "missing media URL",
            replies: vec![Reply::content("不该被调用")],
            seed: media_seed,
            code: "MISSING_MEDIA_URL",
            http_status: 0,
            attempts: 0,
            provider_calls: 0,
            has_request_body: false,
            has_response_body: false,
            ..base_clone(&base)
        },
        Case {
            name: "wrong pepper",
            replies: vec![Reply::content("不该被调用")],
            extra_env: &[("AI_PEPPER", "some-other-pepper")],
            code: "DECRYPT_FAILED",
            http_status: 0,
            attempts: 0,
            provider_calls: 0,
            has_request_body: false,
            has_response_body: false,
            ..base_clone(&base)
        },
    ]
}

fn base_clone(b: &Case) -> Case {
    Case {
        replies: b.replies.clone(),
        vars: b.vars.clone(),
        ..*b
    }
}

async fn each_failure_class_leaves_one_row(backend: Backend) {
    for case in cases() {
        let tdb = TestDb::new(backend).await.unwrap();
        let server = ProviderServer::start(case.replies.clone()).await.unwrap();
        let url = server.url();
        seed(&tdb.db(), &(case.seed)(&url)).await;
        let settings = tdb.settings(case.extra_env);
        let r = runner(&settings);
        let res = r
            .run_once(
                "k",
                &vars(case.vars.clone()),
                &RunContext::new(Trigger::Library),
            )
            .await;
        let ctx = case.name;
        assert!(!res.is_ok(), "{ctx}");
        assert_eq!(
            res.error.as_ref().unwrap().code,
            case.code,
            "{ctx}: {:?}",
            res.error
        );
        assert_eq!(res.attempts, case.attempts, "{ctx}");
        assert_eq!(server.requests().len(), case.provider_calls, "{ctx}");
        assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 1, "{ctx}");
        let row = audit_row(&tdb, res.audit_id).await;
        assert_eq!(row["config_key"], "k", "{ctx}");
        assert_eq!(row["error_code"], case.code, "{ctx}");
        assert_eq!(
            row["error_message"],
            json!(res.error.as_ref().unwrap().message),
            "{ctx}"
        );
        assert_eq!(row["http_status"], case.http_status, "{ctx}");
        assert_eq!(
            row["request_body_json"].is_string(),
            case.has_request_body,
            "{ctx}"
        );
        assert_eq!(
            row["response_body_json"].is_string(),
            case.has_response_body,
            "{ctx}"
        );
        assert_eq!(row["status"], "error", "{ctx}");
        assert_eq!(row["attempts"], case.attempts, "{ctx}");
        assert_eq!(row["trace_id"], json!(res.trace_id), "{ctx}");
        r.store().close().await;
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn each_failure_class_leaves_one_row_on_sqlite() {
    each_failure_class_leaves_one_row(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn each_failure_class_leaves_one_row_on_mariadb() {
    each_failure_class_leaves_one_row(Backend::MariaDb).await;
}

#[tokio::test]
async fn connection_refused_is_a_network_error_with_status_zero() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    drop(listener);
    seed(&tdb.db(), &Seed::text("k", &url)).await;
    let r = runner(&tdb.settings(&[]));
    let res = r
        .run_once("k", &Variables::new(), &RunContext::new(Trigger::Library))
        .await;
    assert_eq!(res.error.as_ref().unwrap().code, "NETWORK_ERROR");
    assert_eq!(res.attempts, 3);
    let row = audit_row(&tdb, res.audit_id).await;
    assert_eq!(row["http_status"], 0);
    assert_eq!(row["error_code"], "NETWORK_ERROR");
}

#[tokio::test]
async fn an_unknown_config_key_is_config_not_found_and_writes_nothing() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let r = runner(&tdb.settings(&[]));
    let res = r
        .run_once(
            "nope",
            &Variables::new(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    assert_eq!(res.error.as_ref().unwrap().code, "CONFIG_NOT_FOUND");
    assert_eq!(res.audit_id, None);
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 0);
}

#[tokio::test]
async fn content_that_passes_on_a_retry_is_kept_with_one_row() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let server = ProviderServer::start(vec![
        Reply::content(r#"{"回答": "yes"}"#),
        Reply::content(r#"{"回答": "是"}"#),
    ])
    .await
    .unwrap();
    let url = server.url();
    seed(&tdb.db(), &json_seed(&url)).await;
    let r = runner(&tdb.settings(&[]));
    let res = r
        .run_once("k", &Variables::new(), &RunContext::new(Trigger::Library))
        .await;
    assert!(res.is_ok(), "{:?}", res.error);
    assert_eq!(res.content_attempts, 2);
    assert_eq!(res.parsed, Some(json!({"回答": "是"})));
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 1);
}

#[tokio::test]
async fn a_streamed_answer_is_assembled_with_usage_and_time_to_first_token() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let sse = fixture("openai/chat-completions-stream-text-with-usage.recorded.sse").into_bytes();
    let server = ProviderServer::start(vec![Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: sse,
    }])
    .await
    .unwrap();
    let url = server.url();
    seed(
        &tdb.db(),
        &Seed {
            params: Some(json!({"STREAM": true})),
            ..Seed::text("k", &url)
        },
    )
    .await;
    let r = runner(&tdb.settings(&[]));
    let res = r
        .run_once("k", &Variables::new(), &RunContext::new(Trigger::Library))
        .await;
    assert!(res.is_ok(), "{:?}", res.error);
    let content = res.content.unwrap();
    assert!(
        content.starts_with("I'm unable to provide real-time weather updates."),
        "{content}"
    );
    assert!(res.ttft_ms.is_some());
    let sent = &server.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let row = audit_row(&tdb, res.audit_id).await;
    assert_eq!(row["total_tokens"], 44);
    assert_eq!(row["response_id"], "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL");
    assert!(row["ttft_ms"].as_i64().is_some());
}

/// The predecessor's rows, written by its own SQL with its own v1 key blob, run unchanged.
#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn rows_written_by_the_predecessor_run_unchanged_on_mariadb() {
    let tdb = TestDb::new(Backend::MariaDbUnmigrated).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content(r#"{"结论": "好"}"#)])
        .await
        .unwrap();
    let vectors = fixture_json("spec/crypto-test-vectors.json");
    let v = &vectors[0];
    let pool = sqlx::MySqlPool::connect(&tdb.url).await.unwrap();
    sqlx::query("INSERT INTO ai_connection (name, provider, base_url, api_key_encrypted, is_active) VALUES ('legacy', 'openrouter', ?, ?, 1)")
        .bind(server.url()).bind(v["stored_string"].as_str().unwrap()).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO ai_model (name, connection_id, is_active) VALUES ('legacy-model', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO ai_prompt (name, version, messages_json, response_format_json, variables_json, status) VALUES ('p', '1', ?, ?, ?, 'active')")
        .bind(r#"[{"role":"system","content":"只说中文"},{"role":"user","content":"{{Q}}"}]"#)
        .bind(r#"{"type":"json_object"}"#)
        .bind(r#"{"Q":"总结一下"}"#)
        .execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO ai_param_profile (name, params_json, is_active) VALUES ('pp', ?, 1)")
        .bind(r#"{"TEMPERATURE": 0.7, "MAX_TOKENS": 300, "JSON_SCHEMA_ENFORCE": true}"#)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ai_config (config_key, model_id, prompt_id, param_profile_id, is_active) VALUES ('legacy_key', 1, 1, 1, 1)")
        .execute(&pool).await.unwrap();
    pool.close().await;

    let settings = tdb.settings(&[("AI_PEPPER", v["pepper"].as_str().unwrap())]);
    let r = runner(&settings);
    let res = r
        .run_once(
            "legacy_key",
            &Variables::new(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    assert!(res.is_ok(), "{:?}", res.error);
    let req = &server.requests()[0];
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {}", v["plain"].as_str().unwrap())
    );
    assert_eq!(req.body["response_format"], json!({"type": "json_object"}));
    assert_eq!(req.body["messages"][1]["content"], "总结一下");
    let row = audit_row(&tdb, res.audit_id).await;
    assert_eq!(row["config_key"], "legacy_key");
    assert_eq!(row["http_status"], 200);
    r.store().close().await;
    tdb.cleanup().await;
}
