//! The evaluation tables: `ai_eval_run` (one row per run: what was run, against what
//! configuration, how it ended) and `ai_eval_result` (one row per target, case and repetition).
//! This is the [`EvalStore`] port's implementation.
//!
//! Invariants: a result is unique on (run, target, case, repetition) with binary collation on
//! MySQL (case keys that differ only in case or accents stay apart), so recording it again is a
//! no-op; JSON columns hold the model's serialized values and are parsed back into them.

use serde_json::Value;
use sqlx::Row;

use std::collections::BTreeSet;

use super::dialect::{is_missing_table, is_unknown_column};
use super::{Db, StoreError, db_err, json_col, on_pool, sql, vocab_col};
use crate::model::Trigger;
use crate::model::eval::{CaseResult, EvalRun, EvalStatus, Report};
use crate::model::now_ms;
use crate::ports::EvalStore;

fn text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

type RunRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    i64,
);

fn run_from(r: RunRow) -> Result<EvalRun, StoreError> {
    let (
        run_key,
        suite,
        status,
        trigger,
        suite_json,
        options_json,
        config_hash,
        total,
        baseline,
        summary,
        gate,
        report_location,
        created_ms,
        finished_ms,
        stop_reason,
        failure_streak,
    ) = r;
    let parse = |t: Option<String>, column| json_col(t, column);
    Ok(EvalRun {
        run_key,
        suite,
        status: vocab_col(&status, "ai_eval_run.status", EvalStatus::parse)?,
        trigger: vocab_col(&trigger, "ai_eval_run.trigger_source", Trigger::parse)?,
        suite_json: parse(Some(suite_json), "ai_eval_run.suite_json")?.unwrap_or(Value::Null),
        options_json: parse(Some(options_json), "ai_eval_run.options_json")?.unwrap_or(Value::Null),
        config_hash,
        total,
        baseline,
        summary: parse(summary, "ai_eval_run.summary_json")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| StoreError::BadJson {
                column: "ai_eval_run.summary_json",
            })?,
        gate: parse(gate, "ai_eval_run.gate_json")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| StoreError::BadJson {
                column: "ai_eval_run.gate_json",
            })?,
        report_location,
        created_ms,
        finished_ms,
        stop_reason,
        failure_streak,
    })
}

