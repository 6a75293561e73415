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
use ai_runner::ports::{Exchange, Provider, ProviderRequest, StreamTap};
use ai_runner::provider::HttpProvider;
use serde_json::{Map, Value, json};

fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(5),
        max_retries: 2,
        retry_base: Duration::from_millis(1),
        retry_jitter: 0.0,
        retry_after_cap: Duration::from_secs(20),
        max_response_bytes: 1024 * 1024,
        deadline_reserve: Duration::from_secs(2),
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
        deadline: None,
        tap: None,
        gate: None,
        hand_over: false,
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

/// A hostile stand-in speaking raw HTTP/1.1 over a loopback socket: for each connection it reads
/// the request, then writes `head` and, when `endless`, repeats `chunk` until the client goes.
async fn raw_server(head: Vec<u8>, chunk: Vec<u8>, endless: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (head, chunk) = (head.clone(), chunk.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by Content-Length.
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                if sock.write_all(&head).await.is_err() {
                    return;
                }
                if endless {
                    while sock.write_all(&chunk).await.is_ok() {}
                }
            });
        }
    });
    format!("http://{addr}/v1/chat/completions")
}

#[tokio::test]
async fn a_redirect_is_an_error_and_its_target_is_never_fetched() {
    // A stand-in for a metadata service: anything it answers would be a leak.
    let metadata = ProviderServer::start(vec![Reply::content("AccessKeySecret: fake-credential")])
        .await
        .unwrap();
    let target = format!(
        "{}/latest/meta-data/ram/security-credentials?x=1",
        metadata.url()
    );
    let p = HttpProvider::new(settings()).unwrap();
    for status in [301, 302, 303, 307, 308] {
        let provider = ProviderServer::start(vec![Reply::Json {
            status,
            body: json!({}),
            headers: vec![("location".into(), target.clone())],
        }])
        .await
        .unwrap();
        let ex = send(&p, &provider.url(), false).await;
        assert_eq!(code(&ex), Some("PROVIDER_REDIRECT"), "HTTP {status}");
        assert_eq!((ex.attempts, ex.http_status), (1, status), "not retried");
        assert!(
            ex.body.is_none(),
            "nothing of a redirect is kept as the answer"
        );
        let text = ex.error.unwrap().to_string();
        assert!(text.contains("127.0.0.1"), "names the origin: {text}");
        assert!(!text.contains("meta-data"), "never the path: {text}");
        assert_eq!(provider.requests().len(), 1);
    }
    assert!(
        metadata.requests().is_empty(),
        "the redirect target was contacted: {:?}",
        metadata.requests().len()
    );
}

fn small_cap() -> HttpSettings {
    HttpSettings {
        max_response_bytes: 64 * 1024,
        retry_after_cap: Duration::from_millis(20),
        ..settings()
    }
}

#[tokio::test]
async fn absurd_retry_after_values_are_capped_instead_of_panicking() {
    for header in [
        "Retry-After: 1e20",
        "retry-after-ms: 1e308",
        "Retry-After: -5",
        "Retry-After: soon",
    ] {
        let head = format!(
            "HTTP/1.1 429 Too Many Requests\r\n{header}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        let url = raw_server(head.into_bytes(), Vec::new(), false).await;
        let p = HttpProvider::new(HttpSettings {
            max_retries: 1,
            ..small_cap()
        })
        .unwrap();
        let ex = send(&p, &url, false).await;
        assert_eq!(code(&ex), Some("HTTP_429_RATE_LIMIT"), "{header}");
        assert_eq!(
            ex.attempts, 2,
            "{header}: retried once, after a capped wait"
        );
    }
}

#[tokio::test]
async fn garbage_and_oversized_headers_are_a_clear_error_not_a_panic() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..400 {
        head.push_str(&format!("x-junk-{i}: {}\r\n", "\u{7f}".repeat(4000)));
    }
    head.push_str("content-length: 2\r\n\r\n{}");
    let url = raw_server(head.into_bytes(), Vec::new(), false).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, false).await;
    assert!(ex.error.is_some(), "{ex:?}");
    let url = raw_server(b"NOT HTTP AT ALL\r\n\r\n".to_vec(), Vec::new(), false).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, false).await;
    assert_eq!(code(&ex), Some("NETWORK_ERROR"), "{ex:?}");
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_whether_or_not_they_say_their_length() {
    let big = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    let url = raw_server(big.into_bytes(), vec![b' '; 8192], true).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, false).await;
    assert_eq!(code(&ex), Some("RESPONSE_TOO_LARGE"));
    assert_eq!(ex.attempts, 1, "not retried");
    let chunked =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    let mut piece = format!("{:x}\r\n", 8192).into_bytes();
    piece.extend(vec![b'x'; 8192]);
    piece.extend(b"\r\n");
    let url = raw_server(chunked, piece, true).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, false).await;
    assert_eq!(code(&ex), Some("RESPONSE_TOO_LARGE"));
}

