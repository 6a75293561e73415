//! Budget reservations: a call's claims reserved in one transaction of conditional updates in
//! budget-id order, grown before a billed retry, settled at the real cost, and freed by the reclaim
//! of expired ones or by `budget release`; the [`CostStore`] port of [`Db`].
//!
//! Invariants: those of the cost tables (the parent module's header): every change to a window's
//! reservation rows happens under its `ai_budget_use` row's lock, and a reservation row's amount
//! leaves `reserved_nano` only with the deletion of that row.

use std::sync::atomic::Ordering;

use super::{
    BUDGET_SELECT, HOLD_AMOUNT, HOLD_DELETE, HOLD_GROW, HOLD_INSERT, HOLD_SELECT, HOLDS_EXPIRED,
    HOLDS_NO, HOLDS_YES, PRICE_SELECT, PriceRow, REFUSED, RESERVE, SETTLE, SETTLE_USED, SPENT,
    UNRESERVE, USE_LOCK, USED, WINDOW_ENSURE_MYSQL, WINDOW_ENSURE_SQLITE, cost_err, price_of,
};
use crate::model::cost::{
    Budget, BudgetScope, Claim, Held, Hold, Period, Price, Reserved, Settled,
};
use crate::ports::CostStore;
use crate::store::{Db, Pool, StoreError, db_err, on_pool};

/// Locks a window's row inside the transaction `$tx` (a release or reclaim starts with it).
macro_rules! lock_window {
    ($tx:ident, $budget:expr, $window:expr) => {
        sqlx::query(USE_LOCK)
            .bind($budget)
            .bind($window)
            .execute(&mut *$tx)
            .await
            .map_err(|e| cost_err(e, "ai_budget_use"))?
    };
}

/// Takes `$amount` (when positive) off what a window holds reserved, inside `$tx`.
macro_rules! unreserve {
    ($tx:ident, $amount:expr, $budget:expr, $window:expr) => {
        if $amount > 0 {
            sqlx::query(UNRESERVE)
                .bind($amount)
                .bind($amount)
                .bind($budget)
                .bind($window)
                .execute(&mut *$tx)
                .await
                .map_err(db_err)?;
        }
    };
}

impl Db {
    /// Makes sure each claim's window row exists (idempotent, outside the reservation's
    /// transaction so that transaction only updates locked rows, in one order).
    async fn ensure_windows(&self, claims: &[Claim]) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        let sql = match pool {
            Pool::MySql(_) => WINDOW_ENSURE_MYSQL,
            Pool::Sqlite(_) => WINDOW_ENSURE_SQLITE,
        };
        for c in claims {
            let key = (c.budget.id, c.window.clone());
            if self
                .budget_windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&key)
            {
                continue;
            }
            on_pool!(pool, |p| sqlx::query(sql)
                .bind(c.budget.id)
                .bind(&c.window)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| cost_err(e, "ai_budget_use")))?;
            let mut known = self
                .budget_windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Old windows are never claimed again.
            if known.len() > 4096 {
                known.clear();
            }
            known.insert(key);
        }
        Ok(())
    }
}

/// Reserves every claim, with its reservation row when `$holds` (`$grow`: adds to the rows the
/// reservation already has), or nothing. `None`: granted and committed; else the claim that had
/// no room, everything rolled back.
macro_rules! try_reserve {
    ($p:expr, $hold:expr, $claims:expr, $holds:expr, $grow:expr) => {{
        let mut tx = $p.begin().await.map_err(db_err)?;
        let mut refused = None;
        for c in $claims {
            let matched = sqlx::query(RESERVE)
                .bind(c.amount)
                .bind(c.budget.id)
                .bind(&c.window)
                .bind(c.amount)
                .bind(c.budget.limit_nano)
                .execute(&mut *tx)
                .await
                .map_err(|e| cost_err(e, "ai_budget_use"))?
                .rows_affected();
            if matched == 0 {
                refused = Some(c);
                break;
            }
            if $holds {
                let q = if $grow {
                    sqlx::query(HOLD_GROW)
                        .bind(c.amount)
                        .bind(&$hold.id)
                        .bind(c.budget.id)
                } else {
                    sqlx::query(HOLD_INSERT)
                        .bind(&$hold.id)
                        .bind(c.budget.id)
                        .bind(&c.window)
                        .bind(c.amount)
                        .bind($hold.created_ms)
                        .bind($hold.expires_ms)
                        .bind(&$hold.trace_id)
                };
                let written = q
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| cost_err(e, "ai_budget_reservation"))?
                    .rows_affected();
                // Grown after it was reclaimed or released: it holds nothing to grow.
                if written == 0 {
                    refused = Some(c);
                    break;
                }
            }
        }
        match refused {
            None => {
                tx.commit().await.map_err(db_err)?;
                None
            }
            Some(c) => {
                tx.rollback().await.map_err(db_err)?;
                Some(c)
            }
        }
    }};
}

