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
pub mod migrate;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
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
                let pool = MySqlPoolOptions::new()
                    .max_connections(8)
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

const RESOLVE_SQL: &str = "SELECT CAST(c.id AS SIGNED) AS config_id, c.config_key, m.name AS model_name, \
 CAST(cn.id AS SIGNED) AS connection_id, cn.name AS connection_name, cn.base_url, \
 CAST(cn.api_key_encrypted AS CHAR) AS key_blob, \
 p.name AS prompt_name, p.version AS prompt_version, CAST(p.messages_json AS CHAR) AS messages_json, \
 CAST(p.response_format_json AS CHAR) AS response_format_json, CAST(p.variables_json AS CHAR) AS variables_json, \
 CAST(pp.params_json AS CHAR) AS params_json \
 FROM ai_config c \
 JOIN ai_model m ON m.id = c.model_id \
 JOIN ai_connection cn ON cn.id = m.connection_id AND cn.is_active = 1 \
 LEFT JOIN ai_prompt p ON p.id = c.prompt_id \
 LEFT JOIN ai_param_profile pp ON pp.id = c.param_profile_id \
 WHERE c.config_key = ? AND c.is_active = 1 \
 ORDER BY c.id LIMIT 1";

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
            let row = sqlx::query(RESOLVE_SQL)
                .bind(config_key)
                .fetch_optional(p)
                .await
                .map_err(StoreError::Query)?;
            match row {
                None => None,
                Some(r) => Some(RawConfig {
                    config_id: r.try_get("config_id").map_err(StoreError::Query)?,
                    config_key: r.try_get("config_key").map_err(StoreError::Query)?,
                    model: r.try_get("model_name").map_err(StoreError::Query)?,
                    connection_id: r.try_get("connection_id").map_err(StoreError::Query)?,
                    connection_name: r.try_get("connection_name").map_err(StoreError::Query)?,
                    base_url: r.try_get("base_url").map_err(StoreError::Query)?,
                    key_blob: r.try_get("key_blob").map_err(StoreError::Query)?,
                    prompt_name: r.try_get("prompt_name").map_err(StoreError::Query)?,
                    prompt_version: r.try_get("prompt_version").map_err(StoreError::Query)?,
                    messages_json: r.try_get("messages_json").map_err(StoreError::Query)?,
                    response_format_json: r
                        .try_get("response_format_json")
                        .map_err(StoreError::Query)?,
                    variables_json: r.try_get("variables_json").map_err(StoreError::Query)?,
                    params_json: r.try_get("params_json").map_err(StoreError::Query)?,
                }),
            }
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
