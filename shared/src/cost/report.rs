//! The usage report: audit rows grouped by day, project, route, config, model or key, with
//! calls, errors by code, tokens, cost and latency percentiles, written as a table, JSON, CSV
//! or one self-contained HTML page with inline SVG charts (no script, no network).
//!
//! Invariants: pure (rows in, text out); cost sums count only rows with a cost and say how many
//! rows were unpriced or estimated, so an unknown cost is never shown as a smaller known one;
//! every text that came from the database is escaped in HTML and quoted in CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::html::escape;
use crate::model::cost::{UsageRow, nano_usd};
use crate::model::percentile as pct;

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// UTC day of `created_at`.
    Day,
    /// Project.
    Project,
    /// `project/route_key`.
    Route,
    /// config_key.
    Config,
    /// Model.
    Model,
    /// Access key.
    Key,
}

impl By {
    /// Parses `--by`.
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "day" => By::Day,
            "project" => By::Project,
            "route" => By::Route,
            "config" => By::Config,
            "model" => By::Model,
            "key" => By::Key,
            _ => return None,
        })
    }

    /// As `--by` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Project => "project",
            By::Route => "route",
            By::Config => "config",
            By::Model => "model",
            By::Key => "key",
        }
    }

    fn key(self, r: &UsageRow) -> String {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match self {
            By::Day => day(r),
            By::Project => or_none(&r.project),
            By::Route => match (&r.project, &r.route) {
                (Some(p), Some(k)) => format!("{p}/{k}"),
                _ => "(none)".into(),
            },
            By::Config => r.config_key.clone(),
            By::Model => or_none(&r.model),
            By::Key => or_none(&r.key),
        }
    }
}

fn day(r: &UsageRow) -> String {
    r.at.get(..10).unwrap_or(&r.at).to_owned()
}

/// One group's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// The group's value (a day, a project, ...).
    pub key: String,
    /// Calls (audit rows).
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Failed calls per error code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Known cost, USD.
    pub cost_usd: f64,
    /// Known cost, nano-USD.
    pub cost_nano: i64,
    /// Calls whose model had no price (their cost is not in the sum).
    pub unpriced: u64,
    /// Calls whose cost is an estimate.
    pub estimated: u64,
    /// Median call duration, ms.
    pub p50_ms: i64,
    /// 95th percentile call duration, ms.
    pub p95_ms: i64,
    /// Median time to first token, ms (streams).
    pub ttft_p50_ms: Option<i64>,
    /// 95th percentile time to first token, ms.
    pub ttft_p95_ms: Option<i64>,
}

fn group(key: String, rows: &[&UsageRow]) -> Group {
    let mut g = Group {
        key,
        ..Group::default()
    };
    let mut ms: Vec<i64> = Vec::with_capacity(rows.len());
    let mut ttft: Vec<i64> = Vec::new();
    for r in rows {
        g.calls += 1;
        if let Some(code) = &r.error_code {
            g.errors += 1;
            *g.errors_by_code.entry(code.clone()).or_default() += 1;
        }
        g.prompt_tokens += r.prompt_tokens.unwrap_or(0);
        g.completion_tokens += r.completion_tokens.unwrap_or(0);
        match (r.cost_nano, r.cost_status.as_deref()) {
            (Some(c), status) => {
                g.cost_nano = g.cost_nano.saturating_add(c);
                if status == Some("estimated") {
                    g.estimated += 1;
                }
            }
            // Rows from before the cost columns, or unpriced models: unknown, not free.
            (None, _) => g.unpriced += 1,
        }
        ms.push(r.duration_ms);
        ttft.extend(r.ttft_ms);
    }
    ms.sort_unstable();
    ttft.sort_unstable();
    g.cost_usd = nano_usd(g.cost_nano);
    g.p50_ms = pct(&ms, 50).unwrap_or(0);
    g.p95_ms = pct(&ms, 95).unwrap_or(0);
    g.ttft_p50_ms = pct(&ttft, 50);
    g.ttft_p95_ms = pct(&ttft, 95);
    g
}

/// One day of the charts: spend per stack (model or project), error rate, latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// nano-USD per model (or project).
    pub spend: BTreeMap<String, i64>,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Median duration, ms.
    pub p50_ms: i64,
    /// 95th percentile duration, ms.
    pub p95_ms: i64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// Rows from this time on (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub since: String,
    /// The grouping.
    pub by: By,
    /// What the spend chart stacks by (`model` or `project`).
    pub stack: By,
    /// One entry per group, largest cost first.
    pub groups: Vec<Group>,
    /// Every row.
    pub total: Group,
    /// Per day, for the charts.
    pub days: Vec<Day>,
}

