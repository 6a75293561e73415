//! Running one config: resolve, decrypt, build, call, validate, audit.
//!
//! Invariants: a run never panics and always returns a [`RunResult`]; once the config is
//! resolved, exactly one audit row is committed (see [`crate::audit`]); the key is decrypted per
//! run from the process-wide [`Keyring`] cache and never leaves this module except in the
//! provider's `Authorization` header.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tracing::Instrument;

use super::policy::Failover;
use super::pricing::{Regrow, add_usage, price_exchange};
use super::record::Sent;
use super::{RunContext, RunMeta, RunResult, RunStatus, Variables};
use crate::audit::Subject;
use crate::breaker::{self, Admit, Breakers};
use crate::config::{ObjectSettings, Settings, ValidationSettings};
use crate::cost::{Meter, Payer, Plan};
use crate::crypto::Keyring;
use crate::error::RunError;
use crate::model::ResolvedConfig;
use crate::model::cost::Charge;
use crate::ports::{
    Exchange, ObjectStore, Provider, ProviderError, ProviderRequest, RetryGate, Store,
};
use crate::request::{self, BuiltRequest};
use crate::snapshot::Snapshot;
use crate::validate;

/// Where large audit bodies go when `ENABLE_OSS_SPILLOVER` is on.
#[derive(Debug, Clone)]
pub struct Spill {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Bodies longer than this many bytes are spilled.
    pub threshold: usize,
}

/// Where evaluation cases with a media reference read their objects (the upload pipeline's store
/// and settings).
#[derive(Debug, Clone)]
pub struct MediaSource {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Size limit, URL expiry.
    pub settings: ObjectSettings,
}

/// Route-level layers applied on top of a member config (used by routes).
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// Route variables (between prompt variables and runtime variables).
    pub variables: Option<Map<String, Value>>,
    /// Audit subject fields for route runs.
    pub project_name: Option<String>,
    /// Route key.
    pub route_key: Option<String>,
    /// Route policy.
    pub route_policy: Option<super::policy::Policy>,
    /// Member attempt number.
    pub route_attempt: Option<u32>,
    /// Set when more members follow: the rules that decide whether this member's failure
    /// hands the run over (recorded as `handover_reason` on its audit row).
    pub handover: Option<Failover>,
}

/// The engine: a store, a provider, the keyring and the validation defaults, built once per
/// process and borrowed by every invocation.
#[derive(Debug)]
pub struct Runner<S, P> {
    pub(super) store: S,
    provider: P,
    keyring: Keyring,
    validation: ValidationSettings,
    project_name: Option<String>,
    rng: std::sync::Mutex<rand::rngs::StdRng>,
    pub(super) spill: Option<Spill>,
    media: Option<MediaSource>,
    pub(super) audit_max_body: usize,
    pub(super) spool: Option<crate::spool::AuditSpool>,
    meter: Meter,
    snapshot: Snapshot,
    breakers: Breakers,
    /// The longest one provider send can take (see [`crate::config::HttpSettings::longest_send`]).
    longest_send: std::time::Duration,
    /// How long past its call's end a budget reservation is kept (`COST_RESERVATION_GRACE_SECS`).
    reservation_grace: std::time::Duration,
}

impl<S: Store, P: Provider> Runner<S, P> {
    /// Assembles a runner from its parts.
    pub fn new(store: S, provider: P, settings: &Settings) -> Self {
        Self {
            store,
            provider,
            keyring: Keyring::new(settings.pepper.clone(), settings.previous_pepper.clone()),
            validation: settings.validation.clone(),
            project_name: settings.project_name.clone(),
            rng: std::sync::Mutex::new(rand::SeedableRng::from_entropy()),
            spill: None,
            media: None,
            audit_max_body: settings.audit_max_body_bytes,
            spool: None,
            meter: Meter::new(settings.cost_cache, settings.cost_media_max_seconds),
            snapshot: Snapshot::new(settings.snapshot),
            breakers: Breakers::new(settings.breaker, settings.snapshot.check),
            longest_send: settings.http.longest_send(),
            reservation_grace: settings.cost_reservation_grace,
        }
    }

    /// Reads evaluation cases' media from this store.
    pub fn with_media(self, media: Option<MediaSource>) -> Self {
        Self { media, ..self }
    }

