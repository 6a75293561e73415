//! Planning an apply: what `cfg gen` / `cfg route-pool` would create, update or leave alone,
//! computed from a [`Snapshot`] of the database. Pure: no I/O, unit-tested without a database.
//!
//! Invariants: the plan is computed from what the database holds, so applying the same file twice
//! changes nothing and burns no ids; keys are encrypted in our current (v2) format, and a key that
//! already decrypts to the same value under the current pepper is left alone; an exported file
//! holds no secret (keys become `${<CONNECTION>_API_KEY}` references, and applying such a
//! reference whose variable is unset keeps the stored key).

use std::collections::BTreeMap;

use serde::Serialize;

use super::refs::Known;
use super::types::{Catalog, Config, Connection, Model, ParamProfile, Prompt, PromptRef, Route};
use crate::code::Code;
use crate::crypto::Keyring;
use crate::model::connection_binding;
use crate::ports::StoreError;

/// What applying a catalog does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// New row.
    Create,
    /// Existing row, changed.
    Update,
    /// Existing row, as is.
    Unchanged,
}

crate::model::vocab! {
    /// What kind of object a plan line is about.
    pub enum PlanKind {
        /// `ai_connection`.
        Connection = "connection",
        /// `ai_model`.
        Model = "model",
        /// `ai_param_profile`.
        ParamProfile = "param_profile",
        /// `ai_prompt`.
        Prompt = "prompt",
        /// `ai_config`.
        Config = "config",
        /// `ai_route_v2` (with its project).
        Route = "route",
        /// `ai_route_member_v2`.
        Member = "member",
        /// `ai_eval_dataset`.
        Dataset = "dataset",
        /// `ai_eval_case`.
        Case = "case",
        /// `ai_eval_suite`.
        Suite = "suite",
    }
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// `connection`, `model`, `param_profile`, `prompt`, `config`, `project`, `route`, `member`.
    pub kind: PlanKind,
    /// Its natural key.
    pub name: String,
    /// What happens.
    pub action: Action,
    /// Which fields change (for updates).
    pub changes: Vec<&'static str>,
}

/// Why a catalog cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A legacy row id names no row.
    #[error("{path}: {message}")]
    Reference {
        /// YAML path.
        path: String,
        /// Why.
        message: String,
    },
    /// A key reference or placeholder cannot be resolved.
    #[error("{path}: {message}")]
    Key {
        /// YAML path.
        path: String,
        /// Why.
        message: String,
    },
    /// Encryption failed (no pepper).
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApplyError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Reference { .. } => Code::UnknownReference,
            Self::Key { .. } => Code::KeyUnresolved,
            Self::Crypto(e) => e.code(),
            Self::Store(e) => e.code(),
        }
    }
}

/// The database's configuration as it is now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Connections by name, with their stored key blob.
    pub connections: BTreeMap<String, (Connection, String)>,
    /// Models by name.
    pub models: BTreeMap<String, Model>,
    /// Param profiles by name.
    pub profiles: BTreeMap<String, ParamProfile>,
    /// Prompts by (name, version).
    pub prompts: BTreeMap<(String, String), Prompt>,
    /// Configs by key.
    pub configs: BTreeMap<String, Config>,
    /// Routes by (project, route_key).
    pub routes: BTreeMap<(String, String), Route>,
    /// Model names by `ai_model.id` (the legacy `model_id` form).
    pub model_ids: BTreeMap<i64, String>,
    /// Prompt (name, version) by `ai_prompt.id`.
    pub prompt_ids: BTreeMap<i64, (String, String)>,
    /// Param profile names by `ai_param_profile.id`.
    pub profile_ids: BTreeMap<i64, String>,
}

/// The env-variable reference an export writes for a connection's key.
pub fn env_reference(connection: &str) -> String {
    let var: String = connection
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("${{{var}_API_KEY}}")
}

