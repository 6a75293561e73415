//! `cfg dump-schema`: a read-only export of table definitions (MySQL `SHOW CREATE TABLE` /
//! `SHOW FULL COLUMNS`; SQLite `sqlite_master` / `pragma_table_info`).

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::{Db, Pool, StoreError, db_err};

/// One table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDump {
    /// Table name.
    pub name: String,
    /// Its DDL as the server shows it.
    pub create_sql: String,
    /// One JSON object per column (the server's own field names).
    pub columns: Vec<Map<String, Value>>,
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

impl Db {
    /// Tables whose names start with `prefix` in `database` (MySQL; default the current one).
    pub async fn dump_schema(
        &self,
        database: Option<&str>,
        prefix: &str,
    ) -> Result<Vec<TableDump>, StoreError> {
        if database.is_some_and(|d| !ident_ok(d)) {
            return Err(StoreError::Query(
                "database name must be [A-Za-z0-9_$]".into(),
            ));
        }
        let like = format!("{}%", prefix.replace('_', "\\_"));
        let pool = self.pool().await?;
        let mut out = Vec::new();
        match pool {
            Pool::MySql(p) => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = COALESCE(?, DATABASE()) AND table_name LIKE ? ORDER BY table_name",
                )
                .bind(database)
                .bind(&like)
                .fetch_all(p)
                .await
                .map_err(db_err)?;
                let qualify = |t: &str| match database {
                    Some(d) => format!("`{d}`.`{t}`"),
                    None => format!("`{t}`"),
                };
                for t in names {
                    let create: String = sqlx::query(&format!("SHOW CREATE TABLE {}", qualify(&t)))
                        .fetch_one(p)
                        .await
                        .and_then(|r| r.try_get::<String, _>(1))
                        .map_err(db_err)?;
                    let cols = sqlx::query(&format!("SHOW FULL COLUMNS FROM {}", qualify(&t)))
                        .fetch_all(p)
                        .await
                        .map_err(db_err)?;
                    out.push(TableDump {
                        name: t,
                        create_sql: create,
                        columns: cols.iter().map(super::audit::row_to_json).collect(),
                    });
                }
            }
            Pool::Sqlite(p) => {
                let tables: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\' ORDER BY name",
                )
                .bind(&like)
                .fetch_all(p)
                .await
                .map_err(db_err)?;
                for (t, sql) in tables {
                    let cols = sqlx::query("SELECT * FROM pragma_table_info(?)")
                        .bind(&t)
                        .fetch_all(p)
                        .await
                        .map_err(db_err)?;
                    out.push(TableDump {
                        name: t,
                        create_sql: sql.unwrap_or_default(),
                        columns: cols.iter().map(super::audit::row_to_json).collect(),
                    });
                }
            }
        }
        Ok(out)
    }
}
