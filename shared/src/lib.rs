//! ai-runner: database-driven AI calls.
//!
//! A `config_key` names a model, a prompt, parameters and an encrypted provider key, all stored in
//! SQL (MySQL/MariaDB in production, an embedded SQLite file by default). [`runner::Runner`] resolves
//! it with one query, decrypts the key (cached per process), builds the OpenAI-compatible request
//! exactly as the predecessor did, calls the provider with retries, validates the output and
//! commits exactly one audit row per run.
//!
//! The crate is the only place with logic: the Lambda / Function Compute handlers and the CLI are
//! thin shells around [`service`] and [`runner`].

pub mod audit;
pub mod catalog;
pub mod config;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod events;
pub mod health;
pub mod media;
pub mod objects;
pub mod provider;
pub mod request;
pub mod routing;
pub mod runner;
pub mod schema;
pub mod secret;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod validate;

pub use config::Settings;
pub use error::RunError;
pub use runner::{RunContext, RunResult, Runner, Variables};
pub use secret::Secret;