macro_rules! settle_all {
    ($p:expr, $hold:expr, $claims:expr, $cost:expr, $holds:expr) => {{
        let mut tx = $p.begin().await.map_err(db_err)?;
        let mut out = Vec::with_capacity($claims.len());
        for c in $claims {
            if $holds {
                // The window's row first (its lock orders this against reclaims and releases),
                // then what this reservation still holds in it: freed only by deleting its row.
                sqlx::query(SETTLE_USED)
                    .bind($cost)
                    .bind(c.budget.id)
                    .bind(&c.window)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| cost_err(e, "ai_budget_use"))?;
                let held: Option<i64> = sqlx::query_scalar(HOLD_AMOUNT)
                    .bind(&$hold.id)
                    .bind(c.budget.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| cost_err(e, "ai_budget_reservation"))?;
                if let Some(amount) = held {
                    let deleted = sqlx::query(HOLD_DELETE)
                        .bind(&$hold.id)
                        .bind(c.budget.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if deleted == 1 {
                        unreserve!(tx, amount, c.budget.id, &c.window);
                    }
                }
            } else {
                sqlx::query(SETTLE)
                    .bind(c.amount)
                    .bind(c.amount)
                    .bind($cost)
                    .bind(c.budget.id)
                    .bind(&c.window)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| cost_err(e, "ai_budget_use"))?;
            }
            let used: Option<i64> = sqlx::query_scalar(USED)
                .bind(c.budget.id)
                .bind(&c.window)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            out.push(Settled {
                budget: c.budget.clone(),
                window: c.window.clone(),
                used_after: used.unwrap_or(0),
                added: $cost,
            });
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }};
}

/// Frees reservation rows of one window in one transaction under the window's lock: those
/// expired before `$now` (`Some`), else the reservations `$ids`. Each row is freed by whoever
/// deletes it; returns the ids and amounts this call freed.
macro_rules! free_window {
    ($p:expr, $budget:expr, $window:expr, $now:expr, $ids:expr) => {{
        let mut tx = $p.begin().await.map_err(db_err)?;
        lock_window!(tx, $budget, $window);
        let candidates: Vec<(String, i64)> = match $now {
            Some(now) => sqlx::query_as(HOLDS_EXPIRED)
                .bind($budget)
                .bind($window)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| cost_err(e, "ai_budget_reservation"))?,
            None => {
                let mut found = Vec::new();
                for id in $ids {
                    let amount: Option<i64> = sqlx::query_scalar(HOLD_AMOUNT)
                        .bind(id)
                        .bind($budget)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| cost_err(e, "ai_budget_reservation"))?;
                    found.extend(amount.map(|a| (id.clone(), a)));
                }
                found
            }
        };
        let mut freed = Vec::new();
        for (id, amount) in candidates {
            let deleted = sqlx::query(HOLD_DELETE)
                .bind(&id)
                .bind($budget)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            if deleted == 1 {
                freed.push((id, amount));
            }
        }
        let total: i64 = freed.iter().map(|(_, a)| *a).sum();
        unreserve!(tx, total, $budget, $window);
        tx.commit().await.map_err(db_err)?;
        freed
    }};
}

/// Sets a window's reserved amount to what its reservation rows hold, under its lock; returns
/// what that freed.
macro_rules! free_untracked {
    ($p:expr, $budget:expr, $window:expr) => {{
        let mut tx = $p.begin().await.map_err(db_err)?;
        lock_window!(tx, $budget, $window);
        let reserved: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(reserved_nano AS SIGNED) FROM ai_budget_use \
             WHERE budget_id = ? AND period_start = ?",
        )
        .bind($budget)
        .bind($window)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let tracked: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_nano), 0) AS SIGNED) FROM ai_budget_reservation \
             WHERE budget_id = ? AND period_start = ?",
        )
        .bind($budget)
        .bind($window)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| cost_err(e, "ai_budget_reservation"))?;
        let freed = reserved.unwrap_or(0) - tracked;
        unreserve!(tx, freed, $budget, $window);
        tx.commit().await.map_err(db_err)?;
        freed.max(0)
    }};
}

