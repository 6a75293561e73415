//! Upload leases on fakes, through the pipeline (`media::process`): an object version runs once
//! however often it is delivered; a delivery that finds the job held by another is told to come
//! back and calls nothing; a job whose lease ran out is taken over, and the holder it was taken
//! from can no longer finish it.

use ai_runner::media::{self, Outcome};
use ai_runner::model::media::{Claim, JobFinish, JobKey, ObjectRef};
use ai_runner::model::now_ms;
use ai_runner::objects::LocalStore;
use ai_runner::ports::{JobStore, ObjectStore};
use ai_runner::run::Runner;
use ai_runner::{RunContext, Settings};
use ai_runner_tests::fake::{self, Answer, MemoryStore, ScriptedProvider, url};
use serde_json::json;

const BUCKET: &str = "uploads";
const KEY: &str = "calls/x.wav";

struct Pipeline {
    store: MemoryStore,
    provider: ScriptedProvider,
    runner: Runner<MemoryStore, ScriptedProvider>,
    settings: Settings,
    objects: LocalStore,
    _dir: tempfile::TempDir,
}

/// A mapping of `calls/*.wav` to route `proj/r` (one member, answering), inline media, and
/// the uploaded object.
async fn pipeline() -> Pipeline {
    let store = MemoryStore::new();
    let provider = ScriptedProvider::new();
    store.add_config(fake::config("a"));
    provider.script(&url("a"), [Answer::content("转写")]);
    store.add_route("proj", "r", "primary_backup", None, &[("a", 1, 1)]);
    store.add_mapping(
        BUCKET,
        "calls/",
        ".wav",
        "proj",
        "r",
        Some(&json!({"MEDIA_MODE": "inline"})),
    );
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalStore::new(dir.path());
    objects
        .put(BUCKET, KEY, b"RIFF....WAVEfmt ".to_vec(), "audio/wav")
        .await
        .unwrap();
    let settings = fake::settings(&[]);
    Pipeline {
        runner: fake::runner(&store, &provider, &settings),
        store,
        provider,
        settings,
        objects,
        _dir: dir,
    }
}

fn object() -> ObjectRef {
    ObjectRef {
        bucket: BUCKET.into(),
        key: KEY.into(),
        size: None,
        etag: None,
        version_id: Some("v1".into()),
    }
}

fn job() -> JobKey {
    JobKey::new(BUCKET, KEY, "v1")
}

impl Pipeline {
    async fn deliver(&self) -> media::Report {
        media::process(
            &self.runner,
            &self.objects,
            &self.settings.objects,
            &object(),
            &RunContext::new(ai_runner::Trigger::Oss),
            false,
        )
        .await
    }
}

#[tokio::test]
async fn an_object_version_delivered_twice_runs_once() {
    let p = pipeline().await;
    let first = p.deliver().await;
    let Outcome::Succeeded { job_id, .. } = first.outcome else {
        panic!("{first:?}");
    };
    let again = p.deliver().await;
    assert_eq!(
        again.outcome,
        Outcome::Duplicate {
            job_id,
            status: ai_runner::model::media::JobStatus::Succeeded
        }
    );
    assert!(!again.needs_retry());
    assert_eq!(p.provider.sent().len(), 1, "the provider was called once");
    let row = p.store.job(&job()).unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("succeeded", 1));
}

#[tokio::test]
async fn a_delivery_while_another_holds_the_job_calls_nothing_and_asks_to_come_back() {
    let p = pipeline().await;
    let Claim::New(id) = p
        .store
        .claim_job(&job(), "proj", "r", now_ms(), 60_000)
        .await
        .unwrap()
    else {
        panic!("the other delivery claims first");
    };
    let report = p.deliver().await;
    assert_eq!(report.outcome, Outcome::InProgress { job_id: id });
    assert!(report.needs_retry(), "the platform redelivers it later");
    assert!(p.provider.sent().is_empty());
    assert_eq!(p.store.job(&job()).unwrap().attempts, 1);
}

#[tokio::test]
async fn a_job_whose_lease_ran_out_is_taken_over_and_its_old_holder_is_fenced_out() {
    let p = pipeline().await;
    // Another delivery claimed the job a minute ago for ten seconds, then vanished.
    let Claim::New(id) = p
        .store
        .claim_job(&job(), "proj", "r", now_ms() - 60_000, 10_000)
        .await
        .unwrap()
    else {
        panic!("the vanished delivery claims first");
    };
    let report = p.deliver().await;
    assert!(
        matches!(report.outcome, Outcome::Succeeded { job_id, .. } if job_id == id),
        "{report:?}"
    );
    assert_eq!(p.provider.sent().len(), 1);
    let late = JobFinish {
        status: ai_runner::model::media::JobStatus::Failed,
        attempt: 1,
        error_code: Some("NETWORK_ERROR".into()),
        ..JobFinish::default()
    };
    assert!(
        !p.store.finish_job(id, &late).await.unwrap(),
        "the first holder's late finish is refused"
    );
    let row = p.store.job(&job()).unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("succeeded", 2));
    assert_eq!(row.error_code, None);
}
