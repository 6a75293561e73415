//! Prices, budgets and the usage report from the command line, on the quickstart's database.

use super::*;

fn fixture(rel: &str) -> String {
    format!("{}/../tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn ok(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = ai_runner(dir, env, args, None);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(dir, env, args)).unwrap()
}

/// A quickstart directory whose demo model is priced at 1e-6 / 2e-6 USD per token.
pub(super) fn priced_quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &[], &["quickstart"]);
    ok(
        dir.path(),
        &[],
        &[
            "prices",
            "set",
            "--model",
            "demo-model",
            "--input",
            "1e-6",
            "--output",
            "2e-6",
        ],
    );
    dir
}

#[test]
fn prices_import_set_list_and_refuse_a_price_per_million() {
    let dir = priced_quickstart();
    let d = dir.path();
    let imported = json(
        d,
        &[],
        &[
            "prices",
            "import",
            &fixture("litellm/model_prices_excerpt.json"),
            "--json",
        ],
    );
    assert!(imported["added"].as_u64().unwrap() >= 12, "{imported}");
    assert!(
        imported["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "sample_spec")
    );
    let again = json(
        d,
        &[],
        &[
            "prices",
            "import",
            &fixture("litellm/model_prices_excerpt.json"),
            "--json",
        ],
    );
    assert_eq!(again["added"], 0);
    assert_eq!(again["unchanged"], imported["added"]);
    let listed = json(d, &[], &["prices", "list", "--model", "qwen", "--json"]);
    let qwen = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "qwen-plus")
        .unwrap();
    assert_eq!(qwen["provider"], "dashscope");
    assert_eq!(qwen["input_cost_per_token"], 4e-07);
    let bad = ai_runner(
        d,
        &[],
        &["prices", "set", "--model", "x", "--input", "2.5"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.starts_with("PRICE_INVALID: --input"), "{err}");
    assert!(err.contains("hint: prices are USD per token"), "{err}");
    let mut per_million = serde_json::json!({"m": {"input_cost_per_token": 3.0}});
    per_million["n"] = serde_json::json!({"input_cost_per_token": 1e-6});
    std::fs::write(d.join("bad.json"), per_million.to_string()).unwrap();
    let bad = ai_runner(d, &[], &["prices", "import", "bad.json"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("nothing imported"));
    assert!(
        json(d, &[], &["prices", "list", "--model", "n", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["model"] != "n"),
        "nothing of the refused file was stored"
    );
}

#[test]
fn a_run_reports_its_cost_and_a_budget_refuses_with_its_code_exit_and_hint() {
    let dir = priced_quickstart();
    let d = dir.path();
    // The demo answers 12 prompt + 8 completion tokens: 12 x 1e-6 + 8 x 2e-6 = 2.8e-5 USD.
    let run = json(d, &[], &["run-once", "quickstart-demo", "--json"]);
    assert_eq!(run["cost"], 2.8e-05, "{run}");
    assert_eq!(run["cost_status"], "priced");
    ok(
        d,
        &[],
        &[
            "budget",
            "set",
            "--project",
            "billing",
            "--daily",
            "0.00001",
        ],
    );
    let env = [("PROJECT_NAME", "billing")];
    let refused = ai_runner(d, &env, &["run-once", "quickstart-demo"], None);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.starts_with("BUDGET_EXCEEDED: "), "{err}");
    assert!(err.contains("hint: a budget is used up"), "{err}");
    let budgets = json(d, &[], &["budget", "list", "--json"]);
    assert_eq!(budgets[0]["target"], "billing");
    assert_eq!(budgets[0]["refused"], 1);
    assert_eq!(budgets[0]["limit_nano"], 10_000);
    ok(
        d,
        &[],
        &[
            "budget",
            "remove",
            "--project",
            "billing",
            "--period",
            "day",
        ],
    );
    let run = json(d, &env, &["run-once", "quickstart-demo", "--json"]);
    assert_eq!(run["status"], "ok");
}

#[test]
fn the_usage_report_groups_costs_and_errors_as_table_json_and_csv() {
    let dir = priced_quickstart();
    let d = dir.path();
    for _ in 0..3 {
        json(d, &[], &["run-once", "quickstart-demo", "--json"]);
    }
    let report = json(
        d,
        &[],
        &[
            "usage", "--since", "1d", "--by", "config", "--format", "json",
        ],
    );
    let demo = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "quickstart-demo")
        .unwrap();
    // The quickstart's own calls ran before the price existed: they are unpriced, not free.
    let calls = demo["calls"].as_u64().unwrap();
    let unpriced = demo["unpriced"].as_u64().unwrap();
    assert!(calls >= 4 && unpriced >= 1, "{demo}");
    assert_eq!(demo["cost_nano"], 28_000 * 3, "{demo}");
    assert!(
        report["total"]["errors"].as_u64().unwrap() >= 1,
        "the flaky member's 503s"
    );
    assert!(
        report["total"]["errors_by_code"]
            .as_object()
            .unwrap()
            .contains_key("HTTP_5XX_SERVER_ERROR")
    );
    let csv = ok(d, &[], &["usage", "--by", "model", "--format", "csv"]);
    assert!(csv.starts_with("group,calls,errors,prompt_tokens"));
    assert!(csv.lines().any(|l| l.starts_with("demo-model,")), "{csv}");
    let table = ok(d, &[], &["usage", "--by", "day"]);
    assert!(table.contains("p95_ms") && table.lines().last().unwrap().starts_with("total"));
    let bad = ai_runner(d, &[], &["usage", "--since", "last week"], None);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn cfg_gen_applies_a_prices_section_and_export_writes_it_back() {
    let dir = priced_quickstart();
    let d = dir.path();
    std::fs::write(
            d.join("p.yaml"),
            "prices:\n  - model: house-model\n    provider: custom\n    input_cost_per_token: 3.0e-07\n    output_cost_per_token: 9.0e-07\n    max_output_tokens: 2048\n",
        )
        .unwrap();
    ok(d, &[], &["cfg", "verify", "-f", "p.yaml"]);
    ok(d, &[], &["cfg", "gen", "-f", "p.yaml"]);
    let listed = json(d, &[], &["prices", "list", "--model", "house", "--json"]);
    assert_eq!(listed[0]["output_cost_per_token"], 9e-07);
    assert_eq!(listed[0]["source"], "catalog");
    ok(d, &[], &["cfg", "export", "--out", "out.yaml"]);
    let exported = std::fs::read_to_string(d.join("out.yaml")).unwrap();
    assert!(exported.contains("house-model"), "{exported}");
    assert!(
        !exported.contains("demo-model\n    input"),
        "manual prices stay out"
    );
    std::fs::write(
        d.join("bad.yaml"),
        "prices:\n  - model: m\n    input_cost_per_token: 2.5\n",
    )
    .unwrap();
    let bad = ai_runner(d, &[], &["cfg", "verify", "-f", "bad.yaml"], None);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stdout).contains("PRICE_INVALID") || text(&bad.stderr).contains("PRICE_INVALID")
    );
}

