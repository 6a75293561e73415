//! Rendering a run as OpenAI answers: a `chat.completion`, `chat.completion.chunk`s on an SSE
//! stream, the `/v1/models` list, and the response headers that name what answered.
//!
//! Invariants: the answer's `id` (and every chunk's) is the run's trace id; `model`, `choices`
//! (tool calls and `finish_reason` included), `usage` (with its token details) and
//! `system_fingerprint` are the provider's, unchanged; a chunk carries `usage` only when the
//! caller asked for it (`stream_options.include_usage`), and then the stream's last chunk before
//! `[DONE]` is the usage chunk with `choices: []`, as OpenAI's spec says.

use serde_json::{Map, Value, json};

use super::{Answer, Target};
use crate::catalog::plan::Snapshot;
use crate::model::access::StoredKey;

/// An answer ready for any HTTP edge: status, headers (`content-type` first) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// HTTP status.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(&'static str, String)>,
    /// The body: JSON, or a whole SSE stream.
    pub body: String,
}

/// A finished call as one HTTP answer: the completion (or, for a streaming caller, the whole
/// stream at once: edges that cannot stream), or its error object; with the headers naming the
/// run either way.
pub fn answer(a: &Answer, stream: bool, include_usage: bool) -> Rendered {
    let mut r = if !a.result.is_ok() {
        error(&super::ApiError::from_result(&a.result))
    } else if stream {
        Rendered {
            status: 200,
            headers: vec![
                ("content-type", "text/event-stream".to_owned()),
                ("cache-control", "no-cache".to_owned()),
            ],
            body: buffered_stream(a, include_usage),
        }
    } else {
        Rendered {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: completion(a).to_string(),
        }
    };
    r.headers.extend(headers(a));
    r
}

/// An error object as an HTTP answer.
pub fn error(e: &super::ApiError) -> Rendered {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    headers.extend(e.headers());
    Rendered {
        status: e.status,
        headers,
        body: e.body().to_string(),
    }
}

/// The SSE event that ends a stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// One SSE event carrying `v`.
pub fn event(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The `chat.completion` of a successful run: the provider's answer with our trace id.
pub fn completion(a: &Answer) -> Value {
    let r = &a.result;
    let mut body = match &r.response {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    body.insert("id".into(), r.trace_id.clone().into());
    body.insert("object".into(), "chat.completion".into());
    if !body.get("created").is_some_and(Value::is_number) {
        body.insert("created".into(), now_secs().into());
    }
    if !body.get("model").is_some_and(Value::is_string) {
        body.insert(
            "model".into(),
            r.meta.model.clone().unwrap_or_default().into(),
        );
    }
    if !body.contains_key("choices") {
        body.insert(
            "choices".into(),
            json!([{"index": 0, "message": {"role": "assistant", "content": r.content}, "finish_reason": "stop"}]),
        );
    }
    Value::Object(body)
}

/// A provider's chunk as the caller gets it: our trace id, and no usage unless asked for (the
/// provider is always asked for it, so that the audit row has the tokens). `None`: the chunk is
/// the usage chunk and the caller did not ask for usage.
pub fn chunk(mut c: Value, trace_id: &str, include_usage: bool) -> Option<Value> {
    let m = c.as_object_mut()?;
    if !include_usage {
        let usage_only = m
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if usage_only {
            return None;
        }
        m.remove("usage");
    }
    m.insert("id".into(), trace_id.into());
    m.insert("object".into(), "chat.completion.chunk".into());
    Some(c)
}

/// The chunks of an answer that did not arrive as a stream (a provider that answered in one
/// piece, or an edge that cannot stream): per choice its whole delta, then its `finish_reason`,
/// then the usage chunk when asked for.
pub fn chunks_of(completion: &Value, include_usage: bool) -> Vec<Value> {
    let head = |choices: Value| {
        let mut m = Map::new();
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = completion.get(key) {
                m.insert(key.into(), v.clone());
            }
        }
        m.insert("object".into(), "chat.completion.chunk".into());
        m.insert("choices".into(), choices);
        if include_usage {
            m.insert("usage".into(), Value::Null);
        }
        m
    };
    let mut out = Vec::new();
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, c) in choices.iter().enumerate() {
        let index = c.get("index").cloned().unwrap_or_else(|| i.into());
        let msg = c.get("message").cloned().unwrap_or_else(|| json!({}));
        let mut delta = Map::new();
        delta.insert(
            "role".into(),
            msg.get("role")
                .cloned()
                .unwrap_or_else(|| "assistant".into()),
        );
        for key in ["content", "refusal"] {
            if let Some(v) = msg.get(key).filter(|v| !v.is_null()) {
                delta.insert(key.into(), v.clone());
            }
        }
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(n, call)| {
                    let mut call = call.clone();
                    if let Some(m) = call.as_object_mut() {
                        m.insert("index".into(), n.into());
                    }
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(head(json!([
            {"index": index, "delta": delta, "logprobs": null, "finish_reason": null}
        ]))));
        out.push(Value::Object(head(json!([
            {"index": index, "delta": {}, "logprobs": null,
             "finish_reason": c.get("finish_reason").cloned().unwrap_or_else(|| "stop".into())}
        ]))));
    }
    if include_usage {
        let mut last = head(json!([]));
        last.insert(
            "usage".into(),
            completion.get("usage").cloned().unwrap_or(Value::Null),
        );
        out.push(Value::Object(last));
    }
    out
}

