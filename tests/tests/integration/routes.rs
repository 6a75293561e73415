//! Routes end to end on SQLite and MariaDB: failover, round-robin across independent runners that
//! share only the database, weights, dry runs and route-level overrides, against OpenAI-protocol
//! servers on loopback ports.

use std::collections::HashMap;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::run::RouteResult;
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::{
    Backend, RouteSpec, Seed, TestDb, apply, runner, seed, seed_route, set_member_active,
};
use serde_json::{Value, json};

/// Starts one provider per member and seeds a config for each (`a`, `b`, ...).
async fn members(tdb: &TestDb, scripts: Vec<Vec<Reply>>, json_output: bool) -> Vec<ProviderServer> {
    let mut servers = Vec::new();
    for (i, script) in scripts.into_iter().enumerate() {
        let server = ProviderServer::start(script).await.unwrap();
        let url = server.url();
        let key = ["a", "b", "c", "d"][i];
        let mut s = Seed::text(key, &url);
        if json_output {
            s.response_format = Some(json!({"type": "json_object"}));
        }
        seed(&tdb.db(), &s).await;
        servers.push(server);
    }
    servers
}

fn primary_backup() -> RouteSpec<'static> {
    RouteSpec {
        policy: "primary_backup",
        ..Default::default()
    }
}

