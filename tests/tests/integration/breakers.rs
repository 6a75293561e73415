//! Circuit breakers shared in SQL, end to end on SQLite and MariaDB: several processes
//! (`budget-worker`) on one database share one breaker (it opens once for all, exactly one probe
//! goes out when it half-opens, the probe's success closes it); a route skips a dead member
//! while its breaker is open (no request reaches it, each skip is an audit row); a config run
//! alone is answered `CIRCUIT_OPEN` 503 with `Retry-After` at the HTTP edge; evaluations go
//! through the same breakers; a database without the table runs as before. And the
//! `Retry-After` handover: a member asking for a wait longer than the deadline or the cap hands
//! over at once.
//!
//! A breaker's cooldown is never waited for: tests move `open_until_ms` into the past, as the
//! clock would.

use std::collections::BTreeMap;

use ai_runner::app::App;
use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::function::{Call, Function};
use ai_runner::model::breaker::{BreakerRow, BreakerState, Limits};
use ai_runner::ports::BreakerStore;
use ai_runner::store::{Db, Pool};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::fake::MemoryStore;
use ai_runner_tests::{
    Backend, PEPPER, RouteSpec, Seed, TestDb, fixture_json, runner, seed, seed_route,
};
use serde_json::{Value, json};

/// Runs one statement on the test database.
async fn exec(db: &Db, sql: &str) {
    match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()).unwrap(),
        Pool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()).unwrap(),
    }
}

/// The cooldown of every open breaker is over (as if its time had passed).
async fn cool_down(db: &Db) {
    exec(
        db,
        "UPDATE ai_connection_breaker SET open_until_ms = 1 WHERE open_until_ms IS NOT NULL",
    )
    .await;
}

/// The stored breaker of connection `name`.
async fn breaker_of(db: &Db, name: &str) -> BreakerRow {
    db.list_breakers()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.connection == name)
        .unwrap_or_else(|| panic!("no breaker stored for {name}"))
}

