//! The built `oss-trigger` binary as a process: under a Lambda Runtime API with S3 fixtures, and
//! in Function Compute mode with the OSS trigger fixture, against a real S3-protocol server.

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::Path;
use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply, wav_tone};
use ai_runner::ports::{ObjectPin, ObjectStore};
use ai_runner_tests::lambda_api::{
    Outcome, RuntimeApi, free_port, lambda_env, spawn, wait_listening,
};
use ai_runner_tests::{
    Backend, RouteSpec, S3Server, Seed, TestDb, app_env, fixture_json, seed, seed_route,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_oss-trigger");

async fn setup() -> (TestDb, S3Server, ProviderServer) {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let s3 = S3Server::start(&["testbucket", "sourcebucket"]).await;
    let provider = ProviderServer::start(vec![Reply::MediaProbe])
        .await
        .unwrap();
    let db = tdb.db();
    seed(
        &db,
        &Seed {
            messages: json!([{"role": "user", "content": "转写 {{MEDIA_URL}}"}]),
            variables: None,
            ..Seed::text("audio", &provider.url())
        },
    )
    .await;
    seed_route(
        &db,
        "media",
        "transcribe",
        &RouteSpec {
            policy: "primary_backup",
            ..Default::default()
        },
        &[("audio", 1, 1)],
    )
    .await;
    db.add_mapping("*", "source/", "", "media", "transcribe", None)
        .await
        .unwrap();
    db.add_mapping("sourcebucket", "", ".wav", "media", "transcribe", None)
        .await
        .unwrap();
    db.close().await;
    (tdb, s3, provider)
}

fn env(tdb: &TestDb, s3: &S3Server) -> Vec<(String, String)> {
    let mut env = app_env(tdb);
    env.push(("OSS_RESULTS_PREFIX".into(), "results/".into()));
    env.extend(s3.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    env
}

#[tokio::test]
async fn the_binary_processes_s3_notifications_from_the_lambda_runtime_api() {
    let (tdb, s3, provider) = setup().await;
    s3.store()
        .put(
            "sourcebucket",
            "Happy Face.wav",
            wav_tone(100, 300.0),
            "audio/wav",
        )
        .await
        .unwrap();
    let api = RuntimeApi::start().await;
    let mut e = lambda_env(&api, "oss-trigger");
    e.extend(env(&tdb, &s3));
    let _p = spawn(Path::new(BIN), Path::new("/"), &e);
    assert!(api.wait_ready(Duration::from_secs(20)).await);

    let mut ev = fixture_json("aws/s3/s3-put-key-percent20-encoded.json");
    ev["Records"][0]["s3"]["object"]["key"] = json!("Happy%20Face.wav");
    ev["Records"][0]["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("versionId");
    let out = api.invoke(ev).await;
    let Outcome::Response(body) = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["objects"][0]["outcome"], "succeeded", "{body}");
    assert_eq!(body["objects"][0]["key"], "Happy Face.wav");
    assert_eq!(provider.requests().len(), 1);

    let test = api
        .invoke(fixture_json("aws/s3/s3-test-event-docs.json"))
        .await;
    assert_eq!(test, Outcome::Response(json!({"ignored": "s3:TestEvent"})));
    let bad = api.invoke(json!({"unexpected": true})).await;
    let Outcome::Error { body, .. } = bad else {
        panic!("{bad:?}")
    };
    assert_eq!(body["errorType"], "INVALID_INPUT");
}

#[tokio::test]
async fn in_function_compute_mode_the_oss_trigger_fixture_drives_the_pipeline() {
    let (tdb, s3, provider) = setup().await;
    s3.store()
        .put(
            "testbucket",
            "source/a.wav",
            wav_tone(100, 300.0),
            "audio/wav",
        )
        .await
        .unwrap();
    let port = free_port();
    let mut e = env(&tdb, &s3);
    e.push(("FC_SERVER_PORT".into(), port.to_string()));
    e.push(("FC_FUNCTION_NAME".into(), "oss-trigger".into()));
    let _p = spawn(Path::new(BIN), Path::new("/"), &e);
    assert!(wait_listening(port, Duration::from_secs(20)).await);
    let mut ev = fixture_json("alibaba-fc/oss-trigger-putobject-fc-docs.json");
    ev["events"][0]["oss"]["object"]["key"] = json!("source/a.wav");
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("content-type", "application/octet-stream")
        .header("x-fc-request-id", "fc-oss-1")
        .body(ev.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["objects"][0]["outcome"], "succeeded", "{body}");
    assert_eq!(provider.requests().len(), 1);
    let result = s3
        .store()
        .get(
            "testbucket",
            "results/source/a.wav.result.json",
            ObjectPin::NONE,
        )
        .await
        .unwrap();
    let result: Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["result"]["status"], "ok");

    // The fixture as published points at a PNG: mapped, but not audio.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/invoke"))
        .header("x-fc-control-path", "/invoke")
        .header("x-fc-request-id", "fc-test-invoke")
        .body(fixture_json("alibaba-fc/oss-trigger-putobject-fc-docs.json").to_string())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["objects"][0]["outcome"], "failed", "{body}");
    assert_eq!(body["objects"][0]["code"], "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn a_function_killed_between_claim_and_finish_is_taken_over_and_the_upload_done_once() {
    let (tdb, s3, provider) = setup().await;
    // The first call hangs (the process is killed during it); later calls answer.
    provider.set_script(vec![
        Reply::Delayed(Duration::from_secs(60), Box::new(Reply::MediaProbe)),
        Reply::MediaProbe,
    ]);
    s3.store()
        .put(
            "sourcebucket",
            "crash.wav",
            wav_tone(100, 300.0),
            "audio/wav",
        )
        .await
        .unwrap();
    let mut ev = fixture_json("aws/s3/s3-put-key-percent20-encoded.json");
    ev["Records"][0]["s3"]["object"]["key"] = json!("crash.wav");
    ev["Records"][0]["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("versionId");
    let start = |timeout_s: u64| {
        let (tdb, s3) = (&tdb, &s3);
        async move {
            let api = RuntimeApi::start().await;
            api.set_function_timeout(Duration::from_secs(timeout_s));
            let mut e = lambda_env(&api, "oss-trigger");
            e.extend(env(tdb, s3));
            e.push(("AI_DEADLINE_RESERVE_MS".into(), "500".into()));
            let p = spawn(Path::new(BIN), Path::new("/"), &e);
            assert!(api.wait_ready(Duration::from_secs(20)).await);
            (api, p)
        }
    };
    // Instance 1 claims the job, calls the provider, and dies mid-call.
    let (api1, mut p1) = start(4).await;
    let id = api1.push(ev.clone());
    for _ in 0..500 {
        if !provider.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(provider.requests().len(), 1);
    p1.child.kill().await.unwrap();
    drop(api1);
    let _ = id;
    let db = tdb.db();
    let jobs = db.list_jobs(10).await.unwrap();
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), ("running", 1));

    // The platform redelivers to instance 2: inside the dead run's lease the job is in progress,
    // so the delivery fails (to be redelivered), calling nothing.
    let (api2, _p2) = start(30).await;
    let early = api2.invoke(ev.clone()).await;
    let Outcome::Error { body, .. } = early else {
        panic!("{early:?}")
    };
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("in_progress"),
        "{body}"
    );
    assert_eq!(provider.requests().len(), 1);
    // After the lease (the dead invocation's deadline plus a margin), a redelivery takes over.
    let mut done = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Outcome::Response(body) = api2.invoke(ev.clone()).await {
            done = Some(body);
            break;
        }
    }
    let body = done.expect("taken over once the lease ran out");
    assert_eq!(body["objects"][0]["outcome"], "succeeded", "{body}");
    let jobs = db.list_jobs(10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].status.as_str(), jobs[0].attempts),
        ("succeeded", 2)
    );
    let again = api2.invoke(ev).await;
    let Outcome::Response(body) = again else {
        panic!("{again:?}")
    };
    assert_eq!(body["objects"][0]["outcome"], "duplicate");
    assert_eq!(
        provider.requests().len(),
        2,
        "the dead call, then the one that finished"
    );
    db.close().await;
}
