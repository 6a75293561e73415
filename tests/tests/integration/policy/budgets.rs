//! Budgets on fakes, through the runner: a call reserves its maximum cost before the provider
//! is called and settles at its real cost after; the call that would pass the limit is refused
//! without a provider call (its audit row says so and costs nothing); concurrent calls fill a
//! budget exactly and never past it; a budget over an unpriced model refuses, no budget lets an
//! unpriced call through as unpriced.

use ai_runner::cost::book;
use ai_runner::model::cost::{BudgetScope, Period, Price, Rate};
use ai_runner::model::now_ms;
use ai_runner::run::Runner;
use ai_runner::{RunContext, RunResult, Variables};
use ai_runner_tests::fake::{self, Answer, MemoryStore, ScriptedProvider, Window, url};

/// What one call costs: 100 prompt tokens at 1e-6 USD and 50 completion tokens at 2e-6 USD.
const COST_NANO: i64 = 200_000;

fn price() -> Price {
    ai_runner_tests::price("model-a", &[(Rate::Input, 1e-6), (Rate::Output, 2e-6)])
}

/// Config `a` (priced, answering with [`COST_NANO`] of usage) run under project `proj`.
fn priced(provider: &ScriptedProvider) -> (MemoryStore, Runner<MemoryStore, ScriptedProvider>) {
    let store = MemoryStore::new();
    store.add_config(fake::config("a"));
    store.add_price(price());
    provider.script(&url("a"), [Answer::usage("回答", 100, 50)]);
    let r = fake::runner(
        &store,
        provider,
        &fake::settings(&[("PROJECT_NAME", "proj")]),
    );
    (store, r)
}

/// The most call `a` can cost: what the runner reserves.
async fn max_cost(r: &Runner<MemoryStore, ScriptedProvider>) -> i64 {
    let dry = r.dry_run_config("a", &Variables::new()).await.unwrap();
    book::max_cost(&price(), &dry.body, None).unwrap()
}

async fn call(r: &Runner<MemoryStore, ScriptedProvider>, key: &str) -> RunResult {
    r.run_once(
        key,
        &Variables::new(),
        &RunContext::new(ai_runner::Trigger::Library),
    )
    .await
}

fn code(r: &RunResult) -> Option<&str> {
    r.error.as_ref().map(|e| e.code.as_str())
}

#[tokio::test]
async fn the_call_that_would_pass_the_limit_is_refused_before_the_provider_and_settled_calls_count_their_real_cost()
 {
    let provider = ScriptedProvider::new();
    let (store, r) = priced(&provider);
    let max = max_cost(&r).await;
    assert!(max > COST_NANO, "the reservation is the worst case");
    // Room for one reservation on top of one settled call, to the nano-USD.
    let budget = store.set_budget(BudgetScope::Project, "proj", Period::Day, max + COST_NANO);
    let window = budget.period.window(now_ms());

    let first = call(&r, "a").await;
    assert!(first.is_ok(), "{:?}", first.error);
    assert_eq!(first.charge.and_then(|c| c.nano), Some(COST_NANO));
    assert_eq!(
        store.window(budget.id, &window),
        Window {
            used: COST_NANO,
            reserved: 0,
            calls: 1,
            refused: 0
        },
        "the reservation became the real cost"
    );
    let second = call(&r, "a").await;
    assert!(
        second.is_ok(),
        "used + max == limit still fits: {:?}",
        second.error
    );
    let third = call(&r, "a").await;
    assert_eq!(code(&third), Some("BUDGET_EXCEEDED"));
    assert_eq!(
        provider.sent().len(),
        2,
        "the refused call reached no provider"
    );
    assert_eq!(
        store.window(budget.id, &window),
        Window {
            used: 2 * COST_NANO,
            reserved: 0,
            calls: 2,
            refused: 1
        }
    );
    let rows = store.audit_rows();
    assert_eq!(rows.len(), 3, "the refusal is audited");
    assert_eq!(rows[2].error_code.as_deref(), Some("BUDGET_EXCEEDED"));
    assert_eq!(
        rows[2].cost_nano_usd,
        Some(0),
        "a call never made costs nothing"
    );
    assert_eq!(rows[0].cost_nano_usd, Some(COST_NANO));
}

