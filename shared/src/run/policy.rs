//! Route policy: which member goes first, when a failure hands the run to the next member, and
//! how a route's overrides apply to a member. Plain rules, no I/O; the catalog verifies files
//! against the same definitions ([`Policy::NAMES`], [`Failover::KEYS`], [`Failover::check`]).
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
//! Invariants: the order is a permutation of the members; unknown or empty stored policies mean
//! `primary_backup` at run time (old rows may hold anything) while files are held to the strict
//! names.

use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::value_flag;
use crate::error::RunError;
use crate::model::{ResolvedConfig, ResolvedRoute, RouteMember};

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
    /// The policy names a catalog file may use.
    pub const NAMES: [&'static str; 3] = ["primary_backup", "round_robin", "weighted"];

    /// The policy with exactly this name (what a catalog file must say).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "primary_backup" => Some(Policy::PrimaryBackup),
            "round_robin" => Some(Policy::RoundRobin),
            "weighted" => Some(Policy::Weighted),
            _ => None,
        }
    }

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
    /// The `policy_config_json` keys the runner reads.
    pub const KEYS: [&'static str; 5] = [
        "failover_on_non_retryable",
        "failover_on_content",
        "max_members",
        "json_schema_enforce",
        "enforce_no_english",
    ];

    /// Whether `value` is usable for option `key` (unknown keys are the caller's concern).
    pub fn check(key: &str, value: &Value) -> Result<(), String> {
        match key {
            "max_members" => match value.as_u64() {
                Some(n) if n >= 1 => Ok(()),
                _ => Err("expected a whole number >= 1".into()),
            },
            "failover_on_non_retryable"
            | "failover_on_content"
            | "json_schema_enforce"
            | "enforce_no_english" => match value_flag(value) {
                Some(_) => Ok(()),
                None => Err("expected true or false".into()),
            },
            _ => Ok(()),
        }
    }

    /// Reads the options; unknown keys are logged and ignored (the predecessor never read this
    /// column, so old rows may hold anything).
    pub fn from_config(cfg: Option<&Value>) -> Self {
        let mut f = Self::default();
        let Some(obj) = cfg.and_then(Value::as_object) else {
            return f;
        };
        for (k, v) in obj {
            let flag = value_flag(v);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnectionInfo;
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
                    provider: String::new(),
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
}
