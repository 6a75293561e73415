//! Access keys and what they may do: the values the access gate, the store and the CLI share.
//!
//! Invariants: a [`Scope`] is plain data (patterns that are exact names or `prefix*`, and two
//! flags); it never grants more than its key's kind allows (a project key only ever reaches its
//! own project's routes, [`StoredKey::permits`]). No value here holds a decrypted secret: the
//! store hands out encrypted blobs, the gate decrypts them into [`crate::secret::Secret`]s; a
//! bearer key's proof is only a digest of its token. A key's [`KeyForm`] is decided once, by the
//! store's parser ([`KeyProof`]): nothing else looks at the stored text to tell the forms apart.

use serde::{Deserialize, Serialize};

/// Who a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "owner", rename_all = "snake_case")]
pub enum KeyOwner {
    /// A project credential (`ai_project_credential_v2`): only its project's routes.
    Project(String),
    /// A user key (`ai_user_key`), owned by `ai_user.name`.
    User(String),
}

impl KeyOwner {
    /// The table holding keys of this kind; also the start of a secret blob's binding.
    pub fn table(&self) -> &'static str {
        match self {
            KeyOwner::Project(_) => "ai_project_credential_v2",
            KeyOwner::User(_) => "ai_user_key",
        }
    }
}

/// The associated-data binding of an access key's secret blob (the same as `keys rotate` uses).
pub fn secret_binding(table: &str, access_key_id: &str) -> String {
    format!("{table}:{access_key_id}")
}

/// How a key proves a call is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyForm {
    /// The call is signed with the key's secret (HMAC: the v1 and v2 schemes). The default.
    #[default]
    Signed,
    /// The call carries the key's token, `Authorization: Bearer air-<access key id>-<secret>`
    /// (what OpenAI SDKs send); only a digest of the token is stored.
    Bearer,
}

impl KeyForm {
    /// `signed` / `bearer`, as `access list` shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyForm::Signed => "signed",
            KeyForm::Bearer => "bearer",
        }
    }
}

impl std::fmt::Display for KeyForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store keeps to check a key's calls, as its parser read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProof {
    /// A signing secret, encrypted (a v1 or v2 blob, bound to `<table>:<access key id>`).
    Signed(String),
    /// The SHA-256 digest of a bearer token (`access::bearer::digest`): not a secret, and not
    /// encrypted.
    Bearer([u8; 32]),
}

impl KeyProof {
    /// Which form of key this proves.
    pub const fn form(&self) -> KeyForm {
        match self {
            KeyProof::Signed(_) => KeyForm::Signed,
            KeyProof::Bearer(_) => KeyForm::Bearer,
        }
    }
}

/// Names a key may reach: exact names, or prefixes written `name*`; `*` alone is every name. An
/// empty list reaches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    /// Every name.
    pub fn all() -> Self {
        Self(vec!["*".into()])
    }

    /// Whether `name` is reached.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| glob(p, name))
    }

    /// Whether the route `route_key` of `project` is reached: each pattern is a pair split at
    /// its first `/` (`shop/chat`, `lab/*`, `*/nightly-*`), its project part matched against the
    /// project alone and its route part against the route key alone, so `lab/*` never reaches a
    /// project named `lab/secret` (such names are refused, but a database may hold one written
    /// by hand). A pattern without `/` names projects (`*`: every route).
    pub fn matches_route(&self, project: &str, route_key: &str) -> bool {
        self.0.iter().any(|p| match p.split_once('/') {
            Some((pp, rp)) => glob(pp, project) && glob(rp, route_key),
            None => glob(p, project),
        })
    }

    /// Parses a comma-separated list (`*`, `a,b`, `nightly-*`); blanks are dropped.
    pub fn parse(text: &str) -> Self {
        Self(
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// `pattern` (a name, or a prefix ending in `*`) against `name`.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl std::fmt::Display for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        f.write_str(&self.0.join(","))
    }
}

