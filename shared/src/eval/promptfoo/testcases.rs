//! promptfoo's tests: inline, from `file://` YAML / JSON / JSONL / CSV files and globs, with
//! `file://` var values; CSV with promptfoo's column rules (`__expected[N]` cells read by
//! [`super::expected`], `__description`, `__threshold`, `__metric`, `__prefix`, `__suffix`,
//! `__metadata:KEY` and `KEY[]` lists, `__config:__expectedN:threshold`).
//!
//! Invariants: every test keeps the path its parts came from (`tests[2].assert[0]`,
//! `cases.csv:4:__expected1`), so later findings name the file, row and column; a column or key
//! promptfoo does not know is a finding, never a silently ignored value.

use std::path::Path;

use serde_json::{Map, Value};

use super::expected::assertion_from_string;
use super::files;
use crate::catalog::fields::Ctx;
use crate::code::Code;
use crate::eval::suite::csv_rows;

/// One promptfoo test as written (defaults not yet merged, vars not yet expanded).
#[derive(Debug, Clone, Default)]
pub(super) struct Test {
    /// Where it was read (`tests[2]`, `cases.csv:4`).
    pub(super) at: String,
    pub(super) description: Option<String>,
    pub(super) vars: Map<String, Value>,
    /// Each assertion with its path.
    pub(super) assert: Vec<(String, Value)>,
    pub(super) threshold: Option<f64>,
    pub(super) metadata: Map<String, Value>,
    pub(super) options: Map<String, Value>,
}

/// The keys of a test promptfoo defines; those ai-runner cannot honour are findings.
const KEYS: [&str; 7] = [
    "description",
    "vars",
    "assert",
    "threshold",
    "metadata",
    "options",
    "repeat",
];
const UNHONOURED: [&str; 5] = [
    "provider",
    "providerOutput",
    "prompts",
    "assertScoringFunction",
    "providers",
];

/// Every test `v` (a config's `tests`, or a scenario's) names, in order.
pub(super) fn tests(v: Option<&Value>, at: &str, dir: &Path, cx: &mut Ctx) -> Vec<Test> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => from_files(s, at, dir, cx, &mut out),
        Some(Value::Array(list)) => {
            for (i, t) in list.iter().enumerate() {
                let tat = format!("{at}[{i}]");
                match t {
                    Value::String(s) => from_files(s, &tat, dir, cx, &mut out),
                    Value::Object(o) => out.push(test(o, &tat, dir, cx)),
                    _ => cx.err(&tat, Code::BadType, "a test is a mapping or a file:// path"),
                }
            }
        }
        Some(_) => cx.err(
            at,
            Code::BadType,
            "expected a list of tests or a file:// path",
        ),
    }
    out
}

/// One test mapping.
pub(super) fn test(o: &Map<String, Value>, at: &str, dir: &Path, cx: &mut Ctx) -> Test {
    for k in o.keys() {
        if UNHONOURED.contains(&k.as_str()) {
            cx.err(
                format!("{at}.{k}"),
                Code::UnsupportedFeature,
                format!("a test's {k} is not supported: the suite's targets answer every test"),
            );
        } else if !KEYS.contains(&k.as_str()) {
            cx.err(
                format!("{at}.{k}"),
                Code::UnknownKey,
                format!("unknown key {k:?} (known: {})", KEYS.join(", ")),
            );
        }
    }
    let vars = match o.get("vars") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => vars_file(s, &format!("{at}.vars"), dir, cx),
        Some(_) => {
            cx.err(format!("{at}.vars"), Code::BadType, "expected a mapping");
            Map::new()
        }
    };
    let vars = vars
        .into_iter()
        .map(|(k, v)| {
            let v = var_value(v, &format!("{at}.vars.{k}"), dir, cx);
            (k, v)
        })
        .collect();
    let assert = match o.get("assert") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("{at}.assert[{i}]"), a.clone()))
            .collect(),
        Some(_) => {
            cx.err(
                format!("{at}.assert"),
                Code::BadType,
                "expected a list of assertions",
            );
            Vec::new()
        }
    };
    let mapping = |k: &str, cx: &mut Ctx| match o.get(k) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            cx.err(format!("{at}.{k}"), Code::BadType, "expected a mapping");
            Map::new()
        }
    };
    let threshold = match o.get("threshold") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(f) => Some(f),
            None => {
                cx.err(
                    format!("{at}.threshold"),
                    Code::BadType,
                    "expected a number",
                );
                None
            }
        },
    };
    if at != "defaultTest"
        && o.get("options")
            .and_then(|o| o.get("provider"))
            .is_some_and(|p| !p.is_null())
    {
        cx.err(
            format!("{at}.options.provider"),
            Code::UnsupportedFeature,
            "a grader per test is not supported: set defaultTest.options.provider",
        );
    }
    if o.get("repeat").is_some() {
        cx.warn(
            format!("{at}.repeat"),
            Code::UnsupportedFeature,
            "a test's repeat is not applied (use evaluateOptions.repeat)",
        );
    }
    Test {
        at: at.to_owned(),
        description: o
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        vars,
        assert,
        threshold,
        metadata: mapping("metadata", cx),
        options: mapping("options", cx),
    }
}

