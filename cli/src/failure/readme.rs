//! The README's error table, generated from [`Code::ALL`]: code, HTTP status, exit code,
//! retryable and meaning, each decided where the edges decide it, so the document cannot drift
//! from the code.
//!
//! Invariants: the table lives in README.md between `<!-- codes:begin -->` and
//! `<!-- codes:end -->` and is exactly [`table`]'s text. After changing a code, rewrite it with
//! `AI_RUNNER_BLESS=1 cargo test -p ai-runner-cli --bin ai-runner -- readme` and review the diff.

use std::fmt::Write as _;
use std::path::PathBuf;

use ai_runner::Code;
use ai_runner::status::http_status;

use super::exit_code;

const BEGIN: &str = "<!-- codes:begin -->\n";
const END: &str = "<!-- codes:end -->";

/// The Markdown table of every code, one row each, in declaration order.
fn table() -> String {
    let mut t =
        String::from("| code | HTTP | exit | retryable | meaning |\n|---|---|---|---|---|\n");
    for c in Code::ALL {
        let _ = writeln!(
            t,
            "| `{c}` | {} | {} | {} | {} |",
            http_status(*c),
            exit_code(*c),
            c.retry().as_str(),
            c.meaning().replace('|', "\\|")
        );
    }
    t
}

/// README.md with the text between the markers replaced by `table`, or `None` without markers.
fn with_table(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = start + readme[start..].find(END)?;
    Some(format!("{}{table}{}", &readme[..start], &readme[end..]))
}

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

#[test]
fn the_readme_error_table_is_the_one_the_codes_generate() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).unwrap();
    let generated = with_table(&readme, &table())
        .expect("README.md has the <!-- codes:begin --> / <!-- codes:end --> markers");
    // The test's own switch, not a setting: only a developer blessing the table sets it.
    #[allow(clippy::disallowed_methods)]
    let bless = std::env::var_os("AI_RUNNER_BLESS").is_some_and(|v| v == "1");
    if bless {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    assert!(
        readme == generated,
        "README.md's error table differs from the codes; rewrite it with \
         `AI_RUNNER_BLESS=1 cargo test -p ai-runner-cli --bin ai-runner -- readme` and review \
         the diff"
    );
}

#[test]
fn the_table_has_a_row_per_code_with_its_edges_decisions() {
    let t = table();
    assert_eq!(t.lines().count(), Code::ALL.len() + 2);
    assert!(t.contains("| `MEDIA_UNSUPPORTED` | 415 | 1 | no |"), "{t}");
    assert!(t.contains("| `KEY_UNRESOLVED` | 400 | 2 | no |"), "{t}");
    assert!(t.contains("| `BUDGET_EXCEEDED` | 402 | 1 | later |"), "{t}");
}

#[test]
fn only_the_text_between_the_markers_is_replaced() {
    let readme = "before\n<!-- codes:begin -->\nold\n<!-- codes:end -->\nafter\n";
    assert_eq!(
        with_table(readme, "new\n").as_deref(),
        Some("before\n<!-- codes:begin -->\nnew\n<!-- codes:end -->\nafter\n")
    );
    assert_eq!(with_table("no markers", "new\n"), None);
}
