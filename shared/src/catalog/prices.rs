//! A catalog's `prices:` section: per-unit USD prices under LiteLLM's field names, checked
//! field by field like every other section and stored by `cfg gen` with source `catalog`.
//!
//! Invariants: an unknown field, a missing model or a price that is surely wrong is a finding
//! with its YAML path; a section with any error yields no prices at all.

use serde_json::Value;

use super::{Finding, Severity};
use crate::code::Code;
use crate::cost::litellm::rates;
use crate::model::cost::Price;

/// The fields a catalog's `prices:` item may have.
const CATALOG_FIELDS: [&str; 11] = [
    "model",
    "provider",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
    "output_cost_per_reasoning_token",
    "input_cost_per_second",
    "max_output_tokens",
];

/// Reads a catalog's `prices:` section: a list of `{model, provider?, <LiteLLM price fields>,
/// max_output_tokens?}`. `(None, findings)` when it has errors; `(None, [])` when there is no
/// section. Stored with source `catalog`.
pub fn catalog_prices(doc: &Value) -> (Option<Vec<Price>>, Vec<Finding>) {
    let Some(section) = doc.get("prices").filter(|v| !v.is_null()) else {
        return (None, Vec::new());
    };
    let mut findings = Vec::new();
    let mut err = |path: String, code: Code, message: String| {
        findings.push(Finding {
            severity: Severity::Error,
            path,
            code,
            message,
        });
    };
    let Some(items) = section.as_array() else {
        err(
            "prices".into(),
            Code::BadType,
            "prices is a list of {model, provider, input_cost_per_token, ...}".into(),
        );
        return (None, findings);
    };
    let mut prices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("prices[{i}]");
        let Some(fields) = item.as_object() else {
            err(path, Code::BadType, "must be a mapping".into());
            continue;
        };
        for k in fields
            .keys()
            .filter(|k| !CATALOG_FIELDS.contains(&k.as_str()))
        {
            err(
                format!("{path}.{k}"),
                Code::UnknownKey,
                format!("unknown field (one of: {})", CATALOG_FIELDS.join(", ")),
            );
        }
        let Some(model) = fields
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty() && *m != "*")
        else {
            err(
                format!("{path}.model"),
                Code::MissingField,
                "the model name a config sends, or a prefix ending in *".into(),
            );
            continue;
        };
        let provider = match fields.get("provider") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(p)) => p.clone(),
            Some(_) => {
                err(
                    format!("{path}.provider"),
                    Code::BadType,
                    "must be text".into(),
                );
                continue;
            }
        };
        match rates(fields) {
            Ok(Some((rates, max_output_tokens))) => prices.push(Price {
                id: 0,
                provider,
                model: model.to_owned(),
                rates,
                max_output_tokens,
                valid_from_ms: 0,
                valid_to_ms: None,
                source: "catalog".into(),
            }),
            Ok(None) => err(
                path,
                Code::MissingField,
                "no price: give input_cost_per_token, output_cost_per_token, ... (USD per token) or input_cost_per_second".into(),
            ),
            Err(e) => err(path, Code::PriceInvalid, e),
        }
    }
    if findings.is_empty() {
        (Some(prices), findings)
    } else {
        (None, findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_catalog_prices_section_is_checked_field_by_field() {
        let doc = json!({"prices": [
            {"model": "gpt-4o-mini", "provider": "openai", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
            {"model": "m2", "input_cost_per_token": 3.0},
            {"model": "m3", "input_cost_per_tokens": 1e-6}
        ]});
        let (prices, findings) = catalog_prices(&doc);
        assert!(prices.is_none());
        let codes: Vec<(&str, Code)> = findings.iter().map(|f| (f.path.as_str(), f.code)).collect();
        assert!(
            codes.contains(&("prices[1]", Code::PriceInvalid)),
            "{codes:?}"
        );
        assert!(
            codes.contains(&("prices[2].input_cost_per_tokens", Code::UnknownKey)),
            "{codes:?}"
        );
        let ok = json!({"prices": [{"model": "gpt-4o-mini", "input_cost_per_token": 1.5e-07}]});
        let (prices, findings) = catalog_prices(&ok);
        assert!(findings.is_empty());
        assert_eq!(prices.unwrap()[0].source, "catalog");
    }
}
