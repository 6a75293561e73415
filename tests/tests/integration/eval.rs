//! Evaluations end to end on SQLite and MariaDB: a suite with known outcomes against scripted
//! OpenAI-protocol servers, exact pass / fail / score numbers, flaky repetitions, gates, every
//! call audited with trigger `eval`, and the checks that stop a run before any call.

use ai_runner::Code;
use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::eval::run::{self, Options};
use ai_runner::eval::suite::{Target, read_suite};
use ai_runner::eval::{assert::Verdict, report};
use ai_runner_tests::{
    Backend, RouteSpec, Seed, TestDb, runner, seed, seed_good_and_bad, seed_route,
    seed_sentiment_config,
};
use serde_json::{Value, json};

/// Three configs whose answers are known: always positive, always negative, and positive once
/// then negative (flaky).
pub(crate) async fn providers(tdb: &TestDb) -> Vec<ProviderServer> {
    let db = tdb.db();
    let (positive, negative) = seed_good_and_bad(&db).await;
    let flaky = ProviderServer::start(vec![
        Reply::content(r#"{"情绪": "积极"}"#),
        Reply::content(r#"{"情绪": "消极"}"#),
    ])
    .await
    .unwrap();
    seed_sentiment_config(&db, "flaky", &flaky).await;
    seed_route(
        &db,
        "eval",
        "sentiment",
        &RouteSpec::default(),
        &[("bad", 1, 1), ("good", 2, 1)],
    )
    .await;
    db.close().await;
    vec![positive, negative, flaky]
}

fn suite_doc() -> Value {
    json!({
        "datasets": [{"name": "moods", "cases": [
            {"key": "happy", "vars": {"TEXT": "太好了"}, "expected": {"情绪": "积极"}, "tags": ["smoke"]},
            {"key": "sad", "vars": {"TEXT": "真糟糕"}, "expected": {"情绪": "消极"}},
            {"key": "happy-strict", "vars": {"TEXT": "开心"}, "expected": {"情绪": "积极"},
             "assert": [{"type": "contains", "value": "积极", "metric": "keyword"},
                        {"type": "latency", "threshold": 60000, "weight": 0}]}
        ]}],
        "suites": [{"name": "moods", "dataset": "moods",
                    "targets": [{"config": "good"}, {"config": "bad"}],
                    "assert": [{"type": "is-json"},
                               {"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}", "metric": "sentiment"}],
                    "concurrency": 4,
                    "gates": {"min_pass_rate": 0.5}}]
    })
}

async fn known_outcomes(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let _servers = providers(&tdb).await;
    let (suite, findings) = read_suite(&suite_doc(), "moods", std::path::Path::new("."));
    assert!(findings.is_empty(), "{findings:?}");
    let suite = suite.unwrap();
    let r = runner(&tdb.settings(&[]));
    assert!(
        run::preflight(&r, &suite, &Options::default())
            .await
            .is_empty()
    );
    let report = run::run(&r, &suite, &Options::default(), &|_, _, _| {}).await;

    assert_eq!(report.results.len(), 6);
    let good = &report.targets[0];
    assert_eq!(good.target, "good");
    assert_eq!((good.passed, good.failed, good.errors), (2, 1, 0));
    assert!((good.pass_rate - 2.0 / 3.0).abs() < 1e-9);
    // happy 1.0, sad 0.5 (is-json passes, json-path fails), happy-strict 1.0.
    assert!(
        (good.mean_score - 2.5 / 3.0).abs() < 1e-9,
        "{}",
        good.mean_score
    );
    assert!((good.metrics["sentiment"] - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(good.metrics["keyword"], 1.0);
    let bad = &report.targets[1];
    assert_eq!((bad.passed, bad.failed), (1, 2));
    assert!(
        (bad.mean_score - (0.5 + 1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-9,
        "{}",
        bad.mean_score
    );
    assert!(!report.gate.passed, "bad is below 0.5: {:?}", report.gate);
    assert_eq!(report.gate.failures.len(), 1);
    let strict_bad = report
        .results
        .iter()
        .find(|c| c.target == "bad" && c.case_key == "happy-strict")
        .unwrap();
    assert_eq!(
        strict_bad
            .assertions
            .iter()
            .map(|g| g.verdict)
            .collect::<Vec<_>>(),
        [Verdict::Pass, Verdict::Fail, Verdict::Fail, Verdict::Pass]
    );

    // Every call is an ordinary audited call, labelled as the evaluation's.
    let db = tdb.db();
    assert_eq!(db.count("ai_call_logs").await.unwrap(), 6);
    for c in &report.results {
        assert_eq!(c.audit_ids.len(), 1);
        let row = db.audit_row(c.audit_ids[0]).await.unwrap().unwrap();
        assert_eq!(row["trigger_source"], "eval");
        assert_eq!(row["request_id"], format!("eval:{}", report.run_id));
    }

    // The reports carry the same numbers.
    let json: Value = serde_json::from_str(&report::json(&report)).unwrap();
    assert_eq!(json["targets"][0]["passed"], 2);
    let xml = report::junit(&report);
    assert!(
        xml.contains("<testsuite name=\"bad\" tests=\"3\" failures=\"2\" errors=\"0\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 6);
    assert_eq!(xml.matches("<failure ").count(), 3);
    db.close().await;
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_suite_with_known_outcomes_scores_exactly_on_sqlite() {
    known_outcomes(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn a_suite_with_known_outcomes_scores_exactly_on_mariadb() {
    known_outcomes(Backend::MariaDb).await;
}

#[tokio::test]
async fn repetitions_mark_a_case_flaky_and_routes_are_targets_too() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _servers = providers(&tdb).await;
    let mut doc = suite_doc();
    doc["suites"][0]["targets"] = json!([{"config": "flaky"}, {"route": "eval/sentiment"}]);
    let suite = read_suite(&doc, "moods", std::path::Path::new("."))
        .0
        .unwrap();
    let opts = Options {
        repeat: Some(2),
        concurrency: Some(1),
        tags: vec!["smoke".into()],
        ..Options::default()
    };
    let r = runner(&tdb.settings(&[]));
    let report = run::run(&r, &suite, &opts, &|_, _, _| {}).await;
    assert_eq!(
        report.results.len(),
        4,
        "one case (tag smoke) x 2 targets x 2"
    );
    let flaky = &report.targets[0];
    assert_eq!((flaky.passed, flaky.failed), (1, 1));
    assert_eq!(flaky.flaky, ["happy"]);
    // The route's first member answers negative: the route as a whole still answers, so the case
    // fails on its content, and each route call leaves one audit row.
    let route = &report.targets[1];
    assert_eq!(route.target, "eval/sentiment");
    assert_eq!((route.passed, route.failed, route.errors), (0, 2, 0));
    assert!(report.results[2..].iter().all(|c| c.audit_ids.len() == 1));
}

#[tokio::test]
async fn a_missing_target_or_an_open_placeholder_stops_the_run_before_any_call() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let servers = providers(&tdb).await;
    let mut doc = suite_doc();
    doc["suites"][0]["targets"] =
        json!([{"config": "good"}, {"config": "no-such-config"}, {"route": "eval/none"}]);
    doc["datasets"][0]["cases"][1]["vars"] = json!({});
    let suite = read_suite(&doc, "moods", std::path::Path::new("."))
        .0
        .unwrap();
    let r = runner(&tdb.settings(&[]));
    let problems = run::preflight(&r, &suite, &Options::default()).await;
    let found: Vec<(String, Code)> = problems.iter().map(|f| (f.path.clone(), f.code)).collect();
    assert!(
        found.contains(&("target no-such-config".into(), Code::UnknownReference)),
        "{found:?}"
    );
    assert!(
        found.contains(&("target eval/none".into(), Code::UnknownReference)),
        "{found:?}"
    );
    assert!(
        found.contains(&("case sad".into(), Code::UnfilledPlaceholder)),
        "{found:?}"
    );
    assert!(
        servers.iter().all(|s| s.requests().is_empty()),
        "nothing was called"
    );
    assert_eq!(tdb.db().count("ai_call_logs").await.unwrap(), 0);
    let only_good = Options {
        targets: vec![Target::parse("config:good").unwrap()],
        ..Options::default()
    };
    let still = run::preflight(&r, &suite, &only_good).await;
    assert_eq!(still.len(), 1, "the open placeholder remains: {still:?}");
}

async fn stored_runs_resume_without_redoing_finished_cases(backend: Backend) {
    use ai_runner::eval::run::{Start, resume, start};
    use ai_runner::model::eval::EvalRun;
    use ai_runner::ports::EvalStore;
    let tdb = TestDb::new(backend).await.unwrap();
    let servers = providers(&tdb).await;
    let suite = read_suite(&suite_doc(), "moods", std::path::Path::new("."))
        .0
        .unwrap();
    let r = runner(&tdb.settings(&[]));
    let how = Start {
        trigger: ai_runner::Trigger::Cli,
        baseline: None,
    };
    let first = start(&r, &suite, &Options::default(), &how, &|_, _, _| {})
        .await
        .unwrap();
    let db = r.store();
    let stored = db.eval_run(&first.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, "finished");
    assert_eq!(stored.total, 6);
    assert_eq!(stored.config_hash.as_deref().map(str::len), Some(64));
    assert_eq!(stored.gate.as_ref().map(|g| g.passed), Some(false));
    let by_job = |mut v: Vec<ai_runner::model::eval::CaseResult>| {
        v.sort_by(|a, b| {
            (&a.target, &a.case_key, a.repeat).cmp(&(&b.target, &b.case_key, b.repeat))
        });
        v
    };
    assert_eq!(
        by_job(db.eval_results(&first.run_id).await.unwrap()),
        by_job(first.results.clone()),
        "every result stored as it was reported"
    );
    let calls = |s: &[ProviderServer]| s.iter().map(|x| x.requests().len()).sum::<usize>();
    assert_eq!(calls(&servers), 6);

    // A run that died after two results: resuming calls only the other four, once each.
    let interrupted = EvalRun {
        run_key: "interrupted01".into(),
        status: ai_runner::model::eval::EvalStatus::Running,
        baseline: None,
        summary: None,
        gate: None,
        finished_ms: None,
        ..stored.clone()
    };
    db.create_run(&interrupted).await.unwrap();
    for done in &first.results[..2] {
        db.record_result("interrupted01", done).await.unwrap();
        db.record_result("interrupted01", done).await.unwrap();
    }
    let resumed = resume(&r, "interrupted01", &|_, _, _| {}).await.unwrap();
    assert_eq!(calls(&servers), 10, "4 more calls, not 6");
    assert_eq!(resumed.results.len(), 6);
    assert_eq!(
        resumed.results[..2],
        first.results[..2],
        "finished cases kept as they were"
    );
    let again = db.eval_results("interrupted01").await.unwrap();
    assert_eq!(
        again.len(),
        6,
        "each (target, case, repetition) stored once"
    );
    assert_eq!(
        db.eval_run("interrupted01").await.unwrap().unwrap().status,
        "finished"
    );
    let missing = resume(&r, "no-such-run", &|_, _, _| {}).await.unwrap_err();
    assert_eq!(missing.code(), Code::UnknownReference);

    // A baseline gate: the same suite again, no regression allowed.
    let opts = Options {
        max_regression: Some(0.0),
        ..Options::default()
    };
    let how = Start {
        trigger: ai_runner::Trigger::Cli,
        baseline: Some("last".into()),
    };
    let third = start(&r, &suite, &opts, &how, &|_, _, _| {}).await.unwrap();
    assert!(
        !third.gate.failures.iter().any(|f| f.contains("fell")),
        "same answers, no regression: {:?}",
        third.gate
    );
    assert_eq!(
        db.eval_runs(Some("moods"), 10).await.unwrap().len(),
        3,
        "every run is listed"
    );
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn stored_runs_resume_without_redoing_finished_cases_on_sqlite() {
    stored_runs_resume_without_redoing_finished_cases(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn stored_runs_resume_without_redoing_finished_cases_on_mariadb() {
    stored_runs_resume_without_redoing_finished_cases(Backend::MariaDb).await;
}

/// A judge config on a scripted server, and a suite whose assertions it grades.
async fn judged(judge_reply: &str) -> (TestDb, Vec<ProviderServer>, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let servers = providers(&tdb).await;
    let judge = ProviderServer::start(vec![Reply::content(judge_reply)])
        .await
        .unwrap();
    let url = judge.url();
    let mut s = Seed::text("judge", &url);
    s.messages = json!([{"role": "system", "content": "Grade the answer against each item. Answer JSON {\"results\": [{\"pass\", \"score\", \"reason\"}]}."},
                        {"role": "user", "content": "Answer: {{OUTPUT}}\nItems:\n{{RUBRIC}}\nCase: {{VARS}}"}]);
    s.variables = None;
    s.response_format = Some(json!({"type": "json_object"}));
    seed(&tdb.db(), &s).await;
    (tdb, servers, judge)
}

fn rubric_suite() -> Value {
    let mut doc = suite_doc();
    doc["suites"][0]["targets"] = json!([{"config": "good"}]);
    doc["suites"][0]["judge"] = json!("config:judge");
    doc["suites"][0]["assert"] = json!([
        {"type": "llm-rubric", "value": ["答案是 JSON", "情绪判断正确"], "metric": "rubric"},
        {"type": "is-json"}
    ]);
    doc["datasets"][0]["cases"] = json!([{"key": "happy", "vars": {"TEXT": "太好了"}}]);
    doc
}

#[tokio::test]
async fn an_llm_rubric_is_graded_by_one_audited_judge_call_per_case() {
    let (tdb, _servers, judge) = judged(
        r#"{"results": [{"pass": true, "score": 1, "reason": "格式正确"}, {"pass": false, "score": 0.25, "reason": "太绝对"}]}"#,
    )
    .await;
    // The judge's model and the target's are priced: every call of the case is costed, and
    // the `cost` assertion grades the target's call (12 x 1e-6 + 8 x 2e-6 = 2.8e-5 USD).
    use ai_runner::model::cost::Rate;
    let price =
        |model: &str| ai_runner_tests::price(model, &[(Rate::Input, 1e-6), (Rate::Output, 2e-6)]);
    tdb.db()
        .set_prices(&[price("model-judge"), price("model-good")], 0)
        .await
        .unwrap();
    let mut doc = rubric_suite();
    doc["suites"][0]["assert"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cost", "threshold": 0.00003}));
    let suite = read_suite(&doc, "moods", std::path::Path::new("."))
        .0
        .unwrap();
    let r = runner(&tdb.settings(&[]));
    assert!(
        run::preflight(&r, &suite, &Options::default())
            .await
            .is_empty()
    );
    let report = run::run(&r, &suite, &Options::default(), &|_, _, _| {}).await;
    let case = &report.results[0];
    assert_eq!(case.assertions[2].label, "cost");
    assert_eq!(
        case.assertions[2].verdict,
        Verdict::Pass,
        "{:?}",
        case.assertions[2]
    );
    let rubric = &case.assertions[0];
    assert_eq!(rubric.label, "llm-rubric");
    assert_eq!(rubric.verdict, Verdict::Fail, "one item not met");
    assert!((rubric.score - 0.625).abs() < 1e-9, "{}", rubric.score);
    assert!(rubric.reason.contains("太绝对"), "{}", rubric.reason);
    // (0.625 + 1 + 1) / 3, and the case fails: an assertion failed and there is no threshold.
    assert!((case.score - 0.875).abs() < 1e-9, "{}", case.score);
    assert!(!case.pass);
    assert_eq!(report.targets[0].metrics["rubric"], 0.625);

    // One judge call, given the answer and both items; audited like any call and linked.
    let sent = judge.requests();
    assert_eq!(sent.len(), 1);
    let prompt = sent[0].body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("1. 答案是 JSON\n2. 情绪判断正确"),
        "{prompt}"
    );
    assert!(
        prompt.contains("积极"),
        "the answer is in the prompt: {prompt}"
    );
    let judge_row = rubric.audit_id.expect("the verdict names its audit row");
    assert!(case.audit_ids.contains(&judge_row));
    let row = tdb.db().audit_row(judge_row).await.unwrap().unwrap();
    assert_eq!(row["config_key"], "judge");
    assert_eq!(row["trigger_source"], "eval");
    assert_eq!(
        row["cost_nano_usd"], 28_000,
        "the judge's call is priced too"
    );
    r.store().close().await;
}

#[tokio::test]
async fn a_judge_answer_that_does_not_validate_fails_the_rubric_instead_of_passing_it() {
    let (tdb, _servers, _judge) = judged(r#"{"results": [{"pass": true}]}"#).await;
    let suite = read_suite(&rubric_suite(), "moods", std::path::Path::new("."))
        .0
        .unwrap();
    let r = runner(&tdb.settings(&[]));
    let report = run::run(&r, &suite, &Options::default(), &|_, _, _| {}).await;
    let rubric = &report.results[0].assertions[0];
    assert_eq!(rubric.verdict, Verdict::Fail);
    assert_eq!(rubric.score, 0.0);
    assert!(
        rubric.reason.contains("1 verdict(s) for 2 rubric item(s)"),
        "{}",
        rubric.reason
    );
    // A rubric without a judge does not read.
    let mut doc = rubric_suite();
    doc["suites"][0].as_object_mut().unwrap().remove("judge");
    let (none, findings) = read_suite(&doc, "moods", std::path::Path::new("."));
    assert!(none.is_none());
    assert!(
        findings
            .iter()
            .any(|f| f.path == "suites[0].judge" && f.code == Code::MissingField),
        "{findings:?}"
    );
    r.store().close().await;
}

#[tokio::test]
async fn consecutive_provider_failures_stop_the_run_early_and_fail_its_gate() {
    use ai_runner::eval::run::{Start, start};
    use ai_runner::ports::EvalStore;
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let down = ProviderServer::start(vec![Reply::error(503, "overloaded")])
        .await
        .unwrap();
    let url = down.url();
    let mut s = Seed::text("down", &url);
    s.messages = json!([{"role": "user", "content": "{{TEXT}}"}]);
    s.variables = None;
    seed(&tdb.db(), &s).await;
    let cases: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("c{i:02}"), "vars": {"TEXT": "x"}}))
        .collect();
    let doc = json!({
        "datasets": [{"name": "d", "cases": cases}],
        "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "down"}],
                    "assert": [{"type": "contains", "value": "x"}], "concurrency": 1,
                    "stop_after_failures": 5}]
    });
    let suite = read_suite(&doc, "s", std::path::Path::new(".")).0.unwrap();
    let r = runner(&tdb.settings(&[("AI_MAX_RETRIES", "0")]));
    let how = Start {
        trigger: ai_runner::Trigger::Cli,
        baseline: None,
    };
    let report = start(&r, &suite, &Options::default(), &how, &|_, _, _| {})
        .await
        .unwrap();
    assert_eq!(report.results.len(), 5, "nothing called after the fifth");
    assert_eq!(down.requests().len(), 5);
    assert!(
        report
            .results
            .iter()
            .all(|c| c.error_code.as_deref() == Some("HTTP_5XX_SERVER_ERROR"))
    );
    let why = report.stopped.clone().unwrap();
    assert!(why.contains("5 consecutive provider failures"), "{why}");
    assert!(!report.gate.passed);
    let stored = r.store().eval_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, "stopped");
    assert_eq!(stored.stop_reason.as_deref(), Some(why.as_str()));

    // 0 turns the early stop off: every case is called.
    let opts = Options {
        stop_after_failures: Some(0),
        ..Options::default()
    };
    let all = run::run(&r, &suite, &opts, &|_, _, _| {}).await;
    assert_eq!(all.results.len(), 30);
    assert!(all.stopped.is_none());
    r.store().close().await;
}
