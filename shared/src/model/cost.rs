//! Money: model prices, what a call cost, and the budgets that cap spending.
//!
//! Invariants: amounts of money are integers. Prices are held in femto-USD per unit (10^-15 USD:
//! LiteLLM's smallest prices, 1e-10 USD per token, stay exact) and costs in nano-USD (10^-9
//! USD), the unit of `ai_call_logs.cost_nano_usd` and of budgets, so sums never drift. A cost
//! nobody can compute is `None` with [`CostStatus::Unpriced`], never 0.

use serde::Serialize;

/// Femto-USD in one USD.
pub const FEMTO_PER_USD: f64 = 1e15;
/// Nano-USD in one USD.
pub const NANO_PER_USD: f64 = 1e9;
/// The largest price per unit accepted: more than 1 USD per token (or per second) is surely a
/// price entered per million or per thousand units.
pub const MAX_USD_PER_UNIT: f64 = 1.0;

/// LiteLLM's price field names, in the order the prices table and `prices list` show them.
pub const PRICE_FIELDS: [&str; 8] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "input_cost_per_audio_token",
    "output_cost_per_audio_token",
    "output_cost_per_reasoning_token",
    "input_cost_per_second",
];

/// Per-unit prices in femto-USD, one slot per [`PRICE_FIELDS`] entry (`None`: not priced
/// separately; see [`Rates::get`] for what stands in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates(pub [Option<i64>; 8]);

/// The slots of [`Rates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Uncached text input token.
    Input = 0,
    /// Text output token.
    Output = 1,
    /// Input token read from the provider's prompt cache.
    CacheRead = 2,
    /// Input token written to the provider's prompt cache.
    CacheWrite = 3,
    /// Audio input token.
    AudioIn = 4,
    /// Audio output token.
    AudioOut = 5,
    /// Reasoning (hidden) output token.
    Reasoning = 6,
    /// One second of input audio.
    PerSecond = 7,
}

impl Rates {
    /// The price of one unit of `r`: its own when set, else the plain input or output price
    /// (what the provider charges when it does not price the kind separately; LiteLLM's rule).
    pub fn get(&self, r: Rate) -> Option<i64> {
        let own = self.0[r as usize];
        match r {
            Rate::Input | Rate::Output | Rate::PerSecond => own,
            Rate::CacheRead | Rate::CacheWrite | Rate::AudioIn => {
                own.or(self.0[Rate::Input as usize])
            }
            Rate::AudioOut | Rate::Reasoning => own.or(self.0[Rate::Output as usize]),
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// Converts a USD price per unit to femto-USD, refusing what cannot be a price.
pub fn femto(usd: f64) -> Result<i64, String> {
    if !usd.is_finite() || usd < 0.0 {
        return Err(format!("{usd} is not a price"));
    }
    if usd > MAX_USD_PER_UNIT {
        return Err(format!(
            "{usd} USD per unit is surely wrong (more than {MAX_USD_PER_UNIT} USD per token or second): prices are per unit, not per million"
        ));
    }
    Ok((usd * FEMTO_PER_USD).round() as i64)
}

/// A femto-USD price back in USD (display).
pub fn femto_usd(f: i64) -> f64 {
    f as f64 / FEMTO_PER_USD
}

/// A nano-USD amount in USD (results, reports).
pub fn nano_usd(n: i64) -> f64 {
    n as f64 / NANO_PER_USD
}

/// USD to nano-USD (budget limits), refusing negative or absurd amounts.
pub fn usd_nano(usd: f64) -> Result<i64, String> {
    if !usd.is_finite() || !(0.0..=1e9).contains(&usd) {
        return Err(format!("{usd} is not an amount of USD"));
    }
    Ok((usd * NANO_PER_USD).round() as i64)
}

/// Why a call was not made: a budget.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BudgetError {
    /// A budget covering the call has no room for its maximum cost.
    #[error(
        "the {scope} budget of {target:?} for this {period} is used up ({spent_usd:.6} of {limit_usd:.6} USD)"
    )]
    Exceeded {
        /// `project`, `route` or `key`.
        scope: &'static str,
        /// What it caps.
        target: String,
        /// `day` or `month`.
        period: &'static str,
        /// The limit.
        limit_usd: f64,
        /// Used and reserved in the window.
        spent_usd: f64,
    },
    /// A budget covers the call but the model has no price, so its cost could not be capped.
    #[error(
        "model {0:?} has no price, and a budget covers this call (set one with `ai-runner prices set`)"
    )]
    Unpriced(String),
    /// A budget covers the call but its request turns on a provider-side tool (named here),
    /// whose cost the request does not show.
    #[error(
        "this call turns on {0}, whose cost (search fees, retrieved text) the request does not show, and a budget covers it: it cannot be capped"
    )]
    Uncapped(String),
}