type HeldRow = (String, i64, String, i64, i64, i64, Option<String>);

fn held_of(r: HeldRow) -> Held {
    Held {
        id: r.0,
        budget_id: r.1,
        window: r.2,
        amount_nano: r.3,
        created_ms: r.4,
        expires_ms: r.5,
        trace_id: r.6,
    }
}

impl Db {
    /// Whether the reservations table exists (looked up once per process: a database migrated
    /// while the process runs gets identified reservations from its next start).
    async fn holds(&self) -> Result<bool, StoreError> {
        match self.holds_mode.load(Ordering::Relaxed) {
            HOLDS_YES => return Ok(true),
            HOLDS_NO => return Ok(false),
            _ => {}
        }
        let pool = self.pool().await?;
        let yes = crate::store::migrate::table_exists(pool, "ai_budget_reservation").await?;
        if !yes {
            tracing::warn!(
                table = "ai_budget_reservation",
                "no reservations table: budget reservations have no identity or expiry, and a call that dies before settling holds its reservation until the window ends"
            );
        }
        self.holds_mode
            .store(if yes { HOLDS_YES } else { HOLDS_NO }, Ordering::Relaxed);
        Ok(yes)
    }

    /// Reserves (or grows) with a reclaim on refusal: when a claim finds no room, the claimed
    /// windows' expired reservations are reclaimed and, if that freed anything, it is tried once
    /// more. A final refusal is counted and reserves nothing.
    async fn reserve_or_reclaim(
        &self,
        hold: &Hold,
        claims: &[Claim],
        grow: bool,
    ) -> Result<Reserved, StoreError> {
        self.ensure_windows(claims).await?;
        let holds = self.holds().await?;
        let pool = self.pool().await?;
        let mut refused = on_pool!(pool, |p| try_reserve!(p, hold, claims, holds, grow));
        if refused.is_some() && holds {
            let mut freed = 0;
            let now = crate::model::now_ms();
            for c in claims {
                freed += self.reclaim(c.budget.id, &c.window, now).await?;
            }
            if freed > 0 {
                refused = on_pool!(pool, |p| try_reserve!(p, hold, claims, holds, grow));
            }
        }
        let Some(c) = refused else {
            return Ok(Reserved::Granted);
        };
        on_pool!(pool, |p| {
            sqlx::query(REFUSED)
                .bind(c.budget.id)
                .bind(&c.window)
                .execute(p)
                .await
                .map_err(db_err)?;
            let spent: Option<i64> = sqlx::query_scalar(SPENT)
                .bind(c.budget.id)
                .bind(&c.window)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            Ok(Reserved::Refused {
                budget: c.budget.clone(),
                spent: spent.unwrap_or(0),
            })
        })
    }

    /// Reclaims the reservations of one window that expired before `now_ms` (their calls died
    /// before settling); returns how many.
    async fn reclaim(
        &self,
        budget_id: i64,
        window: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let pool = self.pool().await?;
        let none: &[String] = &[];
        let freed = on_pool!(pool, |p| free_window!(
            p,
            budget_id,
            window,
            Some(now_ms),
            none
        ));
        if !freed.is_empty() {
            tracing::warn!(
                event = "budget.reclaimed",
                budget_id,
                window,
                reservations = freed.len(),
                reclaimed_nano = freed.iter().map(|(_, a)| *a).sum::<i64>(),
                ids = %freed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(","),
                "expired reservations reclaimed: their calls never settled"
            );
        }
        Ok(freed.len())
    }

    /// Every reservation row, oldest first (none on a database without the table).
    pub async fn reservations(&self) -> Result<Vec<Held>, StoreError> {
        if !self.holds().await? {
            return Ok(Vec::new());
        }
        let pool = self.pool().await?;
        let sql = format!("{HOLD_SELECT} ORDER BY created_ms, reservation_id, budget_id");
        let rows: Vec<HeldRow> = on_pool!(pool, |p| sqlx::query_as(&sql)
            .fetch_all(p)
            .await
            .map_err(|e| cost_err(e, "ai_budget_reservation")))?;
        Ok(rows.into_iter().map(held_of).collect())
    }

