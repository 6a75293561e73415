//! The OpenAI-compatible API on `ai-runner serve`, over real sockets: a client speaking OpenAI's
//! protocol to the server, the server running configs and routes against OpenAI-protocol
//! providers on loopback ports, and the audit rows it leaves. The official SDKs' own tests are in
//! `openai_clients`.

use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner_tests::{Backend, RouteSpec, Seed, ServeServer, TestDb, fixture, seed, seed_route};
use serde_json::{Value, json};

/// A server over `tdb` and a provider answering `script`, for config `k`.
async fn one_config(tdb: &TestDb, script: Vec<Reply>) -> (ServeServer, ProviderServer) {
    let provider = ProviderServer::start(script).await.unwrap();
    seed(&tdb.db(), &Seed::text("k", &provider.url())).await;
    (ServeServer::start(&tdb.settings(&[])).await, provider)
}

async fn post(s: &ServeServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.base))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The `data:` payloads of an SSE body, `[DONE]` included, comments skipped.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn sse_fixture() -> Reply {
    Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: fixture("openai/chat-completions-stream-text-with-usage.recorded.sse").into_bytes(),
    }
}

#[tokio::test]
async fn a_chat_completion_runs_the_config_with_the_callers_turn_and_names_its_audit_row() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, provider) = one_config(&tdb, vec![Reply::content("晴天")]).await;
    let r = post(
        &s,
        &json!({"model": "k", "messages": [{"role": "user", "content": "明天呢？"}],
                "variables": {"TOPIC": "北京"}, "temperature": 0.3, "user": "u-1", "frobnicate": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let trace = header(&r, "x-ai-runner-trace-id");
    assert_eq!(header(&r, "x-request-id"), trace);
    assert_eq!(header(&r, "x-ai-runner-config"), "k");
    let audit_id: i64 = header(&r, "x-ai-runner-audit-ids").parse().unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], trace.as_str());
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "demo-model");
    assert_eq!(body["choices"][0]["message"]["content"], "晴天");
    assert_eq!(body["usage"]["total_tokens"], 20);
    // The provider got the config's rendered prompt, then the caller's message and fields;
    // a field outside the protocol's list was not passed on.
    let sent = &provider.requests()[0].body;
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "说一句话：北京"}, {"role": "user", "content": "明天呢？"}])
    );
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["user"], "u-1");
    assert!(sent.get("frobnicate").is_none());
    let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], audit_id);
    assert_eq!(rows[0]["trigger_source"], "serve");
    assert_eq!(rows[0]["source_ip"], "127.0.0.1");
}

#[tokio::test]
async fn a_stream_relays_the_providers_chunks_under_the_trace_id_and_ends_with_usage_when_asked() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, provider) = one_config(&tdb, vec![sse_fixture()]).await;
    for include_usage in [true, false] {
        let r = post(
            &s,
            &json!({"model": "k", "messages": [], "stream": true,
                    "stream_options": {"include_usage": include_usage}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "text/event-stream");
        let trace = header(&r, "x-ai-runner-trace-id");
        let text = r.text().await.unwrap();
        let ev = events(&text);
        assert_eq!(ev.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = ev[..ev.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == trace.as_str() && c["object"] == "chat.completion.chunk")
        );
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            content,
            "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app."
        );
        let last = chunks.last().unwrap();
        if include_usage {
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["completion_tokens"], 30);
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{text}");
        }
        // The trailer comment names the audit row; the row has the tokens and the TTFT.
        assert!(text.contains(": ai-runner trace_id="), "{text}");
        let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["status"], "ok");
        assert_eq!(rows[0]["completion_tokens"], 30);
        assert!(!rows[0]["ttft_ms"].is_null(), "{:?}", rows[0]);
    }
    // The provider is always asked for usage, whatever the caller wanted.
    for req in provider.requests() {
        assert_eq!(req.body["stream"], true);
        assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
    }
}

