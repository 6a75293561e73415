//! The one writer of the cost tables: `ai_model_price`, `ai_budget`, `ai_budget_use`,
//! `ai_budget_reservation`; and the read behind the usage report. Prices, budgets and the
//! report's read are here; reservations, settlements and releases in `reserve`.
//!
//! Invariants: a price is never edited in place: a changed price closes its row
//! (`valid_to_ms`) and opens a new one, so the `price_id` on an audit row always says what was
//! charged. A reservation is one transaction of conditional updates in budget id order (the
//! database checks each limit against the row it has locked: never read-then-write, and no
//! deadlock between reservations); a refusal reserves nothing. Each claim of a reservation is
//! also a row of `ai_budget_reservation` (its identity and expiry), written, grown, deleted and
//! reclaimed only while its window's `ai_budget_use` row is locked, in the same transaction as
//! the change to `reserved_nano`: the settlement, an expired reservation's reclaim and a manual
//! release each take a row's amount off `reserved_nano` only by deleting that row (at most one
//! of them does), so a reclaimed call that settles late adds its cost and frees nothing twice.
//! Reservation rows are read without locking and changed by primary key only (no range locks
//! for concurrent reservations to trip on). On a database without the reservations table (not
//! yet migrated) reservations are anonymous, as before it.

mod reserve;

use sqlx::Row;

use super::dialect::is_missing_table;
use super::{Db, Pool, StoreError, db_err, on_pool};
use crate::model::cost::{
    BudgetScope, BudgetUse, Period, Price, Rates, UsageRow, femto, femto_usd,
};
use crate::ports::CostStore as _;

/// `ai_budget_reservation` not yet looked for.
pub(crate) const HOLDS_UNKNOWN: u8 = 0;
const HOLDS_YES: u8 = 1;
const HOLDS_NO: u8 = 2;

const PRICE_SELECT: &str = "SELECT CAST(id AS SIGNED), provider, model, input_cost_per_token, \
     output_cost_per_token, cache_read_input_token_cost, cache_creation_input_token_cost, \
     input_cost_per_audio_token, output_cost_per_audio_token, output_cost_per_reasoning_token, \
     input_cost_per_second, CAST(max_output_tokens AS SIGNED), CAST(valid_from_ms AS SIGNED), \
     CAST(valid_to_ms AS SIGNED), source FROM ai_model_price";

const PRICE_INSERT: &str = "INSERT INTO ai_model_price (provider, model, input_cost_per_token, \
     output_cost_per_token, cache_read_input_token_cost, cache_creation_input_token_cost, \
     input_cost_per_audio_token, output_cost_per_audio_token, output_cost_per_reasoning_token, \
     input_cost_per_second, max_output_tokens, valid_from_ms, source) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const PRICE_CLOSE: &str = "UPDATE ai_model_price SET valid_to_ms = ? WHERE id = ?";

const BUDGET_SELECT: &str = "SELECT CAST(id AS SIGNED), scope, target, period, \
     CAST(limit_nano AS SIGNED) FROM ai_budget WHERE is_active = 1 ORDER BY id";

const BUDGET_UPSERT_MYSQL: &str = "INSERT INTO ai_budget (scope, target, period, limit_nano, is_active) \
     VALUES (?, ?, ?, ?, 1) ON DUPLICATE KEY UPDATE limit_nano = VALUES(limit_nano), is_active = 1";
const BUDGET_UPSERT_SQLITE: &str = "INSERT INTO ai_budget (scope, target, period, limit_nano, is_active) \
     VALUES (?, ?, ?, ?, 1) ON CONFLICT(scope, target, period) DO UPDATE SET \
     limit_nano = excluded.limit_nano, is_active = 1";

const WINDOW_ENSURE_MYSQL: &str = "INSERT INTO ai_budget_use (budget_id, period_start) VALUES (?, ?) \
     ON DUPLICATE KEY UPDATE budget_id = budget_id";