impl BudgetError {
    /// Stable code.
    pub fn code(&self) -> crate::code::Code {
        match self {
            Self::Exceeded { .. } => crate::code::Code::BudgetExceeded,
            Self::Unpriced(_) => crate::code::Code::BudgetUnpriced,
            Self::Uncapped(_) => crate::code::Code::BudgetUncapped,
        }
    }
}

/// One row of `ai_model_price`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// LiteLLM's `litellm_provider` or a connection name; empty: any provider.
    pub provider: String,
    /// The model name sent, or a prefix ending in `*`.
    pub model: String,
    /// The prices.
    pub rates: Rates,
    /// The longest answer the model gives (`max_output_tokens`), for reservations.
    pub max_output_tokens: Option<i64>,
    /// Valid from (ms since the epoch; 0 = always).
    pub valid_from_ms: i64,
    /// Valid until, exclusive (`None`: still valid).
    pub valid_to_ms: Option<i64>,
    /// Where the price came from (`litellm`, `manual`, `catalog`, a file name).
    pub source: String,
}

impl Price {
    /// True when the pattern is a prefix (`gpt-4o*`).
    pub fn is_prefix(&self) -> bool {
        self.model.ends_with('*')
    }

    /// True when this row is the price at `at_ms`.
    pub fn valid_at(&self, at_ms: i64) -> bool {
        self.valid_from_ms <= at_ms && self.valid_to_ms.is_none_or(|to| at_ms < to)
    }
}

/// How much is known about a cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostStatus {
    /// From the provider's reported usage and an exact price.
    Priced,
    /// Computed with an assumption: usage missing (a stream cut short) and counted from the
    /// request and the text received, audio without a known duration, or a price matched by
    /// prefix or chosen among several providers.
    Estimated,
    /// No price for the model: the cost is unknown (NULL, never 0).
    Unpriced,
}

impl CostStatus {
    /// As stored in `ai_call_logs.cost_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Priced => "priced",
            Self::Estimated => "estimated",
            Self::Unpriced => "unpriced",
        }
    }

    /// The weaker of two statuses (a sum is only as good as its worst part).
    pub fn worst(self, other: Self) -> Self {
        match (self, other) {
            (Self::Unpriced, _) | (_, Self::Unpriced) => Self::Unpriced,
            (Self::Estimated, _) | (_, Self::Estimated) => Self::Estimated,
            (Self::Priced, Self::Priced) => Self::Priced,
        }
    }
}

/// What one or more provider calls cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// nano-USD; `None` when unpriced.
    pub nano: Option<i64>,
    /// How it was known.
    pub status: CostStatus,
    /// The price row used.
    pub price_id: Option<i64>,
}

impl Charge {
    /// Nothing was billed: no provider call was made.
    pub const NONE: Charge = Charge {
        nano: Some(0),
        status: CostStatus::Priced,
        price_id: None,
    };

    /// The sum of two charges (unknown when either is).
    pub fn plus(self, other: Charge) -> Charge {
        let status = self.status.worst(other.status);
        Charge {
            nano: match (self.nano, other.nano) {
                (Some(a), Some(b)) if status != CostStatus::Unpriced => Some(a.saturating_add(b)),
                _ => None,
            },
            status,
            price_id: other.price_id.or(self.price_id),
        }
    }
}

/// What a budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    /// Every call of a project (its routes, and configs run with `PROJECT_NAME`).
    Project,
    /// One route, `project/route_key`.
    Route,
    /// Every call signed by one access key.
    Key,
}

impl BudgetScope {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Route => "route",
            Self::Key => "key",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "project" => Some(Self::Project),
            "route" => Some(Self::Route),
            "key" => Some(Self::Key),
            _ => None,
        }
    }
}

/// A budget's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One UTC day.
    Day,
    /// One UTC calendar month.
    Month,
}

