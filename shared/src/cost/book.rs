//! Choosing a model's price and computing what a call cost, or may cost at most.
//!
//! Invariants: pure and integer: femto-USD prices times counts, summed in `i128`, rounded once
//! to nano-USD. An exact model name beats a prefix, a longer prefix a shorter one; among several
//! providers the connection's own wins, then the provider its URL belongs to; a choice that had
//! to guess is [`CostStatus::Estimated`].

use serde_json::{Map, Value};

use super::usage::Usage;
use crate::model::cost::{Charge, CostStatus, Price, Rate};

/// Output tokens reserved for a call that sets no `max_tokens` when its price row does not
/// know the model's limit either.
pub const DEFAULT_MAX_OUTPUT_TOKENS: i64 = 4096;

/// Input tokens reserved per media part (an image or audio clip), whose size in tokens the
/// request's bytes do not tell.
pub const MEDIA_PART_TOKENS: i64 = 2000;

/// Input tokens reserved once for a request that declares tools: the tool-use instructions a
/// provider wraps around the declared schemas (Anthropic documents 313 to 346 tokens), which are
/// not bytes of the body.
pub const TOOL_PROMPT_TOKENS: i64 = 1000;

/// Bytes per second assumed of a recording whose duration nobody said: 8 kbit/s, the rate of
/// telephone-grade speech codecs (G.729, AMR-WB's middle modes), below what uploads in the
/// common formats (MP3, M4A, WAV, Opus at its default) use, so a duration derived from a size is
/// not shorter than the recording and a per-second price's reservation is not too small.
pub const MEDIA_MIN_BYTES_PER_SECOND: u64 = 1000;

/// The duration a per-second price reserves for: the one known, else the longest a recording of
/// `bytes` can last ([`MEDIA_MIN_BYTES_PER_SECOND`]), else `unknown` (`COST_MEDIA_MAX_SECONDS`:
/// a call whose media's size is not known either, such as a URL the provider fetches).
pub fn reserved_seconds(seconds: Option<f64>, bytes: Option<u64>, unknown: f64) -> f64 {
    match (seconds, bytes) {
        (Some(s), _) if s.is_finite() && s >= 0.0 => s,
        (_, Some(b)) => b.div_ceil(MEDIA_MIN_BYTES_PER_SECOND) as f64,
        _ => unknown,
    }
}

/// The request fields that ask for several answers, each billed: the largest is how many
/// answers the output bound is counted for (OpenAI's and vLLM's `n` and `best_of`, Gemini's
/// candidate count).
pub const CHOICE_FIELDS: [&str; 4] = ["n", "best_of", "candidate_count", "candidateCount"];

/// The request fields that turn on a provider-side tool (web search and the like).
const PROVIDER_TOOL_FIELDS: [&str; 4] = [
    "web_search_options",
    "enable_search",
    "search_parameters",
    "plugins",
];

/// The price chosen for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The row.
    pub price: Price,
    /// False when it was a guess (a prefix, or one of several providers' prices).
    pub certain: bool,
}

/// The provider a chat-completions URL belongs to, in LiteLLM's names (`None`: unknown host).
pub fn provider_of(base_url: &str) -> Option<&'static str> {
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    const HOSTS: [(&str, &str); 12] = [
        ("api.openai.com", "openai"),
        (".openai.azure.com", "azure"),
        ("api.anthropic.com", "anthropic"),
        ("api.deepseek.com", "deepseek"),
        ("dashscope.aliyuncs.com", "dashscope"),
        ("dashscope-intl.aliyuncs.com", "dashscope"),
        ("generativelanguage.googleapis.com", "gemini"),
        ("api.mistral.ai", "mistral"),
        ("api.groq.com", "groq"),
        ("openrouter.ai", "openrouter"),
        ("api.moonshot.cn", "moonshot"),
        ("api.x.ai", "xai"),
    ];
    HOSTS
        .iter()
        .find(|(h, _)| host == *h || (h.starts_with('.') && host.ends_with(h)))
        .map(|(_, p)| *p)
}

