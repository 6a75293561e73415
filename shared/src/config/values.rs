//! Readers of one setting value: numbers, seconds, fractions and the predecessor's boolean
//! spellings (in an environment variable or a JSON value).
//!
//! Invariants: an empty variable means its default; anything unreadable is
//! [`ConfigError::Invalid`] naming the variable and what was expected.

use std::time::Duration;

use serde_json::Value;

use super::{ConfigError, Getter};

pub(super) fn num<'a, T: std::str::FromStr>(
    get: Getter<'a>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected a non-negative whole number, got {v:?}"),
        }),
    }
}

pub(super) fn secs<'a>(
    get: Getter<'a>,
    name: &'static str,
    default: f64,
) -> Result<Duration, ConfigError> {
    let v = match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => v.parse::<f64>().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected seconds, got {v:?}"),
        })?,
    };
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be between 0 and 3600 seconds".into(),
        });
    }
    Ok(Duration::from_secs_f64(v))
}

pub(super) fn fraction<'a>(
    get: Getter<'a>,
    name: &'static str,
    default: f64,
) -> Result<f64, ConfigError> {
    let v = match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => return Ok(default),
        Some(v) => v.parse::<f64>().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected a fraction between 0 and 1, got {v:?}"),
        })?,
    };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("expected a fraction between 0 and 1, got {v}"),
        })
    }
}

/// Parses the predecessor's boolean spellings.
pub fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

pub(super) fn flag<'a>(
    get: Getter<'a>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => parse_flag(v).ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("expected true or false, got {v:?}"),
        }),
    }
}

/// Reads a JSON boolean or one of the predecessor's string spellings ("true", "1", ...).
pub fn value_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => parse_flag(s),
        _ => None,
    }
}