impl Period {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// The window containing `at_ms` (UTC), as stored in `ai_budget_use.period_start`:
    /// `YYYY-MM-DD` for days, `YYYY-MM-01` for months.
    pub fn window(self, at_ms: i64) -> String {
        let (y, m, d) = civil_from_days(at_ms.div_euclid(86_400_000));
        match self {
            Self::Day => format!("{y:04}-{m:02}-{d:02}"),
            Self::Month => format!("{y:04}-{m:02}-01"),
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One row of `ai_budget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Row id.
    pub id: i64,
    /// What it caps.
    pub scope: BudgetScope,
    /// The project name, `project/route_key`, or the access key id.
    pub target: String,
    /// Its window.
    pub period: Period,
    /// The cap in nano-USD.
    pub limit_nano: i64,
}

/// One budget's share of a call: reserved before it, settled after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The budget.
    pub budget: Budget,
    /// Its window at reservation time (settled in the same window, even after midnight).
    pub window: String,
    /// nano-USD reserved.
    pub amount: i64,
}

/// What the database said about a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every claim was reserved.
    Granted,
    /// Nothing was reserved: this budget had no room.
    Refused {
        /// The full budget.
        budget: Budget,
        /// nano-USD used and reserved in its window.
        spent: i64,
    },
}

/// A reservation's identity and lifetime, shared by its claims: each claim is one
/// `ai_budget_reservation` row (this id, the claim's budget and window, the amount held), deleted
/// by the settlement, or, once `expires_ms` has passed (past the call's deadline: the call can
/// no longer be running), reclaimed by the next reservation that finds the budget full, or
/// released by `budget release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// 32 lowercase hex characters, random.
    pub id: String,
    /// When it was made (epoch ms, the reserving process's clock).
    pub created_ms: i64,
    /// When it may be reclaimed (epoch ms).
    pub expires_ms: i64,
    /// The call's trace id (its log lines and audit row).
    pub trace_id: String,
}

/// One reservation row as `budget list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The reservation's id ([`Hold::id`]), what `budget release` takes.
    pub id: String,
    /// The budget.
    pub budget_id: i64,
    /// Its window.
    pub window: String,
    /// nano-USD held.
    pub amount_nano: i64,
    /// When it was made (epoch ms).
    pub created_ms: i64,
    /// When it may be reclaimed (epoch ms).
    pub expires_ms: i64,
    /// The call's trace id.
    pub trace_id: Option<String>,
}

/// A budget's window after a settlement: for the 80% / 100% warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The budget.
    pub budget: Budget,
    /// The window.
    pub window: String,
    /// nano-USD used in it after the settlement.
    pub used_after: i64,
    /// nano-USD this settlement added.
    pub added: i64,
}

/// A budget with its use in the current window (`budget list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetUse {
    /// The budget.
    #[serde(flatten)]
    pub budget: Budget,
    /// The current window.
    pub window: String,
    /// nano-USD settled in it.
    pub used_nano: i64,
    /// nano-USD reserved by calls in flight.
    pub reserved_nano: i64,
    /// Calls settled.
    pub calls: i64,
    /// Calls refused.
    pub refused: i64,
    /// The reservations held in the window, oldest first (empty on a database without the
    /// reservations table); what they hold is part of `reserved_nano`, and the rest of it was
    /// reserved without an identity (by a version before them, or before `db migrate`).
    pub reservations: Vec<Held>,
}

/// One audit row as the usage report reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// `created_at` as text (`YYYY-MM-DD HH:MM:SS[.fff]`).
    pub at: String,
    /// The config.
    pub config_key: String,
    /// The project.
    pub project: Option<String>,
    /// The route key.
    pub route: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The access key that signed the call.
    pub key: Option<String>,
    /// The error code (`None`: ok).
    pub error_code: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Whole call, ms.
    pub duration_ms: i64,
    /// Time to first token, ms.
    pub ttft_ms: Option<i64>,
    /// Cost, nano-USD.
    pub cost_nano: Option<i64>,
    /// Cost status.
    pub cost_status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_in_femto_usd_and_absurd_ones_are_refused() {
        assert_eq!(femto(2.5e-06), Ok(2_500_000_000));
        assert_eq!(femto(7.5e-08), Ok(75_000_000));
        assert_eq!(femto(1e-10), Ok(100_000));
        assert!(femto(2.5).unwrap_err().contains("per million"));
        assert!(femto(-1.0).is_err());
        assert!(femto(f64::NAN).is_err());
    }

    #[test]
    fn windows_are_utc_days_and_months() {
        // 2026-12-01T00:00:00Z and one millisecond before it.
        let at = 1_796_083_200_000;
        assert_eq!(Period::Day.window(at), "2026-12-01");
        assert_eq!(Period::Day.window(at - 1), "2026-11-30");
        assert_eq!(Period::Month.window(at - 1), "2026-11-01");
        assert_eq!(Period::Day.window(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn a_sum_with_an_unpriced_part_is_unknown_not_smaller() {
        let a = Charge {
            nano: Some(5),
            status: CostStatus::Priced,
            price_id: Some(1),
        };
        let u = Charge {
            nano: None,
            status: CostStatus::Unpriced,
            price_id: None,
        };
        assert_eq!(a.plus(a).nano, Some(10));
        assert_eq!(a.plus(u).nano, None);
        assert_eq!(u.plus(a).status, CostStatus::Unpriced);
        assert_eq!(Charge::NONE.plus(a).nano, Some(5));
    }

    #[test]
    fn kinds_without_their_own_price_fall_back_to_input_or_output() {
        let mut r = Rates::default();
        r.0[Rate::Input as usize] = Some(10);
        r.0[Rate::Output as usize] = Some(20);
        r.0[Rate::CacheRead as usize] = Some(1);
        assert_eq!(r.get(Rate::CacheRead), Some(1));
        assert_eq!(r.get(Rate::CacheWrite), Some(10));
        assert_eq!(r.get(Rate::Reasoning), Some(20));
        assert_eq!(r.get(Rate::PerSecond), None);
    }
}
