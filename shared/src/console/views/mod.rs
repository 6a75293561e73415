//! The console's pages: each handler reads through the store or runs through the runner, then
//! renders with [`super::page`]. No decisions of their own: filters are parsed by
//! [`crate::model::trail`], runs are the runner's, reports are [`crate::eval::report`]'s.
//! The pages are split by part of the console: [`catalog`] (the catalog, a config, a route), [`try_it`]
//! (dry runs and runs), [`trail`] (the audit trail, a row, its spilled bodies, a trace),
//! [`uploads`] and [`evals`]; this module holds what they share, [`PageError`] among it.
//!
//! Invariants: a failure shows its stable code and a short message (the cause chain goes to the
//! log); connection rows show whether their key decrypts and in which format, never the key or
//! its blob; a run from the console is an ordinary audited run with trigger `console`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Console;
use super::page::{Nav, e, failure, html, opt};
use crate::code::Code;

mod catalog;
mod evals;
mod trail;
mod try_it;
mod uploads;

pub(super) use catalog::{catalog, config, route};
pub(super) use evals::{eval_run, evals};
pub(super) use trail::{detail, spilled_body, trace, trail};
pub(super) use try_it::try_it;
pub(super) use uploads::{job_result, uploads};

/// The state every handler reads.
type S = State<Arc<Console>>;

/// What a handler answers: a page, or the failure page of a [`PageError`].
type Page = Result<Response, PageError>;

/// Why a page could not be shown: its stable code, a short message and the section it belongs
/// to; answered as the failure page (status from [`crate::status`]).
pub(super) struct PageError {
    code: Code,
    message: String,
    nav: Nav,
}

impl PageError {
    /// A failure the page itself explains (bad input, nothing by that name): not logged.
    fn new(code: Code, message: impl Into<String>, nav: Nav) -> Self {
        Self {
            code,
            message: message.into(),
            nav,
        }
    }

    /// A failure with a cause: the chain goes to the log, the page shows the short message.
    fn logged(code: Code, e: &dyn std::error::Error, nav: Nav) -> Self {
        tracing::warn!(code = %code, error = %crate::error::chain(e), "console page failed");
        Self::new(code, e.to_string(), nav)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        failure(self.code, &self.message, self.nav)
    }
}

/// An error that carries its stable code (the store's, the runner's, the object store's).
trait Coded: std::error::Error {
    fn code(&self) -> Code;
}

impl Coded for crate::ports::StoreError {
    fn code(&self) -> Code {
        crate::ports::StoreError::code(self)
    }
}

impl Coded for crate::ports::ObjectError {
    fn code(&self) -> Code {
        crate::ports::ObjectError::code(self)
    }
}

/// `result.on_page(nav)?`: a failed read or run becomes its logged [`PageError`].
trait OnPage<T> {
    fn on_page(self, nav: Nav) -> Result<T, PageError>;
}

impl<T, E: Coded> OnPage<T> for Result<T, E> {
    fn on_page(self, nav: Nav) -> Result<T, PageError> {
        self.map_err(|e| PageError::logged(e.code(), &e, nav))
    }
}

/// Every `{{NAME}}` a prompt's messages use, in first-use order.
pub(super) fn placeholders(messages: &Value) -> Vec<String> {
    let mut strings = Vec::new();
    crate::template::collect_strings(messages, &mut strings);
    let mut seen = BTreeSet::new();
    strings
        .iter()
        .flat_map(|s| crate::template::placeholders(s))
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

pub(super) fn prompt_ref(p: Option<&crate::catalog::types::PromptRef>) -> String {
    p.map_or_else(|| opt(None), |p| e(&format!("{}@{}", p.name, p.version)))
}

/// Anything else.
pub(in crate::console) async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Not found",
        Nav::Catalog,
        "<p>No such page. Start from the <a href=\"/\">catalog</a>.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_once_in_first_use_order() {
        let m = serde_json::json!([
            {"role": "system", "content": "{{B}} then {{A}}"},
            {"role": "user", "content": [{"type": "text", "text": "{{A}} {{C}}"}]}
        ]);
        assert_eq!(placeholders(&m), ["B", "A", "C"]);
    }
}
