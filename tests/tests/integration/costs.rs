//! Costs and budgets end to end: prices imported from a real excerpt of LiteLLM's price map,
//! calls to a scripted OpenAI-protocol server whose `usage` objects are the providers' own
//! shapes, costs read back from the audit rows (hand-computed in each test), budgets reserved
//! and settled by the SQL store on SQLite and MariaDB, and the budget race from several
//! processes (`budget-worker`).

use std::sync::{Arc, Mutex};

use ai_runner::cost::litellm;
use ai_runner::demo::{ProviderServer, Reply, chat_completion};
use ai_runner::model::access::Caller;
use ai_runner::model::cost::{BudgetScope, Period, Price, Rate, femto};
use ai_runner::run::{RunContext, Trigger, Variables};
use ai_runner::store::Db;
use ai_runner_tests::{Backend, PEPPER, RouteSpec, TestDb, apply, fixture, runner, seed_route};
use serde_json::{Value, json};

/// A config `key` sending `model` through a connection of `provider` to `url`.
async fn config(db: &Db, key: &str, model: &str, provider: &str, url: &str, params: Option<Value>) {
    apply(
        db,
        json!({
            "connections": [{"name": format!("conn-{key}"), "provider": provider, "base_url": url, "api_key": "sk-cost-test-0001"}],
            "models": [{"name": model, "connection": format!("conn-{key}")}],
            "param_profiles": params.as_ref().map(|p| json!([{"name": format!("pp-{key}"), "params": p}])).unwrap_or(json!([])),
            "prompts": [{"name": format!("p-{key}"), "version": "v1", "messages": [{"role": "user", "content": "你好 {{X}}"}]}],
            "configs": [{"config_key": key, "model": model, "prompt": format!("p-{key}@v1"),
                         "param_profile": params.as_ref().map(|_| format!("pp-{key}"))}]
        }),
    )
    .await;
}

/// Imports the committed LiteLLM excerpt.
async fn import_litellm(db: &Db) -> usize {
    let map: Value = serde_json::from_str(&fixture("litellm/model_prices_excerpt.json")).unwrap();
    let (prices, _) = litellm::parse(&map, "litellm:excerpt").unwrap();
    db.set_prices(&prices, ai_runner::model::now_ms())
        .await
        .unwrap();
    prices.len()
}

/// A plain price in USD per token.
fn price(model: &str, input: f64, output: f64) -> Price {
    ai_runner_tests::price(model, &[(Rate::Input, input), (Rate::Output, output)])
}

/// A 200 answer with this `usage` object.
fn answer(content: &str, usage: Value) -> Reply {
    let mut body = chat_completion(content);
    body["usage"] = usage;
    Reply::Json {
        status: 200,
        body,
        headers: Vec::new(),
    }
}

fn vars() -> Variables {
    let mut v = Variables::new();
    v.insert("X".into(), json!("世界"));
    v
}