impl Snapshot {
    /// The names that exist, for reference checks.
    pub fn known(&self) -> Known {
        Known {
            connections: self.connections.keys().cloned().collect(),
            models: self.models.keys().cloned().collect(),
            param_profiles: self.profiles.keys().cloned().collect(),
            prompts: self
                .prompts
                .keys()
                .map(|(n, v)| format!("{n}@{v}"))
                .collect(),
            configs: self.configs.keys().cloned().collect(),
            routes: self
                .routes
                .keys()
                .map(|(p, r)| format!("{p}/{r}"))
                .collect(),
            model_ids: self.model_ids.keys().copied().collect(),
            prompt_ids: self.prompt_ids.keys().copied().collect(),
            param_profile_ids: self.profile_ids.keys().copied().collect(),
            from_database: true,
        }
    }

    /// The catalog with the legacy `model_id` / `prompt_id` / `param_profile_id` of its configs
    /// replaced by the names they point at, so the rest of planning sees one form.
    pub fn resolve_legacy_ids(&self, cat: &Catalog) -> Result<Catalog, ApplyError> {
        let mut out = cat.clone();
        for c in &mut out.configs {
            let path = |f: &str| format!("configs.{}.{f}", c.config_key);
            let missing = |f: &str, id: i64| ApplyError::Reference {
                path: path(f),
                message: format!("no row with id {id}"),
            };
            if let Some(id) = c.model_id.take() {
                c.model = self
                    .model_ids
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| missing("model_id", id))?;
            }
            if let Some(id) = c.prompt_id.take() {
                let (name, version) = self
                    .prompt_ids
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| missing("prompt_id", id))?;
                c.prompt = Some(PromptRef { name, version });
            }
            if let Some(id) = c.param_profile_id.take() {
                c.param_profile = Some(
                    self.profile_ids
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| missing("param_profile_id", id))?,
                );
            }
        }
        Ok(out)
    }

    /// A catalog of `routes` that keeps each existing route's other settings (prompt, params,
    /// variables, response format): `cfg route-pool` only sets policy and members.
    pub fn route_pool(&self, routes: Vec<Route>) -> Catalog {
        let routes = routes
            .into_iter()
            .map(|mut r| {
                if let Some(old) = self.routes.get(&(r.project.clone(), r.route_key.clone())) {
                    r.variables = old.variables.clone();
                    r.prompt = old.prompt.clone();
                    r.param_profile = old.param_profile.clone();
                    r.response_format = old.response_format.clone();
                    if r.policy_config.is_none() {
                        r.policy_config = old.policy_config.clone();
                    }
                }
                r
            })
            .collect();
        Catalog {
            routes,
            ..Catalog::default()
        }
    }

    /// The database as a catalog (keys as environment references).
    pub fn to_catalog(&self) -> Catalog {
        Catalog {
            connections: self.connections.values().map(|(c, _)| c.clone()).collect(),
            models: self.models.values().cloned().collect(),
            param_profiles: self.profiles.values().cloned().collect(),
            prompts: self.prompts.values().cloned().collect(),
            configs: self.configs.values().cloned().collect(),
            routes: self.routes.values().cloned().collect(),
        }
    }
}

/// The blob to store for a connection, or `None` to keep the stored one.
fn resolve_key(
    c: &Connection,
    i: usize,
    existing: Option<&str>,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ApplyError> {
    let path = format!("connections[{i}].api_key");
    if let Some(blob) = &c.api_key_encrypted {
        return Ok((existing != Some(blob.as_str())).then(|| blob.clone()));
    }
    let raw = c.api_key.clone().unwrap_or_default();
    if super::is_placeholder(&raw) {
        return Err(ApplyError::Key {
            path,
            message: "the key is still the sample's placeholder; put the key (or ${ENV_VAR}) there"
                .into(),
        });
    }
    let plain = match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(var) => match env(var).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None if existing.is_some() => return Ok(None),
            None => {
                return Err(ApplyError::Key {
                    path,
                    message: format!(
                        "environment variable {var} is not set (and the connection has no stored key to keep)"
                    ),
                });
            }
        },
        None => raw,
    };
    let binding = connection_binding(&c.name);
    if let Some(old) = existing
        && ring
            .decrypt(old, &binding)
            .is_ok_and(|k| k.expose() == plain)
        && matches!(Keyring::format_of(old), Ok(crate::crypto::BlobFormat::V2 { ref kid }) if Some(kid.as_str()) == ring.current_kid())
    {
        return Ok(None);
    }
    Ok(Some(ring.encrypt(&plain, &binding)?))
}

