//! `usage`: the spend report grouped from the audit rows.

use std::path::PathBuf;

use ai_runner::cost::report::{self, By};
use ai_runner::model::now_ms;
use clap::{Args, ValueEnum};

use super::utc_datetime;
use crate::commands::access::parse_span;
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, out, outln};

/// `usage`.
#[derive(Args)]
pub struct UsageArgs {
    /// How far back: `24h`, `7d`, `30d`, or a UTC date `YYYY-MM-DD`.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Group rows by this.
    #[arg(long, value_enum, default_value = "day")]
    pub by: ByArg,
    /// What the daily spend chart stacks by.
    #[arg(long, value_enum, default_value = "model")]
    pub stack: ByArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: UsageFormat,
    /// Also write a self-contained HTML page with charts here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// `--by`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ByArg {
    /// UTC day.
    Day,
    /// Project.
    Project,
    /// Route.
    Route,
    /// Config.
    Config,
    /// Model.
    Model,
    /// Access key.
    Key,
}

/// `usage --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum UsageFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
    /// CSV.
    Csv,
}

fn by(b: ByArg) -> By {
    match b {
        ByArg::Day => By::Day,
        ByArg::Project => By::Project,
        ByArg::Route => By::Route,
        ByArg::Config => By::Config,
        ByArg::Model => By::Model,
        ByArg::Key => By::Key,
    }
}

/// `--since`: a span back from now, or a UTC date.
fn since(text: &str) -> Result<String, Failure> {
    let t = text.trim();
    let is_date = t.len() == 10
        && t.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_date {
        return Ok(format!("{t} 00:00:00"));
    }
    let span = parse_span(t)?;
    Ok(utc_datetime(
        now_ms() - i64::try_from(span.as_millis()).unwrap_or(i64::MAX / 2),
    ))
}

impl UsageArgs {
    /// Runs the usage report.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        let since = since(&self.since)?;
        let rows = db.usage_rows(&since).await?;
        let r = report::build(&rows, by(self.by), by(self.stack), since);
        match self.format {
            UsageFormat::Table => out!("{}", report::table(&r)),
            UsageFormat::Json => outln!("{}", report::json(&r)),
            UsageFormat::Csv => out!("{}", report::csv(&r)),
        }
        if let Some(path) = &self.html {
            output::write_out(Some(path), &report::html(&r))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_span_or_a_date() {
        assert_eq!(since("2026-11-01").unwrap(), "2026-11-01 00:00:00");
        assert!(since("7d").unwrap().len() == 19);
        assert!(since("yesterday").is_err());
        assert_eq!(
            utc_datetime(1_796_083_200_000 + 3_723_000),
            "2026-12-01 01:02:03"
        );
    }
}