/// Starts `processes` workers at once, each making `calls` runs of config `key` at once with
/// `env`; returns how many ended with each code (`ok` for answers).
async fn workers(
    tdb: &TestDb,
    key: &str,
    env: &[(&str, &str)],
    processes: usize,
    calls: usize,
) -> BTreeMap<String, u64> {
    let start = ai_runner::model::now_ms() + 1500;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_budget-worker"))
                .env("DATABASE_URL", &tdb.url)
                .env("AI_PEPPER", PEPPER)
                .env("WORKER_CONFIG", key)
                .env("WORKER_CALLS", calls.to_string())
                .env("WORKER_START_MS", start.to_string())
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes = BTreeMap::new();
    for c in children {
        let out = c.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        *codes.entry("ok".to_owned()).or_default() += v["ok"].as_u64().unwrap();
        for (code, n) in v["other"].as_object().unwrap() {
            *codes.entry(code.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    codes.retain(|_, n| *n > 0);
    codes
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// No retries (one request per run), 3 failures open a breaker for 10 minutes.
const WORKER_ENV: &[(&str, &str)] = &[
    ("AI_MAX_RETRIES", "0"),
    ("AI_BREAKER_FAILURES", "3"),
    ("AI_BREAKER_COOLDOWN_S", "600"),
];

async fn processes_on_one_database_share_one_breaker(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::error(503, "down")])
        .await
        .unwrap();
    let url = server.url();
    let mut s = Seed::text("flaky", &url);
    s.messages = json!([{"role": "user", "content": "{{X}}"}]);
    s.variables = None;
    seed(&db, &s).await;

    // 3 processes x 4 calls at once, all failing: the breaker opens once, for all of them; every
    // run either reached the provider (and failed) or was refused without a request.
    let first = workers(&tdb, "flaky", WORKER_ENV, 3, 4).await;
    let failed = first.get("HTTP_5XX_SERVER_ERROR").copied().unwrap_or(0);
    assert_eq!(
        failed + first.get("CIRCUIT_OPEN").copied().unwrap_or(0),
        12,
        "{first:?}"
    );
    assert!(failed >= 3, "{first:?}");
    assert_eq!(server.requests().len() as u64, failed);
    let row = breaker_of(&db, "conn-flaky").await;
    assert_eq!(row.opened, 1, "opened exactly once: {row:?}");
    assert!(matches!(
        row.state(ai_runner::model::now_ms()),
        BreakerState::Open { .. }
    ));

    // While it is open, new processes send nothing.
    let before = server.requests().len();
    let open = workers(&tdb, "flaky", WORKER_ENV, 3, 2).await;
    assert_eq!(open, counts(&[("CIRCUIT_OPEN", 6)]));
    assert_eq!(server.requests().len(), before);

    // Half-open: of 9 runs in 3 processes at once, exactly one probe goes out; it fails, and the
    // breaker re-opens.
    cool_down(&db).await;
    let probing = workers(&tdb, "flaky", WORKER_ENV, 3, 3).await;
    assert_eq!(
        probing,
        counts(&[("CIRCUIT_OPEN", 8), ("HTTP_5XX_SERVER_ERROR", 1)])
    );
    assert_eq!(server.requests().len(), before + 1, "exactly one probe");
    assert_eq!(breaker_of(&db, "conn-flaky").await.opened, 2);

    // The provider is back: the one probe answers and closes the breaker for everyone.
    server.set_script(vec![Reply::content("回来了")]);
    cool_down(&db).await;
    let closing = workers(&tdb, "flaky", WORKER_ENV, 2, 3).await;
    assert_eq!(closing, counts(&[("CIRCUIT_OPEN", 5), ("ok", 1)]));
    assert_eq!(server.requests().len(), before + 2);
    let row = breaker_of(&db, "conn-flaky").await;
    assert!(row.is_clean(), "closed: {row:?}");
    let after = workers(&tdb, "flaky", WORKER_ENV, 2, 2).await;
    assert_eq!(after, counts(&[("ok", 4)]));
    assert_eq!(server.requests().len(), before + 6);
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn processes_on_one_database_share_one_breaker_on_sqlite() {
    processes_on_one_database_share_one_breaker(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn processes_on_one_database_share_one_breaker_on_mariadb() {
    processes_on_one_database_share_one_breaker(Backend::MariaDb).await;
}

/// The breaker statements of the database and the in-memory fake give the same answers.
async fn the_breaker_port_keeps_its_contract<S: BreakerStore>(store: &S, id: i64) {
    let limits = Limits {
        failures: 2,
        window_ms: 60_000,
        cooldown_ms: 30_000,
    };
    let t = 1_000_000;
    assert!(store.breakers().await.unwrap().is_empty());
    assert!(
        !store.breaker_succeeded(id, t).await.unwrap(),
        "no row: nothing to close"
    );
    store.breaker_failed(id, limits, t).await.unwrap();
    let rows = store.breakers().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].failures, rows[0].open_until_ms), (1, None));
    // A streak older than the window restarts; the next failure within it opens.
    store.breaker_failed(id, limits, t + 61_000).await.unwrap();
    assert_eq!(store.breakers().await.unwrap()[0].open_until_ms, None);
    store.breaker_failed(id, limits, t + 62_000).await.unwrap();
    let row = store.breakers().await.unwrap().remove(0);
    assert_eq!(
        (row.failures, row.opened, row.open_until_ms),
        (2, 1, Some(t + 92_000))
    );
    // Open: failures change nothing but the streak, a success nothing at all, no probe.
    store.breaker_failed(id, limits, t + 63_000).await.unwrap();
    assert!(!store.breaker_succeeded(id, t + 63_500).await.unwrap());
    assert!(!store.claim_probe(id, t + 64_000, t + 99_000).await.unwrap());
    let row = store.breakers().await.unwrap().remove(0);
    assert_eq!((row.opened, row.open_until_ms), (1, Some(t + 92_000)));
    // Half-open: one claim; the probe fails and re-opens it.
    assert!(store.claim_probe(id, t + 92_000, t + 99_000).await.unwrap());
    assert!(!store.claim_probe(id, t + 92_001, t + 99_000).await.unwrap());
    store.breaker_failed(id, limits, t + 93_000).await.unwrap();
    let row = store.breakers().await.unwrap().remove(0);
    assert_eq!(
        (row.opened, row.open_until_ms, row.probe_until_ms),
        (2, Some(t + 123_000), None)
    );
    // The next probe succeeds and closes it.
    assert!(
        store
            .claim_probe(id, t + 123_000, t + 130_000)
            .await
            .unwrap()
    );
    assert!(store.breaker_succeeded(id, t + 124_000).await.unwrap());
    assert!(
        store.breakers().await.unwrap().is_empty(),
        "clean rows are not read"
    );
}

#[tokio::test]
async fn the_breaker_statements_and_the_fake_agree() {
    the_breaker_port_keeps_its_contract(&MemoryStore::new(), 7).await;
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    the_breaker_port_keeps_its_contract(&db, 7).await;
    db.close().await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn the_breaker_statements_and_the_fake_agree_on_mariadb() {
    let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
    let db = tdb.db();
    the_breaker_port_keeps_its_contract(&db, 7).await;
    db.close().await;
    tdb.cleanup().await;
}

/// Route `project/route` of two members: `first` answering `reply`, and `backup` answering.
async fn first_and_backup(
    tdb: &TestDb,
    (project, route): (&str, &str),
    (first, backup): (&str, &str),
    reply: Reply,
) -> (ProviderServer, ProviderServer) {
    let first_server = ProviderServer::start(vec![reply]).await.unwrap();
    let backup_server = ProviderServer::start(vec![Reply::content("备用回答")])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text(first, &first_server.url())).await;
    seed(&tdb.db(), &Seed::text(backup, &backup_server.url())).await;
    seed_route(
        &tdb.db(),
        project,
        route,
        &RouteSpec::default(),
        &[(first, 1, 1), (backup, 2, 1)],
    )
    .await;
    (first_server, backup_server)
}

/// A quickstart-like route: member `dead` always answers 503, member `alive` answers.
async fn dead_and_alive(tdb: &TestDb) -> (ProviderServer, ProviderServer) {
    let down = Reply::error(503, "always down");
    first_and_backup(tdb, ("demo", "demo-route"), ("dead", "alive"), down).await
}

async fn a_route_stops_calling_a_dead_member_while_its_breaker_is_open(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let (dead, alive) = dead_and_alive(&tdb).await;
    let r = runner(&tdb.settings(&[("AI_BREAKER_FAILURES", "2"), ("AI_MAX_RETRIES", "1")]));
    let ctx = RunContext::new(Trigger::Library);
    for _ in 0..2 {
        let res = r
            .run_route("demo", "demo-route", &Variables::new(), &ctx)
            .await;
        assert_eq!(res.answered_by.as_deref(), Some("alive"));
        assert_eq!(
            res.member_attempts[0].error.as_ref().unwrap().code,
            "HTTP_5XX_SERVER_ERROR"
        );
    }
    assert_eq!(dead.requests().len(), 4, "two runs, two attempts each");
    for _ in 0..5 {
        let res = r
            .run_route("demo", "demo-route", &Variables::new(), &ctx)
            .await;
        assert!(res.result.is_ok(), "{:?}", res.result.error);
        assert_eq!(res.answered_by.as_deref(), Some("alive"));
        let skipped = &res.member_attempts[0];
        assert_eq!(skipped.error.as_ref().unwrap().code, "CIRCUIT_OPEN");
        assert!(skipped.handed_over);
        // The skip is on the record: its own row, no request, the reason.
        let rows = tdb
            .db()
            .audit_rows_for_trace(&res.result.trace_id)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["config_key"], "dead");
        assert_eq!(rows[0]["error_code"], "CIRCUIT_OPEN");
        assert_eq!(rows[0]["handover_reason"], "CIRCUIT_OPEN");
        assert_eq!(rows[0]["request_body_json"], Value::Null);
        assert_eq!(rows[1]["config_key"], "alive");
    }
    assert_eq!(
        dead.requests().len(),
        4,
        "nothing reached the dead member while open"
    );
    assert_eq!(alive.requests().len(), 7);
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_route_stops_calling_a_dead_member_while_its_breaker_is_open_on_sqlite() {
    a_route_stops_calling_a_dead_member_while_its_breaker_is_open(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn a_route_stops_calling_a_dead_member_while_its_breaker_is_open_on_mariadb() {
    a_route_stops_calling_a_dead_member_while_its_breaker_is_open(Backend::MariaDb).await;
}

fn http_event(config_key: &str) -> Value {
    let mut ev = fixture_json("aws/apigw/http-v2-post-json-body.json");
    ev["body"] = json!(json!({"config_key": config_key}).to_string());
    ev["isBase64Encoded"] = json!(false);
    ev
}

#[tokio::test]
async fn a_config_run_alone_is_answered_circuit_open_503_with_retry_after_at_the_http_edge() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (dead, _alive) = dead_and_alive(&tdb).await;
    let env = [
        ("AI_MAX_RETRIES", "0"),
        ("AI_BREAKER_FAILURES", "1"),
        ("AI_BREAKER_COOLDOWN_S", "120"),
    ];
    let app = App::new(&tdb.settings(&env)).unwrap();
    let first = Function::RunOnce
        .handle(&app, http_event("dead"), Call::default())
        .await
        .unwrap();
    assert_eq!(first["statusCode"], 502, "{first}");
    let refused = Function::RunOnce
        .handle(&app, http_event("dead"), Call::default())
        .await
        .unwrap();
    assert_eq!(refused["statusCode"], 503, "{refused}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "CIRCUIT_OPEN");
    let wait: u64 = refused["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=120).contains(&wait),
        "the rest of the cooldown: {wait}"
    );
    assert_eq!(dead.requests().len(), 1, "the refused run sent nothing");
    // It is on the record like any run of a resolved config.
    let trace = body["trace_id"].as_str().unwrap();
    let rows = tdb.db().audit_rows_for_trace(trace).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["error_code"], "CIRCUIT_OPEN");

    // `AI_BREAKER_RUN_ALONE=try` calls the provider anyway.
    let trying =
        App::new(&tdb.settings(&[env[0], env[1], ("AI_BREAKER_RUN_ALONE", "try")])).unwrap();
    let tried = Function::RunOnce
        .handle(&trying, http_event("dead"), Call::default())
        .await
        .unwrap();
    assert_eq!(tried["statusCode"], 502, "{tried}");
    assert_eq!(dead.requests().len(), 2);
    tdb.cleanup().await;
}

#[tokio::test]
async fn an_evaluation_goes_through_the_same_breakers_and_its_early_stop_agrees() {
    use ai_runner::eval::run::{Options, run};
    use ai_runner::eval::suite::read_suite;
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (dead, _alive) = dead_and_alive(&tdb).await;
    let r = runner(&tdb.settings(&[("AI_MAX_RETRIES", "0"), ("AI_BREAKER_FAILURES", "2")]));
    let ctx = RunContext::new(Trigger::Library);
    for _ in 0..2 {
        assert!(!r.run_once("dead", &Variables::new(), &ctx).await.is_ok());
    }
    assert_eq!(dead.requests().len(), 2);
    let cases: Vec<Value> = (0..10)
        .map(|i| json!({"key": format!("c{i:02}"), "vars": {"TOPIC": "x"}}))
        .collect();
    let doc = json!({
        "datasets": [{"name": "d", "cases": cases}],
        "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "dead"}],
                    "assert": [{"type": "contains", "value": "x"}], "concurrency": 1,
                    "stop_after_failures": 3}]
    });
    let suite = read_suite(&doc, "s", std::path::Path::new(".")).0.unwrap();
    let report = run(&r, &suite, &Options::default(), &|_, _, _| {}).await;
    assert_eq!(dead.requests().len(), 2, "the open breaker sent nothing");
    assert_eq!(
        report.results.len(),
        3,
        "an open breaker is an outage to the early stop"
    );
    assert!(
        report
            .results
            .iter()
            .all(|c| c.error_code.as_deref() == Some("CIRCUIT_OPEN"))
    );
    assert!(report.stopped.is_some());
    r.store().close().await;
}

#[tokio::test]
async fn a_database_without_the_breaker_table_runs_as_before() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (dead, _alive) = dead_and_alive(&tdb).await;
    exec(&tdb.db(), "DROP TABLE ai_connection_breaker").await;
    let r = runner(&tdb.settings(&[("AI_MAX_RETRIES", "0"), ("AI_BREAKER_FAILURES", "1")]));
    let ctx = RunContext::new(Trigger::Library);
    for _ in 0..3 {
        let res = r.run_once("dead", &Variables::new(), &ctx).await;
        assert_eq!(res.error.unwrap().code, "HTTP_5XX_SERVER_ERROR");
    }
    assert_eq!(dead.requests().len(), 3);
    r.store().close().await;
}

