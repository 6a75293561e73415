//! Loopback OpenAI-compatible servers: the quickstart's clearly labelled demo provider (fixed
//! scenarios by path, served again on demand by later CLI commands so the configs quickstart
//! leaves behind keep answering), and the scripted provider the tests drive over real HTTP.
//!
//! Both speak the chat-completions wire protocol (JSON and SSE). The scripted server records every
//! request it gets (headers and body) and answers from a script: each request takes the next
//! scripted reply, the last one repeats. Only ever binds 127.0.0.1.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
        /// Extra headers (e.g. `retry-after`).
        headers: Vec<(String, String)>,
    },
    /// A raw body with a content type (non-JSON answers, SSE streams).
    Raw {
        /// HTTP status.
        status: u16,
        /// Content type.
        content_type: String,
        /// Body bytes.
        body: Vec<u8>,
    },
    /// Waits, then answers.
    Delayed(Duration, Box<Reply>),
    /// A 200 SSE stream sent event by event, `every` apart (a provider streaming slowly).
    Trickle {
        /// The SSE events' JSON payloads; `data: [DONE]` follows the last.
        events: Vec<Value>,
        /// The pause before each event.
        every: Duration,
    },
    /// A 200 chat completion whose content echoes the `Authorization` header (secret-leak tests).
    EchoAuthorization,
    /// Looks at the audio in the request like a real audio model must: decodes inline
    /// `input_audio.data`, or fetches the first `http(s)` URL found in the messages, and answers
    /// with how many bytes it got (HTTP 400 if it could get none).
    MediaProbe,
}

impl Reply {
    /// A 200 chat completion with this assistant content.
    pub fn content(content: &str) -> Self {
        Reply::Json {
            status: 200,
            body: chat_completion(content),
            headers: Vec::new(),
        }
    }

    /// A JSON error answer in OpenAI's shape.
    pub fn error(status: u16, message: &str) -> Self {
        Reply::Json {
            status,
            body: json!({"error": {"message": message, "type": "demo_error", "param": null, "code": null}}),
            headers: Vec::new(),
        }
    }
}

/// A 200 `chat.completion` body with usage.
pub fn chat_completion(content: &str) -> Value {
    json!({
        "id": format!("chatcmpl-demo-{}", crate::run::new_trace_id()),
        "object": "chat.completion",
        "created": 1_727_346_142,
        "model": "demo-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    })
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Lower-cased header names to values.
    pub headers: HashMap<String, String>,
    /// The raw body text.
    pub body_text: String,
    /// The body parsed as JSON (Null if it was not JSON).
    pub body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    script: VecDeque<Reply>,
    last: Option<Reply>,
    recorded: Vec<Recorded>,
}

/// A running provider on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct ProviderServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProviderServer {
    /// Starts a server that answers with `script` in order (the last reply repeats).
    pub async fn start(script: Vec<Reply>) -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            script: script.into(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The full chat-completions URL (what `ai_connection.base_url` stores).
    pub fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .lock()
            .map(|s| s.recorded.clone())
            .unwrap_or_default()
    }

    /// Replaces the remaining script.
    pub fn set_script(&self, script: Vec<Reply>) {
        if let Ok(mut s) = self.shared.lock() {
            s.script = script.into();
            s.last = None;
        }
    }
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let rec = Recorded {
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        body_text: text,
    };
    let auth = rec
        .headers
        .get("authorization")
        .cloned()
        .unwrap_or_default();
    let reply = match shared.lock() {
        Ok(mut s) => {
            s.recorded.push(rec);
            let next = s.script.pop_front().or_else(|| s.last.clone());
            if let Some(r) = &next {
                s.last = Some(r.clone());
            }
            next
        }
        Err(_) => None,
    };
    let mut reply = reply.unwrap_or_else(|| Reply::error(500, "script is empty"));
    loop {
        match reply {
            Reply::Delayed(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::MediaProbe => reply = probe_media(&body).await,
            Reply::Trickle { events, every } => return trickle(events, every),
            other => return render(other, &auth),
        }
    }
}

async fn probe_media(body: &[u8]) -> Reply {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut strings = Vec::new();
    crate::template::collect_strings(v.get("messages").unwrap_or(&Value::Null), &mut strings);
    if let Some(data) = v
        .pointer("/messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .find_map(|p| p.pointer("/input_audio/data").and_then(Value::as_str))
    {
        use base64::Engine;
        return match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) => Reply::content(&format!("收到内联音频 {} 字节", bytes.len())),
            Err(_) => Reply::error(400, "input_audio.data is not base64"),
        };
    }
    let Some(url) = strings.iter().find_map(|s| {
        let start = s.find("http://").or_else(|| s.find("https://"))?;
        let rest = &s[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || !c.is_ascii_graphic())
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }) else {
        return Reply::error(400, "no audio in the request");
    };
    match crate::provider::plain_client().get(url).send().await {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) => Reply::content(&format!("下载音频 {} 字节", b.len())),
            Err(e) => Reply::error(400, &format!("cannot read the media: {e}")),
        },
        Ok(r) => Reply::error(400, &format!("media URL answered {}", r.status())),
        Err(e) => Reply::error(400, &format!("cannot fetch the media: {e}")),
    }
}

