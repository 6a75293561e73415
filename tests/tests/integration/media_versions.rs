//! An upload event names one version of its object, and that version is what the size check and
//! the model see: two quick uploads to one key of a versioned bucket are two jobs with two
//! answers, and an object overwritten after its event (an unversioned bucket, pinned by ETag) is
//! refused (`OBJECT_CHANGED`), never read in its place. On moto's S3 server, which keeps
//! versions and honours `If-Match` on HEAD and GET: `#[ignore]`d like the other moto tests.

use ai_runner::demo::{Reply, wav_tone};
use ai_runner::function::{Call, Function};
use ai_runner::ports::{ObjectPin, ObjectStore};
use ai_runner_tests::{Backend, S3Server};
use base64::Engine;
use serde_json::{Value, json};

use crate::media::{BUCKET, World, outcome, s3_event, world_on};

/// Uploads as a client does: the version id (versioned buckets) and the ETag S3 answered.
async fn put(s3: &S3Server, key: &str, body: &[u8]) -> (Option<String>, String) {
    let out = s3
        .sdk_client()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("audio/wav")
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
    let etag = out.e_tag().unwrap().trim_matches('"').to_owned();
    (out.version_id().map(str::to_owned), etag)
}

/// An S3 notification for `key` (plain characters) naming this version and ETag.
fn event_for(key: &str, version: Option<&str>, etag: &str) -> Value {
    let mut ev = s3_event(BUCKET, key);
    let object = &mut ev["Records"][0]["s3"]["object"];
    object["eTag"] = json!(etag);
    if let Some(v) = version {
        object["versionId"] = json!(v);
    }
    ev
}

async fn deliver(w: &World, ev: Value) -> Value {
    Function::OssTrigger
        .handle(&w.state, ev, Call::default())
        .await
        .unwrap()
}

/// The result document the last job wrote for `key`.
async fn result_doc(w: &World, key: &str) -> Value {
    let bytes =
        w.s3.store()
            .get(
                BUCKET,
                &format!("results/{key}.result.json"),
                ObjectPin::NONE,
            )
            .await
            .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The media world on moto's S3 (its bucket versioned or not), answered by the media probe.
async fn moto_world(versioned: bool) -> World {
    world_on(
        S3Server::moto(&[BUCKET], versioned).await,
        Backend::Sqlite,
        vec![Reply::MediaProbe],
        &[],
    )
    .await
}

/// The presigned URL in a URL-mode prompt.
fn url_in(prompt: &str) -> &str {
    let start = prompt.find("http://").unwrap();
    let rest = &prompt[start..];
    &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())]
}

/// Two uploads to `key`, then both events: each job reads its own version (`inline` or by URL).
async fn two_quick_uploads_are_two_answers(key: &str, inline: bool) {
    let w = moto_world(true).await;
    let (first, second) = (wav_tone(100, 200.0), wav_tone(300, 400.0));
    let (v1, e1) = put(&w.s3, key, &first).await;
    let (v2, e2) = put(&w.s3, key, &second).await;
    let (v1, v2) = (v1.unwrap(), v2.unwrap());
    assert_ne!(v1, v2);
    for (i, (v, e, body)) in [(&v1, &e1, &first), (&v2, &e2, &second)]
        .into_iter()
        .enumerate()
    {
        let out = deliver(&w, event_for(key, Some(v), e)).await;
        assert_eq!(outcome(&out, 0), "succeeded", "{out}");
        let req = &w.provider.requests()[i];
        let content = &req.body["messages"][0]["content"];
        let answer = if inline {
            let data = content[1]["input_audio"]["data"].as_str().unwrap();
            let sent = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            assert_eq!(&sent, body, "upload {i}: its own version's bytes");
            format!("收到内联音频 {} 字节", body.len())
        } else {
            let prompt = content.as_str().unwrap();
            assert!(
                prompt.contains(&format!("（wav，{} 字节）", body.len())),
                "the size checked is this version's: {prompt}"
            );
            let url = url_in(prompt);
            assert!(url.contains("versionId="), "{url}");
            let fetched = reqwest::get(url).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                &fetched[..],
                &body[..],
                "upload {i}: the URL is its version"
            );
            format!("下载音频 {} 字节", body.len())
        };
        let doc = result_doc(&w, key).await;
        assert_eq!(doc["result"]["content"], answer);
        assert_eq!(doc["object"]["version_id"], json!(v));
    }
    let jobs: Vec<_> = w
        .tdb
        .db()
        .list_jobs(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.object_key == key)
        .collect();
    assert_eq!(jobs.len(), 2, "one job per version");
    // The version column is `<version id>#<key hash>`.
    let mut versions: Vec<_> = jobs
        .iter()
        .map(|j| j.object_version.split('#').next().unwrap_or_default())
        .collect();
    versions.sort_unstable();
    let mut expected = vec![v1.as_str(), v2.as_str()];
    expected.sort_unstable();
    assert_eq!(versions, expected);
}

