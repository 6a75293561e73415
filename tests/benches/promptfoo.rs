//! The same promptfoo suite (1 000 cases from a CSV, an `llm-rubric` graded by a second call
//! per case) run by the real `promptfoo` (npm) and by `ai-runner eval run`, both as the
//! processes a user starts, against the same OpenAI-protocol server answering after 0 ms and
//! 50 ms, at equal concurrency: wall clock, cases/s and the ratio, in one run on this machine.
//! ai-runner stores every run and result (SQLite) and audits every call; promptfoo writes its
//! own results file (`-o`), with its cache off.
//!
//! Needs `target/release/ai-runner` (`bench/run` builds it; else `target/quick/ai-runner`) and promptfoo in `target/npm`
//! (`.ci/run` installs it). Prints a markdown table and writes `target/bench/promptfoo.json`.
//!
//! Run: `cargo bench -p ai-runner-tests --bench promptfoo` (`-- --quick`: 200 cases).

// Benches read their own environment and drive servers and processes of their own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ai_runner::demo::{ProviderServer, Reply};
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn server(rt: &tokio::runtime::Runtime, latency_ms: u64) -> ProviderServer {
    let lookup = Reply::Lookup {
        answers: vec![(
            "<Output>".into(),
            r#"{"reason": "polite", "pass": true, "score": 1}"#.into(),
        )],
        default: "Bonjour, merci beaucoup !".into(),
    };
    let reply = if latency_ms == 0 {
        lookup
    } else {
        Reply::Delayed(Duration::from_millis(latency_ms), Box::new(lookup))
    };
    rt.block_on(ProviderServer::start(vec![reply])).unwrap()
}

/// A promptfoo suite of `n` cases in `dir`.
fn write_suite(dir: &Path, n: usize) {
    std::fs::write(
        dir.join("promptfooconfig.yaml"),
        "description: bench\n\
         prompts: ['Translate into French: {{text}}']\n\
         providers: [openai:chat:gpt-4o-mini]\n\
         defaultTest:\n\
         \x20 options: {provider: 'openai:chat:grader'}\n\
         \x20 assert:\n\
         \x20   - {type: icontains, value: bonjour}\n\
         \x20   - {type: not-contains, value: error}\n\
         \x20   - {type: llm-rubric, value: The translation is polite}\n\
         tests: file://tests.csv\n",
    )
    .unwrap();
    let mut csv = String::from("text\n");
    for i in 0..n {
        csv.push_str(&format!("Hello number {i}\n"));
    }
    std::fs::write(dir.join("tests.csv"), csv).unwrap();
}

fn ai_runner(dir: &Path, args: &[&str]) -> std::process::Output {
    // `bench/run` builds the release CLI; a `quick` build does for a look.
    let bin = ["release", "quick"]
        .map(|p| workspace().join("target").join(p).join("ai-runner"))
        .into_iter()
        .find(|b| b.is_file())
        .expect("build the CLI first: cargo build --release -p ai-runner-cli");
    assert!(
        bin.is_file(),
        "build the CLI first: cargo build --release -p ai-runner-cli"
    );
    Command::new(bin)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AI_RUNNER_DEMO_PORT", "0")
        .args(args)
        .output()
        .unwrap()
}

/// ai-runner's wall clock for the suite (setup not counted).
fn run_ai_runner(url: &str, n: usize, concurrency: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    assert!(ai_runner(dir.path(), &["quickstart"]).status.success());
    std::fs::write(
        dir.path().join("models.yaml"),
        format!(
            "connections: [{{name: scripted, provider: custom, base_url: \"{url}\", api_key: sk-bench-1}}]\n\
             models: [{{name: gpt-4o-mini, connection: scripted}}, {{name: grader, connection: scripted}}]\n\
             configs: [{{config_key: answerer, model: gpt-4o-mini}}, {{config_key: grader, model: grader}}]\n"
        ),
    )
    .unwrap();
    assert!(
        ai_runner(dir.path(), &["cfg", "gen", "-f", "models.yaml"])
            .status
            .success()
    );
    write_suite(dir.path(), n);
    let c = concurrency.to_string();
    let t = Instant::now();
    let out = ai_runner(
        dir.path(),
        &[
            "eval",
            "run",
            "promptfooconfig.yaml",
            "--provider",
            "openai:chat:gpt-4o-mini=config:answerer",
            "--provider",
            "openai:chat:grader=config:grader",
            "--concurrency",
            &c,
            "--json",
        ],
    );
    let wall = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["targets"][0]["passed"], n,
        "every case passed and was stored"
    );
    wall
}

/// promptfoo's wall clock for the suite.
fn run_promptfoo(base: &str, n: usize, concurrency: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    write_suite(dir.path(), n);
    let t = Instant::now();
    let out = ai_runner_tests::sdk::promptfoo_eval(dir.path(), base, "sk-bench-1", concurrency)
        .output()
        .unwrap();
    let wall = t.elapsed().as_secs_f64();
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.json")).unwrap_or_else(|_| {
            panic!(
                "promptfoo wrote nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
    )
    .unwrap();
    assert_eq!(
        results["results"]["stats"]["successes"], n,
        "every case passed in promptfoo too"
    );
    wall
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 200 } else { 1000 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rows = Vec::new();
    println!(
        "| provider latency | concurrency | cases | promptfoo s | ai-runner s | promptfoo cases/s | ai-runner cases/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for latency in [0_u64, 50] {
        let s = server(&rt, latency);
        let base = s.url().trim_end_matches("/chat/completions").to_owned();
        for concurrency in [4_usize, 16] {
            let theirs = run_promptfoo(&base, n, concurrency);
            let ours = run_ai_runner(&s.url(), n, concurrency);
            let ratio = theirs / ours;
            println!(
                "| {latency} ms | {concurrency} | {n} | {theirs:.2} | {ours:.2} | {:.0} | {:.0} | {ratio:.1}x |",
                n as f64 / theirs,
                n as f64 / ours
            );
            rows.push(
                json!({"latency_ms": latency, "concurrency": concurrency, "cases": n,
                             "promptfoo_s": theirs, "ai_runner_s": ours, "ratio": ratio}),
            );
        }
    }
    let out = workspace().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("promptfoo.json"), Value::Array(rows).to_string()).unwrap();
}