/// What a key may run, beyond its owner's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Projects whose routes it may run.
    pub projects: Patterns,
    /// Routes it may run, as `project/route_key`.
    pub routes: Patterns,
    /// Config keys it may run directly (run-once).
    pub configs: Patterns,
    /// Whether it may ask for dry runs (they show prompts and the request, key masked).
    pub dry_run: bool,
    /// Whether it may start evaluation runs (of suites whose targets it may all run).
    pub eval: bool,
}

/// `scope_json` as stored: any field may be missing.
#[derive(Deserialize)]
struct StoredScope {
    projects: Option<Patterns>,
    routes: Option<Patterns>,
    configs: Option<Patterns>,
    dry_run: Option<bool>,
    eval: Option<bool>,
}

impl Scope {
    /// The default for a new key of this kind: a user key may run everything, a project key its
    /// project's routes and no config directly; neither may dry-run or start evaluations.
    pub fn default_for(owner: &KeyOwner) -> Self {
        Self {
            projects: Patterns::all(),
            routes: Patterns::all(),
            configs: match owner {
                KeyOwner::Project(_) => Patterns::default(),
                KeyOwner::User(_) => Patterns::all(),
            },
            dry_run: false,
            eval: false,
        }
    }
}

impl Scope {
    /// Reaches nothing: what a key whose stored scope does not parse gets.
    pub fn nothing() -> Self {
        Self {
            projects: Patterns::default(),
            routes: Patterns::default(),
            configs: Patterns::default(),
            dry_run: false,
            eval: false,
        }
    }

    /// A stored `scope_json` read back: no document (the predecessor's rows) is the kind's
    /// default, a field it lacks keeps the kind's default, and a document that does not parse
    /// is `Err` with [`Scope::nothing`] (fails safe; the caller logs it).
    pub fn from_stored(owner: &KeyOwner, text: Option<&str>) -> Result<Self, Self> {
        let default = Self::default_for(owner);
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(default);
        };
        let stored: StoredScope = serde_json::from_str(text).map_err(|_| Self::nothing())?;
        Ok(Self {
            projects: stored.projects.unwrap_or(default.projects),
            routes: stored.routes.unwrap_or(default.routes),
            configs: stored.configs.unwrap_or(default.configs),
            dry_run: stored.dry_run.unwrap_or(default.dry_run),
            eval: stored.eval.unwrap_or(default.eval),
        })
    }

    /// The kind's default with these overrides (comma-separated patterns; `None` keeps the
    /// default): what `access create` flags make.
    pub fn with(
        owner: &KeyOwner,
        projects: Option<&str>,
        routes: Option<&str>,
        configs: Option<&str>,
        dry_run: bool,
        eval: bool,
    ) -> Self {
        let mut scope = Self::default_for(owner);
        if let Some(p) = projects {
            scope.projects = Patterns::parse(p);
        }
        if let Some(r) = routes {
            scope.routes = Patterns::parse(r);
        }
        if let Some(c) = configs {
            scope.configs = Patterns::parse(c);
        }
        scope.dry_run = dry_run;
        scope.eval = eval;
        scope
    }
}

/// What a call asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// List what the key may run (`GET /v1/models`): every active key may ask; the caller then
    /// shows only the configs and routes [`StoredKey::permits`] lets it run.
    Models,
    /// Run a config (run-once).
    Config(String),
    /// Run a route, or dry-run it.
    Route {
        /// `ai_project_v2.name`.
        project: String,
        /// `ai_route_v2.route_key`.
        route_key: String,
        /// Resolve and build only.
        dry_run: bool,
    },
    /// Start an evaluation run of a suite.
    Eval(String),
}

