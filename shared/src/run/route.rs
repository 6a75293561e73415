//! Running a route: members in policy order, each an ordinary audited run, handing over on
//! failure as the route's [`Failover`] rules say; and the dry run that shows what would happen.
//!
//! Invariants: every member attempt leaves its own audit row (same trace id, `route_attempt`
//! numbered from 1, `handover_reason` set when the route moved on); a dry run writes nothing and
//! calls nothing.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::policy::{Failover, Policy, effective_config, order};
use super::{Overlay, RunContext, RunResult, Runner, Variables};
use crate::error::{ErrorBody, RunError};
use crate::model::{ResolvedConfig, ResolvedRoute};
use crate::ports::{Provider, Store, StoreError};
use crate::request;

/// Which route ran, under which policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteMeta {
    /// Project name.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// Policy applied.
    pub policy: Option<Policy>,
}

/// One member attempt of a route run.
#[derive(Debug, Clone, Serialize)]
pub struct MemberAttempt {
    /// 1-based.
    pub attempt: u32,
    /// The member's config_key.
    pub config_key: String,
    /// `ok` or `error`.
    pub status: super::RunStatus,
    /// The failure, if any.
    pub error: Option<ErrorBody>,
    /// The member's audit row.
    pub audit_id: Option<i64>,
    /// Whether the route moved on after it.
    pub handed_over: bool,
    /// Milliseconds this member took.
    pub total_ms: u64,
    /// What this member's calls cost, USD (`null`: unpriced).
    pub cost: Option<f64>,
}

/// The outcome of a route run: the final member's result plus the route's story.
#[derive(Debug, Clone, Serialize)]
pub struct RouteResult {
    /// Which route.
    pub route: RouteMeta,
    /// The config_key that produced the answer, if any did.
    pub answered_by: Option<String>,
    /// Every member tried, in order.
    pub member_attempts: Vec<MemberAttempt>,
    /// The final member's result (or the route's own failure), with route-wide timings.
    #[serde(flatten)]
    pub result: RunResult,
}

/// What a dry run shows: the order and the exact first request, nothing sent or written.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Which route.
    pub route: RouteMeta,
    /// Member config_keys in the order a run would try them now.
    pub order: Vec<String>,
    /// The request the first member would send.
    pub request: DryRequest,
}

/// A request as it would go on the wire, with the key masked.
#[derive(Debug, Clone, Serialize)]
pub struct DryRequest {
    /// The config_key it belongs to.
    pub config_key: String,
    /// POST target.
    pub url: String,
    /// Headers (Authorization masked).
    pub headers: Map<String, Value>,
    /// Body, in wire order.
    pub body: Map<String, Value>,
    /// The `Authorization` header masked as the predecessor's dev server did (its first 10
    /// characters, `***`, its last 3; `Bearer ***` for a key too short to show any of), for
    /// the console's `POST /invoke`. Not serialized.
    #[serde(skip)]
    pub legacy_authorization: String,
}

/// The predecessor's mask of an `Authorization` header (`spec/predecessor-surface.md`).
fn legacy_mask(key: &str) -> String {
    let header: Vec<char> = format!("Bearer {key}").chars().collect();
    // Below 16 characters of key, its first 3 and last 3 would be most of it.
    if key.chars().count() < 16 {
        return "Bearer ***".into();
    }
    let head: String = header[..10].iter().collect();
    let tail: String = header[header.len() - 3..].iter().collect();
    format!("{head}***{tail}")
}

fn mask(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if key.chars().count() <= 8 {
        "Bearer ***".into()
    } else {
        format!("Bearer ***{tail}")
    }
}

/// The shortest time worth handing a route over to its next member before a deadline.
const MIN_MEMBER: std::time::Duration = std::time::Duration::from_millis(500);

impl<S: Store, P: Provider> Runner<S, P> {
    async fn load_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> Result<std::sync::Arc<ResolvedRoute>, RunError> {
        let route = self.resolve_route(project, route_key).await?;
        if route.members.is_empty() {
            return Err(StoreError::NoActiveMembers(format!("{project}/{route_key}")).into());
        }
        Ok(route)
    }

