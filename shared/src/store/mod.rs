//! The database: MySQL/MariaDB or the embedded SQLite file behind one handle, [`Db`], which
//! implements every store port ([`crate::ports::Store`] with its `CostStore` part,
//! [`crate::ports::JobStore`], [`crate::ports::EvalStore`], [`crate::ports::AccessStore`]) and the
//! operator tooling (catalog apply and export, key checks and rotation, migrations, schema dumps,
//! the audit trail's pages).
//!
//! Map: [`sql`] holds the statements shared by both dialects, [`dialect`] everything that
//! differs; [`config`] reads configs and routes, [`audit`] writes the audit row, [`catalog`] is
//! the one writer of the seven config tables, [`access`] the access keys, nonces and quota counters, [`cost`] the prices, budgets and their use, and the usage report's read, [`eval`] the evaluation runs and [`eval_catalog`] their datasets and suites, [`media`] the upload tables, [`trail`] the audit trail a page at a time, [`keys`] the stored
//! secrets (rotation re-encrypts the secret columns of three tables in one transaction: the one
//! place a table has a second writer), [`migrate`] the schema, [`schema_dump`] the read-only schema export, `checkpoint` the embedded
//! file's WAL checkpoints (on a background timer, never inside a call's commit).
//!
//! Invariants: one pool per process, created lazily on first use and reused by every warm
//! invocation; resolving a config_key is one query and writing an audit row is one statement;
//! the predecessor's schema is enough to run (extended audit columns are used when our migration
//! has added them, detected once per process); no message here tells the user what to type (hints
//! belong to the edges, keyed by [`crate::code::Code`]).

pub mod access;
pub mod audit;
pub mod breaker;
pub mod catalog;
mod checkpoint;
pub mod config;
pub mod cost;
pub(crate) mod dialect;
pub mod eval;
pub mod eval_catalog;
pub mod keys;
pub mod media;
pub mod migrate;
pub mod schema_dump;
pub(crate) mod sql;
pub mod trail;

use std::str::FromStr;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::OnceCell;

use crate::config::{DatabaseTarget, MySqlTarget};
pub use crate::ports::StoreError;

/// A failed statement as a [`StoreError`] (`DB_ERROR`; the cause goes to logs).
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(Box::new(e))
}

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

/// A stored text column read into its closed vocabulary (`parse` is the vocabulary's own).
pub(crate) fn vocab_col<T>(
    text: &str,
    column: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::BadValue {
        column,
        value: text.chars().take(64).collect(),
    })
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

/// Audit table shape not yet known (the first insert tries the newest and steps down).
pub(crate) const AUDIT_UNKNOWN: u8 = 0;

/// The process's database handle: target plus lazily created pool.
#[derive(Debug)]
pub struct Db {
    target: DatabaseTarget,
    create_if_missing: bool,
    connect_timeout: Duration,
    pool: OnceCell<Pool>,
    audit_mode: AtomicU8,
    /// Budget windows whose `ai_budget_use` row this process knows exists.
    budget_windows: std::sync::Mutex<std::collections::HashSet<(i64, String)>>,
    /// The embedded file's background WAL checkpoints ([`checkpoint`]), stopped on drop.
    checkpointer: checkpoint::Checkpointer,
    /// Whether `ai_budget_reservation` exists (detected once per process; see `store::cost`).
    holds_mode: AtomicU8,
}

/// Catalog writes committed by this process, through any handle (its snapshots see them at once:
/// the console, `cfg gen` run by a test beside a runner).
static CATALOG_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Db {
    /// A handle that connects on first use (never creates an embedded file).
    pub fn new(target: DatabaseTarget) -> Self {
        Self {
            target,
            create_if_missing: false,
            connect_timeout: Duration::from_secs(10),
            pool: OnceCell::new(),
            audit_mode: AtomicU8::new(AUDIT_UNKNOWN),
            budget_windows: std::sync::Mutex::default(),
            checkpointer: checkpoint::Checkpointer::default(),
            holds_mode: AtomicU8::new(cost::HOLDS_UNKNOWN),
        }
    }

    /// A handle that creates the embedded file if missing (`db init`, quickstart).
    pub fn creating(target: DatabaseTarget) -> Self {
        Self {
            create_if_missing: true,
            ..Self::new(target)
        }
    }

    /// The longest wait for a connection (default 10 s; `doctor --timeout` shortens it).
    pub fn with_connect_timeout(self, timeout: Duration) -> Self {
        Self {
            connect_timeout: timeout,
            ..self
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
                        .map_err(|e| StoreError::Unavailable(e.into()))?,
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
                    .acquire_timeout(self.connect_timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.into()))?;
                Ok(Pool::MySql(pool))
            }
            DatabaseTarget::Sqlite(path) => {
                if !self.create_if_missing && !path.exists() {
                    return Err(StoreError::NotInitialized(format!(
                        "embedded database {} does not exist",
                        path.display()
                    )));
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
                    // Checkpoints off the request path (see `checkpoint`).
                    .pragma("wal_autocheckpoint", checkpoint::wal_autocheckpoint())
                    .pragma("journal_size_limit", checkpoint::JOURNAL_SIZE_LIMIT)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(self.connect_timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.into()))?;
                self.checkpointer.start(&pool);
                Ok(Pool::Sqlite(pool))
            }
        }
    }

    /// Notes a committed catalog write (after its transaction's commit).
    pub(crate) fn catalog_written(&self) {
        CATALOG_WRITES.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Catalog writes this process has committed so far.
    pub(crate) fn catalog_writes() -> u64 {
        CATALOG_WRITES.load(std::sync::atomic::Ordering::Acquire)
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
            return Err(StoreError::Query(
                format!("bad table name {table:?}").into(),
            ));
        }
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(p)
            .await
            .map_err(db_err))
    }
}