fn audit_ids(r: &CaseResult) -> String {
    r.audit_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A missing table or column means our migrations were not applied.
fn outdated(e: sqlx::Error, table: &'static str) -> StoreError {
    if is_missing_table(&e) || is_unknown_column(&e) {
        StoreError::Outdated(table)
    } else {
        db_err(e)
    }
}

impl EvalStore for Db {
    async fn create_run(&self, run: &EvalRun) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(sql::INSERT_EVAL_RUN)
            .bind(&run.run_key)
            .bind(&run.suite)
            .bind(run.trigger.as_str())
            .bind(text(&run.suite_json))
            .bind(text(&run.options_json))
            .bind(&run.config_hash)
            .bind(run.total)
            .bind(&run.baseline)
            .bind(run.created_ms)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(|e| outdated(e, "ai_eval_run")))
    }

    async fn record_result(&self, run_key: &str, r: &CaseResult) -> Result<(), StoreError> {
        self.record_results(run_key, std::slice::from_ref(r)).await
    }

    async fn record_results(
        &self,
        run_key: &str,
        results: &[CaseResult],
    ) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let sql = if self.is_mysql() {
            sql::INSERT_EVAL_RESULT_IF_NEW_MYSQL
        } else {
            sql::INSERT_EVAL_RESULT_IF_NEW_SQLITE
        };
        let now = now_ms();
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(db_err)?;
            for r in results {
                sqlx::query(sql)
                    .bind(run_key)
                    .bind(&r.target)
                    .bind(&r.case_key)
                    .bind(i64::from(r.repeat))
                    .bind(i64::from(r.pass))
                    .bind(r.score)
                    .bind(i64::try_from(r.latency_ms).unwrap_or(i64::MAX))
                    .bind(&r.error_code)
                    .bind(&r.trace_id)
                    .bind(audit_ids(r))
                    .bind(text(r))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        })
    }

    async fn finish_run(
        &self,
        run_key: &str,
        report: &Report,
        report_location: Option<&str>,
        token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let status = if report.stopped.is_some() {
            EvalStatus::Stopped
        } else {
            EvalStatus::Finished
        };
        let n = on_pool!(pool, |p| sqlx::query(sql::FINISH_EVAL_RUN)
            .bind(status.as_str())
            .bind(text(&report.targets))
            .bind(text(&report.gate))
            .bind(i64::from(report.gate.passed))
            .bind(report_location)
            .bind(now_ms())
            .bind(report.stopped.as_deref())
            .bind(run_key)
            .bind(token)
            .bind(token)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| outdated(e, "ai_eval_run")))?;
        Ok(n > 0)
    }

    async fn claim_finalize(
        &self,
        run_key: &str,
        token: &str,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let n = on_pool!(pool, |p| sqlx::query(sql::CLAIM_EVAL_FINALIZE)
            .bind(token)
            .bind(now_ms)
            .bind(run_key)
            .bind(stale_before_ms)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| outdated(e, "ai_eval_run")))?;
        Ok(n == 1)
    }

    async fn stop_run(
        &self,
        run_key: &str,
        status: EvalStatus,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let n = on_pool!(pool, |p| sqlx::query(sql::STOP_EVAL_RUN)
            .bind(status.as_str())
            .bind(reason)
            .bind(run_key)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| outdated(e, "ai_eval_run")))?;
        Ok(n == 1)
    }

    async fn note_failures(
        &self,
        run_key: &str,
        all_failed: bool,
        added: i64,
        trailing: i64,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            sqlx::query(sql::NOTE_EVAL_FAILURES)
                .bind(i64::from(all_failed))
                .bind(added)
                .bind(trailing)
                .bind(run_key)
                .execute(p)
                .await
                .map_err(|e| outdated(e, "ai_eval_run"))?;
            sqlx::query_scalar::<_, i64>(sql::EVAL_STREAK)
                .bind(run_key)
                .fetch_one(p)
                .await
                .map_err(db_err)
        })
    }

    async fn count_results(&self, run_key: &str) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar(sql::COUNT_EVAL_RESULTS)
            .bind(run_key)
            .fetch_one(p)
            .await
            .map_err(db_err))
    }

    async fn result_keys(
        &self,
        run_key: &str,
    ) -> Result<BTreeSet<(String, String, u32)>, StoreError> {
        let pool = self.pool().await?;
        let rows: Vec<(String, String, i64)> =
            on_pool!(pool, |p| sqlx::query_as(sql::EVAL_RESULT_KEYS)
                .bind(run_key)
                .fetch_all(p)
                .await
                .map_err(db_err))?;
        Ok(rows
            .into_iter()
            .map(|(t, c, r)| (t, c, u32::try_from(r).unwrap_or(0)))
            .collect())
    }

    async fn suite_document(&self, name: &str) -> Result<Option<Value>, StoreError> {
        self.evals_document(Some(name)).await
    }

    async fn eval_run(&self, run_key: &str) -> Result<Option<EvalRun>, StoreError> {
        let pool = self.pool().await?;
        let row: Option<RunRow> = on_pool!(pool, |p| sqlx::query_as(sql::EVAL_RUN)
            .bind(run_key)
            .fetch_optional(p)
            .await
            .map_err(|e| outdated(e, "ai_eval_run")))?;
        row.map(run_from).transpose()
    }

    async fn eval_results(&self, run_key: &str) -> Result<Vec<CaseResult>, StoreError> {
        let pool = self.pool().await?;
        let rows: Vec<String> = on_pool!(pool, |p| {
            let rows = sqlx::query(sql::EVAL_RESULTS)
                .bind(run_key)
                .fetch_all(p)
                .await
                .map_err(db_err)?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?
        });
        rows.iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|_| StoreError::BadJson {
                    column: "ai_eval_result.result_json",
                })
            })
            .collect()
    }

    async fn eval_runs(&self, suite: Option<&str>, limit: i64) -> Result<Vec<EvalRun>, StoreError> {
        let pool = self.pool().await?;
        let rows: Vec<RunRow> = on_pool!(pool, |p| sqlx::query_as(sql::EVAL_RUNS)
            .bind(suite)
            .bind(suite)
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(|e| outdated(e, "ai_eval_run")))?;
        rows.into_iter().map(run_from).collect()
    }

    async fn last_finished_run(
        &self,
        suite: &str,
        except: &str,
    ) -> Result<Option<String>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar(sql::LAST_FINISHED_EVAL_RUN)
            .bind(suite)
            .bind(except)
            .fetch_optional(p)
            .await
            .map_err(db_err))
    }
}
