//! The one writer of `ai_connection_breaker`: the circuit breakers every instance shares (the
//! [`BreakerStore`] port), and the operator's listing, reset and per-connection limits.
//!
//! Invariants: every write is one statement, conditional where two instances could race (a
//! failure is an upsert computing the next state from the row it finds; a probe is claimed by a
//! conditional `UPDATE` that exactly one caller's `rows_affected` sees as 1); the statements
//! compute what [`BreakerRow::failed`], [`BreakerRow::succeeded`] and [`BreakerRow::claim`]
//! compute (the contract tests run both). MySQL evaluates an `UPDATE`'s assignments left to
//! right, each seeing the columns assigned before it, while SQLite sees the old row throughout:
//! the failure's assignments are ordered so that each reads only columns assigned after it, and
//! both dialects agree. A database without the table answers [`StoreError::Outdated`].

use sqlx::Row;

use super::dialect::{is_missing_table, to_i64};
use super::{Db, StoreError, db_err, on_pool};
use crate::model::breaker::{BreakerRow, Limits};
use crate::ports::BreakerStore;

const TABLE: &str = "ai_connection_breaker";

const SELECT: &str = "SELECT b.connection_id, COALESCE(c.name, ''), b.failures, b.window_start_ms, \
     b.opened, b.open_until_ms, b.probe_until_ms, b.failures_max, b.cooldown_ms, b.updated_ms \
     FROM ai_connection_breaker b LEFT JOIN ai_connection c ON c.id = b.connection_id";

const NOT_CLEAN: &str =
    " WHERE b.failures > 0 OR b.open_until_ms IS NOT NULL OR b.probe_until_ms IS NOT NULL";

/// The failure's next state, from the row found (binds: see [`failure_binds`]). `stale` is the
/// start of the window (`now - window`): a streak that began before it restarts at 1.
const FAILED_SET: &str = "opened = opened + CASE \
       WHEN open_until_ms IS NOT NULL AND open_until_ms <= ? THEN 1 \
       WHEN open_until_ms IS NULL AND (CASE WHEN window_start_ms < ? THEN 1 ELSE failures + 1 END) >= COALESCE(failures_max, ?) THEN 1 \
       ELSE 0 END, \
     open_until_ms = CASE \
       WHEN open_until_ms IS NOT NULL AND open_until_ms <= ? THEN ? + COALESCE(cooldown_ms, ?) \
       WHEN open_until_ms IS NOT NULL THEN open_until_ms \
       WHEN (CASE WHEN window_start_ms < ? THEN 1 ELSE failures + 1 END) >= COALESCE(failures_max, ?) THEN ? + COALESCE(cooldown_ms, ?) \
       ELSE NULL END, \
     probe_until_ms = NULL, \
     failures = CASE WHEN window_start_ms < ? THEN 1 ELSE failures + 1 END, \
     window_start_ms = CASE WHEN window_start_ms < ? THEN ? ELSE window_start_ms END, \
     updated_ms = ?";

const INSERT: &str = "INSERT INTO ai_connection_breaker (connection_id, failures, window_start_ms, \
     opened, open_until_ms, probe_until_ms, updated_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)";

const SUCCEEDED: &str = "UPDATE ai_connection_breaker SET failures = 0, window_start_ms = 0, \
     open_until_ms = NULL, probe_until_ms = NULL, updated_ms = ? WHERE connection_id = ? \
     AND (failures > 0 OR open_until_ms IS NOT NULL OR probe_until_ms IS NOT NULL) \
     AND (open_until_ms IS NULL OR open_until_ms <= ?)";

const CLAIM: &str = "UPDATE ai_connection_breaker SET probe_until_ms = ?, updated_ms = ? \
     WHERE connection_id = ? AND open_until_ms IS NOT NULL AND open_until_ms <= ? \
     AND (probe_until_ms IS NULL OR probe_until_ms <= ?)";

const RESET: &str = "UPDATE ai_connection_breaker SET failures = 0, window_start_ms = 0, \
     open_until_ms = NULL, probe_until_ms = NULL, updated_ms = ? \
     WHERE connection_id = (SELECT id FROM ai_connection WHERE name = ?)";

const LIMITS_INSERT: &str = "INSERT INTO ai_connection_breaker (connection_id, failures_max, \
     cooldown_ms, updated_ms) SELECT id, ?, ?, ? FROM ai_connection WHERE name = ?";

/// The binds of [`FAILED_SET`], in order.
fn failure_binds(defaults: Limits, now_ms: i64) -> [i64; 14] {
    let stale = now_ms - defaults.window_ms;
    let (thr, cool) = (i64::from(defaults.failures.max(1)), defaults.cooldown_ms);
    [
        now_ms, stale, thr, now_ms, now_ms, cool, stale, thr, now_ms, cool, stale, stale, now_ms,
        now_ms,
    ]
}

