//! Assembling an OpenAI chat-completions SSE stream into the `chat.completion` object a
//! non-streaming call would have returned (message, finish reason, usage).
//!
//! Tool-call deltas are assembled by their `index` (id, type and name from the first delta that
//! carries them, `arguments` concatenated), a refusal like content; a message that only calls
//! tools has `content: null`, as OpenAI's non-streaming answer does. A relaying assembler
//! ([`SseAssembler::relaying`]) also keeps each parsed chunk for [`SseAssembler::take_chunks`],
//! so the provider can pass them on to a streaming caller as they arrive.
//!
//! Invariants: bytes may arrive split anywhere (mid-line, mid-UTF-8); events are separated by a
//! blank line; `data: [DONE]` ends the stream; an `error` payload fails it.

use serde_json::{Map, Value, json};

/// Incremental SSE parser and message assembler.
#[derive(Debug, Default)]
pub struct SseAssembler {
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no newline (the next search starts there, so a
    /// long line arriving in many small pieces is scanned once, not once per piece).
    scanned: usize,
    data: String,
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: Vec<ChoiceAcc>,
    usage: Option<Value>,
    done: bool,
    saw_content: bool,
    chunks: usize,
    relay: bool,
    relayed: Vec<Value>,
}

#[derive(Debug, Default, Clone)]
struct ChoiceAcc {
    role: Option<String>,
    content: String,
    refusal: Option<String>,
    tool_calls: Vec<ToolCallAcc>,
    finish_reason: Option<Value>,
}

#[derive(Debug, Default, Clone)]
struct ToolCallAcc {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

/// What one `push` learned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// The first non-empty content delta arrived in this push (time to first token).
    pub first_content: bool,
    /// `data: [DONE]` was seen.
    pub done: bool,
}

impl SseAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// An assembler that also keeps every parsed chunk until [`Self::take_chunks`].
    pub fn relaying() -> Self {
        Self {
            relay: true,
            ..Self::default()
        }
    }

