//! Datasets built from what already happened: audit rows of a config or route become cases
//! (their runtime variables recovered from the logged request, the logged answer as a candidate
//! expected value), and stored audio objects become media cases. Pure: the CLI reads the rows
//! and objects and stores the cases.
//!
//! Variables are recovered by matching each templated string of the prompt against the same
//! string of the logged request (`{{NAME}}` becomes a capture); this needs no extra audit column,
//! so the predecessor's history works too. A row whose request does not match the prompt as it
//! is now (the prompt changed, or the request was spilled to object storage) is skipped and
//! counted, never guessed.
//!
//! Invariants: a case key names its source (`audit-<id>`, or the object key), so harvesting the
//! same rows again adds nothing; candidates are tagged `candidate` for review.

use serde_json::{Map, Value, json};

use crate::template::{collect_strings, placeholders};

/// One audit row, as much of it as harvesting needs.
#[derive(Debug, Clone)]
pub struct AuditSample {
    /// `ai_call_logs.id`.
    pub id: i64,
    /// The logged request body.
    pub request: Option<Value>,
    /// The logged response body.
    pub response: Option<Value>,
}

/// Cases recovered from audit rows, and how many rows were skipped.
#[derive(Debug, Clone, Default)]
pub struct Harvest {
    /// Case documents (`{key, vars, expected, tags}`).
    pub cases: Vec<Value>,
    /// Rows whose variables could not be recovered.
    pub skipped: usize,
}

/// Turns audit rows into cases for a prompt whose messages are `template` (prompt variables
/// `defaults` are left out of the recovered variables when unchanged).
pub fn from_audit(
    rows: &[AuditSample],
    template: &Value,
    defaults: Option<&Map<String, Value>>,
) -> Harvest {
    let mut out = Harvest::default();
    for row in rows {
        let Some(messages) = row.request.as_ref().and_then(|r| r.get("messages")) else {
            out.skipped += 1;
            continue;
        };
        let Some(mut vars) = recover(template, messages) else {
            out.skipped += 1;
            continue;
        };
        if let Some(d) = defaults {
            vars.retain(|k, v| d.get(k) != Some(v));
        }
        let answer = row
            .response
            .as_ref()
            .and_then(|r| r.pointer("/choices/0/message/content"))
            .and_then(Value::as_str);
        let mut case = json!({
            "key": format!("audit-{}", row.id),
            "vars": vars,
            "tags": ["from-audit", "candidate"],
        });
        if let Some(text) = answer {
            let expected = serde_json::from_str::<Value>(text.trim())
                .ok()
                .filter(|v| v.is_object() || v.is_array())
                .unwrap_or_else(|| Value::String(text.to_owned()));
            case["expected"] = expected;
        }
        out.cases.push(case);
    }
    out
}

/// Per config key: its prompt's messages and prompt variables.
pub type Prompts = std::collections::BTreeMap<String, (Value, Option<Map<String, Value>>)>;

/// [`from_audit`] over audit rows as the store reads them (column -> value), each matched against
/// the prompt of its own `config_key` (`prompts` gives (messages, prompt variables) per config;
/// rows of a config without a prompt are skipped).
pub fn from_audit_rows(rows: &[Map<String, Value>], prompts: &Prompts) -> Harvest {
    let mut out = Harvest::default();
    for row in rows {
        let json_of = |col: &str| match row.get(col) {
            Some(Value::String(t)) => serde_json::from_str::<Value>(t).ok(),
            Some(v @ Value::Object(_)) => Some(v.clone()),
            _ => None,
        };
        let config = row.get("config_key").and_then(Value::as_str).unwrap_or("");
        let Some((template, defaults)) = prompts.get(config) else {
            out.skipped += 1;
            continue;
        };
        let sample = AuditSample {
            id: row.get("id").and_then(Value::as_i64).unwrap_or(0),
            request: json_of("request_body_json"),
            response: json_of("response_body_json"),
        };
        let h = from_audit(std::slice::from_ref(&sample), template, defaults.as_ref());
        out.skipped += h.skipped;
        out.cases.extend(h.cases);
    }
    out
}

/// Media cases for audio objects (`key` = the object key, cut to 191 characters with a hash
/// suffix when longer).
pub fn from_objects(bucket: &str, keys: &[String]) -> Vec<Value> {
    keys.iter()
        .filter(|k| crate::media::audio_format(k).is_some())
        .map(|k| {
            json!({
                "key": case_key(k),
                "media": {"bucket": bucket, "key": k},
                "tags": ["from-objects"],
            })
        })
        .collect()
}

