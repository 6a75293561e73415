//! The chat-completions provider's port: [`Provider`], the request it is given, what it answers
//! (an [`Exchange`]), its errors, the streaming relay and the budget gate of billed retries.

use std::future::Future;

use serde_json::{Map, Value};

use crate::code::Code;
use crate::secret::Secret;

use super::BoxFuture;

/// Why the provider did not give a usable answer (after retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 429.
    #[error("provider rate limit (HTTP 429){}", detail(.0))]
    RateLimited(Option<String>),
    /// HTTP 5xx.
    #[error("provider server error (HTTP {status}){}", detail(.message))]
    Server {
        /// Status.
        status: u16,
        /// Provider's error message, scrubbed.
        message: Option<String>,
    },
    /// Any other non-2xx status (400, 401, 404, ...).
    #[error("provider rejected the request (HTTP {status}){}", detail(.message))]
    Status {
        /// Status.
        status: u16,
        /// Provider's error message, scrubbed.
        message: Option<String>,
    },
    /// A 3xx answer: redirects are never followed (a provider, or anything on the path of an
    /// `http://` base URL, could otherwise send the runner, and its key, anywhere).
    #[error("provider answered with a redirect (HTTP {status}{}); redirects are not followed", location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirect {
        /// Status.
        status: u16,
        /// The `Location` it named, scheme and host only (never a path or query).
        location: Option<String>,
    },
    /// No complete answer within `AI_TIMEOUT`.
    #[error("provider did not answer within {0} ms")]
    Timeout(u64),
    /// Connection refused, reset, DNS, TLS.
    #[error("cannot reach provider: {0}")]
    Network(String),
    /// The request could not be sent at all (bad URL, bad header).
    #[error("cannot send request: {0}")]
    Request(String),
    /// A 2xx answer that is not a chat completion (not JSON, no choices, broken stream).
    #[error("provider answer is unusable: {0}")]
    BadResponse(String),
    /// The answer (body or stream) grew past the limit; the rest was not read.
    #[error("provider answer is larger than {0} bytes (AI_MAX_RESPONSE_BYTES)")]
    TooLarge(u64),
    /// The deadline left no time for (another) attempt; the last failure, if any, is in the text.
    #[error("deadline reached: {0}")]
    Deadline(String),
    /// The streaming caller went away; the provider's stream was dropped after this many chunks
    /// had been relayed.
    #[error("the caller disconnected after {0} relayed chunks; the provider's stream was dropped")]
    CallerGone(usize),
}

fn detail(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

impl ProviderError {
    /// Stable code (compat.md section 5).
    pub fn code(&self) -> Code {
        match self {
            Self::RateLimited(_) => Code::Http429RateLimit,
            Self::Server { .. } => Code::Http5xxServerError,
            Self::Status { .. } => Code::HttpStatusError,
            Self::Timeout(_) => Code::NetworkTimeout,
            Self::Network(_) => Code::NetworkError,
            Self::Request(_) => Code::RequestError,
            Self::BadResponse(_) => Code::BadProviderResponse,
            Self::TooLarge(_) => Code::ResponseTooLarge,
            Self::Redirect { .. } => Code::ProviderRedirect,
            Self::Deadline(_) => Code::DeadlineExceeded,
            Self::CallerGone(_) => Code::ClientDisconnected,
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Server { .. } | Self::Timeout(_) | Self::Network(_)
        )
    }
}

/// One request to send (borrowed from the run).
#[derive(Debug, Clone, Copy)]
pub struct ProviderRequest<'a> {
    /// Full chat-completions URL.
    pub url: &'a str,
    /// Bearer key.
    pub api_key: &'a Secret,
    /// JSON body, in wire order.
    pub body: &'a Map<String, Value>,
    /// `X-Trace-Id`.
    pub trace_id: &'a str,
    /// Read the answer as an SSE stream.
    pub stream: bool,
    /// No attempt or backoff may run past this.
    pub deadline: Option<std::time::Instant>,
    /// A streaming caller waiting for the chunks as they arrive (the OpenAI-compatible API).
    /// Once one has been relayed, the exchange is not retried: the caller has seen the answer.
    pub tap: Option<&'a StreamTap>,
    /// Asked before a retry of an attempt the provider may have billed (see [`RetryGate`]).
    pub gate: Option<&'a dyn RetryGate>,
    /// Another route member can take the call: a retry that would wait longer than
    /// `AI_RETRY_AFTER_CAP_MS` (the provider's `Retry-After`) or than the deadline leaves is not
    /// waited for; the exchange ends with the provider's own failure, which hands over.
    pub hand_over: bool,
}

