//! The upload pipeline's tables: which route handles which objects (`ai_media_route_map`) and
//! one job row per object version (`ai_media_job`) that makes repeated deliveries no-ops.
//!
//! Invariants: claiming a job is atomic (a unique key on bucket + key + version, then a
//! conditional update to take over a failed job or one whose lease ran out), so two racing
//! deliveries never both run; times are epoch milliseconds computed here, so the SQL is the same
//! on MySQL and SQLite.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{Db, InsertId, StoreError, json_col, on_pool};

/// A mapping from uploaded objects to a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaMapping {
    /// Row id.
    pub id: i64,
    /// Bucket name, or `*` for any bucket.
    pub bucket: String,
    /// Keys must start with this ('' = any).
    pub key_prefix: String,
    /// Keys must end with this ('' = any), e.g. `.wav`.
    pub key_suffix: String,
    /// Route project.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// Extra variables for the run (e.g. `{"MEDIA_MODE": "inline"}`).
    pub variables: Option<Value>,
    /// Whether it is used.
    pub active: bool,
}

impl MediaMapping {
    /// Whether this mapping applies to `bucket`/`key`.
    pub fn matches(&self, bucket: &str, key: &str) -> bool {
        self.active
            && (self.bucket == "*" || self.bucket == bucket)
            && key.starts_with(&self.key_prefix)
            && key.ends_with(&self.key_suffix)
    }

    /// Higher is more specific: an exact bucket, then a longer prefix, then a longer suffix.
    fn specificity(&self) -> (bool, usize, usize, i64) {
        (
            self.bucket != "*",
            self.key_prefix.len(),
            self.key_suffix.len(),
            -self.id,
        )
    }
}

/// Picks the most specific matching mapping.
pub fn most_specific<'a>(
    maps: &'a [MediaMapping],
    bucket: &str,
    key: &str,
) -> Option<&'a MediaMapping> {
    maps.iter()
        .filter(|m| m.matches(bucket, key))
        .max_by_key(|m| m.specificity())
}

/// Identifies one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    /// Bucket.
    pub bucket: String,
    /// Decoded object key.
    pub key: String,
    /// Version id, else ETag, else ''.
    pub version: String,
}

/// The result of trying to claim a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: this caller runs it.
    New(i64),
    /// A failed job, or one stuck past its lease: this caller runs it again.
    TakenOver {
        /// Job id.
        id: i64,
        /// Attempts including this one.
        attempts: i64,
    },
    /// Already finished (succeeded, failed for good, or rejected): nothing to do.
    Done {
        /// Job id.
        id: i64,
        /// Its status.
        status: String,
    },
    /// Another delivery is running it right now.
    InProgress(i64),
}

/// How a job ended.
#[derive(Debug, Clone, Default)]
pub struct JobFinish {
    /// `succeeded`, `failed` or `rejected`.
    pub status: &'static str,
    /// Stable code on failure or rejection.
    pub error_code: Option<String>,
    /// Message on failure or rejection.
    pub error_message: Option<String>,
    /// Run trace id.
    pub trace_id: Option<String>,
    /// Audit row ids of the run, comma-separated.
    pub audit_ids: Option<String>,
    /// Where the result JSON was written.
    pub result_bucket: Option<String>,
    /// Its key.
    pub result_key: Option<String>,
    /// A short summary of the run (answered_by, status, content length...).
    pub summary: Option<Value>,
    /// Media format (extension).
    pub media_format: Option<String>,
    /// Object size.
    pub size_bytes: Option<i64>,
    /// Object content type.
    pub content_type: Option<String>,
    /// Finish time.
    pub finished_ms: i64,
    /// Processing time.
    pub duration_ms: i64,
}

