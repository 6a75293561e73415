//! `prices import / set / list`, `budget set / list / remove / release` and `usage`: the money side of
//! the audit trail (the library's [`ai_runner::cost`] prices calls and keeps budgets,
//! [`ai_runner::store::cost`] stores them).

use std::path::PathBuf;

use ai_runner::Code;
use ai_runner::cost::litellm;
use ai_runner::cost::report::{self, By};
use ai_runner::model::cost::{
    BudgetScope, BudgetUse, Held, PRICE_FIELDS, Period, Price, Rate, Rates, femto, femto_usd,
    nano_usd, usd_nano,
};
use ai_runner::model::now_ms;
use ai_runner::ports::CostStore;
use clap::{Args, Subcommand, ValueEnum};

use crate::commands::access::{parse_span, utc_day};
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, out, outln};

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

/// `budget ...`.
#[derive(Args)]
pub struct BudgetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BudgetCommand,
}

/// What a budget caps: exactly one.
#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["project", "route", "key"])))]
pub struct BudgetTarget {
    /// Every call of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// One route, `project/route_key`.
    #[arg(long)]
    pub route: Option<String>,
    /// Every call signed by this access key.
    #[arg(long)]
    pub key: Option<String>,
}

/// `budget ...`.
#[derive(Subcommand)]
pub enum BudgetCommand {
    /// Set a limit in USD per UTC day and/or per UTC month.
    Set {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// USD per UTC day.
        #[arg(long)]
        daily: Option<f64>,
        /// USD per UTC calendar month.
        #[arg(long)]
        monthly: Option<f64>,
    },
    /// Every budget with its use in the current window and the reservations held in it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Free reservations whose calls will never settle (a process killed mid-call).
    Release(BudgetRelease),
    /// Remove a budget.
    Remove {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// Which window.
        #[arg(long, value_enum)]
        period: PeriodArg,
    },
}

/// `budget release`: frees reservations by hand. An expired reservation is reclaimed anyway by
/// the next call that finds its budget full; this frees one sooner, or what has no identity.
/// Release only reservations of calls that are gone: a released call still running spends
/// past its budget's room (its settlement still counts its cost).
#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["ids", "expired", "untracked"])))]
pub struct BudgetRelease {
    /// Reservation ids, as `budget list` shows them (every budget's share of each).
    pub ids: Vec<String>,
    /// Every reservation past its expiry.
    #[arg(long)]
    pub expired: bool,
    /// What the current windows hold reserved beyond their reservations: amounts reserved
    /// without an identity, before `db migrate` added reservations or by a process started
    /// before it. Only once every such process has stopped.
    #[arg(long)]
    pub untracked: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl BudgetRelease {
    /// Runs `budget release`.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        let now = now_ms();
        let budgets = db.active_budgets().await?;
        let name = |id: i64| {
            budgets.iter().find(|b| b.id == id).map_or_else(
                || format!("budget #{id}"),
                |b| format!("{} {} {}", b.scope.as_str(), b.target, b.period.as_str()),
            )
        };
        let mut freed = Vec::new();
        if !self.ids.is_empty() {
            freed.extend(db.release_reservations(&self.ids, None).await?);
        }
        if self.expired {
            freed.extend(db.release_reservations(&[], Some(now)).await?);
        }
        let untracked = if self.untracked {
            db.release_untracked(now).await?
        } else {
            Vec::new()
        };
        if self.json {
            output::pretty(&serde_json::json!({
                "released": freed.iter().map(|h| held_json(h, now)).collect::<Vec<_>>(),
                "untracked": untracked.iter().map(|(b, window, nano)| serde_json::json!({
                    "scope": b.scope.as_str(),
                    "target": b.target,
                    "period": b.period.as_str(),
                    "window": window,
                    "released_nano": nano,
                    "released_usd": nano_usd(*nano),
                })).collect::<Vec<_>>(),
            }));
        } else {
            for h in &freed {
                outln!(
                    "released {} ({:.9} USD of {} {})",
                    h.id,
                    nano_usd(h.amount_nano),
                    name(h.budget_id),
                    h.window
                );
            }
            for (b, window, nano) in &untracked {
                outln!(
                    "released {:.9} USD reserved without an identity in {} {} {} {window}",
                    nano_usd(*nano),
                    b.scope.as_str(),
                    b.target,
                    b.period.as_str()
                );
            }
            if freed.is_empty() && untracked.is_empty() {
                outln!("nothing to release");
            }
        }
        let missing: Vec<String> = self
            .ids
            .iter()
            .filter(|id| !freed.iter().any(|h| &h.id == *id))
            .map(|id| format!("{id:?}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::usage(
                Code::UnknownReference,
                format!(
                    "no reservation {} is held (settled, reclaimed or released already)",
                    missing.join(", ")
                ),
            ))
        }
    }
}