async fn row(db: &Db, id: Option<i64>) -> serde_json::Map<String, Value> {
    db.audit_row(id.expect("an audit row"))
        .await
        .unwrap()
        .unwrap()
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Runs `key` once against a server answering `reply`; returns the result's cost (nano-USD)
/// and its audit row.
async fn cost_of(
    tdb: &TestDb,
    model: &str,
    provider: &str,
    reply: Reply,
) -> (ai_runner::run::RunResult, serde_json::Map<String, Value>) {
    let server = ProviderServer::start(vec![reply]).await.unwrap();
    let db = tdb.db();
    let key = format!("k-{}", model.replace(['/', '.'], "-"));
    config(&db, &key, model, provider, &server.url(), None).await;
    let r = runner(&tdb.settings(&[]))
        .run_once(&key, &vars(), &RunContext::new(Trigger::Library))
        .await;
    let audit = row(&db, r.audit_id).await;
    (r, audit)
}

async fn hand_computed_costs_for_each_usage_shape(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    assert!(import_litellm(&db).await >= 12);

    // OpenAI, cached tokens inside prompt_tokens (gpt-4o: 2.5e-6 in, 1.25e-6 cached, 1e-5 out):
    // 86 x 2500 + 1920 x 1250 + 300 x 10000 nano = 5_615_000 nano-USD.
    let (r, a) = cost_of(
        &tdb,
        "gpt-4o",
        "openai",
        answer(
            "好",
            json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                   "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                   "completion_tokens_details": {"reasoning_tokens": 0}}),
        ),
    )
    .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(int(&a["cost_nano_usd"]), Some(5_615_000));
    assert_eq!(a["cost_status"], "priced");
    assert_eq!(r.cost, Some(0.005615));
    let gpt4o = db.list_prices(Some("gpt-4o"), false).await.unwrap();
    let openai_row = gpt4o
        .iter()
        .find(|p| p.model == "gpt-4o" && p.provider == "openai")
        .unwrap();
    assert_eq!(
        int(&a["price_id"]),
        Some(openai_row.id),
        "the connection's provider's row"
    );

    // Anthropic's shape, cache reads and writes beside input_tokens (claude-haiku-4-5: 1e-6
    // in, 1e-7 cache read, 1.25e-6 cache write, 5e-6 out):
    // 50 x 1000 + 1000 x 100 + 200 x 1250 + 70 x 5000 = 750_000 nano-USD.
    let (_, a) = cost_of(
        &tdb,
        "claude-haiku-4-5",
        "anthropic",
        answer(
            "好",
            json!({"input_tokens": 50, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 200, "output_tokens": 70}),
        ),
    )
    .await;
    assert_eq!(int(&a["cost_nano_usd"]), Some(750_000));

    // Reasoning tokens at their own price (DashScope qwen-turbo: 5e-8 in, 2e-7 out, 5e-7
    // reasoning): 100 x 50 + 260 x 200 + 640 x 500 = 377_000 nano-USD.
    let (_, a) = cost_of(
        &tdb,
        "qwen-turbo",
        "dashscope",
        answer(
            "好",
            json!({"prompt_tokens": 100, "completion_tokens": 900,
                   "completion_tokens_details": {"reasoning_tokens": 640}}),
        ),
    )
    .await;
    assert_eq!(int(&a["cost_nano_usd"]), Some(377_000));
    assert_eq!(a["cost_status"], "priced");

    // Audio tokens in and out (gpt-audio: 2.5e-6 text in, 3.2e-5 audio in, 1e-5 text out,
    // 6.4e-5 audio out): 20 x 2500 + 100 x 32000 + 200 x 10000 + 60 x 64000 = 9_090_000.
    let (_, a) = cost_of(
        &tdb,
        "gpt-audio",
        "openai",
        answer(
            "好",
            json!({"prompt_tokens": 120, "completion_tokens": 260,
                   "prompt_tokens_details": {"audio_tokens": 100},
                   "completion_tokens_details": {"audio_tokens": 60}}),
        ),
    )
    .await;
    assert_eq!(int(&a["cost_nano_usd"]), Some(9_090_000));

    // A model nobody priced: NULL and `unpriced`, never 0.
    let (r, a) = cost_of(
        &tdb,
        "house-model-7b",
        "custom",
        answer("好", json!({"prompt_tokens": 10, "completion_tokens": 5})),
    )
    .await;
    assert!(r.is_ok());
    assert_eq!(a["cost_nano_usd"], Value::Null);
    assert_eq!(a["cost_status"], "unpriced");
    assert_eq!(a["price_id"], Value::Null);
    assert_eq!(r.cost, None);
    assert_eq!(
        serde_json::to_value(&r).unwrap()["cost"],
        Value::Null,
        "the result says null, not 0"
    );
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn hand_computed_costs_for_each_usage_shape_on_sqlite() {
    hand_computed_costs_for_each_usage_shape(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn hand_computed_costs_for_each_usage_shape_on_mariadb() {
    hand_computed_costs_for_each_usage_shape(Backend::MariaDb).await;
}

/// Log lines written while `f` runs on this thread, as text.
async fn logs_of<F: std::future::Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(sub);
    f.await;
    drop(guard);
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn an_unpriced_model_is_warned_about_once_per_process_and_a_priced_one_never() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    let db = tdb.db();
    config(&db, "free", "house-model-7b", "custom", &server.url(), None).await;
    config(&db, "paid", "paid-model", "custom", &server.url(), None).await;
    db.set_prices(&[price("paid-model", 1e-6, 2e-6)], 0)
        .await
        .unwrap();
    let r = runner(&tdb.settings(&[]));
    let ctx = RunContext::new(Trigger::Library);
    let logs = logs_of(async {
        for _ in 0..3 {
            assert!(r.run_once("free", &vars(), &ctx).await.is_ok());
            assert!(r.run_once("paid", &vars(), &ctx).await.is_ok());
        }
    })
    .await;
    assert_eq!(
        logs.matches("model has no price").count(),
        1,
        "once per model per process: {logs}"
    );
    assert!(logs.contains("house-model-7b"));
    assert!(!logs.contains("paid-model"), "{logs}");
}

#[tokio::test]
async fn content_retries_and_route_handovers_are_all_in_the_routes_cost() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    // The first member asks for JSON and gets prose twice (one content retry), then the second
    // member answers: three billed calls of 12 prompt + 8 completion tokens each.
    let bad = ProviderServer::start(vec![Reply::content("不是 JSON")])
        .await
        .unwrap();
    let good = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    config(
        &db,
        "first",
        "model-a",
        "custom",
        &bad.url(),
        Some(json!({"JSON_SCHEMA_ENFORCE": true})),
    )
    .await;
    config(&db, "second", "model-b", "custom", &good.url(), None).await;
    // model-a: 12 x 1000 + 8 x 3000 = 36_000 per call; model-b: 12 x 2000 + 8 x 5000 = 64_000.
    db.set_prices(
        &[price("model-a", 1e-6, 3e-6), price("model-b", 2e-6, 5e-6)],
        0,
    )
    .await
    .unwrap();
    seed_route(
        &db,
        "shop",
        "chat",
        &RouteSpec::default(),
        &[("first", 1, 1), ("second", 2, 1)],
    )
    .await;
    let r = runner(&tdb.settings(&[("AI_CONTENT_RETRIES", "1")]))
        .run_route("shop", "chat", &vars(), &RunContext::new(Trigger::Library))
        .await;
    assert!(r.result.is_ok(), "{:?}", r.result.error);
    assert_eq!(bad.requests().len(), 2);
    assert_eq!(r.member_attempts.len(), 2);
    let first = row(&db, r.member_attempts[0].audit_id).await;
    assert_eq!(
        int(&first["cost_nano_usd"]),
        Some(72_000),
        "both calls of the member"
    );
    let second = row(&db, r.member_attempts[1].audit_id).await;
    assert_eq!(int(&second["cost_nano_usd"]), Some(64_000));
    assert_eq!(r.result.charge.unwrap().nano, Some(136_000));
    assert_eq!(r.result.cost, Some(0.000136));
    assert_eq!(r.member_attempts[0].cost, Some(0.000072));
}

/// An SSE stream: content deltas, then (maybe) a usage chunk, then a line that is not JSON.
fn broken_stream(with_usage: bool) -> Reply {
    let mut s = String::new();
    for piece in ["这是", "一段", "被打断的回答"] {
        s.push_str(&format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
        ));
    }
    if with_usage {
        s.push_str(&format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}})
        ));
    }
    s.push_str("data: {\"choices\": [ broken\n\n");
    Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: s.into_bytes(),
    }
}

#[tokio::test]
async fn a_stream_that_breaks_off_is_billed_by_its_usage_or_an_estimate() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    db.set_prices(
        &[price("stream-a", 1e-6, 2e-6), price("stream-b", 1e-6, 2e-6)],
        0,
    )
    .await
    .unwrap();
    let with = ProviderServer::start(vec![broken_stream(true)])
        .await
        .unwrap();
    let without = ProviderServer::start(vec![broken_stream(false)])
        .await
        .unwrap();
    let stream = Some(json!({"STREAM": true}));
    config(&db, "s1", "stream-a", "custom", &with.url(), stream.clone()).await;
    config(&db, "s2", "stream-b", "custom", &without.url(), stream).await;
    let r = runner(&tdb.settings(&[]));
    let ctx = RunContext::new(Trigger::Library);
    // The usage chunk came before the break: 40 x 1000 + 9 x 2000 = 58_000, priced.
    let a = r.run_once("s1", &vars(), &ctx).await;
    assert_eq!(a.error.as_ref().unwrap().code, "BAD_PROVIDER_RESPONSE");
    let ra = row(&db, a.audit_id).await;
    assert_eq!(int(&ra["cost_nano_usd"]), Some(58_000));
    assert_eq!(ra["cost_status"], "priced");
    assert!(
        ra["response_body_json"].as_str().unwrap().contains("一段"),
        "what arrived is kept"
    );
    // No usage: estimated from the request (4 bytes a token) and the 10 characters received
    // (3 tokens), never 0.
    let b = r.run_once("s2", &vars(), &ctx).await;
    let rb = row(&db, b.audit_id).await;
    assert_eq!(rb["cost_status"], "estimated");
    let sent = without.requests()[0].body_text.len() as i64;
    assert_eq!(
        int(&rb["cost_nano_usd"]),
        Some(sent / 4 * 1000 + 3 * 2000),
        "{rb:?}"
    );
}