fn case_key(object_key: &str) -> String {
    const MAX: usize = 191;
    if object_key.chars().count() <= MAX {
        return object_key.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(object_key.as_bytes());
    let hex = crate::hex::encode(&digest[..8]);
    let head: String = object_key.chars().take(MAX - 17).collect();
    format!("{head}~{hex}")
}

/// The variables that make `template` render into `rendered`, if it does.
pub fn recover(template: &Value, rendered: &Value) -> Option<Map<String, Value>> {
    let (mut t, mut r) = (Vec::new(), Vec::new());
    collect_strings(template, &mut t);
    collect_strings(rendered, &mut r);
    if t.len() != r.len() {
        return None;
    }
    let mut vars = Map::new();
    for (tpl, text) in t.iter().zip(&r) {
        if placeholders(tpl).is_empty() {
            if tpl != text {
                return None;
            }
            continue;
        }
        for (name, value) in match_one(tpl, text)? {
            match vars.get(&name) {
                Some(Value::String(prev)) if *prev != value => return None,
                _ => {
                    vars.insert(name, Value::String(value));
                }
            }
        }
    }
    Some(vars)
}

/// Matches one templated string: literal parts exactly, each `{{NAME}}` lazily.
fn match_one(template: &str, text: &str) -> Option<Vec<(String, String)>> {
    let mut pattern = String::from("(?s)^");
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if placeholders(&rest[start..start + end + 4]).is_empty() {
            pattern.push_str(&regex::escape(&rest[..start + end + 4]));
        } else {
            pattern.push_str(&regex::escape(&rest[..start]));
            pattern.push_str("(.*?)");
            names.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    let re = regex::Regex::new(&pattern).ok()?;
    let caps = re.captures(text)?;
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| Some((n, caps.get(i + 1)?.as_str().to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_recovered_from_the_rendered_request() {
        let tpl = json!([{"role": "system", "content": "你是助手"},
                         {"role": "user", "content": "情绪: {{TEXT}} / 语言 {{LANG}}; again {{TEXT}}"}]);
        let req = json!([{"role": "system", "content": "你是助手"},
                         {"role": "user", "content": "情绪: 今天很好 / 语言 zh; again 今天很好"}]);
        let v = recover(&tpl, &req).unwrap();
        assert_eq!(v["TEXT"], "今天很好");
        assert_eq!(v["LANG"], "zh");
        let changed = json!([{"role": "system", "content": "你是另一个助手"},
                             {"role": "user", "content": "情绪: x / 语言 y; again x"}]);
        assert!(recover(&tpl, &changed).is_none(), "a literal part differs");
        let inconsistent = json!([{"role": "system", "content": "你是助手"},
                                  {"role": "user", "content": "情绪: a / 语言 zh; again b"}]);
        assert!(recover(&tpl, &inconsistent).is_none());
    }

    #[test]
    fn audit_rows_become_candidate_cases_and_unmatched_rows_are_counted() {
        let tpl = json!([{"role": "user", "content": "分析: {{TEXT}}"}]);
        let rows = [
            AuditSample {
                id: 7,
                request: Some(json!({"messages": [{"role": "user", "content": "分析: 很好"}]})),
                response: Some(
                    json!({"choices": [{"message": {"content": "{\"情绪\": \"积极\"}"}}]}),
                ),
            },
            AuditSample {
                id: 8,
                request: Some(json!({"messages": [{"role": "user", "content": "别的提示"}]})),
                response: None,
            },
        ];
        let h = from_audit(&rows, &tpl, None);
        assert_eq!(h.skipped, 1);
        assert_eq!(h.cases.len(), 1);
        assert_eq!(h.cases[0]["key"], "audit-7");
        assert_eq!(h.cases[0]["vars"]["TEXT"], "很好");
        assert_eq!(h.cases[0]["expected"]["情绪"], "积极");
    }

    #[test]
    fn only_audio_objects_become_media_cases_with_bounded_keys() {
        let long = format!("calls/{}.wav", "x".repeat(300));
        let cases = from_objects(
            "b",
            &["calls/a.wav".into(), "calls/notes.txt".into(), long.clone()],
        );
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0]["media"]["key"], "calls/a.wav");
        let k = cases[1]["key"].as_str().unwrap();
        assert_eq!(k.chars().count(), 191);
        assert_eq!(cases[1]["media"]["key"], long.as_str());
    }
}
