//! Faults injected through the real stack (scripted OpenAI-protocol servers, SQLite and MariaDB
//! in strict mode): whatever a provider or a caller sends, the run ends with a clear code and
//! leaves its audit row; billed usage is summed over content retries; caller-supplied labels
//! never reach the audit row.

use ai_runner::demo::{ProviderServer, Reply, chat_completion};
use ai_runner::{RunContext, Trigger};
use ai_runner_tests::{Backend, Seed, TestDb, runner, seed};
use serde_json::json;

/// A config asking for JSON with a schema (so a wrong answer fails validation).
async fn json_config(tdb: &TestDb, key: &str, server: &ProviderServer) {
    let url = server.url();
    let mut s = Seed::text(key, &url);
    s.messages = json!([{"role": "user", "content": "只回答 JSON"}]);
    s.variables = None;
    s.response_format = Some(
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "required": ["情绪"], "properties": {"情绪": {"type": "string"}}}}}),
    );
    seed(&tdb.db(), &s).await;
}

fn with_usage(content: &str, prompt: i64, completion: i64) -> Reply {
    let mut body = chat_completion(content);
    body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion,
                           "prompt_tokens_details": {"cached_tokens": 1}});
    Reply::Json {
        status: 200,
        body,
        headers: Vec::new(),
    }
}

