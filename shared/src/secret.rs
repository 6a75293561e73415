//! The one type that holds secret material (provider keys, peppers, database passwords).
//!
//! Invariant: a [`Secret`] never prints. `Debug` shows a fixed mask, there is no `Display`, no
//! `Serialize`, and the bytes are zeroed on drop. Reading the value is an explicit
//! [`Secret::expose`] at the one place that must send it.

use zeroize::Zeroize;

/// A string that must never reach a log, an error message, an audit row or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value; the caller gives up its plain copy.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for the one place that must use it (an HTTP header, a KDF input).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty value (an unset password is still a valid `Secret`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of this secret in `text` with `***` (for provider bodies that
    /// echo a key back). Short values are left alone: masking "a" would mangle everything.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 6 || !text.contains(self.0.as_str()) {
            return text.to_owned();
        }
        text.replace(self.0.as_str(), "***")
    }

    /// A JSON value from outside (a provider's answer or chunk) with every occurrence of this
    /// secret replaced, as [`Secret::scrub`] does to text; the value itself when it holds none.
    pub fn scrub_json(&self, v: serde_json::Value) -> serde_json::Value {
        if self.0.len() < 6 {
            return v;
        }
        let text = v.to_string();
        if !text.contains(self.0.as_str()) {
            return v;
        }
        // The secret only ever stands inside JSON strings: the replacement keeps the text JSON.
        serde_json::from_str(&self.scrub(&text)).unwrap_or(serde_json::Value::Null)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_value() {
        let s = Secret::new("sk-very-secret-value");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("sk-very"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn scrub_masks_every_occurrence_of_the_secret() {
        let s = Secret::new("sk-abcdef123");
        assert_eq!(
            s.scrub("bad key sk-abcdef123, again sk-abcdef123"),
            "bad key ***, again ***"
        );
        assert_eq!(s.scrub("nothing here"), "nothing here");
    }
}
