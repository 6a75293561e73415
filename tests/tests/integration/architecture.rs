//! The library's module graph, read from its source, keeps the shape ARCHITECTURE.md draws:
//! dependencies point one way (no cycles), the core does not reach its implementations or the
//! edges, and the implementations do not reach back into the core's orchestration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules it names (`crate::x`), comments and tests left out. Modules are the
/// top-level ones, except that `run`'s parts are told apart (`run::policy` is rules the catalog
/// shares; `run` is the orchestration).
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
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let entry = g.entry(me.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + 7..];
                let mut name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if rest.starts_with("run::policy") {
                    name = "run::policy".into();
                }
                let name = match name.as_str() {
                    "Code" => "code".to_owned(),
                    "Secret" => "secret".to_owned(),
                    "RunError" => "error".to_owned(),
                    "Settings" => "config".to_owned(),
                    other => other.to_owned(),
                };
                if name != me && modules.contains(&name) {
                    entry.insert(name);
                }
            }
        }
    }
    g
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
        "code", "secret", "config", "model", "ports", "crypto", "request", "validate", "audit",
        "error", "run", "media", "catalog", "eval", "access", "cost", "html", "status", "hex",
        "template",
    ];
    let outside = [
        "store", "provider", "objects", "queue", "app", "health", "demo", "function", "console",
    ];
    for m in core {
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
                    "console",
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