/// A short mono 16-bit PCM WAV tone (real audio for demos and tests).
pub fn wav_tone(millis: u32, hz: f32) -> Vec<u8> {
    let rate: u32 = 8000;
    let samples = rate * millis / 1000;
    let data_len = samples * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = i as f32 / rate as f32;
        let s = (t * hz * std::f32::consts::TAU).sin() * 0.3 * f32::from(i16::MAX);
        w.extend_from_slice(&(s as i16).to_le_bytes());
    }
    w
}

/// A slow SSE stream: each event after a pause, then `[DONE]`.
fn trickle(events: Vec<Value>, every: Duration) -> Response {
    let mut frames: VecDeque<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    frames.push_back("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::unfold(frames, move |mut frames| async move {
        let next = frames.pop_front()?;
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::convert::Infallible>(next), frames))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn render(reply: Reply, auth: &str) -> Response {
    let (status, content_type, body, extra) = match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => (
            status,
            "application/json".to_owned(),
            body.to_string().into_bytes(),
            headers,
        ),
        Reply::Raw {
            status,
            content_type,
            body,
        } => (status, content_type, body, Vec::new()),
        Reply::EchoAuthorization => (
            200,
            "application/json".to_owned(),
            chat_completion(&format!("you sent {auth}"))
                .to_string()
                .into_bytes(),
            Vec::new(),
        ),
        Reply::Delayed(..) | Reply::MediaProbe | Reply::Trickle { .. } => (
            500,
            "text/plain".to_owned(),
            b"nested delay".to_vec(),
            Vec::new(),
        ),
    };
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    for (k, v) in extra {
        b = b.header(k, v);
    }
    b.body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The config_key quickstart installs.
pub const QUICKSTART_CONFIG_KEY: &str = "quickstart-demo";

/// What the demo provider answers (Chinese JSON, so it passes the no-English check).
pub const DEMO_ANSWER: &str = r#"{"摘要": "发布顺利，测试全部通过。", "情绪": "积极"}"#;

/// The demo endpoint's default port (`AI_RUNNER_DEMO_PORT`; 0 picks a free one).
pub const DEFAULT_DEMO_PORT: u16 = 8898;

/// The `provider` label of every demo connection (how later commands find them).
pub const DEMO_PROVIDER: &str = "demo";

