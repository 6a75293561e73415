//! The OpenAI-compatible provider client: one pooled HTTP client per process, retries with
//! exponential backoff and jitter, `Retry-After`, SSE streaming.
//!
//! Invariants: the stored URL is POSTed to verbatim; every attempt of one run carries the same
//! `X-Trace-Id`; the API key appears only in the `Authorization` header (errors and bodies that
//! come back are scrubbed of it); only 429, 5xx, timeouts and connection errors are retried, and
//! nothing once a chunk has reached a streaming caller ([`StreamTap`]), whose chunks are scrubbed
//! of the key too; an attempt the provider may have billed is retried only when the request's
//! [`crate::ports::RetryGate`] admits another.

pub mod sse;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use serde_json::Value;

use crate::config::HttpSettings;
use crate::ports::{BilledAttempt, Exchange, Provider, ProviderError, ProviderRequest, StreamTap};
use crate::secret::Secret;

/// The reqwest-based client (rustls, keep-alive, pooled), built once per process.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    client: reqwest::Client,
    settings: HttpSettings,
}

struct Attempt {
    status: u16,
    body: Option<Value>,
    ttft_ms: Option<u64>,
    retry_after: Option<Duration>,
    error: Option<ProviderError>,
}

/// A plain client for the platform's own endpoints (the Lambda Runtime API's init-error report,
/// the demo provider's media fetch): no provider settings, built where it is needed.
#[allow(clippy::disallowed_methods)] // this module is where HTTP clients are built
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

impl HttpProvider {
    /// Builds the process-wide client.
    #[allow(clippy::disallowed_methods)] // this module is where HTTP clients are built
    pub fn new(settings: HttpSettings) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            // Never follow a redirect: a 302 to a metadata address would be fetched and kept as
            // the answer, and a 307 would re-send the POST with its key. A 3xx is an error.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .tcp_keepalive(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ai-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Request(e.to_string()))?;
        Ok(Self { client, settings })
    }

    /// The backoff before retry number `retry` (1-based).
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.settings.retry_after_cap);
        }
        let base =
            self.settings.retry_base.as_secs_f64() * 2f64.powi(retry.saturating_sub(1) as i32);
        let j = self.settings.retry_jitter;
        let factor = if j > 0.0 {
            rand::thread_rng().gen_range((1.0 - j)..=(1.0 + j))
        } else {
            1.0
        };
        Duration::from_secs_f64((base * factor).clamp(0.0, 300.0))
    }

    async fn attempt(
        &self,
        req: &ProviderRequest<'_>,
        started: Instant,
        timeout: Duration,
    ) -> Attempt {
        let timeout_ms = timeout.as_millis() as u64;
        let sent = self
            .client
            .post(req.url)
            .bearer_auth(req.api_key.expose())
            .header("X-Trace-Id", req.trace_id)
            .json(req.body)
            .timeout(timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return failed(0, None, transport_error(&e, timeout_ms, req.api_key)),
        };
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(location_origin);
            return failed(status, None, ProviderError::Redirect { status, location });
        }
        let retry_after = retry_after(resp.headers());
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if (200..300).contains(&status) && req.stream && is_sse {
            return self
                .read_stream(resp, started, timeout_ms, req.api_key, req.tap)
                .await;
        }
        let cap = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > cap) {
            return failed(status, None, ProviderError::TooLarge(cap));
        }
        // Read up to the cap, never more (a body may lie about, or omit, its length).
        let mut bytes: Vec<u8> = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) if (bytes.len() + c.len()) as u64 > cap => {
                    return failed(status, None, ProviderError::TooLarge(cap));
                }
                Ok(c) => bytes.extend_from_slice(&c),
                Err(e) => {
                    return failed(status, None, transport_error(&e, timeout_ms, req.api_key));
                }
            }
        }
        let text = req.api_key.scrub(&String::from_utf8_lossy(&bytes));
        let json = serde_json::from_str::<Value>(&text).ok();
        let message = json.as_ref().and_then(error_message);
        let error = match status {
            200..=299 => match &json {
                Some(v) if v.get("choices").is_some_and(Value::is_array) => None,
                Some(_) => Some(ProviderError::BadResponse("JSON without choices".into())),
                None => Some(ProviderError::BadResponse(format!(
                    "body is not JSON ({} bytes)",
                    bytes.len()
                ))),
            },
            429 => Some(ProviderError::RateLimited(message)),
            500..=599 => Some(ProviderError::Server { status, message }),
            _ => Some(ProviderError::Status { status, message }),
        };
        Attempt {
            status,
            body: json,
            ttft_ms: None,
            retry_after,
            error,
        }
    }

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        started: Instant,
        timeout_ms: u64,
        key: &Secret,
        tap: Option<&StreamTap>,
    ) -> Attempt {
        let status = resp.status().as_u16();
        let mut asm = match tap {
            Some(_) => sse::SseAssembler::relaying(),
            None => sse::SseAssembler::new(),
        };
        let mut ttft = None;
        let mut read: u64 = 0;
        let cap = self.settings.max_response_bytes;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            // A stream that breaks off keeps what arrived (billed text, maybe usage).
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    return failed(status, asm.partial(), transport_error(&e, timeout_ms, key));
                }
            };
            read += chunk.len() as u64;
            if read > cap {
                return failed(status, asm.partial(), ProviderError::TooLarge(cap));
            }
            match asm.push(&chunk) {
                Ok(out) => {
                    if out.first_content {
                        ttft = Some(started.elapsed().as_millis() as u64);
                    }
                    if let Some(tap) = tap {
                        for c in asm.take_chunks() {
                            // A provider may echo the key: what reaches the caller is scrubbed.
                            if !tap.send(key.scrub_json(c)).await {
                                let gone = ProviderError::CallerGone(tap.sent());
                                return failed(status, asm.partial(), gone);
                            }
                        }
                    }
                    if out.done {
                        break;
                    }
                }
                Err(e) => {
                    let kept = asm.partial();
                    return failed(status, kept, ProviderError::BadResponse(key.scrub(&e)));
                }
            }
        }
        match asm.finish() {
            Ok(v) => Attempt {
                status,
                body: Some(v),
                ttft_ms: ttft,
                retry_after: None,
                error: None,
            },
            Err(e) => failed(status, None, ProviderError::BadResponse(e)),
        }
    }
}

