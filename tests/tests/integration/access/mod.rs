//! Access control end to end through the run-once / run-route handlers: requests signed by the
//! predecessor's own client helpers (CPython), the access tables on SQLite and MariaDB, the
//! scripted provider on a loopback port; and the quota / rate-limit races from several processes
//! (`access-worker`). Bearer calls are in `bearer`.

mod bearer;

use std::time::Duration;

use ai_runner::app::App;
use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::function::Call;
use ai_runner::function::Function;
use ai_runner::model::access::{KeyOwner, Scope};
use ai_runner::store::Db;
use ai_runner::store::access::NewKey;
use ai_runner_tests::{
    Backend, PEPPER, RouteSpec, Seed, TestDb, api_event, db_second, keyring, python_sign, seed,
    seed_route,
};
use serde_json::{Value, json};

struct Setup {
    tdb: TestDb,
    server: ProviderServer,
    state: App,
}

async fn setup(backend: Backend, extra: &[(&str, &str)]) -> Setup {
    let tdb = TestDb::new(backend).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("你好")])
        .await
        .unwrap();
    let db = tdb.db();
    seed(&db, &Seed::text("greet", &server.url())).await;
    for (project, route) in [("shop", "chat"), ("shop", "admin"), ("lab", "chat")] {
        seed_route(
            &db,
            project,
            route,
            &RouteSpec::default(),
            &[("greet", 1, 1)],
        )
        .await;
    }
    db.close().await;
    let mut vars = vec![("ACCESS_MODE", "hmac")];
    vars.extend_from_slice(extra);
    let state = App::new(&tdb.settings(&vars)).unwrap();
    Setup { tdb, server, state }
}

fn key(owner: KeyOwner) -> NewKey {
    NewKey::new(owner)
}

async fn create(db: &Db, new: &NewKey) -> (String, String) {
    let (ak, sk) = db.create_access_key(&keyring(), new).await.unwrap();
    (ak, sk.expose().to_owned())
}

fn route_body(project: &str, route: &str) -> Value {
    json!({"project": project, "route_key": route,
           "variables": {"TOPIC": "今天的天气，温度 21.5℃", "n": 3, "ratio": 0.1, "tiny": 1e-05,
                         "nested": {"list": [1, 2.5, "三", null, true], "big": 1e16}}})
}

fn status(resp: &Value) -> u64 {
    resp["statusCode"].as_u64().unwrap()
}

fn body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap()).unwrap()
}

fn code(resp: &Value) -> String {
    body(resp)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn route(s: &Setup, ev: Value) -> Value {
    Function::RunRoute
        .handle(&s.state, ev, Call::default())
        .await
        .unwrap()
}

async fn signed_route_call(s: &Setup, ak: &str, sk: &str, project: &str, r: &str) -> Value {
    let signed = python_sign(ak, sk, &route_body(project, r), None, None, "/run-route");
    route(
        s,
        api_event("/run-route", &signed.body, &signed.headers, "203.0.113.7"),
    )
    .await
}

async fn a_request_signed_by_the_predecessors_helper_runs_and_is_attributed(backend: Backend) {
    let s = setup(backend, &[]).await;
    let db = s.tdb.db();
    let mut user = key(KeyOwner::User("ana".into()));
    user.daily_quota = Some(100);
    let (ak, sk) = create(&db, &user).await;

    // v1: the JSON scheme, body sent as `requests.post(json=...)` sends it.
    let signed = python_sign(
        &ak,
        &sk,
        &route_body("shop", "chat"),
        None,
        None,
        "/run-route",
    );
    assert_ne!(
        signed.body, signed.compact,
        "the wire body is not the signed text"
    );
    let resp = route(
        &s,
        api_event("/run-route", &signed.body, &signed.headers, "203.0.113.7"),
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(resp["headers"]["x-ratelimit-limit"], "100");
    assert_eq!(resp["headers"]["x-ratelimit-remaining"], "99");
    let out = body(&resp);
    assert_eq!(out["content"], "你好");
    let audit_id = out["audit_id"].as_i64().unwrap();
    let row = db.audit_row(audit_id).await.unwrap().unwrap();
    assert_eq!(row["caller_key"], ak.as_str());
    assert_eq!(row["source_ip"], "203.0.113.7");
    assert_eq!(
        row["request_id"], "id",
        "the API Gateway request id, as in its access log"
    );
    assert_eq!(
        row["caller_principal"],
        Value::Null,
        "the fixture's JWT has no sub"
    );

    // v2: the raw-body scheme over the same wire body.
    let signed = python_sign(
        &ak,
        &sk,
        &route_body("shop", "chat"),
        None,
        None,
        "/run-route",
    );
    let resp = route(
        &s,
        api_event(
            "/run-route",
            &signed.body,
            &signed.v2_headers(),
            "203.0.113.7",
        ),
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");

    // One ai_user_call_log row per call, linked to its audit row.
    assert_eq!(db.count("ai_user_call_log").await.unwrap(), 2);
    let usage = db.access_usage(Some(&ak), "2000-01-01").await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].granted, usage[0].refused), (2, 0));
    let linked: i64 = match db.pool().await.unwrap() {
        ai_runner::store::Pool::MySql(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM ai_user_call_log l JOIN ai_call_logs c ON c.id = l.ai_call_log_id WHERE l.access_key_id = ? AND c.caller_key = ?",
        ).bind(&ak).bind(&ak).fetch_one(p).await.unwrap(),
        ai_runner::store::Pool::Sqlite(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM ai_user_call_log l JOIN ai_call_logs c ON c.id = l.ai_call_log_id WHERE l.access_key_id = ? AND c.caller_key = ?",
        ).bind(&ak).bind(&ak).fetch_one(p).await.unwrap(),
    };
    assert_eq!(linked, 2);
    db.close().await;
    s.tdb.cleanup().await;
}

