//! The scripted provider the tests drive over real HTTP: it records every request it gets
//! (headers and body) and answers from a script: each request takes the next scripted reply, the
//! last one repeats. Only ever binds 127.0.0.1.

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
    /// A 200 chat completion whose content depends on the request, not on the order of calls:
    /// the answer of the first needle found in the last message's text, else `default`
    /// (two tools calling concurrently get the same answers).
    Lookup {
        /// (needle, answer), tried in order.
        answers: Vec<(String, String)>,
        /// The answer when no needle is found.
        default: String,
    },
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
            Reply::Lookup { answers, default } => {
                reply = Reply::content(&lookup(&body, &answers, &default));
            }
            Reply::Trickle { events, every } => return trickle(events, every),
            other => return render(other, &auth),
        }
    }
}

/// The answer of the first needle in the last message's text (its parts' texts joined).
pub(super) fn lookup(body: &[u8], answers: &[(String, String)], default: &str) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut strings = Vec::new();
    if let Some(last) = v
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
    {
        crate::template::collect_strings(last, &mut strings);
    }
    let text = strings.join("\n");
    answers
        .iter()
        .find(|(needle, _)| text.contains(needle.as_str()))
        .map_or(default, |(_, a)| a.as_str())
        .to_owned()
}

pub(super) async fn probe_media(body: &[u8]) -> Reply {
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

pub(super) fn render(reply: Reply, auth: &str) -> Response {
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
        Reply::Delayed(..) | Reply::MediaProbe | Reply::Trickle { .. } | Reply::Lookup { .. } => (
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
