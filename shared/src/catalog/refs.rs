//! Cross-references of a catalog: duplicates, and references to objects that are neither in the
//! file nor (with `--db-check` and `gen`) in the database.
//!
//! Invariants: every dangling reference is an error at its own YAML path; placeholders nothing
//! fills are warnings (callers may pass them at run time).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::types::{Catalog, Prompt, PromptRef};
use crate::code::Code;
use crate::template::{RUNTIME_VARS, collect_strings, placeholders};

/// Names that exist outside the file (in the database, for `verify --db-check` and `gen`).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Connection names.
    pub connections: BTreeSet<String>,
    /// Model names.
    pub models: BTreeSet<String>,
    /// Param profile names.
    pub param_profiles: BTreeSet<String>,
    /// `name@version`.
    pub prompts: BTreeSet<String>,
    /// Config keys.
    pub configs: BTreeSet<String>,
    /// Routes as `project/route_key`.
    pub routes: BTreeSet<String>,
    /// `ai_model.id`s (the legacy `model_id` form).
    pub model_ids: BTreeSet<i64>,
    /// `ai_prompt.id`s.
    pub prompt_ids: BTreeSet<i64>,
    /// `ai_param_profile.id`s.
    pub param_profile_ids: BTreeSet<i64>,
    /// True when these names come from a database (`--db-check`, `gen`): legacy ids can then be
    /// checked; without one they are taken on trust until `gen` resolves them.
    pub from_database: bool,
}

fn dupes(
    names: impl Iterator<Item = (usize, String)>,
    section: &str,
    field: &str,
    cx: &mut Ctx,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, n) in names {
        if !seen.insert(n.clone()) {
            cx.err(
                format!("{section}[{i}].{field}"),
                Code::Duplicate,
                format!("{n:?} is defined twice"),
            );
        }
    }
    seen
}

/// Checks the prompt and param profile an object at `path` refers to.
fn prompt_and_profile(
    path: &str,
    prompt: Option<&PromptRef>,
    profile: Option<&str>,
    prompts: &BTreeSet<String>,
    profiles: &BTreeSet<String>,
    cx: &mut Ctx,
) {
    if let Some(p) = prompt
        && !prompts.contains(&p.to_string())
    {
        cx.err(
            format!("{path}.prompt"),
            Code::UnknownReference,
            format!("no prompt {p} in this file"),
        );
    }
    if let Some(p) = profile
        && !profiles.contains(p)
    {
        cx.err(
            format!("{path}.param_profile"),
            Code::UnknownReference,
            format!("no param profile {p:?} in this file"),
        );
    }
}

pub(crate) fn references(cat: &Catalog, known: &Known, cx: &mut Ctx) {
    let mut conns = dupes(
        cat.connections.iter().map(|c| c.name.clone()).enumerate(),
        "connections",
        "name",
        cx,
    );
    let mut models = dupes(
        cat.models.iter().map(|m| m.name.clone()).enumerate(),
        "models",
        "name",
        cx,
    );
    let mut profiles = dupes(
        cat.param_profiles
            .iter()
            .map(|p| p.name.clone())
            .enumerate(),
        "param_profiles",
        "name",
        cx,
    );
    let mut prompts = dupes(
        cat.prompts
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .enumerate(),
        "prompts",
        "name",
        cx,
    );
    let mut configs = dupes(
        cat.configs.iter().map(|c| c.config_key.clone()).enumerate(),
        "configs",
        "config_key",
        cx,
    );
    conns.extend(known.connections.iter().cloned());
    models.extend(known.models.iter().cloned());
    profiles.extend(known.param_profiles.iter().cloned());
    prompts.extend(known.prompts.iter().cloned());
    configs.extend(known.configs.iter().cloned());
    dupes(
        cat.routes
            .iter()
            .map(|r| format!("{}/{}", r.project, r.route_key))
            .enumerate(),
        "routes",
        "route_key",
        cx,
    );
    for (i, m) in cat.models.iter().enumerate() {
        if !conns.contains(&m.connection) {
            cx.err(
                format!("models[{i}].connection"),
                Code::UnknownReference,
                format!(
                    "no connection named {:?} in this file (or the database, with --db-check)",
                    m.connection
                ),
            );
        }
    }
    let profile_params: BTreeMap<&str, &Map<String, Value>> = cat
        .param_profiles
        .iter()
        .map(|p| (p.name.as_str(), &p.params))
        .collect();
    let prompt_by_ref: BTreeMap<String, &Prompt> = cat
        .prompts
        .iter()
        .map(|p| (format!("{}@{}", p.name, p.version), p))
        .collect();
    for (i, c) in cat.configs.iter().enumerate() {
        legacy_ids(i, c, known, cx);
        if c.model_id.is_none() && !models.contains(&c.model) {
            cx.err(
                format!("configs[{i}].model"),
                Code::UnknownReference,
                format!("no model named {:?} in this file", c.model),
            );
        }
        prompt_and_profile(
            &format!("configs[{i}]"),
            c.prompt.as_ref(),
            c.param_profile.as_deref(),
            &prompts,
            &profiles,
            cx,
        );
        // Placeholders that nothing in the file fills must come from the caller at run time.
        if let Some(prompt) = c
            .prompt
            .as_ref()
            .and_then(|p| prompt_by_ref.get(&p.to_string()))
        {
            let mut known: BTreeSet<String> =
                RUNTIME_VARS.iter().map(|s| (*s).to_owned()).collect();
            if let Some(v) = &prompt.variables {
                known.extend(v.keys().cloned());
            }
            if let Some(params) = c
                .param_profile
                .as_deref()
                .and_then(|p| profile_params.get(p))
            {
                known.extend(params.keys().cloned());
            }
            let mut strings = Vec::new();
            collect_strings(&prompt.messages, &mut strings);
            let missing: BTreeSet<String> = strings
                .iter()
                .flat_map(|s| placeholders(s))
                .filter(|p| !known.contains(p))
                .collect();
            if !missing.is_empty() {
                cx.warn(
                    format!("configs[{i}].prompt"),
                    Code::UnfilledPlaceholder,
                    format!(
                        "{} has no default in the prompt or params: pass it at run time",
                        missing.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
    for (i, r) in cat.routes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (j, m) in r.members.iter().enumerate() {
            if !configs.contains(&m.config_key) {
                cx.err(
                    format!("routes[{i}].members[{j}].config_key"),
                    Code::UnknownReference,
                    format!("no config {:?} in this file", m.config_key),
                );
            }
            if !seen.insert(&m.config_key) {
                cx.err(
                    format!("routes[{i}].members[{j}].config_key"),
                    Code::Duplicate,
                    format!("{:?} is a member twice", m.config_key),
                );
            }
        }
        prompt_and_profile(
            &format!("routes[{i}]"),
            r.prompt.as_ref(),
            r.param_profile.as_deref(),
            &prompts,
            &profiles,
            cx,
        );
    }
}

/// Checks a legacy config's raw ids against the database, when there is one to ask.
fn legacy_ids(i: usize, c: &super::types::Config, known: &Known, cx: &mut Ctx) {
    if !known.from_database {
        return;
    }
    for (field, id, ids) in [
        ("model_id", c.model_id, &known.model_ids),
        ("prompt_id", c.prompt_id, &known.prompt_ids),
        (
            "param_profile_id",
            c.param_profile_id,
            &known.param_profile_ids,
        ),
    ] {
        if let Some(id) = id
            && !ids.contains(&id)
        {
            cx.err(
                format!("configs[{i}].{field}"),
                Code::UnknownReference,
                format!("no row with id {id} in the database"),
            );
        }
    }
}
