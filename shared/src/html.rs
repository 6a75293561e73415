//! Escaping text for HTML and XML: the one function every page and report writes untrusted
//! text (prompts, answers, model and config names) through.
//!
//! Invariants: depends on nothing; the output never contains `<`, `>`, `&`, `"` or `'` except
//! in the entities it writes, nor a control character XML 1.0 forbids.

/// XML / HTML text escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
