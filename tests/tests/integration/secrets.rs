//! Secrets never leak: a recognizable provider key and pepper are pushed through failures and an
//! echoing provider, with every log line captured at TRACE level, and must appear in no log line,
//! no result, no error and no audit row.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::{RunContext, Trigger, Variables};
use ai_runner_tests::{Backend, PEPPER, Seed, TestDb, runner, seed};
use serde_json::json;

/// Replies, whether JSON is asked for, extra settings.
type Scenario = (Vec<Reply>, bool, &'static [(&'static str, &'static str)]);

const KEY: &str = "sk-LEAKCHECK-9f8e7d6c5b4a";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_recognizable_key_appears_in_no_log_line_error_result_or_audit_row() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .init();

    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let echo_401 = Reply::Json {
        status: 401,
        body: json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}}),
        headers: vec![],
    };
    let scenarios: Vec<Scenario> = vec![
        (vec![echo_401], false, &[]),
        (vec![Reply::EchoAuthorization], false, &[]),
        (
            vec![Reply::EchoAuthorization],
            true,
            &[("AI_CONTENT_RETRIES", "1")],
        ),
        (
            vec![Reply::error(500, &format!("upstream said {KEY}"))],
            false,
            &[],
        ),
        (
            vec![Reply::Delayed(
                Duration::from_millis(800),
                Box::new(Reply::EchoAuthorization),
            )],
            false,
            &[("AI_TIMEOUT", "0.2"), ("AI_MAX_RETRIES", "0")],
        ),
        (
            vec![Reply::content("好")],
            false,
            &[("AI_PEPPER", "wrong-pepper-for-this-key")],
        ),
    ];
    let mut outputs = Vec::new();
    let mut codes = Vec::new();
    for (i, (replies, wants_json, env)) in scenarios.into_iter().enumerate() {
        let server = ProviderServer::start(replies).await.unwrap();
        let url = server.url();
        let key = format!("k{i}");
        let mut s = Seed::text(&key, &url);
        s.api_key = KEY;
        if wants_json {
            s.response_format = Some(json!({"type": "json_object"}));
        }
        seed(&tdb.db(), &s).await;
        let r = runner(&tdb.settings(env));
        let res = r
            .run_once(&key, &Variables::new(), &RunContext::new(Trigger::Library))
            .await;
        codes.push(res.error.as_ref().map(|e| e.code.clone()));
        outputs.push(serde_json::to_string(&res).unwrap());
        outputs.push(format!("{res:?}"));
        if let Some(e) = &res.failure {
            outputs.push(e.to_string());
            outputs.push(ai_runner::error::chain(e.as_ref()));
        }
        if let Some(id) = res.audit_id {
            outputs.push(serde_json::to_string(&tdb.db().audit_row(id).await.unwrap()).unwrap());
        }
        // The provider did receive the key, so the test would notice a scrub that removed it
        // from the wire as well.
        assert!(
            server
                .requests()
                .iter()
                .all(|q| q.headers["authorization"] == format!("Bearer {KEY}"))
                || i == 5
        );
        r.store().close().await;
    }
    // Each scenario ends as designed (a leak check over runs that never reached the failure
    // paths would prove nothing).
    assert_eq!(
        codes,
        [
            Some("HTTP_STATUS_ERROR".to_owned()),
            None,
            Some("SCHEMA_INVALID".to_owned()),
            Some("HTTP_5XX_SERVER_ERROR".to_owned()),
            Some("NETWORK_TIMEOUT".to_owned()),
            Some("DECRYPT_FAILED".to_owned()),
        ]
    );
    for o in &outputs {
        assert!(!o.contains(KEY), "key leaked: {o}");
        assert!(!o.contains(PEPPER), "pepper leaked: {o}");
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.lines().count() > 5, "logs were captured");
    assert!(logged.contains("HTTP_STATUS_ERROR"), "failures were logged");
    assert!(!logged.contains(KEY), "key leaked into logs");
    assert!(!logged.contains(PEPPER), "pepper leaked into logs");
}
