//! Routes: `(project, route_key)` with a policy over a pool of member configs, failing over when
//! a member cannot answer.
//!
//! Policies: `primary_backup` (default; members in `priority ASC, id ASC`), `round_robin` (a
//! cursor in the database, advanced atomically, chooses the first member; the rest follow in
//! order), `weighted` (random first member in proportion to `weight`, 0 = never first; the rest
//! follow in order). After the first member, every policy fails over in order.
//!
//! `policy_config_json` options (all optional):
//! - `failover_on_non_retryable` (bool, default false): also hand over on errors that retrying
//!   cannot fix (HTTP 400/401, DECRYPT_FAILED, MISSING_MEDIA_URL, ...); by default they stop the route.
//! - `failover_on_content` (bool, default true): hand over when a member keeps failing content
//!   validation (SCHEMA_INVALID, LETTER_DETECTED).
//! - `max_members` (int, default all): the most members tried in one run.
//! - `json_schema_enforce`, `enforce_no_english` (bool): route-level validation switches.
//!
//! Invariants: every member attempt leaves its own audit row (same trace id, `route_attempt`
//! numbered from 1, `handover_reason` set when the route moved on); a dry run writes nothing and
//! calls nothing.

use std::time::Instant;

use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ErrorBody, RunError};
use crate::provider::Provider;
use crate::request;
use crate::runner::{Overlay, RunContext, RunResult, Runner, Variables, new_trace_id};
use crate::store::{ResolvedConfig, ResolvedRoute, RouteMember, Store, StoreError};

/// How a route picks its first member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Priority order.
    PrimaryBackup,
    /// Shared rotation.
    RoundRobin,
    /// Random by weight.
    Weighted,
}

impl Policy {
    /// Parses the stored value; unknown or empty values mean the default, `primary_backup`.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "round_robin" | "roundrobin" | "rr" => Policy::RoundRobin,
            "weighted" | "weight" => Policy::Weighted,
            _ => Policy::PrimaryBackup,
        }
    }

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::PrimaryBackup => "primary_backup",
            Policy::RoundRobin => "round_robin",
            Policy::Weighted => "weighted",
        }
    }
}

/// The route's failover options, from `policy_config_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Hand over on non-retryable errors too.
    pub on_non_retryable: bool,
    /// Hand over on content validation failures.
    pub on_content: bool,
    /// Most members tried per run.
    pub max_members: Option<usize>,
    /// Route-level `JSON_SCHEMA_ENFORCE`.
    pub json_schema_enforce: Option<bool>,
    /// Route-level `ENFORCE_NO_ENGLISH`.
    pub enforce_no_english: Option<bool>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            on_non_retryable: false,
            on_content: true,
            max_members: None,
            json_schema_enforce: None,
            enforce_no_english: None,
        }
    }
}

impl Failover {
    /// Reads the options; unknown keys are logged and ignored (the predecessor never read this
    /// column, so old rows may hold anything).
    pub fn from_config(cfg: Option<&Value>) -> Self {
        let mut f = Self::default();
        let Some(obj) = cfg.and_then(Value::as_object) else {
            return f;
        };
        for (k, v) in obj {
            let flag = request::value_flag(v);
            match k.as_str() {
                "failover_on_non_retryable" => f.on_non_retryable = flag.unwrap_or(false),
                "failover_on_content" => f.on_content = flag.unwrap_or(true),
                "max_members" => f.max_members = v.as_u64().map(|n| n.max(1) as usize),
                "json_schema_enforce" => f.json_schema_enforce = flag,
                "enforce_no_english" => f.enforce_no_english = flag,
                other => tracing::warn!(key = other, "ignoring unknown policy_config_json key"),
            }
        }
        f
    }

    /// Whether a member failing with `e` hands the run to the next member.
    pub fn hands_over(&self, e: &RunError) -> bool {
        match e {
            RunError::Validation(_) => self.on_content,
            other => other.retryable() || self.on_non_retryable,
        }
    }
}

