//! The configuration snapshot on fakes: a warm call makes no configuration query; this process's
//! writes are seen at once, another instance's within `AI_CONFIG_CHECK_MS`, a raw SQL edit within
//! `AI_CONFIG_CACHE_MS`; through an outage a held config keeps answering for
//! `AI_CONFIG_STALE_MAX_S`, an unknown one fails closed, and "not found" is never remembered.

use std::time::Duration;

use ai_runner::{RunContext, RunResult, Trigger, Variables};
use ai_runner_tests::fake::{self, Answer, MemoryStore, ScriptedProvider, url};

fn world() -> (MemoryStore, ScriptedProvider) {
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    store.add_config(fake::config("a"));
    provider.script(&url("a"), [Answer::content("好的")]);
    (store, provider)
}

fn with_model(key: &str, model: &str) -> ai_runner::model::ResolvedConfig {
    let mut cfg = fake::config(key);
    cfg.model = model.to_owned();
    cfg
}

async fn run(runner: &ai_runner::Runner<MemoryStore, ScriptedProvider>, key: &str) -> RunResult {
    runner
        .run_once(key, &Variables::new(), &RunContext::new(Trigger::Library))
        .await
}

fn code(r: &RunResult) -> Option<&str> {
    r.error.as_ref().map(|e| e.code.as_str())
}

#[tokio::test]
async fn a_warm_call_with_a_fresh_snapshot_makes_no_configuration_query() {
    let (store, provider) = world();
    let runner = fake::runner(&store, &provider, &fake::settings(&[]));
    for _ in 0..5 {
        assert!(run(&runner, "a").await.is_ok());
    }
    assert_eq!(store.resolves(), 1, "one query, then the snapshot");
    assert_eq!(provider.sent().len(), 5);
    assert_eq!(store.audit_rows().len(), 5, "every call still audited");
}

#[tokio::test]
async fn a_cache_of_zero_queries_on_every_call_as_before() {
    let (store, provider) = world();
    let runner = fake::runner(
        &store,
        &provider,
        &fake::settings(&[("AI_CONFIG_CACHE_MS", "0")]),
    );
    for _ in 0..3 {
        assert!(run(&runner, "a").await.is_ok());
    }
    assert_eq!(store.resolves(), 3);
}

#[tokio::test]
async fn this_processs_own_catalog_write_is_seen_by_the_next_call() {
    let (store, provider) = world();
    let settings = fake::settings(&[
        ("AI_CONFIG_CACHE_MS", "600000"),
        ("AI_CONFIG_CHECK_MS", "600000"),
    ]);
    let runner = fake::runner(&store, &provider, &settings);
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-a")
    );
    store.add_config(with_model("a", "model-a2"));
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-a2")
    );
}

#[tokio::test]
async fn another_instances_write_is_seen_once_the_check_interval_has_passed() {
    let (store, provider) = world();
    let settings = fake::settings(&[
        ("AI_CONFIG_CACHE_MS", "600000"),
        ("AI_CONFIG_CHECK_MS", "50"),
    ]);
    let runner = fake::runner(&store, &provider, &settings);
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-a")
    );
    store.write_elsewhere(with_model("a", "model-b"));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-b")
    );
    // A deactivated config stops being served within the same bound.
    store.remove_elsewhere("a");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(code(&run(&runner, "a").await), Some("CONFIG_NOT_FOUND"));
}

#[tokio::test]
async fn a_raw_sql_edit_is_seen_once_the_entry_has_aged_past_the_cache() {
    let (store, provider) = world();
    let settings = fake::settings(&[
        ("AI_CONFIG_CACHE_MS", "60"),
        ("AI_CONFIG_CHECK_MS", "600000"),
    ]);
    let runner = fake::runner(&store, &provider, &settings);
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-a")
    );
    store.edit_behind(with_model("a", "model-sql"));
    tokio::time::sleep(Duration::from_millis(90)).await;
    assert_eq!(
        run(&runner, "a").await.meta.model.as_deref(),
        Some("model-sql")
    );
    assert_eq!(store.resolves(), 2);
}

#[tokio::test]
async fn through_an_outage_a_held_config_keeps_answering_and_an_unknown_one_fails_closed() {
    let (store, provider) = world();
    // Entries age out at once, so every call goes to the store and meets the outage.
    let settings = fake::settings(&[("AI_CONFIG_CACHE_MS", "1"), ("AI_CONFIG_CHECK_MS", "1")]);
    let runner = fake::runner(&store, &provider, &settings);
    assert!(run(&runner, "a").await.is_ok());
    store.set_down(true);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let during = run(&runner, "a").await;
    assert!(during.is_ok(), "{:?}", during.error);
    assert_eq!(
        provider.sent().len(),
        2,
        "the provider was called during the outage"
    );
    assert!(
        during.audit_id.is_none() && during.audit_error.is_some(),
        "its audit row did not reach the database (no spool here): {:?}",
        during.audit_error
    );
    assert_eq!(code(&run(&runner, "b").await), Some("DB_UNAVAILABLE"));
    store.set_down(false);
    assert!(run(&runner, "a").await.is_ok());
}

#[tokio::test]
async fn past_the_stale_bound_an_outage_fails_as_without_a_snapshot() {
    let (store, provider) = world();
    let settings = fake::settings(&[("AI_CONFIG_CACHE_MS", "1"), ("AI_CONFIG_STALE_MAX_S", "0")]);
    let runner = fake::runner(&store, &provider, &settings);
    assert!(run(&runner, "a").await.is_ok());
    store.set_down(true);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(code(&run(&runner, "a").await), Some("DB_UNAVAILABLE"));
    assert_eq!(
        provider.sent().len(),
        1,
        "no provider call without a config"
    );
}

#[tokio::test]
async fn a_config_not_found_is_not_remembered() {
    let (store, provider) = world();
    let runner = fake::runner(&store, &provider, &fake::settings(&[]));
    assert_eq!(code(&run(&runner, "late").await), Some("CONFIG_NOT_FOUND"));
    // Added behind the counters' backs: only a query can see it.
    store.edit_behind(fake::config("late"));
    provider.script(&url("late"), [Answer::content("到了")]);
    assert!(run(&runner, "late").await.is_ok());
}