/// `vars: file://vars.yaml`: a mapping read from a file.
fn vars_file(s: &str, at: &str, dir: &Path, cx: &mut Ctx) -> Map<String, Value> {
    let file = s.strip_prefix("file://").unwrap_or(s);
    let parsed = files::read(dir, file).and_then(|text| {
        serde_yaml_ng::from_str::<Value>(&text).map_err(|e| format!("{file}: {e}"))
    });
    match parsed {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            cx.err(
                at,
                Code::BadType,
                format!("{file} does not hold a mapping of vars"),
            );
            Map::new()
        }
        Err(why) => {
            cx.err(at, Code::IoError, why);
            Map::new()
        }
    }
}

/// A var's value: a `file://` reference is the file's text (YAML files as JSON text, as
/// promptfoo passes them), a glob the list of the texts it matches (which then expands like any
/// list); code files are findings.
fn var_value(v: Value, at: &str, dir: &Path, cx: &mut Ctx) -> Value {
    match v {
        Value::String(s) if s.starts_with("file://") => {
            let pattern = &s["file://".len()..];
            let Some(names) = files::names(dir, pattern, "the var", at, cx) else {
                return Value::String(s);
            };
            let mut texts: Vec<Value> = names
                .iter()
                .map(|file| Value::String(var_file(dir, file, at, cx)))
                .collect();
            if pattern.contains(['*', '?']) {
                Value::Array(texts)
            } else {
                texts.pop().unwrap_or(Value::String(s))
            }
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| var_value(v, &format!("{at}[{i}]"), dir, cx))
                .collect(),
        ),
        other => other,
    }
}

/// One var file's text.
fn var_file(dir: &Path, file: &str, at: &str, cx: &mut Ctx) -> String {
    match files::read(dir, file) {
        Ok(text) if file.ends_with(".yaml") || file.ends_with(".yml") => {
            match serde_yaml_ng::from_str::<Value>(&text) {
                Ok(v) => v.to_string(),
                Err(e) => {
                    cx.err(at, Code::YamlInvalid, format!("{file}: {e}"));
                    text
                }
            }
        }
        // promptfoo trims a text file's content.
        Ok(text) => text.trim().to_owned(),
        Err(why) => {
            cx.err(at, Code::IoError, why);
            String::new()
        }
    }
}

/// The tests of the file(s) a path or glob names.
fn from_files(s: &str, at: &str, dir: &Path, cx: &mut Ctx, out: &mut Vec<Test>) {
    let pattern = s.strip_prefix("file://").unwrap_or(s);
    let Some(names) = files::names(dir, pattern, "tests", at, cx) else {
        return;
    };
    for file in names {
        let text = match files::read(dir, &file) {
            Ok(t) => t,
            Err(why) => {
                cx.err(at, Code::IoError, why);
                continue;
            }
        };
        if file.ends_with(".csv") {
            out.extend(csv_tests(&text, &file, dir, cx));
        } else if file.ends_with(".jsonl") {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let lat = format!("{file}:{}", n + 1);
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(o)) => out.push(test(&o, &lat, dir, cx)),
                    Ok(_) => cx.err(lat, Code::BadType, "a test is a JSON object"),
                    Err(e) => cx.err(lat, Code::YamlInvalid, format!("not a JSON line: {e}")),
                }
            }
        } else if file.ends_with(".yaml") || file.ends_with(".yml") || file.ends_with(".json") {
            match serde_yaml_ng::from_str::<Value>(&text) {
                Ok(Value::Array(list)) => {
                    for (i, t) in list.iter().enumerate() {
                        let tat = format!("{file}[{i}]");
                        match t.as_object() {
                            Some(o) => out.push(test(o, &tat, dir, cx)),
                            None => cx.err(tat, Code::BadType, "a test is a mapping"),
                        }
                    }
                }
                Ok(Value::Object(o)) => out.push(test(&o, &file, dir, cx)),
                Ok(_) => cx.err(&file, Code::BadType, "expected a list of tests"),
                Err(e) => cx.err(&file, Code::YamlInvalid, format!("{file}: {e}")),
            }
        } else {
            cx.err(
                at,
                Code::UnsupportedFeature,
                format!("{file}: tests are read from .csv, .yaml, .yml, .json and .jsonl files"),
            );
        }
    }
}