/// Writes a reservation into the quickstart's database as a process killed mid-call leaves it
/// (its row and its amount, never settled), on the one budget there is; returns its id.
fn leave_reservation(dir: &Path, n: u32, amount: i64, expires_ms: i64) -> String {
    use ai_runner::model::cost::{Claim, Hold, Reserved};
    use ai_runner::ports::CostStore;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = ai_runner::store::Db::new(ai_runner::config::DatabaseTarget::Sqlite(
            dir.join("ai-runner.db"),
        ));
        let budget = db.active_budgets().await.unwrap().remove(0);
        let now = ai_runner::model::now_ms();
        let hold = Hold {
            id: format!("{n:032x}"),
            created_ms: now,
            expires_ms,
            trace_id: format!("killed-{n}"),
        };
        let claim = Claim {
            window: budget.period.window(now),
            budget,
            amount,
        };
        assert_eq!(
            db.reserve(&hold, &[claim]).await.unwrap(),
            Reserved::Granted
        );
        db.close().await;
        hold.id
    })
}

#[test]
fn budget_list_shows_reservations_left_behind_and_budget_release_frees_them() {
    let dir = priced_quickstart();
    let d = dir.path();
    ok(
        d,
        &[],
        &["budget", "set", "--project", "billing", "--daily", "1"],
    );
    let env = [("PROJECT_NAME", "billing")];
    let now = ai_runner::model::now_ms();
    // A call that died holding all but 1_000 nano-USD of the day, not expired yet.
    let dead = leave_reservation(d, 1, 999_999_000, now + 3_600_000);
    let listed = json(d, &[], &["budget", "list", "--json"]);
    let held = &listed[0]["reservations"];
    assert_eq!(held.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(held[0]["id"], dead.as_str());
    assert_eq!(held[0]["amount_nano"], 999_999_000);
    assert_eq!(held[0]["expired"], false);
    assert_eq!(held[0]["trace_id"], "killed-1");
    assert_eq!(listed[0]["untracked_nano"], 0);
    let table = ok(d, &[], &["budget", "list"]);
    assert!(
        table.contains(&format!("reservation {dead} 0.999999000 USD")),
        "{table}"
    );
    let refused = ai_runner(d, &env, &["run-once", "quickstart-demo"], None);
    assert!(
        text(&refused.stderr).starts_with("BUDGET_EXCEEDED: "),
        "{}",
        text(&refused.stderr)
    );
    // Nothing is expired yet: --expired leaves it alone.
    assert_eq!(
        ok(d, &[], &["budget", "release", "--expired"]).trim(),
        "nothing to release"
    );
    let released = ok(d, &[], &["budget", "release", &dead]);
    assert!(
        released.starts_with(&format!(
            "released {dead} (0.999999000 USD of project billing day "
        )),
        "{released}"
    );
    let again = ai_runner(d, &[], &["budget", "release", &dead], None);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).starts_with("UNKNOWN_REFERENCE: no reservation"),
        "{}",
        text(&again.stderr)
    );
    let run = json(d, &env, &["run-once", "quickstart-demo", "--json"]);
    assert_eq!(run["status"], "ok", "{run}");

    // Expired ones, by --expired; amounts without an identity, by --untracked.
    let stale = leave_reservation(d, 2, 500_000_000, now - 1);
    let out = json(d, &[], &["budget", "release", "--expired", "--json"]);
    assert_eq!(out["released"][0]["id"], stale.as_str());
    assert_eq!(out["released"][0]["expired"], true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = ai_runner::store::Db::new(ai_runner::config::DatabaseTarget::Sqlite(
            d.join("ai-runner.db"),
        ));
        let pool = db.pool().await.unwrap();
        let ai_runner::store::Pool::Sqlite(p) = pool else {
            panic!("the quickstart's database is SQLite")
        };
        // An anonymous reservation, as a version without reservation rows leaves it.
        sqlx::query("UPDATE ai_budget_use SET reserved_nano = reserved_nano + 700")
            .execute(p)
            .await
            .unwrap();
        db.close().await;
    });
    let listed = json(d, &[], &["budget", "list", "--json"]);
    assert_eq!(listed[0]["untracked_nano"], 700, "{listed}");
    assert!(
        ok(d, &[], &["budget", "list"]).contains("0.000000700 USD reserved without an identity")
    );
    let out = json(d, &[], &["budget", "release", "--untracked", "--json"]);
    assert_eq!(out["untracked"][0]["released_nano"], 700, "{out}");
    let listed = json(d, &[], &["budget", "list", "--json"]);
    assert_eq!(
        (
            listed[0]["reserved_nano"].as_i64(),
            listed[0]["untracked_nano"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let none = ai_runner(d, &[], &["budget", "release"], None);
    assert_eq!(
        none.status.code(),
        Some(2),
        "an id, --expired or --untracked"
    );
}