#[tokio::test]
#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
async fn two_quick_uploads_to_one_key_are_two_answers_each_fetching_its_own_version_by_url() {
    two_quick_uploads_are_two_answers("incoming/same.wav", false).await;
}

#[tokio::test]
#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
async fn two_quick_uploads_to_one_key_are_two_answers_each_sent_its_own_version_inline() {
    two_quick_uploads_are_two_answers("inline/same.wav", true).await;
}

#[tokio::test]
#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
async fn an_object_overwritten_after_its_event_is_refused_not_read_in_its_place() {
    let w = moto_world(false).await;
    for key in ["incoming/swap.wav", "inline/swap.wav"] {
        let (version, old) = put(&w.s3, key, &wav_tone(100, 200.0)).await;
        assert_eq!(version, None, "an unversioned bucket: the ETag is the pin");
        let (_, new) = put(&w.s3, key, &wav_tone(300, 400.0)).await;
        let out = deliver(&w, event_for(key, None, &old)).await;
        assert_eq!(outcome(&out, 0), "failed", "{out}");
        assert_eq!(out["objects"][0]["code"], "OBJECT_CHANGED", "{out}");
        assert_eq!(out["objects"][0]["retryable"], false, "{out}");
        let job = w.job(key).await;
        assert_eq!(job.status, "failed");
        assert_eq!(job.error_code.as_deref(), Some("OBJECT_CHANGED"));
        // The newer upload's own event is its job.
        let out = deliver(&w, event_for(key, None, &new)).await;
        assert_eq!(outcome(&out, 0), "succeeded", "{out}");
    }
    assert_eq!(
        w.provider.requests().len(),
        2,
        "only the newer objects reached the model"
    );
}

#[tokio::test]
#[ignore = "needs moto_server (pip install 'moto[server]'; bash .ci/run installs it and runs ignored tests)"]
async fn the_s3_store_reads_the_pinned_version_and_refuses_an_etag_the_key_no_longer_holds() {
    let s3 = S3Server::moto(&[BUCKET], true).await;
    let store = s3.store();
    let key = "k.wav";
    let (v1, e1) = put(&s3, key, b"first").await;
    let (_, e2) = put(&s3, key, b"second").await;
    let v1 = v1.unwrap();
    let by_version = ObjectPin {
        version_id: Some(&v1),
        etag: None,
    };
    let head = store.head(BUCKET, key, by_version).await.unwrap();
    assert_eq!((head.size, head.version_id.as_deref()), (5, Some(&*v1)));
    assert_eq!(store.get(BUCKET, key, by_version).await.unwrap(), b"first");
    let url = store
        .presign_get(BUCKET, key, by_version, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(url.contains("versionId="), "{url}");
    let fetched = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&fetched[..], b"first");

    // Pinned by ETag alone: the key now holds another object.
    let stale = ObjectPin {
        version_id: None,
        etag: Some(&e1),
    };
    let presigned = store
        .presign_get(BUCKET, key, stale, std::time::Duration::from_secs(60))
        .await;
    for code in [
        store.head(BUCKET, key, stale).await.unwrap_err().code(),
        store.get(BUCKET, key, stale).await.unwrap_err().code(),
        presigned.unwrap_err().code(),
    ] {
        assert_eq!(code, "OBJECT_CHANGED");
    }
    let current = ObjectPin {
        version_id: None,
        etag: Some(&e2),
    };
    assert_eq!(store.get(BUCKET, key, current).await.unwrap(), b"second");

    // A version deleted after its event is gone, not replaced by the current one.
    s3.sdk_client()
        .delete_object()
        .bucket(BUCKET)
        .key(key)
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.get(BUCKET, key, by_version).await.unwrap_err().code(),
        "OBJECT_NOT_FOUND"
    );
    assert_eq!(
        store
            .head(BUCKET, key, by_version)
            .await
            .unwrap_err()
            .code(),
        "OBJECT_NOT_FOUND"
    );
}