#[tokio::test]
async fn an_endless_stream_and_one_endless_line_stop_at_the_cap() {
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"永远\"}}]}\n\n";
    let mut piece = format!("{:x}\r\n", event.len()).into_bytes();
    piece.extend(event.as_bytes());
    piece.extend(b"\r\n");
    let url = raw_server(head.clone(), piece, true).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, true).await;
    assert_eq!(code(&ex), Some("RESPONSE_TOO_LARGE"));
    // One line that never ends, a byte at a time on the wire's terms.
    let mut piece = b"400\r\n".to_vec();
    piece.extend(vec![b'a'; 1024]);
    piece.extend(b"\r\n");
    let mut start = b"9\r\ndata: \"aa\r\n".to_vec();
    start.extend(piece.clone());
    let url = raw_server([head, start].concat(), piece, true).await;
    let ex = send(&HttpProvider::new(small_cap()).unwrap(), &url, true).await;
    assert_eq!(code(&ex), Some("RESPONSE_TOO_LARGE"));
}

#[tokio::test]
async fn a_deadline_cuts_a_hanging_provider_short_and_says_so() {
    let server = ProviderServer::start(vec![Reply::Delayed(
        Duration::from_secs(30),
        Box::new(Reply::content("迟到")),
    )])
    .await
    .unwrap();
    let p = HttpProvider::new(settings()).unwrap();
    let key = Secret::new("sk-provider-test-key");
    let body = body();
    let ex = p
        .send(ProviderRequest {
            url: &server.url(),
            api_key: &key,
            body: &body,
            trace_id: "0123456789abcdef0123456789abcdef",
            stream: false,
            deadline: Some(std::time::Instant::now() + Duration::from_millis(1200)),
            tap: None,
            gate: None,
            hand_over: false,
        })
        .await;
    assert_eq!(code(&ex), Some("DEADLINE_EXCEEDED"), "{ex:?}");
    assert_eq!(ex.attempts, 1);
    // No time for even one attempt: nothing is sent.
    let ex = p
        .send(ProviderRequest {
            url: &server.url(),
            api_key: &key,
            body: &body,
            trace_id: "0123456789abcdef0123456789abcdef",
            stream: false,
            deadline: Some(std::time::Instant::now()),
            tap: None,
            gate: None,
            hand_over: false,
        })
        .await;
    assert_eq!(code(&ex), Some("DEADLINE_EXCEEDED"));
    assert_eq!(ex.attempts, 0);
    assert_eq!(server.requests().len(), 1);
}

async fn send_tapped(url: &str, tap: &StreamTap) -> Exchange {
    let key = Secret::new("sk-provider-test-key");
    let body = body();
    HttpProvider::new(settings())
        .unwrap()
        .send(ProviderRequest {
            url,
            api_key: &key,
            body: &body,
            trace_id: "0123456789abcdef0123456789abcdef",
            stream: true,
            deadline: None,
            tap: Some(tap),
            gate: None,
            hand_over: false,
        })
        .await
}

fn chunk_event(text: &str) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

#[tokio::test]
async fn a_tapped_stream_relays_each_chunk_as_it_arrives_and_still_assembles_the_answer() {
    let events: Vec<Value> = ["一", "二", "三"].iter().map(|t| chunk_event(t)).collect();
    let server = ProviderServer::start(vec![Reply::Trickle {
        events,
        every: Duration::from_millis(5),
    }])
    .await
    .unwrap();
    let (tap, mut rx) = StreamTap::channel();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.push(
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        got
    });
    let ex = send_tapped(&server.url(), &tap).await;
    assert_eq!(code(&ex), None, "{ex:?}");
    assert_eq!(tap.sent(), 3);
    drop(tap);
    assert_eq!(reader.await.unwrap(), ["一", "二", "三"]);
    assert_eq!(
        ex.body.unwrap()["choices"][0]["message"]["content"],
        "一二三"
    );
}

