//! ai-runner: database-driven AI calls.
//!
//! A `config_key` names a model, a prompt, parameters and an encrypted provider key, all stored in
//! SQL (MySQL/MariaDB in production, an embedded SQLite file by default). [`run::Runner`] resolves
//! it with one query, decrypts the key (cached per process), builds the OpenAI-compatible request
//! exactly as the predecessor did, calls the provider with retries, validates the output and
//! commits exactly one audit row per run.
//!
//! The crate is the only place with logic; ARCHITECTURE.md at the repository root maps it. In
//! short, dependencies point one way:
//! - the base: [`code`] (every stable code), [`secret`], [`config`], [`model`] (the core data),
//!   [`ports`] (the traits the core uses to reach the outside), [`hex`] and [`template`] (the
//!   `{{NAME}}` placeholders);
//! - the core: [`crypto`], [`request`], [`validate`], [`audit`], [`spool`], [`run`], [`media`],
//!   [`catalog`], [`eval`], [`access`];
//! - the implementations of the ports: [`store`], [`provider`], [`objects`], `queue` (feature
//!   `queue`: only run-route links the SQS client);
//! - assembly: [`app`] (state built once per process), [`health`] (readiness checks);
//! - the edges: [`function`] (feature `function`: Lambda / Function Compute), `console` (feature
//!   `console`: the `ai-runner dev` web console), [`demo`] (feature
//!   `demo`: the loopback provider), and the `ai-runner` CLI crate.

#![warn(missing_docs)]

pub mod access;
pub mod app;
pub mod audit;
pub mod breaker;
pub mod catalog;
pub mod code;
pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod cost;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod eval;
#[cfg(feature = "function")]
pub mod function;
pub mod health;
pub mod hex;
pub mod html;
pub mod invocation;
pub mod media;
pub mod model;
pub mod objects;
pub mod openai;
pub mod ports;
pub mod provider;
#[cfg(feature = "queue")]
pub mod queue;
pub mod request;
pub mod run;
pub mod schema;
pub mod secret;
#[cfg(feature = "server")]
pub mod server;
pub mod snapshot;
pub mod spool;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod validate;

pub use code::Code;
pub use config::Settings;
pub use error::RunError;
pub use run::{RunContext, RunResult, Runner, Trigger, Variables};
pub use secret::Secret;