/// The shortest attempt worth starting before a deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

fn failed(status: u16, body: Option<Value>, error: ProviderError) -> Attempt {
    Attempt {
        status,
        body,
        ttft_ms: None,
        retry_after: None,
        error: Some(error),
    }
}

impl Provider for HttpProvider {
    async fn send(&self, req: ProviderRequest<'_>) -> Exchange {
        let started = Instant::now();
        let mut attempts = 0;
        let mut earlier = Vec::new();
        let exchange = |attempts, a: Attempt, earlier| Exchange {
            earlier,
            attempts,
            http_status: a.status,
            provider_ms: started.elapsed().as_millis() as u64,
            provider_us: started.elapsed().as_micros() as u64,
            ttft_ms: a.ttft_ms,
            body: a.body,
            error: a.error,
        };
        let mut last: Option<Attempt> = None;
        loop {
            // What the deadline leaves for this attempt; too little to be worth starting ends the
            // run here, with the last failure named.
            let mut timeout = self.settings.timeout;
            let mut cut = false;
            if let Some(deadline) = req.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < MIN_ATTEMPT {
                    let why = last.as_ref().and_then(|a| a.error.as_ref()).map_or_else(
                        || "no time left for an attempt".to_owned(),
                        |e| format!("no time left to retry after: {e}"),
                    );
                    let mut a = last
                        .unwrap_or_else(|| failed(0, None, ProviderError::Deadline(String::new())));
                    a.error = Some(ProviderError::Deadline(why));
                    return exchange(attempts, a, earlier);
                }
                if left < timeout {
                    timeout = left;
                    cut = true;
                }
            }
            attempts += 1;
            let attempt_started = Instant::now();
            let mut a = self.attempt(&req, attempt_started, timeout).await;
            if cut && matches!(a.error, Some(ProviderError::Timeout(_))) {
                a.error = Some(ProviderError::Deadline(format!(
                    "the provider had not answered when the deadline came ({} ms)",
                    timeout.as_millis()
                )));
                return exchange(attempts, a, earlier);
            }
            // A caller that has seen part of an answer cannot be given another one.
            let relayed = req.tap.is_some_and(StreamTap::started);
            let retry = !relayed
                && a.error
                    .as_ref()
                    .is_some_and(|e| e.retryable() && attempts <= self.settings.max_retries);
            if !retry {
                return exchange(attempts, a, earlier);
            }
            let wait = self.backoff(attempts, a.retry_after);
            let past_deadline = req
                .deadline
                .is_some_and(|d| Instant::now() + wait + MIN_ATTEMPT > d);
            // The next member answers sooner than this one after a long wait: hand over now.
            let too_long = a
                .retry_after
                .is_some_and(|ra| ra > self.settings.retry_after_cap);
            if req.hand_over && (past_deadline || too_long) {
                tracing::info!(
                    trace_id = req.trace_id,
                    attempt = attempts,
                    status = a.status,
                    wait_ms = a.retry_after.unwrap_or(wait).as_millis() as u64,
                    "not waiting to retry: the next route member takes the call"
                );
                return exchange(attempts, a, earlier);
            }
            if past_deadline {
                let why = a
                    .error
                    .as_ref()
                    .map(|e| format!("no time left to retry after: {e}"))
                    .unwrap_or_default();
                a.error = Some(ProviderError::Deadline(why));
                return exchange(attempts, a, earlier);
            }
            // The provider may bill an answer that began, or a request it was still working on:
            // such an attempt is retried only once its caller has covered another one.
            if (200..300).contains(&a.status) || matches!(a.error, Some(ProviderError::Timeout(_)))
            {
                if let Some(gate) = req.gate
                    && !gate.admit().await
                {
                    return exchange(attempts, a, earlier);
                }
                earlier.push(BilledAttempt {
                    http_status: a.status,
                    body: a.body.clone(),
                });
            }
            last = Some(Attempt {
                status: a.status,
                body: a.body.clone(),
                ttft_ms: a.ttft_ms,
                retry_after: None,
                error: a.error.clone(),
            });
            tracing::info!(
                trace_id = req.trace_id,
                attempt = attempts,
                status = a.status,
                code = a.error.as_ref().map(|e| e.code().as_str()),
                wait_ms = wait.as_millis() as u64,
                "retrying provider call"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn transport_error(e: &reqwest::Error, timeout_ms: u64, key: &Secret) -> ProviderError {
    if e.is_timeout() {
        return ProviderError::Timeout(timeout_ms);
    }
    if e.is_builder() {
        return ProviderError::Request(key.scrub(&e.without_url_string()));
    }
    tracing::debug!(error = %key.scrub(&crate::error::chain(e)), "provider transport error");
    // Callers get the root cause ("Connection refused"), logs get the chain above.
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    ProviderError::Network(key.scrub(&root.to_string()))
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}
impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = crate::error::chain(self);
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), "<url>");
        }
        s
    }
}

