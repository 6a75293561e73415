//! `prices import / set / list`, `budget set / list / remove / release` and `usage`: the money side of
//! the audit trail (the library's [`ai_runner::cost`] prices calls and keeps budgets,
//! [`ai_runner::store::cost`] stores them).
//! One module per command: [`prices`], [`budget`], [`usage`].

mod budget;
mod prices;
mod usage;

pub use budget::BudgetArgs;
pub use prices::PricesArgs;
pub(crate) use prices::catalog_price;
pub use usage::UsageArgs;

use ai_runner::Code;

use crate::failure::Failure;

/// A refused price or budget input (exit 2).
fn invalid(message: impl Into<String>) -> Failure {
    Failure::usage(Code::PriceInvalid, message)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of an epoch-ms instant: the library's audit-time format without
/// its milliseconds.
fn utc_datetime(ms: i64) -> String {
    let mut s = ai_runner::model::utc_datetime_ms(ms);
    s.truncate(19);
    s
}