#[tokio::test]
async fn a_caller_that_goes_away_stops_the_read_and_nothing_is_retried() {
    let events: Vec<Value> = (0..50).map(|i| chunk_event(&format!("{i} "))).collect();
    let server = ProviderServer::start(vec![Reply::Trickle {
        events,
        every: Duration::from_millis(20),
    }])
    .await
    .unwrap();
    let (tap, mut rx) = StreamTap::channel();
    let reader = tokio::spawn(async move {
        // Two chunks, then the caller hangs up.
        rx.recv().await.unwrap();
        rx.recv().await.unwrap();
    });
    let ex = send_tapped(&server.url(), &tap).await;
    reader.await.unwrap();
    assert_eq!(code(&ex), Some("CLIENT_DISCONNECTED"), "{ex:?}");
    assert_eq!(ex.attempts, 1);
    assert_eq!(server.requests().len(), 1);
    // What had arrived is kept for the audit row and the bill.
    let kept = ex.body.unwrap();
    assert!(
        kept["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("0 1 "),
        "{kept}"
    );
}

/// A gate that answers `admit` from a list and counts how often it was asked.
#[derive(Debug, Default)]
struct Gate {
    answers: std::sync::Mutex<Vec<bool>>,
    asked: std::sync::atomic::AtomicUsize,
}

impl ai_runner::ports::RetryGate for Gate {
    fn admit(&self) -> ai_runner::ports::BoxFuture<'_, bool> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = self.answers.lock().unwrap().pop().unwrap_or(true);
        Box::pin(async move { answer })
    }
}

async fn send_gated(p: &HttpProvider, url: &str, gate: &Gate) -> Exchange {
    let key = Secret::new("sk-provider-test-key");
    let body = body();
    p.send(ProviderRequest {
        url,
        api_key: &key,
        body: &body,
        trace_id: "0123456789abcdef0123456789abcdef",
        stream: false,
        deadline: None,
        tap: None,
        gate: Some(gate),
        hand_over: false,
    })
    .await
}

#[tokio::test]
async fn only_the_retry_of_an_attempt_that_may_have_been_billed_asks_the_gate() {
    let quick = HttpSettings {
        timeout: Duration::from_millis(300),
        ..settings()
    };
    let slow = || Reply::Delayed(Duration::from_secs(2), Box::new(Reply::content("慢")));
    // Refused answers cost nothing: their retries are not asked about.
    let server = ProviderServer::start(vec![
        Reply::error(429, "slow down"),
        Reply::error(503, "busy"),
        Reply::content("好"),
    ])
    .await
    .unwrap();
    let gate = Gate::default();
    let ex = send_gated(
        &HttpProvider::new(quick.clone()).unwrap(),
        &server.url(),
        &gate,
    )
    .await;
    assert_eq!((code(&ex), ex.attempts), (None, 3));
    assert_eq!(gate.asked.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A timeout may have been billed: its retry is sent only when admitted.
    let server = ProviderServer::start(vec![slow(), Reply::content("好")])
        .await
        .unwrap();
    let gate = Gate::default();
    let ex = send_gated(
        &HttpProvider::new(quick.clone()).unwrap(),
        &server.url(),
        &gate,
    )
    .await;
    assert_eq!((code(&ex), ex.attempts), (None, 2));
    assert_eq!(gate.asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(ex.earlier.len(), 1, "the timed-out attempt is billed");

    let server = ProviderServer::start(vec![slow(), Reply::content("好")])
        .await
        .unwrap();
    let gate = Gate {
        answers: std::sync::Mutex::new(vec![false]),
        ..Gate::default()
    };
    let ex = send_gated(&HttpProvider::new(quick).unwrap(), &server.url(), &gate).await;
    assert_eq!((code(&ex), ex.attempts), (Some("NETWORK_TIMEOUT"), 1));
    assert_eq!(server.requests().len(), 1, "the retry was not sent");
    assert!(
        ex.earlier.is_empty(),
        "the refused attempt is the last one, billed once"
    );
}
