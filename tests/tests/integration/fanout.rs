//! Evaluation runs fanned out through a queue: chunks queued, delivered reordered, duplicated
//! and concurrently, finalized exactly once with the right totals and reports written as
//! objects; a finalizer that died is taken over; provider failures across parallel chunks stop
//! the run once. The fan-out runs over an in-process queue (the test delivers what was sent, as
//! SQS's event source would), so plain `cargo test` covers it on SQLite; the same run through a
//! real SQS-protocol server (moto's) and a queue that refuses need moto_server and are
//! `#[ignore]`d (`bash .ci/run` installs it and runs them).

use std::sync::Mutex;

use ai_runner::Code;
use ai_runner::eval::fanout::{self, Chunk, Queued, ReportSink};
use ai_runner::eval::run::{EvalError, Options, Start};
use ai_runner::ports::{BoxFuture, EvalStore, ObjectPin, ObjectStore, Queue, QueueError};
use ai_runner::provider::HttpProvider;
use ai_runner::store::Db;
use ai_runner_tests::{Backend, S3Server, SqsServer, TestDb, runner};
use serde_json::Value;

use super::eval::providers;

/// An in-process queue: keeps every message it is sent until the test takes them, numbered in
/// the order they came.
#[derive(Debug, Default)]
struct MemoryQueue(Mutex<Vec<String>>);

impl Queue for MemoryQueue {
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), QueueError>> {
        self.0.lock().unwrap().extend(bodies.iter().cloned());
        Box::pin(async { Ok(()) })
    }
}

/// Where a run's chunks travel.
enum Transport {
    /// moto's SQS server and the URL of a queue on it.
    Sqs(SqsServer, String),
    /// The in-process queue.
    Memory(MemoryQueue),
}

impl Transport {
    async fn sqs() -> Self {
        let sqs = SqsServer::start().await;
        let url = sqs.create_queue("ai-runner-eval").await;
        Transport::Sqs(sqs, url)
    }

    fn memory() -> Self {
        Transport::Memory(MemoryQueue::default())
    }

    /// Starts a queued run of `suite`, its chunks sent through this transport.
    async fn start(
        &self,
        r: &ai_runner::Runner<Db, HttpProvider>,
        suite: &str,
        opts: &Options,
        how: &Start,
        chunk_size: usize,
    ) -> Result<Queued, EvalError> {
        match self {
            Transport::Sqs(sqs, url) => {
                fanout::start_queued(r, suite, opts, how, &sqs.queue(url), chunk_size).await
            }
            Transport::Memory(q) => fanout::start_queued(r, suite, opts, how, q, chunk_size).await,
        }
    }

    /// Takes every message now queued: (message id, body).
    async fn drain(&self) -> Vec<(String, String)> {
        match self {
            Transport::Sqs(sqs, url) => sqs.drain(url).await,
            Transport::Memory(q) => std::mem::take(&mut *q.0.lock().unwrap())
                .into_iter()
                .enumerate()
                .map(|(i, body)| (format!("m-{i}"), body))
                .collect(),
        }
    }
}

fn chunk_of(body: &str) -> Chunk {
    serde_json::from_str(body).unwrap()
}