/// Picks the price of `model` at `at_ms` among `rows` (exact names and prefixes), preferring
/// the providers in `hints` (the connection's name, then its URL's provider).
pub fn choose(rows: &[Price], model: &str, hints: &[&str], at_ms: i64) -> Option<Chosen> {
    let valid = |p: &&Price| p.valid_at(at_ms);
    let exact: Vec<&Price> = rows
        .iter()
        .filter(valid)
        .filter(|p| p.model == model)
        .collect();
    let candidates = if exact.is_empty() {
        let longest = rows
            .iter()
            .filter(valid)
            .filter(|p| p.is_prefix() && model.starts_with(p.model.trim_end_matches('*')))
            .map(|p| p.model.len())
            .max()?;
        rows.iter()
            .filter(valid)
            .filter(|p| p.is_prefix() && p.model.len() == longest)
            .filter(|p| model.starts_with(p.model.trim_end_matches('*')))
            .collect()
    } else {
        exact
    };
    let by_prefix = candidates.first()?.is_prefix();
    for hint in hints.iter().copied().chain([""]) {
        if let Some(p) = candidates
            .iter()
            .filter(|p| p.provider.eq_ignore_ascii_case(hint))
            .min_by_key(|p| p.id)
        {
            return Some(Chosen {
                price: (*p).clone(),
                certain: !by_prefix,
            });
        }
    }
    // Several providers price this model and none is the connection's: the first stored, and
    // said to be a guess unless they all agree.
    let first = candidates.iter().min_by_key(|p| p.id)?;
    let agree = candidates.iter().all(|p| p.rates == first.rates);
    Some(Chosen {
        price: (*first).clone(),
        certain: agree && !by_prefix,
    })
}

/// What `usage` cost at `chosen`'s prices (`seconds`: the input audio's duration, for
/// per-second prices). `usage` = `None` means the provider reported none and `estimate` is the
/// counted guess; when that is `None` too, nothing was billed (a refused request): 0, known.
pub fn charge(
    chosen: Option<&Chosen>,
    usage: Option<Usage>,
    estimate: Option<Usage>,
    seconds: Option<f64>,
) -> Charge {
    if usage.is_none() && estimate.is_none() {
        return Charge {
            price_id: chosen.map(|c| c.price.id),
            ..Charge::NONE
        };
    }
    let Some(c) = chosen else {
        return Charge {
            nano: None,
            status: CostStatus::Unpriced,
            price_id: None,
        };
    };
    let mut certain = c.certain;
    let u = match (usage, estimate) {
        (Some(u), _) => u,
        (None, Some(e)) => {
            certain = false;
            e
        }
        (None, None) => Usage::default(),
    };
    let r = &c.price.rates;
    let mut femto: i128 = 0;
    for (count, rate) in [
        (u.input, Rate::Input),
        (u.cache_read, Rate::CacheRead),
        (u.cache_write, Rate::CacheWrite),
        (u.audio_in, Rate::AudioIn),
        (u.output, Rate::Output),
        (u.reasoning, Rate::Reasoning),
        (u.audio_out, Rate::AudioOut),
    ] {
        if count == 0 {
            continue;
        }
        match r.get(rate) {
            Some(p) => femto += i128::from(count) * i128::from(p),
            // Tokens of a kind this row does not price (a model billed by the second): only a
            // per-second price accounts for them.
            None if r.get(Rate::PerSecond).is_some() => {}
            None => certain = false,
        }
    }
    if let Some(per_second) = r.get(Rate::PerSecond) {
        match seconds {
            Some(s) if s.is_finite() && s >= 0.0 => {
                femto += (s * per_second as f64).round() as i128;
            }
            // Billed by a duration nobody knows: unknown, not the token part alone (a budget
            // settles it at what it reserved, never at less than could have been spent).
            _ => {
                return Charge {
                    nano: None,
                    status: CostStatus::Unpriced,
                    price_id: Some(c.price.id),
                };
            }
        }
    }
    Charge {
        nano: Some(i64::try_from((femto + 500_000) / 1_000_000).unwrap_or(i64::MAX)),
        status: if certain {
            CostStatus::Priced
        } else {
            CostStatus::Estimated
        },
        price_id: Some(c.price.id),
    }
}