fn outdated(e: sqlx::Error) -> StoreError {
    if is_missing_table(&e) {
        StoreError::Outdated(TABLE)
    } else {
        db_err(e)
    }
}

fn row_of<'r, R: Row>(r: &'r R) -> Result<BreakerRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let count = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    Ok(BreakerRow {
        connection_id: r.try_get(0)?,
        connection: r.try_get(1)?,
        failures: count(r.try_get(2)?),
        window_start_ms: r.try_get(3)?,
        opened: count(r.try_get(4)?),
        open_until_ms: r.try_get(5)?,
        probe_until_ms: r.try_get(6)?,
        failures_max: r.try_get::<Option<i64>, _>(7)?.map(count),
        cooldown_ms: r.try_get(8)?,
        updated_ms: r.try_get(9)?,
    })
}

impl Db {
    /// Runs one breaker statement with these binds; the rows it changed.
    async fn execute(&self, sql: &str, binds: &[i64]) -> Result<u64, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(outdated)
        })
    }

    async fn read_breakers(&self, filter: &str) -> Result<Vec<BreakerRow>, StoreError> {
        let pool = self.pool().await?;
        let q = format!("{SELECT}{filter} ORDER BY b.connection_id");
        on_pool!(pool, |p| {
            let rows = sqlx::query(&q).fetch_all(p).await.map_err(outdated)?;
            rows.iter()
                .map(row_of)
                .collect::<Result<_, _>>()
                .map_err(db_err)
        })
    }

    /// Every stored breaker, clean ones included (`ai-runner breaker list`), with its
    /// connection's name.
    pub async fn list_breakers(&self) -> Result<Vec<BreakerRow>, StoreError> {
        self.read_breakers("").await
    }

    /// Closes the breaker of connection `name` by hand; false when it has none stored.
    pub async fn reset_breaker(&self, name: &str) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let now = crate::model::now_ms();
        let n = on_pool!(pool, |p| sqlx::query(RESET)
            .bind(now)
            .bind(name)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(outdated))?;
        Ok(n > 0)
    }

    /// Sets connection `name`'s own threshold and cooldown (`None`: the process's default);
    /// false when no connection has that name.
    pub async fn set_breaker_limits(
        &self,
        name: &str,
        failures: Option<u32>,
        cooldown_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let now = crate::model::now_ms();
        let (f, c) = (failures.map(i64::from), cooldown_ms.map(to_i64));
        let upsert = if self.is_mysql() {
            " ON DUPLICATE KEY UPDATE failures_max = ?, cooldown_ms = ?, updated_ms = ?"
        } else {
            " ON CONFLICT(connection_id) DO UPDATE SET failures_max = ?, cooldown_ms = ?, updated_ms = ?"
        };
        let q = format!("{LIMITS_INSERT}{upsert}");
        let n = on_pool!(pool, |p| sqlx::query(&q)
            .bind(f)
            .bind(c)
            .bind(now)
            .bind(name)
            .bind(f)
            .bind(c)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(outdated))?;
        Ok(n > 0)
    }
}

impl BreakerStore for Db {
    async fn breakers(&self) -> Result<Vec<BreakerRow>, StoreError> {
        self.read_breakers(NOT_CLEAN).await
    }

    async fn breaker_failed(
        &self,
        connection_id: i64,
        defaults: Limits,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        // A new row: the first failure of a clean breaker, computed by the same rules.
        let first = BreakerRow::new(connection_id).failed(defaults, now_ms);
        let upsert = if self.is_mysql() {
            " ON DUPLICATE KEY UPDATE "
        } else {
            " ON CONFLICT(connection_id) DO UPDATE SET "
        };
        let q = format!("{INSERT}{upsert}{FAILED_SET}");
        on_pool!(pool, |p| {
            let mut stmt = sqlx::query(&q)
                .bind(connection_id)
                .bind(i64::from(first.failures))
                .bind(first.window_start_ms)
                .bind(i64::from(first.opened))
                .bind(first.open_until_ms)
                .bind(now_ms);
            for v in failure_binds(defaults, now_ms) {
                stmt = stmt.bind(v);
            }
            stmt.execute(p).await.map(|_| ()).map_err(outdated)
        })
    }

    async fn breaker_succeeded(&self, connection_id: i64, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .execute(SUCCEEDED, &[now_ms, connection_id, now_ms])
            .await?
            == 1)
    }

    async fn claim_probe(
        &self,
        connection_id: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let binds = [until_ms, now_ms, connection_id, now_ms, now_ms];
        Ok(self.execute(CLAIM, &binds).await? == 1)
    }
}
