//! The upload pipeline's tables: which route handles which objects (`ai_media_route_map`) and
//! one job row per object version (`ai_media_job`) that makes repeated deliveries no-ops.
//!
//! Invariants: claiming a job is atomic (a unique key on bucket + key + version, then a
//! conditional update to take over a failed job or one whose lease ran out), so two racing
//! deliveries never both run; times are epoch milliseconds computed here, so the SQL is the same
//! on MySQL and SQLite.

use serde_json::Value;
use sqlx::Row;

use super::dialect::InsertId;
use super::{Db, StoreError, db_err, json_col, on_pool, sql, vocab_col};
use crate::model::media::{
    Claim, JobFinish, JobKey, JobRow, JobStatus, MediaMapping, most_specific,
};
use crate::ports::JobStore;

const MAP_COLUMNS: &str = "CAST(id AS SIGNED) AS id, bucket, key_prefix, key_suffix, project_name, route_key, CAST(variables_json AS CHAR) AS variables_json, CAST(is_active AS SIGNED) AS is_active";
const JOB_COLUMNS: &str = "CAST(id AS SIGNED) AS id, bucket, object_key, object_version, status, CAST(attempts AS SIGNED) AS attempts, project_name, route_key, error_code, error_message, trace_id, audit_ids, result_bucket, result_key, CAST(summary_json AS CHAR) AS summary_json, CAST(created_ms AS SIGNED) AS created_ms, CAST(duration_ms AS SIGNED) AS duration_ms";

fn mapping_from<'r, R: Row>(r: &'r R) -> Result<(MediaMapping, Option<String>), sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        MediaMapping {
            id: r.try_get("id")?,
            bucket: r.try_get("bucket")?,
            key_prefix: r.try_get("key_prefix")?,
            key_suffix: r.try_get("key_suffix")?,
            project: r.try_get("project_name")?,
            route_key: r.try_get("route_key")?,
            variables: None,
            active: r.try_get::<i64, _>("is_active")? != 0,
        },
        r.try_get("variables_json")?,
    ))
}

fn job_from<'r, R: Row>(r: &'r R) -> Result<JobRow, StoreError>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = r.try_get("status").map_err(db_err)?;
    Ok(JobRow {
        id: r.try_get("id").map_err(db_err)?,
        bucket: r.try_get("bucket").map_err(db_err)?,
        object_key: r.try_get("object_key").map_err(db_err)?,
        object_version: r.try_get("object_version").map_err(db_err)?,
        status: vocab_col(&status, "ai_media_job.status", JobStatus::parse)?,
        attempts: r.try_get("attempts").map_err(db_err)?,
        project_name: r.try_get("project_name").map_err(db_err)?,
        route_key: r.try_get("route_key").map_err(db_err)?,
        error_code: r.try_get("error_code").map_err(db_err)?,
        error_message: r.try_get("error_message").map_err(db_err)?,
        trace_id: r.try_get("trace_id").map_err(db_err)?,
        audit_ids: r.try_get("audit_ids").map_err(db_err)?,
        result_bucket: r.try_get("result_bucket").map_err(db_err)?,
        result_key: r.try_get("result_key").map_err(db_err)?,
        summary: json_col(
            r.try_get("summary_json").map_err(db_err)?,
            "ai_media_job.summary_json",
        )?,
        created_ms: r.try_get("created_ms").map_err(db_err)?,
        duration_ms: r.try_get("duration_ms").map_err(db_err)?,
    })
}

impl Db {
    /// Every mapping (active or not), oldest first.
    pub async fn list_mappings(&self) -> Result<Vec<MediaMapping>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("SELECT {MAP_COLUMNS} FROM ai_media_route_map ORDER BY id");
        let raw = on_pool!(pool, |p| {
            let rows = sqlx::query(&sql).fetch_all(p).await.map_err(db_err)?;
            rows.iter()
                .map(mapping_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?
        });
        raw.into_iter()
            .map(|(mut m, vars)| {
                m.variables = json_col(vars, "ai_media_route_map.variables_json")?;
                Ok(m)
            })
            .collect()
    }

    /// Adds a mapping; returns its id.
    pub async fn add_mapping(
        &self,
        bucket: &str,
        key_prefix: &str,
        key_suffix: &str,
        project: &str,
        route_key: &str,
        variables: Option<&Value>,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let vars = variables.map(Value::to_string);
        on_pool!(pool, |p| sqlx::query(sql::INSERT_MAPPING)
            .bind(bucket)
            .bind(key_prefix)
            .bind(key_suffix)
            .bind(project)
            .bind(route_key)
            .bind(&vars)
            .execute(p)
            .await
            .map(|r| r.insert_id()))
        .map_err(db_err)
    }

