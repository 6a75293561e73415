//! Bearer calls end to end (`Authorization: Bearer air-...`, what OpenAI SDKs send) through the
//! run-route handler and `access::check`, on SQLite and MariaDB: granted and attributed, each
//! refusal with its code, an unknown key answered byte for byte like a wrong secret, keys of the
//! other form refused, the mixed modes, and rotations (the key's own and the pepper's).

use super::*;
use ai_runner::Code;
use ai_runner::access::{self, HttpCall};
use ai_runner::config::{AccessMode, AccessSettings};
use ai_runner::model::access::{Action, KeyForm};

/// A secret part that no key of these tests has.
const WRONG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn bearer_key(owner: KeyOwner) -> NewKey {
    NewKey {
        form: KeyForm::Bearer,
        ..NewKey::new(owner)
    }
}

fn authorization(value: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), value.into())]
}

async fn bearer_call(s: &Setup, token: &str, project: &str, r: &str, ip: &str) -> Value {
    let body = route_body(project, r).to_string();
    route(
        s,
        api_event(
            "/run-route",
            &body,
            &authorization(&format!("Bearer {token}")),
            ip,
        ),
    )
    .await
}

/// The same key id with another secret.
fn with_wrong_secret(token: &str) -> String {
    let (id, _) = token.rsplit_once('-').unwrap();
    format!("{id}-{WRONG}")
}

