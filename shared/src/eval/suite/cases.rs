//! A dataset's cases: inline in the YAML, or from a JSONL or CSV file beside it (key, tags,
//! expected, and one column per variable).
//!
//! Invariants: every bad line or row is a finding naming the file and the line; a case key is
//! unique within its dataset.

use std::path::Path;

use serde_json::{Map, Value};

use super::Case;
use super::fields::{assertions, fraction};
use crate::catalog::fields::{Ctx, check_keys, opt_str, req_str};
use crate::code::Code;

/// The longest case key (the result table's indexed column).
pub const CASE_KEY_MAX: usize = 191;

/// The active cases of a dataset: inline ones, then those of its `cases_file`.
pub(super) fn read_cases(
    d: &Map<String, Value>,
    path: &str,
    dir: &Path,
    cx: &mut Ctx,
) -> Vec<Case> {
    check_keys(d, &["name", "cases", "cases_file", "description"], path, cx);
    let mut raw: Vec<(String, Value)> = match d.get("cases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{path}.cases[{i}]"), c.clone()))
            .collect(),
        Some(_) => {
            cx.err(format!("{path}.cases"), Code::BadType, "expected a list");
            Vec::new()
        }
    };
    if let Some(file) = opt_str(d, "cases_file", path, cx) {
        let at = format!("{path}.cases_file");
        match std::fs::read_to_string(dir.join(&file)) {
            Err(e) => cx.err(at, Code::IoError, format!("cannot read {file}: {e}")),
            Ok(text) if file.ends_with(".csv") => raw.extend(csv_cases(&text, &file, cx)),
            Ok(text) => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    match serde_json::from_str::<Value>(line) {
                        Ok(v) => raw.push((format!("{file}:{}", n + 1), v)),
                        Err(e) => cx.err(
                            format!("{file}:{}", n + 1),
                            Code::YamlInvalid,
                            format!("not a JSON line: {e}"),
                        ),
                    }
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (at, c) in raw {
        let Some(o) = c.as_object() else {
            cx.err(at, Code::BadType, "a case is a mapping with a key");
            continue;
        };
        check_keys(
            o,
            &[
                "key",
                "vars",
                "expected",
                "tags",
                "assert",
                "threshold",
                "active",
                "media",
                "prompt",
                "description",
                "metadata",
            ],
            &at,
            cx,
        );
        let Some(key) = req_str(o, "key", &at, cx) else {
            continue;
        };
        // MariaDB compares `utf8mb4_bin` keys with trailing spaces padded away and indexes
        // 191 characters: such keys would share, or fail, their result rows.
        if key.trim_end() != key || key.is_empty() || key.chars().count() > CASE_KEY_MAX {
            cx.err(
                format!("{at}.key"),
                Code::BadType,
                format!(
                    "case key {key:?} must be 1 to {CASE_KEY_MAX} characters without trailing spaces"
                ),
            );
            continue;
        }
        if !seen.insert(key.clone()) {
            cx.err(
                format!("{at}.key"),
                Code::Duplicate,
                format!("case {key:?} is defined twice"),
            );
        }
        let active = o.get("active").and_then(Value::as_bool) != Some(false);
        let mut vars = match o.get("vars") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                cx.err(format!("{at}.vars"), Code::BadType, "expected a mapping");
                Map::new()
            }
        };
        let mut media_ref = None;
        if let Some(media) = o.get("media").filter(|m| !m.is_null()) {
            match (
                media.get("bucket").and_then(Value::as_str),
                media.get("key").and_then(Value::as_str),
            ) {
                (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => {
                    vars.insert("MEDIA_BUCKET".into(), Value::String(b.into()));
                    vars.insert("MEDIA_KEY".into(), Value::String(k.into()));
                    media_ref = Some((b.to_owned(), k.to_owned()));
                }
                _ => cx.err(
                    format!("{at}.media"),
                    Code::BadType,
                    "media is {bucket, key}",
                ),
            }
        }
        let tags = match o.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_owned()).collect(),
            Some(_) => {
                cx.err(format!("{at}.tags"), Code::BadType, "expected a list");
                Vec::new()
            }
        };
        out.push(Case {
            key,
            vars,
            expected: o.get("expected").filter(|e| !e.is_null()).cloned(),
            tags,
            assertions: assertions(o.get("assert"), &format!("{at}.assert"), cx),
            threshold: fraction(o.get("threshold"), &format!("{at}.threshold"), cx),
            media: media_ref,
            active,
            prompt: opt_str(o, "prompt", &at, cx),
            raw: c.clone(),
        });
    }
    out
}

/// CSV cases: a header row; `key`, optional `tags` (comma-separated within the cell),
/// `expected` (JSON or text) and `threshold`; every other column is a variable.
fn csv_cases(text: &str, file: &str, cx: &mut Ctx) -> Vec<(String, Value)> {
    let mut rows = csv_rows(text).into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    if !header.iter().any(|h| h == "key") {
        cx.err(
            format!("{file}:1"),
            Code::MissingField,
            "the header needs a key column",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let mut case = Map::new();
        let mut vars = Map::new();
        for (h, cell) in header.iter().zip(row) {
            match h.as_str() {
                "key" => {
                    case.insert("key".into(), Value::String(cell));
                }
                "tags" => {
                    case.insert("tags".into(), Value::String(cell));
                }
                "threshold" if !cell.is_empty() => {
                    if let Ok(f) = cell.parse::<f64>() {
                        case.insert("threshold".into(), Value::from(f));
                    }
                }
                "expected" if !cell.is_empty() => {
                    let v = serde_json::from_str(&cell).unwrap_or(Value::String(cell));
                    case.insert("expected".into(), v);
                }
                "expected" | "threshold" => {}
                other => {
                    vars.insert(other.to_owned(), Value::String(cell));
                }
            }
        }
        case.insert("vars".into(), Value::Object(vars));
        out.push((format!("{file}:{}", n + 2), Value::Object(case)));
    }
    out
}

/// RFC 4180 rows: quoted cells may hold commas, quotes (doubled) and newlines.
pub(crate) fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push(std::mem::take(&mut row));
                }
                row.clear();
            }
            (false, '\r') => {}
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}