/// A complete buffered SSE body for an answer (edges that cannot stream).
pub fn buffered_stream(a: &Answer, include_usage: bool) -> String {
    let mut body: String = chunks_of(&completion(a), include_usage)
        .iter()
        .map(event)
        .collect();
    body.push_str(&trailer(a));
    body.push_str(DONE);
    body
}

/// An SSE comment line naming the audit rows and cost (SDKs skip comments; `curl -N` shows it).
pub fn trailer(a: &Answer) -> String {
    let ids: Vec<String> = a.audit_ids.iter().map(i64::to_string).collect();
    format!(
        ": ai-runner trace_id={} config={} audit_ids={} cost_usd={} cost_status={}\n\n",
        a.result.trace_id,
        a.answered_by.as_deref().unwrap_or("-"),
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.join(",")
        },
        a.result
            .cost
            .map_or_else(|| "-".to_owned(), |c| format!("{c}")),
        a.result.cost_status.map_or("-", |s| s.as_str()),
    )
}

/// The response headers of a finished call: the trace id (also as `x-request-id`, which the SDKs
/// expose as the response's request id), the config that answered, the route, the audit rows,
/// the cost and its status.
pub fn headers(a: &Answer) -> Vec<(&'static str, String)> {
    let r = &a.result;
    let mut h = vec![
        ("x-request-id", r.trace_id.clone()),
        ("x-ai-runner-trace-id", r.trace_id.clone()),
    ];
    if let Some(c) = a.answered_by.as_ref().or(Some(&r.meta.config_key)) {
        h.push(("x-ai-runner-config", c.clone()));
    }
    if let Some(route) = &a.route {
        h.push(("x-ai-runner-route", route.clone()));
    }
    if !a.audit_ids.is_empty() {
        let ids: Vec<String> = a.audit_ids.iter().map(i64::to_string).collect();
        h.push(("x-ai-runner-audit-ids", ids.join(",")));
    }
    if let Some(c) = r.cost {
        h.push(("x-ai-runner-cost-usd", format!("{c}")));
    }
    if let Some(s) = r.cost_status {
        h.push(("x-ai-runner-cost-status", s.as_str().to_owned()));
    }
    if r.audit_deferred.is_some() {
        h.push(("x-ai-runner-audit-deferred", "true".to_owned()));
    }
    h
}

/// The `/v1/models` list: every active config and route, or only those `key` may run.
pub fn models(snapshot: &Snapshot, key: Option<&StoredKey>) -> Value {
    let data: Vec<Value> = runnable(snapshot, key).iter().map(model).collect();
    json!({"object": "list", "data": data})
}

/// `/v1/models/{id}`: one of them, or `None` (404) when it does not exist or the key may not
/// run it (a caller learns nothing of what it may not run).
pub fn model_named(snapshot: &Snapshot, key: Option<&StoredKey>, id: &str) -> Option<Value> {
    runnable(snapshot, key)
        .iter()
        .find(|t| t.model_id() == id)
        .map(model)
}