/// The order members are tried in, as indexes into `members`.
pub fn order<R: Rng>(
    policy: Policy,
    members: &[RouteMember],
    cursor: Option<u64>,
    rng: &mut R,
) -> Vec<usize> {
    let n = members.len();
    let first = match policy {
        Policy::PrimaryBackup => 0,
        Policy::RoundRobin => match cursor {
            Some(c) => (c % n.max(1) as u64) as usize,
            // No shared cursor (unmigrated database): a random start still spreads load.
            None => rng.gen_range(0..n.max(1)),
        },
        Policy::Weighted => {
            let total: i64 = members.iter().map(|m| m.weight.max(0)).sum();
            if total <= 0 {
                0
            } else {
                let mut pick = rng.gen_range(0..total);
                members
                    .iter()
                    .position(|m| {
                        let w = m.weight.max(0);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
        }
    };
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    out.push(first);
    out.extend((0..n).filter(|i| *i != first));
    out
}

/// The effective config of a member under its route's overrides.
pub fn effective_config(
    route: &ResolvedRoute,
    member: &ResolvedConfig,
    f: &Failover,
) -> ResolvedConfig {
    let mut cfg = member.clone();
    if route.prompt.is_some() {
        cfg.prompt = route.prompt.clone();
    }
    if route.params.is_some() {
        cfg.params = route.params.clone();
    }
    if let (Some(rf), Some(p)) = (&route.response_format, cfg.prompt.as_mut())
        && !rf.is_null()
    {
        p.response_format = Some(rf.clone());
    }
    let mut switches = Map::new();
    if let Some(b) = f.json_schema_enforce {
        switches.insert("JSON_SCHEMA_ENFORCE".into(), Value::Bool(b));
    }
    if let Some(b) = f.enforce_no_english {
        switches.insert("ENFORCE_NO_ENGLISH".into(), Value::Bool(b));
    }
    if !switches.is_empty() {
        let mut params = match cfg.params.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        params.extend(switches);
        cfg.params = Some(Value::Object(params));
    }
    cfg
}

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
    pub status: crate::runner::RunStatus,
    /// The failure, if any.
    pub error: Option<ErrorBody>,
    /// The member's audit row.
    pub audit_id: Option<i64>,
    /// Whether the route moved on after it.
    pub handed_over: bool,
    /// Milliseconds this member took.
    pub total_ms: u64,
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

impl<S: Store, P: Provider> Runner<S, P> {
    async fn load_route(&self, project: &str, route_key: &str) -> Result<ResolvedRoute, RunError> {
        let route = self.store().resolve_route(project, route_key).await?;
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
        let trace_id = new_trace_id();
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
                    code = e.code(),
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
                    tracing::warn!(code = e.code(), error = %crate::error::chain(&e), "round-robin cursor unavailable; starting at random");
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
        let count = ord.len();
        for (n, idx) in ord.into_iter().enumerate() {
            let member = &route.members[idx];
            let cfg = effective_config(&route, &member.config, &failover);
            let is_last = n + 1 == count;
            let overlay = Overlay {
                variables: route_vars.clone(),
                project_name: Some(route.project.clone()),
                route_key: Some(route.route_key.clone()),
                route_policy: Some(policy.as_str().to_owned()),
                route_attempt: Some(n as u32 + 1),
                handover: (!is_last).then(|| failover.clone()),
            };
            let member_started = Instant::now();
            let mut r = self
                .run_resolved(&cfg, &overlay, vars, ctx, trace_id.clone(), member_started)
                .await;
            let handed_over =
                !is_last && r.failure.as_ref().is_some_and(|e| failover.hands_over(e));
            provider_ms += r.provider_ms;
            provider_us += r.provider_us;
            http_attempts += r.attempts;
            attempts.push(MemberAttempt {
                attempt: n as u32 + 1,
                config_key: cfg.config_key.clone(),
                status: r.status,
                error: r.error.clone(),
                audit_id: r.audit_id,
                handed_over,
                total_ms: r.total_ms,
            });
            if r.is_ok() || !handed_over {
                let answered_by = r.is_ok().then(|| cfg.config_key.clone());
                r.total_ms = started.elapsed().as_millis() as u64;
                r.provider_ms = provider_ms;
                r.provider_us = provider_us;
                r.attempts = http_attempts;
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
        let key = self
            .keyring()
            .decrypt(&cfg.connection.key_blob, &cfg.connection.key_binding())?;
        let route_vars = match &route.variables {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let built = request::build(&cfg, route_vars.as_ref(), vars, self.validation())?;
        let mut headers = Map::new();
        headers.insert("Authorization".into(), Value::String(mask(key.expose())));
        headers.insert("Content-Type".into(), "application/json".into());
        headers.insert("X-Trace-Id".into(), "<generated per run>".into());
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
            request: DryRequest {
                config_key: cfg.config_key,
                url: built.url,
                headers,
                body: built.body,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConnectionInfo;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    fn member(id: i64, weight: i64) -> RouteMember {
        RouteMember {
            member_id: id,
            priority: id,
            weight,
            config: ResolvedConfig {
                config_id: id,
                config_key: format!("m{id}"),
                model: "m".into(),
                connection: ConnectionInfo {
                    id: 1,
                    name: "c".into(),
                    base_url: String::new(),
                    key_blob: String::new(),
                },
                prompt: None,
                params: None,
            },
        }
    }

    #[test]
    fn primary_backup_keeps_priority_order() {
        let ms = [member(1, 1), member(2, 1), member(3, 1)];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(order(Policy::PrimaryBackup, &ms, None, &mut rng), [0, 1, 2]);
    }

    #[test]
    fn round_robin_starts_at_the_cursor_and_fails_over_in_order() {
        let ms = [member(1, 1), member(2, 1), member(3, 1)];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(order(Policy::RoundRobin, &ms, Some(0), &mut rng), [0, 1, 2]);
        assert_eq!(order(Policy::RoundRobin, &ms, Some(4), &mut rng), [1, 0, 2]);
        assert_eq!(order(Policy::RoundRobin, &ms, Some(5), &mut rng), [2, 0, 1]);
    }

    #[test]
    fn weighted_choice_follows_weights_within_a_statistical_bound() {
        let ms = [member(1, 1), member(2, 3), member(3, 0)];
        let mut rng = StdRng::seed_from_u64(42);
        let mut firsts = [0usize; 3];
        let n = 4000;
        for _ in 0..n {
            let o = order(Policy::Weighted, &ms, None, &mut rng);
            assert_eq!(o.len(), 3);
            firsts[o[0]] += 1;
        }
        assert_eq!(firsts[2], 0, "weight 0 is never first");
        let share = firsts[1] as f64 / n as f64;
        // Expected 0.75; 4 sigma of a binomial(4000, 0.75) is about 0.027.
        assert!((share - 0.75).abs() < 0.03, "share of weight 3: {share}");
        let o = order(
            Policy::Weighted,
            &[member(1, 0), member(2, 0)],
            None,
            &mut rng,
        );
        assert_eq!(o, [0, 1], "all-zero weights fall back to priority order");
    }

    #[test]
    fn policy_config_options_are_read_and_unknown_ones_ignored() {
        let f = Failover::from_config(Some(
            &json!({"failover_on_non_retryable": true, "max_members": 2, "enforce_no_english": false, "typo": 1}),
        ));
        assert!(f.on_non_retryable && f.on_content);
        assert_eq!(f.max_members, Some(2));
        assert_eq!(f.enforce_no_english, Some(false));
        assert_eq!(Failover::from_config(None), Failover::default());
        assert_eq!(Policy::parse(""), Policy::PrimaryBackup);
        assert_eq!(Policy::parse("round_robin"), Policy::RoundRobin);
    }

    #[test]
    fn keys_are_masked_to_their_last_four_characters() {
        assert_eq!(mask("sk-abcdefgh1234"), "Bearer ***1234");
        assert_eq!(mask("short"), "Bearer ***");
    }
}
