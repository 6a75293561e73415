//! Reading the audit trail a page at a time (the console's trail), and the project's routes the
//! predecessor's `GET /routes` listed. Read-only.
//!
//! Invariants: a page is one statement, newest first by `(created_at, id)` and continued by a
//! keyset condition on that pair, never by `OFFSET`, so page 1,000 costs what page 1 costs; every
//! filter value is bound, never spliced; each filter column leads an index ending in
//! `created_at` (migration 10), so the database walks the rows in order and stops at the page
//! size. On an unmigrated table the list falls back to the predecessor's columns, and a filter on
//! a column it lacks is `SCHEMA_OUTDATED`.

use sqlx::Row;

use super::dialect::is_unknown_column;
use super::{Db, StoreError, db_err, on_pool};
use crate::model::trail::{TrailCursor, TrailFilter, TrailPage, TrailRow, TrailStatus};

/// The list's columns on a migrated table.
const COLUMNS: &str = "id, CAST(created_at AS CHAR) AS created_at_text, config_key, model_name, \
     project_name, route_key, route_attempt, status, error_code, http_status, duration_ms, \
     total_tokens, cost_nano_usd, trigger_source, trace_id";
/// The predecessor's columns.
const CORE_COLUMNS: &str = "id, CAST(created_at AS CHAR) AS created_at_text, config_key, \
     error_code, http_status, duration_ms, total_tokens";

/// The most rows one page may ask for.
pub const MAX_PAGE: u32 = 500;

/// A statement and its text parameters, in order.
struct Select {
    sql: String,
    binds: Vec<String>,
    /// Whether a filter names a column the predecessor's table lacks.
    extended: bool,
}

/// The page's statement: filters, then the keyset condition, newest first.
fn select(columns: &str, f: &TrailFilter, after: Option<&TrailCursor>, limit: u32) -> Select {
    let mut sql = format!("SELECT {columns} FROM ai_call_logs WHERE 1 = 1");
    let mut binds = Vec::new();
    let mut extended = false;
    let mut eq = |col: &str, v: &Option<String>, ext: bool, sql: &mut String| {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            binds.push(v.clone());
            extended |= ext;
        }
    };
    eq("config_key", &f.config_key, false, &mut sql);
    eq("project_name", &f.project, true, &mut sql);
    eq("route_key", &f.route_key, true, &mut sql);
    eq("error_code", &f.error_code, false, &mut sql);
    eq("trace_id", &f.trace_id, true, &mut sql);
    match f.status {
        // The predecessor's rows have no `status`; its `error_code` says the same thing.
        Some(TrailStatus::Ok) => sql.push_str(" AND error_code IS NULL"),
        Some(TrailStatus::Error) => sql.push_str(" AND error_code IS NOT NULL"),
        None => {}
    }
    if let Some(s) = &f.since {
        sql.push_str(" AND created_at >= ?");
        binds.push(s.clone());
    }
    if let Some(u) = &f.until {
        sql.push_str(" AND created_at <= ?");
        binds.push(u.clone());
    }
    if let Some(c) = after {
        // The first condition is a plain range on the index; the second drops the ties already
        // shown (the id is bound as text: both engines compare it as a number).
        sql.push_str(" AND created_at <= ? AND (created_at < ? OR id < ?)");
        binds.push(c.created_at.clone());
        binds.push(c.created_at.clone());
        binds.push(c.id.to_string());
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        limit.clamp(1, MAX_PAGE) + 1
    ));
    Select {
        sql,
        binds,
        extended,
    }
}

fn trail_row<R: Row>(r: &R, extended: bool) -> TrailRow
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let int = |c: &str| r.try_get_unchecked::<Option<i64>, _>(c).ok().flatten();
    let text = |c: &str| r.try_get_unchecked::<Option<String>, _>(c).ok().flatten();
    let ext_int = |c: &str| if extended { int(c) } else { None };
    let ext_text = |c: &str| if extended { text(c) } else { None };
    TrailRow {
        id: int("id").unwrap_or_default(),
        created_at: text("created_at_text").unwrap_or_default(),
        config_key: text("config_key").unwrap_or_default(),
        model_name: ext_text("model_name"),
        project_name: ext_text("project_name"),
        route_key: ext_text("route_key"),
        route_attempt: ext_int("route_attempt"),
        status: ext_text("status"),
        error_code: text("error_code"),
        http_status: int("http_status").unwrap_or_default(),
        duration_ms: int("duration_ms").unwrap_or_default(),
        total_tokens: int("total_tokens"),
        cost_nano_usd: ext_int("cost_nano_usd"),
        trigger_source: ext_text("trigger_source"),
        trace_id: ext_text("trace_id"),
    }
}

