//! What the benchmarks (`tests/benches/`) share: the percentile every table reports, and the
//! backends a run measures (`-- --only sqlite|mariadb`; MariaDB only when
//! `AI_RUNNER_TEST_MYSQL_URL` is set).

use crate::Backend;

/// The `p` quantile (0..=1) of sorted values, nearest rank; NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The backends this run measures: SQLite, and MariaDB when configured, cut to `--only`'s.
pub fn backends() -> Vec<Backend> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut backends = vec![Backend::Sqlite];
    if crate::mysql_url().is_some() {
        backends.push(Backend::MariaDb);
    }
    backends.retain(|b| match only.as_deref() {
        Some("sqlite") => *b == Backend::Sqlite,
        Some("mariadb") => *b == Backend::MariaDb,
        _ => true,
    });
    backends
}