    /// Audit rows the database does not take go to this spool.
    pub fn with_audit_spool(self, spool: Option<crate::spool::AuditSpool>) -> Self {
        Self { spool, ..self }
    }

    /// The audit spool, if any.
    pub fn audit_spool(&self) -> Option<&crate::spool::AuditSpool> {
        self.spool.as_ref()
    }

    /// Where media cases read their objects, if anywhere.
    pub fn media(&self) -> Option<&MediaSource> {
        self.media.as_ref()
    }

    /// Spills large audit bodies to objects.
    pub fn with_spill(self, spill: Option<Spill>) -> Self {
        Self { spill, ..self }
    }

    /// Seeds the random choices (weighted routes) for reproducible runs.
    pub fn with_seed(self, seed: u64) -> Self {
        Self {
            rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(seed)),
            ..self
        }
    }

    /// Runs `f` with the runner's random source.
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
        match self.rng.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The validation defaults.
    pub fn validation(&self) -> &ValidationSettings {
        &self.validation
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The price and budget cache.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The configuration snapshot (what this process resolved).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The connections' circuit breakers, as this process sees them.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The active config `key`, from the snapshot while it is fresh.
    pub async fn resolve_config(
        &self,
        config_key: &str,
    ) -> Result<Arc<ResolvedConfig>, crate::ports::StoreError> {
        self.snapshot.config(&self.store, config_key).await
    }

    /// The active route with its members, from the snapshot while it is fresh.
    pub async fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> Result<Arc<crate::model::ResolvedRoute>, crate::ports::StoreError> {
        self.snapshot.route(&self.store, project, route_key).await
    }

    /// Runs `config_key` with runtime variables.
    pub async fn run_once(
        &self,
        config_key: &str,
        vars: &Variables,
        ctx: &RunContext,
    ) -> RunResult {
        let started = Instant::now();
        let trace_id = ctx.trace_id();
        let span = tracing::info_span!("run_once", trace_id = %trace_id, config_key, request_id = ctx.request_id.as_deref());
        async move {
            let cfg = match self.resolve_config(config_key).await {
                Ok(c) => c,
                Err(e) => {
                    let e = RunError::Store(e);
                    tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), "config not resolved");
                    let meta = RunMeta {
                        config_key: config_key.to_owned(),
                        model: None,
                    };
                    return RunResult::failed(trace_id, started, meta, e);
                }
            };
            self.run_resolved(&cfg, &Overlay::default(), vars, ctx, trace_id, started)
                .await
        }
        .instrument(span)
        .await
    }

    /// Runs an already resolved config (routes call this per member) and audits it.
    pub async fn run_resolved(
        &self,
        cfg: &ResolvedConfig,
        overlay: &Overlay,
        vars: &Variables,
        ctx: &RunContext,
        trace_id: String,
        started: Instant,
    ) -> RunResult {
        let subject = Subject {
            config_key: cfg.config_key.clone(),
            model: Some(cfg.model.clone()),
            trace_id: trace_id.clone(),
            trigger_source: ctx.trigger.as_str().to_owned(),
            request_id: ctx.request_id.clone(),
            caller: ctx.caller.clone(),
            project_name: overlay
                .project_name
                .clone()
                .or_else(|| self.project_name.clone()),
            route_key: overlay.route_key.clone(),
            route_policy: overlay.route_policy.map(|p| p.as_str().to_owned()),
            route_attempt: overlay.route_attempt,
        };
        let meta = RunMeta {
            config_key: cfg.config_key.clone(),
            model: Some(cfg.model.clone()),
        };
        // An open breaker: nothing is sent, and the row says so (a route hands over at once).
        let alone = overlay.route_attempt.is_none();
        let admit = self
            .breakers
            .admit(&self.store, &cfg.connection, alone, self.longest_send)
            .await;
        if let Admit::Refuse(open) = admit {
            let mut r = RunResult::failed(trace_id, started, meta, open.into());
            self.audit(&subject, &mut r, Sent::default(), overlay, ctx)
                .await;
            return r;
        }
        let key = match self
            .keyring
            .decrypt(&cfg.connection.key_blob, &cfg.connection.key_binding())
        {
            Ok(k) => k,
            Err(e) => {
                let mut r = RunResult::failed(trace_id, started, meta, e.into());
                self.audit(&subject, &mut r, Sent::default(), overlay, ctx)
                    .await;
                return r;
            }
        };
        let built = match request::build_for(
            cfg,
            overlay.variables.as_ref(),
            vars,
            &self.validation,
            ctx.turn.as_deref(),
        ) {
            Ok(b) => b,
            Err(e) => {
                let mut r = RunResult::failed(trace_id, started, meta, e.into());
                let sent = Sent {
                    key: Some(&key),
                    ..Sent::default()
                };
                self.audit(&subject, &mut r, sent, overlay, ctx).await;
                return r;
            }
        };
        let payer = Payer {
            project: subject.project_name.as_deref(),
            route: subject.route_key.as_deref(),
            key: ctx.caller.as_ref().and_then(|c| c.access_key_id.as_deref()),
        };
        let plan = match self
            .meter
            .plan(
                &self.store,
                cfg,
                payer,
                &built.body,
                crate::cost::Recording {
                    seconds: ctx.media_seconds,
                    bytes: ctx.media_bytes,
                },
                crate::model::now_ms(),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                // A budget covers an unpriced model, or the prices could not be read: no call.
                let mut r = RunResult::failed(trace_id, started, meta, e.into());
                r.set_charge(Charge::NONE);
                let sent = Sent {
                    built: Some(&built),
                    key: Some(&key),
                    ..Sent::default()
                };
                self.audit(&subject, &mut r, sent, overlay, ctx).await;
                return r;
            }
        };
        let (mut result, last) = self
            .call(
                &built,
                &key,
                &plan,
                trace_id,
                started,
                meta,
                ctx,
                overlay.handover.is_some(),
            )
            .await;
        let seen = breaker::verdict(result.failure.as_deref(), result.attempts);
        self.breakers
            .record(&self.store, cfg.connection.id, seen, admit == Admit::Probe)
            .await;
        let sent = Sent {
            built: Some(&built),
            response: last.body.as_ref(),
            key: Some(&key),
        };
        self.audit(&subject, &mut result, sent, overlay, ctx).await;
        result
    }

    /// Calls the provider, retrying on content failures; returns the result and the last exchange.
    /// Each call is reserved against the plan's budgets first and settled at its real cost after.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        built: &BuiltRequest,
        key: &crate::Secret,
        plan: &Plan,
        trace_id: String,
        started: Instant,
        meta: RunMeta,
        ctx: &RunContext,
        hand_over: bool,
    ) -> (RunResult, Exchange) {
        let deadline = ctx.deadline;
        let mut attempts = 0;
        let mut provider_ms = 0;
        let mut provider_us = 0;
        let mut content_attempts = 0;
        // Every provider call is billed: usage is summed over content retries.
        let mut usage_sum: Option<Value> = None;
        let mut charge = Charge::NONE;
        let mut previous: Option<Exchange> = None;
        let request_bytes = serde_json::to_string(&built.body).map_or(0, |s| s.len());
        loop {
            content_attempts += 1;
            // Held past the end of this send: the deadline when there is one (no attempt runs
            // past it), else the longest the send can take.
            let lifetime = deadline
                .map_or(self.longest_send, |d| {
                    d.saturating_duration_since(Instant::now())
                        .min(self.longest_send)
                })
                .saturating_add(self.reservation_grace);
            let held = match self
                .meter
                .reserve(&self.store, plan, &trace_id, lifetime)
                .await
            {
                Ok(held) => held,
                Err(e) => {
                    // No provider call: the run ends with what the earlier calls cost.
                    let mut r = RunResult::failed(trace_id.clone(), started, meta, e.into());
                    r.usage = usage_sum;
                    r.attempts = attempts;
                    r.content_attempts = content_attempts - 1;
                    r.provider_ms = provider_ms;
                    r.provider_us = provider_us;
                    r.set_charge(charge);
                    let ex = previous.unwrap_or_default();
                    r.http_status = ex.http_status;
                    r.response = ex.body.clone();
                    return (r, ex);
                }
            };
            let gate = held.map(|held| Regrow {
                meter: &self.meter,
                store: &self.store,
                plan,
                held: std::sync::Mutex::new(held),
            });
            let mut ex = self
                .provider
                .send(ProviderRequest {
                    url: &built.url,
                    api_key: key,
                    body: &built.body,
                    trace_id: &trace_id,
                    stream: built.stream,
                    deadline,
                    tap: ctx.tap.as_ref(),
                    gate: gate.as_ref().map(|g| g as &dyn RetryGate),
                    hand_over,
                })
                .await;
            // A provider may echo the key back (error messages, echo endpoints): never pass it on.
            ex.body = ex.body.take().map(|b| key.scrub_json(b));
            let billed = price_exchange(plan, &ex, request_bytes);
            if let Some(gate) = gate {
                let held = gate
                    .held
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.meter.settle(&self.store, &held, billed).await;
            }
            charge = charge.plus(billed);
            attempts += ex.attempts;
            provider_ms += ex.provider_ms;
            provider_us += ex.provider_us;
            if let Some(u) = ex.body.as_ref().and_then(|b| b.get("usage")) {
                usage_sum = Some(match usage_sum.take() {
                    None => u.clone(),
                    Some(acc) => add_usage(acc, u),
                });
            }
            let mut outcome = match &ex.error {
                Some(e) => Err(RunError::Provider(e.clone())),
                // A tool call is an answer: its message may have no content, and there is no
                // text to validate.
                None if calls_tools(ex.body.as_ref()) => {
                    Ok((message_content(ex.body.as_ref()), None))
                }
                None => match message_content(ex.body.as_ref()) {
                    None => Err(RunError::Provider(ProviderError::BadResponse(
                        "no choices[0].message.content".into(),
                    ))),
                    Some(content) => match validate::check(&content, &built.output) {
                        Ok(parsed) => Ok((Some(content), parsed)),
                        Err(v) => Err(RunError::Validation(v)),
                    },
                },
            };
            // A streaming caller has already read this answer: it is validated and recorded,
            // never asked for again.
            let mut retry_content = matches!(outcome, Err(RunError::Validation(_)))
                && content_attempts <= self.validation.content_retries
                && !ctx.relayed();
            if retry_content
                && let Some(d) = deadline
                && Instant::now() + self.validation.content_retry_delay + MIN_CALL > d
            {
                let why = match &outcome {
                    Err(e) => format!("no time left to ask again after: {e}"),
                    Ok(_) => String::new(),
                };
                outcome = Err(RunError::Provider(ProviderError::Deadline(why)));
                retry_content = false;
            }
            if retry_content {
                tracing::info!(
                    trace_id,
                    content_attempts,
                    "content failed validation; asking again"
                );
                tokio::time::sleep(self.validation.content_retry_delay).await;
                previous = Some(ex);
                continue;
            }
            let usage = usage_sum.take().map(|mut u| {
                if content_attempts > 1
                    && let Value::Object(m) = &mut u
                {
                    m.insert("content_attempts".into(), Value::from(content_attempts));
                }
                u
            });
            let mut r = match outcome {
                Ok((content, parsed)) => RunResult {
                    status: RunStatus::Ok,
                    trace_id: trace_id.clone(),
                    total_ms: 0,
                    provider_ms: 0,
                    provider_us: 0,
                    ttft_ms: None,
                    attempts: 0,
                    content_attempts: 0,
                    http_status: 0,
                    content,
                    parsed,
                    response: ex.body.clone(),
                    usage,
                    cost: None,
                    cost_status: None,
                    charge: None,
                    error: None,
                    meta,
                    audit_id: None,
                    audit_error: None,
                    audit_deferred: None,
                    failure: None,
                },
                Err(e) => {
                    let mut r = RunResult::failed(trace_id.clone(), started, meta, e);
                    r.response = ex.body.clone();
                    r.usage = usage;
                    r.content = message_content(ex.body.as_ref());
                    r
                }
            };
            r.total_ms = started.elapsed().as_millis() as u64;
            r.provider_ms = provider_ms;
            r.provider_us = provider_us;
            r.ttft_ms = ex.ttft_ms;
            r.attempts = attempts;
            r.content_attempts = content_attempts;
            r.http_status = ex.http_status;
            r.set_charge(charge);
            return (r, ex);
        }
    }
}

/// The shortest provider call worth starting before a deadline (content retries).
const MIN_CALL: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether the answer's first choice calls tools (`choices[0].message.tool_calls` not empty).
fn calls_tools(body: Option<&Value>) -> bool {
    body.and_then(|b| b.pointer("/choices/0/message/tool_calls"))
        .and_then(Value::as_array)
        .is_some_and(|calls| !calls.is_empty())
}

/// `choices[0].message.content` as a string.
pub(super) fn message_content(body: Option<&Value>) -> Option<String> {
    body?
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_owned)
}
