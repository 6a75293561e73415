//! The built `run-once` binary as a process: under a Lambda Runtime API served by the test, and
//! in Alibaba Function Compute mode over HTTP, fed the fixture events.

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
    Outcome, RuntimeApi, free_port, lambda_env, spawn, stdout_of, wait_listening,
};
use ai_runner_tests::{Backend, PEPPER, Seed, TestDb, app_env, fixture_json, seed};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_run-once");

async fn setup() -> (TestDb, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("你好")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("greet", &server.url())).await;
    (tdb, server)
}

fn http_event(fixture: &str, body: &Value) -> Value {
    let mut ev = fixture_json(fixture);
    ev["body"] = json!(body.to_string());
    ev["isBase64Encoded"] = json!(false);
    ev
}

#[tokio::test]
async fn the_binary_serves_invocations_from_the_lambda_runtime_api() {
    let (tdb, _server) = setup().await;
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-once");
    env.extend(app_env(&tdb));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(
        api.wait_ready(Duration::from_secs(20)).await,
        "the function never polled /next"
    );

    let ok = api
        .invoke(http_event(
            "aws/apigw/http-v2-post-json-body.json",
            &json!({"config_key": "greet"}),
        ))
        .await;
    let Outcome::Response(resp) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["content"], "你好");

    let v1 = api
        .invoke(http_event(
            "aws/apigw/rest-v1-proxy-post-json-body.json",
            &json!({"config_key": "missing"}),
        ))
        .await;
    let Outcome::Response(resp) = v1 else {
        panic!("{v1:?}")
    };
    assert_eq!(resp["statusCode"], 404);

    let direct = api
        .invoke(json!({"config_key": "greet", "variables": {"TOPIC": "海"}}))
        .await;
    let Outcome::Response(resp) = direct else {
        panic!("{direct:?}")
    };
    assert_eq!(resp["status"], "ok");
    let row = tdb
        .db()
        .audit_row(resp["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        row["request_id"].as_str().unwrap().starts_with("req-"),
        "the runtime's request id is audited: {row:?}"
    );

    let failed = api.invoke(json!({"config_key": "missing"})).await;
    let Outcome::Error { body, .. } = failed else {
        panic!("{failed:?}")
    };
    assert_eq!(body["errorType"], "CONFIG_NOT_FOUND");
    let bad = api
        .invoke(fixture_json("aws/eventbridge/scheduled-event-docs.json"))
        .await;
    let Outcome::Error { body, .. } = bad else {
        panic!("{bad:?}")
    };
    assert_eq!(body["errorType"], "INVALID_INPUT");

    assert!(
        api.next_count() >= 5,
        "one warm process served every invocation"
    );
    let logs = stdout_of(proc_).await;
    assert!(
        logs.lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok()),
        "JSON log lines: {logs}"
    );
    assert!(!logs.contains(PEPPER));
}

#[tokio::test]
async fn a_broken_configuration_is_reported_as_an_init_error_with_its_code() {
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-once");
    env.push(("MYSQL_HOST".into(), "db.internal".into()));
    let mut proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    let status = tokio::time::timeout(Duration::from_secs(20), proc_.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let err = api.init_error().expect("init error reported");
    assert_eq!(err["errorType"], "CONFIG_MISSING");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("MYSQL_AI_DATABASE")
    );
}

