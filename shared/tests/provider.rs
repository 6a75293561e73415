//! The HTTP provider client against an OpenAI-protocol server on a loopback port: retries,
//! backoff, Retry-After, timeouts, refused connections, bad bodies and SSE, over real HTTP.

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use ai_runner::Secret;
use ai_runner::config::HttpSettings;
use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::ports::{Exchange, Provider, ProviderRequest};
use ai_runner::provider::HttpProvider;
use serde_json::{Map, Value, json};

fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(5),
        max_retries: 2,
        retry_base: Duration::from_millis(1),
        retry_jitter: 0.0,
        retry_after_cap: Duration::from_secs(20),
    }
}

fn body() -> Map<String, Value> {
    json!({"model": "m", "messages": [{"role": "user", "content": "你好"}], "temperature": 0.1})
        .as_object()
        .cloned()
        .unwrap()
}

async fn send(p: &HttpProvider, url: &str, stream: bool) -> Exchange {
    let key = Secret::new("sk-provider-test-key");
    let body = body();
    p.send(ProviderRequest {
        url,
        api_key: &key,
        body: &body,
        trace_id: "0123456789abcdef0123456789abcdef",
        stream,
    })
    .await
}

fn code(ex: &Exchange) -> Option<&'static str> {
    ex.error.as_ref().map(|e| e.code().as_str())
}

#[tokio::test]
async fn a_success_is_one_attempt_with_headers_and_body_in_wire_order() {
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), None);
    assert_eq!((ex.attempts, ex.http_status), (1, 200));
    assert_eq!(ex.body.unwrap()["choices"][0]["message"]["content"], "好");
    let req = &server.requests()[0];
    assert_eq!(req.headers["authorization"], "Bearer sk-provider-test-key");
    assert_eq!(
        req.headers["x-trace-id"],
        "0123456789abcdef0123456789abcdef"
    );
    assert!(req.headers["content-type"].starts_with("application/json"));
    let m = req.body_text.find("\"model\"").unwrap();
    let msgs = req.body_text.find("\"messages\"").unwrap();
    let t = req.body_text.find("\"temperature\"").unwrap();
    assert!(m < msgs && msgs < t, "{}", req.body_text);
}

#[tokio::test]
async fn a_429_then_200_is_retried_with_the_same_trace_id() {
    let server = ProviderServer::start(vec![Reply::error(429, "slow down"), Reply::content("好")])
        .await
        .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), None);
    assert_eq!(ex.attempts, 2);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].headers["x-trace-id"], reqs[1].headers["x-trace-id"]);
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let limited = Reply::Json {
        status: 429,
        body: json!({"error": {"message": "later"}}),
        headers: vec![("retry-after".into(), "1".into())],
    };
    let server = ProviderServer::start(vec![limited.clone(), Reply::content("好")])
        .await
        .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), None);
    assert_eq!(ex.attempts, 2);
    assert!(ex.provider_ms >= 1000, "waited only {} ms", ex.provider_ms);

    let huge = Reply::Json {
        status: 429,
        body: json!({}),
        headers: vec![("retry-after".into(), "3600".into())],
    };
    let server = ProviderServer::start(vec![huge, Reply::content("好")])
        .await
        .unwrap();
    let capped = HttpSettings {
        retry_after_cap: Duration::from_millis(10),
        ..settings()
    };
    let ex = send(&HttpProvider::new(capped).unwrap(), &server.url(), false).await;
    assert_eq!(code(&ex), None);
    assert!(ex.provider_ms < 3_600_000);
}

#[tokio::test]
async fn server_errors_are_retried_until_exhausted() {
    let server = ProviderServer::start(vec![Reply::error(502, "bad gateway")])
        .await
        .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), Some("HTTP_5XX_SERVER_ERROR"));
    assert_eq!((ex.attempts, ex.http_status), (3, 502));
    assert_eq!(server.requests().len(), 3);
    assert!(ex.error.unwrap().to_string().contains("bad gateway"));
    assert_eq!(ex.body.unwrap()["error"]["message"], "bad gateway");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = ProviderServer::start(vec![Reply::error(401, "invalid key sk-provider-test-key")])
        .await
        .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), Some("HTTP_STATUS_ERROR"));
    assert_eq!(ex.attempts, 1);
    let e = ex.error.unwrap().to_string();
    assert!(!e.contains("sk-provider-test-key"), "{e}");
    assert!(
        !ex.body
            .unwrap()
            .to_string()
            .contains("sk-provider-test-key")
    );
}

#[tokio::test]
async fn a_slow_provider_times_out_on_every_attempt() {
    let server = ProviderServer::start(vec![Reply::Delayed(
        Duration::from_secs(3),
        Box::new(Reply::content("迟")),
    )])
    .await
    .unwrap();
    let s = HttpSettings {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..settings()
    };
    let ex = send(&HttpProvider::new(s).unwrap(), &server.url(), false).await;
    assert_eq!(code(&ex), Some("NETWORK_TIMEOUT"));
    assert_eq!((ex.attempts, ex.http_status), (2, 0));
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    drop(l);
    let ex = send(&HttpProvider::new(settings()).unwrap(), &url, false).await;
    assert_eq!(code(&ex), Some("NETWORK_ERROR"));
    assert_eq!((ex.attempts, ex.http_status), (3, 0));
}

#[tokio::test]
async fn a_non_json_200_is_a_bad_response_and_not_retried() {
    let server = ProviderServer::start(vec![Reply::Raw {
        status: 200,
        content_type: "text/plain".into(),
        body: b"OK".to_vec(),
    }])
    .await
    .unwrap();
    let ex = send(
        &HttpProvider::new(settings()).unwrap(),
        &server.url(),
        false,
    )
    .await;
    assert_eq!(code(&ex), Some("BAD_PROVIDER_RESPONSE"));
    assert_eq!(ex.attempts, 1);
}

#[tokio::test]
async fn the_recorded_sse_stream_is_assembled_byte_for_byte() {
    let sse = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/openai/chat-completions-stream-text-with-usage.recorded.sse"
    ))
    .unwrap();
    let server = ProviderServer::start(vec![Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: sse,
    }])
    .await
    .unwrap();
    let ex = send(&HttpProvider::new(settings()).unwrap(), &server.url(), true).await;
    assert_eq!(code(&ex), None);
    let b = ex.body.unwrap();
    let content = b["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app."
    );
    assert_eq!(b["usage"]["prompt_tokens"], 14);
    assert_eq!(b["usage"]["completion_tokens"], 30);
    assert!(ex.ttft_ms.is_some());
}