async fn fan_out(backend: Backend, transport: Transport) {
    let tdb = TestDb::new(backend).await.unwrap();
    let servers = providers(&tdb).await;
    ai_runner_tests::apply_moods_suite(&tdb.db()).await;
    let s3 = S3Server::start(&["reports"]).await;
    let objects = s3.store();
    let sink = ReportSink {
        store: &objects,
        bucket: "reports",
        prefix: "ai-runner/eval-reports/",
    };
    let r = runner(&tdb.settings(&[]));
    let how = Start {
        trigger: ai_runner::Trigger::Schedule,
        baseline: None,
    };
    let queued = transport
        .start(&r, "moods", &Options::default(), &how, 2)
        .await
        .unwrap();
    assert_eq!((queued.total, queued.chunks), (6, 3));
    let mut messages = transport.drain().await;
    assert_eq!(messages.len(), 3, "one message per chunk, on the queue");
    messages.sort_by_key(|(_, b)| chunk_of(b).start);
    assert_eq!(
        messages
            .iter()
            .map(|(_, b)| chunk_of(b))
            .collect::<Vec<_>>(),
        [0, 2, 4].map(|start| Chunk {
            eval_run: queued.run_id.clone(),
            start,
            end: start + 2
        })
    );
    let calls = || servers.iter().map(|s| s.requests().len()).sum::<usize>();

    // Delivered out of order, the first one twice, the last two at the same time.
    let mut finalized = 0;
    for (_, body) in [&messages[1], &messages[1]] {
        let w = fanout::work(&r, &chunk_of(body), Some(sink)).await.unwrap();
        finalized += usize::from(w.finalized);
    }
    assert_eq!(calls(), 2, "the duplicate called nothing");
    let (last, first) = (chunk_of(&messages[2].1), chunk_of(&messages[0].1));
    let (a, b) = tokio::join!(
        fanout::work(&r, &last, Some(sink)),
        fanout::work(&r, &first, Some(sink)),
    );
    for w in [a, b] {
        match w {
            Ok(w) => finalized += usize::from(w.finalized),
            // The other worker held the finalization: this message would be redelivered.
            Err(e) => assert_eq!(e.code(), Code::QueueUnavailable, "{e}"),
        }
    }
    // Redeliveries of everything after the run finished change nothing.
    for (_, body) in &messages {
        let w = fanout::work(&r, &chunk_of(body), Some(sink)).await.unwrap();
        finalized += usize::from(w.finalized);
        assert!(w.skipped || w.called == 0);
    }
    assert_eq!(finalized, 1, "finalized exactly once");
    assert_eq!(calls(), 6, "each planned call made once");

    let db = r.store();
    let run = db.eval_run(&queued.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, "finished");
    assert_eq!(run.trigger, "schedule");
    let summary = run.summary.unwrap();
    assert_eq!(
        summary
            .iter()
            .map(|t| (t.target.as_str(), t.results, t.passed))
            .collect::<Vec<_>>(),
        [("good", 3, 2), ("bad", 3, 1)]
    );
    assert_eq!(db.count_results(&queued.run_id).await.unwrap(), 6);
    let location = run.report_location.unwrap();
    let prefix = format!("ai-runner/eval-reports/moods/{}/", queued.run_id);
    assert_eq!(location, format!("reports/{prefix}"));
    let json: Value = serde_json::from_slice(
        &objects
            .get("reports", &format!("{prefix}report.json"), ObjectPin::NONE)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["targets"][0]["passed"], 2);
    assert_eq!(json["results"].as_array().unwrap().len(), 6);
    let html = objects
        .get("reports", &format!("{prefix}report.html"), ObjectPin::NONE)
        .await
        .unwrap();
    assert!(String::from_utf8(html).unwrap().contains(&queued.run_id));
    r.store().close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_queued_run_finishes_exactly_once_through_reordered_and_duplicated_chunks_on_sqlite() {
    fan_out(Backend::Sqlite, Transport::memory()).await;
}

#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
#[tokio::test]
async fn a_queued_run_finishes_exactly_once_through_reordered_and_duplicated_chunks_over_sqs_on_sqlite()
 {
    fan_out(Backend::Sqlite, Transport::sqs().await).await;
}

#[ignore = "needs moto_server and MariaDB (bash .ci/run sets them up and runs ignored tests)"]
#[tokio::test]
async fn a_queued_run_finishes_exactly_once_through_reordered_and_duplicated_chunks_on_mariadb() {
    fan_out(Backend::MariaDb, Transport::sqs().await).await;
}

#[tokio::test]
async fn a_finalizer_that_died_is_taken_over() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _servers = providers(&tdb).await;
    ai_runner_tests::apply_moods_suite(&tdb.db()).await;
    let queue = Transport::memory();
    let r = runner(&tdb.settings(&[]));
    let how = Start {
        trigger: ai_runner::Trigger::Api,
        baseline: None,
    };
    let queued = queue
        .start(&r, "moods", &Options::default(), &how, 6)
        .await
        .unwrap();
    let messages = queue.drain().await;
    assert_eq!(messages.len(), 1);
    let chunk = chunk_of(&messages[0].1);
    let db = r.store();

    // Another worker claimed the finalization just now: this delivery must come back later.
    let now = ai_runner::model::now_ms();
    assert!(
        db.claim_finalize(&queued.run_id, "other", now, now - 1)
            .await
            .unwrap()
    );
    let busy = fanout::work(&r, &chunk, None).await.unwrap_err();
    assert!(busy.to_string().contains("being finalized"), "{busy}");
    assert_eq!(busy.code(), Code::QueueUnavailable);
    assert_eq!(
        db.count_results(&queued.run_id).await.unwrap(),
        0,
        "a finalizing run calls nothing"
    );

    let stale = now - fanout::FINALIZE_LEASE_MS;
    assert!(
        !db.claim_finalize(&queued.run_id, "third", now, stale)
            .await
            .unwrap(),
        "a fresh claim holds"
    );

    // A second run whose finalizer claimed it long ago and died: a redelivery takes over and
    // finalizes it with what is stored.
    let queued = queue
        .start(&r, "moods", &Options::default(), &how, 6)
        .await
        .unwrap();
    let chunk = chunk_of(&queue.drain().await[0].1);
    let past = now - fanout::FINALIZE_LEASE_MS - 10;
    assert!(
        db.claim_finalize(&queued.run_id, "other", past, past - 1)
            .await
            .unwrap()
    );
    let w = fanout::work(&r, &chunk, None).await.unwrap();
    assert!(w.finalized);
    let run = db.eval_run(&queued.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, "finished");
    // The dead finalizer's late write is fenced out.
    let report = ai_runner::eval::run::Report {
        run_id: queued.run_id.clone(),
        suite: "moods".into(),
        total_ms: 0,
        targets: Vec::new(),
        gate: ai_runner::model::eval::GateOutcome {
            passed: true,
            failures: Vec::new(),
        },
        results: Vec::new(),
        stopped: None,
    };
    assert!(
        !db.finish_run(&queued.run_id, &report, None, Some("other"))
            .await
            .unwrap()
    );
    assert_eq!(
        db.eval_run(&queued.run_id).await.unwrap().unwrap().summary,
        run.summary
    );
    assert_eq!(db.eval_runs(None, 10).await.unwrap().len(), 2);
    r.store().close().await;
}