fn model(t: &Target) -> Value {
    json!({"id": t.model_id(), "object": "model", "created": now_secs(), "owned_by": "ai-runner"})
}

/// Every active config and route `key` may run (all of them without a key).
fn runnable(snapshot: &Snapshot, key: Option<&StoredKey>) -> Vec<Target> {
    let configs = snapshot
        .configs
        .iter()
        .filter(|(_, c)| c.active)
        .map(|(k, _)| Target::Config(k.clone()));
    let routes = snapshot
        .routes
        .keys()
        .map(|(project, route_key)| Target::Route {
            project: project.clone(),
            route_key: route_key.clone(),
        });
    configs
        .chain(routes)
        .filter(|t| key.is_none_or(|k| k.permits(&t.action())))
        .collect()
}

fn now_secs() -> i64 {
    crate::model::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{RunMeta, RunResult};

    const RECORDED: &str =
        include_str!("../../../tests/fixtures/openai/chat-completions-response-recorded.json");

    fn answer(response: Value) -> Answer {
        let mut result = RunResult::failed_early(
            "t1".into(),
            std::time::Instant::now(),
            "k",
            crate::error::RunError::InvalidInput("x".into()),
        );
        result.response = Some(response);
        result.meta = RunMeta {
            config_key: "k".into(),
            model: Some("m".into()),
        };
        Answer {
            result,
            answered_by: Some("k".into()),
            audit_ids: vec![4, 5],
            route: Some("p/r".into()),
        }
    }

    #[test]
    fn a_completion_is_the_providers_answer_under_our_trace_id() {
        let recorded: Value = serde_json::from_str(RECORDED).unwrap();
        let c = completion(&answer(recorded.clone()));
        assert_eq!(c["id"], "t1");
        for key in ["model", "choices", "usage", "system_fingerprint", "created"] {
            assert_eq!(c[key], recorded[key], "{key}");
        }
    }

    #[test]
    fn chunks_drop_usage_unless_asked_and_carry_the_trace_id() {
        let usage_chunk = json!({"id": "x", "choices": [], "usage": {"total_tokens": 3}});
        assert_eq!(chunk(usage_chunk.clone(), "t", false), None);
        assert_eq!(
            chunk(usage_chunk, "t", true).unwrap()["usage"]["total_tokens"],
            3
        );
        let c = chunk(
            json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}}], "usage": null}),
            "t",
            false,
        )
        .unwrap();
        assert_eq!(c["id"], "t");
        assert!(c.get("usage").is_none());
    }

    #[test]
    fn a_whole_answer_becomes_deltas_finish_and_usage() {
        let recorded: Value = serde_json::from_str(RECORDED).unwrap();
        let chunks = chunks_of(&completion(&answer(recorded.clone())), true);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["content"],
            recorded["choices"][0]["message"]["content"]
        );
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[2]["choices"], json!([]));
        assert_eq!(chunks[2]["usage"], recorded["usage"]);
        let tools = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
        let chunks = chunks_of(&tools, false);
        assert_eq!(chunks.len(), 2);
        let delta = &chunks[0]["choices"][0]["delta"];
        assert!(delta.get("content").is_none());
        assert_eq!(delta["tool_calls"][0]["index"], 0);
        assert_eq!(delta["tool_calls"][0]["id"], "call_1");
        assert!(chunks[0].get("usage").is_none());
    }

    #[test]
    fn headers_name_the_config_route_and_audit_rows() {
        let h = headers(&answer(json!({})));
        assert!(h.contains(&("x-ai-runner-audit-ids", "4,5".to_owned())));
        assert!(h.contains(&("x-ai-runner-config", "k".to_owned())));
        assert!(h.contains(&("x-ai-runner-route", "p/r".to_owned())));
        assert!(h.contains(&("x-request-id", "t1".to_owned())));
        let body = buffered_stream(&answer(json!({"choices": []})), false);
        assert!(body.ends_with(DONE));
        assert!(body.contains("audit_ids=4,5"));
    }
}
