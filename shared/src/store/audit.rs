//! The audit table: the one statement that writes `ai_call_logs`, and the reads the CLI and tests
//! use to show a row.
//!
//! Invariants: one row is one INSERT (committed on its own); the extended columns are used when
//! the migration has added them, detected once per process from the first insert (an unmigrated
//! predecessor table gets the core columns only, never a failed run).

use std::sync::atomic::Ordering;

use serde_json::{Map, Value};
use sqlx::Row;

use super::dialect::{InsertId, is_unknown_column, to_i64};
use super::{Db, StoreError, db_err, on_pool, sql};
use crate::model::AuditRow;

/// Which columns an insert writes: each shape is the one before it plus what a migration added.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// The predecessor's columns.
    Core = 1,
    /// Core and extended (version 2).
    Extended = 2,
    /// And `row_key` (version 7).
    Keyed = 3,
    /// And the caller's identity (version 8).
    Identified = 4,
    /// And the call's cost (version 9).
    Priced = 5,
}

impl Shape {
    /// The shape a process found working (unknown: try the newest).
    fn from_mode(mode: u8) -> Shape {
        match mode {
            1 => Shape::Core,
            2 => Shape::Extended,
            3 => Shape::Keyed,
            4 => Shape::Identified,
            _ => Shape::Priced,
        }
    }

    /// The next older shape, and what the table lacks when this one's columns are unknown.
    fn older(self) -> Option<(Shape, &'static str)> {
        match self {
            Shape::Priced => Some((
                Shape::Identified,
                "ai_call_logs lacks the cost columns; costs are not recorded (run `ai-runner db migrate`)",
            )),
            Shape::Identified => Some((
                Shape::Keyed,
                "ai_call_logs lacks the caller columns; callers are not recorded (run `ai-runner db migrate`)",
            )),
            Shape::Keyed => Some((
                Shape::Extended,
                "ai_call_logs lacks the row_key column; replays cannot be deduplicated (run `ai-runner db migrate`)",
            )),
            Shape::Extended => Some((
                Shape::Core,
                "ai_call_logs lacks the extended audit columns; writing core columns only (run `ai-runner db migrate`)",
            )),
            Shape::Core => None,
        }
    }
}

impl Db {
    async fn insert_audit_with(&self, row: &AuditRow, shape: Shape) -> Result<i64, sqlx::Error> {
        let pool = self
            .pool()
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let sql = match shape {
            Shape::Priced => sql::INSERT_AUDIT_PRICED,
            Shape::Identified => sql::INSERT_AUDIT_IDENTIFIED,
            Shape::Keyed => sql::INSERT_AUDIT_KEYED,
            Shape::Extended => sql::INSERT_AUDIT_EXTENDED,
            Shape::Core => sql::INSERT_AUDIT_CORE,
        };
        on_pool!(pool, |p| {
            let q = sqlx::query(sql)
                .bind(&row.config_key)
                .bind(i64::from(row.http_status))
                .bind(to_i64(row.duration_ms))
                .bind(row.prompt_tokens)
                .bind(row.completion_tokens)
                .bind(row.total_tokens)
                .bind(&row.response_id)
                .bind(&row.error_code)
                .bind(&row.error_message)
                .bind(&row.request_body_json)
                .bind(&row.response_body_json)
                .bind(crate::model::utc_datetime_ms(
                    row.created_at_ms.unwrap_or_else(crate::model::now_ms),
                ));
            let q = if shape >= Shape::Extended {
                q.bind(&row.trace_id)
                    .bind(row.status)
                    .bind(i64::from(row.attempts))
                    .bind(row.provider_ms.map(to_i64))
                    .bind(row.ttft_ms.map(to_i64))
                    .bind(&row.trigger_source)
                    .bind(&row.request_id)
                    .bind(&row.model_name)
                    .bind(&row.project_name)
                    .bind(&row.route_key)
                    .bind(&row.route_policy)
                    .bind(row.route_attempt.map(i64::from))
                    .bind(&row.handover_reason)
            } else {
                q
            };
            let q = if shape >= Shape::Keyed {
                q.bind(&row.row_key)
            } else {
                q
            };
            let q = if shape >= Shape::Identified {
                q.bind(&row.caller_key)
                    .bind(&row.caller_principal)
                    .bind(&row.source_ip)
            } else {
                q
            };
            let q = if shape >= Shape::Priced {
                q.bind(row.cost_nano_usd)
                    .bind(&row.cost_status)
                    .bind(row.price_id)
            } else {
                q
            };
            q.execute(p).await.map(|r| r.insert_id())
        })
    }

