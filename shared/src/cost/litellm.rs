//! Prices from LiteLLM's public price map (`model_prices_and_context_window.json`), and from
//! the same field names wherever they are written (`prices set`, a catalog's `prices:`, read by
//! `catalog::prices`).
//!
//! Invariants: nothing is fetched; unknown fields are ignored; an entry without any price
//! field (a mode we do not price, LiteLLM's `sample_spec`) is skipped and said so; a price
//! that is surely wrong (negative, over 1 USD per unit) refuses the whole import, naming the
//! entries, because one such value usually means the file is per million tokens.

use serde_json::{Map, Value};

use crate::model::cost::{PRICE_FIELDS, Price, Rates, femto};

/// An entry the import left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The map's key.
    pub key: String,
    /// Why.
    pub why: String,
}

/// Reads one entry's prices (`fields`: LiteLLM's names; others ignored). `Ok(None)` when it
/// has no price field; `Err` names the field that is not a price.
pub fn rates(fields: &Map<String, Value>) -> Result<Option<(Rates, Option<i64>)>, String> {
    let mut rates = Rates::default();
    for (slot, name) in rates.0.iter_mut().zip(PRICE_FIELDS) {
        match fields.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let usd = n.as_f64().ok_or_else(|| format!("{name}: not a number"))?;
                *slot = Some(femto(usd).map_err(|e| format!("{name}: {e}"))?);
            }
            Some(other) => return Err(format!("{name}: {other} is not a number")),
        }
    }
    if rates.is_empty() {
        return Ok(None);
    }
    let max_output = fields.get("max_output_tokens").and_then(Value::as_i64);
    Ok(Some((rates, max_output)))
}

/// Reads a LiteLLM price map. A key prefixed with its provider (`dashscope/qwen-plus`) is stored
/// as that provider's model (`qwen-plus`): the name a config sends.
pub fn parse(map: &Value, source: &str) -> Result<(Vec<Price>, Vec<Skipped>), Vec<String>> {
    let Some(entries) = map.as_object() else {
        return Err(vec![
            "the file is not a JSON object of model entries (LiteLLM's model_prices_and_context_window.json)".into(),
        ]);
    };
    let mut prices = Vec::new();
    let mut skipped = Vec::new();
    let mut wrong = Vec::new();
    for (key, entry) in entries {
        let skip = |why: &str| Skipped {
            key: key.clone(),
            why: why.to_owned(),
        };
        if key == "sample_spec" {
            skipped.push(skip("LiteLLM's field documentation, not a model"));
            continue;
        }
        let Some(fields) = entry.as_object() else {
            skipped.push(skip("not an object"));
            continue;
        };
        let (rates, max_output_tokens) = match rates(fields) {
            Ok(Some(r)) => r,
            Ok(None) => {
                skipped.push(skip("no per-token or per-second price"));
                continue;
            }
            Err(e) if e.contains("surely wrong") || e.contains("not a price") => {
                wrong.push(format!("{key}: {e}"));
                continue;
            }
            Err(e) => {
                skipped.push(skip(&e));
                continue;
            }
        };
        let provider = fields
            .get("litellm_provider")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let model = match key.strip_prefix(&format!("{provider}/")) {
            Some(m) if !provider.is_empty() && !m.is_empty() => m.to_owned(),
            _ => key.clone(),
        };
        if model.chars().count() > 191 || provider.chars().count() > 64 {
            skipped.push(skip("name longer than the prices table holds"));
            continue;
        }
        prices.push(Price {
            id: 0,
            provider,
            model,
            rates,
            max_output_tokens,
            valid_from_ms: 0,
            valid_to_ms: None,
            source: source.chars().take(191).collect(),
        });
    }
    if wrong.is_empty() {
        Ok((prices, skipped))
    } else {
        Err(wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cost::Rate;
    use serde_json::json;

    #[test]
    fn provider_prefixes_are_taken_off_and_unknown_fields_ignored() {
        let m = json!({
            "sample_spec": {"input_cost_per_token": 0.0, "max_output_tokens": "doc"},
            "dashscope/qwen-plus": {"input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06, "litellm_provider": "dashscope", "max_output_tokens": 16384, "supports_reasoning": true},
            "gpt-4o": {"input_cost_per_token": 2.5e-06, "litellm_provider": "openai", "mode": "chat"},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}
        });
        let (prices, skipped) = parse(&m, "litellm").unwrap();
        assert_eq!(prices.len(), 2);
        let q = prices.iter().find(|p| p.provider == "dashscope").unwrap();
        assert_eq!(q.model, "qwen-plus");
        assert_eq!(q.rates.get(Rate::Output), Some(1_200_000_000));
        assert_eq!(q.max_output_tokens, Some(16384));
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn a_price_per_million_refuses_the_import_naming_the_entry() {
        let m = json!({"m": {"input_cost_per_token": 2.5, "litellm_provider": "x"}, "ok": {"input_cost_per_token": 1e-6}});
        let e = parse(&m, "f").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("m: input_cost_per_token"), "{e:?}");
    }
}
