//! The database: configuration reads, audit writes and operator tooling, on MySQL/MariaDB or the
//! embedded SQLite file, behind the small [`Store`] trait the runner uses.
//!
//! Invariants: one pool per process, created lazily on first use and reused by every warm
//! invocation; resolving a config_key is one query and writing an audit row is one statement;
//! the predecessor's schema is enough to run (extended audit columns are used when our migration
//! has added them, detected once per process); SQL text is shared between dialects, so every
//! statement here must be valid on both (`?` placeholders, `CAST(x AS CHAR)` for JSON columns,
//! `CAST(id AS SIGNED)` for ids).

pub mod admin;
pub mod catalog;
pub mod keys;
pub mod media;
pub mod migrate;
pub mod schema_dump;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::OnceCell;

use crate::config::{DatabaseTarget, MySqlTarget};

/// Why the database could not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No active config with this key (or its model/connection is missing or inactive).
    #[error("no active config named {0:?}")]
    ConfigNotFound(String),
    /// No active route with this key in this active project.
    #[error("no active route {route_key:?} in project {project:?}")]
    RouteNotFound {
        /// Project name.
        project: String,
        /// Route key.
        route_key: String,
    },
    /// The route exists but has no active member with an active config.
    #[error("route {0:?} has no active members")]
    NoActiveMembers(String),
    /// The embedded database file does not exist yet.
    #[error(
        "embedded database {0} does not exist; run `ai-runner db init` (or `ai-runner quickstart`)"
    )]
    NotInitialized(PathBuf),
    /// The server could not be reached or refused us.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A statement failed.
    #[error("database error")]
    Query(#[source] sqlx::Error),
    /// A stored JSON column does not parse.
    #[error("stored JSON in {column} is invalid")]
    BadJson {
        /// Which column.
        column: &'static str,
    },
}

impl StoreError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ConfigNotFound(_) => "CONFIG_NOT_FOUND",
            Self::RouteNotFound { .. } => "ROUTE_NOT_FOUND",
            Self::NoActiveMembers(_) => "NO_ACTIVE_MEMBERS",
            Self::NotInitialized(_) => "DB_NOT_INITIALIZED",
            Self::Unavailable(_) => "DB_UNAVAILABLE",
            Self::Query(_) => "DB_ERROR",
            Self::BadJson { .. } => "STORED_JSON_INVALID",
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Query(_))
    }
}

/// The provider endpoint of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// `ai_connection.id`.
    pub id: i64,
    /// `ai_connection.name` (the row identity v2 key blobs are bound to).
    pub name: String,
    /// The full chat-completions URL.
    pub base_url: String,
    /// The encrypted key blob, as stored.
    pub key_blob: String,
}

impl ConnectionInfo {
    /// The associated-data binding for this connection's key blob.
    pub fn key_binding(&self) -> String {
        connection_binding(&self.name)
    }
}

/// The associated-data binding of `ai_connection.api_key_encrypted` for connection `name`.
pub fn connection_binding(name: &str) -> String {
    format!("ai_connection:{name}")
}

/// A prompt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptInfo {
    /// `ai_prompt.name`.
    pub name: String,
    /// `ai_prompt.version`.
    pub version: String,
    /// `messages_json`, parsed.
    pub messages: Value,
    /// `response_format_json`, parsed.
    pub response_format: Option<Value>,
    /// `variables_json`, parsed.
    pub variables: Option<Value>,
}

/// Everything needed to run one config_key, from one query.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// `ai_config.id`.
    pub config_id: i64,
    /// `ai_config.config_key`.
    pub config_key: String,
    /// `ai_model.name`, sent as `model`.
    pub model: String,
    /// The provider endpoint.
    pub connection: ConnectionInfo,
    /// The prompt, if the config has one.
    pub prompt: Option<PromptInfo>,
    /// `ai_param_profile.params_json`, parsed (key order kept).
    pub params: Option<Value>,
}