/// A job row as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Id.
    pub id: i64,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub object_key: String,
    /// Version id or ETag.
    pub object_version: String,
    /// `running`, `succeeded`, `failed`, `rejected`.
    pub status: String,
    /// Claims so far.
    pub attempts: i64,
    /// Route project.
    pub project_name: Option<String>,
    /// Route key.
    pub route_key: Option<String>,
    /// Stable code on failure.
    pub error_code: Option<String>,
    /// Message on failure.
    pub error_message: Option<String>,
    /// Run trace id.
    pub trace_id: Option<String>,
    /// Audit row ids, comma-separated.
    pub audit_ids: Option<String>,
    /// Result location.
    pub result_bucket: Option<String>,
    /// Result key.
    pub result_key: Option<String>,
    /// Summary.
    pub summary: Option<Value>,
    /// Created (epoch ms).
    pub created_ms: i64,
    /// Processing time.
    pub duration_ms: Option<i64>,
}

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

fn job_from<'r, R: Row>(r: &'r R) -> Result<(JobRow, Option<String>), sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        JobRow {
            id: r.try_get("id")?,
            bucket: r.try_get("bucket")?,
            object_key: r.try_get("object_key")?,
            object_version: r.try_get("object_version")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            project_name: r.try_get("project_name")?,
            route_key: r.try_get("route_key")?,
            error_code: r.try_get("error_code")?,
            error_message: r.try_get("error_message")?,
            trace_id: r.try_get("trace_id")?,
            audit_ids: r.try_get("audit_ids")?,
            result_bucket: r.try_get("result_bucket")?,
            result_key: r.try_get("result_key")?,
            summary: None,
            created_ms: r.try_get("created_ms")?,
            duration_ms: r.try_get("duration_ms")?,
        },
        r.try_get("summary_json")?,
    ))
}

impl Db {
    /// Every mapping (active or not), oldest first.
    pub async fn list_mappings(&self) -> Result<Vec<MediaMapping>, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("SELECT {MAP_COLUMNS} FROM ai_media_route_map ORDER BY id");
        let raw = on_pool!(pool, |p| {
            let rows = sqlx::query(&sql)
                .fetch_all(p)
                .await
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(mapping_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::Query)?
        });
        raw.into_iter()
            .map(|(mut m, vars)| {
                m.variables = json_col(vars, "ai_media_route_map.variables_json")?;
                Ok(m)
            })
            .collect()
    }

    /// The most specific active mapping for an object.
    pub async fn find_mapping(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<MediaMapping>, StoreError> {
        let all = self.list_mappings().await?;
        Ok(most_specific(&all, bucket, key).cloned())
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
        on_pool!(pool, |p| sqlx::query("INSERT INTO ai_media_route_map (bucket, key_prefix, key_suffix, project_name, route_key, variables_json, is_active) VALUES (?, ?, ?, ?, ?, ?, 1)")
            .bind(bucket).bind(key_prefix).bind(key_suffix).bind(project).bind(route_key).bind(&vars)
            .execute(p).await.map(|r| r.insert_id()))
        .map_err(StoreError::Query)
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
        .map_err(StoreError::Query)
    }

    /// Claims the job for an object version (see [`Claim`]).
    pub async fn claim_job(
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
            sqlx::query("INSERT INTO ai_media_job (bucket, object_key, object_version, status, attempts, lease_until_ms, project_name, route_key, created_ms, started_ms) VALUES (?, ?, ?, 'running', 1, ?, ?, ?, ?, ?)")
            .bind(&job.bucket).bind(&job.key).bind(&job.version).bind(lease).bind(project).bind(route_key).bind(now_ms).bind(now_ms)
            .execute(p).await.map(|r| r.insert_id())
        });
        match inserted {
            Ok(id) => return Ok(Claim::New(id)),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
            Err(e) => return Err(StoreError::Query(e)),
        }
        let taken = on_pool!(pool, |p| sqlx::query("UPDATE ai_media_job SET status = 'running', attempts = attempts + 1, lease_until_ms = ?, started_ms = ?, project_name = ?, route_key = ?, error_code = NULL, error_message = NULL WHERE bucket = ? AND object_key = ? AND object_version = ? AND (status = 'failed' OR (status = 'running' AND lease_until_ms < ?))")
            .bind(lease).bind(now_ms).bind(project).bind(route_key).bind(&job.bucket).bind(&job.key).bind(&job.version).bind(now_ms)
            .execute(p).await.map(|r| r.rows_affected()))
        .map_err(StoreError::Query)?;
        let row = on_pool!(pool, |p| {
            let r = sqlx::query("SELECT CAST(id AS SIGNED), status, CAST(attempts AS SIGNED) FROM ai_media_job WHERE bucket = ? AND object_key = ? AND object_version = ?")
                .bind(&job.bucket).bind(&job.key).bind(&job.version)
                .fetch_one(p).await.map_err(StoreError::Query)?;
            (
                r.try_get::<i64, _>(0).map_err(StoreError::Query)?,
                r.try_get::<String, _>(1).map_err(StoreError::Query)?,
                r.try_get::<i64, _>(2).map_err(StoreError::Query)?,
            )
        });
        let (id, status, attempts) = row;
        Ok(match (taken, status.as_str()) {
            (1, _) => Claim::TakenOver { id, attempts },
            (_, "running") => Claim::InProgress(id),
            _ => Claim::Done { id, status },
        })
    }

    /// Makes a finished job claimable again (re-processing on demand).
    pub async fn reopen_job(&self, job: &JobKey) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query("UPDATE ai_media_job SET status = 'failed' WHERE bucket = ? AND object_key = ? AND object_version = ? AND status <> 'running'")
            .bind(&job.bucket).bind(&job.key).bind(&job.version)
            .execute(p).await.map(|_| ()))
        .map_err(StoreError::Query)
    }

    /// Records how a claimed job ended.
    pub async fn finish_job(&self, id: i64, f: &JobFinish) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        let summary = f.summary.as_ref().map(Value::to_string);
        on_pool!(pool, |p| sqlx::query("UPDATE ai_media_job SET status = ?, lease_until_ms = 0, error_code = ?, error_message = ?, trace_id = ?, audit_ids = ?, result_bucket = ?, result_key = ?, summary_json = ?, media_format = ?, size_bytes = ?, content_type = ?, finished_ms = ?, duration_ms = ? WHERE id = ?")
            .bind(f.status).bind(&f.error_code).bind(&f.error_message).bind(&f.trace_id).bind(&f.audit_ids)
            .bind(&f.result_bucket).bind(&f.result_key).bind(&summary).bind(&f.media_format).bind(f.size_bytes)
            .bind(&f.content_type).bind(f.finished_ms).bind(f.duration_ms).bind(id)
            .execute(p).await.map(|_| ()))
        .map_err(StoreError::Query)
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
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(job_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::Query)?
        });
        raw.into_iter().map(finish_row).collect()
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
                .map_err(StoreError::Query)?;
            row.map(|r| job_from(&r))
                .transpose()
                .map_err(StoreError::Query)?
        });
        raw.map(finish_row).transpose()
    }
}

