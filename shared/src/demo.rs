//! A loopback OpenAI-compatible server: the quickstart's clearly labelled demo provider, and the
//! scripted provider the tests drive over real HTTP.
//!
//! It speaks the chat-completions wire protocol (JSON and SSE), records every request it gets
//! (headers and body), and answers from a script: each request takes the next scripted reply,
//! the last one repeats. Only ever binds 127.0.0.1.

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
        "id": format!("chatcmpl-demo-{}", crate::runner::new_trace_id()),
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
            other => return render(other, &auth),
        }
    }
}

async fn probe_media(body: &[u8]) -> Reply {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut strings = Vec::new();
    crate::request::collect_strings(v.get("messages").unwrap_or(&Value::Null), &mut strings);
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
    match reqwest::get(url).await {
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
        Reply::Delayed(..) | Reply::MediaProbe => (
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

    /// The local demo server's endpoint.
    pub fn demo(server: &ProviderServer) -> Self {
        Self {
            url: server.url(),
            api_key: crate::Secret::new("sk-demo-local-not-a-real-key"),
            model: "demo-model".into(),
            is_demo: true,
        }
    }
}

/// Writes the quickstart's connection (key encrypted), model, prompt, params and config.
pub async fn install_quickstart(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    p: &QuickstartProvider,
) -> Result<(), crate::RunError> {
    let name = "quickstart";
    let blob = keyring.encrypt(p.api_key.expose(), &crate::store::connection_binding(name))?;
    let conn = db
        .upsert_connection(&crate::store::admin::NewConnection {
            name,
            provider: if p.is_demo { "demo" } else { "openai" },
            base_url: &p.url,
            key_blob: &blob,
        })
        .await?;
    let model = db.upsert_model(&p.model, conn).await?;
    let prompt = db
        .upsert_prompt(
            "quickstart-summary",
            "v1",
            &json!([
                {"role": "system", "content": "你是一个中文摘要助手。只输出 JSON，字段为 摘要 和 情绪，值只用中文。"},
                {"role": "user", "content": "请用一句中文总结：{{TEXT}}"}
            ]),
            &Some(json!({"type": "json_schema", "json_schema": {"name": "summary", "schema": {
                "type": "object",
                "required": ["摘要", "情绪"],
                "properties": {"摘要": {"type": "string"}, "情绪": {"type": "string"}}
            }}})),
            &Some(json!({"TEXT": "今天的版本发布很顺利，所有测试都通过了，团队很开心。"})),
        )
        .await?;
    let params = db
        .upsert_param_profile(
            "quickstart-params",
            &json!({"TEMPERATURE": 0.2, "MAX_TOKENS": 200}),
        )
        .await?;
    db.upsert_config(
        QUICKSTART_CONFIG_KEY,
        model,
        Some(prompt),
        Some(params),
        Some("installed by ai-runner quickstart"),
    )
    .await?;
    Ok(())
}

/// A demo connection (its key encrypted and bound to the row) and a model on it; returns the
/// model id.
async fn demo_model(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    connection: &str,
    url: &str,
    model: &str,
) -> Result<i64, crate::RunError> {
    let blob = keyring.encrypt(
        &format!("sk-demo-{connection}-not-a-real-key"),
        &crate::store::connection_binding(connection),
    )?;
    let conn = db
        .upsert_connection(&crate::store::admin::NewConnection {
            name: connection,
            provider: "demo",
            base_url: url,
            key_blob: &blob,
        })
        .await?;
    Ok(db.upsert_model(model, conn).await?)
}

/// The quickstart route: `quickstart` / `demo-route`.
pub const QUICKSTART_PROJECT: &str = "quickstart";
/// The quickstart route's key.
pub const QUICKSTART_ROUTE: &str = "demo-route";
/// The member that always fails (a loopback endpoint answering 503).
pub const QUICKSTART_FLAKY_KEY: &str = "quickstart-flaky";

/// Adds a two-member route whose first member (at `flaky_url`, which answers 503) fails over to
/// the quickstart config. Call after [`install_quickstart`].
pub async fn install_quickstart_route(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    flaky_url: &str,
) -> Result<(), crate::RunError> {
    let model = demo_model(
        db,
        keyring,
        "quickstart-flaky",
        flaky_url,
        "demo-flaky-model",
    )
    .await?;
    let healthy = db
        .config_id(QUICKSTART_CONFIG_KEY)
        .await?
        .ok_or_else(|| crate::store::StoreError::ConfigNotFound(QUICKSTART_CONFIG_KEY.into()))?;
    let healthy_cfg = db.config_parts(healthy).await?;
    let flaky = db
        .upsert_config(
            QUICKSTART_FLAKY_KEY,
            model,
            healthy_cfg.0,
            healthy_cfg.1,
            Some("installed by ai-runner quickstart: always fails (503)"),
        )
        .await?;
    let project = db.upsert_project(QUICKSTART_PROJECT).await?;
    let route = db
        .upsert_route(
            project,
            QUICKSTART_ROUTE,
            &crate::store::admin::NewRoute {
                policy: "primary_backup",
                ..Default::default()
            },
        )
        .await?;
    db.upsert_route_member(route, flaky, 1, 1, true).await?;
    db.upsert_route_member(route, healthy, 2, 1, true).await?;
    Ok(())
}

/// The quickstart's upload demo: bucket, watched prefix, route and config.
pub const QUICKSTART_MEDIA_BUCKET: &str = "quickstart-media";
/// The watched prefix.
pub const QUICKSTART_MEDIA_PREFIX: &str = "uploads/";
/// The route that transcribes uploads.
pub const QUICKSTART_MEDIA_ROUTE: &str = "transcribe";

/// Installs an audio config (inline `input_audio` part), a route over it and a mapping from
/// `quickstart-media/uploads/` to that route. `url` is the provider endpoint.
pub async fn install_quickstart_media(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    url: &str,
) -> Result<(), crate::RunError> {
    let model = demo_model(db, keyring, "quickstart-audio", url, "demo-audio-model").await?;
    let prompt = db
        .upsert_prompt(
            "quickstart-transcribe",
            "v1",
            &json!([{"role": "user", "content": [
                {"type": "text", "text": "请转写这段音频（{{MEDIA_KEY}}）。"},
                {"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}}
            ]}]),
            &None,
            &None,
        )
        .await?;
    let config = db
        .upsert_config(
            "quickstart-audio",
            model,
            Some(prompt),
            None,
            Some("installed by ai-runner quickstart: audio"),
        )
        .await?;
    let project = db.upsert_project(QUICKSTART_PROJECT).await?;
    let route = db
        .upsert_route(
            project,
            QUICKSTART_MEDIA_ROUTE,
            &crate::store::admin::NewRoute {
                policy: "primary_backup",
                variables: Some(json!({"MEDIA_MODE": "inline"})),
                ..Default::default()
            },
        )
        .await?;
    db.upsert_route_member(route, config, 1, 1, true).await?;
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