const WINDOW_ENSURE_SQLITE: &str = "INSERT INTO ai_budget_use (budget_id, period_start) VALUES (?, ?) \
     ON CONFLICT(budget_id, period_start) DO NOTHING";

/// Reserves `amount` unless used + reserved + amount would pass the limit (0 rows matched).
const RESERVE: &str = "UPDATE ai_budget_use SET reserved_nano = reserved_nano + ? \
     WHERE budget_id = ? AND period_start = ? AND used_nano + reserved_nano + ? <= ?";

const REFUSED: &str = "UPDATE ai_budget_use SET refused = refused + 1 \
     WHERE budget_id = ? AND period_start = ?";

const SPENT: &str = "SELECT CAST(used_nano + reserved_nano AS SIGNED) FROM ai_budget_use \
     WHERE budget_id = ? AND period_start = ?";

const SETTLE: &str = "UPDATE ai_budget_use SET \
     reserved_nano = CASE WHEN reserved_nano > ? THEN reserved_nano - ? ELSE 0 END, \
     used_nano = used_nano + ?, calls = calls + 1 WHERE budget_id = ? AND period_start = ?";

/// A settlement's cost, added while the window's row is locked (its reservation row is then
/// read and deleted under that lock).
const SETTLE_USED: &str = "UPDATE ai_budget_use SET used_nano = used_nano + ?, calls = calls + 1 \
     WHERE budget_id = ? AND period_start = ?";

/// Takes an amount off what a window holds reserved (never below 0).
const UNRESERVE: &str = "UPDATE ai_budget_use SET \
     reserved_nano = CASE WHEN reserved_nano > ? THEN reserved_nano - ? ELSE 0 END \
     WHERE budget_id = ? AND period_start = ?";

/// Locks a window's row and changes nothing: reclaims and releases start with it, so every
/// change to a window's reservation rows happens under its row's lock.
const USE_LOCK: &str = "UPDATE ai_budget_use SET reserved_nano = reserved_nano \
     WHERE budget_id = ? AND period_start = ?";

const HOLD_INSERT: &str = "INSERT INTO ai_budget_reservation (reservation_id, budget_id, \
     period_start, amount_nano, created_ms, expires_ms, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?)";

const HOLD_GROW: &str = "UPDATE ai_budget_reservation SET amount_nano = amount_nano + ? \
     WHERE reservation_id = ? AND budget_id = ?";

const HOLD_AMOUNT: &str = "SELECT CAST(amount_nano AS SIGNED) FROM ai_budget_reservation \
     WHERE reservation_id = ? AND budget_id = ?";

const HOLD_DELETE: &str =
    "DELETE FROM ai_budget_reservation WHERE reservation_id = ? AND budget_id = ?";

const HOLDS_EXPIRED: &str = "SELECT CAST(reservation_id AS CHAR), CAST(amount_nano AS SIGNED) \
     FROM ai_budget_reservation WHERE budget_id = ? AND period_start = ? AND expires_ms < ?";

const HOLD_SELECT: &str = "SELECT CAST(reservation_id AS CHAR), CAST(budget_id AS SIGNED), period_start, \
     CAST(amount_nano AS SIGNED), CAST(created_ms AS SIGNED), CAST(expires_ms AS SIGNED), \
     trace_id FROM ai_budget_reservation";

const USED: &str = "SELECT CAST(used_nano AS SIGNED) FROM ai_budget_use \
     WHERE budget_id = ? AND period_start = ?";

const USE_ROW: &str = "SELECT CAST(used_nano AS SIGNED), CAST(reserved_nano AS SIGNED), \
     CAST(calls AS SIGNED), CAST(refused AS SIGNED) FROM ai_budget_use \
     WHERE budget_id = ? AND period_start = ?";

const USAGE_SELECT: &str = "SELECT CAST(created_at AS CHAR), config_key, project_name, route_key, \
     model_name, caller_key, error_code, CAST(prompt_tokens AS SIGNED), \
     CAST(completion_tokens AS SIGNED), CAST(duration_ms AS SIGNED), CAST(ttft_ms AS SIGNED), \
     CAST(cost_nano_usd AS SIGNED), cost_status FROM ai_call_logs WHERE created_at >= ? ORDER BY id";