#[tokio::test]
async fn in_function_compute_mode_the_binary_answers_invoke_over_http() {
    let (tdb, _server) = setup().await;
    let port = free_port();
    let mut env = app_env(&tdb);
    env.push(("FC_SERVER_PORT".into(), port.to_string()));
    env.push(("FC_FUNCTION_NAME".into(), "run-once".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(wait_listening(port, Duration::from_secs(20)).await);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let init = client
        .post(format!("{base}/initialize"))
        .header("x-fc-control-path", "/initialize")
        .header("x-fc-request-id", "fc-init-1")
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);

    let ok = client
        .post(format!("{base}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("content-type", "application/octet-stream")
        .header("x-fc-request-id", "fc-req-ok-42")
        .body(json!({"config_key": "greet"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-fc-status"], "200");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["content"], "你好");
    let row = tdb
        .db()
        .audit_row(body["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["request_id"], "fc-req-ok-42");

    let failed = client
        .post(format!("{base}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("x-fc-request-id", "fc-req-missing-7")
        .body(json!({"config_key": "missing"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 404);
    assert_eq!(failed.headers()["x-fc-status"], "404");
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["errorType"], "CONFIG_NOT_FOUND");

    let garbage = client
        .post(format!("{base}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("x-fc-request-id", "fc-test-invoke")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 404);
    // FC takes synchronous payloads up to 32 MB (inline media): a 3 MiB event is read and
    // answered in FC's contract, not refused by the runtime's own body limit.
    let big = json!({"config_key": "missing", "variables": {"TOPIC": "长".repeat(1024 * 1024)}});
    let large = client
        .post(format!("{base}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("x-fc-request-id", "fc-req-large")
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(large.headers()["x-fc-status"], "404");
    let body: Value = large.json().await.unwrap();
    assert_eq!(body["errorType"], "CONFIG_NOT_FOUND");
    let logs = stdout_of(proc_).await;
    assert!(
        logs.lines().any(|l| l.contains("fc-req-missing-7")),
        "log lines carry the FC request id: {logs}"
    );
}

#[tokio::test]
async fn a_hanging_provider_ends_at_the_function_deadline_with_its_audit_row() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let hanging = ProviderServer::start(vec![Reply::Delayed(
        Duration::from_secs(60),
        Box::new(Reply::content("太迟了")),
    )])
    .await
    .unwrap();
    seed(&tdb.db(), &Seed::text("slow", &hanging.url())).await;
    let api = RuntimeApi::start().await;
    api.set_function_timeout(Duration::from_secs(4));
    let mut env = lambda_env(&api, "run-once");
    env.extend(app_env(&tdb));
    // Without a deadline this would take 3 attempts x 20 s.
    env.push(("AI_TIMEOUT".into(), "20".into()));
    env.push(("AI_DEADLINE_RESERVE_MS".into(), "1000".into()));
    let _p = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let sent = std::time::Instant::now();
    let out = api.invoke(json!({"config_key": "slow"})).await;
    let answered_after = sent.elapsed();
    let Outcome::Error { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["errorType"], "DEADLINE_EXCEEDED", "{body}");
    assert!(
        answered_after < Duration::from_secs(4),
        "answered before the platform's deadline: {answered_after:?}"
    );
    assert_eq!(hanging.requests().len(), 1, "no retry was started");
    let db = tdb.db();
    let rows = db.count("ai_call_logs").await.unwrap();
    assert_eq!(rows, 1);
    let row = db.audit_row(1).await.unwrap().unwrap();
    assert_eq!(row["error_code"], "DEADLINE_EXCEEDED");
    assert_eq!(row["config_key"], "slow");
    db.close().await;
}

#[tokio::test]
async fn on_function_compute_an_http_trigger_request_must_be_signed_by_default() {
    use ai_runner::model::access::KeyOwner;
    use ai_runner::store::access::NewKey;
    use ai_runner_tests::{keyring, python_sign};

    let (tdb, server) = setup().await;
    let owner = KeyOwner::User("ops".into());
    let (ak, sk) = tdb
        .db()
        .create_access_key(&keyring(), &NewKey::new(owner))
        .await
        .unwrap();
    let port = free_port();
    let mut env = app_env(&tdb);
    env.push(("FC_SERVER_PORT".into(), port.to_string()));
    env.push(("FC_FUNCTION_NAME".into(), "run-once".into()));
    // FC's gateway appends the client's address: one trusted hop.
    env.push(("ACCESS_TRUSTED_PROXY_HOPS".into(), "1".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(wait_listening(port, Duration::from_secs(20)).await);
    let url = format!("http://127.0.0.1:{port}/run-once");
    let client = reqwest::Client::new();

    // The client requests the function's URL directly; the custom runtime gets the request.
    let unsigned = client
        .post(&url)
        .header("x-fc-control-path", "/http-invoke")
        .header("x-fc-request-id", "fc-http-1")
        .body(json!({"config_key": "greet"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: Value = unsigned.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AUTH_MISSING");
    assert!(server.requests().is_empty());

    let signed = python_sign(
        &ak,
        sk.expose(),
        &json!({"config_key": "greet"}),
        None,
        None,
        "/run-once",
    );
    // A client of the trigger that asks for the event path is still an HTTP caller.
    let sneaky = client
        .post(format!("http://127.0.0.1:{port}/invoke"))
        .header("x-fc-request-id", "fc-test-invoke")
        .header("x-fc-control-path", "/http-invoke")
        .body(json!({"config_key": "greet"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), 401);
    assert!(server.requests().is_empty());
    // A control path is the platform's only beside FC's own request id, and only once: a client
    // that forges one (or sends two) is an HTTP caller, not an event invocation.
    for forged in [
        vec![("x-fc-control-path", "/invoke")],
        vec![
            ("x-fc-control-path", "/invoke"),
            ("x-fc-control-path", "/invoke"),
            ("x-fc-request-id", "fc-forged"),
        ],
    ] {
        let mut req = client.post(format!("http://127.0.0.1:{port}/invoke"));
        for (k, v) in forged {
            req = req.header(k, v);
        }
        let r = req
            .body(json!({"config_key": "greet"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "a forged event invocation is refused");
    }
    assert!(server.requests().is_empty());

    let mut req = client
        .post(&url)
        .header("x-fc-control-path", "/http-invoke")
        .header("x-fc-request-id", "fc-http-2")
        // The client wrote the first address; FC's gateway appended the last.
        .header("x-forwarded-for", "10.9.9.9, 198.51.100.20")
        .body(signed.body.clone());
    for (k, v) in signed.v2_headers() {
        req = req.header(k, v);
    }
    let ok = req.send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["content"], "你好");
    let row = tdb
        .db()
        .audit_row(body["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["caller_key"], ak.as_str());
    assert_eq!(row["source_ip"], "198.51.100.20");
    assert_eq!(row["request_id"], "fc-http-2");
    assert_eq!(row["trigger_source"], "http");
    let logs = stdout_of(proc_).await;
    assert!(!logs.contains(sk.expose()) && !logs.contains(PEPPER));
}

#[tokio::test]
async fn under_the_runtime_api_signed_api_gateway_calls_are_admitted_or_refused_with_their_status()
{
    use ai_runner::model::access::KeyOwner;
    use ai_runner::store::access::NewKey;
    use ai_runner_tests::{api_event, keyring, python_sign};

    let (tdb, server) = setup().await;
    let db = tdb.db();
    let owner = KeyOwner::User("ops".into());
    let new = |rps: Option<u32>, ips: Vec<String>| NewKey {
        rps_limit: rps,
        allow_ips: ips,
        ..NewKey::new(owner.clone())
    };
    let (ak, sk) = db
        .create_access_key(&keyring(), &new(None, vec![]))
        .await
        .unwrap();
    let (off_ak, off_sk) = db
        .create_access_key(&keyring(), &new(None, vec![]))
        .await
        .unwrap();
    db.set_access_key_status(&off_ak, false).await.unwrap();
    let (fenced_ak, fenced_sk) = db
        .create_access_key(&keyring(), &new(None, vec!["10.0.0.0/8".into()]))
        .await
        .unwrap();
    let (slow_ak, slow_sk) = db
        .create_access_key(&keyring(), &new(Some(1), vec![]))
        .await
        .unwrap();
    db.close().await;

    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-once");
    env.extend(app_env(&tdb));
    env.push(("ACCESS_MODE".into(), "hmac".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let body = json!({"config_key": "greet", "variables": {"TOPIC": "山"}});
    let event = |ak: &str, sk: &str, ts: Option<i64>| {
        let s = python_sign(ak, sk, &body, ts, None, "/run-once");
        api_event("/run-once", &s.body, &s.headers, "203.0.113.9")
    };
    let answer = |o: Outcome| match o {
        Outcome::Response(r) => {
            let b: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (
                r["statusCode"].as_u64().unwrap(),
                b["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
        other @ (Outcome::Error { .. } | Outcome::Streamed { .. }) => panic!("{other:?}"),
    };

    assert_eq!(
        answer(api.invoke(event(&ak, sk.expose(), None)).await),
        (200, String::new())
    );
    let stale = Some(ai_runner::model::now_ms() / 1000 - 3600);
    assert_eq!(
        answer(api.invoke(event(&ak, sk.expose(), stale)).await),
        (401, "AUTH_TIMESTAMP_SKEW".into())
    );
    assert_eq!(
        answer(api.invoke(event(&off_ak, off_sk.expose(), None)).await),
        (403, "AUTH_KEY_DISABLED".into())
    );
    assert_eq!(
        answer(
            api.invoke(event(&fenced_ak, fenced_sk.expose(), None))
                .await
        ),
        (403, "AUTH_IP_DENIED".into())
    );
    // One call per second: the second of two calls in the same second is refused. (Runtime API
    // invocations are sequential, so both land in one second when the first does early.)
    let first = event(&slow_ak, slow_sk.expose(), None);
    let second = event(&slow_ak, slow_sk.expose(), None);
    let ms = ai_runner::model::now_ms();
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(1_020 - ms % 1000).unwrap(),
    ))
    .await;
    assert_eq!(answer(api.invoke(first).await).0, 200);
    assert_eq!(
        answer(api.invoke(second).await),
        (429, "RATE_LIMITED".into())
    );

    assert_eq!(
        server.requests().len(),
        2,
        "only admitted calls reach the provider"
    );
    let logs = stdout_of(proc_).await;
    for secret in [
        sk.expose(),
        off_sk.expose(),
        fenced_sk.expose(),
        slow_sk.expose(),
        PEPPER,
    ] {
        assert!(!logs.contains(secret), "a secret in the logs");
    }
}

#[tokio::test]
async fn on_function_compute_an_openai_stream_is_relayed_as_the_provider_sends_it() {
    use ai_runner::model::access::{KeyForm, KeyOwner};
    use ai_runner::store::access::NewKey;
    use ai_runner_tests::keyring;

    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": {"content": format!("{i} ")}, "finish_reason": null}]}))
        .collect();
    let server = ProviderServer::start(vec![Reply::Trickle {
        events,
        every: Duration::from_millis(100),
    }])
    .await
    .unwrap();
    seed(&tdb.db(), &Seed::text("greet", &server.url())).await;
    let key = NewKey {
        form: KeyForm::Bearer,
        ..NewKey::new(KeyOwner::User("sdk".into()))
    };
    let (_, token) = tdb.db().create_access_key(&keyring(), &key).await.unwrap();
    let port = free_port();
    let mut env = app_env(&tdb);
    env.push(("FC_SERVER_PORT".into(), port.to_string()));
    env.push(("FC_FUNCTION_NAME".into(), "run-once".into()));
    env.push(("ACCESS_MODE".into(), "bearer".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(wait_listening(port, Duration::from_secs(20)).await);
    let mut resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .header("x-fc-control-path", "/http-invoke")
        .header("authorization", format!("Bearer {}", token.expose()))
        .body(json!({"model": "greet", "messages": [], "stream": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let trace = resp.headers()["x-ai-runner-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // The first chunk arrives while the provider is still streaming: the run has no row yet.
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: {"),
        "{first:?}"
    );
    assert!(
        tdb.db()
            .audit_rows_for_trace(&trace)
            .await
            .unwrap()
            .is_empty()
    );
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    assert!(rest.contains("\"19 \""), "{rest}");
    let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[0]["trigger_source"], "http");
    let logs = stdout_of(proc_).await;
    assert!(!logs.contains(token.expose()));
}

/// A Function URL event to `path` carrying `body`, as a RESPONSE_STREAM URL sends it.
fn function_url_event(path: &str, body: &Value) -> Value {
    let mut ev = http_event(
        "aws/apigw/function-url-v2-post-isBase64Encoded-true.json",
        body,
    );
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev
}

#[tokio::test]
async fn behind_a_streaming_function_url_an_openai_stream_is_a_lambda_response_stream() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": {"content": format!("{i} ")}, "finish_reason": null}]}))
        .collect();
    let server = ProviderServer::start(vec![
        Reply::Trickle {
            events,
            every: Duration::from_millis(100),
        },
        Reply::content("你好"),
    ])
    .await
    .unwrap();
    seed(&tdb.db(), &Seed::text("greet", &server.url())).await;
    let api = RuntimeApi::start().await;
    let mut env = lambda_env(&api, "run-once");
    env.extend(app_env(&tdb));
    env.push(("FUNCTION_URL_STREAMING".into(), "true".into()));
    let proc_ = spawn(Path::new(BIN), Path::new("/"), &env);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let id = api.push(function_url_event(
        "/v1/chat/completions",
        &json!({"model": "greet", "messages": [], "stream": true}),
    ));
    // The first chunk reaches the Runtime API while the provider is still streaming.
    assert!(api.stream_started(&id, Duration::from_secs(20)).await);
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 0);
    let Outcome::Streamed { prelude, body } = api.outcome(&id, Duration::from_secs(30)).await
    else {
        panic!("not streamed")
    };
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream");
    let trace = prelude["headers"]["x-ai-runner-trace-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.starts_with("data: {"), "{body}");
    assert!(
        body.contains("\"19 \"") && body.ends_with("data: [DONE]\n\n"),
        "{body}"
    );
    let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
    assert_eq!((rows.len(), rows[0]["status"].as_str()), (1, Some("ok")));

    // Every other answer through the URL is one piece of a response stream.
    let id = api.push(function_url_event(
        "/run-once",
        &json!({"config_key": "greet"}),
    ));
    let Outcome::Streamed { prelude, body } = api.outcome(&id, Duration::from_secs(30)).await
    else {
        panic!("not streamed")
    };
    assert_eq!(prelude["statusCode"], 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["content"], "你好");
    // API Gateway's events are still answered buffered.
    let ok = api
        .invoke(http_event(
            "aws/apigw/http-v2-post-json-body.json",
            &json!({"config_key": "greet"}),
        ))
        .await;
    assert!(
        matches!(ok, Outcome::Response(ref r) if r["statusCode"] == 200),
        "{ok:?}"
    );
    drop(proc_);
}

/// The official OpenAI SDKs against the bootstrap: behind a Function URL adaptor (Lambda, the
/// URL streaming) and on Function Compute's HTTP trigger, over the world `sdk` seeds. Two
/// bootstraps each: one open (as on loopback), one with `ACCESS_MODE=bearer`.
mod openai_sdks {
    use super::*;
    use ai_runner_tests::function_url::FunctionUrl;
    use ai_runner_tests::sdk::{self, SETTINGS};
    use std::sync::Arc;

    fn env_of(w: &sdk::World, mode: &str) -> Vec<(String, String)> {
        let mut env = app_env(&w.tdb);
        env.extend(
            SETTINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.push(("ACCESS_MODE".into(), mode.into()));
        env
    }

    async fn behind_urls(
        w: &sdk::World,
    ) -> Vec<(
        Arc<RuntimeApi>,
        FunctionUrl,
        ai_runner_tests::lambda_api::FunctionProcess,
    )> {
        let mut out = Vec::new();
        for mode in ["iam", "bearer"] {
            let api = Arc::new(RuntimeApi::start().await);
            let mut env = lambda_env(&api, "run-once");
            env.extend(env_of(w, mode));
            env.push(("FUNCTION_URL_STREAMING".into(), "true".into()));
            let p = spawn(Path::new(BIN), Path::new("/"), &env);
            assert!(api.wait_ready(Duration::from_secs(20)).await);
            let url = FunctionUrl::start(Arc::clone(&api)).await;
            out.push((api, url, p));
        }
        out
    }

    async fn on_fc(w: &sdk::World) -> Vec<(String, ai_runner_tests::lambda_api::FunctionProcess)> {
        let mut out = Vec::new();
        for mode in ["iam", "bearer"] {
            let port = free_port();
            let mut env = env_of(w, mode);
            env.push(("FC_SERVER_PORT".into(), port.to_string()));
            env.push(("FC_FUNCTION_NAME".into(), "run-once".into()));
            let p = spawn(Path::new(BIN), Path::new("/"), &env);
            assert!(wait_listening(port, Duration::from_secs(20)).await);
            out.push((format!("http://127.0.0.1:{port}/v1"), p));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs the openai packages (PyPI, and npm in target/npm): .ci/run installs them"]
    async fn the_openai_sdks_reach_the_bootstrap_through_a_streaming_function_url() {
        let w = sdk::world().await;
        let urls = behind_urls(&w).await;
        let (plain, bearer) = (
            format!("{}/v1", urls[0].1.base),
            format!("{}/v1", urls[1].1.base),
        );
        sdk::run(sdk::python(&w, &plain, &bearer), "openai-python").await;
        sdk::run(sdk::node(&w, &plain, &bearer), "openai-node").await;
        assert_eq!(w.limited_retry.requests().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs the openai packages (PyPI, and npm in target/npm): .ci/run installs them"]
    async fn the_openai_sdks_reach_the_bootstrap_on_function_compute() {
        let w = sdk::world().await;
        let fc = on_fc(&w).await;
        sdk::run(sdk::python(&w, &fc[0].0, &fc[1].0), "openai-python").await;
        sdk::run(sdk::node(&w, &fc[0].0, &fc[1].0), "openai-node").await;
        assert_eq!(w.limited_retry.requests().len(), 2);
    }
}
