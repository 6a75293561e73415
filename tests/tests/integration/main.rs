//! The library, the function handlers and the catalog against real servers (SQLite files,
//! MariaDB, OpenAI-protocol and S3-protocol servers on loopback ports): one test binary, one
//! module per area. Shared helpers are in the `ai-runner-tests` library (`tests/src`).

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod access;
mod architecture;
mod breakers;
mod catalog;
mod console;
mod costs;
mod eval;
mod eval_catalog;
mod fanout;
mod faults;
mod handler;
mod media;
mod media_versions;
mod openai;
mod openai_clients;
mod policy;
mod routes;
mod run_once;
mod schema;
mod secrets;
mod spool;