/// Builds the report; `stack` is what the daily spend chart stacks by.
pub fn build(rows: &[UsageRow], by: By, stack: By, since: String) -> UsageReport {
    let mut groups: BTreeMap<String, Vec<&UsageRow>> = BTreeMap::new();
    let mut days: BTreeMap<String, Vec<&UsageRow>> = BTreeMap::new();
    for r in rows {
        groups.entry(by.key(r)).or_default().push(r);
        days.entry(day(r)).or_default().push(r);
    }
    let mut groups: Vec<Group> = groups.into_iter().map(|(k, v)| group(k, &v)).collect();
    if by != By::Day {
        groups.sort_by(|a, b| b.cost_nano.cmp(&a.cost_nano).then(b.calls.cmp(&a.calls)));
    }
    let all: Vec<&UsageRow> = rows.iter().collect();
    let days = days
        .into_iter()
        .map(|(d, v)| {
            let g = group(d.clone(), &v);
            let mut spend = BTreeMap::new();
            for r in &v {
                *spend.entry(stack.key(r)).or_default() += r.cost_nano.unwrap_or(0);
            }
            Day {
                day: d,
                spend,
                calls: g.calls,
                errors: g.errors,
                p50_ms: g.p50_ms,
                p95_ms: g.p95_ms,
            }
        })
        .collect();
    UsageReport {
        since,
        by,
        stack,
        groups,
        total: group("total".into(), &all),
        days,
    }
}

fn codes(g: &Group) -> String {
    g.errors_by_code
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cost_text(g: &Group) -> String {
    let mut s = format!("{:.6}", g.cost_usd);
    if g.unpriced > 0 {
        let _ = write!(s, " (+{} unpriced)", g.unpriced);
    }
    if g.estimated > 0 {
        let _ = write!(s, " ({} estimated)", g.estimated);
    }
    s
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A plain-text table.
pub fn table(r: &UsageReport) -> String {
    let head = [
        "group",
        "calls",
        "errors",
        "prompt_tok",
        "completion_tok",
        "cost_usd",
        "p50_ms",
        "p95_ms",
        "ttft_p50",
        "ttft_p95",
        "error_codes",
    ];
    let mut rows: Vec<[String; 11]> = Vec::new();
    for g in r.groups.iter().chain(std::iter::once(&r.total)) {
        rows.push([
            g.key.clone(),
            g.calls.to_string(),
            g.errors.to_string(),
            g.prompt_tokens.to_string(),
            g.completion_tokens.to_string(),
            cost_text(g),
            g.p50_ms.to_string(),
            g.p95_ms.to_string(),
            opt(g.ttft_p50_ms),
            opt(g.ttft_p95_ms),
            codes(g),
        ]);
    }
    let mut width = head.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    let _ = writeln!(out, "usage since {} UTC, by {}", r.since, r.by.as_str());
    line(&mut out, head.to_vec());
    for row in &rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

/// CSV (RFC 4180 quoting), one line per group then the total.
pub fn csv(r: &UsageReport) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from(
        "group,calls,errors,prompt_tokens,completion_tokens,cost_usd,unpriced_calls,estimated_calls,p50_ms,p95_ms,ttft_p50_ms,ttft_p95_ms,error_codes\n",
    );
    for g in r.groups.iter().chain(std::iter::once(&r.total)) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.9},{},{},{},{},{},{},{}",
            q(&g.key),
            g.calls,
            g.errors,
            g.prompt_tokens,
            g.completion_tokens,
            g.cost_usd,
            g.unpriced,
            g.estimated,
            g.p50_ms,
            g.p95_ms,
            g.ttft_p50_ms.map(|v| v.to_string()).unwrap_or_default(),
            g.ttft_p95_ms.map(|v| v.to_string()).unwrap_or_default(),
            q(&codes(g)),
        );
    }
    out
}

/// JSON.
pub fn json(r: &UsageReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

const PALETTE: [&str; 8] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563",
];

