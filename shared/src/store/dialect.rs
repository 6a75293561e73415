//! Every difference between MySQL/MariaDB and SQLite the store has to know about, in one place.
//!
//! Invariants: errors are classified by the server's error number where one exists (MySQL:
//! 1054 unknown column, 1146 unknown table); SQLite reports both as the generic `SQLITE_ERROR`
//! (code 1), so there, and only there, the message text is the signal. Statements that cannot be
//! written once for both dialects are defined here, side by side.

use super::{Pool, StoreError, db_err};

/// MySQL's `ER_BAD_FIELD_ERROR`.
const MYSQL_UNKNOWN_COLUMN: u16 = 1054;
/// MySQL's `ER_NO_SUCH_TABLE`.
const MYSQL_UNKNOWN_TABLE: u16 = 1146;

/// The MySQL error number of a database error.
fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(sqlx::mysql::MySqlDatabaseError::number)
}

/// SQLite's message for a failed prepare, if this is a SQLite error.
fn sqlite_message(e: &sqlx::Error) -> Option<&str> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    d.try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .map(|_| d.message())
}

/// The statement names a column the table does not have (an unmigrated audit table).
pub(crate) fn is_unknown_column(e: &sqlx::Error) -> bool {
    mysql_number(e) == Some(MYSQL_UNKNOWN_COLUMN)
        || sqlite_message(e)
            .is_some_and(|m| m.contains("no column named") || m.contains("no such column"))
}

/// The statement names a table that does not exist (an unmigrated database).
pub(crate) fn is_missing_table(e: &sqlx::Error) -> bool {
    mysql_number(e) == Some(MYSQL_UNKNOWN_TABLE)
        || sqlite_message(e).is_some_and(|m| m.contains("no such table"))
}

/// Saturating `u64` to `i64` (BIGINT columns).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The id of the row an INSERT created, whatever the dialect.
pub(crate) trait InsertId {
    /// The new row's id.
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

/// MySQL: `LAST_INSERT_ID(expr)` makes the new position come back in the OK packet: one atomic
/// statement, no transaction, no second round trip.
const NEXT_CURSOR_MYSQL: &str = "INSERT INTO ai_route_cursor_v2 (route_id, position) \
     VALUES (?, LAST_INSERT_ID(0)) \
     ON DUPLICATE KEY UPDATE position = LAST_INSERT_ID(position + 1)";

/// SQLite: an upsert that returns the new position.
const NEXT_CURSOR_SQLITE: &str = "INSERT INTO ai_route_cursor_v2 (route_id, position) VALUES (?, 0) \
     ON CONFLICT(route_id) DO UPDATE SET position = position + 1 RETURNING position";

/// Atomically advances a route's round-robin cursor; `None` when the table is missing.
pub(crate) async fn next_cursor(pool: &Pool, route_id: i64) -> Result<Option<u64>, StoreError> {
    let res = match pool {
        Pool::MySql(p) => sqlx::query(NEXT_CURSOR_MYSQL)
            .bind(route_id)
            .execute(p)
            .await
            .map(|r| r.last_insert_id()),
        Pool::Sqlite(p) => sqlx::query_scalar::<_, i64>(NEXT_CURSOR_SQLITE)
            .bind(route_id)
            .fetch_one(p)
            .await
            .map(|v| u64::try_from(v).unwrap_or(0)),
    };
    match res {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_missing_table(&e) => Ok(None),
        Err(e) => Err(db_err(e)),
    }
}

/// Bumps the catalog's version counter inside a catalog write's transaction (MySQL).
const BUMP_CATALOG_MYSQL: &str = "INSERT INTO ai_catalog_version (id, version) VALUES (1, 1) \
     ON DUPLICATE KEY UPDATE version = version + 1";

/// Bumps the catalog's version counter inside a catalog write's transaction (SQLite).
const BUMP_CATALOG_SQLITE: &str = "INSERT INTO ai_catalog_version (id, version) VALUES (1, 1) \
     ON CONFLICT(id) DO UPDATE SET version = version + 1";

/// The statement that bumps the catalog's version counter in this dialect.
pub(crate) fn bump_catalog(mysql: bool) -> &'static str {
    if mysql {
        BUMP_CATALOG_MYSQL
    } else {
        BUMP_CATALOG_SQLITE
    }
}

/// A bump's outcome: a missing counter table (an unmigrated database) is no failure, since
/// snapshots there rely on their age alone; neither dialect aborts the transaction for it.
pub(crate) fn bumped<T>(res: Result<T, sqlx::Error>) -> Result<(), StoreError> {
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_missing_table(&e) => Ok(()),
        Err(e) => Err(db_err(e)),
    }
}