/// CSV tests by promptfoo's column rules: `__`-columns it knows, every other column a var.
fn csv_tests(text: &str, file: &str, dir: &Path, cx: &mut Ctx) -> Vec<Test> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = csv_rows(text).into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    // Columns checked once, on the header: an unknown `__` column is a finding.
    let mut expected_configs: Vec<(usize, usize)> = Vec::new(); // (column, expected index)
    for (c, h) in header.iter().enumerate() {
        let col = format!("{file}:1:{h}");
        if let Some(rest) = h.strip_prefix("__config:") {
            match rest.split_once(':') {
                Some((e, "threshold")) => match expected_index(e) {
                    Some(i) => expected_configs.push((c, i)),
                    None => cx.err(
                        col,
                        Code::BadType,
                        format!("{e:?} is not __expected or __expected<N>"),
                    ),
                },
                _ => cx.err(
                    col,
                    Code::BadType,
                    "a config column is __config:__expected<N>:threshold",
                ),
            }
        } else if h.starts_with("__")
            && !h.starts_with("__expected")
            && !h.starts_with("__metadata:")
            && ![
                "__description",
                "__threshold",
                "__metric",
                "__prefix",
                "__suffix",
            ]
            .contains(&h.as_str())
        {
            let code = if h == "__providerOutput" {
                Code::UnsupportedFeature
            } else {
                Code::UnknownKey
            };
            cx.err(
                col,
                code,
                format!("promptfoo does not know the column {h:?} (known: __expected[N], __description, __threshold, __metric, __prefix, __suffix, __metadata:KEY, __config:__expectedN:threshold)"),
            );
        } else if h.starts_with("__expected") && h != "__expected" && expected_index(h).is_none() {
            cx.err(
                col,
                Code::UnknownKey,
                format!("{h:?} is not __expected or __expected<N>"),
            );
        }
    }
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let line = n + 2;
        let mut t = Test {
            at: format!("{file}:{line}"),
            ..Test::default()
        };
        let mut metric = None;
        let mut expected: Vec<(usize, String, Value)> = Vec::new();
        let mut thresholds: Vec<(usize, f64)> = Vec::new();
        for (c, (h, cell)) in header.iter().zip(row).enumerate() {
            let at = format!("{file}:{line}:{h}");
            match h.as_str() {
                h if h.starts_with("__expected") => {
                    if !cell.trim().is_empty()
                        && let Some(i) = expected_index(h)
                    {
                        expected.push((i, at, assertion_from_string(cell.trim())));
                    }
                }
                "__description" => t.description = Some(cell).filter(|c| !c.is_empty()),
                "__prefix" => {
                    t.options.insert("prefix".into(), Value::String(cell));
                }
                "__suffix" => {
                    t.options.insert("suffix".into(), Value::String(cell));
                }
                "__metric" => metric = Some(cell).filter(|c| !c.is_empty()),
                "__threshold" => t.threshold = number(&cell, &at, cx),
                h if h.starts_with("__metadata:") => {
                    let key = &h["__metadata:".len()..];
                    if cell.trim().is_empty() {
                        continue;
                    }
                    let v = match key.strip_suffix("[]") {
                        Some(k) => (k, Value::from(metadata_list(&cell))),
                        None => (key, Value::String(cell)),
                    };
                    t.metadata.insert(v.0.to_owned(), v.1);
                }
                h if h.starts_with("__config:") => {
                    if let Some((_, i)) = expected_configs.iter().find(|(col, _)| *col == c)
                        && !cell.trim().is_empty()
                        && let Some(f) = number(&cell, &at, cx)
                    {
                        thresholds.push((*i, f));
                    }
                }
                h if h.starts_with("__") => {}
                h => {
                    let v = var_value(Value::String(cell), &at, dir, cx);
                    t.vars.insert(h.to_owned(), v);
                }
            }
        }
        // promptfoo numbers a row's assertions in column order (the non-empty cells), which is
        // what `__config:__expectedN` counts.
        for (k, (_, at, mut a)) in expected.into_iter().enumerate() {
            if let Some(m) = &metric {
                a["metric"] = Value::String(m.clone());
            }
            if let Some((_, f)) = thresholds.iter().find(|(i, _)| *i == k) {
                a["threshold"] = Value::from(*f);
                t.metadata.insert("threshold".into(), Value::from(*f));
            }
            t.assert.push((at, a));
        }
        out.push(t);
    }
    out
}