#[tokio::test]
async fn a_request_signed_by_the_predecessors_helper_runs_and_is_attributed_on_sqlite() {
    a_request_signed_by_the_predecessors_helper_runs_and_is_attributed(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn a_request_signed_by_the_predecessors_helper_runs_and_is_attributed_on_mariadb() {
    a_request_signed_by_the_predecessors_helper_runs_and_is_attributed(Backend::MariaDb).await;
}

async fn replayed_or_tampered_requests_are_refused_before_any_provider_call(backend: Backend) {
    let s = setup(backend, &[]).await;
    let db = s.tdb.db();
    let (ak, sk) = create(&db, &key(KeyOwner::Project("shop".into()))).await;
    let signed = python_sign(
        &ak,
        &sk,
        &route_body("shop", "chat"),
        None,
        None,
        "/run-route",
    );
    let ev = api_event("/run-route", &signed.body, &signed.headers, "203.0.113.7");
    assert_eq!(status(&route(&s, ev.clone()).await), 200);

    let replay = route(&s, ev).await;
    assert_eq!(
        (status(&replay), code(&replay)),
        (401, "AUTH_REPLAY".into())
    );

    // A fresh signature each time, then one part changed after signing.
    let fresh = || {
        python_sign(
            &ak,
            &sk,
            &route_body("shop", "chat"),
            None,
            None,
            "/run-route",
        )
    };
    let f = fresh();
    let tampered_body = f.body.replace("\"n\": 3", "\"n\": 4");
    let resp = route(
        &s,
        api_event("/run-route", &tampered_body, &f.headers, "203.0.113.7"),
    )
    .await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_SIGNATURE_INVALID".into())
    );

    let f = fresh();
    let resp = route(
        &s,
        api_event(
            "/run-route",
            &f.body,
            &f.with_header("X-Nonce", "another-nonce"),
            "203.0.113.7",
        ),
    )
    .await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_SIGNATURE_INVALID".into()),
        "nonce header"
    );

    let f = fresh();
    let ts: i64 = f
        .headers
        .iter()
        .find(|(k, _)| k == "X-Timestamp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let resp = route(
        &s,
        api_event(
            "/run-route",
            &f.body,
            &f.with_header("X-Timestamp", &(ts + 1).to_string()),
            "203.0.113.7",
        ),
    )
    .await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_SIGNATURE_INVALID".into()),
        "timestamp header"
    );

    // The raw-body scheme signs the path: the same signature on another path fails.
    let f = fresh();
    let resp = route(
        &s,
        api_event("/run-once", &f.body, &f.v2_headers(), "203.0.113.7"),
    )
    .await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_SIGNATURE_INVALID".into()),
        "path"
    );

    // Correctly signed, but ten minutes old.
    let now = ai_runner::model::now_ms() / 1000;
    let stale = python_sign(
        &ak,
        &sk,
        &route_body("shop", "chat"),
        Some(now - 600),
        None,
        "/run-route",
    );
    let resp = route(
        &s,
        api_event("/run-route", &stale.body, &stale.headers, "203.0.113.7"),
    )
    .await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (401, "AUTH_TIMESTAMP_SKEW".into())
    );

    let resp = route(&s, api_event("/run-route", &f.body, &[], "203.0.113.7")).await;
    assert_eq!((status(&resp), code(&resp)), (401, "AUTH_MISSING".into()));
    let resp = route(&s, api_event("/run-route", "not json", &[], "203.0.113.7")).await;
    assert_eq!(
        status(&resp),
        401,
        "an unsigned bad body is refused before it is parsed"
    );

    assert_eq!(
        s.server.requests().len(),
        1,
        "only the first call reached the provider"
    );
    assert_eq!(db.count("ai_call_logs").await.unwrap(), 1);
    db.close().await;
    s.tdb.cleanup().await;
}

