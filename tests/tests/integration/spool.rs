//! The audit spool through the real stack: a row the database did not take is replayed later
//! with the call's time, not the replay's.

use std::sync::Arc;
use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::model::{AuditRow, now_ms, utc_datetime_ms};
use ai_runner::spool::AuditSpool;
use ai_runner::store::{Db, Pool};
use ai_runner::{RunContext, Trigger};
use ai_runner_tests::{Backend, Seed, TestDb, runner, seed};

/// Runs one statement on the test database (both engines take these as written).
async fn exec(db: &Db, sql: &str) {
    match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()).unwrap(),
        Pool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()).unwrap(),
    }
}

/// A local spool in a temporary directory.
fn local_spool(dir: &tempfile::TempDir) -> AuditSpool {
    AuditSpool {
        store: Arc::new(ai_runner::objects::LocalStore::new(dir.path())),
        bucket: "spool".into(),
        prefix: "audit/".into(),
    }
}

/// Every audit row's `created_at`, in insert order (the predecessor's table has no trace id).
async fn created_at(db: &Db) -> Vec<String> {
    let sql = "SELECT CAST(created_at AS CHAR) FROM ai_call_logs ORDER BY id";
    match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
    }
}

/// The audit table is taken away while a call runs (its row goes to the spool), given back, and
/// the spool replayed a while later: the row is dated at the call. A row spooled before rows
/// carried their time is dated by its spool key.
async fn replay_keeps_the_call_time(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    let url = server.url();
    let mut s = Seed::text("dated", &url);
    s.variables = None;
    s.messages = serde_json::json!([{"role": "user", "content": "你好"}]);
    seed(&tdb.db(), &s).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = local_spool(&dir);
    let r = runner(&tdb.settings(&[])).with_audit_spool(Some(spool.clone()));
    let admin = tdb.db();

    exec(
        &admin,
        "ALTER TABLE ai_call_logs RENAME TO ai_call_logs_away",
    )
    .await;
    let before = utc_datetime_ms(now_ms());
    let res = r
        .run_once(
            "dated",
            &Default::default(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    let after = utc_datetime_ms(now_ms());
    assert!(res.error.is_none(), "{:?}", res.error);
    assert!(res.audit_deferred.is_some(), "the row went to the spool");

    // A row as an older build spooled it: no time of its own.
    let old = AuditRow {
        config_key: "dated".into(),
        trace_id: "old-spooled-row".into(),
        row_key: Some("old-spooled-row-1".into()),
        trigger_source: "library".into(),
        http_status: 200,
        ..Default::default()
    };
    let old_before = utc_datetime_ms(now_ms());
    spool.put(&old).await.unwrap();
    let old_after = utc_datetime_ms(now_ms());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    exec(
        &admin,
        "ALTER TABLE ai_call_logs_away RENAME TO ai_call_logs",
    )
    .await;
    let replay_at = utc_datetime_ms(now_ms());
    let done = spool.replay(r.store(), 10).await.unwrap();
    assert_eq!((done.replayed, done.failed.len()), (2, 0), "{done:?}");

    // Replayed oldest spool key first: the call's row, then the old one.
    let dates = created_at(&admin).await;
    assert_eq!(dates.len(), 2, "{dates:?}");
    let at = &dates[0];
    assert!(
        before <= *at && *at <= after,
        "the call's time {before}..{after}, got {at} (replayed at {replay_at})"
    );
    let at = &dates[1];
    assert!(
        old_before <= *at && *at <= old_after,
        "the spool key's time {old_before}..{old_after}, got {at} (replayed at {replay_at})"
    );
    admin.close().await;
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_replayed_audit_row_keeps_the_call_time_on_sqlite() {
    replay_keeps_the_call_time(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_replayed_audit_row_keeps_the_call_time_on_mariadb() {
    replay_keeps_the_call_time(Backend::MariaDb).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_replayed_audit_row_keeps_the_call_time_on_the_predecessors_schema() {
    replay_keeps_the_call_time(Backend::MariaDbUnmigrated).await;
}