fn finish_row((mut row, summary): (JobRow, Option<String>)) -> Result<JobRow, StoreError> {
    row.summary = json_col(summary, "ai_media_job.summary_json")?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, bucket: &str, prefix: &str, suffix: &str) -> MediaMapping {
        MediaMapping {
            id,
            bucket: bucket.into(),
            key_prefix: prefix.into(),
            key_suffix: suffix.into(),
            project: "p".into(),
            route_key: format!("r{id}"),
            variables: None,
            active: true,
        }
    }

    #[test]
    fn the_most_specific_mapping_wins() {
        let maps = [
            m(1, "*", "", ""),
            m(2, "b", "calls/", ""),
            m(3, "b", "calls/vip/", ""),
            m(4, "b", "calls/", ".wav"),
        ];
        let pick = |k: &str| most_specific(&maps, "b", k).map(|m| m.id);
        assert_eq!(pick("calls/vip/x.mp3"), Some(3));
        assert_eq!(pick("calls/x.wav"), Some(4));
        assert_eq!(pick("calls/x.mp3"), Some(2));
        assert_eq!(pick("other/x.mp3"), Some(1));
        assert_eq!(
            most_specific(&maps[1..], "other-bucket", "calls/x.wav"),
            None
        );
        let mut inactive = m(5, "b", "calls/vip/deep/", "");
        inactive.active = false;
        let with = [maps[2].clone(), inactive];
        assert_eq!(
            most_specific(&with, "b", "calls/vip/deep/x").map(|m| m.id),
            Some(3)
        );
    }
}
