//! Route policy on fakes: members in priority order, the handover rules (retryable errors hand
//! over, non-retryable ones stop unless the route opts in, content failures hand over after the
//! content retries), `max_members`, round-robin shared by two runners on one store, weights,
//! and the deadline that keeps the next member from starting.

use std::time::{Duration, Instant};

use ai_runner::run::RouteResult;
use ai_runner::{RunContext, Variables};
use ai_runner_tests::fake::{self, Answer, MemoryStore, ScriptedProvider, url};
use serde_json::json;

/// A store with configs `keys` and a provider scripted per config.
fn world(keys: &[&str], scripts: Vec<Vec<Answer>>) -> (MemoryStore, ScriptedProvider) {
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    for (key, script) in keys.iter().zip(scripts) {
        store.add_config(fake::config(key));
        provider.script(&url(key), script);
    }
    (store, provider)
}

async fn run_with(
    store: &MemoryStore,
    provider: &ScriptedProvider,
    env: &[(&str, &str)],
    ctx: &RunContext,
) -> RouteResult {
    fake::runner(store, provider, &fake::settings(env))
        .run_route("proj", "r", &Variables::new(), ctx)
        .await
}

async fn run(store: &MemoryStore, provider: &ScriptedProvider) -> RouteResult {
    run_with(
        store,
        provider,
        &[],
        &RunContext::new(ai_runner::Trigger::Library),
    )
    .await
}

fn code(r: &RouteResult) -> Option<&str> {
    r.result.error.as_ref().map(|e| e.code.as_str())
}

fn tried(r: &RouteResult) -> Vec<&str> {
    r.member_attempts
        .iter()
        .map(|a| a.config_key.as_str())
        .collect()
}

#[tokio::test]
async fn a_rate_limited_primary_hands_over_to_the_backup_and_each_member_leaves_its_row() {
    let (store, provider) = world(
        &["a", "b"],
        vec![
            vec![Answer::error(429, "slow down", 3)],
            vec![Answer::content("备用回答")],
        ],
    );
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let res = run(&store, &provider).await;
    assert!(res.result.is_ok(), "{:?}", res.result.error);
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(res.result.content.as_deref(), Some("备用回答"));
    assert_eq!(tried(&res), ["a", "b"]);
    assert!(res.member_attempts[0].handed_over);
    assert!(!res.member_attempts[1].handed_over);
    assert_eq!(
        res.member_attempts[0]
            .error
            .as_ref()
            .map(|e| e.code.as_str()),
        Some("HTTP_429_RATE_LIMIT")
    );
    assert_eq!(
        res.result.attempts, 4,
        "the route counts every HTTP attempt"
    );
    let rows = store.audit_rows_for_trace(&res.result.trace_id);
    assert_eq!(rows.len(), 2);
    assert_eq!(store.audit_rows().len(), 2);
    assert_eq!(
        rows.iter()
            .map(|r| (
                r.config_key.as_str(),
                r.route_attempt,
                r.handover_reason.as_deref(),
                r.error_code.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            (
                "a",
                Some(1),
                Some("HTTP_429_RATE_LIMIT"),
                Some("HTTP_429_RATE_LIMIT")
            ),
            ("b", Some(2), None, None)
        ]
    );
    for row in &rows {
        assert_eq!(row.route_key.as_deref(), Some("r"));
        assert_eq!(row.route_policy.as_deref(), Some("primary_backup"));
        assert_eq!(row.project_name.as_deref(), Some("proj"));
    }
    let sent = provider.sent();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|s| s.api_key == fake::API_KEY && s.trace_id == res.result.trace_id),
        "each member gets its own decrypted key and the route's trace id"
    );
}

#[tokio::test]
async fn members_run_by_priority_then_by_their_order_of_creation() {
    let (store, provider) = world(
        &["a", "b", "c"],
        vec![
            vec![Answer::error(503, "down", 1)],
            vec![Answer::error(503, "down", 1)],
            vec![Answer::error(503, "down", 1)],
        ],
    );
    // Listed c, a, b: priority puts b first, then a and c (equal priority) in creation order.
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("c", 5, 1), ("a", 5, 1), ("b", 1, 1)],
    );
    let res = run(&store, &provider).await;
    assert_eq!(tried(&res), ["b", "c", "a"]);
    assert_eq!(code(&res), Some("HTTP_5XX_SERVER_ERROR"));
    assert_eq!(res.answered_by, None);
    assert!(
        !res.member_attempts[2].handed_over,
        "the last member hands over to no one"
    );
    let rows = store.audit_rows();
    assert_eq!(rows[2].handover_reason, None, "nothing followed the last");
}