/// What a demo endpoint does, chosen by the path of the stored URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Answers [`DEMO_ANSWER`].
    Answer,
    /// Always answers 503 (the failover demo's first member).
    Outage,
    /// Looks at the audio it was sent and says how many bytes it got ([`Reply::MediaProbe`]).
    Media,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Answer, Scenario::Outage, Scenario::Media];

    fn segment(self) -> &'static str {
        match self {
            Scenario::Answer => "answer",
            Scenario::Outage => "outage",
            Scenario::Media => "media",
        }
    }

    fn reply(self) -> Reply {
        match self {
            Scenario::Answer => Reply::content(DEMO_ANSWER),
            Scenario::Outage => Reply::error(503, "demo outage: this member always fails"),
            Scenario::Media => Reply::MediaProbe,
        }
    }

    /// The full chat-completions URL of this scenario on a demo endpoint at `port`.
    pub fn url(self, port: u16) -> String {
        format!(
            "http://127.0.0.1:{port}/demo/{}/v1/chat/completions",
            self.segment()
        )
    }
}

/// What `/demo/ping` answers, so a command can tell a demo endpoint from anything else.
const PING: &str = "ai-runner demo provider";

/// A running demo endpoint (all scenarios) on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct DemoServer {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DemoServer {
    /// Serves the demo scenarios on `127.0.0.1:port` (0 = any free port), or fails if the port
    /// is taken.
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        Ok(Self::serve(listener))
    }

    /// Like [`DemoServer::bind`], but when the port is taken by another ai-runner demo endpoint,
    /// that one is used instead (every demo endpoint answers the same way).
    pub async fn ensure(port: u16) -> std::io::Result<Self> {
        match Self::bind(port).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_demo(port).await => {
                Ok(Self { port, task: None })
            }
            other => other,
        }
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let port = listener.local_addr().map_or(0, |a| a.port());
        let mut app =
            axum::Router::new().route("/demo/ping", axum::routing::get(|| async { PING }));
        for sc in Scenario::ALL {
            app = app.route(
                &format!("/demo/{}/v1/chat/completions", sc.segment()),
                axum::routing::post(
                    move |headers: HeaderMap, body: axum::body::Bytes| async move {
                        answer(sc.reply(), &headers, &body).await
                    },
                ),
            );
        }
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            task: Some(task),
        }
    }

    /// The port it answers on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn is_demo(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/demo/ping");
    match crate::provider::plain_client().get(url).send().await {
        Ok(r) => r.text().await.is_ok_and(|t| t == PING),
        Err(_) => false,
    }
}

async fn answer(reply: Reply, headers: &HeaderMap, body: &[u8]) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reply = match reply {
        Reply::MediaProbe => probe_media(body).await,
        other => other,
    };
    render(reply, auth)
}

/// The demo endpoints the stored configuration points at: the ports of active demo connections
/// on 127.0.0.1. A command serves these before it runs anything ([`serve_stored`]).
pub async fn stored_ports(db: &crate::store::Db) -> Result<Vec<u16>, crate::ports::StoreError> {
    // One query: every CLI command that runs configs asks this.
    let mut ports: Vec<u16> = db
        .active_connection_urls(DEMO_PROVIDER)
        .await?
        .iter()
        .filter_map(|u| demo_port(u))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn demo_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let (port, path) = rest.split_once('/')?;
    path.starts_with("demo/").then(|| port.parse().ok())?
}

/// Serves every demo endpoint the stored configuration points at, for as long as the returned
/// servers live: so `run-once quickstart-demo` answers after quickstart has exited. A port taken
/// by something else is logged and skipped (the run then fails with a clear network error).
pub async fn serve_stored(db: &crate::store::Db) -> Vec<DemoServer> {
    let ports = match stored_ports(db).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(code = %e.code(), "no demo endpoints looked up");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for port in ports {
        match DemoServer::ensure(port).await {
            Ok(s) => out.push(s),
            Err(e) => tracing::warn!(port, error = %e, "cannot serve the demo endpoint"),
        }
    }
    out
}