#[tokio::test]
async fn concurrent_calls_fill_a_budget_exactly_and_never_past_it() {
    let provider = ScriptedProvider::held();
    let (store, r) = priced(&provider);
    let max = max_cost(&r).await;
    // Three reservations fit, a fourth would not: the held calls settle only after every
    // reservation was decided, so settlements cannot make room.
    let budget = store.set_budget(BudgetScope::Project, "proj", Period::Day, 3 * max + max / 2);
    let window = budget.period.window(now_ms());
    const CALLS: u64 = 8;
    let runs = futures_util::future::join_all((0..CALLS).map(|_| call(&r, "a")));
    let release = async {
        while store.reservations() < CALLS {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            store.window(budget.id, &window).reserved,
            3 * max,
            "three reservations held at once, exactly"
        );
        provider.release();
    };
    let (results, ()) = tokio::join!(runs, release);
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| code(r) == Some("BUDGET_EXCEEDED"))
        .count();
    assert_eq!((ok, refused), (3, 5));
    assert_eq!(provider.sent().len(), 3);
    assert_eq!(
        store.window(budget.id, &window),
        Window {
            used: 3 * COST_NANO,
            reserved: 0,
            calls: 3,
            refused: 5
        }
    );
}

#[tokio::test]
async fn a_budget_over_an_unpriced_model_refuses_and_without_a_budget_the_call_is_unpriced() {
    let provider = ScriptedProvider::new();
    let store = MemoryStore::new();
    store.add_config(fake::config("free"));
    provider.script(&url("free"), [Answer::content("好")]);

    let unbudgeted = fake::runner(&store, &provider, &fake::settings(&[]));
    let res = call(&unbudgeted, "free").await;
    assert!(res.is_ok(), "{:?}", res.error);
    let row = &store.audit_rows()[0];
    assert_eq!(row.cost_nano_usd, None, "unknown, never 0");
    assert_eq!(row.cost_status.as_deref(), Some("unpriced"));

    store.set_budget(BudgetScope::Project, "proj", Period::Month, 1_000_000_000);
    let budgeted = fake::runner(
        &store,
        &provider,
        &fake::settings(&[("PROJECT_NAME", "proj")]),
    );
    let res = call(&budgeted, "free").await;
    assert_eq!(code(&res), Some("BUDGET_UNPRICED"));
    assert_eq!(
        provider.sent().len(),
        1,
        "its cost could not be capped: no call"
    );
    assert_eq!(
        store.budget_uses(now_ms())[0].refused,
        0,
        "nothing was reserved"
    );
}

#[tokio::test]
async fn a_provider_side_tool_under_a_budget_is_refused_as_uncapped_before_the_provider() {
    let provider = ScriptedProvider::new();
    let store = MemoryStore::new();
    let mut cfg = fake::config("a");
    // A prompt object carries its request fields: this one turns web search on.
    cfg.prompt.as_mut().unwrap().messages = serde_json::json!({
        "messages": [{"role": "user", "content": "今天的新闻"}],
        "web_search_options": {"search_context_size": "high"}
    });
    store.add_config(cfg);
    store.add_price(price());
    provider.script(&url("a"), [Answer::usage("回答", 100, 50)]);
    let r = fake::runner(
        &store,
        &provider,
        &fake::settings(&[("PROJECT_NAME", "proj")]),
    );
    let unbudgeted = call(&r, "a").await;
    assert!(
        unbudgeted.is_ok(),
        "no budget, no cap needed: {:?}",
        unbudgeted.error
    );
    store.set_budget(BudgetScope::Project, "proj", Period::Day, 1_000_000_000);
    let r = fake::runner(
        &store,
        &provider,
        &fake::settings(&[("PROJECT_NAME", "proj")]),
    );
    let res = call(&r, "a").await;
    assert_eq!(code(&res), Some("BUDGET_UNCAPPED"), "{:?}", res.error);
    assert!(
        res.error
            .as_ref()
            .unwrap()
            .message
            .contains("`web_search_options`"),
        "{:?}",
        res.error
    );
    assert_eq!(provider.sent().len(), 1, "only the unbudgeted call");
    assert_eq!(store.reservations(), 0, "nothing was reserved");
}