/// The most one attempt of a call with this request body can cost at `price`: every byte of the
/// body an input token (no tokenizer makes fewer bytes per token), each media part
/// [`MEDIA_PART_TOKENS`] more and [`TOOL_PROMPT_TOKENS`] more when tools are declared; and the
/// longest answer it allows (`max_tokens` / `max_completion_tokens`, else the model's limit, else
/// [`DEFAULT_MAX_OUTPUT_TOKENS`]) for each answer it asks for ([`CHOICE_FIELDS`]), plus every
/// byte of a predicted output (whose rejected tokens are billed as output), at the dearest output
/// price. At least 1 nano-USD, so a full budget refuses even a cheap call. `Err` names what makes
/// it unknowable: a provider-side tool ([`provider_tool`]).
pub fn max_cost(
    price: &Price,
    body: &Map<String, Value>,
    seconds: Option<f64>,
) -> Result<i64, String> {
    if let Some(tool) = provider_tool(body) {
        return Err(tool);
    }
    let bytes = serde_json::to_string(body).map_or(0, |s| s.len()) as i64;
    let media = count_media(body.get("messages"));
    let tools = ["tools", "functions"].iter().any(|k| {
        body.get(*k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    });
    let input = i128::from(bytes)
        + i128::from(media) * i128::from(MEDIA_PART_TOKENS)
        + if tools {
            i128::from(TOOL_PROMPT_TOKENS)
        } else {
            0
        };
    let longest = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_i64))
        .or(price.max_output_tokens)
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
        .max(0);
    let answers = CHOICE_FIELDS
        .iter()
        .filter_map(|k| body.get(*k).and_then(count))
        .max()
        .unwrap_or(1)
        .max(1);
    let predicted = body.get("prediction").map_or(0, |p| {
        serde_json::to_string(p).map_or(0, |s| s.len()) as i64
    });
    let output = i128::from(longest) * i128::from(answers) + i128::from(predicted);
    let r = &price.rates;
    let dearest = |rates: &[Rate]| rates.iter().filter_map(|x| r.get(*x)).max().unwrap_or(0);
    let mut femto = input
        * i128::from(dearest(&[
            Rate::Input,
            Rate::CacheRead,
            Rate::CacheWrite,
            Rate::AudioIn,
        ]))
        + output * i128::from(dearest(&[Rate::Output, Rate::Reasoning, Rate::AudioOut]));
    if let (Some(p), Some(s)) = (r.get(Rate::PerSecond), seconds) {
        femto += (s.max(0.0) * p as f64).ceil() as i128;
    }
    Ok(i64::try_from((femto + 999_999) / 1_000_000)
        .unwrap_or(i64::MAX)
        .max(1))
}

/// A count a request field asks for: a whole number, or one written as text (a provider reads
/// `"10"` as 10); anything else is none.
fn count(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.ceil() as i64)
        })
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The provider-side tool a request turns on, if any: a field of [`PROVIDER_TOOL_FIELDS`] that is
/// set (not `null`, `false`, empty), or a `tools` entry that is not a function the caller runs
/// (`function`, `custom`). What such a tool adds (search fees, retrieved text read as input) is
/// not in the request, so the call's cost has no maximum.
pub fn provider_tool(body: &Map<String, Value>) -> Option<String> {
    let set = |v: &Value| match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    };
    if let Some(k) = PROVIDER_TOOL_FIELDS
        .iter()
        .find(|k| body.get(**k).is_some_and(set))
    {
        return Some(format!("`{k}`"));
    }
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|t| match t.get("type").and_then(Value::as_str) {
            None | Some("function" | "custom") => None,
            Some(other) => Some(format!("a `{other}` tool")),
        })
}

