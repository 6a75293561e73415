//! A Lambda Runtime API served by the test, and helpers to run a built function binary against
//! it (or, in Function Compute mode, over its `/invoke` HTTP contract) as a real process.
//!
//! The runtime side implements `GET /2018-06-01/runtime/invocation/next` (long-polling, with the
//! `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id` headers),
//! `POST .../{id}/response`, `POST .../{id}/error` and `POST /2018-06-01/runtime/init/error`.
//! It records when the first `/next` arrived, which is how cold start is measured.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

/// What the function reported for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST .../response` with this JSON body.
    Response(Value),
    /// `POST .../response` in streaming mode (`Lambda-Runtime-Function-Response-Mode:
    /// streaming`): the metadata prelude a Function URL reads, and the body after its eight
    /// NUL bytes.
    Streamed {
        /// `{statusCode, headers, cookies}`.
        prelude: Value,
        /// The body.
        body: String,
    },
    /// `POST .../error` with its `Lambda-Runtime-Function-Error-Type` header and body.
    Error {
        /// The header value.
        header_type: Option<String>,
        /// `{errorType, errorMessage}`.
        body: Value,
    },
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    outcomes: HashMap<String, Outcome>,
    first_next: Option<Instant>,
    nexts: usize,
    init_error: Option<Value>,
    /// Streamed responses whose first body bytes (after the prelude) have arrived.
    streaming: std::collections::HashSet<String>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    queued: Notify,
    reported: Notify,
    /// The function timeout each invocation's deadline is computed from (0 = 60 s).
    timeout_ms: std::sync::atomic::AtomicU64,
}

/// The runtime API; stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    counter: std::sync::atomic::AtomicUsize,
}

impl RuntimeApi {
    /// Starts on a loopback port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route(
                "/2018-06-01/runtime/invocation/next",
                axum::routing::get(next),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                axum::routing::post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                axum::routing::post(error),
            )
            .route(
                "/2018-06-01/runtime/init/error",
                axum::routing::post(init_error),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            task,
            counter: Default::default(),
        }
    }

    /// Gives the next invocations this function timeout (their `Lambda-Runtime-Deadline-Ms`).
    pub fn set_function_timeout(&self, timeout: Duration) {
        self.shared.timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The `AWS_LAMBDA_RUNTIME_API` value (`host:port`).
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; returns its request id.
    pub fn push(&self, event: Value) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("req-{n:04}-{}", std::process::id());
        self.shared
            .inner
            .lock()
            .unwrap()
            .queue
            .push_back((id.clone(), event));
        self.shared.queued.notify_waiters();
        self.shared.queued.notify_one();
        id
    }

    /// Waits for the function's report on `id`.
    pub async fn outcome(&self, id: &str, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.reported.notified();
            if let Some(o) = self.shared.inner.lock().unwrap().outcomes.get(id).cloned() {
                return o;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no outcome for {id} within {timeout:?}");
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Waits until a streamed response to `id` has sent its first body bytes (after the
    /// prelude), while the function may still be writing the rest.
    pub async fn stream_started(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.reported.notified();
            if self.shared.inner.lock().unwrap().streaming.contains(id) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Pushes an event and waits for its outcome.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = self.push(event);
        self.outcome(&id, Duration::from_secs(30)).await
    }

    /// When the first `/next` arrived (the end of the function's init).
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.inner.lock().unwrap().first_next
    }

    /// How many `/next` requests arrived.
    pub fn next_count(&self) -> usize {
        self.shared.inner.lock().unwrap().nexts
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.inner.lock().unwrap().init_error.clone()
    }

    /// Waits until the function is polling (its init finished) or reported an init error.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            {
                let inner = self.shared.inner.lock().unwrap();
                if inner.first_next.is_some() {
                    return true;
                }
                if inner.init_error.is_some() {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    {
        let mut inner = s.inner.lock().unwrap();
        inner.nexts += 1;
        inner.first_next.get_or_insert_with(Instant::now);
    }
    loop {
        let notified = s.queued.notified();
        if let Some((id, event)) = s.inner.lock().unwrap().queue.pop_front() {
            let timeout = match s.timeout_ms.load(std::sync::atomic::Ordering::Relaxed) {
                0 => 60_000,
                t => u128::from(t),
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + timeout;
            return (
                StatusCode::OK,
                [
                    ("lambda-runtime-aws-request-id", id.clone()),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                    ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:test".to_owned()),
                    ("lambda-runtime-trace-id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".to_owned()),
                    ("content-type", "application/json".to_owned()),
                ],
                event.to_string(),
            )
                .into_response();
        }
        notified.await;
    }
}

async fn response(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> StatusCode {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v == "streaming");
    let mut frames = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = futures_util::StreamExt::next(&mut frames).await {
        bytes.extend_from_slice(&frame);
        if streaming
            && let Some(at) = find_nuls(&bytes)
            && bytes.len() > at + 8
            && s.inner.lock().unwrap().streaming.insert(id.clone())
        {
            s.reported.notify_waiters();
        }
    }
    let outcome = if streaming {
        let at = find_nuls(&bytes).unwrap_or(bytes.len());
        Outcome::Streamed {
            prelude: serde_json::from_slice(&bytes[..at]).unwrap_or(Value::Null),
            body: String::from_utf8_lossy(bytes.get(at + 8..).unwrap_or_default()).into_owned(),
        }
    } else {
        Outcome::Response(
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    };
    s.inner.lock().unwrap().outcomes.insert(id, outcome);
    s.reported.notify_waiters();
    StatusCode::ACCEPTED
}

/// Where the eight NUL bytes that end a streamed response's prelude begin.
fn find_nuls(bytes: &[u8]) -> Option<usize> {
    bytes.windows(8).position(|w| w == [0u8; 8])
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.inner.lock().unwrap().outcomes.insert(
        id,
        Outcome::Error {
            header_type,
            body: v,
        },
    );
    s.reported.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    s.inner.lock().unwrap().init_error = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

/// A function process; killed when dropped.
pub struct FunctionProcess {
    /// The child.
    pub child: tokio::process::Child,
    /// When it was spawned.
    pub spawned: Instant,
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The environment Lambda gives a function, pointed at `api`.
pub fn lambda_env(api: &RuntimeApi, name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.endpoint()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/26/[$LATEST]test".to_owned(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Spawns `bin` with exactly `env` (plus PATH), in `dir`, stdout and stderr captured.
pub fn spawn(bin: &Path, dir: &Path, env: &[(String, String)]) -> FunctionProcess {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    FunctionProcess {
        spawned: Instant::now(),
        child: cmd.spawn().unwrap(),
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
pub async fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Reads what a finished (killed) process printed on stdout.
pub async fn stdout_of(mut p: FunctionProcess) -> String {
    use tokio::io::AsyncReadExt;
    let _ = p.child.start_kill();
    let _ = p.child.wait().await;
    let mut out = String::new();
    if let Some(mut s) = p.child.stdout.take() {
        let _ = s.read_to_string(&mut out).await;
    }
    out
}