    /// The id of the row already written under `key`.
    async fn audit_id_by_key(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(
            sql::AUDIT_ID_BY_ROW_KEY
        )
        .bind(key)
        .fetch_optional(p)
        .await
        .map_err(db_err))
    }

    /// Commits one audit row; returns its id ([`crate::ports::Store::insert_audit`]). A row whose
    /// `row_key` is stored already is not written again: its id is returned.
    pub(crate) async fn write_audit(&self, row: &AuditRow) -> Result<i64, StoreError> {
        // Connect first, so an unreachable server is DB_UNAVAILABLE, not DB_ERROR.
        self.pool().await?;
        // Newest shape first; each unknown column steps down once per process.
        let mut shape = Shape::from_mode(self.audit_mode.load(Ordering::Relaxed));
        loop {
            match self.insert_audit_with(row, shape).await {
                Ok(id) => {
                    self.audit_mode.store(shape as u8, Ordering::Relaxed);
                    return Ok(id);
                }
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    if let Some(id) = self
                        .audit_id_by_key(row.row_key.as_deref().unwrap_or(""))
                        .await?
                    {
                        return Ok(id);
                    }
                    return Err(StoreError::Query("audit row key conflict".into()));
                }
                Err(e) if is_unknown_column(&e) => match shape.older() {
                    Some((older, note)) => {
                        tracing::warn!("{note}");
                        shape = older;
                        self.audit_mode.store(older as u8, Ordering::Relaxed);
                    }
                    None => return Err(db_err(e)),
                },
                Err(e) => return Err(db_err(e)),
            }
        }
    }

    /// Reads the audit row with this id as JSON (column name -> value), for the CLI and tests.
    pub async fn audit_row(&self, id: i64) -> Result<Option<Map<String, Value>>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let row = sqlx::query(sql::AUDIT_ROW)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            Ok(row.map(|r| row_to_json(&r)))
        })
    }

    /// The latest successful calls of a config (`route` = None) or of a route's members, newest
    /// first, evaluation calls left out: what `eval dataset add-from-audit` harvests.
    pub async fn recent_answers(
        &self,
        config_key: Option<&str>,
        route: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<Map<String, Value>>, StoreError> {
        let pool = self.pool().await?;
        let fetch = |sql: &'static str| async move {
            on_pool!(pool, |p| {
                let q = match route {
                    Some((project, key)) => sqlx::query(sql).bind(project).bind(key).bind(limit),
                    None => sqlx::query(sql).bind(config_key.unwrap_or("")).bind(limit),
                };
                q.fetch_all(p)
                    .await
                    .map(|rows| rows.iter().map(row_to_json).collect::<Vec<_>>())
            })
        };
        let rows = match route {
            Some(_) => fetch(sql::RECENT_ROUTE_ANSWERS).await,
            None => match fetch(sql::RECENT_CONFIG_ANSWERS).await {
                Err(e) if is_unknown_column(&e) => fetch(sql::RECENT_CONFIG_ANSWERS_CORE).await,
                other => other,
            },
        };
        match rows {
            Ok(rows) => Ok(rows),
            Err(e) if is_unknown_column(&e) => Err(StoreError::Outdated("ai_call_logs")),
            Err(e) => Err(db_err(e)),
        }
    }

    /// Every audit row with this trace id, oldest first.
    pub async fn audit_rows_for_trace(
        &self,
        trace_id: &str,
    ) -> Result<Vec<Map<String, Value>>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let rows = sqlx::query(sql::AUDIT_ROWS_FOR_TRACE)
                .bind(trace_id)
                .fetch_all(p)
                .await
                .map_err(db_err)?;
            Ok(rows.iter().map(row_to_json).collect())
        })
    }
}

/// Decodes any row into JSON: integer columns as numbers, everything else as text.
pub(crate) fn row_to_json<R: Row>(r: &R) -> Map<String, Value>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database>,
    for<'a> u64: sqlx::Decode<'a, R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database>,
{
    use sqlx::{Column, TypeInfo};
    let mut out = Map::new();
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_info().name().to_ascii_uppercase();
        let v = if ty.contains("INT") && ty.contains("UNSIGNED") {
            r.try_get_unchecked::<Option<u64>, _>(i)
                .ok()
                .flatten()
                .map(Value::from)
        } else if ty.contains("INT") {
            r.try_get_unchecked::<Option<i64>, _>(i)
                .ok()
                .flatten()
                .map(Value::from)
        } else if ty.contains("DATE") || ty.contains("TIME") {
            None
        } else {
            r.try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .map(Value::from)
        };
        out.insert(col.name().to_owned(), v.unwrap_or(Value::Null));
    }
    out
}
