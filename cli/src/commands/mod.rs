//! One module per command group; each holds its commands' clap structs and their `run()` (a CLI
//! command is a clap struct with `run()`); [`crate::args`] only lists them. Commands parse, call
//! the library, print; the logic is the library's.

pub mod access;
pub mod audit;
pub mod breaker;
pub mod cfg;
pub mod cost;
pub mod dataset;
pub mod db;
pub mod dev;
pub mod doctor;
pub mod eval;
pub mod keys;
pub mod media;
pub mod quickstart;
pub mod run;
pub mod serve;

use std::path::Path;

use ai_runner::Code;

use crate::failure::Failure;

/// A `--host` value: an IP address or `localhost` (the loopback address).
pub(crate) fn parse_host(host: &str) -> Result<std::net::IpAddr, Failure> {
    match host {
        "localhost" => Ok(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        h => h.trim_matches(['[', ']']).parse().map_err(|_| {
            Failure::usage(
                Code::InvalidInput,
                format!("--host {h:?} is not an IP address (or localhost)"),
            )
        }),
    }
}

/// Reads a YAML file (catalogs, suites) into a JSON value; a file that does not read or parse is
/// a usage failure naming it (or the line and column).
pub(crate) fn read_yaml(file: &Path) -> Result<serde_json::Value, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::usage(
            Code::IoError,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    ai_runner::catalog::parse_yaml(&text)
        .map_err(|f| Failure::usage(f.code, format!("{}: {}", f.path, f.message)))
}
