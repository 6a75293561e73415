//! `ai-runner serve` as a user starts it: after `quickstart`, the README's curl, Python and Node
//! examples run as written against it (the port rewritten to the one it took), SIGTERM stops it
//! cleanly, and a public address without access keys is refused.

use super::*;
use std::io::{BufRead, BufReader};

struct Served {
    child: std::process::Child,
    port: u16,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ai-runner"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .strip_prefix("ai-runner serve: http://")
        .unwrap_or_else(|| panic!("{line}"));
    let port = url
        .split('/')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    Served {
        child,
        port,
        _stdout: stdout,
    }
}

/// The code block after `<!-- readme-test: {name} -->` in the README, on `port`.
fn readme_example(name: &str, port: u16) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in README.md"))
        .1;
    let block = after.split_once("```").unwrap().1;
    let code = block
        .split_once('\n')
        .unwrap()
        .1
        .split_once("```")
        .unwrap()
        .0;
    assert!(code.contains("127.0.0.1:8080"), "{name}: {code}");
    code.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
}

fn quickstarted() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = ai_runner(dir.path(), &[], &["quickstart"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    // Printed as shell lines (`$ `): they run until stopped, unlike the next commands above them.
    assert!(printed.contains("  $ ai-runner serve\n"), "{printed}");
    assert!(
        printed.contains("  $ curl -sS http://127.0.0.1:8080/v1/chat/completions"),
        "{printed}"
    );
    dir
}

fn ran(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_readmes_curl_example_answers_after_quickstart_and_sigterm_stops_the_server() {
    let dir = quickstarted();
    let mut s = serve(dir.path());
    let out = Command::new("sh")
        .arg("-c")
        .arg(readme_example("curl", s.port))
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&ran(&out, "curl")).unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        ai_runner::demo::DEMO_ANSWER
    );
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The call's audit row is in the database the server used, with its trigger.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let served: i64 = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("ai-runner.db").display());
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM ai_call_logs WHERE trigger_source = 'serve'")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert_eq!(served, 1);
}

#[test]
#[ignore = "needs the openai packages (PyPI, and npm in target/npm): .ci/run installs them"]
fn the_readmes_python_and_node_examples_run_as_written_after_quickstart() {
    let dir = quickstarted();
    let s = serve(dir.path());
    let py = Command::new("python3")
        .arg("-c")
        .arg(readme_example("python", s.port))
        .output()
        .unwrap();
    let printed = ran(&py, "python");
    assert!(printed.contains("摘要"), "{printed}");
    assert!(
        printed.contains("completion_tokens"),
        "the usage chunk: {printed}"
    );
    let modules = std::env::var("AI_RUNNER_TEST_NODE_MODULES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/npm/node_modules").to_owned()
    });
    let node = Command::new("node")
        .env("NODE_PATH", modules)
        .arg("-e")
        .arg(readme_example("node", s.port))
        .output()
        .unwrap();
    assert!(ran(&node, "node").contains("摘要"));
}

#[test]
fn serve_refuses_a_public_address_without_access_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = ai_runner(
        dir.path(),
        &[],
        &["serve", "--host", "0.0.0.0", "--port", "0"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("INVALID_INPUT: "), "{err}");
    assert!(err.contains("ACCESS_MODE"), "{err}");
}
