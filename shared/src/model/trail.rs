//! The audit trail as a reader asks for it: filters over `ai_call_logs`, a keyset cursor, and the
//! rows of one page. Parsed once from what a person typed (a form, a query string).
//!
//! Invariants: a filter holds only well-formed values (timestamps are `YYYY-MM-DD HH:MM:SS`, the
//! status is one of two words), so the store binds them as they are; a page is ordered newest
//! first by `(created_at, id)`, the order the trail's indexes keep, and its cursor is the last
//! row's pair, so the next page starts strictly after it (no `OFFSET`, no row twice).

use serde::Serialize;

/// Which calls: `ok` (no error code) or `error` (any error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrailStatus {
    /// Answered without an error code.
    Ok,
    /// Failed with an error code.
    Error,
}

impl TrailStatus {
    /// `ok` / `error`; anything else (including empty) is no status filter.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "error" => Some(Self::Error),
            _ => None,
        }
    }

    /// The word a form uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// What a trail page shows. Empty fields filter nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailFilter {
    /// Calls at or after this UTC time (`YYYY-MM-DD HH:MM:SS`).
    pub since: Option<String>,
    /// Calls at or before this UTC time (`YYYY-MM-DD HH:MM:SS.fff`; a bare date means its end).
    pub until: Option<String>,
    /// One config.
    pub config_key: Option<String>,
    /// One project's route calls.
    pub project: Option<String>,
    /// One route key.
    pub route_key: Option<String>,
    /// Answered or failed.
    pub status: Option<TrailStatus>,
    /// One stable code.
    pub error_code: Option<String>,
    /// One run (a route's member attempts share it).
    pub trace_id: Option<String>,
}

/// Why a filter value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct FilterError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub why: &'static str,
}

impl TrailFilter {
    /// The filter from text fields (a form's values, trimmed; empty is none). Times are UTC:
    /// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or the browser's `YYYY-MM-DDTHH:MM[:SS]`.
    pub fn parse(
        fields: &std::collections::HashMap<String, String>,
    ) -> Result<TrailFilter, FilterError> {
        let get = |k: &str| {
            fields
                .get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let text = |k: &'static str| -> Result<Option<String>, FilterError> {
            match get(k) {
                Some(v) if v.len() > 255 => Err(FilterError {
                    field: k,
                    why: "longer than 255 characters",
                }),
                other => Ok(other),
            }
        };
        let status = match get("status") {
            None => None,
            Some(s) => Some(TrailStatus::parse(&s).ok_or(FilterError {
                field: "status",
                why: "is ok or error",
            })?),
        };
        Ok(TrailFilter {
            since: get("since")
                .map(|s| timestamp(&s, false).ok_or(bad_time("since")))
                .transpose()?,
            until: get("until")
                .map(|s| timestamp(&s, true).ok_or(bad_time("until")))
                .transpose()?,
            config_key: text("config")?,
            project: text("project")?,
            route_key: text("route")?,
            status,
            error_code: text("code")?,
            trace_id: text("trace")?,
        })
    }

    /// The filter as query-string pairs (the form's field names), for links to the next page.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        };
        push("since", &self.since);
        push("until", &self.until);
        push("config", &self.config_key);
        push("project", &self.project);
        push("route", &self.route_key);
        push("code", &self.error_code);
        push("trace", &self.trace_id);
        if let Some(s) = self.status {
            out.push(("status", s.as_str().to_owned()));
        }
        out
    }
}

