//! Circuit breakers on fakes: runners that share only the store (as processes share a database)
//! send exactly one probe when a breaker half-opens, and the upload pipeline skips a member whose
//! breaker is open, through the same runner.

use ai_runner::media::{self, Outcome};
use ai_runner::model::breaker::BreakerRow;
use ai_runner::model::media::ObjectRef;
use ai_runner::model::now_ms;
use ai_runner::objects::LocalStore;
use ai_runner::ports::ObjectStore;
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::fake::{self, Answer, MemoryStore, ScriptedProvider, connection_id, url};
use serde_json::json;

/// Config `key`'s breaker, stored open (`open_until_ms` in the future) or past its cooldown.
fn opened(key: &str, open_until_ms: i64) -> BreakerRow {
    BreakerRow {
        failures: 5,
        window_start_ms: now_ms() - 1_000,
        opened: 1,
        open_until_ms: Some(open_until_ms),
        ..BreakerRow::new(connection_id(key))
    }
}

#[tokio::test]
async fn of_many_runners_sharing_a_store_exactly_one_sends_the_half_open_probe() {
    let store = MemoryStore::new();
    // Held: the probe stays out while every other call decides.
    let provider = ScriptedProvider::held();
    store.add_config(fake::config("a"));
    provider.script(&url("a"), [Answer::content("回来了")]);
    store.put_breaker(opened("a", 1));
    let settings = fake::settings(&[("AI_MAX_RETRIES", "0")]);
    let runners: Vec<_> = (0..4)
        .map(|_| fake::runner(&store, &provider, &settings))
        .collect();
    let ctx = RunContext::new(Trigger::Library);
    let vars = Variables::new();
    let runs = runners
        .iter()
        .flat_map(|r| (0..3).map(|_| r.run_once("a", &vars, &ctx)));
    let all = futures_util::future::join_all(runs);
    let release = async {
        tokio::task::yield_now().await;
        provider.release();
    };
    let (results, ()) = tokio::join!(all, release);
    let codes: Vec<_> = results
        .iter()
        .map(|r| r.error.as_ref().map_or("ok", |e| e.code.as_str()))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == "ok").count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == "CIRCUIT_OPEN").count(),
        11,
        "{codes:?}"
    );
    assert_eq!(provider.sent_to(&url("a")).len(), 1, "exactly one probe");
    assert!(
        store.breaker(connection_id("a")).unwrap().is_clean(),
        "the probe closed it"
    );
}

#[tokio::test]
async fn the_upload_pipeline_skips_a_member_whose_breaker_is_open() {
    const BUCKET: &str = "uploads";
    const KEY: &str = "calls/x.wav";
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    store.add_config(fake::config("dead"));
    store.add_config(fake::config("alive"));
    provider.script(&url("dead"), [Answer::error(503, "down", 1)]);
    provider.script(&url("alive"), [Answer::content("转写")]);
    store.add_route(
        "proj",
        "r",
        "primary_backup",
        None,
        &[("dead", 1, 1), ("alive", 2, 1)],
    );
    store.add_mapping(
        BUCKET,
        "calls/",
        ".wav",
        "proj",
        "r",
        Some(&json!({"MEDIA_MODE": "inline"})),
    );
    store.put_breaker(opened("dead", now_ms() + 600_000));
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalStore::new(dir.path());
    objects
        .put(BUCKET, KEY, b"RIFF....WAVEfmt ".to_vec(), "audio/wav")
        .await
        .unwrap();
    let settings = fake::settings(&[]);
    let runner = fake::runner(&store, &provider, &settings);
    let object = ObjectRef {
        bucket: BUCKET.into(),
        key: KEY.into(),
        size: None,
        etag: None,
        version_id: Some("v1".into()),
    };
    let report = media::process(
        &runner,
        &objects,
        &settings.objects,
        &object,
        &RunContext::new(Trigger::Oss),
        false,
    )
    .await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { .. }),
        "{report:?}"
    );
    assert!(
        provider.sent_to(&url("dead")).is_empty(),
        "no request to the open member"
    );
    assert_eq!(provider.sent_to(&url("alive")).len(), 1);
    let rows = store.audit_rows();
    let skipped = rows.iter().find(|r| r.config_key == "dead").unwrap();
    assert_eq!(skipped.error_code.as_deref(), Some("CIRCUIT_OPEN"));
    assert_eq!(skipped.handover_reason.as_deref(), Some("CIRCUIT_OPEN"));
}