/// What a provider asks before it retries an attempt the provider may have billed (an answer
/// that began, a request that timed out): each billed attempt must be covered, so the call's
/// budget reservation grows by another attempt's maximum cost first. Retries of attempts that
/// cost nothing (429, 5xx, no connection) are not asked about.
pub trait RetryGate: Send + Sync + std::fmt::Debug {
    /// `true`: send the retry; `false` (no room for it): the exchange ends with the attempt it
    /// would have retried.
    fn admit(&self) -> BoxFuture<'_, bool>;
}

/// A streaming caller's end of a provider stream: each parsed `chat.completion.chunk` is sent
/// through a bounded channel as it arrives (a slow caller slows the read, never grows memory).
/// Cloning shares the channel and the "started" flag.
#[derive(Debug, Clone)]
pub struct StreamTap {
    tx: tokio::sync::mpsc::Sender<Value>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StreamTap {
    /// Chunks a slow caller may lag behind the provider by.
    pub const BUFFER: usize = 64;

    /// A tap and the receiver the caller's connection reads from.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<Value>) {
        let (tx, rx) = tokio::sync::mpsc::channel(Self::BUFFER);
        let tap = Self {
            tx,
            sent: std::sync::Arc::default(),
        };
        (tap, rx)
    }

    /// Relays one chunk; `false` when the caller has gone away.
    pub async fn send(&self, chunk: Value) -> bool {
        let ok = self.tx.send(chunk).await.is_ok();
        if ok {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        ok
    }

    /// How many chunks have been relayed.
    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether any chunk has reached the caller (from then on nothing is retried or handed over).
    pub fn started(&self) -> bool {
        self.sent() > 0
    }

    /// Whether the caller has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What happened on the wire, success or not.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// HTTP attempts made (1 + retries).
    pub attempts: u32,
    /// Status of the last response, 0 when none was obtained.
    pub http_status: u16,
    /// Wall time from the first send to the final answer, including backoff.
    pub provider_ms: u64,
    /// The same in microseconds (for overhead measurements).
    pub provider_us: u64,
    /// Time to first content token on the successful attempt (streams).
    pub ttft_ms: Option<u64>,
    /// The answer (assembled for streams) or the provider's JSON error body, scrubbed.
    pub body: Option<Value>,
    /// Set when the exchange failed.
    pub error: Option<ProviderError>,
    /// Earlier attempts the provider may have billed before they were retried: a stream that
    /// broke off after the answer began, or a request that timed out.
    pub earlier: Vec<BilledAttempt>,
}

/// An attempt that was retried but may still have been billed.
#[derive(Debug, Clone, Default)]
pub struct BilledAttempt {
    /// Its status (2xx: the answer had begun; 0: no answer, it timed out).
    pub http_status: u16,
    /// What arrived (the partial answer, maybe with usage).
    pub body: Option<Value>,
}

/// Something that can answer chat-completion requests.
pub trait Provider: Send + Sync {
    /// Sends with retries; never fails outright (failures are in [`Exchange::error`]).
    fn send(&self, req: ProviderRequest<'_>) -> impl Future<Output = Exchange> + Send;
}