#[tokio::test]
async fn a_refused_request_costs_nothing_and_says_so() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    db.set_prices(&[price("m", 1e-6, 2e-6)], 0).await.unwrap();
    let (r, a) = cost_of(&tdb, "m", "custom", Reply::error(400, "bad request")).await;
    assert!(!r.is_ok());
    assert_eq!(int(&a["cost_nano_usd"]), Some(0));
    assert_eq!(a["cost_status"], "priced");
}

#[tokio::test]
async fn a_changed_price_closes_the_old_row_and_old_audit_rows_keep_theirs() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let n = import_litellm(&db).await;
    let again = {
        let map: Value =
            serde_json::from_str(&fixture("litellm/model_prices_excerpt.json")).unwrap();
        let (prices, skipped) = litellm::parse(&map, "litellm:excerpt").unwrap();
        assert!(skipped.iter().any(|s| s.key == "sample_spec"));
        db.set_prices(&prices, ai_runner::model::now_ms())
            .await
            .unwrap()
    };
    assert_eq!((again.added, again.changed, again.unchanged), (0, 0, n));
    let qwen = db.list_prices(Some("qwen-plus"), false).await.unwrap();
    assert_eq!(qwen.len(), 1);
    assert_eq!(
        qwen[0].provider, "dashscope",
        "the provider prefix is taken off"
    );
    let mut dearer = qwen[0].clone();
    dearer.rates.0[Rate::Input as usize] = Some(femto(8e-7).unwrap());
    let at = ai_runner::model::now_ms();
    let changes = db.set_prices(&[dearer], at).await.unwrap();
    assert_eq!(changes.changed, 1);
    let history = db.list_prices(Some("qwen-plus"), true).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].valid_to_ms, Some(at));
    assert_eq!(history[1].valid_from_ms, at);
    assert_eq!(history[1].rates.get(Rate::Input), Some(800_000_000));
}

async fn budgets(tdb: &TestDb) -> Vec<ai_runner::model::cost::BudgetUse> {
    tdb.db()
        .budget_uses(ai_runner::model::now_ms())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_over_budget_is_refused_before_the_provider_and_audited() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    config(
        &db,
        "b",
        "budget-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 10})),
    )
    .await;
    db.set_prices(&[price("budget-model", 1e-6, 2e-6)], 0)
        .await
        .unwrap();
    // A daily limit below one call's maximum cost (every byte of the body an input token).
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 50_000)
        .await
        .unwrap();
    let r = runner(&tdb.settings(&[("PROJECT_NAME", "shop")]));
    let out = r
        .run_once("b", &vars(), &RunContext::new(Trigger::Library))
        .await;
    assert_eq!(out.error.as_ref().unwrap().code, "BUDGET_EXCEEDED");
    assert!(server.requests().is_empty(), "no provider call");
    let a = row(&db, out.audit_id).await;
    assert_eq!(a["error_code"], "BUDGET_EXCEEDED");
    assert_eq!(int(&a["cost_nano_usd"]), Some(0));
    let b = budgets(&tdb).await;
    assert_eq!((b[0].refused, b[0].calls, b[0].reserved_nano), (1, 0, 0));
    // Other projects are not covered.
    let other = runner(&tdb.settings(&[("PROJECT_NAME", "lab")]))
        .run_once("b", &vars(), &RunContext::new(Trigger::Library))
        .await;
    assert!(other.is_ok());
    // An unpriced model under a budget cannot be capped: refused too, with its own code.
    config(
        &db,
        "u",
        "nobody-priced-this",
        "custom",
        &server.url(),
        None,
    )
    .await;
    let u = r
        .run_once("u", &vars(), &RunContext::new(Trigger::Library))
        .await;
    assert_eq!(u.error.as_ref().unwrap().code, "BUDGET_UNPRICED");
    assert_eq!(server.requests().len(), 1, "still only the lab call");
}

#[tokio::test]
async fn an_access_keys_budget_covers_its_calls_and_the_use_is_settled_at_the_real_cost() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    config(
        &db,
        "k",
        "key-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 16})),
    )
    .await;
    db.set_prices(&[price("key-model", 1e-6, 2e-6)], 0)
        .await
        .unwrap();
    db.set_budget(BudgetScope::Key, "AKTEST1", Period::Month, 1_000_000_000)
        .await
        .unwrap();
    let ctx = RunContext {
        caller: Some(Caller {
            access_key_id: Some("AKTEST1".into()),
            principal: None,
            source_ip: None,
        }),
        ..RunContext::new(Trigger::Apigw)
    };
    let r = runner(&tdb.settings(&[]));
    for _ in 0..3 {
        assert!(r.run_once("k", &vars(), &ctx).await.is_ok());
    }
    // Three calls of 12 x 1000 + 8 x 2000 = 28_000 nano-USD; nothing left reserved.
    let b = budgets(&tdb).await;
    assert_eq!(b[0].budget.scope, BudgetScope::Key);
    assert_eq!(
        (b[0].used_nano, b[0].reserved_nano, b[0].calls),
        (84_000, 0, 3)
    );
    // A call without the key is not counted.
    assert!(
        r.run_once("k", &vars(), &RunContext::new(Trigger::Library))
            .await
            .is_ok()
    );
    assert_eq!(budgets(&tdb).await[0].calls, 3);
}