#[tokio::test]
async fn a_non_retryable_error_stops_the_route_unless_the_route_opts_in() {
    let (store, provider) = world(
        &["a", "b"],
        vec![
            vec![Answer::error(400, "bad request", 1)],
            vec![Answer::content("备用")],
        ],
    );
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let res = run(&store, &provider).await;
    assert_eq!(code(&res), Some("HTTP_STATUS_ERROR"));
    assert_eq!(tried(&res), ["a"]);
    assert!(
        provider.sent_to(&url("b")).is_empty(),
        "the backup is not called"
    );
    assert_eq!(store.audit_rows()[0].handover_reason, None);

    store.add_route(
        "proj",
        "r",
        "primary_backup",
        Some(json!({"failover_on_non_retryable": true})),
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let res = run(&store, &provider).await;
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(
        store.audit_rows_for_trace(&res.result.trace_id)[0]
            .handover_reason
            .as_deref(),
        Some("HTTP_STATUS_ERROR")
    );
}

#[tokio::test]
async fn content_failures_hand_over_after_the_content_retries_unless_the_route_says_not_to() {
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    for key in ["a", "b"] {
        let mut cfg = fake::config(key);
        if let Some(p) = &mut cfg.prompt {
            p.response_format = Some(json!({"type": "json_object"}));
        }
        store.add_config(cfg);
    }
    provider.script(&url("a"), [Answer::content(r#"{"回答": "english"}"#)]);
    provider.script(&url("b"), [Answer::content(r#"{"回答": "中文"}"#)]);
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let env = [("AI_CONTENT_RETRIES", "1")];
    let ctx = RunContext::new(ai_runner::Trigger::Library);
    let res = run_with(&store, &provider, &env, &ctx).await;
    assert_eq!(res.answered_by.as_deref(), Some("b"));
    assert_eq!(res.result.parsed, Some(json!({"回答": "中文"})));
    assert_eq!(
        provider.sent_to(&url("a")).len(),
        2,
        "the content retry comes before the handover"
    );
    assert_eq!(
        store.audit_rows()[0].handover_reason.as_deref(),
        Some("LETTER_DETECTED")
    );

    store.add_route(
        "proj",
        "r",
        "primary_backup",
        Some(json!({"failover_on_content": false})),
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let before = provider.sent_to(&url("b")).len();
    let res = run_with(&store, &provider, &env, &ctx).await;
    assert_eq!(code(&res), Some("LETTER_DETECTED"));
    assert_eq!(tried(&res), ["a"]);
    assert_eq!(provider.sent_to(&url("b")).len(), before);
}

#[tokio::test]
async fn max_members_caps_how_many_members_one_run_tries() {
    let down = || vec![Answer::error(503, "down", 1)];
    let (store, provider) = world(&["a", "b", "c"], vec![down(), down(), down()]);
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        Some(json!({"max_members": 2})),
        &[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)],
    );
    let res = run(&store, &provider).await;
    assert_eq!(tried(&res), ["a", "b"]);
    assert!(provider.sent_to(&url("c")).is_empty());
    assert_eq!(store.audit_rows().len(), 2);
}

#[tokio::test]
async fn round_robin_rotates_the_first_member_across_runners_sharing_one_store() {
    let ok = |s: &str| vec![Answer::content(s)];
    let (store, provider) = world(&["a", "b", "c"], vec![ok("A"), ok("B"), ok("C")]);
    store.add_route(
        "proj",
        "r",
        "round_robin",
        None,
        &[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)],
    );
    let settings = fake::settings(&[]);
    // Two instances: their own runners (keyrings, caches), one store.
    let one = fake::runner(&store, &provider, &settings);
    let two = fake::runner(&store.clone(), &provider, &settings);
    let dry = one.dry_run("proj", "r", &Variables::new()).await.unwrap();
    assert_eq!(dry.order, ["a", "b", "c"], "a dry run shows the next order");
    let mut firsts = Vec::new();
    for n in 0..6 {
        let r = if n % 2 == 0 { &one } else { &two };
        let res = r
            .run_route(
                "proj",
                "r",
                &Variables::new(),
                &RunContext::new(ai_runner::Trigger::Library),
            )
            .await;
        firsts.push(res.answered_by.unwrap());
    }
    assert_eq!(firsts, ["a", "b", "c", "a", "b", "c"]);
    let again = two.dry_run("proj", "r", &Variables::new()).await.unwrap();
    assert_eq!(again.order, ["a", "b", "c"], "a dry run does not advance");
    assert_eq!(provider.sent().len(), 6, "dry runs call nothing");
    assert_eq!(store.audit_rows().len(), 6, "dry runs write nothing");
}

#[tokio::test]
async fn weights_choose_the_first_member_in_proportion_and_zero_never_goes_first() {
    let ok = |s: &str| vec![Answer::content(s)];
    let (store, provider) = world(&["a", "b", "c"], vec![ok("A"), ok("B"), ok("C")]);
    store.add_route(
        "proj",
        "r",
        "weighted",
        None,
        &[("a", 1, 1), ("b", 2, 3), ("c", 3, 0)],
    );
    let r = fake::runner(&store, &provider, &fake::settings(&[])).with_seed(7);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let res = r
            .run_route(
                "proj",
                "r",
                &Variables::new(),
                &RunContext::new(ai_runner::Trigger::Library),
            )
            .await;
        *counts.entry(res.answered_by.unwrap()).or_default() += 1;
    }
    assert_eq!(counts.get("c"), None, "weight 0 is never first: {counts:?}");
    let b = counts.get("b").copied().unwrap_or(0);
    assert!(
        (260..=340).contains(&b),
        "b holds 3 of 4 shares: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 400);
}

#[tokio::test]
async fn no_member_starts_that_the_deadline_would_cut_short() {
    let (store, provider) = world(
        &["a", "b"],
        vec![
            vec![Answer::error(503, "down", 1).after(Duration::from_millis(300))],
            vec![Answer::content("太晚了")],
        ],
    );
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("a", 1, 1), ("b", 2, 1)],
    );
    let ctx = RunContext {
        deadline: Some(Instant::now() + Duration::from_millis(700)),
        ..RunContext::new(ai_runner::Trigger::Library)
    };
    let res = run_with(&store, &provider, &[], &ctx).await;
    assert_eq!(code(&res), Some("DEADLINE_EXCEEDED"));
    assert!(
        res.result
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("HTTP_5XX_SERVER_ERROR")),
        "the failure it gave up after is named: {:?}",
        res.result.error
    );
    assert_eq!(tried(&res), ["a"]);
    assert!(!res.member_attempts[0].handed_over);
    assert!(provider.sent_to(&url("b")).is_empty(), "b never started");
    assert_eq!(store.audit_rows().len(), 1);

    // A deadline already too close for one attempt: nothing is sent, the row says why.
    let ctx = RunContext {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..RunContext::new(ai_runner::Trigger::Library)
    };
    let sent = provider.sent().len();
    let res = run_with(&store, &provider, &[], &ctx).await;
    assert_eq!(code(&res), Some("DEADLINE_EXCEEDED"));
    assert_eq!(provider.sent().len(), sent);
    assert_eq!(
        store.audit_rows()[1].error_code.as_deref(),
        Some("DEADLINE_EXCEEDED")
    );
}

#[tokio::test]
async fn an_unknown_route_or_one_without_members_writes_no_row_and_calls_nothing() {
    let (store, provider) = world(&["a"], vec![vec![Answer::content("x")]]);
    let res = run(&store, &provider).await;
    assert_eq!(code(&res), Some("ROUTE_NOT_FOUND"));
    store.add_route("proj", "r", "primary_backup", None, &[("gone", 1, 1)]);
    let res = run(&store, &provider).await;
    assert_eq!(code(&res), Some("NO_ACTIVE_MEMBERS"));
    assert!(res.member_attempts.is_empty());
    assert!(provider.sent().is_empty());
    assert!(store.audit_rows().is_empty());
}
