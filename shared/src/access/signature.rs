//! The two signing schemes existing clients use, as pure functions: what is signed, how it is
//! compared, and which headers carry it.
//!
//! - **v1** (the predecessor's `hmac_headers`): `X-AK`, `X-Nonce`, `X-Timestamp`, `X-Signature` =
//!   lowercase hex HMAC-SHA256(secret, `"{ts}\n{nonce}\n{compact_json}"`), where `compact_json` is
//!   the body as Python's `json.dumps(body, ensure_ascii=False, separators=(",", ":"))` writes
//!   it. The raw body is tried first (a client that sends the compact text itself); otherwise
//!   the parsed body is written back in Python's form ([`python_compact`]).
//! - **v2** (the predecessor's `hmac_sign`): `X-AK`, `X-Timestamp`, `X-Signature-V2` = base64
//!   HMAC-SHA256(secret, `"{METHOD}\n{path}\n{ts}\n{hex sha256(raw body)}"`).
//!
//! Invariants: comparisons are constant-time (`Mac::verify_slice`); nothing here logs or returns
//! a secret; the signed text is built from the header values exactly as sent.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::hex::encode as hex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

type HmacSha256 = Hmac<Sha256>;

/// Which scheme a request was signed with, and its scheme-specific parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// The predecessor's JSON scheme.
    V1 {
        /// `X-Nonce`.
        nonce: String,
        /// `X-Signature` (hex).
        signature: String,
    },
    /// The raw-body scheme.
    V2 {
        /// `X-Signature-V2` (base64).
        signature: String,
    },
}

/// The signature headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `X-AK`.
    pub access_key_id: String,
    /// `X-Timestamp` as sent (it is signed as text).
    pub timestamp_text: String,
    /// `X-Timestamp` as unix seconds.
    pub timestamp: i64,
    /// The scheme and its parts.
    pub scheme: Scheme,
}

impl Signed {
    /// What makes this request unique for replay protection: the v1 nonce, or the v2 signature
    /// itself (it covers method, path, timestamp and body).
    pub fn nonce(&self) -> &str {
        match &self.scheme {
            Scheme::V1 { nonce, .. } => nonce,
            Scheme::V2 { signature } => signature,
        }
    }
}

/// Reads the signature headers (`header` looks one up, case-insensitively); `None` when they are
/// absent or malformed.
pub fn read_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Signed> {
    let ak = header("x-ak")?.trim();
    let ts_text = header("x-timestamp")?.trim();
    if ak.is_empty() || ak.len() > 128 {
        return None;
    }
    let timestamp = ts_text.parse::<i64>().ok().filter(|t| *t > 0)?;
    let scheme = if let Some(sig) = header("x-signature-v2") {
        Scheme::V2 {
            signature: sig.trim().to_owned(),
        }
    } else {
        let nonce = header("x-nonce")?.trim();
        if nonce.is_empty() || nonce.len() > 128 {
            return None;
        }
        Scheme::V1 {
            nonce: nonce.to_owned(),
            signature: header("x-signature")?.trim().to_owned(),
        }
    };
    Some(Signed {
        access_key_id: ak.to_owned(),
        timestamp_text: ts_text.to_owned(),
        timestamp,
        scheme,
    })
}

/// The HMAC of `message` under `secret` (HMAC accepts keys of any length, so this is `Some`).
fn mac(secret: &str, message: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(message.as_bytes());
    Some(m)
}

/// The v1 signed text.
pub fn v1_message(timestamp: &str, nonce: &str, compact_json: &str) -> String {
    format!("{timestamp}\n{nonce}\n{compact_json}")
}

/// The v1 signature (lowercase hex) of a message: what the predecessor's `hmac_headers` sends.
pub fn v1_sign(secret: &str, message: &str) -> String {
    mac(secret, message).map_or_else(String::new, |m| hex(&m.finalize().into_bytes()))
}

/// The v2 signed text.
pub fn v2_message(method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "{}\n{path}\n{timestamp}\n{}",
        method.to_ascii_uppercase(),
        hex(&Sha256::digest(body))
    )
}

/// The v2 signature (base64): what the predecessor's `hmac_sign` returns.
pub fn v2_sign(secret: &str, message: &str) -> String {
    mac(secret, message).map_or_else(String::new, |m| B64.encode(m.finalize().into_bytes()))
}

