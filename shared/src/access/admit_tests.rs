//! The admission policy against a scripted store: which failures of the counting transaction
//! `ACCESS_FAIL_OPEN` may let through (the counters did not answer) and which fail closed (a
//! statement failed: tried once more first).

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::config::AccessSettings;
use crate::model::access::KeyOwner;
use crate::ports::KeyCall;

/// Answers each count with the next scripted outcome (then: granted), and counts the counts.
struct Scripted {
    outcomes: Mutex<Vec<StoreError>>,
    counts: Mutex<u32>,
}

impl Scripted {
    fn failing(errors: Vec<StoreError>) -> Self {
        Self {
            outcomes: Mutex::new(errors),
            counts: Mutex::new(0),
        }
    }

    fn next(&self) -> Result<Admission, StoreError> {
        *self.counts.lock().unwrap() += 1;
        let mut outcomes = self.outcomes.lock().unwrap();
        if outcomes.is_empty() {
            Ok(Admission::Granted {
                second: None,
                day: 1,
            })
        } else {
            Err(outcomes.remove(0))
        }
    }
}

impl AccessStore for Scripted {
    async fn find_key(&self, _: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(None)
    }
    async fn use_nonce(&self, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn admit(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: Option<u32>,
        _: Option<u32>,
    ) -> Result<Admission, StoreError> {
        self.next()
    }
    async fn count_call(
        &self,
        _: &str,
        _: Option<u32>,
        _: Option<u32>,
    ) -> Result<Admission, StoreError> {
        self.next()
    }
    async fn log_call(&self, _: &KeyCall) -> Result<(), StoreError> {
        Ok(())
    }
    async fn call_logged(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

fn key() -> StoredKey {
    let owner = KeyOwner::User("ana".into());
    StoredKey {
        access_key_id: "AK1".into(),
        scope: crate::model::access::Scope::default_for(&owner),
        owner,
        row_id: 1,
        user_id: Some(1),
        proof: KeyProof::Bearer([0; 32]),
        previous: None,
        active: true,
        expires_ms: None,
        daily_quota: Some(10),
        rps_limit: None,
        allow_ips: Vec::new(),
    }
}

fn fail_open() -> AccessSettings {
    AccessSettings {
        mode: AccessMode::Hmac,
        max_skew: Duration::from_secs(300),
        fail_open: true,
        trusted_proxy_hops: 0,
    }
}

fn deadlock() -> StoreError {
    StoreError::Query("Deadlock found when trying to get lock; try restarting transaction".into())
}

/// Admits one call (signed: `nonce`, else bearer) through a store failing with `errors`; how
/// many counts it took.
async fn admitted(errors: Vec<StoreError>, signed: bool) -> (Result<Option<Limits>, Code>, u32) {
    let store = Scripted::failing(errors);
    let nonce = signed.then_some(("n1", 1_000));
    let out = admit(&store, &fail_open(), &key(), nonce, 0)
        .await
        .map_err(|d| d.code);
    let counts = *store.counts.lock().unwrap();
    (out, counts)
}

#[tokio::test]
async fn a_database_that_does_not_answer_may_fail_open() {
    for signed in [true, false] {
        let down = StoreError::Unavailable("connection refused".into());
        let (out, counts) = admitted(vec![down], signed).await;
        assert_eq!((out, counts), (Ok(None), 1), "signed: {signed}");
        let gone = StoreError::Outdated("ai_access_usage");
        let (out, _) = admitted(vec![gone], signed).await;
        assert_eq!(out, Ok(None), "signed: {signed}");
    }
}

#[tokio::test]
async fn a_deadlock_is_tried_once_more_and_then_fails_closed() {
    for signed in [true, false] {
        let (out, counts) = admitted(vec![deadlock()], signed).await;
        assert!(
            matches!(out, Ok(Some(_))),
            "the retry counted the call: {out:?}"
        );
        assert_eq!(counts, 2);
        let (out, counts) = admitted(vec![deadlock(), deadlock()], signed).await;
        assert_eq!(
            (out, counts),
            (Err(Code::AccessUnavailable), 2),
            "fails closed though ACCESS_FAIL_OPEN=true (signed: {signed})"
        );
    }
}

#[tokio::test]
async fn any_other_failure_fails_closed() {
    let bad = StoreError::BadJson {
        column: "allow_ips_json",
    };
    let (out, _) = admitted(vec![bad], true).await;
    assert_eq!(out, Err(Code::AccessUnavailable));
}