/// Where quickstart sends its call.
#[derive(Debug, Clone)]
pub struct QuickstartProvider {
    /// Full chat-completions URL.
    pub url: String,
    /// Plain key (encrypted before it is stored).
    pub api_key: crate::Secret,
    /// Model name.
    pub model: String,
    /// True when this is the local demo server, not a real provider.
    pub is_demo: bool,
}

impl QuickstartProvider {
    /// A real provider if `OPENAI_API_KEY` is set (`OPENAI_BASE_URL`, default
    /// `https://api.openai.com/v1`, and `QUICKSTART_MODEL`, default `gpt-4o-mini`).
    #[allow(clippy::disallowed_methods)] // quickstart's own inputs, read once here
    pub fn from_env() -> Option<Self> {
        let key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())?;
        let base = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "https://api.openai.com/v1".into());
        Some(Self {
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            api_key: crate::Secret::new(key),
            model: std::env::var("QUICKSTART_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into()),
            is_demo: false,
        })
    }

    /// The demo endpoint's answering scenario.
    pub fn demo(server: &DemoServer) -> Self {
        Self {
            url: Scenario::Answer.url(server.port()),
            api_key: crate::Secret::new("sk-demo-local-not-a-real-key"),
            model: "demo-model".into(),
            is_demo: true,
        }
    }
}

/// The quickstart route: `quickstart` / `demo-route`.
pub const QUICKSTART_PROJECT: &str = "quickstart";
/// The quickstart route's key.
pub const QUICKSTART_ROUTE: &str = "demo-route";
/// The member that always fails (a loopback endpoint answering 503).
pub const QUICKSTART_FLAKY_KEY: &str = "quickstart-flaky";
/// The quickstart's upload demo: bucket, watched prefix, route and config.
pub const QUICKSTART_MEDIA_BUCKET: &str = "quickstart-media";
/// The watched prefix.
pub const QUICKSTART_MEDIA_PREFIX: &str = "uploads/";
/// The route that transcribes uploads.
pub const QUICKSTART_MEDIA_ROUTE: &str = "transcribe";

fn catalog(value: Value) -> Result<crate::catalog::Catalog, crate::RunError> {
    serde_json::from_value(value)
        .map_err(|e| crate::RunError::InvalidInput(format!("demo catalog: {e}")))
}

fn demo_connection(name: &str, url: &str) -> Value {
    json!({"name": name, "provider": DEMO_PROVIDER, "base_url": url,
           "api_key": format!("sk-demo-{name}-not-a-real-key")})
}

async fn apply(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    value: Value,
) -> Result<(), crate::RunError> {
    let cat = catalog(value)?;
    db.apply_catalog(&cat, keyring, &|_| None)
        .await
        .map_err(|e| match e {
            crate::catalog::ApplyError::Crypto(c) => c.into(),
            crate::catalog::ApplyError::Store(s) => s.into(),
            other => crate::RunError::InvalidInput(other.to_string()),
        })?;
    Ok(())
}

