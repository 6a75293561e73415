//! What an OpenAI-protocol caller adds to a config's request ([`CallerTurn`]: its messages, its
//! fields, its `stream`) and what a param profile lets it add ([`allowed`]: `CALLER_PARAMS`,
//! `ALLOW_STREAM`). How the two meet the config's own request is [`super::build_for`]'s.
//!
//! Invariants: only [`CALLER_FIELDS`] are ever taken from a caller; a refusal names the field.

use serde_json::{Map, Value};

use super::BuildError;
use crate::config::value_flag;

/// The request fields an OpenAI-protocol caller may send beside `model`, `messages` and
/// `stream` (the Chat Completions API's request parameters that shape one answer). Anything
/// else the caller sends is not passed on.
pub const CALLER_FIELDS: [&str; 26] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "stream_options",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "metadata",
    "service_tier",
    "verbosity",
    "web_search_options",
];

/// What an OpenAI-protocol caller adds to a config's request: its conversation and its fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallerTurn {
    /// The caller's `messages`, sent after the config's prompt.
    pub messages: Vec<Value>,
    /// The caller's fields, each one of [`CALLER_FIELDS`], in the order sent.
    pub fields: Map<String, Value>,
    /// The caller asked for a stream (`stream: true`).
    pub stream: bool,
}

/// Refuses what the caller sent that the param profile does not let callers set.
pub(super) fn allowed(params: &Map<String, Value>, turn: &CallerTurn) -> Result<(), BuildError> {
    if turn.stream
        && params
            .get("ALLOW_STREAM")
            .and_then(value_flag)
            .is_some_and(|allow| !allow)
    {
        return Err(BuildError::NotAllowed("stream".into()));
    }
    let names: Option<Vec<String>> = match params.get("CALLER_PARAMS") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim() == "*" => None,
        Some(Value::String(s)) => Some(
            s.split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        ),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => {
            return Err(BuildError::ParamsInvalid(
                "CALLER_PARAMS must be a list of field names, a comma-separated string or \"*\""
                    .into(),
            ));
        }
    };
    if let Some(names) = names
        && let Some(field) = turn
            .fields
            .keys()
            // stream_options rides with `stream`, which ALLOW_STREAM governs.
            .find(|f| *f != "stream_options" && !names.iter().any(|n| n == *f))
    {
        return Err(BuildError::NotAllowed(field.clone()));
    }
    Ok(())
}
