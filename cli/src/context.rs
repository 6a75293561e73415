//! What every command shares, built at most once per process: the settings (env files and the
//! environment, read once) and the application state (database pool, HTTP client, object store,
//! the runner's keyring) the functions build the same way. The keyring is the application
//! state's: no command builds a second key cache.
//!
//! Invariants: nothing is loaded before a command asks for it (`cfg sample` and `cfg verify` work
//! without any configuration); the database pool is closed once, by [`Cx::close`], when the
//! command is done (SQLite checkpoints its WAL then).

use std::sync::OnceLock;

use ai_runner::Settings;
use ai_runner::app::App;
use ai_runner::crypto::Keyring;
use ai_runner::store::Db;

use crate::failure::Failure;

/// The command context.
#[derive(Default)]
pub struct Cx {
    settings: OnceLock<Settings>,
    app: OnceLock<App>,
}

impl Cx {
    /// The settings, loaded on first use.
    pub fn settings(&self) -> Result<&Settings, Failure> {
        if let Some(s) = self.settings.get() {
            return Ok(s);
        }
        let loaded = Settings::load()?;
        Ok(self.settings.get_or_init(|| loaded))
    }

    /// The keyring over the configured peppers: the application state's own, so a command
    /// that decrypts and runs shares one key cache with its runner.
    pub fn keyring(&self) -> Result<&Keyring, Failure> {
        Ok(self.app()?.runner.keyring())
    }

    /// The application state (runner, object store), built on first use exactly as the
    /// functions build it.
    pub fn app(&self) -> Result<&App, Failure> {
        if let Some(a) = self.app.get() {
            return Ok(a);
        }
        let built = App::new(self.settings()?)?;
        Ok(self.app.get_or_init(|| built))
    }

    /// The configured database (the application state's).
    pub fn db(&self) -> Result<&Db, Failure> {
        Ok(self.app()?.runner.store())
    }

    /// Closes the database pool if one was opened.
    pub async fn close(&self) {
        if let Some(app) = self.app.get() {
            app.runner.store().close().await;
        }
    }
}
