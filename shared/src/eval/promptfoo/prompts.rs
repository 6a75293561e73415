//! promptfoo's `prompts`: inline texts, chat messages written as JSON, `file://` prompt files
//! (`.txt` split on `---` lines, `.md`, `.json`, `.jsonl` one prompt per line, `.yaml` chat
//! messages), globs, `{raw | id, label}` objects and the `{path: label}` mapping form.
//!
//! Invariants: a prompt is template text (rendered per test later); a chat prompt is JSON text
//! that parses; a prompt promptfoo would compute with code is a finding, never skipped.

use std::path::Path;

use serde_json::Value;

use super::files;
use crate::catalog::fields::Ctx;
use crate::code::Code;

/// One prompt: its label (promptfoo's display name) and its template text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Prompt {
    pub(super) label: String,
    pub(super) text: String,
}

/// Every prompt of the config, in order.
pub(super) fn prompts(v: Option<&Value>, dir: &Path, cx: &mut Ctx) -> Vec<Prompt> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => {
            cx.err(
                "prompts",
                Code::MissingField,
                "a promptfoo config needs prompts",
            );
        }
        Some(Value::String(s)) => one(s, None, dir, "prompts", cx, &mut out),
        Some(Value::Array(list)) => {
            for (i, p) in list.iter().enumerate() {
                let at = format!("prompts[{i}]");
                match p {
                    Value::String(s) => one(s, None, dir, &at, cx, &mut out),
                    Value::Object(o) => {
                        for k in o.keys() {
                            match k.as_str() {
                                "raw" | "id" | "label" => {}
                                "config" => cx.warn(
                                    format!("{at}.config"),
                                    Code::UnsupportedFeature,
                                    "a prompt's config is not applied (the target's params are)",
                                ),
                                other => cx.err(
                                    format!("{at}.{other}"),
                                    Code::UnsupportedFeature,
                                    format!("a prompt's {other} is not supported (known: raw, id, label)"),
                                ),
                            }
                        }
                        let label = o.get("label").and_then(Value::as_str);
                        match o.get("raw").or_else(|| o.get("id")).and_then(Value::as_str) {
                            Some(s) => one(s, label, dir, &at, cx, &mut out),
                            None => {
                                cx.err(&at, Code::MissingField, "a prompt object needs raw or id")
                            }
                        }
                    }
                    _ => cx.err(
                        &at,
                        Code::BadType,
                        "a prompt is a text, a file:// path or {raw, label}",
                    ),
                }
            }
        }
        Some(Value::Object(map)) => {
            for (path, label) in map {
                let at = format!("prompts.{path}");
                one(path, label.as_str(), dir, &at, cx, &mut out);
            }
        }
        Some(_) => cx.err("prompts", Code::BadType, "expected a list of prompts"),
    }
    if out.is_empty() && !cx.findings.iter().any(|f| f.path.starts_with("prompts")) {
        cx.err(
            "prompts",
            Code::MissingField,
            "a promptfoo config needs at least one prompt",
        );
    }
    out
}

/// One entry: inline text, or the prompts of the file(s) it names.
fn one(s: &str, label: Option<&str>, dir: &Path, at: &str, cx: &mut Ctx, out: &mut Vec<Prompt>) {
    let Some(pattern) = s.strip_prefix("file://") else {
        out.push(Prompt {
            label: label.unwrap_or(s).to_owned(),
            text: s.to_owned(),
        });
        return;
    };
    let Some(names) = files::names(dir, pattern, "the prompt", at, cx) else {
        return;
    };
    let many = names.len() > 1;
    for file in names {
        let text = match files::read(dir, &file) {
            Ok(t) => t,
            Err(why) => {
                cx.err(at, Code::IoError, why);
                continue;
            }
        };
        let base = match (label, many) {
            (Some(l), false) => l.to_owned(),
            (Some(l), true) => format!("{l}: {file}"),
            (None, _) => file.clone(),
        };
        let texts: Vec<String> = if file.ends_with(".json") {
            vec![text]
        } else if file.ends_with(".jsonl") {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        } else if file.ends_with(".yaml") || file.ends_with(".yml") {
            match serde_yaml_ng::from_str::<Value>(&text) {
                Ok(v) => vec![v.to_string()],
                Err(e) => {
                    cx.err(at, Code::YamlInvalid, format!("{file}: {e}"));
                    continue;
                }
            }
        } else if file.ends_with(".txt") {
            split_txt(&text)
        } else {
            vec![text]
        };
        let n = texts.len();
        for (k, text) in texts.into_iter().enumerate() {
            if (file.ends_with(".json") || file.ends_with(".jsonl"))
                && let Err(e) = serde_json::from_str::<Value>(&text)
            {
                cx.err(
                    at,
                    Code::BadType,
                    format!("{file}: a chat prompt is JSON: {e}"),
                );
                continue;
            }
            let label = if n > 1 {
                format!("{base} #{}", k + 1)
            } else {
                base.clone()
            };
            out.push(Prompt { label, text });
        }
    }
}

/// A `.txt` prompt file holds several prompts separated by `---` lines.
fn split_txt(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']) == "---" {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push_str(line);
        }
    }
    out.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompts_come_inline_from_files_and_from_globs_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "One {{x}}\n---\nTwo {{x}}\n").unwrap();
        std::fs::write(
            dir.path().join("chat.yaml"),
            "- role: system\n  content: be brief\n- role: user\n  content: '{{x}}'\n",
        )
        .unwrap();
        let mut cx = Ctx::default();
        let got = prompts(
            Some(&json!(["Hi {{x}}", "file://a.txt", {"id": "file://chat.yaml", "label": "chat"}])),
            dir.path(),
            &mut cx,
        );
        assert!(cx.findings.is_empty(), "{:?}", cx.findings);
        let labels: Vec<&str> = got.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["Hi {{x}}", "a.txt #1", "a.txt #2", "chat"]);
        assert_eq!(got[2].text, "Two {{x}}");
        let chat: Value = serde_json::from_str(&got[3].text).unwrap();
        assert_eq!(chat[1], json!({"role": "user", "content": "{{x}}"}));
    }

    #[test]
    fn code_prompts_and_missing_files_are_findings() {
        let mut cx = Ctx::default();
        let got = prompts(
            Some(&json!(["file://make.py:prompt", "file://missing.txt"])),
            Path::new("."),
            &mut cx,
        );
        assert!(got.is_empty());
        let f: Vec<(&str, Code)> = cx
            .findings
            .iter()
            .map(|f| (f.path.as_str(), f.code))
            .collect();
        assert_eq!(
            f,
            [
                ("prompts[0]", Code::UnsupportedFeature),
                ("prompts[1]", Code::IoError)
            ]
        );
    }
}
