//! The audit spool through the real stack: a row the database did not take (an audit row, a
//! key's `ai_user_call_log` row) is replayed later, once, with the call's time, not the
//! replay's.

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

/// A test database with config `key` answering from a scripted provider (kept while it runs).
async fn seeded(backend: Backend, key: &str) -> (TestDb, ProviderServer) {
    let tdb = TestDb::new(backend).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    let url = server.url();
    let mut s = Seed::text(key, &url);
    s.variables = None;
    s.messages = serde_json::json!([{"role": "user", "content": "你好"}]);
    seed(&tdb.db(), &s).await;
    (tdb, server)
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
    let (tdb, _server) = seeded(backend, "dated").await;
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

/// A key's call meets a database that is down: its `ai_user_call_log` row goes to the spool,
/// and the replay writes it once, dated at the call.
async fn a_key_call_row_is_spooled_and_replayed_once(backend: Backend) {
    use ai_runner::access::Granted;
    use ai_runner::access::record::{Logged, key_call};
    use ai_runner::model::access::KeyOwner;
    use ai_runner::ports::AccessStore;
    use ai_runner::store::access::NewKey;

    let (tdb, _server) = seeded(backend, "keyed").await;
    let db = tdb.db();
    let (ak, _) = db
        .create_access_key(
            &ai_runner_tests::keyring(),
            &NewKey::new(KeyOwner::User("ana".into())),
        )
        .await
        .unwrap();
    let granted = Granted {
        caller: Default::default(),
        key: db.find_key(&ak).await.unwrap(),
        limits: None,
    };
    assert!(granted.key.is_some());
    let r = runner(&tdb.settings(&[]));
    let result = r
        .run_once(
            "keyed",
            &Default::default(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let spool = local_spool(&dir);

    // The database down: nothing listens where this handle points.
    let down = match backend {
        Backend::Sqlite => Db::new(ai_runner::config::DatabaseTarget::Sqlite(
            dir.path().join("no-such-dir").join("down.db"),
        )),
        _ => Db::new(
            ai_runner::Settings::builder()
                .database_url("mysql://root@127.0.0.1:1/down")
                .build()
                .unwrap()
                .database,
        )
        .with_connect_timeout(Duration::from_secs(1)),
    };
    let logged = Logged {
        project: "-",
        route_key: "keyed",
        status: 200,
    };
    let before = utc_datetime_ms(now_ms());
    key_call(&down, Some(&spool), Some(&granted), logged, &result).await;
    let after = utc_datetime_ms(now_ms());
    assert_eq!(db.count("ai_user_call_log").await.unwrap(), 0);
    let (_, pending) = spool.pending(10).await.unwrap();
    assert_eq!(pending.rows, 1, "the row waits in the spool");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done = spool.replay(&db, 10).await.unwrap();
    assert_eq!((done.replayed, done.failed.len()), (1, 0), "{done:?}");
    assert_eq!(db.count("ai_user_call_log").await.unwrap(), 1);
    let sql = "SELECT CAST(created_at AS CHAR) FROM ai_user_call_log WHERE access_key_id = ? AND trace_id = ?";
    let at: String = match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::query_scalar(sql)
            .bind(&ak)
            .bind(&result.trace_id)
            .fetch_one(p)
            .await
            .unwrap(),
        Pool::Sqlite(p) => sqlx::query_scalar(sql)
            .bind(&ak)
            .bind(&result.trace_id)
            .fetch_one(p)
            .await
            .unwrap(),
    };
    // MariaDB's DATETIME keeps whole seconds: compare to the second.
    assert!(
        before[..19] <= at[..19] && at[..19] <= after[..19],
        "the call's time {before}..{after}, got {at}"
    );

    // Spooled again though its insert had committed (an ambiguous failure): not written twice.
    let call = ai_runner::ports::KeyCall {
        access_key_id: ak.clone(),
        trace_id: Some(result.trace_id.clone()),
        project_name: "-".into(),
        route_key: "keyed".into(),
        ..Default::default()
    };
    spool.put_key_call(&call).await.unwrap();
    assert_eq!(spool.replay(&db, 10).await.unwrap().replayed, 1);
    assert_eq!(db.count("ai_user_call_log").await.unwrap(), 1, "once");
    db.close().await;
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_key_call_row_meeting_a_down_database_is_replayed_once_on_sqlite() {
    a_key_call_row_is_spooled_and_replayed_once(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_key_call_row_meeting_a_down_database_is_replayed_once_on_mariadb() {
    a_key_call_row_is_spooled_and_replayed_once(Backend::MariaDb).await;
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