/// One `ai_call_logs` row. Core columns first (compat.md section 4), then ours.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct AuditRow {
    /// The config that ran (for routes: the member's).
    pub config_key: String,
    /// Last HTTP status, 0 when no response was obtained.
    pub http_status: u16,
    /// Whole run, milliseconds.
    pub duration_ms: u64,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<i64>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<i64>,
    /// `usage.total_tokens`.
    pub total_tokens: Option<i64>,
    /// The provider's response id.
    pub response_id: Option<String>,
    /// Stable error code, `None` on success.
    pub error_code: Option<String>,
    /// Short error message.
    pub error_message: Option<String>,
    /// The body sent plus `_trace_id` (never the key).
    pub request_body_json: Option<String>,
    /// The provider's JSON answer.
    pub response_body_json: Option<String>,
    /// Trace id shared with the provider (`X-Trace-Id`).
    pub trace_id: String,
    /// `ok` or `error`.
    pub status: &'static str,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Milliseconds spent waiting on the provider.
    pub provider_ms: Option<u64>,
    /// Time to first token (streams).
    pub ttft_ms: Option<u64>,
    /// What fired the run: `cli`, `lambda`, `apigw`, `schedule`, `oss`, `library`.
    pub trigger_source: String,
    /// The platform request id (Lambda / FC), if any.
    pub request_id: Option<String>,
    /// The model sent.
    pub model_name: Option<String>,
    /// Project (routes) or PROJECT_NAME.
    pub project_name: Option<String>,
    /// Route key, for route member attempts.
    pub route_key: Option<String>,
    /// Route policy.
    pub route_policy: Option<String>,
    /// 1-based member attempt within the route.
    pub route_attempt: Option<u32>,
    /// Why the route moved on from this member (its error code), if it did.
    pub handover_reason: Option<String>,
}

