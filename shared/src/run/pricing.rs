//! What a run's provider calls cost and the budget gate of its retries: the price of an exchange
//! (its final attempt and every earlier one the provider may have billed), the usage of several
//! billed calls summed, and [`Regrow`], which grows a reservation before a billed retry.
//!
//! Invariants: pure but for [`Regrow`], whose only effect is the reservation it grows.

use serde_json::Value;

use super::runner::message_content;
use crate::cost::{Meter, Plan, Reservation, Usage, book};
use crate::error::RunError;
use crate::model::cost::Charge;
use crate::ports::{BoxFuture, Exchange, ProviderError, RetryGate, Store};

/// The runner's [`RetryGate`]: before the provider retries an attempt it may have billed, the
/// attempt's reservation grows by another attempt's maximum cost, or the retry is not sent.
pub(super) struct Regrow<'a, S> {
    pub(super) meter: &'a Meter,
    pub(super) store: &'a S,
    pub(super) plan: &'a Plan,
    pub(super) held: std::sync::Mutex<Reservation>,
}

impl<S> std::fmt::Debug for Regrow<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regrow").finish_non_exhaustive()
    }
}

impl<S: Store> RetryGate for Regrow<'_, S> {
    fn admit(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let held = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match self.meter.extend(self.store, &held, self.plan).await {
                Ok(grown) => {
                    *self
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = grown;
                    true
                }
                Err(e) => {
                    let e = RunError::from(e);
                    tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), "retry not sent: no budget reservation for another attempt");
                    false
                }
            }
        })
    }
}

/// Adds the numbers of `b` to those of `a`, field by field and into nested objects
/// (`prompt_tokens_details`, ...): the usage of several billed calls.
pub(super) fn add_usage(a: Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                let sum = match a.remove(k) {
                    Some(old) => add_usage(old, v),
                    None => v.clone(),
                };
                a.insert(k.clone(), sum);
            }
            Value::Object(a)
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
            _ => Value::from(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0)),
        },
        (_, other) => other.clone(),
    }
}

/// What one exchange cost: its final attempt and every earlier attempt the provider may have
/// billed. An attempt without usage is estimated when the answer had begun (a stream that broke
/// off, an unusable 2xx) or the request timed out; an attempt the provider refused (4xx, 5xx,
/// 429, no connection) was not billed.
pub(super) fn price_exchange(plan: &Plan, ex: &Exchange, request_bytes: usize) -> Charge {
    let attempt = |status: u16, body: Option<&Value>, timed_out: bool| {
        let usage = body
            .and_then(|b| b.get("usage"))
            .and_then(Usage::from_value);
        let began = (200..300).contains(&status) || timed_out;
        let estimate = (usage.is_none() && began).then(|| {
            let received = message_content(body).map_or(0, |c| c.chars().count());
            Usage::estimate(request_bytes, received)
        });
        book::charge(plan.chosen.as_ref(), usage, estimate, plan.seconds)
    };
    let timed_out = matches!(ex.error, Some(ProviderError::Timeout(_)));
    ex.earlier
        .iter()
        .map(|a| attempt(a.http_status, a.body.as_ref(), a.http_status == 0))
        .fold(
            attempt(ex.http_status, ex.body.as_ref(), timed_out),
            Charge::plus,
        )
}