/// Daily spend as stacked bars, one colour per stack value (a legend names them).
fn spend_chart(h: &mut String, r: &UsageReport) {
    let names: Vec<&String> = {
        let mut all: Vec<&String> = r
            .days
            .iter()
            .flat_map(|d| d.spend.iter().filter(|(_, v)| **v > 0).map(|(k, _)| k))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let top = r
        .days
        .iter()
        .map(|d| d.spend.values().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, bar) = (40 + r.days.len() * 30, 22);
    let _ = write!(
        h,
        "<figure><figcaption>Spend per day (USD), stacked by {stack}; tallest day {max:.6} USD</figcaption>\
         <svg id=\"spend\" class=\"chart\" width=\"{w}\" height=\"180\" role=\"img\" aria-label=\"spend per day\">",
        stack = r.stack.as_str(),
        max = nano_usd(top),
    );
    for (i, d) in r.days.iter().enumerate() {
        let x = 30 + i * 30;
        let mut y = 160i64;
        for (n, name) in names.iter().enumerate() {
            let v = d.spend.get(*name).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let height = (i128::from(v) * 150 / i128::from(top)).max(1) as i64;
            y -= height;
            let _ = write!(
                h,
                "<rect class=\"spend\" x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{height}\" fill=\"{fill}\" data-day=\"{day}\" data-stack=\"{name}\" data-usd=\"{usd:.9}\"><title>{day} {name}: {usd:.6} USD</title></rect>",
                fill = PALETTE[n % PALETTE.len()],
                day = escape(&d.day),
                name = escape(name),
                usd = nano_usd(v),
            );
        }
        day_label(h, x, 175, &d.day);
    }
    h.push_str("</svg><ul class=\"legend\">");
    for (n, name) in names.iter().enumerate() {
        let _ = write!(
            h,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
            PALETTE[n % PALETTE.len()],
            escape(name)
        );
    }
    h.push_str("</ul></figure>");
}

/// `MM-DD` under a day's bar.
fn day_label(h: &mut String, x: usize, y: usize, day: &str) {
    let _ = write!(
        h,
        "<text x=\"{x}\" y=\"{y}\" font-size=\"9\">{}</text>",
        escape(day.get(5..).unwrap_or(day))
    );
}

/// Error rate per day as bars (0..100%).
fn error_chart(h: &mut String, r: &UsageReport) {
    let w = 40 + r.days.len() * 30;
    let _ = write!(
        h,
        "<figure><figcaption>Error rate per day (%)</figcaption><svg id=\"errors\" class=\"chart\" width=\"{w}\" height=\"135\" role=\"img\" aria-label=\"error rate per day\">"
    );
    for (i, d) in r.days.iter().enumerate() {
        let rate = if d.calls == 0 {
            0.0
        } else {
            d.errors as f64 * 100.0 / d.calls as f64
        };
        let height = (rate * 1.0).round() as i64;
        let _ = write!(
            h,
            "<rect class=\"error-rate\" x=\"{x}\" y=\"{y}\" width=\"22\" height=\"{height}\" fill=\"#dc2626\" data-day=\"{day}\" data-rate=\"{rate:.2}\"><title>{day}: {rate:.1}% of {calls} calls</title></rect>",
            x = 30 + i * 30,
            y = 110 - height,
            day = escape(&d.day),
            calls = d.calls,
        );
        day_label(h, 30 + i * 30, 125, &d.day);
    }
    h.push_str(
        "<line x1=\"25\" y1=\"110\" x2=\"100%\" y2=\"110\" stroke=\"#999\"/></svg></figure>",
    );
}

/// p50 and p95 latency per day as two polylines.
fn latency_chart(h: &mut String, r: &UsageReport) {
    let top = r.days.iter().map(|d| d.p95_ms).max().unwrap_or(0).max(1);
    let w = 40 + r.days.len() * 30;
    let point = |i: usize, v: i64| format!("{},{}", 41 + i * 30, 120 - v * 110 / top);
    let _ = write!(
        h,
        "<figure><figcaption>Latency per day (ms): p50 and p95, top {top} ms</figcaption><svg id=\"latency\" class=\"chart\" width=\"{w}\" height=\"140\" role=\"img\" aria-label=\"latency percentiles per day\">"
    );
    for (class, colour, pick) in [
        ("p50", "#2563eb", (|d: &Day| d.p50_ms) as fn(&Day) -> i64),
        ("p95", "#ea580c", |d: &Day| d.p95_ms),
    ] {
        let pts: Vec<String> = r
            .days
            .iter()
            .enumerate()
            .map(|(i, d)| point(i, pick(d)))
            .collect();
        let _ = write!(
            h,
            "<polyline class=\"{class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{class}</title></polyline>",
            pts.join(" ")
        );
        // A point per day, so a single day still shows.
        for (i, d) in r.days.iter().enumerate() {
            let _ = write!(
                h,
                "<circle class=\"{class}-point\" cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{colour}\"><title>{} {class}: {} ms</title></circle>",
                41 + i * 30,
                120 - pick(d) * 110 / top,
                escape(&d.day),
                pick(d)
            );
        }
    }
    for (i, d) in r.days.iter().enumerate() {
        day_label(h, 30 + i * 30, 135, &d.day);
    }
    h.push_str("</svg><ul class=\"legend\"><li><span class=\"swatch\" style=\"background:#2563eb\"></span>p50</li><li><span class=\"swatch\" style=\"background:#ea580c\"></span>p95</li></ul></figure>");
}

/// The report as one self-contained HTML page.
pub fn html(r: &UsageReport) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ai-runner usage since {since}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}th{{background:#f4f4f4}}td.n{{text-align:right}}\
figure{{display:inline-block;margin:8px 24px 8px 0;vertical-align:top}}.legend{{list-style:none;padding:0;font-size:12px}}\
.swatch{{display:inline-block;width:10px;height:10px;margin-right:4px}}</style></head><body>\
<h1>Usage since <span id=\"since\">{since}</span> UTC</h1>\
<p id=\"totals\"><span id=\"total-calls\">{calls}</span> calls, <span id=\"total-errors\">{errors}</span> errors, \
<span id=\"total-cost\">{cost:.6}</span> USD{unpriced}</p>",
        since = escape(&r.since),
        calls = r.total.calls,
        errors = r.total.errors,
        cost = r.total.cost_usd,
        unpriced = if r.total.unpriced > 0 {
            format!(
                " (<span id=\"unpriced\">{}</span> unpriced calls not included)",
                r.total.unpriced
            )
        } else {
            String::new()
        },
    );
    h.push_str("<h2>Charts</h2><div id=\"charts\">");
    spend_chart(&mut h, r);
    error_chart(&mut h, r);
    latency_chart(&mut h, r);
    let _ = write!(
        h,
        "</div><h2>By {}</h2><table id=\"groups\"><tr><th>group</th><th>calls</th><th>errors</th><th>prompt tokens</th><th>completion tokens</th><th>cost USD</th><th>unpriced</th><th>estimated</th><th>p50 ms</th><th>p95 ms</th><th>TTFT p50</th><th>TTFT p95</th><th>error codes</th></tr>",
        r.by.as_str()
    );
    for g in r.groups.iter().chain(std::iter::once(&r.total)) {
        let _ = write!(
            h,
            "<tr data-group=\"{key}\"><td class=\"group\">{key}</td><td class=\"n calls\">{}</td><td class=\"n errors\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n cost\">{:.6}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            g.calls,
            g.errors,
            g.prompt_tokens,
            g.completion_tokens,
            g.cost_usd,
            g.unpriced,
            g.estimated,
            g.p50_ms,
            g.p95_ms,
            opt(g.ttft_p50_ms),
            opt(g.ttft_p95_ms),
            escape(&codes(g)),
            key = escape(&g.key),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, model: &str, ms: i64, cost: Option<i64>, err: Option<&str>) -> UsageRow {
        UsageRow {
            at: at.into(),
            config_key: "c".into(),
            model: Some(model.into()),
            duration_ms: ms,
            cost_nano: cost,
            cost_status: Some(if cost.is_some() { "priced" } else { "unpriced" }.into()),
            error_code: err.map(str::to_owned),
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            ..UsageRow::default()
        }
    }

    #[test]
    fn groups_sum_known_costs_and_count_unpriced_rows_apart() {
        let rows = vec![
            row("2026-11-30 10:00:00", "a", 100, Some(1_500), None),
            row(
                "2026-11-30 11:00:00",
                "a",
                300,
                Some(2_500),
                Some("HTTP_429"),
            ),
            row("2026-12-01 09:00:00", "b", 200, None, None),
        ];
        let r = build(&rows, By::Model, By::Model, "2026-11-24 00:00:00".into());
        let a = r.groups.iter().find(|g| g.key == "a").unwrap();
        assert_eq!((a.calls, a.errors, a.cost_nano), (2, 1, 4_000));
        assert_eq!(a.errors_by_code.get("HTTP_429"), Some(&1));
        let b = r.groups.iter().find(|g| g.key == "b").unwrap();
        assert_eq!((b.cost_nano, b.unpriced), (0, 1));
        assert_eq!(
            (r.total.calls, r.total.p50_ms, r.total.p95_ms),
            (3, 200, 300)
        );
        assert_eq!(r.days.len(), 2);
        assert_eq!(r.days[0].spend.get("a"), Some(&4_000));
    }

    #[test]
    fn html_escapes_names_and_csv_quotes_them() {
        let rows = vec![row(
            "2026-12-01 09:00:00",
            "<script>x</script>,\"m\"",
            5,
            Some(1),
            None,
        )];
        let r = build(&rows, By::Model, By::Model, "s".into());
        let h = html(&r);
        assert!(!h.contains("<script>x"));
        assert!(h.contains("&lt;script&gt;x"));
        assert!(csv(&r).contains("\"<script>x</script>,\"\"m\"\"\""));
    }
}
