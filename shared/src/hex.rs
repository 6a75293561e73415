//! Lowercase hexadecimal: the one spelling of digests, signatures, key tokens and trace ids.
//!
//! Invariants: two characters a byte, `0-9a-f`, no separator; the same bytes always give the same
//! text (stored hashes and object keys are compared as text).

use std::fmt::Write;

/// `bytes` as lowercase hex, two characters a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_two_lowercase_digits_each_with_leading_zeros_kept() {
        assert_eq!(encode(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(encode(&[]), "");
    }
}