/// What the runner needs from a database.
pub trait Store: Send + Sync {
    /// Resolves an active config_key with one query.
    fn resolve_config(
        &self,
        config_key: &str,
    ) -> impl Future<Output = Result<ResolvedConfig, StoreError>> + Send;
    /// Commits one audit row; returns its id.
    fn insert_audit(&self, row: &AuditRow) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Resolves an active route of an active project with its active members (two queries).
    fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> impl Future<Output = Result<ResolvedRoute, StoreError>> + Send;
    /// Atomically advances a route's round-robin cursor and returns its new position; `None`
    /// when the cursor table is missing (an unmigrated database).
    fn next_cursor(
        &self,
        route_id: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// The position the next [`Store::next_cursor`] call would return, without advancing.
    fn peek_cursor(
        &self,
        route_id: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

/// One active member of a route, with its config resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMember {
    /// `ai_route_member_v2.id`.
    pub member_id: i64,
    /// Lower runs first.
    pub priority: i64,
    /// Relative share for the `weighted` policy (0 = never first).
    pub weight: i64,
    /// The member's config.
    pub config: ResolvedConfig,
}

/// A route and its members, ordered `priority ASC, id ASC`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRoute {
    /// `ai_route_v2.id`.
    pub route_id: i64,
    /// Project name.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// `policy` as stored.
    pub policy: String,
    /// `policy_config_json`, parsed.
    pub policy_config: Option<Value>,
    /// Route-level variables.
    pub variables: Option<Value>,
    /// Route-level prompt (replaces the member's).
    pub prompt: Option<PromptInfo>,
    /// Route-level params (replace the member's).
    pub params: Option<Value>,
    /// Route-level response_format (replaces the prompt's).
    pub response_format: Option<Value>,
    /// Active members whose config, model and connection are active.
    pub members: Vec<RouteMember>,
}

/// A connected pool of either dialect.
#[derive(Debug, Clone)]
pub enum Pool {
    /// MySQL / MariaDB.
    MySql(MySqlPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// Runs the same statement-building expression against whichever pool is connected.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::Pool::MySql($p) => $body,
            $crate::store::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_pool;

const AUDIT_UNKNOWN: u8 = 0;
const AUDIT_EXTENDED: u8 = 1;
const AUDIT_CORE_ONLY: u8 = 2;

/// The process's database handle: target plus lazily created pool.
#[derive(Debug)]
pub struct Db {
    target: DatabaseTarget,
    create_if_missing: bool,
    pool: OnceCell<Pool>,
    audit_mode: AtomicU8,
}

impl Db {
    /// A handle that connects on first use (never creates an embedded file).
    pub fn new(target: DatabaseTarget) -> Self {
        Self {
            target,
            create_if_missing: false,
            pool: OnceCell::new(),
            audit_mode: AtomicU8::new(AUDIT_UNKNOWN),
        }
    }

    /// A handle that creates the embedded file if missing (`db init`, quickstart).
    pub fn creating(target: DatabaseTarget) -> Self {
        Self {
            create_if_missing: true,
            ..Self::new(target)
        }
    }

    /// Where this handle points.
    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// True for MySQL / MariaDB.
    pub fn is_mysql(&self) -> bool {
        matches!(self.target, DatabaseTarget::MySql(_))
    }

    /// The pool, connecting on first call.
    pub async fn pool(&self) -> Result<&Pool, StoreError> {
        self.pool.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Pool, StoreError> {
        match &self.target {
            DatabaseTarget::MySql(t) => {
                let opts = match t {
                    MySqlTarget::Url(url) => MySqlConnectOptions::from_str(url.expose())
                        .map_err(StoreError::Unavailable)?,
                    MySqlTarget::Parts {
                        host,
                        port,
                        user,
                        password,
                        database,
                    } => MySqlConnectOptions::new()
                        .host(host)
                        .port(*port)
                        .username(user)
                        .password(password.expose())
                        .database(database),
                }
                .charset("utf8mb4");
                // A Lambda instance serves one invocation at a time and opens connections only as
                // it needs them, so a high cap costs RDS nothing there; it lets one process with
                // many concurrent runs (CLI, Function Compute, benchmarks) avoid queueing.
                let pool = MySqlPoolOptions::new()
                    .max_connections(32)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Ok(Pool::MySql(pool))
            }
            DatabaseTarget::Sqlite(path) => {
                if !self.create_if_missing && !path.exists() {
                    return Err(StoreError::NotInitialized(path.clone()));
                }
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(e.into()))?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(self.create_if_missing)
                    .journal_mode(SqliteJournalMode::Wal)
                    // In WAL mode NORMAL keeps the database consistent and skips an fsync per
                    // commit (only the last commits can be lost on power failure).
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(StoreError::Unavailable)?;
                Ok(Pool::Sqlite(pool))
            }
        }
    }

    /// Closes the pool (CLI exit; lets SQLite checkpoint its WAL).
    pub async fn close(&self) {
        if let Some(pool) = self.pool.get() {
            on_pool!(pool, |p| p.close().await);
        }
    }

    /// Number of rows in `table` (tests and tooling; `table` must be one of ours).
    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Query(sqlx::Error::Protocol(
                "bad table name".into(),
            )));
        }
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(p)
            .await
            .map_err(StoreError::Query))
    }
}

/// The columns of a resolved config (shared by the config and route-member queries).
const CONFIG_COLUMNS: &str = "CAST(c.id AS SIGNED) AS config_id, c.config_key, m.name AS model_name, \
 CAST(cn.id AS SIGNED) AS connection_id, cn.name AS connection_name, cn.base_url, \
 CAST(cn.api_key_encrypted AS CHAR) AS key_blob, \
 p.name AS prompt_name, p.version AS prompt_version, CAST(p.messages_json AS CHAR) AS messages_json, \
 CAST(p.response_format_json AS CHAR) AS response_format_json, CAST(p.variables_json AS CHAR) AS variables_json, \
 CAST(pp.params_json AS CHAR) AS params_json";

/// The joins from `ai_config c` to everything a run needs; inactive connections drop out.
const CONFIG_JOINS: &str = "JOIN ai_model m ON m.id = c.model_id \
 JOIN ai_connection cn ON cn.id = m.connection_id AND cn.is_active = 1 \
 LEFT JOIN ai_prompt p ON p.id = c.prompt_id \
 LEFT JOIN ai_param_profile pp ON pp.id = c.param_profile_id";

fn resolve_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {CONFIG_COLUMNS} FROM ai_config c {CONFIG_JOINS} \
             WHERE c.config_key = ? AND c.is_active = 1 ORDER BY c.id LIMIT 1"
        )
    })
}