async fn run(tdb: &TestDb, env: &[(&str, &str)], project: &str, route: &str) -> RouteResult {
    let r = runner(&tdb.settings(env));
    let res = r
        .run_route(
            project,
            route,
            &Variables::new(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    r.store().close().await;
    res
}

async fn rows(tdb: &TestDb, res: &RouteResult) -> Vec<serde_json::Map<String, Value>> {
    tdb.db()
        .audit_rows_for_trace(&res.result.trace_id)
        .await
        .unwrap()
}

async fn a_rate_limited_primary_hands_over_to_the_backup(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let s = members(
        &tdb,
        vec![
            vec![Reply::error(429, "slow down")],
            vec![Reply::content("备用回答")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "r",
        &primary_backup(),
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[], "proj", "r").await;
    assert!(res.result.is_ok(), "{:?}", res.result.error);
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(res.result.content.as_deref(), Some("备用回答"));
    assert_eq!(
        s[0].requests().len(),
        3,
        "the primary used its own retries first"
    );
    assert_eq!(res.member_attempts.len(), 2);
    assert_eq!(
        res.member_attempts[0].error.as_ref().unwrap().code,
        "HTTP_429_RATE_LIMIT"
    );
    assert!(res.member_attempts[0].handed_over);
    let rows = rows(&tdb, &res).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 2);
    assert_eq!(rows[0]["config_key"], "a");
    assert_eq!(rows[0]["error_code"], "HTTP_429_RATE_LIMIT");
    assert_eq!(rows[0]["http_status"], 429);
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["route_attempt"], 1);
    assert_eq!(rows[0]["handover_reason"], "HTTP_429_RATE_LIMIT");
    assert_eq!(rows[1]["config_key"], "b");
    assert_eq!(rows[1]["error_code"], Value::Null);
    assert_eq!(rows[1]["route_attempt"], 2);
    assert_eq!(rows[1]["handover_reason"], Value::Null);
    for row in &rows {
        assert_eq!(row["route_key"], "r");
        assert_eq!(row["route_policy"], "primary_backup");
        assert_eq!(row["project_name"], "proj");
    }
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_rate_limited_primary_hands_over_to_the_backup_on_sqlite() {
    a_rate_limited_primary_hands_over_to_the_backup(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_rate_limited_primary_hands_over_to_the_backup_on_mariadb() {
    a_rate_limited_primary_hands_over_to_the_backup(Backend::MariaDb).await;
}

#[tokio::test]
async fn a_member_that_keeps_failing_validation_hands_over() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let s = members(
        &tdb,
        vec![
            vec![Reply::content(r#"{"回答": "english"}"#)],
            vec![Reply::content(r#"{"回答": "中文"}"#)],
        ],
        true,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "r",
        &primary_backup(),
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[("AI_CONTENT_RETRIES", "1")], "proj", "r").await;
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(res.result.parsed, Some(json!({"回答": "中文"})));
    assert_eq!(
        s[0].requests().len(),
        2,
        "content retries happen before handing over"
    );
    assert_eq!(
        rows(&tdb, &res).await[0]["handover_reason"],
        "LETTER_DETECTED"
    );
}

#[tokio::test]
async fn a_non_retryable_error_stops_the_route_unless_configured_otherwise() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let s = members(
        &tdb,
        vec![
            vec![Reply::error(400, "bad request")],
            vec![Reply::content("备用")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "r",
        &primary_backup(),
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[], "proj", "r").await;
    assert_eq!(res.result.error.as_ref().unwrap().code, "HTTP_STATUS_ERROR");
    assert_eq!(res.answered_by, None);
    assert_eq!(s[1].requests().len(), 0, "the backup is not called");
    let r = rows(&tdb, &res).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["handover_reason"], Value::Null);

    let opted_in = RouteSpec {
        policy: "primary_backup",
        policy_config: Some(json!({"failover_on_non_retryable": true})),
        ..Default::default()
    };
    seed_route(
        &tdb.db(),
        "proj",
        "r",
        &opted_in,
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[], "proj", "r").await;
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(
        rows(&tdb, &res).await[0]["handover_reason"],
        "HTTP_STATUS_ERROR"
    );
}

async fn when_every_member_fails_the_last_code_wins_and_every_row_is_kept(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let _s = members(
        &tdb,
        vec![
            vec![Reply::error(503, "down")],
            vec![Reply::error(429, "limited")],
            vec![Reply::error(500, "broken")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "r",
        &primary_backup(),
        &[("c", 3, 1), ("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[("AI_MAX_RETRIES", "0")], "proj", "r").await;
    assert_eq!(
        res.result.error.as_ref().unwrap().code,
        "HTTP_5XX_SERVER_ERROR"
    );
    assert_eq!(res.result.http_status, 500);
    let keys: Vec<_> = res
        .member_attempts
        .iter()
        .map(|a| a.config_key.as_str())
        .collect();
    assert_eq!(keys, ["a", "b", "c"], "priority order, not insertion order");
    let codes: Vec<_> = res
        .member_attempts
        .iter()
        .map(|a| a.error.as_ref().unwrap().code.clone())
        .collect();
    assert_eq!(
        codes,
        [
            "HTTP_5XX_SERVER_ERROR",
            "HTTP_429_RATE_LIMIT",
            "HTTP_5XX_SERVER_ERROR"
        ]
    );
    let r = rows(&tdb, &res).await;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["handover_reason"], "HTTP_5XX_SERVER_ERROR");
    assert_eq!(r[1]["handover_reason"], "HTTP_429_RATE_LIMIT");
    assert_eq!(
        r[2]["handover_reason"],
        Value::Null,
        "nothing came after the last member"
    );
    assert_eq!(r[2]["error_code"], "HTTP_5XX_SERVER_ERROR");
    tdb.cleanup().await;
}

#[tokio::test]
async fn when_every_member_fails_the_last_code_wins_and_every_row_is_kept_on_sqlite() {
    when_every_member_fails_the_last_code_wins_and_every_row_is_kept(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn when_every_member_fails_the_last_code_wins_and_every_row_is_kept_on_mariadb() {
    when_every_member_fails_the_last_code_wins_and_every_row_is_kept(Backend::MariaDb).await;
}

async fn round_robin_is_fair_across_runners_sharing_only_the_database(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let _s = members(
        &tdb,
        vec![
            vec![Reply::content("甲")],
            vec![Reply::content("乙")],
            vec![Reply::content("丙")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "rr",
        &RouteSpec {
            policy: "round_robin",
            ..Default::default()
        },
        &[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)],
    )
    .await;
    let settings = tdb.settings(&[]);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let settings = settings.clone();
        // Each task is its own "instance": its own runner, pool and HTTP client.
        tasks.push(tokio::spawn(async move {
            let r = runner(&settings);
            let res = r
                .run_route(
                    "proj",
                    "rr",
                    &Variables::new(),
                    &RunContext::new(Trigger::Library),
                )
                .await;
            r.store().close().await;
            res.answered_by
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        *counts
            .entry(t.await.unwrap().expect("answered"))
            .or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&10), "{counts:?}");
    tdb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_is_fair_across_runners_sharing_only_the_database_on_sqlite() {
    round_robin_is_fair_across_runners_sharing_only_the_database(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_is_fair_across_runners_sharing_only_the_database_on_mariadb() {
    round_robin_is_fair_across_runners_sharing_only_the_database(Backend::MariaDb).await;
}

#[tokio::test]
async fn round_robin_still_rotates_failover_after_the_chosen_member() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _s = members(
        &tdb,
        vec![vec![Reply::error(503, "down")], vec![Reply::content("乙")]],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "rr",
        &RouteSpec {
            policy: "round_robin",
            ..Default::default()
        },
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    for _ in 0..4 {
        let res = run(&tdb, &[("AI_MAX_RETRIES", "0")], "proj", "rr").await;
        assert_eq!(
            res.answered_by.as_deref(),
            Some("b"),
            "a fails over to b whichever starts"
        );
    }
    assert_eq!(
        _s[0].requests().len(),
        2,
        "the rotation chose a first on every other run"
    );
    assert_eq!(_s[1].requests().len(), 4);
}

#[tokio::test]
async fn weighted_routes_follow_weights_with_a_fixed_seed() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _s = members(
        &tdb,
        vec![
            vec![Reply::content("甲")],
            vec![Reply::content("乙")],
            vec![Reply::content("丙")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "w",
        &RouteSpec {
            policy: "weighted",
            ..Default::default()
        },
        &[("a", 1, 1), ("b", 2, 3), ("c", 3, 0)],
    )
    .await;
    let r = runner(&tdb.settings(&[])).with_seed(7);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let n = 200;
    for _ in 0..n {
        let res = r
            .run_route(
                "proj",
                "w",
                &Variables::new(),
                &RunContext::new(Trigger::Library),
            )
            .await;
        *counts.entry(res.answered_by.unwrap()).or_default() += 1;
    }
    assert_eq!(
        counts.get("c"),
        None,
        "weight 0 is never chosen first: {counts:?}"
    );
    let b = *counts.get("b").unwrap() as f64 / n as f64;
    // Expected 0.75; 4 sigma of a binomial(200, 0.75) is about 0.12.
    assert!((b - 0.75).abs() < 0.12, "{counts:?}");
}

#[tokio::test]
async fn a_weight_zero_member_is_still_a_fallback() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _s = members(
        &tdb,
        vec![
            vec![Reply::error(503, "down")],
            vec![Reply::content("兜底")],
        ],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "w",
        &RouteSpec {
            policy: "weighted",
            ..Default::default()
        },
        &[("a", 1, 5), ("b", 2, 0)],
    )
    .await;
    let res = run(&tdb, &[("AI_MAX_RETRIES", "0")], "proj", "w").await;
    assert_eq!(res.answered_by.as_deref(), Some("b"));
}

async fn a_dry_run_builds_the_exact_request_and_writes_nothing(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let s = members(
        &tdb,
        vec![vec![Reply::content("甲")], vec![Reply::content("乙")]],
        false,
    )
    .await;
    let route_id = seed_route(
        &tdb.db(),
        "proj",
        "rr",
        &RouteSpec {
            policy: "round_robin",
            ..Default::default()
        },
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let _ = route_id;
    let r = runner(&tdb.settings(&[]));
    // Advance the cursor once so the dry run has something to predict.
    let first = r
        .run_route(
            "proj",
            "rr",
            &Variables::new(),
            &RunContext::new(Trigger::Library),
        )
        .await;
    assert_eq!(first.answered_by.as_deref(), Some("a"));
    let db = tdb.db();
    let before = (
        db.count("ai_call_logs").await.unwrap(),
        db.count("ai_route_cursor_v2").await.unwrap(),
    );
    let calls_before = s[0].requests().len() + s[1].requests().len();
    let vars = serde_json::json!({"TOPIC": "星空"})
        .as_object()
        .cloned()
        .unwrap();
    let dry = r.dry_run("proj", "rr", &vars).await.unwrap();
    assert_eq!(dry.order, ["b", "a"]);
    assert_eq!(dry.request.config_key, "b");
    assert_eq!(dry.request.url, s[1].url());
    assert_eq!(dry.request.headers["Authorization"], "Bearer ***-000");
    assert_eq!(dry.request.body["messages"][0]["content"], "说一句话：星空");
    assert_eq!(dry.request.body["model"], "model-b");
    let after = (
        db.count("ai_call_logs").await.unwrap(),
        db.count("ai_route_cursor_v2").await.unwrap(),
    );
    assert_eq!(before, after, "a dry run writes nothing");
    assert_eq!(
        s[0].requests().len() + s[1].requests().len(),
        calls_before,
        "a dry run calls nothing"
    );
    let next = r
        .run_route("proj", "rr", &vars, &RunContext::new(Trigger::Library))
        .await;
    assert_eq!(
        next.answered_by.as_deref(),
        Some("b"),
        "the dry run predicted the next member"
    );
    assert_eq!(
        s[1].requests().last().unwrap().body,
        Value::Object(dry.request.body.clone()),
        "the dry run's body is what is sent"
    );
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_dry_run_builds_the_exact_request_and_writes_nothing_on_sqlite() {
    a_dry_run_builds_the_exact_request_and_writes_nothing(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_dry_run_builds_the_exact_request_and_writes_nothing_on_mariadb() {
    a_dry_run_builds_the_exact_request_and_writes_nothing(Backend::MariaDb).await;
}

#[tokio::test]
async fn unknown_routes_and_routes_without_active_members_fail_with_their_codes() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _s = members(&tdb, vec![vec![Reply::content("甲")]], false).await;
    let db = tdb.db();
    seed_route(&db, "proj", "r", &primary_backup(), &[("a", 1, 1)]).await;
    let res = run(&tdb, &[], "proj", "missing").await;
    assert_eq!(res.result.error.as_ref().unwrap().code, "ROUTE_NOT_FOUND");
    let res = run(&tdb, &[], "other-project", "r").await;
    assert_eq!(res.result.error.as_ref().unwrap().code, "ROUTE_NOT_FOUND");
    set_member_active(&db, "proj", "r", "a", false).await;
    let res = run(&tdb, &[], "proj", "r").await;
    assert_eq!(res.result.error.as_ref().unwrap().code, "NO_ACTIVE_MEMBERS");
    assert_eq!(
        db.count("ai_call_logs").await.unwrap(),
        0,
        "nothing resolved, nothing audited"
    );
}

#[tokio::test]
async fn route_level_prompt_params_format_and_variables_override_the_members() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let s = members(&tdb, vec![vec![Reply::content(r#"{"结果": "好"}"#)]], false).await;
    let db = tdb.db();
    apply(
        &db,
        json!({
            "prompts": [{"name": "route-prompt", "version": "v2",
                         "messages": [{"role": "user", "content": "路由：{{TOPIC}} {{ROUTE_ONLY}}"}],
                         "response_format": {"type": "json_object"},
                         "variables": {"TOPIC": "提示词变量"}}],
            "param_profiles": [{"name": "route-params", "params": {"MAX_TOKENS": 7}}]
        }),
    )
    .await;
    let route = RouteSpec {
        policy: "primary_backup",
        variables: Some(json!({"TOPIC": "路由变量", "ROUTE_ONLY": "是"})),
        prompt: Some("route-prompt@v2"),
        param_profile: Some("route-params"),
        response_format: Some(
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": ["结果"]}}}),
        ),
        ..Default::default()
    };
    seed_route(&db, "proj", "r", &route, &[("a", 1, 1)]).await;
    let res = run(&tdb, &[], "proj", "r").await;
    assert!(res.result.is_ok(), "{:?}", res.result.error);
    let sent = &s[0].requests()[0].body;
    assert_eq!(sent["messages"][0]["content"], "路由：路由变量 是");
    assert_eq!(sent["max_tokens"], 7);
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(res.result.parsed, Some(json!({"结果": "好"})));
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn routes_run_on_the_predecessor_schema_without_the_cursor_table() {
    let tdb = TestDb::new(Backend::MariaDbUnmigrated).await.unwrap();
    let _s = members(
        &tdb,
        vec![vec![Reply::content("甲")], vec![Reply::content("乙")]],
        false,
    )
    .await;
    seed_route(
        &tdb.db(),
        "proj",
        "rr",
        &RouteSpec {
            policy: "round_robin",
            ..Default::default()
        },
        &[("a", 1, 1), ("b", 2, 1)],
    )
    .await;
    let res = run(&tdb, &[], "proj", "rr").await;
    assert!(res.result.is_ok(), "{:?}", res.result.error);
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 1);
    tdb.cleanup().await;
}
