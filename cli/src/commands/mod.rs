//! One module per command group; each holds the `run` of its clap structs ([`crate::args`]).
//! Commands parse, call the library, print; the logic is the library's.

pub mod cfg;
pub mod dataset;
pub mod db;
pub mod doctor;
pub mod eval;
pub mod keys;
pub mod media;
pub mod quickstart;
pub mod run;