/// A reservation row as `budget list --json` and `budget release --json` show it.
fn held_json(h: &Held, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": h.id,
        "budget_id": h.budget_id,
        "window": h.window,
        "amount_usd": nano_usd(h.amount_nano),
        "amount_nano": h.amount_nano,
        "created_ms": h.created_ms,
        "expires_ms": h.expires_ms,
        "expired": h.expires_ms < now,
        "trace_id": h.trace_id,
    })
}

/// `--period`.
#[derive(Clone, Copy, ValueEnum)]
pub enum PeriodArg {
    /// The daily budget.
    Day,
    /// The monthly budget.
    Month,
}

/// `usage`.
#[derive(Args)]
pub struct UsageArgs {
    /// How far back: `24h`, `7d`, `30d`, or a UTC date `YYYY-MM-DD`.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Group rows by this.
    #[arg(long, value_enum, default_value = "day")]
    pub by: ByArg,
    /// What the daily spend chart stacks by.
    #[arg(long, value_enum, default_value = "model")]
    pub stack: ByArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: UsageFormat,
    /// Also write a self-contained HTML page with charts here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// `--by`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ByArg {
    /// UTC day.
    Day,
    /// Project.
    Project,
    /// Route.
    Route,
    /// Config.
    Config,
    /// Model.
    Model,
    /// Access key.
    Key,
}

/// `usage --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum UsageFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// CSV.
    Csv,
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::usage(Code::PriceInvalid, message)
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

/// A budget's scope and target. A budget names one project (or one project's route) exactly:
/// a project name holding `/` or `*` is refused, as `cfg verify` refuses it, so a route target
/// splits into its project and route key at its first `/`, as calls are matched.
fn scope_of(t: &BudgetTarget) -> Result<(BudgetScope, String), Failure> {
    let bad_project = |p: &str| p.is_empty() || p.contains(['/', '*']);
    match (&t.project, &t.route, &t.key) {
        (Some(p), None, None) if bad_project(p) => Err(Failure::usage(
            Code::InvalidInput,
            format!("--project {p:?}: a project name may not be empty or contain '/' or '*'"),
        )),
        (Some(p), None, None) => Ok((BudgetScope::Project, p.clone())),
        (None, Some(r), None) => match r.split_once('/') {
            Some((p, k)) if !bad_project(p) && !k.is_empty() => Ok((BudgetScope::Route, r.clone())),
            _ => Err(Failure::usage(
                Code::InvalidInput,
                format!("--route {r:?}: write it as project/route_key"),
            )),
        },
        (None, None, Some(k)) => Ok((BudgetScope::Key, k.clone())),
        _ => Err(Failure::usage(
            Code::InvalidInput,
            "give exactly one of --project, --route, --key",
        )),
    }
}