/// A cost table is missing: the database is behind our schema.
fn cost_err(e: sqlx::Error, table: &'static str) -> StoreError {
    if is_missing_table(&e) {
        StoreError::Outdated(table)
    } else {
        db_err(e)
    }
}

type PriceRow = (
    i64,
    String,
    String,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    i64,
    Option<i64>,
    String,
);

fn price_of(r: PriceRow) -> Price {
    let usd = [r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10];
    let mut rates = Rates::default();
    for (slot, v) in rates.0.iter_mut().zip(usd) {
        // A value no writer here accepts (entered by hand in SQL) prices nothing.
        *slot = v.and_then(|v| femto(v).ok());
    }
    Price {
        id: r.0,
        provider: r.1,
        model: r.2,
        rates,
        max_output_tokens: r.11,
        valid_from_ms: r.12,
        valid_to_ms: r.13,
        source: r.14,
    }
}

/// What an import or `prices set` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PriceChanges {
    /// Models priced for the first time.
    pub added: usize,
    /// Prices that changed (old row closed, new row opened).
    pub changed: usize,
    /// Prices already stored as given.
    pub unchanged: usize,
}

/// The same price (rates and output limit), whatever the row.
fn same(a: &Price, b: &Price) -> bool {
    a.rates == b.rates && a.max_output_tokens == b.max_output_tokens
}