#[tokio::test]
async fn a_stream_from_a_provider_that_answers_whole_is_cut_into_chunks() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, _p) = one_config(&tdb, vec![Reply::content("整段回答")]).await;
    let r = post(
        &s,
        &json!({"model": "k", "messages": [], "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ev = events(&r.text().await.unwrap());
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "整段回答");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[2]["usage"]["total_tokens"], 20);
}

#[tokio::test]
async fn a_tool_call_is_an_answer_passed_through_unchanged() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let calls = json!([{"id": "call_abc", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]);
    let answer = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}});
    let (s, provider) = one_config(
        &tdb,
        vec![Reply::Json {
            status: 200,
            body: answer,
            headers: Vec::new(),
        }],
    )
    .await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r = post(
        &s,
        &json!({"model": "k", "messages": [{"role": "user", "content": "weather?"}],
                "tools": tools, "tool_choice": "auto"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["tool_calls"], calls);
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(provider.requests()[0].body["tools"], tools);
    assert_eq!(provider.requests()[0].body["tool_choice"], "auto");
}

#[tokio::test]
async fn refusals_are_openai_error_objects_with_our_code_and_nothing_is_called() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, provider) = one_config(&tdb, vec![Reply::content("x")]).await;
    let strict = ProviderServer::start(vec![Reply::content("x")])
        .await
        .unwrap();
    let strict_url = strict.url();
    let mut only_temp = Seed::text("only-temp", &strict_url);
    only_temp.params = Some(json!({"CALLER_PARAMS": ["temperature"], "ALLOW_STREAM": false}));
    seed(&tdb.db(), &only_temp).await;
    let cases = [
        (
            json!({"model": "nope", "messages": []}),
            404,
            "CONFIG_NOT_FOUND",
            Some("model"),
        ),
        (
            json!({"model": "route:shop/none", "messages": []}),
            404,
            "ROUTE_NOT_FOUND",
            Some("model"),
        ),
        (
            json!({"model": "k", "messages": [{"content": "no role"}]}),
            400,
            "INVALID_INPUT",
            Some("messages[0].role"),
        ),
        (
            json!({"model": "k"}),
            400,
            "INVALID_INPUT",
            Some("messages"),
        ),
        (
            json!({"model": "only-temp", "messages": [], "seed": 7}),
            400,
            "PARAM_NOT_ALLOWED",
            None,
        ),
        (
            json!({"model": "only-temp", "messages": [], "stream": true}),
            400,
            "PARAM_NOT_ALLOWED",
            None,
        ),
    ];
    for (body, status, code, param) in cases {
        let r = post(&s, &body).await;
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if let Some(p) = param {
            assert_eq!(e["error"]["param"], p, "{e}");
        }
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = "x".repeat(9 * 1024 * 1024);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(provider.requests().is_empty());
    assert!(strict.requests().is_empty());
    // Refused by the profile after the config was resolved: audited, never sent.
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 2);
}

#[tokio::test]
async fn a_provider_rate_limit_is_a_429_with_retry_after_and_a_dead_provider_a_502() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let provider = ProviderServer::start(vec![Reply::error(429, "slow down")])
        .await
        .unwrap();
    let down = ProviderServer::start(vec![Reply::error(503, "down")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("limited", &provider.url())).await;
    seed(&tdb.db(), &Seed::text("down", &down.url())).await;
    let s = ServeServer::start(&tdb.settings(&[("AI_MAX_RETRIES", "0")])).await;
    let r = post(&s, &json!({"model": "limited", "messages": []})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    assert!(!header(&r, "x-ai-runner-audit-ids").is_empty());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "HTTP_429_RATE_LIMIT");
    let r = post(&s, &json!({"model": "down", "messages": []})).await;
    assert_eq!(r.status(), 502);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "server_error");
}