#[tokio::test(flavor = "current_thread")]
async fn crossing_80_and_100_percent_of_a_budget_is_warned_once_each() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    // The provider reports more tokens than the request could hold (300 + 1 at 1 nano-USD
    // each), so each call costs more than its reservation (~ the body's 90 bytes + 1): the
    // fourth call is let in under the limit and crosses it.
    let server = ProviderServer::start(vec![answer(
        "好",
        json!({"prompt_tokens": 300, "completion_tokens": 1}),
    )])
    .await
    .unwrap();
    config(
        &db,
        "w",
        "warn-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 1})),
    )
    .await;
    db.set_prices(&[price("warn-model", 1e-9, 1e-9)], 0)
        .await
        .unwrap();
    db.set_budget(BudgetScope::Route, "shop/chat", Period::Day, 1_100)
        .await
        .unwrap();
    seed_route(&db, "shop", "chat", &RouteSpec::default(), &[("w", 1, 1)]).await;
    let r = runner(&tdb.settings(&[]));
    let mut refused = 0;
    let logs = logs_of(async {
        for _ in 0..60 {
            let out = r
                .run_route("shop", "chat", &vars(), &RunContext::new(Trigger::Library))
                .await;
            if out
                .result
                .error
                .as_ref()
                .is_some_and(|e| e.code == "BUDGET_EXCEEDED")
            {
                refused += 1;
            }
        }
    })
    .await;
    let warned = |pct: &str| {
        logs.lines()
            .filter(|l| l.contains("budget.threshold") && l.contains(&format!("\"percent\":{pct}")))
            .count()
    };
    assert_eq!(warned("80"), 1, "{logs}");
    assert_eq!(warned("100"), 1, "{logs}");
    assert_eq!(refused, 56, "every call after the fourth");
    let b = budgets(&tdb).await;
    assert_eq!(
        b[0].used_nano,
        4 * 301,
        "past the limit by less than one call"
    );
    assert_eq!(server.requests().len(), 4);
}

/// The review's case: a param profile with `N: 10, MAX_TOKENS: 100` at 0.001 USD per output
/// token can answer 1.00 USD (ten answers of 100 tokens), not the 0.10 of one. Reserved as
/// such, it is refused by a 0.15 USD budget before the provider (it used to be let in and spend
/// 667% of it), and under a budget with room it settles at its real cost.
#[tokio::test]
async fn several_answers_are_reserved_as_many_answers() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![answer(
        "好",
        json!({"prompt_tokens": 12, "completion_tokens": 1000, "total_tokens": 1012}),
    )])
    .await
    .unwrap();
    config(
        &db,
        "n10",
        "n-model",
        "custom",
        &server.url(),
        Some(json!({"N": 10, "MAX_TOKENS": 100})),
    )
    .await;
    db.set_prices(&[price("n-model", 0.0, 0.001)], 0)
        .await
        .unwrap();
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 150_000_000)
        .await
        .unwrap();
    let r = runner(&tdb.settings(&[("PROJECT_NAME", "shop"), ("COST_CACHE_SECS", "0")]));
    let ctx = RunContext::new(Trigger::Library);
    let refused = r.run_once("n10", &vars(), &ctx).await;
    assert_eq!(
        refused.error.as_ref().map(|e| e.code.as_str()),
        Some("BUDGET_EXCEEDED")
    );
    assert!(server.requests().is_empty(), "no provider call");
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 1_500_000_000)
        .await
        .unwrap();
    let out = r.run_once("n10", &vars(), &ctx).await;
    assert!(out.is_ok(), "{:?}", out.error);
    assert_eq!(server.requests()[0].body["n"], 10);
    let b = budgets(&tdb).await;
    assert_eq!(
        (b[0].used_nano, b[0].reserved_nano, b[0].refused),
        (1_000_000_000, 0, 1)
    );
}

/// The review's case: a model priced per second called with a recording nobody measured used
/// to reserve 1 nano-USD and be charged `unpriced`, so five audio calls went through a
/// 0.000001 USD budget. The duration is now reserved at its longest: from the upload's size at
/// 1,000 B/s, else `COST_MEDIA_MAX_SECONDS`; the call is refused when that does not fit, and one
/// that fits settles at what it reserved while its audit row keeps the cost unknown.
#[tokio::test]
async fn an_unknown_duration_billed_per_second_is_reserved_at_its_longest_and_settled_there() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![answer(
        "好",
        json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}),
    )])
    .await
    .unwrap();
    config(&db, "asr", "asr-model", "custom", &server.url(), None).await;
    db.set_prices(
        &[ai_runner_tests::price(
            "asr-model",
            &[(Rate::PerSecond, 0.0001)],
        )],
        0,
    )
    .await
    .unwrap();
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 1_000)
        .await
        .unwrap();
    let r = runner(&tdb.settings(&[
        ("PROJECT_NAME", "shop"),
        ("COST_CACHE_SECS", "0"),
        ("COST_MEDIA_MAX_SECONDS", "60"),
    ]));
    let ctx = RunContext::new(Trigger::Library);
    for _ in 0..5 {
        let refused = r.run_once("asr", &vars(), &ctx).await;
        assert_eq!(
            refused.error.as_ref().map(|e| e.code.as_str()),
            Some("BUDGET_EXCEEDED")
        );
    }
    assert!(server.requests().is_empty(), "no provider call");

    // Room for one: 60 s x 0.0001 USD = 0.006 USD reserved, and settled at that.
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 10_000_000)
        .await
        .unwrap();
    let out = r.run_once("asr", &vars(), &ctx).await;
    assert!(out.is_ok(), "{:?}", out.error);
    let audited = row(&db, out.audit_id).await;
    assert_eq!(
        (
            audited["cost_nano_usd"].clone(),
            audited["cost_status"].clone()
        ),
        (Value::Null, json!("unpriced"))
    );
    let b = budgets(&tdb).await;
    assert_eq!((b[0].used_nano, b[0].reserved_nano), (6_000_000, 0));

    // A 40,000-byte upload lasts at most 40 s: 0.004 USD, whatever the maximum says.
    let sized = RunContext {
        media_bytes: Some(40_000),
        ..RunContext::new(Trigger::Library)
    };
    let out = r.run_once("asr", &vars(), &sized).await;
    assert!(out.is_ok(), "{:?}", out.error);
    assert_eq!(budgets(&tdb).await[0].used_nano, 6_000_000 + 4_000_000);
    // No room for a 40 s upload: refused, still no call beyond the two.
    let big = RunContext {
        media_bytes: Some(1_000_000),
        ..RunContext::new(Trigger::Library)
    };
    let refused = r.run_once("asr", &vars(), &big).await;
    assert_eq!(
        refused.error.as_ref().map(|e| e.code.as_str()),
        Some("BUDGET_EXCEEDED")
    );
    assert_eq!(server.requests().len(), 2);
}