macro_rules! write_prices {
    ($p:expr, $prices:expr, $now:expr) => {{
        let mut tx = $p.begin().await.map_err(db_err)?;
        let mut out = PriceChanges::default();
        for price in $prices {
            let current: Option<PriceRow> = sqlx::query_as(&format!(
                "{PRICE_SELECT} WHERE provider = ? AND model = ? AND valid_to_ms IS NULL AND is_active = 1 ORDER BY id DESC LIMIT 1"
            ))
            .bind(&price.provider)
            .bind(&price.model)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| cost_err(e, "ai_model_price"))?;
            let from = match current.map(price_of) {
                Some(old) if same(&old, price) => {
                    out.unchanged += 1;
                    continue;
                }
                Some(old) => {
                    sqlx::query(PRICE_CLOSE)
                        .bind($now)
                        .bind(old.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    out.changed += 1;
                    $now
                }
                None => {
                    out.added += 1;
                    price.valid_from_ms
                }
            };
            let mut q = sqlx::query(PRICE_INSERT).bind(&price.provider).bind(&price.model);
            for f in price.rates.0 {
                q = q.bind(f.map(femto_usd));
            }
            q.bind(price.max_output_tokens)
                .bind(from)
                .bind(&price.source)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }};
}

impl Db {
    /// Stores prices: a model priced for the first time is valid from its `valid_from_ms`; a
    /// changed price closes the current row now and opens a new one; an equal price is left
    /// alone. One transaction.
    pub async fn set_prices(
        &self,
        prices: &[Price],
        now_ms: i64,
    ) -> Result<PriceChanges, StoreError> {
        let pool = self.pool().await?;
        match pool {
            Pool::MySql(p) => write_prices!(p, prices, now_ms),
            Pool::Sqlite(p) => write_prices!(p, prices, now_ms),
        }
    }

    /// Price rows, current ones only unless `history`, optionally for models starting with
    /// `model`; ordered by provider, model, validity.
    pub async fn list_prices(
        &self,
        model: Option<&str>,
        history: bool,
    ) -> Result<Vec<Price>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!(
            "{PRICE_SELECT} WHERE is_active = 1 AND (? OR valid_to_ms IS NULL) \
             ORDER BY provider, model, valid_from_ms"
        );
        let rows: Vec<PriceRow> = on_pool!(pool, |p| sqlx::query_as(&sql)
            .bind(history)
            .fetch_all(p)
            .await
            .map_err(|e| cost_err(e, "ai_model_price")))?;
        Ok(rows
            .into_iter()
            .map(price_of)
            .filter(|p| model.is_none_or(|m| p.model.starts_with(m)))
            .collect())
    }

    /// Sets a budget's limit (creating or re-activating it).
    pub async fn set_budget(
        &self,
        scope: BudgetScope,
        target: &str,
        period: Period,
        limit_nano: i64,
    ) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        let sql = match pool {
            Pool::MySql(_) => BUDGET_UPSERT_MYSQL,
            Pool::Sqlite(_) => BUDGET_UPSERT_SQLITE,
        };
        on_pool!(pool, |p| sqlx::query(sql)
            .bind(scope.as_str())
            .bind(target)
            .bind(period.as_str())
            .bind(limit_nano)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(|e| cost_err(e, "ai_budget")))
    }

    /// Deactivates a budget; `false` when there was none.
    pub async fn remove_budget(
        &self,
        scope: BudgetScope,
        target: &str,
        period: Period,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            sqlx::query(
            "UPDATE ai_budget SET is_active = 0 WHERE scope = ? AND target = ? AND period = ? AND is_active = 1"
        )
        .bind(scope.as_str())
        .bind(target)
        .bind(period.as_str())
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(|e| cost_err(e, "ai_budget"))
        })
    }

    /// Every active budget with its use in the window containing `now_ms`, and the reservations
    /// held in that window.
    pub async fn budget_uses(&self, now_ms: i64) -> Result<Vec<BudgetUse>, StoreError> {
        let budgets = self.active_budgets().await?;
        let held = self.reservations().await?;
        let pool = self.pool().await?;
        let mut out = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let window = budget.period.window(now_ms);
            let row: Option<(i64, i64, i64, i64)> = on_pool!(pool, |p| sqlx::query_as(USE_ROW)
                .bind(budget.id)
                .bind(&window)
                .fetch_optional(p)
                .await
                .map_err(|e| cost_err(e, "ai_budget_use")))?;
            let (used_nano, reserved_nano, calls, refused) = row.unwrap_or_default();
            let reservations = held
                .iter()
                .filter(|h| h.budget_id == budget.id && h.window == window)
                .cloned()
                .collect();
            out.push(BudgetUse {
                budget,
                window,
                used_nano,
                reserved_nano,
                calls,
                refused,
                reservations,
            });
        }
        Ok(out)
    }

    /// The audit rows written since `since` (`YYYY-MM-DD HH:MM:SS`, the database's clock), in
    /// the shape the usage report needs, oldest first.
    pub async fn usage_rows(&self, since: &str) -> Result<Vec<UsageRow>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let rows = sqlx::query(USAGE_SELECT)
                .bind(since)
                .fetch_all(p)
                .await
                .map_err(|e| {
                    if super::dialect::is_unknown_column(&e) {
                        StoreError::Outdated("ai_call_logs.cost_nano_usd")
                    } else {
                        db_err(e)
                    }
                })?;
            rows.iter()
                .map(|r| {
                    Ok(UsageRow {
                        at: r
                            .try_get::<Option<String>, _>(0)
                            .map_err(db_err)?
                            .unwrap_or_default(),
                        config_key: r.try_get(1).map_err(db_err)?,
                        project: r.try_get(2).map_err(db_err)?,
                        route: r.try_get(3).map_err(db_err)?,
                        model: r.try_get(4).map_err(db_err)?,
                        key: r.try_get(5).map_err(db_err)?,
                        error_code: r.try_get(6).map_err(db_err)?,
                        prompt_tokens: r.try_get(7).map_err(db_err)?,
                        completion_tokens: r.try_get(8).map_err(db_err)?,
                        duration_ms: r.try_get::<Option<i64>, _>(9).map_err(db_err)?.unwrap_or(0),
                        ttft_ms: r.try_get(10).map_err(db_err)?,
                        cost_nano: r.try_get(11).map_err(db_err)?,
                        cost_status: r.try_get(12).map_err(db_err)?,
                    })
                })
                .collect()
        })
    }
}