/// `__expected` is 0, `__expectedN` is N - 1 (N >= 1).
fn expected_index(h: &str) -> Option<usize> {
    match h.strip_prefix("__expected")? {
        "" => Some(0),
        n => n.parse::<usize>().ok().filter(|n| *n >= 1).map(|n| n - 1),
    }
}

fn number(cell: &str, at: &str, cx: &mut Ctx) -> Option<f64> {
    let t = cell.trim();
    if t.is_empty() {
        return None;
    }
    match t.parse::<f64>().ok().filter(|f| f.is_finite()) {
        Some(f) => Some(f),
        None => {
            cx.err(at, Code::BadType, format!("{t:?} is not a number"));
            None
        }
    }
}

/// A `__metadata:KEY[]` cell: comma-separated, `\,` for a comma inside an item.
fn metadata_list(cell: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = cell.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push(',');
                }
            }
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_columns_follow_promptfoos_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.csv"),
            "question,__expected1,__expected2,__description,__threshold,__metric,__metadata:topic,__metadata:tags[],__config:__expected2:threshold\n\
             What is 2+2?,4,contains-any:four,\"sum\",0.5,math,arith,\"a,b\\,c\",3\n",
        )
        .unwrap();
        let mut cx = Ctx::default();
        let got = tests(Some(&json!("file://t.csv")), "tests", dir.path(), &mut cx);
        assert!(cx.findings.is_empty(), "{:?}", cx.findings);
        let t = &got[0];
        assert_eq!(t.at, "t.csv:2");
        assert_eq!(t.vars["question"], "What is 2+2?");
        assert_eq!(t.description.as_deref(), Some("sum"));
        assert_eq!(t.threshold, Some(0.5));
        assert_eq!(t.metadata["topic"], "arith");
        assert_eq!(t.metadata["tags"], json!(["a", "b,c"]));
        assert_eq!(
            t.assert[0],
            (
                "t.csv:2:__expected1".to_owned(),
                json!({"type": "equals", "value": "4", "metric": "math"})
            )
        );
        assert_eq!(
            t.assert[1].1,
            json!({"type": "contains-any", "value": ["four"], "metric": "math", "threshold": 3.0})
        );
    }

    #[test]
    fn unknown_columns_and_keys_are_findings_naming_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.csv"),
            "q,__expectd,__threshold\nx,y,high\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "- vars: {q: x}\n  provider: openai:gpt-4o\n  asert: []\n",
        )
        .unwrap();
        let mut cx = Ctx::default();
        tests(
            Some(&json!(["file://t.csv", "file://t.yaml", "file://nope.csv"])),
            "tests",
            dir.path(),
            &mut cx,
        );
        let f: Vec<(&str, Code)> = cx
            .findings
            .iter()
            .map(|f| (f.path.as_str(), f.code))
            .collect();
        assert_eq!(
            f,
            [
                ("t.csv:1:__expectd", Code::UnknownKey),
                ("t.csv:2:__threshold", Code::BadType),
                ("t.yaml[0].provider", Code::UnsupportedFeature),
                ("t.yaml[0].asert", Code::UnknownKey),
                ("tests[2]", Code::IoError),
            ]
        );
    }

    #[test]
    fn file_vars_are_read_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("doc.txt"), "长文本").unwrap();
        let mut cx = Ctx::default();
        let got = tests(
            Some(&json!([{"vars": {"doc": "file://doc.txt", "many": ["file://doc.txt", "b"]}}])),
            "tests",
            dir.path(),
            &mut cx,
        );
        assert!(cx.findings.is_empty(), "{:?}", cx.findings);
        assert_eq!(got[0].vars["doc"], "长文本");
        assert_eq!(got[0].vars["many"], json!(["长文本", "b"]));
    }
}