#[tokio::test]
async fn replayed_or_tampered_requests_are_refused_before_any_provider_call_on_sqlite() {
    replayed_or_tampered_requests_are_refused_before_any_provider_call(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn replayed_or_tampered_requests_are_refused_before_any_provider_call_on_mariadb() {
    replayed_or_tampered_requests_are_refused_before_any_provider_call(Backend::MariaDb).await;
}

#[tokio::test]
async fn an_unknown_key_is_answered_exactly_like_a_bad_signature() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let (ak, _) = create(&db, &key(KeyOwner::Project("shop".into()))).await;
    let known = signed_route_call(&s, &ak, "sk_wrong", "shop", "chat").await;
    let unknown = signed_route_call(&s, "ak_does_not_exist", "sk_wrong", "shop", "chat").await;
    assert_eq!(status(&known), 401);
    assert_eq!(known, unknown, "nothing tells the two apart");
    db.close().await;
}

#[tokio::test]
async fn a_correctly_signed_call_learns_why_its_key_may_not_proceed() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let project = KeyOwner::Project("shop".into());

    let (ak, sk) = create(&db, &key(project.clone())).await;
    assert!(db.set_access_key_status(&ak, false).await.unwrap());
    let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (403, "AUTH_KEY_DISABLED".into())
    );
    assert!(db.set_access_key_status(&ak, true).await.unwrap());
    assert_eq!(
        status(&signed_route_call(&s, &ak, &sk, "shop", "chat").await),
        200
    );

    let mut expired = key(project.clone());
    expired.expires_ms = Some(ai_runner::model::now_ms() - 1);
    let (ak, sk) = create(&db, &expired).await;
    let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (403, "AUTH_KEY_EXPIRED".into())
    );

    let mut fenced = key(project.clone());
    fenced.allow_ips = vec!["10.0.0.0/8".into()];
    let (ak, sk) = create(&db, &fenced).await;
    let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
    assert_eq!((status(&resp), code(&resp)), (403, "AUTH_IP_DENIED".into()));

    // Scope: another project, a route outside the list, a dry run, a config, an evaluation.
    let mut scoped = key(project.clone());
    scoped.scope.routes = ai_runner::model::access::Patterns::parse("shop/chat");
    let (ak, sk) = create(&db, &scoped).await;
    for (p, r) in [("lab", "chat"), ("shop", "admin")] {
        let resp = signed_route_call(&s, &ak, &sk, p, r).await;
        assert_eq!(
            (status(&resp), code(&resp)),
            (403, "AUTH_SCOPE_DENIED".into()),
            "{p}/{r}"
        );
    }
    for denied in [
        json!({"project": "shop", "route_key": "chat", "dry_run": true}),
        json!({"eval": "nightly"}),
    ] {
        let signed = python_sign(&ak, &sk, &denied, None, None, "/run-route");
        let resp = route(
            &s,
            api_event("/run-route", &signed.body, &signed.headers, "1.2.3.4"),
        )
        .await;
        assert_eq!(
            (status(&resp), code(&resp)),
            (403, "AUTH_SCOPE_DENIED".into()),
            "{denied}"
        );
    }
    let signed = python_sign(
        &ak,
        &sk,
        &json!({"config_key": "greet"}),
        None,
        None,
        "/run-once",
    );
    let resp = Function::RunOnce
        .handle(
            &s.state,
            api_event("/run-once", &signed.body, &signed.headers, "1.2.3.4"),
            Call::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (status(&resp), code(&resp)),
        (403, "AUTH_SCOPE_DENIED".into()),
        "project keys run no config by default"
    );

    // A dry run allowed by the scope shows the request with the provider key masked.
    let mut dry = key(project);
    dry.scope.dry_run = true;
    let (ak, sk) = create(&db, &dry).await;
    let signed = python_sign(
        &ak,
        &sk,
        &json!({"project": "shop", "route_key": "chat", "dry_run": true}),
        None,
        None,
        "/run-route",
    );
    let resp = route(
        &s,
        api_event("/run-route", &signed.body, &signed.headers, "1.2.3.4"),
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(!resp.to_string().contains("sk-test-provider-key-000"));

    assert_eq!(
        s.server.requests().len(),
        1,
        "refused calls never reach the provider"
    );
    db.close().await;
}

