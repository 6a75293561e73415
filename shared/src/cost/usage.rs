//! Usage as providers report it, normalised into disjoint token counts that each have one price.
//!
//! Invariants: the counts never overlap (a cached token is not also an input token: the bug
//! that charges cache reads twice), never go negative, and a usage object without any token
//! count is `None` (unknown), never zero.

use serde_json::Value;

/// Disjoint token counts of one or more provider calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached text input tokens.
    pub input: i64,
    /// Input tokens read from the prompt cache.
    pub cache_read: i64,
    /// Input tokens written to the prompt cache.
    pub cache_write: i64,
    /// Audio input tokens.
    pub audio_in: i64,
    /// Text output tokens (reasoning and audio excluded).
    pub output: i64,
    /// Reasoning output tokens.
    pub reasoning: i64,
    /// Audio output tokens.
    pub audio_out: i64,
}

fn int(v: &Value, path: &str) -> Option<i64> {
    v.pointer(path).and_then(Value::as_i64).map(|n| n.max(0))
}

impl Usage {
    /// Normalises a `usage` object.
    ///
    /// - OpenAI chat completions (and compatible APIs: DashScope, DeepSeek, Azure): every detail
    ///   is *inside* its total: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`
    ///   (DeepSeek: `prompt_cache_hit_tokens`) and `.audio_tokens`, and a cache write reported as
    ///   `cache_creation_input_tokens` (LiteLLM's Anthropic shape); `completion_tokens` includes
    ///   `completion_tokens_details.reasoning_tokens` and `.audio_tokens`.
    /// - OpenAI's Responses API (`input_tokens` with `input_tokens_details`): the same, inside.
    /// - Anthropic's Messages API (`input_tokens` without details): cache reads and writes are
    ///   reported *beside* `input_tokens` (`cache_read_input_tokens`,
    ///   `cache_creation_input_tokens`).
    pub fn from_value(u: &Value) -> Option<Usage> {
        if let Some(prompt) = int(u, "/prompt_tokens") {
            let cache_read = int(u, "/prompt_tokens_details/cached_tokens")
                .or_else(|| int(u, "/prompt_cache_hit_tokens"))
                .unwrap_or(0);
            let cache_write = int(u, "/cache_creation_input_tokens")
                .or_else(|| int(u, "/prompt_tokens_details/cache_creation_tokens"))
                .unwrap_or(0);
            let audio_in = int(u, "/prompt_tokens_details/audio_tokens").unwrap_or(0);
            let (output, reasoning, audio_out) =
                split_output(u, "/completion_tokens", "/completion_tokens_details");
            return Some(Usage {
                input: (prompt - cache_read - cache_write - audio_in).max(0),
                cache_read,
                cache_write,
                audio_in,
                output,
                reasoning,
                audio_out,
            });
        }
        let input = int(u, "/input_tokens")?;
        let (output, reasoning, audio_out) =
            split_output(u, "/output_tokens", "/output_tokens_details");
        if u.get("input_tokens_details").is_some() {
            let cache_read = int(u, "/input_tokens_details/cached_tokens").unwrap_or(0);
            let audio_in = int(u, "/input_tokens_details/audio_tokens").unwrap_or(0);
            return Some(Usage {
                input: (input - cache_read - audio_in).max(0),
                cache_read,
                audio_in,
                output,
                reasoning,
                audio_out,
                ..Usage::default()
            });
        }
        Some(Usage {
            input,
            cache_read: int(u, "/cache_read_input_tokens").unwrap_or(0),
            cache_write: int(u, "/cache_creation_input_tokens").unwrap_or(0),
            output,
            reasoning,
            audio_out,
            ..Usage::default()
        })
    }

    /// An estimate when the provider reported nothing (a stream cut short): four bytes per token
    /// of the request body and of the text received.
    pub fn estimate(request_bytes: usize, received_chars: usize) -> Usage {
        Usage {
            input: (request_bytes / 4) as i64,
            output: received_chars.div_ceil(4) as i64,
            ..Usage::default()
        }
    }
}

/// `(text, reasoning, audio)` output tokens, the details taken out of the total.
fn split_output(u: &Value, total: &str, details: &str) -> (i64, i64, i64) {
    let all = int(u, total).unwrap_or(0);
    let reasoning = int(u, &format!("{details}/reasoning_tokens")).unwrap_or(0);
    let audio = int(u, &format!("{details}/audio_tokens")).unwrap_or(0);
    ((all - reasoning - audio).max(0), reasoning, audio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_cached_tokens_are_taken_out_of_prompt_tokens() {
        let u = Usage::from_value(&json!({
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
        }))
        .unwrap();
        assert_eq!((u.input, u.cache_read, u.output), (86, 1920, 300));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_beside_input_tokens() {
        let u = Usage::from_value(&json!({
            "input_tokens": 50, "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200, "output_tokens": 70
        }))
        .unwrap();
        assert_eq!(
            (u.input, u.cache_read, u.cache_write, u.output),
            (50, 1000, 200, 70)
        );
    }

    #[test]
    fn reasoning_and_audio_tokens_are_split_from_their_totals() {
        let u = Usage::from_value(&json!({
            "prompt_tokens": 120, "completion_tokens": 900,
            "prompt_tokens_details": {"audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 640, "audio_tokens": 60}
        }))
        .unwrap();
        assert_eq!(
            (u.input, u.audio_in, u.output, u.reasoning, u.audio_out),
            (20, 100, 200, 640, 60)
        );
    }

    #[test]
    fn deepseek_cache_hits_and_responses_api_details_are_inside_their_totals() {
        let d = Usage::from_value(&json!({"prompt_tokens": 100, "prompt_cache_hit_tokens": 60, "prompt_cache_miss_tokens": 40, "completion_tokens": 5})).unwrap();
        assert_eq!((d.input, d.cache_read), (40, 60));
        let r = Usage::from_value(&json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 30}, "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 20}})).unwrap();
        assert_eq!(
            (r.input, r.cache_read, r.output, r.reasoning),
            (70, 30, 30, 20)
        );
    }

    #[test]
    fn a_usage_without_counts_is_unknown_and_nothing_goes_negative() {
        assert_eq!(Usage::from_value(&json!({"foo": 1})), None);
        let u = Usage::from_value(&json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}, "completion_tokens": -3})).unwrap();
        assert_eq!((u.input, u.output), (0, 0));
    }
}