/// Writes the quickstart's connection (key encrypted), model, prompt, params and config, and the
/// failover route whose first member (`outage_url`, answering 503) hands over to it.
pub async fn install_quickstart(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    p: &QuickstartProvider,
    outage_url: &str,
) -> Result<(), crate::RunError> {
    apply(db, keyring, json!({
        "connections": [
            {"name": "quickstart", "provider": if p.is_demo { DEMO_PROVIDER } else { "openai" },
             "base_url": p.url, "api_key": p.api_key.expose()},
            demo_connection("quickstart-flaky", outage_url)
        ],
        "models": [
            {"name": p.model, "connection": "quickstart"},
            {"name": "demo-flaky-model", "connection": "quickstart-flaky"}
        ],
        "param_profiles": [{"name": "quickstart-params", "params": {"TEMPERATURE": 0.2, "MAX_TOKENS": 200}}],
        "prompts": [{
            "name": "quickstart-summary", "version": "v1",
            "messages": [
                {"role": "system", "content": "你是一个中文摘要助手。只输出 JSON，字段为 摘要 和 情绪，值只用中文。"},
                {"role": "user", "content": "请用一句中文总结：{{TEXT}}"}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "summary", "schema": {
                "type": "object",
                "required": ["摘要", "情绪"],
                "properties": {"摘要": {"type": "string"}, "情绪": {"type": "string"}}
            }}},
            "variables": {"TEXT": "今天的版本发布很顺利，所有测试都通过了，团队很开心。"}
        }],
        "configs": [
            {"config_key": QUICKSTART_CONFIG_KEY, "model": p.model, "prompt": "quickstart-summary@v1",
             "param_profile": "quickstart-params", "description": "installed by ai-runner quickstart"},
            {"config_key": QUICKSTART_FLAKY_KEY, "model": "demo-flaky-model", "prompt": "quickstart-summary@v1",
             "param_profile": "quickstart-params",
             "description": "installed by ai-runner quickstart: always fails (503)"}
        ],
        "routes": [{
            "project": QUICKSTART_PROJECT, "route_key": QUICKSTART_ROUTE, "policy": "primary_backup",
            "members": [
                {"config_key": QUICKSTART_FLAKY_KEY, "priority": 1, "weight": 1},
                {"config_key": QUICKSTART_CONFIG_KEY, "priority": 2, "weight": 1}
            ]
        }]
    }))
    .await
}

/// The quickstart's evaluation suite.
pub const QUICKSTART_SUITE: &str = "quickstart";

/// Writes the quickstart's evaluation catalog: a dataset of three texts whose expected
/// sentiment is known, and suite [`QUICKSTART_SUITE`] over the quickstart config and route
/// (JSON, the sentiment, latency shown but not counted; gate: half the cases pass). The demo
/// provider answers 积极 to everything, so the negative case fails on both targets.
pub async fn install_quickstart_evals(db: &crate::store::Db) -> Result<(), crate::RunError> {
    let doc = json!({
        "datasets": [{"name": QUICKSTART_SUITE, "description": "installed by ai-runner quickstart", "cases": [
            {"key": "release", "vars": {"TEXT": "今天的版本发布很顺利，所有测试都通过了。"}, "expected": {"情绪": "积极"}, "tags": ["smoke"]},
            {"key": "praise", "vars": {"TEXT": "客户说新功能非常好用，团队很受鼓舞。"}, "expected": {"情绪": "积极"}},
            {"key": "outage", "vars": {"TEXT": "服务宕机了两个小时，客户很不满意。"}, "expected": {"情绪": "消极"}}
        ]}],
        "suites": [{
            "name": QUICKSTART_SUITE, "dataset": QUICKSTART_SUITE,
            "description": "installed by ai-runner quickstart",
            "targets": [{"config": QUICKSTART_CONFIG_KEY}, {"route": format!("{QUICKSTART_PROJECT}/{QUICKSTART_ROUTE}")}],
            "assert": [
                {"type": "is-json"},
                {"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}", "metric": "sentiment"},
                {"type": "latency", "threshold": 30000, "weight": 0}
            ],
            "concurrency": 4,
            "gates": {"min_pass_rate": 0.5}
        }]
    });
    let (evals, findings) = crate::eval::suite::read_evals(
        &doc,
        std::path::Path::new("."),
        &std::collections::BTreeSet::new(),
    );
    let evals =
        evals.ok_or_else(|| crate::RunError::InvalidInput(format!("demo evals: {findings:?}")))?;
    db.apply_evals(&evals.catalog()).await?;
    Ok(())
}