impl Db {
    /// One page of `ai_call_logs`, newest first, strictly after `after` when given.
    pub async fn audit_page(
        &self,
        filter: &TrailFilter,
        after: Option<&TrailCursor>,
        limit: u32,
    ) -> Result<TrailPage, StoreError> {
        let pool = self.pool().await?;
        let mut extended = true;
        let rows = loop {
            let q = select(
                if extended { COLUMNS } else { CORE_COLUMNS },
                filter,
                after,
                limit,
            );
            if !extended && q.extended {
                return Err(StoreError::Outdated("ai_call_logs"));
            }
            let fetched = on_pool!(pool, |p| {
                let mut query = sqlx::query(&q.sql);
                for b in &q.binds {
                    query = query.bind(b);
                }
                query
                    .fetch_all(p)
                    .await
                    .map(|rows| rows.iter().map(|r| trail_row(r, extended)).collect())
            });
            match fetched {
                Ok(rows) => break rows,
                Err(e) if extended && is_unknown_column(&e) => extended = false,
                Err(e) => return Err(db_err(e)),
            }
        };
        Ok(page(rows, limit))
    }

    /// The project's active routes, newest first: `(route_key, policy)`.
    pub async fn project_routes(&self, project: &str) -> Result<Vec<(String, String)>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_as(
            "SELECT r.route_key, r.policy FROM ai_route_v2 r \
             JOIN ai_project_v2 pj ON pj.id = r.project_id \
             WHERE pj.name = ? AND r.is_active = 1 ORDER BY r.id DESC"
        )
        .bind(project)
        .fetch_all(p)
        .await
        .map_err(db_err))
    }
}

/// The first `limit` rows, and where the next page starts when there were more.
fn page(mut rows: Vec<TrailRow>, limit: u32) -> TrailPage {
    let limit = usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(50);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| rows.last()).flatten().map(|r| TrailCursor {
        created_at: r.created_at.clone(),
        id: r.id,
    });
    TrailPage { rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_value_is_bound_and_the_keyset_follows_them() {
        let f = TrailFilter {
            config_key: Some("c' OR 1=1 --".into()),
            status: Some(TrailStatus::Error),
            since: Some("2026-12-01 00:00:00".into()),
            ..TrailFilter::default()
        };
        let c = TrailCursor {
            created_at: "2026-12-01 10:00:00.5".into(),
            id: 7,
        };
        let q = select(COLUMNS, &f, Some(&c), 50);
        assert!(!q.sql.contains("OR 1=1"), "{}", q.sql);
        assert!(!q.sql.contains("OFFSET"), "{}", q.sql);
        assert!(
            q.sql.ends_with(
                "AND created_at <= ? AND (created_at < ? OR id < ?) ORDER BY created_at DESC, id DESC LIMIT 51"
            ),
            "{}",
            q.sql
        );
        assert_eq!(
            q.binds,
            [
                "c' OR 1=1 --",
                "2026-12-01 00:00:00",
                "2026-12-01 10:00:00.5",
                "2026-12-01 10:00:00.5",
                "7"
            ]
        );
        assert!(!q.extended);
        let q = select(
            CORE_COLUMNS,
            &TrailFilter {
                project: Some("p".into()),
                ..TrailFilter::default()
            },
            None,
            10_000,
        );
        assert!(q.extended && q.sql.ends_with("LIMIT 501"), "{}", q.sql);
    }

    #[test]
    fn a_page_keeps_its_size_and_points_after_its_last_row() {
        let rows: Vec<TrailRow> = (0..4)
            .map(|i| TrailRow {
                id: 10 - i,
                created_at: format!("2026-12-01 10:00:0{i}"),
                ..TrailRow::default()
            })
            .collect();
        let p = page(rows.clone(), 3);
        assert_eq!(p.rows.len(), 3);
        assert_eq!(
            p.next,
            Some(TrailCursor {
                created_at: "2026-12-01 10:00:02".into(),
                id: 8
            })
        );
        assert_eq!(page(rows, 4).next, None);
    }
}
