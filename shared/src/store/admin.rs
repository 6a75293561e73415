//! Writing configuration rows (quickstart, `cfg gen`, tests): select-then-update-or-insert by the
//! natural key, exactly like the predecessor's `cfg gen`, so ids are stable and re-running is a
//! no-op.
//!
//! Invariants: API keys are stored only as encrypted blobs (callers pass the blob, never the
//! plain key); JSON values are written as JSON text; SQL is valid on MySQL and SQLite.

use serde_json::Value;
use sqlx::Row;

use super::{Db, InsertId, StoreError, on_pool};

/// A connection row.
#[derive(Debug, Clone)]
pub struct NewConnection<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Provider label (`openai`, `openrouter`, `custom`, ...).
    pub provider: &'a str,
    /// Full chat-completions URL.
    pub base_url: &'a str,
    /// Encrypted key blob (from [`crate::crypto::Keyring::encrypt`]).
    pub key_blob: &'a str,
}

/// A route row's settings (project and key are passed separately).
#[derive(Debug, Clone, Default)]
pub struct NewRoute<'a> {
    /// `primary_backup`, `round_robin` or `weighted`.
    pub policy: &'a str,
    /// `policy_config_json` (see [`crate::routing`]).
    pub policy_config: Option<Value>,
    /// Route-level variables.
    pub variables: Option<Value>,
    /// Route-level prompt.
    pub prompt_id: Option<i64>,
    /// Route-level param profile.
    pub param_profile_id: Option<i64>,
    /// Route-level response_format.
    pub response_format: Option<Value>,
}

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().filter(|v| !v.is_null()).map(Value::to_string)
}