fn members_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT CAST(rm.id AS SIGNED) AS member_id, CAST(rm.priority AS SIGNED) AS priority, \
             CAST(rm.weight AS SIGNED) AS weight, {CONFIG_COLUMNS} \
             FROM ai_route_member_v2 rm JOIN ai_config c ON c.id = rm.config_id AND c.is_active = 1 {CONFIG_JOINS} \
             WHERE rm.route_id = ? AND rm.is_active = 1 ORDER BY rm.priority ASC, rm.id ASC"
        )
    })
}

const ROUTE_SQL: &str = "SELECT CAST(r.id AS SIGNED) AS route_id, pj.name AS project_name, r.route_key, r.policy, \
 CAST(r.policy_config_json AS CHAR) AS policy_config_json, CAST(r.variables_json AS CHAR) AS route_variables_json, \
 CAST(r.response_format_json AS CHAR) AS route_response_format_json, \
 p.name AS prompt_name, p.version AS prompt_version, CAST(p.messages_json AS CHAR) AS messages_json, \
 CAST(p.response_format_json AS CHAR) AS response_format_json, CAST(p.variables_json AS CHAR) AS variables_json, \
 CAST(pp.params_json AS CHAR) AS params_json \
 FROM ai_route_v2 r JOIN ai_project_v2 pj ON pj.id = r.project_id AND pj.status = 'active' \
 LEFT JOIN ai_prompt p ON p.id = r.prompt_id \
 LEFT JOIN ai_param_profile pp ON pp.id = r.param_profile_id \
 WHERE pj.name = ? AND r.route_key = ? AND r.is_active = 1 LIMIT 1";

const AUDIT_CORE_COLUMNS: &str = "config_key, http_status, duration_ms, prompt_tokens, completion_tokens, total_tokens, response_id, error_code, error_message, request_body_json, response_body_json";
const AUDIT_EXT_COLUMNS: &str = "trace_id, status, attempts, provider_ms, ttft_ms, trigger_source, request_id, model_name, project_name, route_key, route_policy, route_attempt, handover_reason";

/// Parses an optional JSON text column.
pub(crate) fn json_col(
    text: Option<String>,
    column: &'static str,
) -> Result<Option<Value>, StoreError> {
    match text {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|_| StoreError::BadJson { column }),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The id of the row an INSERT created, whatever the dialect.
pub(crate) trait InsertId {
    fn insert_id(&self) -> i64;
}
impl InsertId for sqlx::mysql::MySqlQueryResult {
    fn insert_id(&self) -> i64 {
        to_i64(self.last_insert_id())
    }
}
impl InsertId for sqlx::sqlite::SqliteQueryResult {
    fn insert_id(&self) -> i64 {
        self.last_insert_rowid()
    }
}

fn is_unknown_column(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let m = d.message();
            m.contains("Unknown column") || m.contains("no column named")
        }
        _ => false,
    }
}

