//! Creating and upgrading our schema: `ai-runner db init` and `ai-runner db migrate`.
//!
//! Invariants: the plan is computed from what the database actually has (information_schema on
//! MySQL, sqlite_master / pragma_table_info on SQLite), so applying it twice does nothing the
//! second time; `--print` shows exactly the statements `apply` would run.

use sqlx::Row;

use super::{Db, Pool, StoreError, db_err, on_pool};
use crate::schema::{MIGRATIONS, MYSQL_BASE, SQLITE_SCHEMA, Step};

/// One statement of a migration plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The migration it belongs to.
    pub version: i64,
    /// The statement.
    pub sql: String,
}

async fn exists(
    pool: &Pool,
    sql_mysql: &str,
    sql_sqlite: &str,
    args: &[&str],
) -> Result<bool, StoreError> {
    let n: i64 = match pool {
        Pool::MySql(p) => {
            let mut q = sqlx::query(sql_mysql);
            for a in args {
                q = q.bind(*a);
            }
            q.fetch_one(p)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db_err)?
        }
        Pool::Sqlite(p) => {
            let mut q = sqlx::query(sql_sqlite);
            for a in args {
                q = q.bind(*a);
            }
            q.fetch_one(p)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db_err)?
        }
    };
    Ok(n > 0)
}

pub(crate) async fn table_exists(pool: &Pool, table: &str) -> Result<bool, StoreError> {
    exists(
        pool,
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        &[table],
    )
    .await
}

async fn step_done(pool: &Pool, step: &Step) -> Result<bool, StoreError> {
    match *step {
        Step::CreateTable { table, .. } => table_exists(pool, table).await,
        Step::AddColumn { table, column, .. } => {
            exists(
                pool,
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?",
                "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?",
                &[table, column],
            )
            .await
        }
        Step::AddIndex { table, index, .. } | Step::AddUniqueIndex { table, index, .. } => {
            exists(
                pool,
                "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?",
                &[table, index],
            )
            .await
        }
    }
}

/// The migration versions recorded as applied.
pub async fn applied_versions(db: &Db) -> Result<Vec<i64>, StoreError> {
    let pool = db.pool().await?;
    if !table_exists(pool, "ai_runner_schema_migrations").await? {
        return Ok(Vec::new());
    }
    on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(
        "SELECT CAST(version AS SIGNED) FROM ai_runner_schema_migrations ORDER BY version"
    )
    .fetch_all(p)
    .await
    .map_err(db_err))
}

/// The statements that would bring the database to the latest version.
pub async fn plan(db: &Db) -> Result<Vec<Planned>, StoreError> {
    let pool = db.pool().await?;
    if !table_exists(pool, "ai_call_logs").await? {
        return Err(StoreError::NotInitialized(format!(
            "{} has no ai_call_logs table",
            db.target().describe()
        )));
    }
    let applied = applied_versions(db).await?;
    let mysql = db.is_mysql();
    let mut out = Vec::new();
    for m in MIGRATIONS {
        for step in m.steps {
            if !step_done(pool, step).await? {
                out.push(Planned {
                    version: m.version,
                    sql: step.sql(mysql),
                });
            }
        }
        if !applied.contains(&m.version) {
            out.push(Planned {
                version: m.version,
                sql: format!(
                    "INSERT INTO ai_runner_schema_migrations (version, name) VALUES ({}, '{}')",
                    m.version, m.name
                ),
            });
        }
    }
    Ok(out)
}

/// Applies [`plan`]; returns what was run.
pub async fn apply(db: &Db) -> Result<Vec<Planned>, StoreError> {
    let steps = plan(db).await?;
    let pool = db.pool().await?;
    for s in &steps {
        on_pool!(pool, |p| sqlx::raw_sql(&s.sql)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(db_err))?;
    }
    Ok(steps)
}

/// Creates the schema where missing (SQLite: ours; MySQL: the predecessor's tables), then
/// migrates to the latest version. Safe on a database that already has data.
pub async fn init(db: &Db) -> Result<Vec<Planned>, StoreError> {
    let pool = db.pool().await?;
    let base = if db.is_mysql() {
        MYSQL_BASE
    } else {
        SQLITE_SCHEMA
    };
    on_pool!(pool, |p| sqlx::raw_sql(base)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(db_err))?;
    apply(db).await
}
