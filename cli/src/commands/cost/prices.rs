//! `prices import / set / list`: the price rows calls are charged at.

use std::path::PathBuf;

use ai_runner::Code;
use ai_runner::cost::litellm;
use ai_runner::model::cost::{PRICE_FIELDS, Price, Rate, Rates, femto, femto_usd};
use ai_runner::model::now_ms;
use clap::{Args, Subcommand};

use super::invalid;
use crate::commands::access::utc_day;
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `prices ...`.
#[derive(Args)]
pub struct PricesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PricesCommand,
}

/// `prices ...`.
#[derive(Subcommand)]
pub enum PricesCommand {
    /// Import LiteLLM's `model_prices_and_context_window.json` (or an excerpt); nothing is
    /// fetched. A changed price closes the old row and opens a new one.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// Recorded as each row's source (default `litellm:<file name>`).
        #[arg(long)]
        source: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set one model's prices, in USD per unit (per token; per second for audio).
    Set(PricesSet),
    /// The current prices (with --history, closed ones too).
    List {
        /// Only models starting with this.
        #[arg(long)]
        model: Option<String>,
        /// Include prices that were replaced.
        #[arg(long)]
        history: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `prices set`.
#[derive(Args)]
pub struct PricesSet {
    /// The model name a config sends, or a prefix ending in `*` (`gpt-4o*`).
    #[arg(long)]
    pub model: String,
    /// The provider (LiteLLM's name: `openai`, `dashscope`, ...) or a connection name; absent:
    /// any provider.
    #[arg(long, default_value = "")]
    pub provider: String,
    /// `input_cost_per_token`.
    #[arg(long)]
    pub input: Option<f64>,
    /// `output_cost_per_token`.
    #[arg(long)]
    pub output: Option<f64>,
    /// `cache_read_input_token_cost`.
    #[arg(long)]
    pub cache_read: Option<f64>,
    /// `cache_creation_input_token_cost`.
    #[arg(long)]
    pub cache_write: Option<f64>,
    /// `input_cost_per_audio_token`.
    #[arg(long)]
    pub audio_input: Option<f64>,
    /// `output_cost_per_audio_token`.
    #[arg(long)]
    pub audio_output: Option<f64>,
    /// `output_cost_per_reasoning_token`.
    #[arg(long)]
    pub reasoning: Option<f64>,
    /// `input_cost_per_second` (audio billed by duration).
    #[arg(long)]
    pub per_second: Option<f64>,
    /// The model's longest answer, for budget reservations when a call sets no `max_tokens`.
    #[arg(long)]
    pub max_output_tokens: Option<i64>,
    /// Recorded as the row's source.
    #[arg(long, default_value = "manual")]
    pub source: String,
}

impl PricesArgs {
    /// Runs the prices command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        match self.command {
            PricesCommand::Import { file, source, json } => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Failure::usage(
                        Code::IoError,
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                let map: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    Failure::usage(
                        Code::InvalidInput,
                        format!("{} is not JSON: {e}", file.display()),
                    )
                })?;
                let source = source.unwrap_or_else(|| {
                    format!(
                        "litellm:{}",
                        file.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    )
                });
                let (prices, skipped) = litellm::parse(&map, &source).map_err(|wrong| {
                    invalid(format!(
                        "nothing imported: {} price(s) are surely wrong: {}",
                        wrong.len(),
                        wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                    ))
                })?;
                let changes = db.set_prices(&prices, now_ms()).await?;
                if json {
                    output::pretty(&serde_json::json!({
                        "file": file.display().to_string(),
                        "priced": prices.len(),
                        "added": changes.added,
                        "changed": changes.changed,
                        "unchanged": changes.unchanged,
                        "skipped": skipped,
                    }));
                } else {
                    outln!(
                        "{}: {} models priced ({} added, {} changed, {} unchanged), {} entries skipped (no per-token or per-second price)",
                        file.display(),
                        prices.len(),
                        changes.added,
                        changes.changed,
                        changes.unchanged,
                        skipped.len()
                    );
                }
                Ok(())
            }
            PricesCommand::Set(s) => {
                let price = price_of(s)?;
                let changes = db.set_prices(&[price], now_ms()).await?;
                outln!(
                    "{}",
                    if changes.added > 0 {
                        "price added"
                    } else if changes.changed > 0 {
                        "price changed (the old one is kept, closed now)"
                    } else {
                        "price unchanged"
                    }
                );
                Ok(())
            }
            PricesCommand::List {
                model,
                history,
                json,
            } => {
                let prices = db.list_prices(model.as_deref(), history).await?;
                if json {
                    let rows: Vec<serde_json::Value> = prices.iter().map(price_json).collect();
                    output::pretty(&rows);
                    return Ok(());
                }
                if prices.is_empty() {
                    outln!(
                        "no prices; `ai-runner prices import model_prices_and_context_window.json` or `prices set`"
                    );
                }
                for p in &prices {
                    let per_million = |r: Rate| {
                        p.rates
                            .get(r)
                            .map_or("-".into(), |f| format!("{:.4}", femto_usd(f) * 1e6))
                    };
                    outln!(
                        "#{:<5} {:<12} {:<40} in {:>9}  out {:>9}  cache-read {:>9}  $/1M tokens{}{}",
                        p.id,
                        if p.provider.is_empty() {
                            "(any)"
                        } else {
                            &p.provider
                        },
                        p.model,
                        per_million(Rate::Input),
                        per_million(Rate::Output),
                        per_million(Rate::CacheRead),
                        p.rates
                            .get(Rate::PerSecond)
                            .map_or(String::new(), |f| format!("  {} $/s", femto_usd(f))),
                        p.valid_to_ms
                            .map_or(String::new(), |to| format!("  (until {})", utc_day(to))),
                    );
                }
                Ok(())
            }
        }
    }
}