impl Db {
    async fn insert_audit_with(&self, row: &AuditRow, extended: bool) -> Result<i64, sqlx::Error> {
        let pool = self.pool().await.map_err(|e| match e {
            StoreError::Unavailable(s) | StoreError::Query(s) => s,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
        let sql = if extended {
            format!(
                "INSERT INTO ai_call_logs ({AUDIT_CORE_COLUMNS}, {AUDIT_EXT_COLUMNS}) VALUES ({})",
                ["?"; 24].join(", ")
            )
        } else {
            format!(
                "INSERT INTO ai_call_logs ({AUDIT_CORE_COLUMNS}) VALUES ({})",
                ["?"; 11].join(", ")
            )
        };
        on_pool!(pool, |p| {
            let q = sqlx::query(&sql)
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
                .bind(&row.response_body_json);
            let q = if extended {
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
            q.execute(p).await.map(|r| r.insert_id())
        })
    }
}

impl Store for Db {
    async fn resolve_config(&self, config_key: &str) -> Result<ResolvedConfig, StoreError> {
        let pool = self.pool().await?;
        let row = on_pool!(pool, |p| {
            let row = sqlx::query(resolve_sql())
                .bind(config_key)
                .fetch_optional(p)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| raw_config(&r))
                .transpose()
                .map_err(StoreError::Query)?
        });
        row.ok_or_else(|| StoreError::ConfigNotFound(config_key.to_owned()))?
            .into_resolved()
    }

    async fn insert_audit(&self, row: &AuditRow) -> Result<i64, StoreError> {
        let mode = self.audit_mode.load(Ordering::Relaxed);
        if mode != AUDIT_CORE_ONLY {
            match self.insert_audit_with(row, true).await {
                Ok(id) => {
                    self.audit_mode.store(AUDIT_EXTENDED, Ordering::Relaxed);
                    return Ok(id);
                }
                Err(e) if is_unknown_column(&e) => {
                    tracing::warn!(
                        "ai_call_logs lacks the extended audit columns; writing core columns only (run `ai-runner db migrate`)"
                    );
                    self.audit_mode.store(AUDIT_CORE_ONLY, Ordering::Relaxed);
                }
                Err(e) => return Err(StoreError::Query(e)),
            }
        }
        self.insert_audit_with(row, false)
            .await
            .map_err(StoreError::Query)
    }

    async fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> Result<ResolvedRoute, StoreError> {
        let pool = self.pool().await?;
        let route = on_pool!(pool, |p| {
            let row = sqlx::query(ROUTE_SQL)
                .bind(project)
                .bind(route_key)
                .fetch_optional(p)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| raw_route(&r))
                .transpose()
                .map_err(StoreError::Query)?
        })
        .ok_or_else(|| StoreError::RouteNotFound {
            project: project.to_owned(),
            route_key: route_key.to_owned(),
        })?;
        let members = on_pool!(pool, |p| {
            let rows = sqlx::query(members_sql())
                .bind(route.route_id)
                .fetch_all(p)
                .await
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<i64, _>("member_id")?,
                        r.try_get::<i64, _>("priority")?,
                        r.try_get::<i64, _>("weight")?,
                        raw_config(r)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::Query)?
        });
        let members = members
            .into_iter()
            .map(|(member_id, priority, weight, raw)| {
                Ok(RouteMember {
                    member_id,
                    priority,
                    weight,
                    config: raw.into_resolved()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let overrides = route.prompt.into_resolved()?;
        Ok(ResolvedRoute {
            route_id: route.route_id,
            project: route.project,
            route_key: route.route_key,
            policy: route.policy,
            policy_config: json_col(route.policy_config_json, "ai_route_v2.policy_config_json")?,
            variables: json_col(route.route_variables_json, "ai_route_v2.variables_json")?,
            response_format: json_col(
                route.route_response_format_json,
                "ai_route_v2.response_format_json",
            )?,
            prompt: overrides.prompt,
            params: overrides.params,
            members,
        })
    }

    async fn next_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        let pool = self.pool().await?;
        let res = match pool {
            // LAST_INSERT_ID(expr) makes the new position come back in the OK packet: one
            // atomic statement, no transaction, no second round trip.
            Pool::MySql(p) => sqlx::query(
                "INSERT INTO ai_route_cursor_v2 (route_id, position) VALUES (?, LAST_INSERT_ID(0)) \
                 ON DUPLICATE KEY UPDATE position = LAST_INSERT_ID(position + 1)",
            )
            .bind(route_id)
            .execute(p)
            .await
            .map(|r| r.last_insert_id()),
            Pool::Sqlite(p) => sqlx::query_scalar::<_, i64>(
                "INSERT INTO ai_route_cursor_v2 (route_id, position) VALUES (?, 0) \
                 ON CONFLICT(route_id) DO UPDATE SET position = position + 1 RETURNING position",
            )
            .bind(route_id)
            .fetch_one(p)
            .await
            .map(|v| u64::try_from(v).unwrap_or(0)),
        };
        match res {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_missing_table(&e) => Ok(None),
            Err(e) => Err(StoreError::Query(e)),
        }
    }

    async fn peek_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        let pool = self.pool().await?;
        let res = on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(
            "SELECT CAST(position AS SIGNED) FROM ai_route_cursor_v2 WHERE route_id = ?"
        )
        .bind(route_id)
        .fetch_optional(p)
        .await);
        match res {
            Ok(Some(v)) => Ok(Some(u64::try_from(v).unwrap_or(0) + 1)),
            Ok(None) => Ok(Some(0)),
            Err(e) if is_missing_table(&e) => Ok(None),
            Err(e) => Err(StoreError::Query(e)),
        }
    }
}

fn raw_config<'r, R: Row>(r: &'r R) -> Result<RawConfig, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawConfig {
        config_id: r.try_get("config_id")?,
        config_key: r.try_get("config_key")?,
        model: r.try_get("model_name")?,
        connection_id: r.try_get("connection_id")?,
        connection_name: r.try_get("connection_name")?,
        base_url: r.try_get("base_url")?,
        key_blob: r.try_get("key_blob")?,
        prompt_name: r.try_get("prompt_name")?,
        prompt_version: r.try_get("prompt_version")?,
        messages_json: r.try_get("messages_json")?,
        response_format_json: r.try_get("response_format_json")?,
        variables_json: r.try_get("variables_json")?,
        params_json: r.try_get("params_json")?,
    })
}