/// A timed-out attempt may have been billed, so its retry is sent only once another attempt's
/// maximum cost is reserved: with room for one attempt the retry is not sent (the timeout is
/// the answer, what it may have cost is settled); with room for two it is, and both attempts
/// are settled. (One reservation used to cover every retry while each billed attempt was
/// charged on top.)
#[tokio::test]
async fn a_retry_of_a_billed_attempt_is_sent_only_when_reserved_too() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    db.set_prices(&[price("retry-model", 1e-9, 2e-6)], 0)
        .await
        .unwrap();
    let ctx = RunContext::new(Trigger::Library);
    for (room_for, requests) in [(1, 1), (2, 2)] {
        let server = ProviderServer::start(vec![
            Reply::Delayed(
                std::time::Duration::from_secs(3),
                Box::new(Reply::content("太慢")),
            ),
            answer(
                "好",
                json!({"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}),
            ),
        ])
        .await
        .unwrap();
        let key = format!("retry{room_for}");
        config(
            &db,
            &key,
            "retry-model",
            "custom",
            &server.url(),
            Some(json!({"MAX_TOKENS": 10})),
        )
        .await;
        let target = format!("shop-{room_for}");
        let runner = runner(&tdb.settings(&[
            ("PROJECT_NAME", target.as_str()),
            ("COST_CACHE_SECS", "0"),
            ("AI_TIMEOUT", "0.5"),
            ("AI_MAX_RETRIES", "1"),
        ]));
        let dry = runner.dry_run_config(&key, &vars()).await.unwrap();
        let prices = db.list_prices(Some("retry-model"), false).await.unwrap();
        let attempt = ai_runner::cost::book::max_cost(&prices[0], &dry.body, None).unwrap();
        db.set_budget(
            BudgetScope::Project,
            &target,
            Period::Day,
            room_for * attempt + attempt / 2,
        )
        .await
        .unwrap();
        let out = runner.run_once(&key, &vars(), &ctx).await;
        assert_eq!(server.requests().len(), requests, "room for {room_for}");
        // The timed-out attempt is estimated at four bytes a token of the request.
        let sent = server.requests()[0].body_text.len() as i64;
        let timed_out = sent / 4;
        let b = budgets(&tdb).await;
        let b = b.iter().find(|u| u.budget.target == target).unwrap();
        if room_for == 1 {
            assert_eq!(
                out.error.as_ref().map(|e| e.code.as_str()),
                Some("NETWORK_TIMEOUT"),
                "{out:?}"
            );
            assert_eq!(
                (b.used_nano, b.reserved_nano, b.calls, b.refused),
                (timed_out, 0, 1, 1),
                "the retry's reservation was refused"
            );
        } else {
            assert!(out.is_ok(), "{:?}", out.error);
            assert_eq!(
                (b.used_nano, b.reserved_nano, b.calls, b.refused),
                (timed_out + 12 + 20_000, 0, 1, 0)
            );
        }
        assert!(b.used_nano <= b.budget.limit_nano);
    }
    db.close().await;
    tdb.cleanup().await;
}

/// Starts `processes` budget-worker processes, each firing `calls` runs at once; returns the
/// sum of their successful calls and refusals.
async fn race(tdb: &TestDb, url: &str, processes: usize, calls: usize) -> (u64, u64) {
    let start = ai_runner::model::now_ms() + 1500;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_budget-worker"))
                .env("DATABASE_URL", &tdb.url)
                .env("AI_PEPPER", PEPPER)
                .env("PROJECT_NAME", "race")
                .env("WORKER_CALLS", calls.to_string())
                .env("WORKER_START_MS", start.to_string())
                .env("WORKER_PROVIDER", url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for c in children {
        let out = c.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ok += v["ok"].as_u64().unwrap();
        refused += v["refused"].as_u64().unwrap();
        assert_eq!(v["other"], json!({}), "no other failure: {v}");
    }
    (ok, refused)
}

/// 80 calls from 4 processes at once against a budget with room for exactly 30 reservations.
/// A call's reservation and its real cost are the same 20_000 nano-USD (input is free, the
/// answer is always the 10 tokens `MAX_TOKENS` allows at 2_000 nano-USD each), so whatever the
/// interleaving, used + reserved is 20_000 x the calls admitted so far: an atomic reservation
/// admits exactly 30, and one that reads the budget and then writes it admits more.
async fn concurrent_processes_are_admitted_exactly_as_far_as_the_budget_reaches(backend: Backend) {
    const CALL_NANO: i64 = 20_000;
    const ROOM_FOR: u64 = 30;
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::Delayed(
        std::time::Duration::from_millis(20),
        Box::new(answer(
            "好",
            json!({"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}),
        )),
    )])
    .await
    .unwrap();
    config(
        &db,
        "race",
        "race-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 10})),
    )
    .await;
    db.set_prices(&[price("race-model", 0.0, 2e-6)], 0)
        .await
        .unwrap();
    // Room for 30 reservations and half of another: the 31st never fits.
    let limit = ROOM_FOR as i64 * CALL_NANO + CALL_NANO / 2;
    db.set_budget(BudgetScope::Project, "race", Period::Day, limit)
        .await
        .unwrap();
    let (ok, refused) = race(&tdb, &server.url(), 4, 20).await;
    assert_eq!(
        (ok, refused),
        (ROOM_FOR, 80 - ROOM_FOR),
        "exactly as many calls as the budget has room for"
    );
    assert_eq!(
        server.requests().len() as u64,
        ok,
        "refused calls never reached the provider"
    );
    let b = budgets(&tdb).await;
    assert_eq!(
        b[0].used_nano,
        ROOM_FOR as i64 * CALL_NANO,
        "every call settled at its real cost"
    );
    assert!(b[0].used_nano <= limit, "{b:?}");
    assert_eq!(
        (b[0].reserved_nano, b[0].calls as u64, b[0].refused as u64),
        (0, ok, refused)
    );
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn concurrent_processes_are_admitted_exactly_as_far_as_the_budget_reaches_on_sqlite() {
    concurrent_processes_are_admitted_exactly_as_far_as_the_budget_reaches(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn concurrent_processes_are_admitted_exactly_as_far_as_the_budget_reaches_on_mariadb() {
    concurrent_processes_are_admitted_exactly_as_far_as_the_budget_reaches(Backend::MariaDb).await;
}

/// Starts a budget-worker making one call of config `race` now, waits until the provider has
/// the request, and kills the process there (SIGKILL: nothing of it runs again).
async fn kill_mid_call(tdb: &TestDb, hanging: &ProviderServer, settings: &[(&str, &str)]) {
    let before = hanging.requests().len();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_budget-worker"))
        .env("DATABASE_URL", &tdb.url)
        .env("AI_PEPPER", PEPPER)
        .env("PROJECT_NAME", "race")
        .env("WORKER_CALLS", "1")
        .env("WORKER_START_MS", ai_runner::model::now_ms().to_string())
        .envs(settings.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..2000 {
        if hanging.requests().len() > before {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the worker ended before its call: {status:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        hanging.requests().len(),
        before + 1,
        "the worker is mid-call"
    );
    child.kill().await.unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed: {status:?}");
}

/// Processes killed mid-call (SIGKILL, against a provider that never answers) leave their
/// reservations behind: each is listed with its identity, its call's trace and an expiry past
/// the call's end (the worker's 5 s attempt, no retry, plus a 1 s grace), and holds its room
/// until then; `budget release` frees one by hand, and once one has expired the next call
/// that needs its room reclaims it (without this, every later call is refused until the
/// window ends).
async fn reservations_left_by_killed_processes_are_released_or_reclaimed(backend: Backend) {
    use std::time::Duration;
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    let hanging = ProviderServer::start(vec![Reply::Delayed(
        Duration::from_secs(600),
        Box::new(Reply::content("好")),
    )])
    .await
    .unwrap();
    let good = ProviderServer::start(vec![answer(
        "好",
        json!({"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}),
    )])
    .await
    .unwrap();
    // Input free, 10 answer tokens at 2_000 nano-USD: every call reserves 20_000.
    let ten = Some(json!({"MAX_TOKENS": 10}));
    config(
        &db,
        "race",
        "race-model",
        "custom",
        &hanging.url(),
        ten.clone(),
    )
    .await;
    config(&db, "next", "next-model", "custom", &good.url(), ten).await;
    db.set_prices(
        &[
            price("race-model", 0.0, 2e-6),
            price("next-model", 0.0, 2e-6),
        ],
        0,
    )
    .await
    .unwrap();
    // Room for one reservation, not two.
    db.set_budget(BudgetScope::Project, "race", Period::Day, 30_000)
        .await
        .unwrap();
    let worker = [
        ("AI_TIMEOUT", "5"),
        ("AI_MAX_RETRIES", "0"),
        ("COST_RESERVATION_GRACE_SECS", "1"),
    ];
    let r = runner(&tdb.settings(&[("PROJECT_NAME", "race"), ("COST_CACHE_SECS", "0")]));
    let ctx = RunContext::new(Trigger::Library);

    kill_mid_call(&tdb, &hanging, &worker).await;
    let b = budgets(&tdb).await;
    assert_eq!((b[0].used_nano, b[0].reserved_nano), (0, 20_000));
    assert_eq!(b[0].reservations.len(), 1, "{b:?}");
    let left = b[0].reservations[0].clone();
    assert_eq!(left.id.len(), 32);
    assert_eq!(left.amount_nano, 20_000);
    assert_eq!(
        left.expires_ms - left.created_ms,
        6_000,
        "the attempt's 5 s and the grace"
    );
    let trace = left.trace_id.clone().unwrap();
    assert_eq!(
        hanging.requests()[0].headers.get("x-trace-id"),
        Some(&trace),
        "the call it belongs to"
    );
    let refused = r.run_once("next", &vars(), &ctx).await;
    assert_eq!(
        refused.error.as_ref().map(|e| e.code.as_str()),
        Some("BUDGET_EXCEEDED"),
        "held while it may still be running"
    );
    let released = db
        .release_reservations(std::slice::from_ref(&left.id), None)
        .await
        .unwrap();
    assert_eq!(released, [left]);
    let b = budgets(&tdb).await;
    assert_eq!((b[0].reserved_nano, b[0].reservations.len()), (0, 0));
    let ok = r.run_once("next", &vars(), &ctx).await;
    assert!(ok.is_ok(), "{:?}", ok.error);

    // Another one left behind (room for it beside the settled call, not for a third), this
    // time waited out: the next call that finds no room reclaims it.
    db.set_budget(BudgetScope::Project, "race", Period::Day, 50_000)
        .await
        .unwrap();
    kill_mid_call(&tdb, &hanging, &worker).await;
    let b = budgets(&tdb).await;
    assert_eq!((b[0].used_nano, b[0].reserved_nano), (20_000, 20_000));
    let left = b[0].reservations[0].clone();
    let refused = r.run_once("next", &vars(), &ctx).await;
    assert_eq!(
        refused.error.as_ref().map(|e| e.code.as_str()),
        Some("BUDGET_EXCEEDED")
    );
    let wait = left.expires_ms - ai_runner::model::now_ms() + 50;
    tokio::time::sleep(Duration::from_millis(wait.max(0).unsigned_abs())).await;
    let ok = r.run_once("next", &vars(), &ctx).await;
    assert!(
        ok.is_ok(),
        "the expired reservation was reclaimed: {:?}",
        ok.error
    );
    let b = budgets(&tdb).await;
    assert_eq!(
        (b[0].used_nano, b[0].reserved_nano, b[0].calls, b[0].refused),
        (40_000, 0, 2, 2)
    );
    assert!(b[0].reservations.is_empty());
    assert_eq!(good.requests().len(), 2);
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn reservations_left_by_killed_processes_are_released_or_reclaimed_on_sqlite() {
    reservations_left_by_killed_processes_are_released_or_reclaimed(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn reservations_left_by_killed_processes_are_released_or_reclaimed_on_mariadb() {
    reservations_left_by_killed_processes_are_released_or_reclaimed(Backend::MariaDb).await;
}

/// A database migrated before the reservations table (version 10): budgets still bind, their
/// reservations anonymous as they were (reserved and settled by amount), `budget list` shows
/// none held and a release says the table is missing.
async fn a_database_without_the_reservations_table_reserves_anonymously(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    on_pool(&db, "DROP TABLE ai_budget_reservation").await;
    let server = ProviderServer::start(vec![answer(
        "好",
        json!({"prompt_tokens": 12, "completion_tokens": 10}),
    )])
    .await
    .unwrap();
    config(
        &db,
        "old",
        "old-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 10})),
    )
    .await;
    db.set_prices(&[price("old-model", 0.0, 2e-6)], 0)
        .await
        .unwrap();
    db.set_budget(BudgetScope::Project, "shop", Period::Day, 50_000)
        .await
        .unwrap();
    let r = runner(&tdb.settings(&[("PROJECT_NAME", "shop")]));
    let ctx = RunContext::new(Trigger::Library);
    for _ in 0..2 {
        let out = r.run_once("old", &vars(), &ctx).await;
        assert!(out.is_ok(), "{:?}", out.error);
    }
    let refused = r.run_once("old", &vars(), &ctx).await;
    assert_eq!(refused.error.as_ref().unwrap().code, "BUDGET_EXCEEDED");
    let b = budgets(&tdb).await;
    assert_eq!(
        (b[0].used_nano, b[0].reserved_nano, b[0].calls, b[0].refused),
        (40_000, 0, 2, 1)
    );
    assert!(b[0].reservations.is_empty());
    let e = db.release_reservations(&[], Some(0)).await.unwrap_err();
    assert_eq!(e.code().as_str(), "SCHEMA_OUTDATED");
    db.close().await;
    tdb.cleanup().await;
}

/// Runs one statement on `db`'s pool.
async fn on_pool(db: &Db, sql: &str) {
    match db.pool().await.unwrap() {
        ai_runner::store::Pool::MySql(p) => {
            sqlx::raw_sql(sql).execute(p).await.unwrap();
        }
        ai_runner::store::Pool::Sqlite(p) => {
            sqlx::raw_sql(sql).execute(p).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_database_without_the_reservations_table_reserves_anonymously_on_sqlite() {
    a_database_without_the_reservations_table_reserves_anonymously(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn a_database_without_the_reservations_table_reserves_anonymously_on_mariadb() {
    a_database_without_the_reservations_table_reserves_anonymously(Backend::MariaDb).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn an_unmigrated_predecessor_database_still_runs_calls_without_costs() {
    let tdb = TestDb::new(Backend::MariaDbUnmigrated).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    config(&db, "old", "old-model", "custom", &server.url(), None).await;
    let r = runner(&tdb.settings(&[("PROJECT_NAME", "shop")]))
        .run_once("old", &vars(), &RunContext::new(Trigger::Library))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(
        r.cost_status,
        Some(ai_runner::model::cost::CostStatus::Unpriced)
    );
    let a = row(&db, r.audit_id).await;
    assert!(!a.contains_key("cost_nano_usd"));
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn a_signed_api_call_over_its_keys_budget_gets_402_and_no_provider_call() {
    use ai_runner::function::{Call, Function};
    use ai_runner::model::access::KeyOwner;
    use ai_runner::store::access::NewKey;
    use ai_runner_tests::{api_event, keyring, python_sign};
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let server = ProviderServer::start(vec![Reply::content("好")])
        .await
        .unwrap();
    config(
        &db,
        "api",
        "api-model",
        "custom",
        &server.url(),
        Some(json!({"MAX_TOKENS": 8})),
    )
    .await;
    seed_route(&db, "shop", "chat", &RouteSpec::default(), &[("api", 1, 1)]).await;
    db.set_prices(&[price("api-model", 1e-6, 2e-6)], 0)
        .await
        .unwrap();
    let (ak, sk) = db
        .create_access_key(&keyring(), &NewKey::new(KeyOwner::User("ana".into())))
        .await
        .unwrap();
    // Room for one call's reservation (~ the body's bytes x 1000 + 8 x 2000), not two.
    db.set_budget(BudgetScope::Key, &ak, Period::Day, 400_000)
        .await
        .unwrap();
    let state = ai_runner::app::App::new(&tdb.settings(&[("ACCESS_MODE", "hmac")])).unwrap();
    let call = |n: u32| {
        let body = json!({"project": "shop", "route_key": "chat", "variables": {"X": n}});
        let signed = python_sign(&ak, sk.expose(), &body, None, None, "/run-route");
        api_event("/run-route", &signed.body, &signed.headers, "203.0.113.7")
    };
    let first = Function::RunRoute
        .handle(&state, call(1), Call::default())
        .await
        .unwrap();
    assert_eq!(first["statusCode"], 200, "{first}");
    let answer: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["cost"], 2.8e-05, "{answer}");
    let mut refused = None;
    for n in 2..30 {
        let r = Function::RunRoute
            .handle(&state, call(n), Call::default())
            .await
            .unwrap();
        if r["statusCode"] != 200 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the key's budget runs out");
    assert_eq!(refused["statusCode"], 402);
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "BUDGET_EXCEEDED");
    let b = budgets(&tdb).await;
    assert_eq!(
        b[0].calls as usize,
        server.requests().len(),
        "only admitted calls reached it"
    );
    assert_eq!(b[0].used_nano, b[0].calls * 28_000);
}

/// The cost paths when the database fails, injected for real on MariaDB: a user the server
/// denies one cost table (the statement fails as a revoked grant or a damaged table would), and
/// the connection cut while the provider answers.
mod database_faults {
    use super::*;
    use sqlx::Connection;

    /// A user of `tdb`'s database with every privilege on every table but `denied`; its URL.
    async fn user_without(tdb: &TestDb, denied: &str) -> (String, String) {
        let mut admin = sqlx::MySqlConnection::connect(&tdb.url).await.unwrap();
        let name = tdb.url.rsplit('/').next().unwrap().to_owned();
        let user = format!("u{}", &name[name.len() - 12..]);
        let tables: Vec<String> = sqlx::query_scalar("SHOW TABLES")
            .fetch_all(&mut admin)
            .await
            .unwrap();
        for host in ["127.0.0.1", "localhost"] {
            sqlx::raw_sql(&format!(
                "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY 'pw-{user}'"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
            for t in tables.iter().filter(|t| t.as_str() != denied) {
                sqlx::raw_sql(&format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON `{name}`.`{t}` TO '{user}'@'{host}'"
                ))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
        admin.close().await.unwrap();
        let server = tdb.url.split("://").nth(1).unwrap();
        let hostport = server.split('@').nth(1).unwrap().split('/').next().unwrap();
        (format!("mysql://{user}:pw-{user}@{hostport}/{name}"), user)
    }

    async fn drop_user(tdb: &TestDb, user: &str) {
        let mut admin = sqlx::MySqlConnection::connect(&tdb.url).await.unwrap();
        for host in ["127.0.0.1", "localhost"] {
            sqlx::raw_sql(&format!("DROP USER IF EXISTS '{user}'@'{host}'"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        admin.close().await.unwrap();
    }

    fn settings(url: &str) -> ai_runner::Settings {
        ai_runner::Settings::builder()
            .database_url(url)
            .pepper(PEPPER)
            .var("PROJECT_NAME", "shop")
            .var("AI_RETRY_BASE_MS", "1")
            .var("AI_MAX_RETRIES", "0")
            .build()
            .unwrap()
    }

    #[tokio::test]
    #[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
    async fn budgets_that_cannot_be_read_refuse_the_call_before_the_provider_and_audit_it() {
        let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
        let db = tdb.db();
        let server = ProviderServer::start(vec![Reply::content("好")])
            .await
            .unwrap();
        config(&db, "fb", "fault-model", "custom", &server.url(), None).await;
        db.set_prices(&[price("fault-model", 1e-6, 2e-6)], 0)
            .await
            .unwrap();
        db.set_budget(BudgetScope::Project, "shop", Period::Day, 1_000_000_000)
            .await
            .unwrap();
        let (url, user) = user_without(&tdb, "ai_budget").await;
        let out = runner(&settings(&url))
            .run_once("fb", &vars(), &RunContext::new(Trigger::Library))
            .await;
        let code = out
            .error
            .as_ref()
            .map(|e| e.code.clone())
            .unwrap_or_default();
        assert_eq!(code, "DB_ERROR", "fails closed: {out:?}");
        assert!(server.requests().is_empty(), "no provider call");
        let a = row(&db, out.audit_id).await;
        assert_eq!(a["error_code"], "DB_ERROR", "the refused call is audited");
        db.close().await;
        drop_user(&tdb, &user).await;
        tdb.cleanup().await;
    }

    #[tokio::test]
    #[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
    async fn prices_that_cannot_be_read_leave_an_unbudgeted_call_unpriced_and_a_budgeted_one_refused()
     {
        let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
        let db = tdb.db();
        let server = ProviderServer::start(vec![Reply::content("好")])
            .await
            .unwrap();
        config(&db, "fp", "fault-model", "custom", &server.url(), None).await;
        db.set_prices(&[price("fault-model", 1e-6, 2e-6)], 0)
            .await
            .unwrap();
        let (url, user) = user_without(&tdb, "ai_model_price").await;
        let out = runner(&settings(&url))
            .run_once("fp", &vars(), &RunContext::new(Trigger::Library))
            .await;
        assert!(out.is_ok(), "{:?}", out.error);
        assert_eq!(server.requests().len(), 1);
        let a = row(&db, out.audit_id).await;
        assert_eq!(a["cost_status"], "unpriced");
        assert_eq!(a["cost_nano_usd"], Value::Null, "unknown, never 0");

        db.set_budget(BudgetScope::Project, "shop", Period::Day, 1_000_000_000)
            .await
            .unwrap();
        let out = runner(&settings(&url))
            .run_once("fp", &vars(), &RunContext::new(Trigger::Library))
            .await;
        assert_eq!(out.error.as_ref().unwrap().code, "DB_ERROR");
        assert_eq!(
            server.requests().len(),
            1,
            "a budgeted call it cannot cap is not made"
        );
        db.close().await;
        drop_user(&tdb, &user).await;
        tdb.cleanup().await;
    }

    #[tokio::test]
    #[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
    async fn a_settlement_the_database_misses_keeps_the_reservation_and_the_answer_stands() {
        use ai_runner::provider::HttpProvider;
        use ai_runner::spool::AuditSpool;
        use ai_runner_tests::TcpProxy;
        use std::time::Duration;

        let tdb = TestDb::new(Backend::MariaDb).await.unwrap();
        let db = tdb.db();
        let slow = ProviderServer::start(vec![Reply::Delayed(
            Duration::from_millis(400),
            Box::new(Reply::content("好")),
        )])
        .await
        .unwrap();
        config(
            &db,
            "fs",
            "fault-model",
            "custom",
            &slow.url(),
            Some(json!({"MAX_TOKENS": 10})),
        )
        .await;
        db.set_prices(&[price("fault-model", 1e-6, 2e-6)], 0)
            .await
            .unwrap();
        db.set_budget(BudgetScope::Project, "shop", Period::Day, 1_000_000_000)
            .await
            .unwrap();
        let proxy = TcpProxy::start(TcpProxy::target_of(&tdb.url)).await;
        let s = settings(&proxy.url_through(&tdb.url));
        let spool_dir = tempfile::tempdir().unwrap();
        let r = Arc::new(
            ai_runner::Runner::new(
                Db::new(s.database.clone()).with_connect_timeout(Duration::from_secs(2)),
                HttpProvider::new(s.http.clone()).unwrap(),
                &s,
            )
            .with_audit_spool(Some(AuditSpool {
                store: Arc::new(ai_runner::objects::LocalStore::new(spool_dir.path())),
                bucket: "spool".into(),
                prefix: "audit/".into(),
            })),
        );
        let call = tokio::spawn({
            let r = r.clone();
            async move {
                r.run_once("fs", &vars(), &RunContext::new(Trigger::Library))
                    .await
            }
        });
        for _ in 0..500 {
            if !slow.requests().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Reserved and calling: the database goes away before the settlement.
        proxy.cut();
        let out = call.await.unwrap();
        proxy.restore();
        assert!(out.is_ok(), "the answer stands: {:?}", out.error);
        assert_eq!(out.content.as_deref(), Some("好"));
        assert!(out.audit_deferred.is_some(), "its row waits in the spool");
        let uses = budgets(&tdb).await;
        assert_eq!(uses.len(), 1);
        assert!(
            uses[0].reserved_nano > 0 && uses[0].used_nano == 0,
            "the reservation stays (never less than could have been spent): {:?}",
            uses[0]
        );
        db.close().await;
        tdb.cleanup().await;
    }
}
