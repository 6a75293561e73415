//! The library's module graph, read from its source, keeps the shape ARCHITECTURE.md draws:
//! dependencies point one way (no cycles), the core does not reach its implementations or the
//! edges, and the implementations do not reach back into the core's orchestration.
//!
//! Every line of every file counts: code after a test module, unit tests, and comments too, so
//! a doc link (`[`crate::x`]`, which rustdoc resolves) is a dependency like a `use`; a comment
//! that names a module up the stack names it as plain text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules it names (`crate::x`, `crate::{x, y::z}`) anywhere in its files. Modules
/// are the top-level ones, except that `run`'s parts are told apart (`run::policy` is rules the
/// catalog shares; `run` is the orchestration).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| top(&root, p))
        .filter(|m| m != "lib")
        .collect();
    assert!(modules.contains("run::policy"), "{modules:?}");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let me = top(&root, p);
        if me == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        let entry = g.entry(me.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            for path in named_paths(&text[i + 7..]) {
                let name = module_of(&path);
                if name != me && modules.contains(&name) {
                    entry.insert(name);
                }
            }
        }
    }
    g
}

/// The paths named right after a `crate::`: one (`store::Db`), or each of a group
/// (`{store::Db, run}`, nested groups flattened to their first segment's path).
fn named_paths(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                out.push(ident(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    out
}

/// The module a path names: its first segment (or a re-export's home), `run::policy` apart.
fn module_of(path: &str) -> String {
    if path.starts_with("run::policy") {
        return "run::policy".into();
    }
    let first = path.split("::").next().unwrap_or("");
    match first {
        "Code" => "code",
        "Secret" => "secret",
        "RunError" => "error",
        "Settings" => "config",
        "Runner" | "RunContext" | "RunResult" | "Variables" => "run",
        other => other,
    }
    .to_owned()
}

fn top(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    let first = first.trim_end_matches(".rs").to_owned();
    if first == "run" && rel.ends_with("policy.rs") {
        return "run::policy".into();
    }
    first
}

fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        for n in g.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                stack.push(n.clone());
            }
        }
    }
    seen
}

#[test]
fn a_path_or_each_path_of_a_group_names_its_module() {
    assert_eq!(named_paths("store::Db;"), ["store::Db"]);
    assert_eq!(
        named_paths("{store::{Db, Pool}, run::policy::Policy,\n    Secret} as x"),
        ["store::", "run::policy::Policy", "Secret"]
    );
    let modules: Vec<_> = named_paths("{store::{Db, Pool}, run::policy, run, Runner}")
        .iter()
        .map(|p| module_of(p))
        .collect();
    assert_eq!(modules, ["store", "run::policy", "run", "run"]);
}

#[test]
fn the_library_has_no_dependency_cycle_between_modules() {
    let g = graph();
    assert!(g.len() > 15, "{g:?}");
    for m in g.keys() {
        assert!(
            !reaches(&g, m).contains(m),
            "{m} depends on itself through {:?}",
            g[m]
        );
    }
}

#[test]
fn the_core_reaches_neither_its_implementations_nor_the_edges() {
    let g = graph();
    let core = [
        "code",
        "secret",
        "config",
        "model",
        "ports",
        "crypto",
        "request",
        "validate",
        "audit",
        "spool",
        "error",
        "run",
        "media",
        "catalog",
        "eval",
        "access",
        "cost",
        "html",
        "status",
        "hex",
        "template",
        "invocation",
        "openai",
        "snapshot",
        "breaker",
    ];
    let outside = [
        "store", "provider", "objects", "queue", "app", "health", "demo", "function", "console",
        "server",
    ];
    for m in core {
        assert!(g.contains_key(m), "{m} is not a module of the library");
        let bad: Vec<_> = reaches(&g, m)
            .into_iter()
            .filter(|d| outside.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{m} reaches {bad:?}");
    }
    let base = ["code", "secret", "model", "ports", "hex", "template"];
    for m in base {
        let allowed: BTreeSet<&str> = ["code", "secret", "model", "hex"].into();
        let bad: Vec<_> = g[m]
            .iter()
            .filter(|d| !allowed.contains(d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{m} is the base but uses {bad:?}");
    }
}

#[test]
fn implementations_and_assembly_never_reach_the_edges_or_the_orchestration() {
    let g = graph();
    for m in ["store", "provider", "objects", "queue"] {
        let bad: Vec<_> = reaches(&g, m)
            .into_iter()
            .filter(|d| {
                [
                    "run", "media", "eval", "access", "app", "health", "demo", "function",
                    "console", "server", "openai", "snapshot", "breaker",
                ]
                .contains(&d.as_str())
            })
            .collect();
        assert!(bad.is_empty(), "{m} reaches {bad:?}");
    }
    for (m, deps) in &g {
        if m != "function" {
            assert!(!deps.contains("function"), "{m} uses the function edge");
        }
        if m != "console" {
            assert!(!deps.contains("console"), "{m} uses the console edge");
        }
        if m != "server" {
            assert!(!deps.contains("server"), "{m} uses the server edge");
        }
        assert!(
            m == "demo" || !deps.contains("demo"),
            "{m} uses the demo edge"
        );
    }
}

#[test]
fn the_catalog_and_the_console_read_templates_without_the_request_builder() {
    let g = graph();
    assert!(
        !g["catalog"].contains("request"),
        "catalog uses request: {:?}",
        g["catalog"]
    );
    assert!(
        !g["console"].contains("request"),
        "console uses request: {:?}",
        g["console"]
    );
}