/// Whether `signature` is the HMAC of one of `messages` under `secret` (constant-time per
/// comparison). `hex_encoded` says how the signature is written.
fn verify_any(secret: &str, messages: &[String], signature: &str, hex_encoded: bool) -> bool {
    let Some(expected) = (if hex_encoded {
        unhex(signature)
    } else {
        B64.decode(signature).ok()
    }) else {
        return false;
    };
    let mut ok = false;
    for message in messages {
        // No early exit: each candidate costs the same whether or not an earlier one matched.
        ok |= mac(secret, message).is_some_and(|m| m.verify_slice(&expected).is_ok());
    }
    ok
}

/// The request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The paths the client may have signed (the path as requested, with and without a stage).
    pub paths: &'a [String],
    /// The raw body.
    pub body: &'a [u8],
}

/// Whether `signed` is a valid signature of `req` under `secret`.
pub fn verify(secret: &str, signed: &Signed, req: &Request<'_>) -> bool {
    match &signed.scheme {
        Scheme::V1 { nonce, signature } => {
            let mut messages = Vec::with_capacity(2);
            // A JSON body is UTF-8; anything else cannot have been signed by this scheme.
            let Ok(raw) = std::str::from_utf8(req.body) else {
                return false;
            };
            messages.push(v1_message(&signed.timestamp_text, nonce, raw));
            // Our re-serialisation, when it differs from the raw text (the client sent spaces
            // or \u escapes, as `requests.post(json=...)` does).
            if let Ok(parsed) = serde_json::from_slice::<Value>(req.body) {
                let compact = python_compact(&parsed);
                if compact != raw {
                    messages.push(v1_message(&signed.timestamp_text, nonce, &compact));
                }
            }
            verify_any(secret, &messages, signature, true)
        }
        Scheme::V2 { signature } => {
            let messages: Vec<String> = req
                .paths
                .iter()
                .map(|p| v2_message(req.method, p, &signed.timestamp_text, req.body))
                .collect();
            verify_any(secret, &messages, signature, false)
        }
    }
}

