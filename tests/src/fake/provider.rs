//! A scripted, in-process [`Provider`]: each URL answers from its own queue of [`Exchange`]s
//! (the last one repeats, as the loopback `ProviderServer` does), and every request is recorded.
//!
//! Invariants, the port's contract as `HttpProvider` keeps it: `send` never fails outright (an
//! unscripted URL answers a [`ProviderError::Network`] exchange, as an unreachable host would);
//! nothing is sent when the request's deadline leaves less than one attempt's worth of time
//! (a [`ProviderError::Deadline`] exchange with 0 attempts, nothing recorded); a scripted delay
//! that would pass the deadline is cut there. An [`Exchange`] is what the provider answered
//! *after* its retries: retrying is `HttpProvider`'s job, tested against real HTTP servers.
//! Handles are cheap clones of one shared script, so a test keeps one while the runner owns
//! another.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ai_runner::ports::{Exchange, Provider, ProviderError, ProviderRequest};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

/// The shortest attempt `HttpProvider` starts before a deadline (its `MIN_ATTEMPT`).
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// One scripted answer: an exchange, given after an optional delay.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What the provider answered.
    pub exchange: Exchange,
    /// How long it took to answer.
    pub delay: Duration,
}

impl Answer {
    /// A 200 chat completion with this content and usage (12 prompt, 8 completion tokens).
    pub fn content(content: &str) -> Self {
        Self::usage(content, 12, 8)
    }

    /// A 200 chat completion with this content and usage.
    pub fn usage(content: &str, prompt_tokens: i64, completion_tokens: i64) -> Self {
        Self::from(Exchange {
            attempts: 1,
            http_status: 200,
            provider_ms: 1,
            provider_us: 1_000,
            body: Some(completion(content, prompt_tokens, completion_tokens)),
            ..Exchange::default()
        })
    }

    /// An HTTP error after `attempts` tries, with an OpenAI-shaped error body; the error is the
    /// one `HttpProvider` reports for that status.
    pub fn error(status: u16, message: &str, attempts: u32) -> Self {
        let msg = Some(message.to_owned());
        let error = match status {
            429 => ProviderError::RateLimited(msg),
            500..=599 => ProviderError::Server {
                status,
                message: msg,
            },
            _ => ProviderError::Status {
                status,
                message: msg,
            },
        };
        Self::from(Exchange {
            attempts,
            http_status: status,
            provider_ms: 1,
            provider_us: 1_000,
            body: Some(json!({"error": {"message": message, "type": "fake_error"}})),
            error: Some(error),
            ..Exchange::default()
        })
    }

    /// This answer, given only after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }
}

impl From<Exchange> for Answer {
    fn from(exchange: Exchange) -> Self {
        Self {
            exchange,
            delay: Duration::ZERO,
        }
    }
}

/// A 200 `chat.completion` body.
pub fn completion(content: &str, prompt_tokens: i64, completion_tokens: i64) -> Value {
    json!({
        "id": format!("chatcmpl-fake-{}", ai_runner::run::new_trace_id()),
        "object": "chat.completion",
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    })
}

/// A request the provider received.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The URL.
    pub url: String,
    /// The bearer key, exposed (tests check which key went where).
    pub api_key: String,
    /// The body, in wire order.
    pub body: Map<String, Value>,
    /// `X-Trace-Id`.
    pub trace_id: String,
    /// Whether a stream was asked for.
    pub stream: bool,
}

#[derive(Debug, Default)]
struct Script {
    queue: VecDeque<Answer>,
    last: Option<Answer>,
}

#[derive(Debug, Default)]
struct Inner {
    scripts: HashMap<String, Script>,
    sent: Vec<Sent>,
}

/// The scripted provider (cheap to clone: clones share the script and the record).
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    inner: Arc<Mutex<Inner>>,
    /// Closed: answers go out; open with permits 0: every call waits until [`Self::release`].
    gate: Arc<Semaphore>,
}

impl Default for ScriptedProvider {
    fn default() -> Self {
        let gate = Semaphore::new(0);
        gate.close();
        Self {
            inner: Arc::default(),
            gate: Arc::new(gate),
        }
    }
}

impl ScriptedProvider {
    /// A provider with no scripts (every URL unreachable).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `url` answers these in order, the last one repeating.
    pub fn script(&self, url: &str, answers: impl IntoIterator<Item = Answer>) -> &Self {
        self.lock().scripts.insert(
            url.to_owned(),
            Script {
                queue: answers.into_iter().collect(),
                last: None,
            },
        );
        self
    }

    /// A provider whose calls wait, once recorded, until [`Self::release`] (so a test can line
    /// up concurrent calls without relying on timing).
    pub fn held() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            ..Self::default()
        }
    }

    /// Lets every held call (and every later one) answer.
    pub fn release(&self) {
        self.gate.close();
    }

    /// Every request received, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// The requests `url` received.
    pub fn sent_to(&self, url: &str) -> Vec<Sent> {
        self.lock()
            .sent
            .iter()
            .filter(|s| s.url == url)
            .cloned()
            .collect()
    }

    /// The next answer for `url` (`None`: nothing scripted there).
    fn next(&self, url: &str) -> Option<Answer> {
        let mut inner = self.lock();
        let script = inner.scripts.get_mut(url)?;
        match script.queue.pop_front() {
            Some(a) => {
                script.last = Some(a.clone());
                Some(a)
            }
            None => script.last.clone(),
        }
    }
}

fn deadline_exchange(why: &str) -> Exchange {
    Exchange {
        error: Some(ProviderError::Deadline(why.to_owned())),
        ..Exchange::default()
    }
}

impl Provider for ScriptedProvider {
    async fn send(&self, req: ProviderRequest<'_>) -> Exchange {
        if req
            .deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) < MIN_ATTEMPT)
        {
            return deadline_exchange("no time left for an attempt");
        }
        self.lock().sent.push(Sent {
            url: req.url.to_owned(),
            api_key: req.api_key.expose().to_owned(),
            body: req.body.clone(),
            trace_id: req.trace_id.to_owned(),
            stream: req.stream,
        });
        // A closed gate answers at once; an open one holds the call until it is closed.
        let _held = self.gate.acquire().await;
        let Some(answer) = self.next(req.url) else {
            return Exchange {
                attempts: 1,
                error: Some(ProviderError::Network(format!(
                    "nothing scripted answers {}",
                    req.url
                ))),
                ..Exchange::default()
            };
        };
        if !answer.delay.is_zero() {
            let left = req
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            match left {
                Some(left) if left < answer.delay => {
                    tokio::time::sleep(left).await;
                    let mut ex = deadline_exchange(&format!(
                        "the provider had not answered when the deadline came ({} ms)",
                        left.as_millis()
                    ));
                    ex.attempts = 1;
                    return ex;
                }
                _ => tokio::time::sleep(answer.delay).await,
            }
        }
        answer.exchange
    }
}