/// An access key as stored: everything the gate needs, the secret still encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// The public id (`X-AK`).
    pub access_key_id: String,
    /// Whose it is.
    pub owner: KeyOwner,
    /// The row id in its table (`ai_user_call_log.key_id` for user keys).
    pub row_id: i64,
    /// `ai_user.id` for user keys.
    pub user_id: Option<i64>,
    /// What checks its calls: the encrypted secret, or the bearer token's digest.
    pub proof: KeyProof,
    /// The proof before the last `access rotate` (of the same form), and until when (epoch ms)
    /// it still works.
    pub previous: Option<(KeyProof, i64)>,
    /// `active` or anything else (disabled).
    pub active: bool,
    /// Epoch ms after which the key no longer works.
    pub expires_ms: Option<i64>,
    /// What it may run.
    pub scope: Scope,
    /// Calls per UTC day (`None` = unlimited).
    pub daily_quota: Option<u32>,
    /// Requests per second (`None` = unlimited).
    pub rps_limit: Option<u32>,
    /// Allowed caller addresses (IPs or CIDRs); empty = any.
    pub allow_ips: Vec<String>,
}

impl StoredKey {
    /// How this key proves its calls.
    pub const fn form(&self) -> KeyForm {
        self.proof.form()
    }

    /// Whether this key may do `action` (its scope, and for a project key its project).
    pub fn permits(&self, action: &Action) -> bool {
        let s = &self.scope;
        match action {
            Action::Models => true,
            Action::Config(key) => s.configs.matches(key),
            Action::Route {
                project,
                route_key,
                dry_run,
            } => {
                let own = match &self.owner {
                    KeyOwner::Project(p) => p == project,
                    KeyOwner::User(_) => true,
                };
                own && s.projects.matches(project)
                    && s.routes.matches_route(project, route_key)
                    && (!dry_run || s.dry_run)
            }
            Action::Eval(_) => s.eval,
        }
    }
}

/// Who made a call, as the audit row records it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Caller {
    /// The access key id of a signed request.
    pub access_key_id: Option<String>,
    /// The platform authorizer's principal: an IAM ARN, or `jwt:<sub>` / the Lambda
    /// authorizer's principal id.
    pub principal: Option<String>,
    /// The caller's address as the platform saw it.
    pub source_ip: Option<String>,
}

/// What the store decided for one signed call: its nonce and its limits, in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The nonce was used before: nothing was counted.
    Replay,
    /// The current second is full (nothing counted against the day).
    RateLimited,
    /// The day's quota is used up (the refusal is counted).
    QuotaExceeded,
    /// Counted.
    Granted {
        /// Calls counted in the current second, this one included (when there is a limit).
        second: Option<u64>,
        /// Calls counted today (UTC), this one included.
        day: u64,
    },
}

/// Usage of one key on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    /// The access key id.
    pub access_key_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Calls let through.
    pub granted: u64,
    /// Calls refused by the daily quota.
    pub refused: u64,
}