#[tokio::test]
async fn a_rotated_out_secret_works_only_within_its_grace_period() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let (ak, first) = create(&db, &key(KeyOwner::User("ana".into()))).await;
    let hour_later = ai_runner::model::now_ms() + 3_600_000;
    let second = db
        .rotate_access_key(&keyring(), &ak, hour_later)
        .await
        .unwrap();
    let second = second.expose().to_owned();
    assert_eq!(
        status(&signed_route_call(&s, &ak, &first, "shop", "chat").await),
        200,
        "in grace"
    );
    assert_eq!(
        status(&signed_route_call(&s, &ak, &second, "shop", "chat").await),
        200
    );

    let third = db
        .rotate_access_key(&keyring(), &ak, ai_runner::model::now_ms() - 1)
        .await
        .unwrap();
    for old in [&first, &second] {
        let resp = signed_route_call(&s, &ak, old, "shop", "chat").await;
        assert_eq!(
            (status(&resp), code(&resp)),
            (401, "AUTH_SIGNATURE_INVALID".into())
        );
    }
    assert_eq!(
        status(&signed_route_call(&s, &ak, third.expose(), "shop", "chat").await),
        200
    );
    let listed = db.list_access_keys().await.unwrap();
    assert!(
        !serde_json::to_string(&listed)
            .unwrap()
            .contains(third.expose())
    );
    db.close().await;
}