fn bad_time(field: &'static str) -> FilterError {
    FilterError {
        field,
        why: "is a UTC time: YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]",
    }
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS]]` as `YYYY-MM-DD HH:MM:SS` (a bare date: its start, or with
/// `end` its last millisecond), or `None` when it is not such a time.
fn timestamp(s: &str, end: bool) -> Option<String> {
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, dd) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || !digits(y, 4) || !digits(m, 2) || !digits(dd, 2) {
        return None;
    }
    let (mo, day): (u8, u8) = (m.parse().ok()?, dd.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
        return None;
    }
    let Some(time) = time else {
        let clock = if end { "23:59:59.999" } else { "00:00:00" };
        return Some(format!("{date} {clock}"));
    };
    // Seconds may carry milliseconds (what a bare date's end and the pager's links hold).
    let (time, millis) = match time.split_once('.') {
        Some((t, ms)) if digits(ms, 3) => (t, Some(ms)),
        Some(_) => return None,
        None => (time, None),
    };
    let parts: Vec<&str> = time.split(':').collect();
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| digits(p, 2)) {
        return None;
    }
    if millis.is_some() && parts.len() != 3 {
        return None;
    }
    let (h, mi): (u8, u8) = (parts[0].parse().ok()?, parts[1].parse().ok()?);
    let sec: u8 = parts.get(2).map_or(Some(0), |p| p.parse().ok())?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some(match millis {
        Some(ms) => format!("{date} {h:02}:{mi:02}:{sec:02}.{ms}"),
        None => format!("{date} {h:02}:{mi:02}:{sec:02}"),
    })
}

/// Where the next page starts: strictly older than this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailCursor {
    /// The row's `created_at`, as the database prints it.
    pub created_at: String,
    /// The row's id.
    pub id: i64,
}

impl TrailCursor {
    /// `<id>~<created_at>`: what a next-page link carries.
    pub fn encode(&self) -> String {
        format!("{}~{}", self.id, self.created_at)
    }

    /// The cursor a link carried (`None`: not one of ours).
    pub fn decode(s: &str) -> Option<Self> {
        let (id, at) = s.split_once('~')?;
        let ok = !at.is_empty()
            && at.len() <= 32
            && at
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b' ' | b'.'));
        ok.then_some(())?;
        Some(Self {
            created_at: at.to_owned(),
            id: id.parse().ok()?,
        })
    }
}

/// One call in the trail list (the bodies stay in the row until its detail is asked for).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrailRow {
    /// `ai_call_logs.id`.
    pub id: i64,
    /// When it was written (database time, UTC).
    pub created_at: String,
    /// The config that ran.
    pub config_key: String,
    /// The model it named.
    pub model_name: Option<String>,
    /// The route's project, for member attempts.
    pub project_name: Option<String>,
    /// The route key, for member attempts.
    pub route_key: Option<String>,
    /// 1-based member attempt within the route run.
    pub route_attempt: Option<i64>,
    /// `ok` / `error` (none on the predecessor's rows).
    pub status: Option<String>,
    /// The stable code of a failure.
    pub error_code: Option<String>,
    /// The provider's last HTTP status (0: none).
    pub http_status: i64,
    /// Whole call.
    pub duration_ms: i64,
    /// Tokens, when the provider said.
    pub total_tokens: Option<i64>,
    /// Cost in nano-USD (none: unpriced or not recorded).
    pub cost_nano_usd: Option<i64>,
    /// `cli`, `apigw`, `console`, `eval`, ...
    pub trigger_source: Option<String>,
    /// The run's trace id.
    pub trace_id: Option<String>,
}

/// One page of the trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrailPage {
    /// The rows.
    pub rows: Vec<TrailRow>,
    /// Where the next page starts (none: this is the last).
    #[serde(skip)]
    pub next: Option<TrailCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn times_from_a_form_become_database_timestamps() {
        let f = TrailFilter::parse(&form(&[
            ("since", "2026-12-01T09:30"),
            ("until", "2026-12-02"),
        ]))
        .unwrap();
        assert_eq!(f.since.as_deref(), Some("2026-12-01 09:30:00"));
        assert_eq!(f.until.as_deref(), Some("2026-12-02 23:59:59.999"));
        assert_eq!(
            timestamp("2026-01-31 23:59:58", false).as_deref(),
            Some("2026-01-31 23:59:58")
        );
    }

    #[test]
    fn malformed_times_and_statuses_are_refused_with_their_field() {
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-12-01 24:00",
            "2026-12-01'; DROP",
            "26-12-01",
        ] {
            let e = TrailFilter::parse(&form(&[("since", bad)])).unwrap_err();
            assert_eq!(e.field, "since", "{bad}");
        }
        let e = TrailFilter::parse(&form(&[("status", "maybe")])).unwrap_err();
        assert_eq!(e.field, "status");
    }

    #[test]
    fn empty_fields_filter_nothing_and_pairs_round_trip() {
        let f = TrailFilter::parse(&form(&[("config", "  "), ("status", "")])).unwrap();
        assert_eq!(f, TrailFilter::default());
        let f = TrailFilter::parse(&form(&[
            ("config", "c1"),
            ("status", "error"),
            ("code", "UPSTREAM_TIMEOUT"),
            ("until", "2026-12-02"),
        ]))
        .unwrap();
        let back: HashMap<String, String> = f
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(TrailFilter::parse(&back).unwrap(), f);
    }

    #[test]
    fn cursors_round_trip_and_foreign_text_is_not_a_cursor() {
        let c = TrailCursor {
            created_at: "2026-12-01 10:00:00.123".into(),
            id: 42,
        };
        assert_eq!(TrailCursor::decode(&c.encode()), Some(c));
        assert_eq!(TrailCursor::decode("42"), None);
        assert_eq!(TrailCursor::decode("x~2026-12-01"), None);
        assert_eq!(TrailCursor::decode("1~2026-12-01' OR 1=1"), None);
    }
}