    /// Releases reservations by hand (`budget release`): `ids`, or with `expired_before` every
    /// one that expired before it. Each row is freed atomically with its amount, at most once
    /// whoever else (its settlement, a reclaim) reaches it; returns the rows this call freed.
    pub async fn release_reservations(
        &self,
        ids: &[String],
        expired_before: Option<i64>,
    ) -> Result<Vec<Held>, StoreError> {
        if !self.holds().await? {
            return Err(StoreError::Outdated("ai_budget_reservation"));
        }
        let rows: Vec<Held> = self
            .reservations()
            .await?
            .into_iter()
            .filter(|h| match expired_before {
                Some(t) => h.expires_ms < t,
                None => ids.contains(&h.id),
            })
            .collect();
        let mut windows: Vec<(i64, String)> = rows
            .iter()
            .map(|h| (h.budget_id, h.window.clone()))
            .collect();
        windows.sort();
        windows.dedup();
        let pool = self.pool().await?;
        let mut freed = Vec::new();
        for (budget, window) in &windows {
            let these: Vec<String> = rows
                .iter()
                .filter(|h| h.budget_id == *budget && &h.window == window)
                .map(|h| h.id.clone())
                .collect();
            let out = on_pool!(pool, |p| free_window!(
                p,
                *budget,
                window,
                expired_before,
                &these
            ));
            freed.extend(out.into_iter().filter_map(|(id, _)| {
                rows.iter()
                    .find(|h| h.id == id && h.budget_id == *budget)
                    .cloned()
            }));
        }
        Ok(freed)
    }

    /// Frees what the active budgets' current windows hold reserved beyond their reservation
    /// rows (`budget release --untracked`): amounts reserved without an identity, by a version
    /// before reservation rows or a process started before `db migrate`, that cannot be
    /// reclaimed otherwise. Only safe once no such process is running. Returns each window
    /// freed with the amount.
    pub async fn release_untracked(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(Budget, String, i64)>, StoreError> {
        if !self.holds().await? {
            return Err(StoreError::Outdated("ai_budget_reservation"));
        }
        let pool = self.pool().await?;
        let mut out = Vec::new();
        for budget in self.active_budgets().await? {
            let window = budget.period.window(now_ms);
            let freed = on_pool!(pool, |p| free_untracked!(p, budget.id, &window));
            if freed > 0 {
                out.push((budget, window, freed));
            }
        }
        Ok(out)
    }
}

impl CostStore for Db {
    async fn prices_for(&self, model: &str) -> Result<Vec<Price>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("{PRICE_SELECT} WHERE is_active = 1 AND (model = ? OR model LIKE '%*')");
        let rows: Vec<PriceRow> = on_pool!(pool, |p| sqlx::query_as(&sql)
            .bind(model)
            .fetch_all(p)
            .await
            .map_err(|e| cost_err(e, "ai_model_price")))?;
        Ok(rows.into_iter().map(price_of).collect())
    }

    async fn active_budgets(&self) -> Result<Vec<Budget>, StoreError> {
        let pool = self.pool().await?;
        let rows: Vec<(i64, String, String, String, i64)> =
            on_pool!(pool, |p| sqlx::query_as(BUDGET_SELECT)
                .fetch_all(p)
                .await
                .map_err(|e| cost_err(e, "ai_budget")))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, scope, target, period, limit_nano)| {
                let budget = Budget {
                    id,
                    scope: BudgetScope::parse(&scope)?,
                    target,
                    period: Period::parse(&period)?,
                    limit_nano,
                };
                Some(budget)
            })
            .collect())
    }

    async fn reserve(&self, hold: &Hold, claims: &[Claim]) -> Result<Reserved, StoreError> {
        self.reserve_or_reclaim(hold, claims, false).await
    }

    async fn extend(&self, hold: &Hold, claims: &[Claim]) -> Result<Reserved, StoreError> {
        self.reserve_or_reclaim(hold, claims, true).await
    }

    async fn settle(
        &self,
        hold: &Hold,
        claims: &[Claim],
        cost_nano: i64,
    ) -> Result<Vec<Settled>, StoreError> {
        let holds = self.holds().await?;
        let pool = self.pool().await?;
        match pool {
            Pool::MySql(p) => settle_all!(p, hold, claims, cost_nano, holds),
            Pool::Sqlite(p) => settle_all!(p, hold, claims, cost_nano, holds),
        }
    }
}