    /// The chunks parsed since the last call (relaying assemblers only), in stream order.
    pub fn take_chunks(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.relayed)
    }

    /// Feeds raw bytes from the wire.
    pub fn push(&mut self, bytes: &[u8]) -> Result<PushOutcome, String> {
        let had_content = self.saw_content;
        self.pending.extend_from_slice(bytes);
        // Lines are cut out by position and the consumed prefix is dropped once per push: linear
        // in the bytes received, however they are split.
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(off) = self.pending[from..].iter().position(|b| *b == b'\n') {
            let nl = from + off;
            let mut end = nl;
            if end > start && self.pending[end - 1] == b'\r' {
                end -= 1;
            }
            let line = std::str::from_utf8(&self.pending[start..end])
                .map_err(|_| "stream is not UTF-8".to_owned())?
                .to_owned();
            self.line(&line)?;
            start = nl + 1;
            from = start;
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
        Ok(PushOutcome {
            first_content: !had_content && self.saw_content,
            done: self.done,
        })
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), String> {
        let data = std::mem::take(&mut self.data);
        if data.is_empty() || self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value =
            serde_json::from_str(&data).map_err(|e| format!("stream chunk is not JSON ({e})"))?;
        if let Some(err) = chunk.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("stream reported an error");
            return Err(format!("stream error: {msg}"));
        }
        self.chunks += 1;
        for (slot, key) in [
            (&mut self.id, "id"),
            (&mut self.model, "model"),
            (&mut self.created, "created"),
            (&mut self.system_fingerprint, "system_fingerprint"),
        ] {
            if slot.is_none()
                && let Some(v) = chunk.get(key).filter(|v| !v.is_null())
            {
                *slot = Some(v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if idx > 1024 {
                return Err("choice index out of range".into());
            }
            if self.choices.len() <= idx {
                self.choices.resize(idx + 1, ChoiceAcc::default());
            }
            let acc = &mut self.choices[idx];
            if let Some(delta) = c.get("delta") {
                if let Some(r) = delta.get("role").and_then(Value::as_str) {
                    acc.role = Some(r.to_owned());
                }
                if let Some(t) = delta.get("content").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    acc.content.push_str(t);
                    self.saw_content = true;
                }
                if let Some(t) = delta.get("refusal").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    acc.refusal.get_or_insert_with(String::new).push_str(t);
                    self.saw_content = true;
                }
                for call in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let at = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if at > 1024 {
                        return Err("tool call index out of range".into());
                    }
                    if acc.tool_calls.len() <= at {
                        acc.tool_calls.resize(at + 1, ToolCallAcc::default());
                    }
                    let t = &mut acc.tool_calls[at];
                    for (slot, key) in [(&mut t.id, "id"), (&mut t.kind, "type")] {
                        if slot.is_none()
                            && let Some(v) = call.get(key).filter(|v| !v.is_null())
                        {
                            *slot = Some(v.clone());
                        }
                    }
                    if let Some(f) = call.get("function") {
                        if let Some(n) = f.get("name").and_then(Value::as_str) {
                            t.name.push_str(n);
                        }
                        if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                            t.arguments.push_str(a);
                        }
                    }
                    self.saw_content = true;
                }
            }
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                acc.finish_reason = Some(f.clone());
            }
        }
        if self.relay {
            self.relayed.push(chunk);
        }
        Ok(())
    }

    /// Ends the stream and returns the assembled `chat.completion` object.
    pub fn finish(mut self) -> Result<Value, String> {
        // A last line the stream did not end with a newline still counts.
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let line = String::from_utf8(rest).map_err(|_| "stream is not UTF-8".to_owned())?;
            self.line(line.trim_end_matches('\r'))?;
        }
        if !self.data.is_empty() {
            self.dispatch()?;
        }
        if self.chunks == 0 {
            return Err("stream ended without any chunk".into());
        }
        Ok(self.build())
    }

    /// What arrived before a stream broke off (the text so far, and the usage if its chunk came):
    /// a failed stream is still billed, so its audit row and cost need it. `None` when no chunk
    /// arrived.
    pub fn partial(self) -> Option<Value> {
        (self.chunks > 0).then(|| self.build())
    }

    fn build(self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    c.role.clone().unwrap_or_else(|| "assistant".into()).into(),
                );
                let content = if c.content.is_empty() && !c.tool_calls.is_empty() {
                    Value::Null
                } else {
                    Value::String(c.content.clone())
                };
                message.insert("content".into(), content);
                if let Some(r) = &c.refusal {
                    message.insert("refusal".into(), r.clone().into());
                }
                if !c.tool_calls.is_empty() {
                    let calls = c
                        .tool_calls
                        .iter()
                        .map(|t| {
                            json!({
                                "id": t.id.clone().unwrap_or(Value::Null),
                                "type": t.kind.clone().unwrap_or_else(|| "function".into()),
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({
                    "index": i,
                    "message": message,
                    "finish_reason": c.finish_reason.clone().unwrap_or(Value::Null),
                })
            })
            .collect();
        let mut out = Map::new();
        out.insert("id".into(), self.id.unwrap_or(Value::Null));
        out.insert("object".into(), "chat.completion".into());
        out.insert("created".into(), self.created.unwrap_or(Value::Null));
        out.insert("model".into(), self.model.unwrap_or(Value::Null));
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = self.usage {
            out.insert("usage".into(), u);
        }
        if let Some(f) = self.system_fingerprint {
            out.insert("system_fingerprint".into(), f);
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &[u8] = include_bytes!(
        "../../../tests/fixtures/openai/chat-completions-stream-text-with-usage.recorded.sse"
    );

    #[test]
    fn the_recorded_stream_assembles_into_message_and_usage() {
        let mut a = SseAssembler::new();
        let out = a.push(RECORDED).unwrap();
        assert!(out.done && out.first_content);
        let v = a.finish().unwrap();
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("I'm unable to provide real-time weather updates."),
            "{content}"
        );
        assert!(content.ends_with("app."), "{content}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 44);
        assert_eq!(v["id"], "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL");
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_result() {
        let mut whole = SseAssembler::new();
        whole.push(RECORDED).unwrap();
        let expected = whole.finish().unwrap();
        for size in [1, 7, 64, 333] {
            let mut a = SseAssembler::new();
            let mut firsts = 0;
            for chunk in RECORDED.chunks(size) {
                if a.push(chunk).unwrap().first_content {
                    firsts += 1;
                }
            }
            assert_eq!(firsts, 1);
            assert_eq!(a.finish().unwrap(), expected, "chunk size {size}");
        }
    }

    #[test]
    fn a_last_event_without_a_newline_still_counts() {
        let mut a = SseAssembler::new();
        a.push("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"你\"}}]}\n\n".as_bytes())
            .unwrap();
        a.push(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"好\"},\"finish_reason\":\"stop\"}]}"
                .as_bytes(),
        )
        .unwrap();
        let v = a.finish().unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "你好");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn tool_call_deltas_assemble_into_one_call_with_null_content() {
        let mut a = SseAssembler::relaying();
        let events = [
            r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        ];
        for e in events {
            a.push(format!("data: {e}\n\n").as_bytes()).unwrap();
        }
        assert_eq!(a.take_chunks().len(), 3);
        assert!(a.take_chunks().is_empty());
        let v = a.finish().unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn crlf_lines_and_error_events_are_handled() {
        let mut a = SseAssembler::new();
        a.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\r\n\r\n")
            .unwrap();
        assert_eq!(
            a.finish().unwrap()["choices"][0]["message"]["content"],
            "hi"
        );
        let mut b = SseAssembler::new();
        let e = b
            .push(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n")
            .unwrap_err();
        assert!(e.contains("overloaded"));
        assert!(SseAssembler::new().finish().is_err());
    }
}
