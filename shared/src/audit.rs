//! Turning a finished run into its `ai_call_logs` row.
//!
//! Documented contract: `run_once` writes exactly one committed row per run once the config is
//! resolved, success or failure (an unknown config_key has nothing to attribute a row to, so it
//! only returns `CONFIG_NOT_FOUND`). Routes write one row per member attempt.
//!
//! Invariants: `request_body_json` is the body sent plus `"_trace_id"`, never the key;
//! everything that came back from the provider is scrubbed of the key before it is stored.

use serde_json::{Map, Value};

use crate::code::Code;
use crate::model::AuditRow;
use crate::secret::Secret;

/// Who the row is about (everything known before the provider is called).
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The config that ran.
    pub config_key: String,
    /// The model sent.
    pub model: Option<String>,
    /// The run's trace id.
    pub trace_id: String,
    /// What fired the run.
    pub trigger_source: String,
    /// Platform request id.
    pub request_id: Option<String>,
    /// Who called (API calls).
    pub caller: Option<crate::model::access::Caller>,
    /// Project label.
    pub project_name: Option<String>,
    /// Route key (route runs only).
    pub route_key: Option<String>,
    /// Route policy (route runs only).
    pub route_policy: Option<String>,
    /// Member attempt number within the route, 1-based.
    pub route_attempt: Option<u32>,
}

/// What happened, as far as the audit row cares.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The request body, if one was built.
    pub body: Option<&'a Map<String, Value>>,
    /// The provider's answer or error body.
    pub response: Option<&'a Value>,
    /// Usage over every billed call of the run (content retries summed); the answer's own when
    /// absent.
    pub usage: Option<&'a Value>,
    /// Last HTTP status (0 = none).
    pub http_status: u16,
    /// Whole run.
    pub duration_ms: u64,
    /// Provider wall time.
    pub provider_ms: Option<u64>,
    /// Time to first token.
    pub ttft_ms: Option<u64>,
    /// HTTP attempts.
    pub attempts: u32,
    /// `(code, message)` on failure.
    pub error: Option<(Code, String)>,
    /// The route moved on from this member because of its error.
    pub handover: bool,
    /// What the provider calls cost (`None`: the run stopped before pricing).
    pub charge: Option<crate::model::cost::Charge>,
}

/// Builds the row; `key` is scrubbed from everything that came back, and every `redact` value
/// (presigned URL signatures, inline media) from everything stored.
pub fn row(s: &Subject, f: &Facts<'_>, key: Option<&Secret>, redact: &[String]) -> AuditRow {
    let scrub = |t: String| {
        let t = match key {
            Some(k) => k.scrub(&t),
            None => t,
        };
        redact_all(t, redact)
    };
    let request_body_json = f.body.map(|b| {
        let mut with_trace = b.clone();
        with_trace.insert("_trace_id".into(), Value::String(s.trace_id.clone()));
        redact_all(Value::Object(with_trace).to_string(), redact)
    });
    let usage = f.usage.or_else(|| f.response.and_then(|r| r.get("usage")));
    let tokens = |name: &str| usage.and_then(|u| u.get(name)).and_then(Value::as_i64);
    AuditRow {
        config_key: s.config_key.clone(),
        http_status: f.http_status,
        duration_ms: f.duration_ms,
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
        total_tokens: tokens("total_tokens"),
        response_id: f
            .response
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .map(|id| id.chars().take(191).collect()),
        error_code: f.error.as_ref().map(|(c, _)| c.as_str().to_owned()),
        error_message: f.error.as_ref().map(|(_, m)| scrub(m.clone())),
        request_body_json,
        response_body_json: f.response.map(|r| scrub(r.to_string())),
        trace_id: s.trace_id.clone(),
        status: if f.error.is_some() { "error" } else { "ok" },
        attempts: f.attempts,
        provider_ms: f.provider_ms,
        ttft_ms: f.ttft_ms,
        trigger_source: s.trigger_source.clone(),
        request_id: s.request_id.clone(),
        model_name: s.model.clone(),
        project_name: s.project_name.clone(),
        route_key: s.route_key.clone(),
        route_policy: s.route_policy.clone(),
        route_attempt: s.route_attempt,
        handover_reason: f
            .error
            .as_ref()
            .filter(|_| f.handover)
            .map(|(c, _)| c.as_str().to_owned()),
        row_key: Some(format!("{}-{}", s.trace_id, s.route_attempt.unwrap_or(1))),
        caller_key: s.caller.as_ref().and_then(|c| c.access_key_id.clone()),
        caller_principal: s.caller.as_ref().and_then(|c| c.principal.clone()),
        source_ip: s.caller.as_ref().and_then(|c| c.source_ip.clone()),
        cost_nano_usd: f.charge.and_then(|c| c.nano),
        cost_status: f.charge.map(|c| c.status.as_str().to_owned()),
        price_id: f.charge.and_then(|c| c.price_id),
        created_at_ms: Some(crate::model::now_ms()),
    }
}

/// What the audit columns hold at most (MySQL sizes; SQLite gets the same, so both engines keep
/// the same rows): text columns in characters, error messages in bytes (TEXT).
mod limits {
    pub const KEY: usize = 191;
    pub const CODE: usize = 64;
    pub const TRACE: usize = 64;
    pub const STATUS: usize = 16;
    pub const TRIGGER: usize = 32;
    pub const REQUEST_ID: usize = 128;
    pub const POLICY: usize = 32;
    pub const CALLER_KEY: usize = 128;
    pub const PRINCIPAL: usize = 512;
    pub const SOURCE_IP: usize = 64;
    pub const MESSAGE_BYTES: usize = 60_000;
}

