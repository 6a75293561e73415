//! The ports: the small traits the core uses to reach the outside (the database: configs,
//! routes and audit rows in `Store`, prices and budgets in its `CostStore` part, upload jobs in
//! `JobStore`, evaluation runs in `EvalStore`, keys and counters in `AccessStore`; a
//! chat-completions `Provider`; an `ObjectStore`; the evaluation `Queue`), with the values and
//! errors that cross them.
//!
//! Invariants: the core (`run`, `media`, `eval`, `cost`, `access`, `spool`) depends only on
//! these traits. Each has a real implementation in its own module (`store::Db` on MySQL and
//! SQLite, `provider::HttpProvider`, `objects`, `queue::SqsQueue`), tested against real
//! servers, and the store, provider and queue ports have in-process fakes in the test helpers
//! (`ai_runner_tests::fake`) that keep the same contract (the lease, finalize-claim and
//! reservation scenarios run on the fake and on SQLite alike), so the core's policies are
//! tested without a socket. What a method promises
//! about atomicity (a conditional claim, an all-or-none reservation) or about which version it
//! reads (an object read's [`ObjectPin`]) is part of its contract.
//! Every error here has a stable [`Code`] and says whether retrying may help.
//!
//! Map: [`store`] (the database's ports), [`provider`] (the chat-completions provider),
//! [`objects`] (object storage and the evaluation queue); everything is re-exported here.

mod objects;
mod provider;
mod store;

use std::future::Future;
use std::pin::Pin;

pub use crate::model::media::ObjectPin;
pub use objects::*;
pub use provider::*;
pub use store::*;

/// A boxed, sendable error: the cause behind a port error (for logs, never shown to callers).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, so the trait can be used as `dyn ObjectStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