/// Burns the time a verification takes, for a key that does not exist (so response times do not
/// tell which keys exist).
pub fn verify_decoy(signed: &Signed, req: &Request<'_>) {
    let _ = verify("decoy-secret-for-unknown-keys", signed, req);
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`, as Python writes it: keys in
/// the order received, no spaces, non-ASCII as UTF-8, control characters as `\uXXXX` (lowercase
/// hex) except `\b \f \n \r \t`, floats as Python's `repr` (`1e-05`, `1e+16`, `2.0`).
///
/// Where it can still differ from what the client signed (the raw body is tried first, so these
/// only matter for a client that sends a different text than it signs): integers beyond 64 bits
/// (read as floats here, exact in Python), `NaN` / `Infinity` (not JSON; refused), and a body
/// that repeats a key (Python keeps the last value at the first key's place, as we do, but a
/// client may have signed its own dict before the duplicate existed).
pub fn python_compact(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFloats);
    // Writing a Value to a Vec cannot fail.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json's compact formatter with Python's float `repr`.
struct PythonFloats;

impl serde_json::ser::Formatter for PythonFloats {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f64) -> std::io::Result<()> {
        w.write_all(python_float(v).as_bytes())
    }
    fn write_f32<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f32) -> std::io::Result<()> {
        w.write_all(python_float(f64::from(v)).as_bytes())
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, in positional notation when the
/// decimal exponent is in -4..16 (with `.0` for whole numbers), else `d.ddde±XX`.
pub fn python_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip form too: "-1.25e-7", "1e16", "0e0".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            format!("0.{zeros}{digits}")
        } else if point >= n {
            let zeros = "0".repeat(usize::try_from(point - n).unwrap_or(0));
            format!("{digits}{zeros}.0")
        } else {
            let (int, frac) = digits.split_at(usize::try_from(point).unwrap_or(0));
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Computed with CPython 3.11: `hmac.new(sk, f"{ts}\n{nonce}\n{compact}".encode(),
    /// hashlib.sha256).hexdigest()` where `compact = json.dumps(payload, ensure_ascii=False,
    /// separators=(",", ":"))`, i.e. the predecessor's `hmac_headers`.
    const PY_SECRET: &str = "sk_test_0123456789abcdef";
    const PY_TS: &str = "1764547200";
    const PY_NONCE: &str = "0123456789abcdef";
    const PY_V1: &str = "b3dc1f44f1309daa9b3808d254c595a47687d3d61ca8a5cbe5e1f55c8221bb47";
    /// The same payload as `requests.post(json=payload)` sends it: default separators, ASCII
    /// escapes, a surrogate pair.
    const PY_WIRE: &str = r#"{"project": "\u5ba2\u670d", "route_key": "chat", "variables": {"QUESTION": "\u4eca\u5929\u5929\u6c14\u600e\u4e48\u6837\uff1f", "n": 3, "temp": 0.7, "tiny": 1e-05, "big": 1e+16, "whole": 2.0, "neg": -0.0, "nested": {"list": [1, 2.5, "\u4e09", null, true, false], "empty": {}}, "quote": "he said \"hi\"\n\t/\u001f\u007f", "emoji": "\ud83d\ude00"}}"#;
    /// `hmac_sign(sk, "POST", "/run-route", ts, PY_WIRE.encode())`.
    const PY_V2: &str = "U1a9YO62q9tt46acs9tH9WjStT419iIq0jptYgfedgA=";

    fn paths() -> Vec<String> {
        vec!["/run-route".into()]
    }

    #[test]
    fn the_predecessors_v1_signature_of_a_python_client_body_is_accepted() {
        let signed = Signed {
            access_key_id: "ak_1".into(),
            timestamp_text: PY_TS.into(),
            timestamp: 1_764_547_200,
            scheme: Scheme::V1 {
                nonce: PY_NONCE.into(),
                signature: PY_V1.into(),
            },
        };
        let p = paths();
        let req = Request {
            method: "POST",
            paths: &p,
            body: PY_WIRE.as_bytes(),
        };
        assert!(verify(PY_SECRET, &signed, &req));
        assert!(!verify("sk_other", &signed, &req));
        let tampered = PY_WIRE.replace("\"n\": 3", "\"n\": 4");
        let req = Request {
            body: tampered.as_bytes(),
            ..req
        };
        assert!(!verify(PY_SECRET, &signed, &req));
    }

    #[test]
    fn python_compact_json_matches_cpython_byte_for_byte() {
        let parsed: Value = serde_json::from_str(PY_WIRE).unwrap();
        let ours = python_compact(&parsed);
        let message = v1_message(PY_TS, PY_NONCE, &ours);
        assert_eq!(v1_sign(PY_SECRET, &message), PY_V1, "{ours}");
        assert!(ours.contains("\"tiny\":1e-05,\"big\":1e+16,\"whole\":2.0,\"neg\":-0.0"));
        assert!(ours.contains("客服") && ours.contains("😀"));
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        // Pairs from CPython's repr().
        for (v, py) in [
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (0.0001, "0.0001"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (9_999_999_999_999_998.0, "9999999999999998.0"),
            (1e22, "1e+22"),
            (12345.678, "12345.678"),
            (-1.25e-7, "-1.25e-07"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float(v), py);
        }
        assert_eq!(
            python_compact(&json!({"a": [1, -2, 0.5]})),
            r#"{"a":[1,-2,0.5]}"#
        );
    }

    #[test]
    fn the_predecessors_raw_body_signature_is_accepted_for_the_signed_path_only() {
        let signed = Signed {
            access_key_id: "ak_1".into(),
            timestamp_text: PY_TS.into(),
            timestamp: 1_764_547_200,
            scheme: Scheme::V2 {
                signature: PY_V2.into(),
            },
        };
        let p = vec!["/prod/run-route".to_owned(), "/run-route".to_owned()];
        let req = Request {
            method: "POST",
            paths: &p,
            body: PY_WIRE.as_bytes(),
        };
        assert!(verify(PY_SECRET, &signed, &req));
        let other = vec!["/run-once".to_owned()];
        assert!(!verify(
            PY_SECRET,
            &signed,
            &Request {
                paths: &other,
                ..req
            }
        ));
        assert!(!verify(
            PY_SECRET,
            &signed,
            &Request {
                method: "PUT",
                ..req
            }
        ));
    }

    #[test]
    fn headers_are_read_case_insensitively_and_malformed_ones_refused() {
        let h = |name: &str| match name {
            "x-ak" => Some("ak_1"),
            "x-timestamp" => Some("1764547200"),
            "x-nonce" => Some("n1"),
            "x-signature" => Some("00"),
            _ => None,
        };
        let s = read_headers(h).unwrap();
        assert_eq!(s.nonce(), "n1");
        assert!(
            read_headers(|n| if n == "x-timestamp" {
                Some("soon")
            } else {
                h(n)
            })
            .is_none()
        );
        assert!(read_headers(|n| if n == "x-nonce" { None } else { h(n) }).is_none());
        assert!(unhex("zz").is_none() && unhex("abc").is_none());
    }
}