#[tokio::test]
async fn a_route_fails_over_before_the_first_byte_and_names_every_row() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let bad = ProviderServer::start(vec![Reply::error(503, "down")])
        .await
        .unwrap();
    let good = ProviderServer::start(vec![sse_fixture(), Reply::content("备用")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("primary", &bad.url())).await;
    seed(&tdb.db(), &Seed::text("backup", &good.url())).await;
    seed_route(
        &tdb.db(),
        "shop",
        "ask",
        &RouteSpec::default(),
        &[("primary", 1, 1), ("backup", 2, 1)],
    )
    .await;
    let s = ServeServer::start(&tdb.settings(&[("AI_MAX_RETRIES", "0")])).await;
    let r = post(
        &s,
        &json!({"model": "route:shop/ask", "messages": [], "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let trace = header(&r, "x-ai-runner-trace-id");
    let text = r.text().await.unwrap();
    assert!(text.contains("config=backup"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
    let keys: Vec<&str> = rows
        .iter()
        .map(|r| r["config_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["primary", "backup"]);
    // The same, buffered.
    let r = post(&s, &json!({"model": "route:shop/ask", "messages": []})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ai-runner-config"), "backup");
    assert_eq!(header(&r, "x-ai-runner-route"), "shop/ask");
    assert_eq!(header(&r, "x-ai-runner-audit-ids").split(',').count(), 2);
}

#[tokio::test]
async fn a_caller_that_disconnects_mid_stream_leaves_a_row_saying_so() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let events: Vec<Value> = (0..100)
        .map(|i| json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": {"content": format!("{i} ")}, "finish_reason": null}]}))
        .collect();
    let (s, provider) = one_config(
        &tdb,
        vec![Reply::Trickle {
            events,
            every: Duration::from_millis(30),
        }],
    )
    .await;
    let mut r = post(&s, &json!({"model": "k", "messages": [], "stream": true})).await;
    let trace = header(&r, "x-ai-runner-trace-id");
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(r);
    // The run goes on without its caller until the provider's next chunk, then is audited.
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rows.len(), 1, "no audit row for the abandoned stream");
    assert_eq!(
        rows[0]["error_code"], "CLIENT_DISCONNECTED",
        "{:?}",
        rows[0]
    );
    assert_eq!(provider.requests().len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn models_lists_configs_and_routes_and_health_answers() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, _p) = one_config(&tdb, vec![Reply::content("x")]).await;
    seed_route(
        &tdb.db(),
        "shop",
        "ask",
        &RouteSpec::default(),
        &[("k", 1, 1)],
    )
    .await;
    let list: Value = reqwest::get(format!("{}/v1/models", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k", "route:shop/ask"]);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );
    let h = reqwest::get(format!("{}/health", s.base)).await.unwrap();
    assert_eq!(h.status(), 200);
    let r = reqwest::get(format!("{}/v2/nothing", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_json_api_answers_as_the_functions_do() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, _p) = one_config(&tdb, vec![Reply::content("好")]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/run-once", s.base))
        .json(&json!({"config_key": "k", "variables": {"TOPIC": "茶"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["content"], "好");
    let r = http
        .post(format!("{}/run-once", s.base))
        .json(&json!({"config_key": "k", "misspelt": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/run-route", s.base))
        .json(&json!({"project": "none", "route_key": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn shutdown_waits_for_the_call_in_flight_and_its_audit_row() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (s, p) = one_config(
        &tdb,
        vec![Reply::Delayed(
            Duration::from_millis(400),
            Box::new(Reply::content("慢")),
        )],
    )
    .await;
    let base = s.base.clone();
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "k", "messages": []}))
            .send()
            .await
            .unwrap()
            .status()
    });
    // Once the call has reached the provider, stop the server.
    for _ in 0..200 {
        if !p.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(p.requests().len(), 1);
    s.shutdown().await;
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 1);
    assert_eq!(call.await.unwrap(), 200);
}

/// The functions answer the same protocol, whole: API Gateway (and a buffered Function URL)
/// cannot stream, so a streaming caller gets the whole SSE stream at once.
mod on_the_functions {
    use super::*;
    use ai_runner::app::App;
    use ai_runner::function::{Call, Function};
    use ai_runner_tests::api_event;

    fn body_of(resp: &Value) -> String {
        resp["body"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn an_api_gateway_event_to_v1_chat_completions_is_answered_in_openais_shape() {
        let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
        let provider = ProviderServer::start(vec![Reply::content("晴天"), sse_fixture()])
            .await
            .unwrap();
        seed(&tdb.db(), &Seed::text("k", &provider.url())).await;
        let app = App::new(&tdb.settings(&[])).unwrap();
        let ev = api_event(
            "/v1/chat/completions",
            &json!({"model": "k", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            &[],
            "203.0.113.9",
        );
        let resp = Function::RunOnce
            .handle(&app, ev, Call::default())
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200, "{resp}");
        let trace = resp["headers"]["x-ai-runner-trace-id"]
            .as_str()
            .unwrap()
            .to_owned();
        let body: Value = serde_json::from_str(&body_of(&resp)).unwrap();
        assert_eq!(body["id"], trace.as_str());
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], "晴天");
        let rows = tdb.db().audit_rows_for_trace(&trace).await.unwrap();
        assert_eq!(rows[0]["trigger_source"], "apigw");
        assert_eq!(rows[0]["source_ip"], "203.0.113.9");
        // A streaming caller gets the stream whole.
        let ev = api_event(
            "/v1/chat/completions",
            &json!({"model": "k", "messages": [], "stream": true,
                    "stream_options": {"include_usage": true}})
            .to_string(),
            &[],
            "203.0.113.9",
        );
        let resp = Function::RunRoute
            .handle(&app, ev, Call::default())
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200, "{resp}");
        assert_eq!(resp["headers"]["content-type"], "text/event-stream");
        let text = body_of(&resp);
        let ev = events(&text);
        assert_eq!(ev.last().unwrap(), "[DONE]");
        let usage: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 30);
    }

    #[tokio::test]
    async fn errors_and_models_on_the_functions_are_openais_too() {
        let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
        let provider = ProviderServer::start(vec![Reply::content("x")])
            .await
            .unwrap();
        seed(&tdb.db(), &Seed::text("k", &provider.url())).await;
        let app = App::new(&tdb.settings(&[])).unwrap();
        let ev = api_event(
            "/prod/v1/chat/completions",
            &json!({"model": "nope", "messages": []}).to_string(),
            &[],
            "203.0.113.9",
        );
        let resp = Function::RunOnce
            .handle(&app, ev, Call::default())
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 404);
        let e: Value = serde_json::from_str(&body_of(&resp)).unwrap();
        assert_eq!(e["error"]["code"], "CONFIG_NOT_FOUND");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        let mut ev = api_event("/v1/models", "", &[], "203.0.113.9");
        ev["requestContext"]["http"]["method"] = json!("GET");
        let resp = Function::RunOnce
            .handle(&app, ev, Call::default())
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200, "{resp}");
        let list: Value = serde_json::from_str(&body_of(&resp)).unwrap();
        assert_eq!(list["data"][0]["id"], "k");
        assert!(provider.requests().is_empty());
    }

    #[tokio::test]
    async fn a_bearer_key_is_checked_before_anything_runs() {
        let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
        let provider = ProviderServer::start(vec![Reply::content("x")])
            .await
            .unwrap();
        seed(&tdb.db(), &Seed::text("k", &provider.url())).await;
        let app = App::new(&tdb.settings(&[("ACCESS_MODE", "bearer")])).unwrap();
        let body = json!({"model": "k", "messages": []}).to_string();
        let cases = [
            (vec![], "AUTH_TOKEN_MISSING"),
            (
                vec![(
                    "authorization".to_owned(),
                    format!("Bearer air-ak_nobody-{}", "0".repeat(64)),
                )],
                "AUTH_TOKEN_INVALID",
            ),
        ];
        for (headers, code) in cases {
            let ev = api_event("/v1/chat/completions", &body, &headers, "203.0.113.9");
            let resp = Function::RunOnce
                .handle(&app, ev, Call::default())
                .await
                .unwrap();
            assert_eq!(resp["statusCode"], 401, "{resp}");
            let e: Value = serde_json::from_str(&body_of(&resp)).unwrap();
            assert_eq!(e["error"]["code"], code);
            assert_eq!(e["error"]["type"], "authentication_error");
        }
        assert!(provider.requests().is_empty());
        assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 0);
    }
}