    /// Deletes a mapping; true if it existed.
    pub async fn remove_mapping(&self, id: i64) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(
            "DELETE FROM ai_media_route_map WHERE id = ?"
        )
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected() > 0))
        .map_err(db_err)
    }

    /// The most recent jobs, newest first.
    pub async fn list_jobs(&self, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM ai_media_job ORDER BY id DESC LIMIT ?");
        let raw = on_pool!(pool, |p| {
            let rows = sqlx::query(&sql)
                .bind(limit.clamp(1, 10_000))
                .fetch_all(p)
                .await
                .map_err(db_err)?;
            rows.iter().map(job_from).collect::<Result<Vec<_>, _>>()?
        });
        Ok(raw)
    }

    /// The job with this id, if any (the console's result link).
    pub async fn job_by_id(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM ai_media_job WHERE id = ?");
        let raw = on_pool!(pool, |p| {
            let row = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            row.map(|r| job_from(&r)).transpose()?
        });
        Ok(raw)
    }

    /// The job of one object version, if any.
    pub async fn job(&self, job: &JobKey) -> Result<Option<JobRow>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM ai_media_job WHERE bucket = ? AND object_key = ? AND object_version = ?"
        );
        let raw = on_pool!(pool, |p| {
            let row = sqlx::query(&sql)
                .bind(&job.bucket)
                .bind(&job.key)
                .bind(&job.version)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            row.map(|r| job_from(&r)).transpose()?
        });
        Ok(raw)
    }
}

impl JobStore for Db {
    /// The most specific active mapping for an object.
    async fn find_mapping(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<MediaMapping>, StoreError> {
        let all = self.list_mappings().await?;
        Ok(most_specific(&all, bucket, key).cloned())
    }

    /// Claims the job for an object version (see [`Claim`]).
    async fn claim_job(
        &self,
        job: &JobKey,
        project: &str,
        route_key: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim, StoreError> {
        let pool = self.pool().await?;
        let lease = now_ms.saturating_add(lease_ms);
        let inserted = on_pool!(pool, |p| {
            sqlx::query(sql::INSERT_JOB)
                .bind(&job.bucket)
                .bind(&job.key)
                .bind(&job.version)
                .bind(lease)
                .bind(project)
                .bind(route_key)
                .bind(now_ms)
                .bind(now_ms)
                .execute(p)
                .await
                .map(|r| r.insert_id())
        });
        match inserted {
            Ok(id) => return Ok(Claim::New(id)),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
            Err(e) => return Err(db_err(e)),
        }
        let taken = on_pool!(pool, |p| sqlx::query(sql::TAKE_OVER_JOB)
            .bind(lease)
            .bind(now_ms)
            .bind(project)
            .bind(route_key)
            .bind(&job.bucket)
            .bind(&job.key)
            .bind(&job.version)
            .bind(now_ms)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(db_err)?;
        let row = on_pool!(pool, |p| {
            let r = sqlx::query(sql::JOB_STATE)
                .bind(&job.bucket)
                .bind(&job.key)
                .bind(&job.version)
                .fetch_one(p)
                .await
                .map_err(db_err)?;
            (
                r.try_get::<i64, _>(0).map_err(db_err)?,
                r.try_get::<String, _>(1).map_err(db_err)?,
                r.try_get::<i64, _>(2).map_err(db_err)?,
                r.try_get::<Option<String>, _>(3).map_err(db_err)?,
            )
        });
        let (id, status, attempts, summary) = row;
        let status = vocab_col(&status, "ai_media_job.status", JobStatus::parse)?;
        Ok(match (taken, status) {
            (1, _) => Claim::TakenOver {
                id,
                attempts,
                pending: summary
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .and_then(|v| {
                        v.get("pending_result")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    }),
            },
            (_, JobStatus::Running) => Claim::InProgress(id),
            _ => Claim::Done { id, status },
        })
    }

    /// Makes a finished job claimable again (re-processing on demand).
    async fn reopen_job(&self, job: &JobKey) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(sql::REOPEN_JOB)
            .bind(&job.bucket)
            .bind(&job.key)
            .bind(&job.version)
            .execute(p)
            .await
            .map(|_| ()))
        .map_err(db_err)
    }

    /// Records how a claimed job ended.
    async fn finish_job(&self, id: i64, f: &JobFinish) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let summary = f.summary.as_ref().map(Value::to_string);
        on_pool!(pool, |p| sqlx::query(sql::FINISH_JOB)
            .bind(f.status.as_str())
            .bind(&f.error_code)
            .bind(&f.error_message)
            .bind(&f.trace_id)
            .bind(&f.audit_ids)
            .bind(&f.result_bucket)
            .bind(&f.result_key)
            .bind(&summary)
            .bind(&f.media_format)
            .bind(f.size_bytes)
            .bind(&f.content_type)
            .bind(f.finished_ms)
            .bind(f.duration_ms)
            .bind(id)
            .bind(f.attempt)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
        .map_err(db_err)
    }
}