/// A redirect's target as `scheme://host[:port]`: enough to see where it pointed, never its path
/// or query (which may carry tokens), at most 200 characters.
fn location_origin(location: &str) -> String {
    let origin = match reqwest::Url::parse(location) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            (None, _) => "a URL without a host".to_owned(),
        },
        Err(_) => "a relative URL".to_owned(),
    };
    origin.chars().take(200).collect()
}

/// The provider's `error.message` (OpenAI shape), if any.
fn error_message(v: &Value) -> Option<String> {
    let m = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)?;
    Some(m.chars().take(500).collect())
}

/// `retry-after-ms` (milliseconds) or `Retry-After` (seconds, or an HTTP date). Anything that
/// does not parse, is negative, not finite or absurdly large is capped or ignored, never a panic.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    // Longer than any cap we would honour; keeps the conversion in range.
    const MAX_SECS: f64 = 86_400.0;
    let secs = |v: f64| {
        (v.is_finite() && v >= 0.0)
            .then(|| Duration::try_from_secs_f64(v.min(MAX_SECS)).ok())
            .flatten()
    };
    let text = |name| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return secs(ms / 1000.0);
    }
    let v = text(reqwest::header::RETRY_AFTER.as_str())?;
    if let Ok(n) = v.parse::<f64>() {
        return secs(n);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_redirect_target_is_named_by_its_origin_only() {
        assert_eq!(
            location_origin("http://100.100.100.200/latest/meta-data/ram?token=x"),
            "http://100.100.100.200"
        );
        assert_eq!(
            location_origin("https://h.example:8443/p"),
            "https://h.example:8443"
        );
        assert_eq!(location_origin("/elsewhere"), "a relative URL");
    }

    #[test]
    fn retry_after_never_panics_and_reads_seconds_milliseconds_and_dates() {
        assert_eq!(
            retry_after(&with("retry-after", "2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&with("retry-after-ms", "1500")),
            Some(Duration::from_millis(1500))
        );
        for huge in ["1e20", "1e308", "99999999999999999999999"] {
            assert_eq!(
                retry_after(&with("retry-after", huge)),
                Some(Duration::from_secs(86_400)),
                "{huge}"
            );
            assert_eq!(
                retry_after(&with("retry-after-ms", huge)),
                Some(Duration::from_secs(86_400))
            );
        }
        for junk in [
            "-1",
            "NaN",
            "inf",
            "soon",
            "",
            "1e",
            "Wed, 99 Foo 2015 07:28:00 GMT",
        ] {
            assert_eq!(retry_after(&with("retry-after", junk)), None, "{junk:?}");
        }
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&with("retry-after", &later)).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            retry_after(&with("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
    }
}