async fn hostile_content(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    // 1. An answer that fails validation three times, then passes: every call is billed.
    let retried = ProviderServer::start(vec![
        with_usage("不是 JSON", 10, 5),
        with_usage("还不是", 10, 6),
        with_usage(r#"{"情绪": "积极"}"#, 10, 7),
    ])
    .await
    .unwrap();
    json_config(&tdb, "retried", &retried).await;
    // 2. A 300 KB answer that fails validation: its message embeds the answer.
    let huge = "好".repeat(100_000);
    let wordy = ProviderServer::start(vec![with_usage(&huge, 1, 1)])
        .await
        .unwrap();
    json_config(&tdb, "wordy", &wordy).await;
    // 3. Token counts no INT column can hold, and a response id longer than its column.
    let mut body = chat_completion(r#"{"情绪": "积极"}"#);
    body["usage"] =
        json!({"prompt_tokens": 9_000_000_000_i64, "completion_tokens": -5, "total_tokens": 1e30});
    body["id"] = json!("x".repeat(500));
    let absurd = ProviderServer::start(vec![Reply::Json {
        status: 200,
        body,
        headers: Vec::new(),
    }])
    .await
    .unwrap();
    json_config(&tdb, "absurd", &absurd).await;

    let settings = tdb.settings(&[
        ("AI_CONTENT_RETRIES", "3"),
        ("AUDIT_MAX_BODY_BYTES", "65536"),
    ]);
    let r = runner(&settings);
    let long_label = RunContext {
        trigger: Trigger::Library,
        request_id: Some("r".repeat(300)),
        ..RunContext::default()
    };
    let db = r.store();

    let ok = r
        .run_once("retried", &Default::default(), &long_label)
        .await;
    assert!(ok.is_ok(), "{:?}", ok.error);
    assert_eq!(ok.content_attempts, 3);
    let usage = ok.usage.clone().unwrap();
    assert_eq!(
        (
            usage["prompt_tokens"].as_i64(),
            usage["completion_tokens"].as_i64(),
            usage["total_tokens"].as_i64()
        ),
        (Some(30), Some(18), Some(48)),
        "every billed call counts: {usage}"
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
    assert_eq!(usage["content_attempts"], 3);
    let row = db.audit_row(ok.audit_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (
            row["prompt_tokens"].as_i64(),
            row["completion_tokens"].as_i64(),
            row["total_tokens"].as_i64()
        ),
        (Some(30), Some(18), Some(48))
    );

    let failed = r.run_once("wordy", &Default::default(), &long_label).await;
    assert_eq!(
        failed.error.as_ref().map(|e| e.code.as_str()),
        Some("SCHEMA_INVALID")
    );
    let row = db
        .audit_row(failed.audit_id.expect("the row is written"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["error_code"], "SCHEMA_INVALID");
    let stored: serde_json::Value =
        serde_json::from_str(row["response_body_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored["_truncated"], true,
        "a body over the cap is a valid stub"
    );
    assert!(stored["bytes"].as_u64().unwrap() > 300_000);

    let clamped = r.run_once("absurd", &Default::default(), &long_label).await;
    assert!(clamped.is_ok(), "{:?}", clamped.error);
    let row = db
        .audit_row(clamped.audit_id.expect("the row is written"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["prompt_tokens"].as_i64(), Some(i64::from(i32::MAX)));
    assert_eq!(row["completion_tokens"].as_i64(), Some(-5));
    assert_eq!(row["response_id"].as_str().map(str::len), Some(191));
    assert_eq!(
        db.count("ai_call_logs").await.unwrap(),
        3,
        "one row per run, none lost"
    );
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn hostile_content_always_leaves_a_fitting_audit_row_on_sqlite() {
    hostile_content(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn hostile_content_always_leaves_a_fitting_audit_row_on_mariadb_in_strict_mode() {
    hostile_content(Backend::MariaDb).await;
}

/// Runs at concurrency 8 against MariaDB through a proxy; the database is cut while calls are in
/// flight and restored; the rows it did not take are spooled, then replayed: as many audit rows
/// as runs that resolved their config, none twice.
#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_database_outage_mid_run_loses_no_audit_row_and_replay_writes_each_once() {
    use ai_runner::Runner;
    use ai_runner::provider::HttpProvider;
    use ai_runner::spool::AuditSpool;
    use ai_runner::store::Db;
    use ai_runner_tests::TcpProxy;
    use std::sync::Arc;
    use std::time::Duration;

    let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
    let slow = ProviderServer::start(vec![Reply::Delayed(
        Duration::from_millis(400),
        Box::new(Reply::content("好")),
    )])
    .await
    .unwrap();
    let url = slow.url();
    let mut s = Seed::text("slow", &url);
    s.variables = None;
    s.messages = json!([{"role": "user", "content": "你好"}]);
    seed(&tdb.db(), &s).await;

    let proxy = TcpProxy::start(TcpProxy::target_of(&tdb.url)).await;
    let through = proxy.url_through(&tdb.url);
    let settings = ai_runner::Settings::builder()
        .database_url(&through)
        .pepper(ai_runner_tests::PEPPER)
        .var("AI_RETRY_BASE_MS", "1")
        .var("AI_MAX_RETRIES", "0")
        .build()
        .unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = AuditSpool {
        store: Arc::new(ai_runner::objects::LocalStore::new(spool_dir.path())),
        bucket: "spool".into(),
        prefix: "audit/".into(),
    };
    let r = Arc::new(
        Runner::new(
            Db::new(settings.database.clone()).with_connect_timeout(Duration::from_secs(2)),
            HttpProvider::new(settings.http.clone()).unwrap(),
            &settings,
        )
        .with_audit_spool(Some(spool.clone())),
    );
    let wave = |r: Arc<Runner<Db, HttpProvider>>| async move {
        let runs = (0..8).map(|_| {
            let r = r.clone();
            tokio::spawn(async move {
                r.run_once(
                    "slow",
                    &Default::default(),
                    &RunContext::new(Trigger::Library),
                )
                .await
            })
        });
        let mut out = Vec::new();
        for h in runs {
            out.push(h.await.unwrap());
        }
        out
    };
    let mut results = wave(r.clone()).await;
    // Cut while the second wave's calls are in flight: their configs are resolved, their audit
    // inserts meet the outage.
    let second = tokio::spawn(wave(r.clone()));
    // Wait until some of its calls reached the provider (their configs resolved), then cut.
    for _ in 0..500 {
        if slow.requests().len() > 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.cut();
    results.extend(second.await.unwrap());
    proxy.restore();
    results.extend(wave(r.clone()).await);

    // A run that resolved its config called the provider and tried to audit; one that did not
    // failed on the database before that (no row is owed for it).
    let resolved: Vec<_> = results
        .iter()
        .filter(|x| x.audit_id.is_some() || x.audit_error.is_some())
        .collect();
    assert_eq!(
        resolved.len(),
        slow.requests().len(),
        "every call made is owed a row"
    );
    assert!(
        results
            .iter()
            .filter(|x| x.audit_id.is_none() && x.audit_error.is_none())
            .all(|x| x.error.as_ref().is_some_and(|e| e.code.starts_with("DB_"))),
        "the others failed resolving their config"
    );
    let deferred = results
        .iter()
        .filter(|x| x.audit_deferred.is_some())
        .count();
    assert!(deferred > 0, "the outage met some audit inserts");
    assert!(
        resolved
            .iter()
            .all(|x| x.audit_id.is_some() || x.audit_deferred.is_some()),
        "every resolved run is either written or spooled"
    );
    let done = spool.replay(r.store(), 1000).await.unwrap();
    assert_eq!(
        (done.replayed, done.failed.len(), done.remaining),
        (deferred, 0, 0)
    );
    let again = spool.replay(r.store(), 1000).await.unwrap();
    assert_eq!(again.replayed, 0);

    // A row spooled though its insert had in fact committed (an ambiguous failure) is not written
    // twice.
    let db = tdb.db();
    let written = db
        .audit_row(resolved.iter().find_map(|x| x.audit_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut row = ai_runner::model::AuditRow {
        config_key: "slow".into(),
        trace_id: written["trace_id"].as_str().unwrap().into(),
        row_key: written["row_key"].as_str().map(str::to_owned),
        status: "ok",
        trigger_source: "fault".into(),
        ..Default::default()
    };
    row.http_status = 200;
    spool.put(&row).await.unwrap();
    assert_eq!(spool.replay(r.store(), 10).await.unwrap().replayed, 1);

    let rows = db.count("ai_call_logs").await.unwrap();
    assert_eq!(
        rows as usize,
        resolved.len(),
        "as many rows as resolved runs"
    );
    let distinct: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT row_key) FROM ai_call_logs")
        .fetch_one(
            &mut <sqlx::MySqlConnection as sqlx::Connection>::connect(&tdb.url)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(distinct, rows, "no row twice");
    db.close().await;
    r.store().close().await;
    tdb.cleanup().await;
}

/// A warm instance through a database cut: the config it resolved a moment ago keeps answering
/// from its snapshot (no configuration query reaches the dead database), each call's audit row
/// goes to the spool, and the replay after the restore writes each exactly once.
#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_warm_instance_keeps_answering_through_a_database_cut_and_replays_each_row_once() {
    use ai_runner::Runner;
    use ai_runner::provider::HttpProvider;
    use ai_runner::spool::AuditSpool;
    use ai_runner::store::Db;
    use ai_runner_tests::TcpProxy;
    use std::time::Duration;

    let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
    let mock = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    let url = mock.url();
    let mut s = Seed::text("warm", &url);
    s.variables = None;
    s.messages = json!([{"role": "user", "content": "你好"}]);
    seed(&tdb.db(), &s).await;

    let proxy = TcpProxy::start(TcpProxy::target_of(&tdb.url)).await;
    let settings = ai_runner::Settings::builder()
        .database_url(proxy.url_through(&tdb.url))
        .pepper(ai_runner_tests::PEPPER)
        .var("AI_MAX_RETRIES", "0")
        .var("AI_CONFIG_CACHE_MS", "60000")
        .var("AI_CONFIG_STALE_MAX_S", "60")
        .build()
        .unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = AuditSpool {
        store: std::sync::Arc::new(ai_runner::objects::LocalStore::new(spool_dir.path())),
        bucket: "spool".into(),
        prefix: "audit/".into(),
    };
    let r = Runner::new(
        Db::new(settings.database.clone()).with_connect_timeout(Duration::from_secs(1)),
        HttpProvider::new(settings.http.clone()).unwrap(),
        &settings,
    )
    .with_audit_spool(Some(spool.clone()));
    let vars = ai_runner::Variables::new();
    let ctx = RunContext::new(Trigger::Library);
    let call = || r.run_once("warm", &vars, &ctx);

    let warm = call().await;
    assert!(warm.is_ok() && warm.audit_id.is_some(), "{:?}", warm.error);
    proxy.cut();
    let mut during = Vec::new();
    for _ in 0..4 {
        during.push(call().await);
    }
    for x in &during {
        assert!(x.is_ok(), "answered during the cut: {:?}", x.error);
        assert!(
            x.audit_id.is_none() && x.audit_deferred.is_some(),
            "its row is spooled: {:?}",
            x.audit_error
        );
    }
    assert_eq!(mock.requests().len(), 5, "every call reached the provider");
    proxy.restore();
    let done = spool.replay(r.store(), 100).await.unwrap();
    assert_eq!(
        (done.replayed, done.failed.len(), done.remaining),
        (4, 0, 0)
    );
    assert_eq!(spool.replay(r.store(), 100).await.unwrap().replayed, 0);
    let db = tdb.db();
    assert_eq!(
        db.count("ai_call_logs").await.unwrap(),
        5,
        "none lost, none twice"
    );
    db.close().await;
    r.store().close().await;
    tdb.cleanup().await;
}

/// Answers no client should have to survive: each ends with its code and leaves its audit row.
#[tokio::test]
async fn hostile_answers_end_with_a_clear_code_and_an_audit_row_each() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let huge = Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: vec![b' '; 3 * 1024 * 1024],
    };
    let garbage = Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: b"{\"choices\": [ this is not json".to_vec(),
    };
    let absurd_wait = Reply::Json {
        status: 429,
        body: json!({"error": {"message": "slow down"}}),
        headers: vec![
            ("retry-after".into(), "1e20".into()),
            ("retry-after-ms".into(), "1e308".into()),
        ],
    };
    let mut servers = Vec::new();
    for (key, reply) in [
        ("huge", huge),
        ("garbage", garbage),
        ("absurd", absurd_wait),
    ] {
        let server = ProviderServer::start(vec![reply]).await.unwrap();
        let url = server.url();
        seed(&tdb.db(), &Seed::text(key, &url)).await;
        servers.push(server);
    }
    let settings = tdb.settings(&[
        ("AI_MAX_RESPONSE_BYTES", "1048576"),
        ("AI_MAX_RETRIES", "1"),
        ("AI_RETRY_AFTER_CAP_MS", "10"),
    ]);
    let r = runner(&settings);
    let db = r.store();
    for (key, code) in [
        ("huge", "RESPONSE_TOO_LARGE"),
        ("garbage", "BAD_PROVIDER_RESPONSE"),
        ("absurd", "HTTP_429_RATE_LIMIT"),
    ] {
        let res = r
            .run_once(key, &Default::default(), &RunContext::new(Trigger::Library))
            .await;
        assert_eq!(
            res.error.as_ref().map(|e| e.code.as_str()),
            Some(code),
            "{key}"
        );
        let row = db
            .audit_row(res.audit_id.expect("an audit row each time"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["error_code"], code);
    }
    assert_eq!(
        servers[2].requests().len(),
        2,
        "retried once after a capped wait"
    );
    r.store().close().await;
}
