//! The configuration snapshot: what this process resolved (configs, routes with their members),
//! reused while it is fresh so a warm call makes no configuration query, and served through a
//! database outage for a bounded time.
//!
//! Freshness (all three [`SnapshotSettings`]):
//! - an entry is reused for `AI_CONFIG_CACHE_MS` after the database last confirmed it (the bound
//!   for edits that bypass ai-runner's writers, such as the predecessor's SQL scripts);
//! - every catalog write through ai-runner bumps `ai_catalog_version` in its transaction; the
//!   snapshot reads that counter at most every `AI_CONFIG_CHECK_MS` (one small query, never one
//!   per call) and drops everything when it moved (the bound for `cfg gen`, the console, `keys
//!   rotate`, another instance's writes); writes through this process's own handle are seen at
//!   once ([`Store::local_catalog_writes`], no I/O);
//! - when the database does not answer, an entry it confirmed within `AI_CONFIG_STALE_MAX_S` is
//!   served anyway (the audit row goes to the spool as for any failed insert); past that, or for
//!   a config the process never resolved, the call fails as it would without a snapshot.
//!
//! Invariants: `AI_CONFIG_CACHE_MS=0` is the behaviour without a snapshot (every call queries);
//! a "not found" is never cached (an unknown key fails closed, and a new config is seen on the
//! next call); the lock is never held across an `.await`; nothing here decides anything about a
//! call besides which resolved config it runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::SnapshotSettings;
use crate::model::{ResolvedConfig, ResolvedRoute};
use crate::ports::{Store, StoreError};

/// One resolved value and when the database last confirmed it.
#[derive(Debug)]
struct Held<T> {
    value: Arc<T>,
    at: Instant,
}

impl<T> Held<T> {
    fn new(value: T) -> Self {
        Self {
            value: Arc::new(value),
            at: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    configs: HashMap<String, Held<ResolvedConfig>>,
    routes: HashMap<(String, String), Held<ResolvedRoute>>,
    /// The catalog version last read, and when.
    version: Option<i64>,
    checked_at: Option<Instant>,
    /// The store's own write count last seen.
    local_writes: u64,
}

impl State {
    fn clear(&mut self) {
        self.configs.clear();
        self.routes.clear();
    }
}

/// A process's snapshot; built once with the runner and shared by every call.
#[derive(Debug, Default)]
pub struct Snapshot {
    settings: SnapshotSettings,
    state: Mutex<State>,
    /// Set while one caller reads the version counter, so concurrent calls do not all read it.
    checking: Turn,
}

impl Snapshot {
    /// An empty snapshot with these settings.
    pub fn new(settings: SnapshotSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// The settings.
    pub fn settings(&self) -> SnapshotSettings {
        self.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets everything (the next call of each key queries).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Drops what the catalog's writers changed since the last look: at once for this process's
    /// own writes; every `check` for anyone's (one query). A counter that cannot be read changes
    /// nothing (entries then age out, or are served stale through an outage).
    async fn refresh<S: Store>(&self, store: &S) {
        let local = store.local_catalog_writes();
        let due = {
            let mut s = self.lock();
            if s.local_writes != local {
                s.local_writes = local;
                s.clear();
            }
            s.checked_at
                .is_none_or(|t| t.elapsed() >= self.settings.check)
        };
        if !due {
            return;
        }
        let Some(_turn) = self.checking.take() else {
            return;
        };
        let read = store.catalog_version().await;
        let mut s = self.lock();
        s.checked_at = Some(Instant::now());
        match read {
            Ok(version) => {
                if s.version != version {
                    s.clear();
                    s.version = version;
                }
            }
            Err(e) => {
                tracing::debug!(code = %e.code(), "catalog version not read");
            }
        }
    }

    /// The active config `key`: from the snapshot while fresh, else from the store; through an
    /// outage, what the store last confirmed within `stale_max`.
    pub async fn config<S: Store>(
        &self,
        store: &S,
        key: &str,
    ) -> Result<Arc<ResolvedConfig>, StoreError> {
        if !self.settings.enabled() {
            return store.resolve_config(key).await.map(Arc::new);
        }
        self.refresh(store).await;
        if let Some(v) = fresh(&self.lock().configs, key, self.settings.cache) {
            return Ok(v);
        }
        match store.resolve_config(key).await {
            Ok(cfg) => {
                let held = Held::new(cfg);
                let value = Arc::clone(&held.value);
                self.lock().configs.insert(key.to_owned(), held);
                Ok(value)
            }
            Err(e) => self.stale(&self.lock().configs, key, e),
        }
    }

    /// The active route `project/route_key` with its members, as [`Snapshot::config`].
    pub async fn route<S: Store>(
        &self,
        store: &S,
        project: &str,
        route_key: &str,
    ) -> Result<Arc<ResolvedRoute>, StoreError> {
        if !self.settings.enabled() {
            return store.resolve_route(project, route_key).await.map(Arc::new);
        }
        self.refresh(store).await;
        let id = (project.to_owned(), route_key.to_owned());
        if let Some(v) = fresh(&self.lock().routes, &id, self.settings.cache) {
            return Ok(v);
        }
        match store.resolve_route(project, route_key).await {
            Ok(route) => {
                let held = Held::new(route);
                let value = Arc::clone(&held.value);
                self.lock().routes.insert(id, held);
                Ok(value)
            }
            Err(e) => self.stale(&self.lock().routes, &id, e),
        }
    }

    /// What to answer when the store failed: the held entry when the failure is the database
    /// not answering and the entry is within `stale_max`; the failure otherwise.
    fn stale<K, Q, T>(
        &self,
        held: &HashMap<K, Held<T>>,
        id: &Q,
        e: StoreError,
    ) -> Result<Arc<T>, StoreError>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if !e.retryable() {
            return Err(e);
        }
        match held.get(id) {
            Some(h) if h.at.elapsed() < self.settings.stale_max => {
                tracing::warn!(code = %e.code(), age_ms = h.at.elapsed().as_millis() as u64, "database did not answer: serving the configuration from the snapshot");
                Ok(Arc::clone(&h.value))
            }
            _ => Err(e),
        }
    }
}

/// A turn to read that one caller at a time holds, so concurrent calls do not all make the same
/// query while the others keep using what was read before (the snapshot's version check, the
/// circuit breakers' re-read).
#[derive(Debug, Default)]
pub(crate) struct Turn(AtomicBool);

impl Turn {
    /// The turn, unless another caller holds it.
    pub(crate) fn take(&self) -> Option<TurnHeld<'_>> {
        (!self.0.swap(true, Ordering::AcqRel)).then_some(TurnHeld(&self.0))
    }
}

/// A held [`Turn`], given back when dropped: even when the call holding it is dropped mid-read
/// (a client gone, a deadline).
pub(crate) struct TurnHeld<'a>(&'a AtomicBool);

impl Drop for TurnHeld<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn fresh<K, Q, T>(held: &HashMap<K, Held<T>>, id: &Q, cache: Duration) -> Option<Arc<T>>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    held.get(id)
        .filter(|h| h.at.elapsed() < cache)
        .map(|h| Arc::clone(&h.value))
}