fn item(kind: PlanKind, name: String, action: Action, changes: Vec<&'static str>) -> PlanItem {
    PlanItem {
        kind,
        name,
        action,
        changes,
    }
}

/// `Create` when there is no `old` row; otherwise `Update` naming the changed fields, or
/// `Unchanged` when none changed.
fn classify<T>(
    old: Option<&T>,
    fields: impl FnOnce(&T) -> Vec<(&'static str, bool)>,
) -> (Action, Vec<&'static str>) {
    let Some(o) = old else {
        return (Action::Create, Vec::new());
    };
    let changed: Vec<&'static str> = fields(o)
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| n)
        .collect();
    let action = if changed.is_empty() {
        Action::Unchanged
    } else {
        Action::Update
    };
    (action, changed)
}

/// Computes what applying `cat` would do, plus the key blobs to write.
pub fn plan(
    snap: &Snapshot,
    cat: &Catalog,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<PlanItem>, Vec<Option<String>>), ApplyError> {
    plan_with(snap, cat, ring, env, false)
}

/// [`plan`]; with `exclusive`, active members a route has but the file does not list are
/// deactivated (`cfg route-pool` without `--append`). Legacy ids are resolved first
/// ([`Snapshot::resolve_legacy_ids`]).
pub fn plan_with(
    snap: &Snapshot,
    cat: &Catalog,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
    exclusive: bool,
) -> Result<(Vec<PlanItem>, Vec<Option<String>>), ApplyError> {
    let resolved = snap.resolve_legacy_ids(cat)?;
    let cat = &resolved;
    let mut out = Vec::new();
    let mut blobs = Vec::new();
    for (i, c) in cat.connections.iter().enumerate() {
        let old = snap.connections.get(&c.name);
        let blob = resolve_key(c, i, old.map(|o| o.1.as_str()), ring, env)?;
        let (a, ch) = classify(old, |(o, _)| {
            vec![
                ("provider", o.provider != c.provider),
                ("base_url", o.base_url != c.base_url),
                ("active", o.active != c.active),
                ("api_key", blob.is_some()),
            ]
        });
        out.push(item(PlanKind::Connection, c.name.clone(), a, ch));
        blobs.push(blob);
    }
    for m in &cat.models {
        let (a, ch) = classify(snap.models.get(&m.name), |o| {
            vec![("connection", o.connection != m.connection)]
        });
        out.push(item(PlanKind::Model, m.name.clone(), a, ch));
    }
    for p in &cat.param_profiles {
        let (a, ch) = classify(snap.profiles.get(&p.name), |o| {
            vec![("params", o.params != p.params)]
        });
        out.push(item(PlanKind::ParamProfile, p.name.clone(), a, ch));
    }
    for p in &cat.prompts {
        let old = snap.prompts.get(&(p.name.clone(), p.version.clone()));
        let (a, ch) = classify(old, |o| {
            vec![
                ("messages", o.messages != p.messages),
                ("response_format", o.response_format != p.response_format),
                ("variables", o.variables != p.variables),
                // An absent description in the file keeps the stored one.
                (
                    "description",
                    p.description.is_some() && o.description != p.description,
                ),
            ]
        });
        out.push(item(
            PlanKind::Prompt,
            format!("{}@{}", p.name, p.version),
            a,
            ch,
        ));
    }
    for c in &cat.configs {
        let (a, ch) = classify(snap.configs.get(&c.config_key), |o| {
            vec![
                ("model", o.model != c.model),
                ("prompt", o.prompt != c.prompt),
                ("param_profile", o.param_profile != c.param_profile),
                ("description", o.description != c.description),
                ("active", o.active != c.active),
            ]
        });
        out.push(item(PlanKind::Config, c.config_key.clone(), a, ch));
    }
    for r in &cat.routes {
        let old = snap.routes.get(&(r.project.clone(), r.route_key.clone()));
        let (a, ch) = classify(old, |o| {
            vec![
                ("policy", o.policy != r.policy),
                ("policy_config", o.policy_config != r.policy_config),
                ("variables", o.variables != r.variables),
                ("prompt", o.prompt != r.prompt),
                ("param_profile", o.param_profile != r.param_profile),
                ("response_format", o.response_format != r.response_format),
                ("active", o.active != r.active),
            ]
        });
        out.push(item(
            PlanKind::Route,
            format!("{}/{}", r.project, r.route_key),
            a,
            ch,
        ));
        for m in &r.members {
            let om = old.and_then(|o| o.members.iter().find(|x| x.config_key == m.config_key));
            let (a, ch) = classify(om, |x| {
                vec![
                    ("priority", x.priority != m.priority),
                    ("weight", x.weight != m.weight),
                    ("active", x.active != m.active),
                ]
            });
            out.push(item(
                PlanKind::Member,
                format!("{}/{}:{}", r.project, r.route_key, m.config_key),
                a,
                ch,
            ));
        }
        if exclusive && let Some(o) = old {
            for om in o
                .members
                .iter()
                .filter(|om| om.active && !r.members.iter().any(|m| m.config_key == om.config_key))
            {
                out.push(item(
                    PlanKind::Member,
                    format!("{}/{}:{}", r.project, r.route_key, om.config_key),
                    Action::Update,
                    vec!["deactivated"],
                ));
            }
        }
    }
    Ok((out, blobs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Member;
    use crate::secret::Secret;
    use serde_json::json;

    fn ring() -> Keyring {
        Keyring::new(Some(Secret::new("plan-test-pepper")), None)
    }

    fn catalog(v: serde_json::Value) -> Catalog {
        serde_json::from_value(v).unwrap()
    }

    fn file() -> Catalog {
        catalog(json!({
            "connections": [{"name": "c", "provider": "p", "base_url": "https://x/v1/chat/completions", "api_key": "${K}"}],
            "models": [{"name": "m", "connection": "c"}],
            "param_profiles": [{"name": "pp", "params": {"TEMPERATURE": 0.1}}],
            "prompts": [{"name": "p", "version": "v1", "messages": [{"role": "user", "content": "你好"}]}],
            "configs": [{"config_key": "k", "model": "m", "prompt": "p@v1", "param_profile": "pp"}],
            "routes": [{"project": "proj", "route_key": "r", "members": [{"config_key": "k"}]}]
        }))
    }

    /// The snapshot a database holds after applying `cat` with key `key`.
    fn applied(cat: &Catalog, key: &str) -> Snapshot {
        let mut s = Snapshot::default();
        for c in &cat.connections {
            let blob = ring().encrypt(key, &connection_binding(&c.name)).unwrap();
            let mut stored = c.clone();
            stored.api_key = Some(env_reference(&c.name));
            s.connections.insert(c.name.clone(), (stored, blob));
        }
        for m in &cat.models {
            s.models.insert(m.name.clone(), m.clone());
        }
        for p in &cat.param_profiles {
            s.profiles.insert(p.name.clone(), p.clone());
        }
        for p in &cat.prompts {
            s.prompts
                .insert((p.name.clone(), p.version.clone()), p.clone());
        }
        for c in &cat.configs {
            s.configs.insert(c.config_key.clone(), c.clone());
        }
        for r in &cat.routes {
            s.routes
                .insert((r.project.clone(), r.route_key.clone()), r.clone());
        }
        s
    }

    fn actions(items: &[PlanItem]) -> Vec<(&str, &str, Action)> {
        items
            .iter()
            .map(|i| (i.kind.as_str(), i.name.as_str(), i.action))
            .collect()
    }

    #[test]
    fn an_empty_database_plans_a_create_per_object_and_encrypts_the_key_bound_to_its_row() {
        let env = |k: &str| (k == "K").then(|| "sk-plan-1".to_owned());
        let (items, blobs) = plan(&Snapshot::default(), &file(), &ring(), &env).unwrap();
        assert!(
            items.iter().all(|i| i.action == Action::Create),
            "{items:?}"
        );
        assert_eq!(items.len(), 7, "{items:?}");
        let blob = blobs[0].as_deref().unwrap();
        assert_eq!(
            ring().decrypt(blob, "ai_connection:c").unwrap().expose(),
            "sk-plan-1"
        );
        assert!(ring().decrypt(blob, "ai_connection:other").is_err());
    }

    #[test]
    fn the_same_file_again_changes_nothing_and_keeps_the_stored_key() {
        let cat = file();
        let snap = applied(&cat, "sk-plan-1");
        for env_value in [None, Some("sk-plan-1")] {
            let env = |_: &str| env_value.map(str::to_owned);
            let (items, blobs) = plan(&snap, &cat, &ring(), &env).unwrap();
            assert!(
                items.iter().all(|i| i.action == Action::Unchanged),
                "{items:?}"
            );
            assert_eq!(blobs, [None]);
        }
        let env = |_: &str| Some("sk-plan-2".to_owned());
        let (items, blobs) = plan(&snap, &cat, &ring(), &env).unwrap();
        assert_eq!(items[0].changes, ["api_key"]);
        assert!(blobs[0].is_some(), "a new key is re-encrypted");
    }

    #[test]
    fn a_changed_field_is_an_update_that_names_it() {
        let snap = applied(&file(), "sk");
        let mut cat = file();
        cat.configs[0].description = Some("新的说明".into());
        cat.routes[0].policy = "round_robin".into();
        let (items, _) = plan(&snap, &cat, &ring(), &|_| None).unwrap();
        let updated: Vec<_> = items
            .iter()
            .filter(|i| i.action == Action::Update)
            .map(|i| (i.kind.as_str(), i.changes.clone()))
            .collect();
        assert_eq!(
            updated,
            [("config", vec!["description"]), ("route", vec!["policy"])]
        );
    }

    #[test]
    fn an_exclusive_plan_deactivates_members_the_file_does_not_list() {
        let mut two = file();
        two.configs.push(Config {
            config_key: "k2".into(),
            ..two.configs[0].clone()
        });
        two.routes[0].members.push(Member {
            config_key: "k2".into(),
            priority: 2,
            weight: 1,
            active: true,
        });
        let snap = applied(&two, "sk");
        let only_first = Catalog {
            routes: file().routes,
            ..Catalog::default()
        };
        let (items, _) = plan_with(&snap, &only_first, &ring(), &|_| None, true).unwrap();
        assert!(
            actions(&items).contains(&("member", "proj/r:k2", Action::Update)),
            "{items:?}"
        );
        let (items, _) = plan_with(&snap, &only_first, &ring(), &|_| None, false).unwrap();
        assert!(items.iter().all(|i| i.action == Action::Unchanged));
    }

    #[test]
    fn legacy_ids_resolve_to_names_and_an_unknown_id_is_an_unknown_reference() {
        let mut snap = applied(&file(), "sk");
        snap.model_ids.insert(7, "m".into());
        snap.prompt_ids.insert(3, ("p".into(), "v1".into()));
        snap.profile_ids.insert(5, "pp".into());
        let legacy = catalog(json!({"configs": [
            {"config_key": "k", "model_id": 7, "prompt_id": 3, "param_profile_id": 5}
        ]}));
        let resolved = snap.resolve_legacy_ids(&legacy).unwrap();
        assert_eq!(resolved.configs[0].model, "m");
        assert_eq!(
            resolved.configs[0].prompt.as_ref().unwrap().to_string(),
            "p@v1"
        );
        assert_eq!(resolved.configs[0].param_profile.as_deref(), Some("pp"));
        let (items, _) = plan(&snap, &legacy, &ring(), &|_| None).unwrap();
        assert_eq!(actions(&items), [("config", "k", Action::Unchanged)]);

        let dangling = catalog(json!({"configs": [{"config_key": "x", "model_id": 99}]}));
        let e = plan(&snap, &dangling, &ring(), &|_| None).unwrap_err();
        assert_eq!(e.code(), Code::UnknownReference);
    }

    #[test]
    fn a_placeholder_or_an_unset_variable_for_a_new_connection_is_refused() {
        let mut cat = file();
        cat.connections[0].api_key = Some("<YOUR_KEY>".into());
        let e = plan(&Snapshot::default(), &cat, &ring(), &|_| None).unwrap_err();
        assert_eq!(e.code(), Code::KeyUnresolved);
        let e = plan(&Snapshot::default(), &file(), &ring(), &|_| None).unwrap_err();
        assert_eq!(e.code(), Code::KeyUnresolved);
    }
}