/// One row of `access list` (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyListing {
    /// The public id.
    pub access_key_id: String,
    /// Whose it is.
    #[serde(flatten)]
    pub owner: KeyOwner,
    /// `signed` / `bearer` (never the secret, the token or its digest).
    pub form: KeyForm,
    /// `active` / `disabled`.
    pub status: String,
    /// Expiry, epoch ms.
    pub expires_ms: Option<i64>,
    /// What it may run.
    pub scope: Scope,
    /// Calls per UTC day.
    pub daily_quota: Option<u32>,
    /// Requests per second.
    pub rps_limit: Option<u32>,
    /// Allowed addresses.
    pub allow_ips: Vec<String>,
    /// Until when the previous secret still works, after a rotation.
    pub previous_until_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: KeyOwner, scope: Scope) -> StoredKey {
        StoredKey {
            access_key_id: "ak_1".into(),
            owner,
            row_id: 1,
            user_id: None,
            proof: KeyProof::Signed(String::new()),
            previous: None,
            active: true,
            expires_ms: None,
            scope,
            daily_quota: None,
            rps_limit: None,
            allow_ips: vec![],
        }
    }

    fn route(p: &str, r: &str, dry_run: bool) -> Action {
        Action::Route {
            project: p.into(),
            route_key: r.into(),
            dry_run,
        }
    }

    #[test]
    fn patterns_are_exact_names_or_prefixes() {
        let p = Patterns::parse("sales, nightly-*");
        assert!(p.matches("sales") && p.matches("nightly-1") && p.matches("nightly-"));
        assert!(!p.matches("sales2") && !p.matches("night"));
        assert!(Patterns::all().matches("anything"));
        assert!(!Patterns::default().matches("anything"));
    }

    #[test]
    fn route_patterns_match_the_project_and_the_route_key_each_on_its_own() {
        let p = Patterns::parse("shop/chat, lab/*, */nightly-*, team*");
        assert!(p.matches_route("shop", "chat") && !p.matches_route("shop", "chat2"));
        assert!(p.matches_route("lab", "anything") && !p.matches_route("lab/secret", "r"));
        assert!(p.matches_route("any", "nightly-3") && !p.matches_route("any", "daily"));
        assert!(p.matches_route("team-a", "x") && p.matches_route("teams", "y"));
        assert!(Patterns::all().matches_route("a", "b"));
        assert!(!Patterns::default().matches_route("a", "b"));
    }

    #[test]
    fn a_project_key_reaches_only_its_own_project_and_no_config_by_default() {
        let owner = KeyOwner::Project("shop".into());
        let k = key(owner.clone(), Scope::default_for(&owner));
        assert!(k.permits(&route("shop", "chat", false)));
        assert!(!k.permits(&route("other", "chat", false)));
        assert!(!k.permits(&Action::Config("greet".into())));
        assert!(
            !k.permits(&route("shop", "chat", true)),
            "no dry runs by default"
        );
        assert!(!k.permits(&Action::Eval("nightly".into())));
        assert!(
            k.permits(&Action::Models),
            "every key may list what it may run"
        );
    }

    #[test]
    fn a_user_key_is_limited_by_its_scope() {
        let owner = KeyOwner::User("ana".into());
        let mut scope = Scope::default_for(&owner);
        scope.routes = Patterns::parse("shop/chat,lab/*");
        scope.configs = Patterns::parse("greet");
        scope.eval = true;
        let k = key(owner, scope);
        assert!(k.permits(&route("shop", "chat", false)));
        assert!(k.permits(&route("lab", "x", false)));
        assert!(!k.permits(&route("shop", "admin", false)));
        // Pairs, not strings: `lab/*` does not reach a project named `lab/secret` (written to
        // the database by hand; `cfg verify` refuses it).
        assert!(!k.permits(&route("lab/secret", "r", false)));
        assert!(!k.permits(&route("shop/chat", "x", false)));
        assert!(k.permits(&Action::Config("greet".into())));
        assert!(!k.permits(&Action::Config("greet2".into())));
        assert!(k.permits(&Action::Eval("s".into())));
    }

    #[test]
    fn a_stored_scope_fills_missing_fields_from_its_kind_and_a_broken_one_reaches_nothing() {
        let project = KeyOwner::Project("shop".into());
        let s = Scope::from_stored(&project, Some(r#"{"routes": ["shop/*"]}"#)).unwrap();
        assert!(s.routes.matches("shop/x"));
        assert!(
            !s.configs.matches("greet"),
            "a project key's default: no config"
        );
        let user = KeyOwner::User("ana".into());
        let s = Scope::from_stored(&user, Some(r#"{"routes": ["shop/*"]}"#)).unwrap();
        assert!(s.configs.matches("greet") && !s.dry_run && !s.eval);
        assert_eq!(
            Scope::from_stored(&user, None).unwrap(),
            Scope::default_for(&user)
        );
        assert_eq!(
            Scope::from_stored(&user, Some("{not json")).unwrap_err(),
            Scope::nothing()
        );
    }
}