/// Installs an audio config (inline `input_audio` part), a route over it and a mapping from
/// `quickstart-media/uploads/` to that route. `url` is the provider endpoint.
pub async fn install_quickstart_media(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    url: &str,
) -> Result<(), crate::RunError> {
    apply(db, keyring, json!({
        "connections": [demo_connection("quickstart-audio", url)],
        "models": [{"name": "demo-audio-model", "connection": "quickstart-audio"}],
        "prompts": [{
            "name": "quickstart-transcribe", "version": "v1",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "请转写这段音频（{{MEDIA_KEY}}）。"},
                {"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}}
            ]}]
        }],
        "configs": [{"config_key": "quickstart-audio", "model": "demo-audio-model",
                     "prompt": "quickstart-transcribe@v1",
                     "description": "installed by ai-runner quickstart: audio"}],
        "routes": [{
            "project": QUICKSTART_PROJECT, "route_key": QUICKSTART_MEDIA_ROUTE, "policy": "primary_backup",
            "variables": {"MEDIA_MODE": "inline"},
            "members": [{"config_key": "quickstart-audio", "priority": 1, "weight": 1}]
        }]
    }))
    .await?;
    let exists = db.list_mappings().await?.iter().any(|m| {
        m.bucket == QUICKSTART_MEDIA_BUCKET && m.key_prefix == QUICKSTART_MEDIA_PREFIX && m.active
    });
    if !exists {
        db.add_mapping(
            QUICKSTART_MEDIA_BUCKET,
            QUICKSTART_MEDIA_PREFIX,
            "",
            QUICKSTART_PROJECT,
            QUICKSTART_MEDIA_ROUTE,
            None,
        )
        .await?;
    }
    Ok(())
}

/// The predecessor's `quickstart --mode demo`: project, route and its two members.
pub const DEMO_MODE_PROJECT: &str = "demo_project";
/// The demo mode's route.
pub const DEMO_MODE_ROUTE: &str = "demo_route";
/// The demo mode's members, in order.
pub const DEMO_MODE_MEMBERS: [&str; 2] = ["demo_route_key_m1", "demo_route_key_m2"];

/// Installs the predecessor's demo-mode route over the media scenario at `url`: a prompt that
/// hands the model the uploaded audio inline (`inline` true, for a local object store) or as a
/// presigned `MEDIA_URL`, and a mapping from `bucket`/`prefix` to the route.
pub async fn install_demo_mode(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    url: &str,
    inline: bool,
    bucket: &str,
    prefix: &str,
) -> Result<(), crate::RunError> {
    let audio = if inline {
        json!({"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}})
    } else {
        json!({"type": "input_audio", "input_audio": {"url": "{{MEDIA_URL}}", "format": "{{MEDIA_FORMAT}}"}})
    };
    let [m1, m2] = DEMO_MODE_MEMBERS;
    apply(db, keyring, json!({
        "connections": [demo_connection("demo-media", url)],
        "models": [{"name": "demo-media-model", "connection": "demo-media"}],
        "prompts": [{
            "name": "demo-media", "version": "v1",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "请描述这段音频（{{MEDIA_KEY}}）。"}, audio
            ]}]
        }],
        "configs": [
            {"config_key": m1, "model": "demo-media-model", "prompt": "demo-media@v1",
             "description": "installed by ai-runner quickstart --mode demo"},
            {"config_key": m2, "model": "demo-media-model", "prompt": "demo-media@v1",
             "description": "installed by ai-runner quickstart --mode demo (backup)"}
        ],
        "routes": [{
            "project": DEMO_MODE_PROJECT, "route_key": DEMO_MODE_ROUTE, "policy": "primary_backup",
            "variables": {"MEDIA_MODE": if inline { "inline" } else { "url" }},
            "members": [
                {"config_key": m1, "priority": 1, "weight": 1},
                {"config_key": m2, "priority": 2, "weight": 1}
            ]
        }]
    }))
    .await?;
    let exists = db
        .list_mappings()
        .await?
        .iter()
        .any(|m| m.bucket == bucket && m.key_prefix == prefix && m.active);
    if !exists {
        db.add_mapping(bucket, prefix, "", DEMO_MODE_PROJECT, DEMO_MODE_ROUTE, None)
            .await?;
    }
    Ok(())
}
