//! `db init` / `db migrate` through the library: idempotent, additive, and a plan that writes nothing.

use ai_runner::schema::latest_version;
use ai_runner::store::migrate;
use ai_runner_tests::{Backend, TestDb};

#[tokio::test]
async fn init_on_sqlite_is_idempotent_and_records_the_latest_version() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    assert_eq!(
        migrate::applied_versions(&db)
            .await
            .unwrap()
            .last()
            .copied(),
        Some(latest_version())
    );
    assert!(
        migrate::init(&db).await.unwrap().is_empty(),
        "second init changes nothing"
    );
    assert!(migrate::plan(&db).await.unwrap().is_empty());
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn migrating_the_predecessor_schema_only_adds_and_print_writes_nothing() {
    let tdb = TestDb::new(Backend::MariaDbUnmigrated).await.unwrap();
    let db = tdb.db();
    let pool = sqlx::MySqlPool::connect(&tdb.url).await.unwrap();
    // Every column of the database with its full definition.
    let columns = || async {
        sqlx::query_as::<_, (String, String, String, String, Option<String>)>(
            "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR), CAST(column_type AS CHAR), CAST(is_nullable AS CHAR), CAST(column_default AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE()",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    };
    let before = columns().await;
    let plan = migrate::plan(&db).await.unwrap();
    assert!(
        plan.iter().any(|p| p
            .sql
            .starts_with("ALTER TABLE ai_call_logs ADD COLUMN trace_id")),
        "{plan:?}"
    );
    assert!(plan.iter().all(|p| !p.sql.to_uppercase().contains("DROP")));
    assert_eq!(columns().await, before, "planning wrote nothing");
    assert_eq!(
        migrate::plan(&db).await.unwrap(),
        plan,
        "the plan is stable"
    );

    let applied = migrate::apply(&db).await.unwrap();
    assert_eq!(applied, plan);
    let after = columns().await;
    assert!(
        after.is_superset(&before),
        "no existing column changed or disappeared"
    );
    // Tables a migration creates that the predecessor's schema did not already have (migration 8
    // creates its access tables only where they are missing).
    let existed: std::collections::BTreeSet<&str> = before.iter().map(|c| c.0.as_str()).collect();
    let new_tables: std::collections::BTreeSet<&str> = ai_runner::schema::MIGRATIONS
        .iter()
        .flat_map(|m| m.steps)
        .filter_map(|s| match s {
            ai_runner::schema::Step::CreateTable { table, .. } => Some(*table),
            _ => None,
        })
        .filter(|t| !existed.contains(t))
        .collect();
    // Columns added to the predecessor's tables (those added to our own new tables are counted
    // with the table).
    let added_columns = ai_runner::schema::MIGRATIONS
        .iter()
        .flat_map(|m| m.steps)
        .filter(|s| {
            matches!(s, ai_runner::schema::Step::AddColumn { table, .. } if !new_tables.contains(table))
        })
        .count();
    let new_table_columns = after
        .iter()
        .filter(|c| new_tables.contains(c.0.as_str()))
        .count();
    assert_eq!(
        after.len() - before.len(),
        added_columns + new_table_columns
    );
    assert!(
        after
            .iter()
            .any(|c| c.0 == "ai_call_logs" && c.1 == "trace_id")
    );
    assert!(
        new_tables.iter().all(|t| after.iter().any(|c| c.0 == *t)),
        "every new table exists"
    );
    assert!(migrate::plan(&db).await.unwrap().is_empty());
    assert!(
        migrate::apply(&db).await.unwrap().is_empty(),
        "applying twice changes nothing"
    );
    assert_eq!(
        migrate::applied_versions(&db)
            .await
            .unwrap()
            .last()
            .copied(),
        Some(latest_version())
    );
    pool.close().await;
    db.close().await;
    tdb.cleanup().await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn init_on_an_empty_mariadb_creates_the_predecessor_tables_and_migrates() {
    let tdb = TestDb::new(Backend::MariaDbUnmigrated).await.unwrap();
    let pool = sqlx::MySqlPool::connect(&tdb.url).await.unwrap();
    for t in [
        "ai_call_logs",
        "ai_config",
        "ai_connection",
        "ai_model",
        "ai_prompt",
        "ai_param_profile",
        "ai_project_v2",
        "ai_route_v2",
        "ai_route_member_v2",
    ] {
        sqlx::raw_sql(&format!("DROP TABLE {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let db = tdb.db();
    migrate::init(&db).await.unwrap();
    assert_eq!(db.count("ai_config").await.unwrap(), 0);
    assert!(migrate::plan(&db).await.unwrap().is_empty());
    assert!(migrate::init(&db).await.unwrap().is_empty());
    pool.close().await;
    db.close().await;
    tdb.cleanup().await;
}

/// The embedded file's checkpoints run in the background, never inside a call's commit: the
/// pool's connections have SQLite's automatic checkpoint off, and a background task backfills
/// the WAL soon after the writes stop (without it nothing would: the automatic one is off).
#[tokio::test]
async fn the_embedded_database_checkpoints_its_wal_in_the_background_not_in_commits() {
    use ai_runner::store::Pool;
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let Pool::Sqlite(pool) = db.pool().await.unwrap() else {
        panic!("an embedded target opens a SQLite pool");
    };
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(auto, 0, "no checkpoint inside a commit");
    sqlx::query("CREATE TABLE wal_probe (id INTEGER PRIMARY KEY, body TEXT)")
        .execute(pool)
        .await
        .unwrap();
    for i in 0..400 {
        sqlx::query("INSERT INTO wal_probe (id, body) VALUES (?, ?)")
            .bind(i)
            .bind("x".repeat(2048))
            .execute(pool)
            .await
            .unwrap();
    }
    // The rows reach the database file only through a checkpoint (until then they are in the
    // WAL): 400 rows of 2 KiB, under SQLite's 1,000-page automatic threshold either way.
    let ai_runner::config::DatabaseTarget::Sqlite(path) = &tdb.target else {
        panic!("an embedded target");
    };
    let mut size = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        size = std::fs::metadata(path).unwrap().len();
        if size > 800_000 {
            break;
        }
    }
    assert!(
        size > 800_000,
        "the background task checkpointed the WAL into the file ({size} bytes)"
    );
}