/// A price as a catalog's `prices:` item (what `cfg export` writes and `cfg gen` reads back).
pub(crate) fn catalog_price(p: &Price) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("model".into(), p.model.clone().into());
    if !p.provider.is_empty() {
        m.insert("provider".into(), p.provider.clone().into());
    }
    for (name, v) in PRICE_FIELDS.iter().zip(p.rates.0) {
        if let Some(f) = v {
            m.insert((*name).into(), femto_usd(f).into());
        }
    }
    if let Some(n) = p.max_output_tokens {
        m.insert("max_output_tokens".into(), n.into());
    }
    serde_json::Value::Object(m)
}

/// A price row as JSON, under LiteLLM's field names (USD per unit), with its identity and
/// validity.
fn price_json(p: &Price) -> serde_json::Value {
    let mut v = catalog_price(p);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("id".into(), p.id.into());
        m.insert("provider".into(), p.provider.clone().into());
        m.insert("valid_from_ms".into(), p.valid_from_ms.into());
        m.insert("valid_to_ms".into(), p.valid_to_ms.into());
        m.insert("source".into(), p.source.clone().into());
    }
    v
}

fn price_of(s: PricesSet) -> Result<Price, Failure> {
    if s.model.trim().is_empty() || s.model == "*" {
        return Err(invalid("--model names a model, or a prefix like gpt-4o*"));
    }
    let mut rates = Rates::default();
    for (rate, name, v) in [
        (Rate::Input, "--input", s.input),
        (Rate::Output, "--output", s.output),
        (Rate::CacheRead, "--cache-read", s.cache_read),
        (Rate::CacheWrite, "--cache-write", s.cache_write),
        (Rate::AudioIn, "--audio-input", s.audio_input),
        (Rate::AudioOut, "--audio-output", s.audio_output),
        (Rate::Reasoning, "--reasoning", s.reasoning),
        (Rate::PerSecond, "--per-second", s.per_second),
    ] {
        if let Some(usd) = v {
            rates.0[rate as usize] = Some(femto(usd).map_err(|e| invalid(format!("{name}: {e}")))?);
        }
    }
    if rates.is_empty() {
        return Err(invalid(
            "give at least one price: --input, --output, ... (USD per token) or --per-second",
        ));
    }
    Ok(Price {
        id: 0,
        provider: s.provider,
        model: s.model,
        rates,
        max_output_tokens: s.max_output_tokens,
        valid_from_ms: 0,
        valid_to_ms: None,
        source: s.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_per_million_is_refused_with_the_flag_named() {
        let s = PricesSet {
            model: "m".into(),
            provider: String::new(),
            input: Some(2.5),
            output: None,
            cache_read: None,
            cache_write: None,
            audio_input: None,
            audio_output: None,
            reasoning: None,
            per_second: None,
            max_output_tokens: None,
            source: "manual".into(),
        };
        let e = price_of(s).unwrap_err();
        assert_eq!(e.code, Code::PriceInvalid);
        assert!(e.message.starts_with("--input"), "{}", e.message);
    }
}