    /// Runs a route: members in policy order, failing over as [`Failover`] says.
    pub async fn run_route(
        &self,
        project: &str,
        route_key: &str,
        vars: &Variables,
        ctx: &RunContext,
    ) -> RouteResult {
        let started = Instant::now();
        let trace_id = ctx.trace_id();
        let mut meta = RouteMeta {
            project: project.to_owned(),
            route_key: route_key.to_owned(),
            policy: None,
        };
        let route = match self.load_route(project, route_key).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    trace_id,
                    project,
                    route_key,
                    code = %e.code(),
                    "route not resolved"
                );
                return RouteResult {
                    route: meta,
                    answered_by: None,
                    member_attempts: Vec::new(),
                    result: RunResult::failed_early(trace_id, started, route_key, e),
                };
            }
        };
        let policy = Policy::parse(&route.policy);
        meta.policy = Some(policy);
        let failover = Failover::from_config(route.policy_config.as_ref());
        let cursor = if policy == Policy::RoundRobin {
            match self.store().next_cursor(route.route_id).await {
                Ok(None) => {
                    tracing::warn!(
                        "ai_route_cursor_v2 is missing; round_robin starts at random (run `ai-runner db migrate`)"
                    );
                    None
                }
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), "round-robin cursor unavailable; starting at random");
                    None
                }
            }
        } else {
            None
        };
        let mut ord = self.with_rng(|rng| order(policy, &route.members, cursor, rng));
        if let Some(max) = failover.max_members {
            ord.truncate(max);
        }
        let route_vars = match &route.variables {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let mut attempts = Vec::new();
        let mut provider_ms = 0;
        let mut provider_us = 0;
        let mut http_attempts = 0;
        let mut charge: Option<crate::model::cost::Charge> = None;
        let count = ord.len();
        for (n, idx) in ord.into_iter().enumerate() {
            let member = &route.members[idx];
            let cfg = effective_config(&route, &member.config, &failover);
            let is_last = n + 1 == count;
            let overlay = Overlay {
                variables: route_vars.clone(),
                project_name: Some(route.project.clone()),
                route_key: Some(route.route_key.clone()),
                route_policy: Some(policy),
                route_attempt: Some(n as u32 + 1),
                handover: (!is_last).then(|| failover.clone()),
            };
            let member_started = Instant::now();
            let mut r = self
                .run_resolved(&cfg, &overlay, vars, ctx, trace_id.clone(), member_started)
                .await;
            // Once part of an answer has reached a streaming caller, no other member may answer.
            let mut handed_over = !is_last
                && !ctx.relayed()
                && r.failure.as_ref().is_some_and(|e| failover.hands_over(e));
            // No member starts that the deadline would cut short: the route ends here, saying so.
            if handed_over && ctx.remaining().is_some_and(|left| left < MIN_MEMBER) {
                let why = r
                    .error
                    .as_ref()
                    .map(|e| {
                        format!(
                            "no time left for the next member after {}: {}",
                            e.code, e.message
                        )
                    })
                    .unwrap_or_default();
                let e =
                    crate::error::RunError::Provider(crate::ports::ProviderError::Deadline(why));
                r.error = Some((&e).into());
                r.failure = Some(std::sync::Arc::new(e));
                handed_over = false;
            }
            provider_ms += r.provider_ms;
            provider_us += r.provider_us;
            http_attempts += r.attempts;
            if let Some(c) = r.charge {
                charge = Some(charge.map_or(c, |sum| sum.plus(c)));
            }
            attempts.push(MemberAttempt {
                attempt: n as u32 + 1,
                config_key: cfg.config_key.clone(),
                status: r.status,
                error: r.error.clone(),
                audit_id: r.audit_id,
                handed_over,
                total_ms: r.total_ms,
                cost: r.cost,
            });
            if r.is_ok() || !handed_over {
                let answered_by = r.is_ok().then(|| cfg.config_key.clone());
                r.total_ms = started.elapsed().as_millis() as u64;
                r.provider_ms = provider_ms;
                r.provider_us = provider_us;
                r.attempts = http_attempts;
                // The route's cost is every member attempt's, handed-over ones included.
                if let Some(c) = charge {
                    r.set_charge(c);
                }
                return RouteResult {
                    route: meta,
                    answered_by,
                    member_attempts: attempts,
                    result: r,
                };
            }
            tracing::info!(trace_id, member = %cfg.config_key, code = r.error.as_ref().map(|e| e.code.as_str()), "route handing over to the next member");
        }
        // Unreachable in practice: the loop returns on its last member.
        RouteResult {
            route: meta,
            answered_by: None,
            member_attempts: attempts,
            result: RunResult::failed_early(
                trace_id,
                started,
                route_key,
                StoreError::NoActiveMembers(format!("{project}/{route_key}")).into(),
            ),
        }
    }

    /// Resolves the route and builds the exact first request, without calling or writing.
    pub async fn dry_run(
        &self,
        project: &str,
        route_key: &str,
        vars: &Variables,
    ) -> Result<DryRun, RunError> {
        let route = self.load_route(project, route_key).await?;
        let policy = Policy::parse(&route.policy);
        let failover = Failover::from_config(route.policy_config.as_ref());
        let cursor = if policy == Policy::RoundRobin {
            self.store().peek_cursor(route.route_id).await?
        } else {
            None
        };
        let mut ord = self.with_rng(|rng| order(policy, &route.members, cursor, rng));
        if let Some(max) = failover.max_members {
            ord.truncate(max);
        }
        let first = &route.members[ord[0]];
        let cfg = effective_config(&route, &first.config, &failover);
        let route_vars = match &route.variables {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let request = self.dry_request(cfg, route_vars.as_ref(), vars)?;
        Ok(DryRun {
            route: RouteMeta {
                project: route.project.clone(),
                route_key: route.route_key.clone(),
                policy: Some(policy),
            },
            order: ord
                .iter()
                .map(|i| route.members[*i].config.config_key.clone())
                .collect(),
            request,
        })
    }

    /// Resolves one config and builds the exact request it would send, without calling or
    /// writing (the console's dry run of a config).
    pub async fn dry_run_config(
        &self,
        config_key: &str,
        vars: &Variables,
    ) -> Result<DryRequest, RunError> {
        let cfg = self.store().resolve_config(config_key).await?;
        self.dry_request(cfg, None, vars)
    }

    /// The request `cfg` would send, its key decrypted only to be masked.
    fn dry_request(
        &self,
        cfg: ResolvedConfig,
        route_vars: Option<&Map<String, Value>>,
        vars: &Variables,
    ) -> Result<DryRequest, RunError> {
        let key = self
            .keyring()
            .decrypt(&cfg.connection.key_blob, &cfg.connection.key_binding())?;
        let built = request::build(&cfg, route_vars, vars, self.validation())?;
        let mut headers = Map::new();
        headers.insert("Authorization".into(), Value::String(mask(key.expose())));
        headers.insert("Content-Type".into(), "application/json".into());
        headers.insert("X-Trace-Id".into(), "<generated per run>".into());
        Ok(DryRequest {
            config_key: cfg.config_key,
            url: built.url,
            headers,
            body: built.body,
            legacy_authorization: legacy_mask(key.expose()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predecessors_mask_keeps_ten_characters_of_the_header_and_three_of_the_key() {
        assert_eq!(legacy_mask("sk-test-provider-key-000"), "Bearer sk-***000");
        assert_eq!(legacy_mask("sk-short-12345"), "Bearer ***");
    }

    #[test]
    fn keys_are_masked_to_their_last_four_characters() {
        assert_eq!(mask("sk-abcdefgh1234"), "Bearer ***1234");
        assert_eq!(mask("short"), "Bearer ***");
    }
}