struct RawRoute {
    route_id: i64,
    project: String,
    route_key: String,
    policy: String,
    policy_config_json: Option<String>,
    route_variables_json: Option<String>,
    route_response_format_json: Option<String>,
    prompt: RawConfig,
}

fn raw_route<'r, R: Row>(r: &'r R) -> Result<RawRoute, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawRoute {
        route_id: r.try_get("route_id")?,
        project: r.try_get("project_name")?,
        route_key: r.try_get("route_key")?,
        policy: r.try_get("policy")?,
        policy_config_json: r.try_get("policy_config_json")?,
        route_variables_json: r.try_get("route_variables_json")?,
        route_response_format_json: r.try_get("route_response_format_json")?,
        // The route's own prompt and params travel in the same column names as a config's.
        prompt: RawConfig {
            config_id: 0,
            config_key: String::new(),
            model: String::new(),
            connection_id: 0,
            connection_name: String::new(),
            base_url: String::new(),
            key_blob: None,
            prompt_name: r.try_get("prompt_name")?,
            prompt_version: r.try_get("prompt_version")?,
            messages_json: r.try_get("messages_json")?,
            response_format_json: r.try_get("response_format_json")?,
            variables_json: r.try_get("variables_json")?,
            params_json: r.try_get("params_json")?,
        },
    })
}

pub(crate) fn is_missing_table(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let m = d.message();
            m.contains("doesn't exist") || m.contains("no such table")
        }
        _ => false,
    }
}

/// The resolve query's row before its JSON columns are parsed.
struct RawConfig {
    config_id: i64,
    config_key: String,
    model: String,
    connection_id: i64,
    connection_name: String,
    base_url: String,
    key_blob: Option<String>,
    prompt_name: Option<String>,
    prompt_version: Option<String>,
    messages_json: Option<String>,
    response_format_json: Option<String>,
    variables_json: Option<String>,
    params_json: Option<String>,
}

impl RawConfig {
    fn into_resolved(self) -> Result<ResolvedConfig, StoreError> {
        let prompt = match (
            self.prompt_name,
            json_col(self.messages_json, "ai_prompt.messages_json")?,
        ) {
            (Some(name), Some(messages)) => Some(PromptInfo {
                name,
                version: self.prompt_version.unwrap_or_default(),
                messages,
                response_format: json_col(
                    self.response_format_json,
                    "ai_prompt.response_format_json",
                )?,
                variables: json_col(self.variables_json, "ai_prompt.variables_json")?,
            }),
            _ => None,
        };
        Ok(ResolvedConfig {
            config_id: self.config_id,
            config_key: self.config_key,
            model: self.model,
            connection: ConnectionInfo {
                id: self.connection_id,
                name: self.connection_name,
                base_url: self.base_url,
                key_blob: self.key_blob.unwrap_or_default(),
            },
            prompt,
            params: json_col(self.params_json, "ai_param_profile.params_json")?,
        })
    }
}
