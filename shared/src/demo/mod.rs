//! Loopback OpenAI-compatible servers and what quickstart installs: [`scripted`] (the scripted
//! provider the tests drive over real HTTP), [`endpoint`] (the quickstart's clearly labelled demo
//! provider: fixed scenarios by path, served again on demand by later CLI commands so the configs
//! quickstart leaves behind keep answering), [`quickstart`] (the catalogs, suites and media
//! mappings quickstart and demo mode write).
//!
//! Both servers speak the chat-completions wire protocol (JSON and SSE) and only ever bind
//! 127.0.0.1.

mod endpoint;
mod quickstart;
mod scripted;

pub use endpoint::*;
pub use quickstart::*;
pub use scripted::*;
