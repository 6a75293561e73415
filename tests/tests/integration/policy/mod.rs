//! The core's policies on in-process fakes (`ai_runner_tests::fake`): no socket, no database,
//! milliseconds per test. Routes (member order, handover rules, priority, weight, round-robin,
//! deadline), upload leases, fan-out finalization and budgets, each through the core's own
//! entry points (`Runner::run_route`, `media::process`, `fanout::work`, `Runner::run_once` under
//! a budget), and the configuration snapshot (`Runner::resolve_config` through the version
//! counter, the age bounds and an outage).
//!
//! `contract` runs the same port scenarios against the fakes and against SQLite and asserts the
//! same outcome, so a policy proven here holds on the real store; the end-to-end tests of each
//! area (`routes`, `media`, `fanout`, `costs`) stay the proof against real servers.

mod breakers;
mod budgets;
mod contract;
mod finalization;
mod leases;
mod routes;
mod snapshot;