async fn a_bearer_call_is_granted_and_attributed(backend: Backend) {
    let s = setup(backend, &[("ACCESS_MODE", "bearer")]).await;
    let db = s.tdb.db();
    let mut user = bearer_key(KeyOwner::User("ana".into()));
    user.daily_quota = Some(100);
    let (ak, token) = create(&db, &user).await;
    assert!(
        token.starts_with(&format!("air-{ak}-")) && token.len() == 4 + ak.len() + 1 + 64,
        "air-<id>-<64 hex>"
    );
    let resp = bearer_call(&s, &token, "shop", "chat", "203.0.113.7").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(resp["headers"]["x-ratelimit-limit"], "100");
    assert_eq!(resp["headers"]["x-ratelimit-remaining"], "99");
    let out = body(&resp);
    assert_eq!(out["content"], "你好");
    let row = db
        .audit_row(out["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["caller_key"], ak.as_str());
    assert_eq!(row["source_ip"], "203.0.113.7");

    // No nonce: the same token is sent again (and the scheme's case does not matter).
    let body = route_body("shop", "chat").to_string();
    let again = route(
        &s,
        api_event(
            "/run-route",
            &body,
            &authorization(&format!("bearer {token}")),
            "203.0.113.7",
        ),
    )
    .await;
    assert_eq!(status(&again), 200, "{again}");
    assert_eq!(again["headers"]["x-ratelimit-remaining"], "98");
    assert_eq!(db.count("ai_user_call_log").await.unwrap(), 2);
    assert_eq!(db.count("ai_access_nonce").await.unwrap(), 0);
    let usage = db.access_usage(Some(&ak), "2000-01-01").await.unwrap();
    assert_eq!((usage[0].granted, usage[0].refused), (2, 0));

    // Stored only as a digest; listed with its form, never the token.
    let listed = db.list_access_keys().await.unwrap();
    assert_eq!(listed[0].form, KeyForm::Bearer);
    let secret = token.rsplit_once('-').unwrap().1;
    assert!(!serde_json::to_string(&listed).unwrap().contains(secret));
    assert_eq!(s.server.requests().len(), 2);
    db.close().await;
    s.tdb.cleanup().await;
}

#[tokio::test]
async fn a_bearer_call_is_granted_and_attributed_on_sqlite() {
    a_bearer_call_is_granted_and_attributed(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn a_bearer_call_is_granted_and_attributed_on_mariadb() {
    a_bearer_call_is_granted_and_attributed(Backend::MariaDb).await;
}

async fn each_refusal_of_a_bearer_call_has_its_code(backend: Backend) {
    let s = setup(backend, &[("ACCESS_MODE", "bearer")]).await;
    let db = s.tdb.db();
    let project = KeyOwner::Project("shop".into());
    let refused = |resp: &Value| (status(resp), code(resp));
    let ip = "203.0.113.7";

    let body_text = route_body("shop", "chat").to_string();
    let resp = route(&s, api_event("/run-route", &body_text, &[], ip)).await;
    assert_eq!(refused(&resp), (401, "AUTH_TOKEN_MISSING".into()));
    for other in [
        "Basic dXNlcjpwYXNz",
        "Bearer sk-proj-123",
        "Bearer air-ak_1-beef",
    ] {
        let resp = route(
            &s,
            api_event("/run-route", &body_text, &authorization(other), ip),
        )
        .await;
        let want = if other.starts_with("Basic") {
            "AUTH_TOKEN_MISSING"
        } else {
            "AUTH_TOKEN_INVALID"
        };
        assert_eq!(refused(&resp), (401, want.into()), "{other}");
    }

    let (ak, token) = create(&db, &bearer_key(project.clone())).await;
    let wrong = bearer_call(&s, &with_wrong_secret(&token), "shop", "chat", ip).await;
    assert_eq!(refused(&wrong), (401, "AUTH_TOKEN_INVALID".into()));
    let unknown_token = format!("air-ak_000000000000000000000000-{WRONG}");
    let unknown = bearer_call(&s, &unknown_token, "shop", "chat", ip).await;
    assert_eq!(
        wrong, unknown,
        "nothing tells an unknown key from a wrong secret"
    );
    // A signing key's id in a token is no token either.
    let (signed_ak, _) = create(&db, &key(project.clone())).await;
    let as_bearer = bearer_call(&s, &format!("air-{signed_ak}-{WRONG}"), "shop", "chat", ip).await;
    assert_eq!(as_bearer, unknown, "a signing key is not a bearer key");

    assert!(db.set_access_key_status(&ak, false).await.unwrap());
    let resp = bearer_call(&s, &token, "shop", "chat", ip).await;
    assert_eq!(refused(&resp), (403, "AUTH_KEY_DISABLED".into()));

    let mut expired = bearer_key(project.clone());
    expired.expires_ms = Some(ai_runner::model::now_ms() - 1);
    let (_, token) = create(&db, &expired).await;
    let resp = bearer_call(&s, &token, "shop", "chat", ip).await;
    assert_eq!(refused(&resp), (403, "AUTH_KEY_EXPIRED".into()));

    let mut fenced = bearer_key(project.clone());
    fenced.allow_ips = vec!["10.0.0.0/8".into()];
    let (_, token) = create(&db, &fenced).await;
    let resp = bearer_call(&s, &token, "shop", "chat", ip).await;
    assert_eq!(refused(&resp), (403, "AUTH_IP_DENIED".into()));
    let resp = bearer_call(&s, &token, "shop", "chat", "10.1.2.3").await;
    assert_eq!(status(&resp), 200, "{resp}");

    let (_, token) = create(&db, &bearer_key(project.clone())).await;
    let resp = bearer_call(&s, &token, "lab", "chat", ip).await;
    assert_eq!(
        refused(&resp),
        (403, "AUTH_SCOPE_DENIED".into()),
        "another project"
    );

    let mut quota = bearer_key(project.clone());
    quota.daily_quota = Some(1);
    let (_, token) = create(&db, &quota).await;
    assert_eq!(
        status(&bearer_call(&s, &token, "shop", "chat", ip).await),
        200
    );
    let resp = bearer_call(&s, &token, "shop", "chat", ip).await;
    assert_eq!(refused(&resp), (429, "QUOTA_EXCEEDED".into()));
    assert_eq!(resp["headers"]["x-ratelimit-remaining"], "0");
    assert!(resp["headers"]["retry-after"].as_str().is_some());

    let mut rate = bearer_key(project);
    rate.rps_limit = Some(1);
    let (_, token) = create(&db, &rate).await;
    let mut provider_calls = 2;
    let mut tries = 0;
    let (ra, rb) = loop {
        tries += 1;
        assert!(tries <= 20, "20 pairs in a row straddled a second");
        let from = db_second(&db).await;
        let (ra, rb) = tokio::join!(
            bearer_call(&s, &token, "shop", "chat", ip),
            bearer_call(&s, &token, "shop", "chat", ip)
        );
        let to = db_second(&db).await;
        provider_calls += [&ra, &rb].iter().filter(|r| status(r) == 200).count();
        if from == to {
            break (ra, rb);
        }
    };
    let mut statuses = [status(&ra), status(&rb)];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429], "{ra} {rb}");
    let limited = if status(&ra) == 429 { &ra } else { &rb };
    assert_eq!(code(limited), "RATE_LIMITED");
    assert_eq!(limited["headers"]["retry-after"], "1");
    assert_eq!(
        s.server.requests().len(),
        provider_calls,
        "refused calls never reach the provider"
    );
    db.close().await;
    s.tdb.cleanup().await;
}

#[tokio::test]
async fn each_refusal_of_a_bearer_call_has_its_code_on_sqlite() {
    each_refusal_of_a_bearer_call_has_its_code(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn each_refusal_of_a_bearer_call_has_its_code_on_mariadb() {
    each_refusal_of_a_bearer_call_has_its_code(Backend::MariaDb).await;
}

fn bearer_http(token: &str) -> HttpCall {
    HttpCall {
        method: "POST".into(),
        paths: vec!["/v1/models".into()],
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        source_ip: Some("203.0.113.7".into()),
        ..HttpCall::default()
    }
}

async fn an_unknown_key_and_a_wrong_secret_are_refused_identically(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    seed_route(&db, "shop", "chat", &RouteSpec::default(), &[]).await;
    let (ak, token) = create(&db, &bearer_key(KeyOwner::User("ana".into()))).await;
    let settings = AccessSettings {
        mode: AccessMode::Keys,
        max_skew: Duration::from_secs(300),
        fail_open: false,
        trusted_proxy_hops: 0,
    };
    let ring = keyring();
    let now = ai_runner::model::now_ms();
    let check = |call: HttpCall| {
        let (db, ring, settings) = (&db, &ring, &settings);
        async move { access::check(db, ring, settings, &call, Some(&Action::Models), now).await }
    };
    let granted = check(bearer_http(&token)).await.unwrap();
    assert_eq!(granted.caller.access_key_id.as_deref(), Some(ak.as_str()));
    assert_eq!(granted.key.unwrap().form(), KeyForm::Bearer);

    let wrong = check(bearer_http(&with_wrong_secret(&token)))
        .await
        .unwrap_err();
    let unknown_id = format!("ak_{}", "0".repeat(24));
    let unknown = check(bearer_http(&format!("air-{unknown_id}-{WRONG}")))
        .await
        .unwrap_err();
    assert_eq!(
        (wrong.code, unknown.code),
        (Code::AuthTokenInvalid, Code::AuthKeyUnknown),
        "the logs tell them apart"
    );
    assert_eq!(wrong.shown(), Code::AuthTokenInvalid);
    assert_eq!(wrong.shown(), unknown.shown(), "callers do not");
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(
        (wrong.retry_after, wrong.limits),
        (unknown.retry_after, unknown.limits)
    );
    // A refusal names the key id, never the secret.
    assert!(!format!("{wrong:?}").contains(WRONG));
    assert!(!format!("{:?}", bearer_http(&token)).contains(token.rsplit_once('-').unwrap().1));
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn an_unknown_key_and_a_wrong_secret_are_refused_identically_on_sqlite() {
    an_unknown_key_and_a_wrong_secret_are_refused_identically(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn an_unknown_key_and_a_wrong_secret_are_refused_identically_on_mariadb() {
    an_unknown_key_and_a_wrong_secret_are_refused_identically(Backend::MariaDb).await;
}

#[tokio::test]
async fn keys_mode_takes_either_form_and_refuses_a_key_used_in_the_other() {
    let s = setup(Backend::Sqlite, &[("ACCESS_MODE", "keys")]).await;
    let db = s.tdb.db();
    let (signed_ak, sk) = create(&db, &key(KeyOwner::User("ana".into()))).await;
    let (bearer_ak, token) = create(&db, &bearer_key(KeyOwner::User("bo".into()))).await;
    assert_eq!(
        status(&signed_route_call(&s, &signed_ak, &sk, "shop", "chat").await),
        200
    );
    assert_eq!(
        status(&bearer_call(&s, &token, "shop", "chat", "1.2.3.4").await),
        200
    );
    let body_text = route_body("shop", "chat").to_string();
    let resp = route(&s, api_event("/run-route", &body_text, &[], "1.2.3.4")).await;
    assert_eq!((status(&resp), code(&resp)), (401, "AUTH_MISSING".into()));
    let message = body(&resp)["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("X-Signature") && message.contains("Bearer air-"),
        "names both forms: {message}"
    );
    // A bearer key's id signing a request: refused like a bad signature (here, its token as
    // the secret).
    let resp = signed_route_call(&s, &bearer_ak, &token, "shop", "chat").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_SIGNATURE_INVALID".into())
    );
    let unknown = signed_route_call(&s, "ak_does_not_exist", &token, "shop", "chat").await;
    assert_eq!(resp, unknown);
    db.close().await;
}

#[tokio::test]
async fn the_signed_modes_ignore_bearer_tokens_and_iam_plus_bearer_needs_both() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let (_, token) = create(&db, &bearer_key(KeyOwner::User("ana".into()))).await;
    let resp = bearer_call(&s, &token, "shop", "chat", "1.2.3.4").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_MISSING".into()),
        "hmac stays as it was: a bearer token is no signature"
    );
    assert!(
        !body(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );

    let s = Setup {
        state: App::new(&s.tdb.settings(&[("ACCESS_MODE", "iam+bearer")])).unwrap(),
        ..s
    };
    let body_text = route_body("shop", "chat").to_string();
    let event = |auth: &str| {
        api_event(
            "/run-route",
            &body_text,
            &authorization(&format!("Bearer {auth}")),
            "1.2.3.4",
        )
    };
    let resp = route(&s, event(&token)).await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_TOKEN_MISSING".into()),
        "no principal"
    );
    let with_principal = |mut ev: Value| {
        ev["requestContext"]["authorizer"] = json!({"jwt": {"claims": {"sub": "user-42"}}});
        ev
    };
    let resp = route(&s, with_principal(event(&token))).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let row = db
        .audit_row(body(&resp)["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["caller_principal"], "jwt:user-42");
    // The platform's own bearer token (a JWT) is not ours, and not refused as a bad one.
    let resp = route(&s, with_principal(event("eyJhbGciOiJIUzI1NiJ9.e30.x"))).await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_TOKEN_MISSING".into())
    );
    db.close().await;
}

#[tokio::test]
async fn a_bearer_key_rotates_its_token_and_survives_a_pepper_rotation() {
    let s = setup(Backend::Sqlite, &[("ACCESS_MODE", "bearer")]).await;
    let db = s.tdb.db();
    let (ak, first) = create(&db, &bearer_key(KeyOwner::User("ana".into()))).await;
    let hour_later = ai_runner::model::now_ms() + 3_600_000;
    let second = db
        .rotate_access_key(&keyring(), &ak, hour_later)
        .await
        .unwrap();
    let second = second.expose().to_owned();
    assert!(second.starts_with(&format!("air-{ak}-")) && second != first);
    for token in [&first, &second] {
        let resp = bearer_call(&s, token, "shop", "chat", "1.2.3.4").await;
        assert_eq!(status(&resp), 200, "in grace: {resp}");
    }

    // A new pepper: the signed secrets are re-encrypted, the digests left as they are.
    let ring = ai_runner::crypto::Keyring::new(
        Some(ai_runner::Secret::new("the-next-pepper")),
        Some(ai_runner::Secret::new(PEPPER)),
    );
    let checked = db.check_keys(&ring).await.unwrap();
    let digests: Vec<_> = checked.iter().filter(|k| k.name == ak).collect();
    assert_eq!(digests.len(), 2, "the token's digest and the previous one");
    assert!(
        digests
            .iter()
            .all(|k| k.format == "bearer (sha256)" && k.decrypts && k.current)
    );
    let done = db.rotate_keys(&ring, false).await.unwrap();
    assert_eq!(
        (done.rotated, done.already_current),
        (1, 2),
        "the provider key only"
    );
    let after = Setup {
        state: App::new(
            &s.tdb
                .settings(&[("ACCESS_MODE", "bearer"), ("AI_PEPPER", "the-next-pepper")]),
        )
        .unwrap(),
        ..s
    };
    let resp = bearer_call(&after, &second, "shop", "chat", "1.2.3.4").await;
    assert_eq!(status(&resp), 200, "after the pepper rotation: {resp}");

    let third = db
        .rotate_access_key(&ring, &ak, ai_runner::model::now_ms() - 1)
        .await
        .unwrap();
    for old in [&first, &second] {
        let resp = bearer_call(&after, old, "shop", "chat", "1.2.3.4").await;
        assert_eq!(
            (status(&resp), code(&resp)),
            (401, "AUTH_TOKEN_INVALID".into())
        );
    }
    let resp = bearer_call(&after, third.expose(), "shop", "chat", "1.2.3.4").await;
    assert_eq!(status(&resp), 200, "{resp}");
    db.close().await;
}

#[tokio::test]
async fn when_the_counters_cannot_be_reached_bearer_calls_fail_closed_unless_told_otherwise() {
    for (fail_open, expected) in [("false", 503), ("true", 200)] {
        let s = setup(
            Backend::Sqlite,
            &[("ACCESS_MODE", "bearer"), ("ACCESS_FAIL_OPEN", fail_open)],
        )
        .await;
        let db = s.tdb.db();
        let (_, token) = create(&db, &bearer_key(KeyOwner::User("ana".into()))).await;
        let ai_runner::store::Pool::Sqlite(p) = db.pool().await.unwrap() else {
            unreachable!()
        };
        sqlx::query("DROP TABLE ai_access_usage")
            .execute(p)
            .await
            .unwrap();
        let resp = bearer_call(&s, &token, "shop", "chat", "1.2.3.4").await;
        assert_eq!(
            status(&resp),
            expected,
            "ACCESS_FAIL_OPEN={fail_open}: {resp}"
        );
        if expected == 503 {
            assert_eq!(code(&resp), "ACCESS_UNAVAILABLE");
            assert!(s.server.requests().is_empty());
        }
        db.close().await;
    }
}