/// Image and audio parts in the messages.
fn count_media(messages: Option<&Value>) -> i64 {
    let Some(Value::Array(ms)) = messages else {
        return 0;
    };
    ms.iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| {
            matches!(
                part.get("type").and_then(Value::as_str),
                Some("image_url" | "input_audio" | "audio_url" | "video_url")
            )
        })
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cost::{Rates, femto};
    use serde_json::json;

    fn price(id: i64, provider: &str, model: &str, rates: &[(Rate, f64)]) -> Price {
        let mut r = Rates::default();
        for (k, v) in rates {
            r.0[*k as usize] = Some(femto(*v).unwrap());
        }
        Price {
            id,
            provider: provider.into(),
            model: model.into(),
            rates: r,
            max_output_tokens: None,
            valid_from_ms: 0,
            valid_to_ms: None,
            source: "test".into(),
        }
    }

    #[test]
    fn exact_beats_prefix_and_the_connections_provider_beats_others() {
        let rows = vec![
            price(1, "openai", "gpt-4o*", &[(Rate::Input, 1e-6)]),
            price(2, "azure", "gpt-4o", &[(Rate::Input, 3e-6)]),
            price(3, "openai", "gpt-4o", &[(Rate::Input, 2.5e-6)]),
        ];
        let c = choose(&rows, "gpt-4o", &["openai"], 0).unwrap();
        assert_eq!((c.price.id, c.certain), (3, true));
        let c = choose(&rows, "gpt-4o", &["my-conn"], 0).unwrap();
        assert_eq!(
            (c.price.id, c.certain),
            (2, false),
            "a guess among providers"
        );
        let c = choose(&rows, "gpt-4o-2024-08-06", &["openai"], 0).unwrap();
        assert_eq!(
            (c.price.id, c.certain),
            (1, false),
            "a prefix is an estimate"
        );
        assert!(choose(&rows, "qwen-plus", &[], 0).is_none());
    }

    #[test]
    fn a_closed_price_row_is_not_used_after_its_end() {
        let mut old = price(1, "", "m", &[(Rate::Input, 1e-6)]);
        old.valid_to_ms = Some(1000);
        let mut new = price(2, "", "m", &[(Rate::Input, 2e-6)]);
        new.valid_from_ms = 1000;
        let rows = vec![old, new];
        assert_eq!(choose(&rows, "m", &[], 999).unwrap().price.id, 1);
        assert_eq!(choose(&rows, "m", &[], 1000).unwrap().price.id, 2);
    }

    #[test]
    fn hosts_name_their_providers() {
        assert_eq!(
            provider_of("https://api.openai.com/v1/chat/completions"),
            Some("openai")
        );
        assert_eq!(
            provider_of("https://x.openai.azure.com/openai/deployments/d"),
            Some("azure")
        );
        assert_eq!(provider_of("http://127.0.0.1:9/v1"), None);
    }

    #[test]
    fn per_second_audio_is_billed_by_duration_and_unknown_duration_is_an_estimate() {
        let c = Chosen {
            price: price(9, "openai", "whisper-1", &[(Rate::PerSecond, 0.0001)]),
            certain: true,
        };
        let u = Usage {
            input: 10,
            output: 20,
            ..Usage::default()
        };
        // 61.5 s x 0.0001 USD = 0.00615 USD = 6_150_000 nano-USD.
        let ch = charge(Some(&c), Some(u), None, Some(61.5));
        assert_eq!((ch.nano, ch.status), (Some(6_150_000), CostStatus::Priced));
        let unknown = charge(Some(&c), Some(u), None, None);
        assert_eq!((unknown.nano, unknown.status), (None, CostStatus::Unpriced));
        // With a token price too, the token part alone would understate it: still unknown.
        let mut both = c.clone();
        both.price.rates.0[Rate::Input as usize] = Some(1_000_000_000);
        let ch = charge(Some(&both), Some(u), None, None);
        assert_eq!((ch.nano, ch.status), (None, CostStatus::Unpriced));
        assert_eq!(
            charge(Some(&both), Some(u), None, Some(1.0)).nano,
            Some(10_000 + 100_000)
        );
    }

    #[test]
    fn an_unknown_duration_is_reserved_from_the_size_or_the_configured_maximum() {
        assert_eq!(reserved_seconds(Some(12.5), Some(1_000_000), 3600.0), 12.5);
        // 1 MB at 1,000 B/s: 1,000 s, whatever the maximum says.
        assert_eq!(reserved_seconds(None, Some(1_000_000), 60.0), 1000.0);
        assert_eq!(reserved_seconds(None, Some(1), 60.0), 1.0);
        assert_eq!(reserved_seconds(Some(f64::NAN), None, 3600.0), 3600.0);
        assert_eq!(reserved_seconds(None, None, 3600.0), 3600.0);
        let p = price(9, "openai", "whisper-1", &[(Rate::PerSecond, 0.0001)]);
        let body = json!({"model": "whisper-1", "messages": []});
        // 3,600 s x 0.0001 USD = 0.36 USD, whatever the (empty) body says.
        assert_eq!(
            max_cost(&p, body.as_object().unwrap(), Some(3600.0)),
            Ok(360_000_000)
        );
    }

    #[test]
    fn the_maximum_covers_every_byte_and_the_longest_answer() {
        let p = price(1, "", "m", &[(Rate::Input, 1e-6), (Rate::Output, 2e-6)]);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100});
        let body = body.as_object().unwrap().clone();
        let bytes = serde_json::to_string(&body).unwrap().len() as i64;
        // bytes x 1000 nano + 100 x 2000 nano.
        assert_eq!(max_cost(&p, &body, None), Ok(bytes * 1000 + 200_000));
        let mut no_max = body.clone();
        no_max.remove("max_tokens");
        let bytes = serde_json::to_string(&no_max).unwrap().len() as i64;
        assert_eq!(
            max_cost(&p, &no_max, None),
            Ok(bytes * 1000 + DEFAULT_MAX_OUTPUT_TOKENS * 2000)
        );
    }

    #[test]
    fn several_answers_tools_and_predictions_are_in_the_maximum() {
        // The review's case: N 10, MAX_TOKENS 100 at 0.001 USD per output token is 1 USD of
        // answers, not the 0.1 of one.
        let p = price(1, "", "m", &[(Rate::Output, 0.001)]);
        let body = |extra: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            b.as_object().unwrap().clone()
        };
        assert_eq!(max_cost(&p, &body(json!({})), None), Ok(100_000_000));
        assert_eq!(
            max_cost(&p, &body(json!({"n": 10})), None),
            Ok(1_000_000_000)
        );
        for (extra, answers) in [
            (json!({"n": "10"}), 10),
            (json!({"n": 2.5}), 3),
            (json!({"n": 0}), 1),
            (json!({"n": -4}), 1),
            (json!({"n": null}), 1),
            (json!({"n": 2, "best_of": 5}), 5),
            (json!({"candidateCount": 4}), 4),
        ] {
            assert_eq!(
                max_cost(&p, &body(extra.clone()), None),
                Ok(answers * 100_000_000),
                "{extra}"
            );
        }
        // A prediction's bytes are output too.
        let predicted = body(json!({"prediction": {"type": "content", "content": "abc"}}));
        let bytes = serde_json::to_string(&predicted["prediction"])
            .unwrap()
            .len() as i64;
        assert_eq!(
            max_cost(&p, &predicted, None),
            Ok((100 + bytes) * 1_000_000)
        );
        // Declared functions add the provider's tool instructions to the input.
        let q = price(2, "", "m", &[(Rate::Input, 1e-6), (Rate::Output, 2e-6)]);
        let tools = body(
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
        );
        let len = serde_json::to_string(&tools).unwrap().len() as i64;
        assert_eq!(
            max_cost(&q, &tools, None),
            Ok((len + TOOL_PROMPT_TOKENS) * 1000 + 100 * 2000)
        );
        assert_eq!(provider_tool(&tools), None);
    }

    #[test]
    fn a_provider_side_tool_has_no_maximum() {
        let p = price(1, "", "m", &[(Rate::Input, 1e-6)]);
        for (extra, named) in [
            (json!({"web_search_options": {}}), "`web_search_options`"),
            (json!({"enable_search": true}), "`enable_search`"),
            (json!({"plugins": [{"id": "web"}]}), "`plugins`"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "web_search"}]}),
                "a `web_search` tool",
            ),
        ] {
            let mut b = json!({"model": "m", "messages": []});
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let b = b.as_object().unwrap().clone();
            assert_eq!(max_cost(&p, &b, None), Err(named.to_owned()), "{extra}");
        }
        for off in [
            json!({"enable_search": false}),
            json!({"plugins": []}),
            json!({"web_search_options": null}),
        ] {
            let mut b = json!({"model": "m", "messages": []});
            b.as_object_mut()
                .unwrap()
                .extend(off.as_object().unwrap().clone());
            assert!(max_cost(&p, b.as_object().unwrap(), None).is_ok(), "{off}");
        }
    }
}