impl BudgetArgs {
    /// Runs the budget command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        match self.command {
            BudgetCommand::Set {
                target,
                daily,
                monthly,
            } => {
                let (scope, name) = scope_of(&target)?;
                if daily.is_none() && monthly.is_none() {
                    return Err(invalid("give --daily USD and/or --monthly USD"));
                }
                for (period, usd) in [(Period::Day, daily), (Period::Month, monthly)] {
                    let Some(usd) = usd else { continue };
                    let nano = usd_nano(usd).map_err(invalid)?;
                    db.set_budget(scope, &name, period, nano).await?;
                    outln!(
                        "{} {name}: {usd} USD per UTC {}",
                        scope.as_str(),
                        period.as_str()
                    );
                }
                outln!(
                    "running functions apply it within COST_CACHE_SECS (default 60 s); calls need a priced model to be budgeted"
                );
                Ok(())
            }
            BudgetCommand::List { json } => {
                let now = now_ms();
                let uses = db.budget_uses(now).await?;
                if json {
                    let rows: Vec<serde_json::Value> = uses
                        .iter()
                        .map(|u| {
                            serde_json::json!({
                                "scope": u.budget.scope.as_str(),
                                "target": u.budget.target,
                                "period": u.budget.period.as_str(),
                                "window": u.window,
                                "limit_usd": nano_usd(u.budget.limit_nano),
                                "used_usd": nano_usd(u.used_nano),
                                "reserved_usd": nano_usd(u.reserved_nano),
                                "limit_nano": u.budget.limit_nano,
                                "used_nano": u.used_nano,
                                "reserved_nano": u.reserved_nano,
                                "untracked_nano": untracked(u),
                                "calls": u.calls,
                                "refused": u.refused,
                                "reservations": u.reservations.iter().map(|h| held_json(h, now)).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    output::pretty(&rows);
                    return Ok(());
                }
                if uses.is_empty() {
                    outln!("no budgets; `ai-runner budget set --project P --daily 5` makes one");
                }
                for u in &uses {
                    let pct = if u.budget.limit_nano > 0 {
                        u.used_nano as f64 * 100.0 / u.budget.limit_nano as f64
                    } else {
                        100.0
                    };
                    outln!(
                        "{:<8} {:<32} {:<6} {:<11} used {:>12.6} of {:>10.4} USD ({pct:>5.1}%)  reserved {:.6}  calls {}  refused {}",
                        u.budget.scope.as_str(),
                        u.budget.target,
                        u.budget.period.as_str(),
                        u.window,
                        nano_usd(u.used_nano),
                        nano_usd(u.budget.limit_nano),
                        nano_usd(u.reserved_nano),
                        u.calls,
                        u.refused,
                    );
                    for h in &u.reservations {
                        outln!(
                            "  reservation {} {:.9} USD  since {}  {}  trace {}",
                            h.id,
                            nano_usd(h.amount_nano),
                            utc_datetime(h.created_ms),
                            if h.expires_ms < now {
                                format!("expired {} (reclaimable)", utc_datetime(h.expires_ms))
                            } else {
                                format!("expires {}", utc_datetime(h.expires_ms))
                            },
                            h.trace_id.as_deref().unwrap_or("-"),
                        );
                    }
                    let rest = untracked(u);
                    if rest > 0 {
                        outln!(
                            "  {:.9} USD reserved without an identity (before `db migrate`, or by a process started before it): `budget release --untracked` once no such process runs",
                            nano_usd(rest)
                        );
                    }
                }
                Ok(())
            }
            BudgetCommand::Release(r) => r.run(cx).await,
            BudgetCommand::Remove { target, period } => {
                let (scope, name) = scope_of(&target)?;
                let period = match period {
                    PeriodArg::Day => Period::Day,
                    PeriodArg::Month => Period::Month,
                };
                if db.remove_budget(scope, &name, period).await? {
                    outln!("removed the {} budget of {name}", period.as_str());
                    Ok(())
                } else {
                    Err(Failure::usage(
                        Code::UnknownReference,
                        format!(
                            "no {} budget for {} {name}",
                            period.as_str(),
                            scope.as_str()
                        ),
                    ))
                }
            }
        }
    }
}

/// What a window holds reserved beyond its reservation rows (0 on a database without them).
fn untracked(u: &BudgetUse) -> i64 {
    (u.reserved_nano - u.reservations.iter().map(|h| h.amount_nano).sum::<i64>()).max(0)
}

fn by(b: ByArg) -> By {
    match b {
        ByArg::Day => By::Day,
        ByArg::Project => By::Project,
        ByArg::Route => By::Route,
        ByArg::Config => By::Config,
        ByArg::Model => By::Model,
        ByArg::Key => By::Key,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of an epoch-ms instant.
fn utc_datetime(ms: i64) -> String {
    let s = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        utc_day(ms),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `--since`: a span back from now, or a UTC date.
fn since(text: &str) -> Result<String, Failure> {
    let t = text.trim();
    let is_date = t.len() == 10
        && t.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_date {
        return Ok(format!("{t} 00:00:00"));
    }
    let span = parse_span(t)?;
    Ok(utc_datetime(
        now_ms() - i64::try_from(span.as_millis()).unwrap_or(i64::MAX / 2),
    ))
}

impl UsageArgs {
    /// Runs the usage report.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        let since = since(&self.since)?;
        let rows = db.usage_rows(&since).await?;
        let r = report::build(&rows, by(self.by), by(self.stack), since);
        match self.format {
            UsageFormat::Table => out!("{}", report::table(&r)),
            UsageFormat::Json => outln!("{}", report::json(&r)),
            UsageFormat::Csv => out!("{}", report::csv(&r)),
        }
        if let Some(path) = &self.html {
            output::write_out(Some(path), &report::html(&r))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_span_or_a_date() {
        assert_eq!(since("2026-11-01").unwrap(), "2026-11-01 00:00:00");
        assert!(since("7d").unwrap().len() == 19);
        assert!(since("yesterday").is_err());
        assert_eq!(
            utc_datetime(1_796_083_200_000 + 3_723_000),
            "2026-12-01 01:02:03"
        );
    }

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

    #[test]
    fn a_budget_names_one_project_or_route_exactly() {
        let target = |project: Option<&str>, route: Option<&str>| BudgetTarget {
            project: project.map(str::to_owned),
            route: route.map(str::to_owned),
            key: None,
        };
        assert_eq!(
            scope_of(&target(None, Some("lab/r/x"))).unwrap(),
            (BudgetScope::Route, "lab/r/x".to_owned())
        );
        assert_eq!(
            scope_of(&target(Some("shop"), None)).unwrap(),
            (BudgetScope::Project, "shop".to_owned())
        );
        for refused in [
            target(Some("lab/secret"), None),
            target(Some("lab*"), None),
            target(None, Some("lab*/r")),
            target(None, Some("/r")),
            target(None, Some("lab/")),
            target(None, Some("lab")),
        ] {
            assert_eq!(scope_of(&refused).unwrap_err().code, Code::InvalidInput);
        }
    }
}