#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
#[tokio::test]
async fn a_refusing_queue_fails_the_run_with_a_retryable_code() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _servers = providers(&tdb).await;
    ai_runner_tests::apply_moods_suite(&tdb.db()).await;
    let sqs = SqsServer::start().await;
    let url = sqs.create_queue("ai-runner-eval").await;
    let r = runner(&tdb.settings(&[]));
    let db = r.store();
    let how = Start {
        trigger: ai_runner::Trigger::Api,
        baseline: None,
    };
    // A queue that does not exist refuses: a clear, retryable code, and the run is marked failed.
    let missing = sqs.queue(&format!("{}/123456789012/no-such-queue", sqs.endpoint));
    let e = fanout::start_queued(&r, "moods", &Options::default(), &how, &missing, 6)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::QueueUnavailable);
    let runs = db.eval_runs(Some("moods"), 10).await.unwrap();
    assert_eq!(runs[0].status, "failed");
    assert!(
        runs[0]
            .stop_reason
            .as_deref()
            .unwrap_or("")
            .contains("queue")
    );
    // An unknown suite is bad input, and nothing is created.
    let unknown = fanout::start_queued(&r, "nope", &Options::default(), &how, &sqs.queue(&url), 6)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::SuiteInvalid);
    assert_eq!(db.eval_runs(None, 10).await.unwrap().len(), 1);
    r.store().close().await;
}

#[tokio::test]
async fn provider_failures_across_parallel_chunks_stop_a_queued_run_once() {
    use ai_runner::demo::{ProviderServer, Reply};
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let down = ProviderServer::start(vec![Reply::error(503, "down")])
        .await
        .unwrap();
    let db = tdb.db();
    ai_runner_tests::seed_sentiment_config(&db, "good", &down).await;
    ai_runner_tests::seed_sentiment_config(&db, "bad", &down).await;
    ai_runner_tests::apply_moods_suite(&db).await;
    let queue = Transport::memory();
    let r = runner(&tdb.settings(&[("AI_MAX_RETRIES", "0")]));
    let opts = Options {
        stop_after_failures: Some(3),
        ..Options::default()
    };
    let how = Start {
        trigger: ai_runner::Trigger::Schedule,
        baseline: None,
    };
    let queued = queue.start(&r, "moods", &opts, &how, 2).await.unwrap();
    let messages = queue.drain().await;
    assert_eq!(messages.len(), 3);
    // Two chunks at once: neither alone reaches 3 failures; together (summed in SQL) they do.
    let (a, b) = (chunk_of(&messages[0].1), chunk_of(&messages[1].1));
    let (x, y) = tokio::join!(fanout::work(&r, &a, None), fanout::work(&r, &b, None));
    let finalized = [x, y]
        .into_iter()
        .filter(|w| w.as_ref().is_ok_and(|w| w.finalized))
        .count();
    let third = fanout::work(&r, &chunk_of(&messages[2].1), None).await;
    let finalized = finalized + usize::from(third.as_ref().is_ok_and(|w| w.finalized));
    assert_eq!(finalized, 1, "{third:?}");
    assert!(
        third.unwrap().called == 0,
        "nothing is called once the run stops"
    );
    assert_eq!(down.requests().len(), 4);
    let run = r.store().eval_run(&queued.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, "stopped");
    assert!(
        run.stop_reason
            .as_deref()
            .unwrap_or("")
            .contains("consecutive provider failures"),
        "{run:?}"
    );
    assert_eq!(run.gate.map(|g| g.passed), Some(false));
    r.store().close().await;
}