/// A run with a deadline 10 s away (`--timeout 10`).
fn ten_seconds_left() -> RunContext {
    RunContext {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(10)),
        ..RunContext::new(Trigger::Library)
    }
}

/// A member asking for `Retry-After: 30`, and a backup that answers.
async fn slow_to_come_back(tdb: &TestDb) -> (ProviderServer, ProviderServer) {
    let later = Reply::Json {
        status: 429,
        body: json!({"error": {"message": "come back later"}}),
        headers: vec![("retry-after".into(), "30".into())],
    };
    first_and_backup(tdb, ("p", "r"), ("limited", "backup"), later).await
}

#[tokio::test]
async fn a_retry_after_longer_than_the_deadline_hands_over_at_once() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (limited, _backup) = slow_to_come_back(&tdb).await;
    let r = runner(&tdb.settings(&[]));
    let ctx = ten_seconds_left();
    let res = r.run_route("p", "r", &Variables::new(), &ctx).await;
    assert!(res.result.is_ok(), "{:?}", res.result.error);
    assert_eq!(res.answered_by.as_deref(), Some("backup"));
    assert_eq!(
        res.member_attempts[0].error.as_ref().unwrap().code,
        "HTTP_429_RATE_LIMIT"
    );
    assert_eq!(limited.requests().len(), 1, "not retried");
    r.store().close().await;
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_hands_over_without_sleeping_the_cap() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (limited, _backup) = slow_to_come_back(&tdb).await;
    let r = runner(&tdb.settings(&[]));
    let res = r
        .run_route(
            "p",
            "r",
            &Variables::new(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    assert_eq!(res.answered_by.as_deref(), Some("backup"));
    assert_eq!(
        limited.requests().len(),
        1,
        "handed over instead of retrying"
    );
    r.store().close().await;
}

#[tokio::test]
async fn a_config_run_alone_does_not_sleep_past_its_deadline() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (limited, _backup) = slow_to_come_back(&tdb).await;
    let r = runner(&tdb.settings(&[]));
    let ctx = ten_seconds_left();
    let res = r.run_once("limited", &Variables::new(), &ctx).await;
    assert_eq!(res.error.unwrap().code, "DEADLINE_EXCEEDED");
    assert_eq!(limited.requests().len(), 1);
    r.store().close().await;
}