impl Db {
    async fn find_id(&self, sql: &str, keys: &[&str]) -> Result<Option<i64>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut q = sqlx::query(sql);
            for k in keys {
                q = q.bind(*k);
            }
            match q.fetch_optional(p).await.map_err(StoreError::Query)? {
                Some(r) => Some(r.try_get::<i64, _>(0).map_err(StoreError::Query)).transpose(),
                None => Ok(None),
            }
        })
    }

    /// Inserts or updates a connection by name; returns its id.
    pub async fn upsert_connection(&self, c: &NewConnection<'_>) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_connection WHERE name = ?",
                &[c.name],
            )
            .await?;
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_connection SET provider = ?, base_url = ?, api_key_encrypted = ?, is_active = 1 WHERE id = ?")
                .bind(c.provider).bind(c.base_url).bind(c.key_blob).bind(id)
                .execute(p).await.map(|_| id),
            None => sqlx::query("INSERT INTO ai_connection (name, provider, base_url, api_key_encrypted, is_active) VALUES (?, ?, ?, ?, 1)")
                .bind(c.name).bind(c.provider).bind(c.base_url).bind(c.key_blob)
                .execute(p).await.map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a model by name; returns its id.
    pub async fn upsert_model(&self, name: &str, connection_id: i64) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_model WHERE name = ?",
                &[name],
            )
            .await?;
        on_pool!(pool, |p| match id {
            Some(id) =>
                sqlx::query("UPDATE ai_model SET connection_id = ?, is_active = 1 WHERE id = ?")
                    .bind(connection_id)
                    .bind(id)
                    .execute(p)
                    .await
                    .map(|_| id),
            None => sqlx::query(
                "INSERT INTO ai_model (name, connection_id, is_active) VALUES (?, ?, 1)"
            )
            .bind(name)
            .bind(connection_id)
            .execute(p)
            .await
            .map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a prompt by (name, version); returns its id.
    pub async fn upsert_prompt(
        &self,
        name: &str,
        version: &str,
        messages: &Value,
        response_format: &Option<Value>,
        variables: &Option<Value>,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_prompt WHERE name = ? AND version = ?",
                &[name, version],
            )
            .await?;
        let (m, rf, vars) = (
            messages.to_string(),
            json_text(response_format),
            json_text(variables),
        );
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_prompt SET messages_json = ?, response_format_json = ?, variables_json = ?, status = 'active' WHERE id = ?")
                .bind(&m).bind(&rf).bind(&vars).bind(id).execute(p).await.map(|_| id),
            None => sqlx::query("INSERT INTO ai_prompt (name, version, messages_json, response_format_json, variables_json, status) VALUES (?, ?, ?, ?, ?, 'active')")
                .bind(name).bind(version).bind(&m).bind(&rf).bind(&vars).execute(p).await.map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a param profile by name; returns its id.
    pub async fn upsert_param_profile(
        &self,
        name: &str,
        params: &Value,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_param_profile WHERE name = ?",
                &[name],
            )
            .await?;
        let params = params.to_string();
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query(
                "UPDATE ai_param_profile SET params_json = ?, is_active = 1 WHERE id = ?"
            )
            .bind(&params)
            .bind(id)
            .execute(p)
            .await
            .map(|_| id),
            None => sqlx::query(
                "INSERT INTO ai_param_profile (name, params_json, is_active) VALUES (?, ?, 1)"
            )
            .bind(name)
            .bind(&params)
            .execute(p)
            .await
            .map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a config by key; returns its id.
    pub async fn upsert_config(
        &self,
        config_key: &str,
        model_id: i64,
        prompt_id: Option<i64>,
        param_profile_id: Option<i64>,
        description: Option<&str>,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_config WHERE config_key = ?",
                &[config_key],
            )
            .await?;
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_config SET model_id = ?, prompt_id = ?, param_profile_id = ?, description = ?, is_active = 1 WHERE id = ?")
                .bind(model_id).bind(prompt_id).bind(param_profile_id).bind(description).bind(id)
                .execute(p).await.map(|_| id),
            None => sqlx::query("INSERT INTO ai_config (config_key, model_id, prompt_id, param_profile_id, description, is_active) VALUES (?, ?, ?, ?, ?, 1)")
                .bind(config_key).bind(model_id).bind(prompt_id).bind(param_profile_id).bind(description)
                .execute(p).await.map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or re-activates a project by name; returns its id.
    pub async fn upsert_project(&self, name: &str) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_project_v2 WHERE name = ?",
                &[name],
            )
            .await?;
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_project_v2 SET status = 'active' WHERE id = ?")
                .bind(id)
                .execute(p)
                .await
                .map(|_| id),
            None => sqlx::query("INSERT INTO ai_project_v2 (name, status) VALUES (?, 'active')")
                .bind(name)
                .execute(p)
                .await
                .map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a route by (project, route_key); returns its id.
    pub async fn upsert_route(
        &self,
        project_id: i64,
        route_key: &str,
        route: &NewRoute<'_>,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let pid = project_id.to_string();
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_route_v2 WHERE project_id = CAST(? AS SIGNED) AND route_key = ?",
                &[&pid, route_key],
            )
            .await?;
        let (pc, vars, rf) = (
            json_text(&route.policy_config),
            json_text(&route.variables),
            json_text(&route.response_format),
        );
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_route_v2 SET policy = ?, policy_config_json = ?, variables_json = ?, prompt_id = ?, param_profile_id = ?, response_format_json = ?, is_active = 1 WHERE id = ?")
                .bind(route.policy).bind(&pc).bind(&vars).bind(route.prompt_id).bind(route.param_profile_id).bind(&rf).bind(id)
                .execute(p).await.map(|_| id),
            None => sqlx::query("INSERT INTO ai_route_v2 (project_id, route_key, policy, policy_config_json, variables_json, prompt_id, param_profile_id, response_format_json, is_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)")
                .bind(project_id).bind(route_key).bind(route.policy).bind(&pc).bind(&vars).bind(route.prompt_id).bind(route.param_profile_id).bind(&rf)
                .execute(p).await.map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// Inserts or updates a route member by (route, config); returns its id.
    pub async fn upsert_route_member(
        &self,
        route_id: i64,
        config_id: i64,
        priority: i64,
        weight: i64,
        active: bool,
    ) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let (rid, cid) = (route_id.to_string(), config_id.to_string());
        let id = self
            .find_id(
                "SELECT CAST(id AS SIGNED) FROM ai_route_member_v2 WHERE route_id = CAST(? AS SIGNED) AND config_id = CAST(? AS SIGNED)",
                &[&rid, &cid],
            )
            .await?;
        let active = i64::from(active);
        on_pool!(pool, |p| match id {
            Some(id) => sqlx::query("UPDATE ai_route_member_v2 SET priority = ?, weight = ?, is_active = ? WHERE id = ?")
                .bind(priority).bind(weight).bind(active).bind(id).execute(p).await.map(|_| id),
            None => sqlx::query("INSERT INTO ai_route_member_v2 (route_id, config_id, priority, weight, is_active) VALUES (?, ?, ?, ?, ?)")
                .bind(route_id).bind(config_id).bind(priority).bind(weight).bind(active)
                .execute(p).await.map(|r| r.insert_id()),
        })
        .map_err(StoreError::Query)
    }

    /// The id of an active or inactive config by key.
    pub async fn config_id(&self, config_key: &str) -> Result<Option<i64>, StoreError> {
        self.find_id(
            "SELECT CAST(id AS SIGNED) FROM ai_config WHERE config_key = ?",
            &[config_key],
        )
        .await
    }

    /// A config's `(prompt_id, param_profile_id)`.
    pub async fn config_parts(
        &self,
        config_id: i64,
    ) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let row = sqlx::query("SELECT CAST(prompt_id AS SIGNED), CAST(param_profile_id AS SIGNED) FROM ai_config WHERE id = ?")
                .bind(config_id)
                .fetch_one(p)
                .await
                .map_err(StoreError::Query)?;
            Ok((
                row.try_get::<Option<i64>, _>(0)
                    .map_err(StoreError::Query)?,
                row.try_get::<Option<i64>, _>(1)
                    .map_err(StoreError::Query)?,
            ))
        })
    }

    /// Reads the audit row with this id as JSON (column name -> value), for the CLI and tests.
    pub async fn audit_row(
        &self,
        id: i64,
    ) -> Result<Option<serde_json::Map<String, Value>>, StoreError> {
        let pool = self.pool().await?;
        let sql =
            "SELECT *, CAST(created_at AS CHAR) AS created_at_text FROM ai_call_logs WHERE id = ?";
        on_pool!(pool, |p| {
            let row = sqlx::query(sql)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(StoreError::Query)?;
            Ok(row.map(|r| row_to_json(&r)))
        })
    }

    /// Every audit row with this trace id, oldest first.
    pub async fn audit_rows_for_trace(
        &self,
        trace_id: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, StoreError> {
        let pool = self.pool().await?;
        let sql = "SELECT *, CAST(created_at AS CHAR) AS created_at_text FROM ai_call_logs WHERE trace_id = ? ORDER BY id";
        on_pool!(pool, |p| {
            let rows = sqlx::query(sql)
                .bind(trace_id)
                .fetch_all(p)
                .await
                .map_err(StoreError::Query)?;
            Ok(rows.iter().map(row_to_json).collect())
        })
    }
}

/// Decodes any row into JSON: integer columns as numbers, everything else as text.
pub(crate) fn row_to_json<R: Row>(r: &R) -> serde_json::Map<String, Value>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database>,
    for<'a> u64: sqlx::Decode<'a, R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database>,
{
    use sqlx::{Column, TypeInfo};
    let mut out = serde_json::Map::new();
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