/// The row cut to fit its columns, so no content (a model's answer inside a validation message, a
/// huge body, a token count out of range) can make the insert fail: text is cut at a character
/// boundary and marked `…[truncated]`, numbers are clamped to the INT range, and a body over
/// `max_body` bytes is replaced by valid JSON saying what it was (size, SHA-256, its start).
pub fn bounded(mut row: AuditRow, max_body: usize) -> AuditRow {
    use limits::*;
    let cut = |s: &mut String, max: usize| {
        if s.chars().count() > max {
            *s = s.chars().take(max).collect();
        }
    };
    let cut_opt = |s: &mut Option<String>, max: usize| {
        if let Some(v) = s {
            cut(v, max);
        }
    };
    cut(&mut row.config_key, KEY);
    cut(&mut row.trace_id, TRACE);
    cut(&mut row.trigger_source, TRIGGER);
    cut_opt(&mut row.response_id, KEY);
    cut_opt(&mut row.error_code, CODE);
    cut_opt(&mut row.request_id, REQUEST_ID);
    cut_opt(&mut row.caller_key, CALLER_KEY);
    cut_opt(&mut row.caller_principal, PRINCIPAL);
    cut_opt(&mut row.source_ip, SOURCE_IP);
    cut_opt(&mut row.model_name, KEY);
    cut_opt(&mut row.project_name, KEY);
    cut_opt(&mut row.route_key, KEY);
    cut_opt(&mut row.route_policy, POLICY);
    cut_opt(&mut row.handover_reason, CODE);
    if row.status.len() > STATUS {
        row.status = "error";
    }
    if let Some(m) = &mut row.error_message
        && m.len() > MESSAGE_BYTES
    {
        let mut end = MESSAGE_BYTES;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push_str("…[truncated]");
    }
    let int = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    for t in [
        &mut row.prompt_tokens,
        &mut row.completion_tokens,
        &mut row.total_tokens,
    ] {
        *t = t.map(int);
    }
    let max_u = u64::try_from(i32::MAX).unwrap_or(u64::MAX);
    row.duration_ms = row.duration_ms.min(max_u);
    row.provider_ms = row.provider_ms.map(|v| v.min(max_u));
    row.ttft_ms = row.ttft_ms.map(|v| v.min(max_u));
    row.attempts = row
        .attempts
        .min(u32::try_from(i32::MAX).unwrap_or(u32::MAX));
    row.route_attempt = row
        .route_attempt
        .map(|v| v.min(u32::try_from(i32::MAX).unwrap_or(u32::MAX)));
    for body in [&mut row.request_body_json, &mut row.response_body_json] {
        if let Some(b) = body.as_ref().filter(|b| b.len() > max_body) {
            *body = Some(body_stub(b));
        }
    }
    row
}

/// Valid JSON standing in for a body too large to store.
fn body_stub(body: &str) -> String {
    use sha2::Digest;
    let sha = crate::hex::encode(&sha2::Sha256::digest(body.as_bytes()));
    let head: String = body.chars().take(4096).collect();
    serde_json::json!({"_truncated": true, "bytes": body.len(), "sha256": sha, "head": head})
        .to_string()
}

fn redact_all(mut text: String, redact: &[String]) -> String {
    for r in redact.iter().filter(|r| r.len() >= 8) {
        if text.contains(r.as_str()) {
            text = text.replace(r.as_str(), "[redacted]");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_row_carries_the_trace_id_in_the_body_and_scrubs_the_key() {
        let body = json!({"model":"m","messages":[]})
            .as_object()
            .cloned()
            .unwrap();
        let response = json!({"id":"r1","error":{"message":"bad key sk-test-secret-1"},"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}});
        let s = Subject {
            config_key: "k".into(),
            trace_id: "abc".into(),
            ..Default::default()
        };
        let f = Facts {
            body: Some(&body),
            response: Some(&response),
            http_status: 401,
            error: Some((
                Code::HttpStatusError,
                "rejected: bad key sk-test-secret-1".into(),
            )),
            ..Default::default()
        };
        let key = Secret::new("sk-test-secret-1");
        let r = row(&s, &f, Some(&key), &[]);
        let req: Value = serde_json::from_str(r.request_body_json.as_deref().unwrap()).unwrap();
        assert_eq!(req["_trace_id"], "abc");
        assert_eq!(
            req.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["model", "messages", "_trace_id"]
        );
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.total_tokens),
            (Some(3), Some(4), Some(7))
        );
        assert_eq!(r.response_id.as_deref(), Some("r1"));
        assert_eq!(r.status, "error");
        let all = format!("{r:?}");
        assert!(!all.contains("sk-test-secret-1"), "{all}");
    }

    #[test]
    fn a_trigger_label_longer_than_its_column_is_cut_to_32_characters() {
        // A run's trigger is a closed vocabulary; a spooled row from another version may
        // still carry any label, and the row must fit its column.
        let s = Subject {
            config_key: "k".into(),
            trace_id: "abc".into(),
            trigger_source: "a-caller-chosen-label-much-longer-than-thirty-two-characters".into(),
            ..Default::default()
        };
        let r = bounded(row(&s, &Facts::default(), None, &[]), 65_536);
        assert_eq!(r.trigger_source.chars().count(), 32, "cut to its column");
    }
}
