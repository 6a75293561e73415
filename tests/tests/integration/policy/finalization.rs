//! Fan-out finalization on fakes: a run queued in chunks, its chunks delivered twice and all at
//! once, is finalized by exactly one worker; the others are told to come back (the queue
//! redelivers them) and find it finished; a queue that refuses the chunks fails the run.

use ai_runner::Code;
use ai_runner::eval::fanout::{self, Chunk};
use ai_runner::eval::run::{Options, Start};
use ai_runner::ports::EvalStore;
use ai_runner::run::Runner;
use ai_runner_tests::fake::{self, Answer, MemoryQueue, MemoryStore, ScriptedProvider, url};
use serde_json::json;

/// Suite `moods` (3 cases over `good` and `bad`: 6 results, `good` passes 2, `bad` 1), as the
/// evaluation catalog's document holds it.
fn moods() -> (MemoryStore, ScriptedProvider) {
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    for (key, mood) in [("good", "积极"), ("bad", "消极")] {
        store.add_config(fake::json_config(key));
        provider.script(
            &url(key),
            [Answer::content(&json!({"情绪": mood}).to_string())],
        );
    }
    store.add_suite(
        "moods",
        json!({
            "datasets": [{"name": "moods", "cases": [
                {"key": "happy", "vars": {"TEXT": "太好了"}, "expected": {"情绪": "积极"}},
                {"key": "sad", "vars": {"TEXT": "真糟糕"}, "expected": {"情绪": "消极"}},
                {"key": "fine", "vars": {"TEXT": "开心"}, "expected": {"情绪": "积极"}}
            ]}],
            "suites": [{"name": "moods", "dataset": "moods",
                        "targets": [{"config": "good"}, {"config": "bad"}],
                        "assert": [{"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}"}]}]
        }),
    );
    (store, provider)
}

fn start() -> Start {
    Start {
        trigger: ai_runner::Trigger::Schedule,
        baseline: None,
    }
}

/// Works `chunk` until it is acknowledged (an `Err` is a redelivery, as the queue would make);
/// returns whether this delivery finalized the run.
async fn deliver(r: &Runner<MemoryStore, ScriptedProvider>, chunk: &Chunk) -> bool {
    for _ in 0..10 {
        match fanout::work(r, chunk, None).await {
            Ok(w) => return w.finalized,
            Err(e) => assert_eq!(e.code(), Code::QueueUnavailable, "{e}"),
        }
        tokio::task::yield_now().await;
    }
    panic!("chunk {chunk:?} was never acknowledged");
}

#[tokio::test]
async fn chunks_delivered_twice_and_all_at_once_are_finalized_by_exactly_one_worker() {
    let (store, provider) = moods();
    let r = fake::runner(&store, &provider, &fake::settings(&[]));
    let queue = MemoryQueue::new();
    let queued = fanout::start_queued(&r, "moods", &Options::default(), &start(), &queue, 2)
        .await
        .unwrap();
    assert_eq!((queued.total, queued.chunks), (6, 3));
    let chunks: Vec<Chunk> = queue
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m).unwrap())
        .collect();
    assert_eq!(
        chunks.iter().map(|c| (c.start, c.end)).collect::<Vec<_>>(),
        [(0, 2), (2, 4), (4, 6)]
    );

    // One chunk twice in a row: the duplicate calls nothing.
    assert!(!deliver(&r, &chunks[1]).await);
    assert!(!deliver(&r, &chunks[1]).await);
    assert_eq!(provider.sent().len(), 2);

    // Everything again, twice, at the same time: several workers see the run complete.
    let all = chunks.iter().chain(&chunks).map(|c| deliver(&r, c));
    let finalized = futures_util::future::join_all(all).await;
    assert_eq!(
        finalized.iter().filter(|f| **f).count(),
        1,
        "finalized exactly once: {finalized:?}"
    );
    // Redeliveries after the end change nothing.
    for c in &chunks {
        let w = fanout::work(&r, c, None).await.unwrap();
        assert!(w.skipped && !w.finalized && w.called == 0, "{w:?}");
    }

    let run = store.eval_run(&queued.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, "finished");
    assert_eq!(store.count_results(&queued.run_id).await.unwrap(), 6);
    assert_eq!(
        run.summary
            .unwrap()
            .iter()
            .map(|t| (t.target.as_str(), t.results, t.passed))
            .collect::<Vec<_>>(),
        [("good", 3, 2), ("bad", 3, 1)],
        "each planned result counted once"
    );
    let audited: std::collections::BTreeSet<String> = store
        .audit_rows()
        .iter()
        .filter_map(|row| row.request_id.clone())
        .collect();
    assert_eq!(
        audited,
        [format!("eval:{}", queued.run_id)].into(),
        "every call is an audited call of the run"
    );
}

#[tokio::test]
async fn a_queue_that_refuses_the_chunks_fails_the_run_it_started() {
    let (store, provider) = moods();
    let r = fake::runner(&store, &provider, &fake::settings(&[]));
    let e = fanout::start_queued(
        &r,
        "moods",
        &Options::default(),
        &start(),
        &MemoryQueue::refusing(),
        2,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::QueueUnavailable);
    let runs = store.eval_runs(Some("moods"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed", "never mistaken for a running run");
    assert!(provider.sent().is_empty());
}