#[tokio::test]
async fn an_exhausted_quota_or_rate_answers_429_with_retry_after_and_no_provider_call() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let mut quota = key(KeyOwner::User("ana".into()));
    quota.daily_quota = Some(2);
    let (ak, sk) = create(&db, &quota).await;
    for left in ["1", "0"] {
        let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
        assert_eq!(status(&resp), 200);
        assert_eq!(resp["headers"]["x-ratelimit-remaining"], left);
    }
    let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
    assert_eq!((status(&resp), code(&resp)), (429, "QUOTA_EXCEEDED".into()));
    assert_eq!(resp["headers"]["x-ratelimit-limit"], "2");
    assert_eq!(resp["headers"]["x-ratelimit-remaining"], "0");
    let retry: u64 = resp["headers"]["retry-after"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=86_400).contains(&retry),
        "until the next UTC midnight: {retry}"
    );
    let usage = db.access_usage(Some(&ak), "2000-01-01").await.unwrap();
    assert_eq!((usage[0].granted, usage[0].refused), (2, 1));

    let mut rate = key(KeyOwner::User("bo".into()));
    rate.rps_limit = Some(1);
    let (ak, sk) = create(&db, &rate).await;
    // Two calls at once, counted in one second of the database's clock: a pair a second's end
    // may have split (the database's second differs before and after it) is sent again.
    let mut provider_calls = 2;
    let mut tries = 0;
    let (ra, rb) = loop {
        tries += 1;
        assert!(tries <= 20, "20 pairs in a row straddled a second");
        let [a, b] = [(), ()].map(|()| {
            python_sign(
                &ak,
                &sk,
                &route_body("shop", "chat"),
                None,
                None,
                "/run-route",
            )
        });
        let from = db_second(&db).await;
        let (ra, rb) = tokio::join!(
            route(&s, api_event("/run-route", &a.body, &a.headers, "1.2.3.4")),
            route(&s, api_event("/run-route", &b.body, &b.headers, "1.2.3.4"))
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
    assert_eq!(limited["headers"]["x-ratelimit-limit"], "1");
    assert_eq!(limited["headers"]["x-ratelimit-remaining"], "0");
    assert_eq!(s.server.requests().len(), provider_calls);
    db.close().await;
}

#[tokio::test]
async fn when_the_counters_cannot_be_reached_calls_fail_closed_unless_told_otherwise() {
    for (fail_open, expected) in [("false", 503), ("true", 200)] {
        let s = setup(Backend::Sqlite, &[("ACCESS_FAIL_OPEN", fail_open)]).await;
        let db = s.tdb.db();
        let (ak, sk) = create(&db, &key(KeyOwner::User("ana".into()))).await;
        // The counter table goes away (an operator's mistake, a half-restored backup).
        let ai_runner::store::Pool::Sqlite(p) = db.pool().await.unwrap() else {
            unreachable!()
        };
        sqlx::query("DROP TABLE ai_access_usage")
            .execute(p)
            .await
            .unwrap();
        let resp = signed_route_call(&s, &ak, &sk, "shop", "chat").await;
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

#[tokio::test]
async fn other_events_and_iam_mode_are_not_asked_for_signatures() {
    let s = setup(Backend::Sqlite, &[]).await;
    // A direct invocation needs the platform's invoke permission, not a signature.
    let out = Function::RunRoute
        .handle(
            &s.state,
            json!({"project": "shop", "route_key": "chat"}),
            Call::default(),
        )
        .await
        .unwrap();
    assert_eq!(out["status"], "ok");

    let iam = setup(Backend::Sqlite, &[("ACCESS_MODE", "iam")]).await;
    let mut ev = api_event(
        "/run-route",
        &route_body("shop", "chat").to_string(),
        &[],
        "198.51.100.9",
    );
    ev["requestContext"]["authorizer"] =
        json!({"iam": {"userArn": "arn:aws:iam::123456789012:user/ana"}});
    let resp = route(&iam, ev).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let row = iam
        .tdb
        .db()
        .audit_row(body(&resp)["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row["caller_principal"],
        "arn:aws:iam::123456789012:user/ana"
    );
    assert_eq!(row["source_ip"], "198.51.100.9");
    assert_eq!(row["caller_key"], Value::Null);
}

/// One signed check as its worker saw it.
#[derive(Debug)]
struct Seen {
    /// The database's second just before the check and just after it: the check was counted
    /// in a second between the two.
    from: i64,
    to: i64,
    /// Granted: its place among the calls counted in its second (1 = the first).
    place: Option<u64>,
}

impl Seen {
    fn of(v: &Value) -> Seen {
        let place = v["code"]
            .is_null()
            .then(|| v["limit"].as_u64().unwrap() - v["remaining"].as_u64().unwrap());
        Seen {
            from: v["from"].as_i64().unwrap(),
            to: v["to"].as_i64().unwrap(),
            place,
        }
    }

    fn may_share_a_second_with(&self, other: &Seen) -> bool {
        self.from <= other.to && other.from <= self.to
    }
}

/// The per-second limit held, wherever the seconds began and ended during the race: no second
/// counted two calls in the same place (so none counted more than `rps`; the places can be
/// given seconds within their brackets, one each), and a call was refused only when a call
/// that could share its second was counted `rps`th (its second was full).
fn assert_rate_held(calls: &[Seen], rps: u64) {
    for place in 1..=rps {
        let mut at: Vec<&Seen> = calls.iter().filter(|c| c.place == Some(place)).collect();
        // Earliest deadline first, each into the first free second it may have been counted in.
        at.sort_by_key(|c| (c.to, c.from));
        let mut taken = std::collections::BTreeSet::new();
        for c in at {
            let second = (c.from..=c.to).find(|s| !taken.contains(s));
            let second = second
                .unwrap_or_else(|| panic!("two calls took place {place} of one second: {calls:?}"));
            taken.insert(second);
        }
    }
    for refused in calls.iter().filter(|c| c.place.is_none()) {
        assert!(
            calls
                .iter()
                .any(|c| c.place == Some(rps) && c.may_share_a_second_with(refused)),
            "{refused:?} was refused in a second that was not full: {calls:?}"
        );
    }
    assert!(
        calls
            .iter()
            .all(|c| c.place.is_none_or(|p| (1..=rps).contains(&p))),
        "{calls:?}"
    );
}

/// Starts `processes` access-worker processes, each firing `calls` signed checks at once;
/// returns the calls granted, the refusals by code, and every call as its worker saw it.
async fn race(
    tdb: &TestDb,
    ak: &str,
    sk: &str,
    processes: usize,
    calls: usize,
) -> (u64, Value, Vec<Seen>) {
    // Fire together (each process connects first, then waits for the start line).
    let start = ai_runner::model::now_ms() + 1500;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_access-worker"))
                .env("DATABASE_URL", &tdb.url)
                .env("AI_PEPPER", PEPPER)
                .env("WORKER_AK", ak)
                .env("WORKER_SK", sk)
                .env("WORKER_CALLS", calls.to_string())
                .env("WORKER_START_MS", start.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut granted = 0;
    let mut refused = serde_json::Map::new();
    let mut seen = Vec::new();
    for c in children {
        let out = c.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        seen.extend(v["calls"].as_array().unwrap().iter().map(Seen::of));
        granted += v["granted"].as_u64().unwrap();
        for (code, n) in v["refused"].as_object().unwrap() {
            let before = refused.get(code).and_then(Value::as_u64).unwrap_or(0);
            refused.insert(code.clone(), json!(before + n.as_u64().unwrap()));
        }
    }
    (granted, Value::Object(refused), seen)
}

async fn concurrent_processes_never_overshoot_a_quota_or_a_rate(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    seed_route(&db, "shop", "chat", &RouteSpec::default(), &[]).await;
    let mut quota = key(KeyOwner::User("ana".into()));
    quota.daily_quota = Some(7);
    let (ak, sk) = create(&db, &quota).await;
    let (granted, refused, _) = race(&tdb, &ak, &sk, 4, 25).await;
    assert_eq!(granted, 7, "{refused}");
    assert_eq!(refused, json!({"QUOTA_EXCEEDED": 93}));
    let usage = db.access_usage(Some(&ak), "2000-01-01").await.unwrap();
    assert_eq!((usage[0].granted, usage[0].refused), (7, 93));

    let mut rate = key(KeyOwner::User("bo".into()));
    rate.rps_limit = Some(5);
    let (ak, sk) = create(&db, &rate).await;
    let (granted, refused, seen) = race(&tdb, &ak, &sk, 4, 10).await;
    let limited = refused["RATE_LIMITED"].as_u64().unwrap_or(0);
    assert!(
        refused
            .as_object()
            .unwrap()
            .keys()
            .all(|c| c == "RATE_LIMITED"),
        "refused only for the rate: {refused}"
    );
    assert_eq!((granted + limited, seen.len()), (40, 40));
    assert_rate_held(&seen, 5);
    // And so at most 5 for each second the race took.
    let span =
        seen.iter().map(|c| c.to).max().unwrap() - seen.iter().map(|c| c.from).min().unwrap() + 1;
    assert!(granted <= 5 * span.unsigned_abs(), "{granted} in {span} s");
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn concurrent_processes_never_overshoot_a_quota_or_a_rate_on_sqlite() {
    concurrent_processes_never_overshoot_a_quota_or_a_rate(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn concurrent_processes_never_overshoot_a_quota_or_a_rate_on_mariadb() {
    concurrent_processes_never_overshoot_a_quota_or_a_rate(Backend::MariaDb).await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn a_key_the_predecessor_stored_signs_calls_with_its_old_reach() {
    // A key row as the predecessor's tooling wrote it (no scope, a v1 blob), on its schema.
    let s = setup(Backend::MariaDb, &[]).await;
    let db = s.tdb.db();
    let blob = ai_runner::crypto::encrypt_v1(&ai_runner::Secret::new(PEPPER), "sk_legacy_1", 1000)
        .unwrap();
    let ai_runner::store::Pool::MySql(p) = db.pool().await.unwrap() else {
        unreachable!()
    };
    sqlx::query("INSERT INTO ai_project_credential_v2 (project_id, access_key_id, secret_encrypted, status) SELECT id, 'ak_legacy', ?, 'active' FROM ai_project_v2 WHERE name = 'shop'")
        .bind(&blob)
        .execute(p)
        .await
        .unwrap();
    use ai_runner::ports::AccessStore;
    let k = db.find_key("ak_legacy").await.unwrap().unwrap();
    assert_eq!(k.owner, KeyOwner::Project("shop".into()));
    assert_eq!(k.scope, Scope::default_for(&k.owner));
    let resp = signed_route_call(&s, "ak_legacy", "sk_legacy_1", "shop", "chat").await;
    assert_eq!(status(&resp), 200, "{resp}");
    let resp = signed_route_call(&s, "ak_legacy", "sk_legacy_1", "lab", "chat").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (403, "AUTH_SCOPE_DENIED".into()),
        "its own project only"
    );
    // A user key provisioned outside the predecessor's package: no ai_user row, its quota 0
    // ("unlimited" to the predecessor), an IP list as JSON.
    let blob =
        ai_runner::crypto::encrypt_v1(&ai_runner::Secret::new(PEPPER), "sk_legacy_user", 1000)
            .unwrap();
    sqlx::query("INSERT INTO ai_user_key (user_id, access_key_id, secret_encrypted, allow_ips_json, daily_quota, status) VALUES (77, 'ak_legacy_user', ?, '[\"203.0.113.0/24\"]', 0, 'active')")
        .bind(&blob)
        .execute(p)
        .await
        .unwrap();
    let resp = signed_route_call(&s, "ak_legacy_user", "sk_legacy_user", "lab", "chat").await;
    assert_eq!(status(&resp), 200, "{resp}");
    let listed = db.list_access_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|k| k.owner == KeyOwner::User("user#77".into()))
    );
    db.close().await;
    s.tdb.cleanup().await;
}

#[tokio::test]
async fn expired_nonces_are_purged_and_may_be_used_again() {
    use ai_runner::ports::AccessStore;
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let now = ai_runner::model::now_ms();
    assert!(db.use_nonce("ak_1", "n1", now - 1_000).await.unwrap());
    assert!(
        db.use_nonce("ak_1", "n1", now + 60_000).await.unwrap(),
        "an expired record is no replay"
    );
    assert!(
        !db.use_nonce("ak_1", "n1", now + 60_000).await.unwrap(),
        "a live one is"
    );
    assert!(db.use_nonce("ak_1", "n2", now - 1_000).await.unwrap());
    assert!(db.use_nonce("ak_2", "n2", now - 1_000).await.unwrap());
    assert_eq!(db.purge_nonces(now).await.unwrap(), 2);
    assert_eq!(db.count("ai_access_nonce").await.unwrap(), 1);
    db.close().await;
}

#[tokio::test]
async fn a_pepper_rotation_re_encrypts_access_secrets_and_a_previous_one_in_its_grace_period() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let (ak, first) = create(&db, &key(KeyOwner::User("ana".into()))).await;
    let hour_later = ai_runner::model::now_ms() + 3_600_000;
    let second = db
        .rotate_access_key(&keyring(), &ak, hour_later)
        .await
        .unwrap();
    // The operator moves to a new pepper: the old one becomes AI_PEPPER_PREVIOUS for the
    // rotation, then goes away.
    let ring = ai_runner::crypto::Keyring::new(
        Some(ai_runner::Secret::new("the-next-pepper")),
        Some(ai_runner::Secret::new(PEPPER)),
    );
    let done = db.rotate_keys(&ring, false).await.unwrap();
    assert_eq!(
        done.rotated, 3,
        "the provider key, the key's secret and its previous secret"
    );
    let checked = db.check_keys(&ring).await.unwrap();
    assert!(
        checked
            .iter()
            .any(|k| k.table == "ai_user_key (previous secret)" && k.current)
    );
    let after = Setup {
        state: App::new(
            &s.tdb
                .settings(&[("ACCESS_MODE", "hmac"), ("AI_PEPPER", "the-next-pepper")]),
        )
        .unwrap(),
        ..s
    };
    for secret in [first.as_str(), second.expose()] {
        let resp = signed_route_call(&after, &ak, secret, "shop", "chat").await;
        assert_eq!(status(&resp), 200, "{resp}");
    }
    db.close().await;
}

#[tokio::test]
async fn an_evaluation_starts_only_when_the_key_may_run_every_target_itself() {
    let s = setup(Backend::Sqlite, &[]).await;
    let db = s.tdb.db();
    let _providers = ai_runner_tests::seed_good_and_bad(&db).await;
    ai_runner_tests::apply_moods_suite(&db).await;
    let owner = KeyOwner::User("ana".into());
    let mut only_good = key(owner.clone());
    only_good.scope = Scope::with(&owner, None, None, Some("good"), false, true);
    let (ak, sk) = create(&db, &only_good).await;
    let start = |body: Value| {
        let signed = python_sign(&ak, &sk, &body, None, None, "/run-route");
        api_event("/run-route", &signed.body, &signed.headers, "1.2.3.4")
    };
    // The suite targets "good" and "bad": the key may not run "bad".
    let resp = route(&s, start(json!({"eval": "moods"}))).await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (403, "AUTH_SCOPE_DENIED".into())
    );
    // Narrowed to what the key may run, it starts (in the invocation: no queue here).
    let resp = route(
        &s,
        start(json!({"eval": "moods", "targets": ["config:good"]})),
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(body(&resp)["status"], "finished");
    let resp = route(
        &s,
        start(json!({"eval": "moods", "targets": ["config:bad"]})),
    )
    .await;
    assert_eq!(status(&resp), 403);
    db.close().await;
}

#[tokio::test]
async fn iam_plus_hmac_refuses_a_call_the_platform_did_not_authenticate_and_odd_timestamps() {
    let s = setup(Backend::Sqlite, &[("ACCESS_MODE", "iam+hmac")]).await;
    let db = s.tdb.db();
    let (ak, sk) = create(&db, &key(KeyOwner::Project("shop".into()))).await;
    let signed = python_sign(
        &ak,
        &sk,
        &route_body("shop", "chat"),
        None,
        None,
        "/run-route",
    );
    let no_principal = api_event("/run-route", &signed.body, &signed.headers, "1.2.3.4");
    let resp = route(&s, no_principal.clone()).await;
    assert_eq!((status(&resp), code(&resp)), (401, "AUTH_MISSING".into()));
    let mut with_principal = no_principal;
    with_principal["requestContext"]["authorizer"] =
        json!({"jwt": {"claims": {"sub": "user-42"}, "scopes": []}});
    let resp = route(&s, with_principal).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let row = db
        .audit_row(body(&resp)["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["caller_principal"], "jwt:user-42");
    assert_eq!(row["caller_key"], ak.as_str());

    // Timestamps at the ends of the integer range are refused, never wrapped into the window.
    for ts in ["-9223372036854775808", "9223372036854775807", "0"] {
        let f = python_sign(
            &ak,
            &sk,
            &route_body("shop", "chat"),
            None,
            None,
            "/run-route",
        );
        let mut ev = api_event(
            "/run-route",
            &f.body,
            &f.with_header("X-Timestamp", ts),
            "1.2.3.4",
        );
        ev["requestContext"]["authorizer"] = json!({"jwt": {"claims": {"sub": "user-42"}}});
        let resp = route(&s, ev).await;
        assert_eq!(status(&resp), 401, "{ts}: {resp}");
    }
    db.close().await;
}

#[tokio::test]
#[ignore = "needs MariaDB (AI_RUNNER_TEST_MYSQL_URL); .ci/run runs it"]
async fn when_the_database_goes_down_signed_calls_fail_closed_without_a_provider_call() {
    use ai_runner_tests::TcpProxy;
    let s = setup(Backend::MariaDb, &[]).await;
    let db = s.tdb.db();
    let (ak, sk) = create(&db, &key(KeyOwner::User("ana".into()))).await;
    db.close().await;
    // The functions reach the database through a proxy the test can cut.
    let proxy = TcpProxy::start(TcpProxy::target_of(&s.tdb.url)).await;
    let settings = ai_runner::Settings::builder()
        .database_url(proxy.url_through(&s.tdb.url))
        .pepper(PEPPER)
        .var("ACCESS_MODE", "hmac")
        .build()
        .unwrap();
    let db = Db::new(settings.database.clone()).with_connect_timeout(Duration::from_secs(2));
    let down = Setup {
        state: App::with_db(&settings, db).unwrap(),
        ..s
    };
    assert_eq!(
        status(&signed_route_call(&down, &ak, &sk, "shop", "chat").await),
        200
    );
    proxy.cut();
    let resp = signed_route_call(&down, &ak, &sk, "shop", "chat").await;
    assert_eq!(
        (status(&resp), code(&resp)),
        (503, "ACCESS_UNAVAILABLE".into())
    );
    assert_eq!(
        down.server.requests().len(),
        1,
        "nothing was sent while the check could not run"
    );
    proxy.restore();
    assert_eq!(
        status(&signed_route_call(&down, &ak, &sk, "shop", "chat").await),
        200
    );
    down.tdb.cleanup().await;
}
