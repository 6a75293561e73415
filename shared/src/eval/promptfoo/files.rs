//! Files a promptfoo config names: `file://` references (the prefix optional where promptfoo
//! allows it) resolved beside the config, with `*` / `?` globs in the last path component.
//!
//! Invariants: relative paths resolve against the config's directory (absolute ones and `..`
//! are taken as written, as promptfoo takes them: the config is the user's own file); a glob that
//! matches nothing is an error (promptfoo would run nothing from it), never an empty success.

use std::path::Path;

use crate::catalog::fields::Ctx;
use crate::code::Code;

/// The files `pattern` names, relative to `dir`, sorted; the pattern itself when it has no
/// wildcard.
pub(super) fn expand(dir: &Path, pattern: &str) -> Result<Vec<String>, String> {
    if !pattern.contains(['*', '?']) {
        return Ok(vec![pattern.to_owned()]);
    }
    let (parent, name) = match pattern.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", pattern),
    };
    if parent.contains(['*', '?']) {
        return Err(format!(
            "{pattern}: a wildcard is supported in the file name only"
        ));
    }
    let listing = std::fs::read_dir(dir.join(parent)).map_err(|e| {
        format!(
            "cannot list {}: {e}",
            if parent.is_empty() { "." } else { parent }
        )
    })?;
    let mut out: Vec<String> = listing
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| wildcard(name, n))
        .map(|n| {
            if parent.is_empty() {
                n
            } else {
                format!("{parent}/{n}")
            }
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("{pattern} matches no file"));
    }
    Ok(out)
}

/// `*` (any run) and `?` (one character) matching, on characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files a `file://` pattern names for `what` (`the prompt`, `tests`), or `None` with its
/// finding at `at`: a code file promptfoo would run, or a pattern that matches nothing.
pub(super) fn names(
    dir: &Path,
    pattern: &str,
    what: &str,
    at: &str,
    cx: &mut Ctx,
) -> Option<Vec<String>> {
    if is_code(pattern) {
        cx.err(
            at,
            Code::UnsupportedFeature,
            format!("{pattern} computes {what} with code; ai-runner runs none"),
        );
        return None;
    }
    match expand(dir, pattern) {
        Ok(n) => Some(n),
        Err(why) => {
            cx.err(at, Code::IoError, why);
            None
        }
    }
}

/// The text of `file` beside the config.
pub(super) fn read(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))
}

/// True for files that hold code promptfoo would run (ai-runner runs none).
pub(super) fn is_code(file: &str) -> bool {
    [".js", ".ts", ".mjs", ".cjs", ".py", ".rb", ".go", ".sh"]
        .iter()
        .any(|e| file.ends_with(e) || file.contains(&format!("{e}:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_file_names_and_an_empty_match_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("t")).unwrap();
        for f in ["t/b.yaml", "t/a.yaml", "t/c.csv"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        assert_eq!(
            expand(dir.path(), "t/*.yaml").unwrap(),
            ["t/a.yaml", "t/b.yaml"]
        );
        assert_eq!(expand(dir.path(), "t/?.csv").unwrap(), ["t/c.csv"]);
        assert_eq!(expand(dir.path(), "plain.csv").unwrap(), ["plain.csv"]);
        assert!(
            expand(dir.path(), "t/*.json")
                .unwrap_err()
                .contains("matches no file")
        );
        assert!(wildcard("a*b*c", "aXXbYc"));
        assert!(!wildcard("a*b", "aXXc"));
    }
}
