//! The SQL text of the run path and the config tables, as constants.
//!
//! Invariants: every statement here is valid on both MySQL/MariaDB and SQLite (`?` placeholders,
//! `CAST(x AS CHAR)` for JSON columns, `CAST(id AS SIGNED)` for ids); statements that must differ
//! per dialect live in [`super::dialect`]. Built with `concat!`, so they are true constants and
//! rustfmt leaves them readable.

/// The columns of a resolved config (shared by the config and route-member queries).
macro_rules! config_columns {
    () => {
        "CAST(c.id AS SIGNED) AS config_id, c.config_key, m.name AS model_name, \
         CAST(cn.id AS SIGNED) AS connection_id, cn.name AS connection_name, \
         cn.provider AS connection_provider, cn.base_url, \
         CAST(cn.api_key_encrypted AS CHAR) AS key_blob, \
         p.name AS prompt_name, p.version AS prompt_version, \
         CAST(p.messages_json AS CHAR) AS messages_json, \
         CAST(p.response_format_json AS CHAR) AS response_format_json, \
         CAST(p.variables_json AS CHAR) AS variables_json, \
         CAST(pp.params_json AS CHAR) AS params_json"
    };
}

/// The joins from `ai_config c` to everything a run needs; inactive connections drop out.
macro_rules! config_joins {
    () => {
        "JOIN ai_model m ON m.id = c.model_id \
         JOIN ai_connection cn ON cn.id = m.connection_id AND cn.is_active = 1 \
         LEFT JOIN ai_prompt p ON p.id = c.prompt_id \
         LEFT JOIN ai_param_profile pp ON pp.id = c.param_profile_id"
    };
}

/// One active config by key: everything a run needs in one query.
pub(crate) const RESOLVE_CONFIG: &str = concat!(
    "SELECT ",
    config_columns!(),
    " FROM ai_config c ",
    config_joins!(),
    " WHERE c.config_key = ? AND c.is_active = 1 ORDER BY c.id LIMIT 1"
);

/// A route's active members with their configs resolved, in failover order.
pub(crate) const ROUTE_MEMBERS: &str = concat!(
    "SELECT CAST(rm.id AS SIGNED) AS member_id, CAST(rm.priority AS SIGNED) AS priority, \
     CAST(rm.weight AS SIGNED) AS weight, ",
    config_columns!(),
    " FROM ai_route_member_v2 rm \
     JOIN ai_config c ON c.id = rm.config_id AND c.is_active = 1 ",
    config_joins!(),
    " WHERE rm.route_id = ? AND rm.is_active = 1 ORDER BY rm.priority ASC, rm.id ASC"
);

/// An active route of an active project, with its own prompt and params (same column names as
/// a config's, so one row decoder reads both).
pub(crate) const RESOLVE_ROUTE: &str = "SELECT CAST(r.id AS SIGNED) AS route_id, \
     pj.name AS project_name, r.route_key, r.policy, \
     CAST(r.policy_config_json AS CHAR) AS policy_config_json, \
     CAST(r.variables_json AS CHAR) AS route_variables_json, \
     CAST(r.response_format_json AS CHAR) AS route_response_format_json, \
     p.name AS prompt_name, p.version AS prompt_version, \
     CAST(p.messages_json AS CHAR) AS messages_json, \
     CAST(p.response_format_json AS CHAR) AS response_format_json, \
     CAST(p.variables_json AS CHAR) AS variables_json, \
     CAST(pp.params_json AS CHAR) AS params_json \
     FROM ai_route_v2 r JOIN ai_project_v2 pj ON pj.id = r.project_id AND pj.status = 'active' \
     LEFT JOIN ai_prompt p ON p.id = r.prompt_id \
     LEFT JOIN ai_param_profile pp ON pp.id = r.param_profile_id \
     WHERE pj.name = ? AND r.route_key = ? AND r.is_active = 1 LIMIT 1";

/// A round-robin cursor's current position.
pub(crate) const PEEK_CURSOR: &str =
    "SELECT CAST(position AS SIGNED) FROM ai_route_cursor_v2 WHERE route_id = ?";

/// The predecessor's audit columns (compat.md section 4): always written. `created_at` is bound
/// too (its default would date a replayed row at the replay).
macro_rules! audit_core_columns {
    () => {
        "config_key, http_status, duration_ms, prompt_tokens, completion_tokens, total_tokens, \
         response_id, error_code, error_message, request_body_json, response_body_json, created_at"
    };
}

/// Our audit columns, written when the migration has added them.
macro_rules! audit_ext_columns {
    () => {
        "trace_id, status, attempts, provider_ms, ttft_ms, trigger_source, request_id, \
         model_name, project_name, route_key, route_policy, route_attempt, handover_reason"
    };
}

/// The audit insert on a migrated database (25 values).
pub(crate) const INSERT_AUDIT_EXTENDED: &str = concat!(
    "INSERT INTO ai_call_logs (",
    audit_core_columns!(),
    ", ",
    audit_ext_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// The audit insert with the row's own key (26 values; version 7 on).
pub(crate) const INSERT_AUDIT_KEYED: &str = concat!(
    "INSERT INTO ai_call_logs (",
    audit_core_columns!(),
    ", ",
    audit_ext_columns!(),
    ", row_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// The audit insert with the caller's identity (29 values; version 8 on).
pub(crate) const INSERT_AUDIT_IDENTIFIED: &str = concat!(
    "INSERT INTO ai_call_logs (",
    audit_core_columns!(),
    ", ",
    audit_ext_columns!(),
    ", row_key, caller_key, caller_principal, source_ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// The audit insert with the call's cost (32 values; version 9 on).
pub(crate) const INSERT_AUDIT_PRICED: &str = concat!(
    "INSERT INTO ai_call_logs (",
    audit_core_columns!(),
    ", ",
    audit_ext_columns!(),
    ", row_key, caller_key, caller_principal, source_ip, cost_nano_usd, cost_status, price_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// The row already written under a row key.
pub(crate) const AUDIT_ID_BY_ROW_KEY: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_call_logs WHERE row_key = ?";

/// The audit insert on the predecessor's schema (12 values).
pub(crate) const INSERT_AUDIT_CORE: &str = concat!(
    "INSERT INTO ai_call_logs (",
    audit_core_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);

/// One audit row by id, every column.
pub(crate) const AUDIT_ROW: &str =
    "SELECT *, CAST(created_at AS CHAR) AS created_at_text FROM ai_call_logs WHERE id = ?";

/// A config's latest answered calls, evaluation calls excluded.
pub(crate) const RECENT_CONFIG_ANSWERS: &str = "SELECT *, CAST(created_at AS CHAR) AS created_at_text \
     FROM ai_call_logs WHERE config_key = ? AND error_code IS NULL \
     AND (trigger_source IS NULL OR trigger_source <> 'eval') ORDER BY id DESC LIMIT ?";
/// The same on the predecessor's audit table (no `trigger_source`: it has no evaluation calls).
pub(crate) const RECENT_CONFIG_ANSWERS_CORE: &str = "SELECT *, CAST(created_at AS CHAR) AS created_at_text \
     FROM ai_call_logs WHERE config_key = ? AND error_code IS NULL ORDER BY id DESC LIMIT ?";
/// A route's latest answering member calls.
pub(crate) const RECENT_ROUTE_ANSWERS: &str = "SELECT *, CAST(created_at AS CHAR) AS created_at_text \
     FROM ai_call_logs WHERE project_name = ? AND route_key = ? AND error_code IS NULL \
     AND (trigger_source IS NULL OR trigger_source <> 'eval') ORDER BY id DESC LIMIT ?";

/// A trace's audit rows, oldest first.
pub(crate) const AUDIT_ROWS_FOR_TRACE: &str = "SELECT *, CAST(created_at AS CHAR) AS created_at_text \
     FROM ai_call_logs WHERE trace_id = ? ORDER BY id";

// ---- the config tables: the snapshot `cfg gen` plans against and `cfg export` writes ----

/// Every connection.
pub(crate) const SNAPSHOT_CONNECTIONS: &str = "SELECT CAST(id AS SIGNED), name, provider, base_url, \
     CAST(api_key_encrypted AS CHAR), CAST(is_active AS SIGNED) FROM ai_connection ORDER BY id";
/// The URLs of the active connections of one provider.
pub(crate) const ACTIVE_CONNECTION_URLS: &str =
    "SELECT base_url FROM ai_connection WHERE provider = ? AND is_active = 1";
/// Every model with its connection's name.
pub(crate) const SNAPSHOT_MODELS: &str = "SELECT CAST(m.id AS SIGNED), m.name, c.name FROM ai_model m \
     JOIN ai_connection c ON c.id = m.connection_id ORDER BY m.id";
/// Every param profile.
pub(crate) const SNAPSHOT_PROFILES: &str = "SELECT CAST(id AS SIGNED), name, \
     CAST(params_json AS CHAR) FROM ai_param_profile ORDER BY id";
/// Every prompt.
pub(crate) const SNAPSHOT_PROMPTS: &str = "SELECT CAST(id AS SIGNED), name, version, \
     CAST(messages_json AS CHAR), CAST(response_format_json AS CHAR), \
     CAST(variables_json AS CHAR), description FROM ai_prompt ORDER BY id";
/// Every config, references as names.
pub(crate) const SNAPSHOT_CONFIGS: &str = "SELECT c.config_key, m.name, p.name, p.version, pp.name, \
     c.description, CAST(c.is_active AS SIGNED) FROM ai_config c \
     JOIN ai_model m ON m.id = c.model_id LEFT JOIN ai_prompt p ON p.id = c.prompt_id \
     LEFT JOIN ai_param_profile pp ON pp.id = c.param_profile_id ORDER BY c.id";
/// Every route, references as names.
pub(crate) const SNAPSHOT_ROUTES: &str = "SELECT CAST(r.id AS SIGNED), pj.name, r.route_key, \
     r.policy, CAST(r.policy_config_json AS CHAR), CAST(r.variables_json AS CHAR), \
     p.name, p.version, pp.name, CAST(r.response_format_json AS CHAR), \
     CAST(r.is_active AS SIGNED) FROM ai_route_v2 r \
     JOIN ai_project_v2 pj ON pj.id = r.project_id LEFT JOIN ai_prompt p ON p.id = r.prompt_id \
     LEFT JOIN ai_param_profile pp ON pp.id = r.param_profile_id ORDER BY r.id";
/// Every route member, in failover order.
pub(crate) const SNAPSHOT_MEMBERS: &str = "SELECT CAST(m.route_id AS SIGNED), c.config_key, \
     CAST(m.priority AS SIGNED), CAST(m.weight AS SIGNED), CAST(m.is_active AS SIGNED) \
     FROM ai_route_member_v2 m JOIN ai_config c ON c.id = m.config_id ORDER BY m.priority, m.id";

// ---- the one writer of each config table (used by `cfg gen`, `cfg route-pool`, quickstart) ----

/// Id of a connection by name.
pub(crate) const CONNECTION_ID: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_connection WHERE name = ?";
/// Writes a connection with a new key.
pub(crate) const UPDATE_CONNECTION_WITH_KEY: &str = "UPDATE ai_connection \
     SET provider = ?, base_url = ?, api_key_encrypted = ?, is_active = ? WHERE id = ?";
/// Writes a connection, keeping its key (only when something changed).
pub(crate) const UPDATE_CONNECTION: &str = "UPDATE ai_connection \
     SET provider = ?, base_url = ?, is_active = ? \
     WHERE id = ? AND (provider <> ? OR base_url <> ? OR is_active <> ?)";
/// A new connection.
pub(crate) const INSERT_CONNECTION: &str = "INSERT INTO ai_connection \
     (name, provider, base_url, api_key_encrypted, is_active) VALUES (?, ?, ?, ?, ?)";

/// Id of a model by name.
pub(crate) const MODEL_ID: &str = "SELECT CAST(id AS SIGNED) FROM ai_model WHERE name = ?";
/// Moves a model to another connection (only when it changed).
pub(crate) const UPDATE_MODEL: &str = "UPDATE ai_model SET connection_id = ?, is_active = 1 \
     WHERE id = ? AND connection_id <> ?";
/// A new model.
pub(crate) const INSERT_MODEL: &str =
    "INSERT INTO ai_model (name, connection_id, is_active) VALUES (?, ?, 1)";

/// Id of a param profile by name.
pub(crate) const PROFILE_ID: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_param_profile WHERE name = ?";
/// Rewrites a param profile.
pub(crate) const UPDATE_PROFILE: &str =
    "UPDATE ai_param_profile SET params_json = ?, is_active = 1 WHERE id = ?";
/// A new param profile.
pub(crate) const INSERT_PROFILE: &str =
    "INSERT INTO ai_param_profile (name, params_json, is_active) VALUES (?, ?, 1)";

/// Id of a prompt by name and version.
pub(crate) const PROMPT_ID: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_prompt WHERE name = ? AND version = ?";
/// Rewrites a prompt (a missing description keeps the stored one).
pub(crate) const UPDATE_PROMPT: &str = "UPDATE ai_prompt SET messages_json = ?, \
     response_format_json = ?, variables_json = ?, description = COALESCE(?, description), \
     status = 'active' WHERE id = ?";
/// A new prompt.
pub(crate) const INSERT_PROMPT: &str = "INSERT INTO ai_prompt (name, version, description, \
     messages_json, response_format_json, variables_json, status) \
     VALUES (?, ?, ?, ?, ?, ?, 'active')";

/// Id of a config by key.
pub(crate) const CONFIG_ID: &str = "SELECT CAST(id AS SIGNED) FROM ai_config WHERE config_key = ?";
/// Rewrites a config.
pub(crate) const UPDATE_CONFIG: &str = "UPDATE ai_config SET model_id = ?, prompt_id = ?, \
     param_profile_id = ?, description = ?, is_active = ? WHERE id = ?";
/// A new config.
pub(crate) const INSERT_CONFIG: &str = "INSERT INTO ai_config (config_key, model_id, prompt_id, \
     param_profile_id, description, is_active) VALUES (?, ?, ?, ?, ?, ?)";

/// Id of a project by name.
pub(crate) const PROJECT_ID: &str = "SELECT CAST(id AS SIGNED) FROM ai_project_v2 WHERE name = ?";
/// Re-activates a project.
pub(crate) const ACTIVATE_PROJECT: &str =
    "UPDATE ai_project_v2 SET status = 'active' WHERE id = ? AND status <> 'active'";
/// A new project.
pub(crate) const INSERT_PROJECT: &str =
    "INSERT INTO ai_project_v2 (name, status) VALUES (?, 'active')";

/// Id of a route by project and key.
pub(crate) const ROUTE_ID: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_route_v2 WHERE project_id = ? AND route_key = ?";
/// Rewrites a route.
pub(crate) const UPDATE_ROUTE: &str = "UPDATE ai_route_v2 SET policy = ?, policy_config_json = ?, \
     variables_json = ?, prompt_id = ?, param_profile_id = ?, response_format_json = ?, \
     is_active = ? WHERE id = ?";
/// A new route.
pub(crate) const INSERT_ROUTE: &str = "INSERT INTO ai_route_v2 (project_id, route_key, policy, \
     policy_config_json, variables_json, prompt_id, param_profile_id, response_format_json, \
     is_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Id of a member by route and config.
pub(crate) const MEMBER_ID: &str =
    "SELECT CAST(id AS SIGNED) FROM ai_route_member_v2 WHERE route_id = ? AND config_id = ?";
/// Rewrites a member (only when something changed).
pub(crate) const UPDATE_MEMBER: &str = "UPDATE ai_route_member_v2 \
     SET priority = ?, weight = ?, is_active = ? \
     WHERE id = ? AND (priority <> ? OR weight <> ? OR is_active <> ?)";
/// A new member.
pub(crate) const INSERT_MEMBER: &str = "INSERT INTO ai_route_member_v2 \
     (route_id, config_id, priority, weight, is_active) VALUES (?, ?, ?, ?, ?)";

// ---- the upload pipeline's tables ----

/// A new mapping.
pub(crate) const INSERT_MAPPING: &str = "INSERT INTO ai_media_route_map (bucket, key_prefix, key_suffix, project_name, route_key, \
     variables_json, is_active) VALUES (?, ?, ?, ?, ?, ?, 1)";

/// A first claim: the job row (fails on the unique key when it exists).
pub(crate) const INSERT_JOB: &str = "INSERT INTO ai_media_job (bucket, object_key, object_version, status, attempts, \
     lease_until_ms, project_name, route_key, created_ms, started_ms) VALUES (?, ?, ?, \
     'running', 1, ?, ?, ?, ?, ?)";

/// Takes over a failed job, or one whose lease ran out (conditional: racing claims cannot both win).
pub(crate) const TAKE_OVER_JOB: &str = "UPDATE ai_media_job SET status = 'running', attempts = attempts + 1, lease_until_ms = ?, \
     started_ms = ?, project_name = ?, route_key = ?, error_code = NULL, error_message = NULL \
     WHERE bucket = ? AND object_key = ? AND object_version = ? AND (status IN ('failed', 'answered') OR \
     (status = 'running' AND lease_until_ms < ?))";

/// A job's id, status and attempts.
pub(crate) const JOB_STATE: &str = "SELECT CAST(id AS SIGNED), status, CAST(attempts AS SIGNED), summary_json FROM ai_media_job WHERE \
     bucket = ? AND object_key = ? AND object_version = ?";

/// Makes a finished job claimable again (a forced re-run).
pub(crate) const REOPEN_JOB: &str = "UPDATE ai_media_job SET status = 'failed' WHERE bucket = ? AND object_key = ? AND \
     object_version = ? AND status <> 'running'";

/// How a job ended.
pub(crate) const FINISH_JOB: &str = "UPDATE ai_media_job SET status = ?, lease_until_ms = 0, error_code = ?, error_message = \
     ?, trace_id = ?, audit_ids = ?, result_bucket = ?, result_key = ?, summary_json = ?, \
     media_format = ?, size_bytes = ?, content_type = ?, finished_ms = ?, duration_ms = ? \
     WHERE id = ? AND attempts = ?";

// ---- evaluations ----

/// A new evaluation run.
pub(crate) const INSERT_EVAL_RUN: &str = "INSERT INTO ai_eval_run (run_key, suite, status, \
     trigger_source, suite_json, options_json, config_hash, total, baseline_run, created_ms) \
     VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)";
/// Records a run's outcome (`finished` or `stopped`), unless another finalizer took the run
/// over (the token binds it; an unfenced finish passes NULL).
pub(crate) const FINISH_EVAL_RUN: &str = "UPDATE ai_eval_run SET status = ?, \
     summary_json = ?, gate_json = ?, gate_passed = ?, report_location = ?, finished_ms = ?, \
     stop_reason = ? WHERE run_key = ? AND (? IS NULL OR (status = 'finalizing' AND finalize_token = ?))";
/// Takes the right to finalize a run: from `running` or `stopping`, or from a finalizer whose
/// claim is older than the lease (it died). One statement: exactly one caller gets the row.
pub(crate) const CLAIM_EVAL_FINALIZE: &str = "UPDATE ai_eval_run SET status = 'finalizing', \
     finalize_token = ?, finalize_ms = ? WHERE run_key = ? AND (status IN ('running', 'stopping') \
     OR (status = 'finalizing' AND finalize_ms < ?))";
/// Stops a running run (`stopping`: no more calls, finalize what is there; or `failed`).
pub(crate) const STOP_EVAL_RUN: &str = "UPDATE ai_eval_run SET status = ?, stop_reason = ? \
     WHERE run_key = ? AND status = 'running'";
/// Folds a chunk into the run's streak of consecutive provider failures (one statement: chunks
/// running in parallel add up instead of overwriting each other).
pub(crate) const NOTE_EVAL_FAILURES: &str = "UPDATE ai_eval_run SET failure_streak = \
     CASE WHEN ? = 1 THEN failure_streak + ? ELSE ? END WHERE run_key = ?";
/// The streak as stored.
pub(crate) const EVAL_STREAK: &str =
    "SELECT CAST(failure_streak AS SIGNED) FROM ai_eval_run WHERE run_key = ?";
/// How many results a run has.
pub(crate) const COUNT_EVAL_RESULTS: &str = "SELECT COUNT(*) FROM ai_eval_result WHERE run_key = ?";
/// The (target, case, repetition) a run has results for.
pub(crate) const EVAL_RESULT_KEYS: &str = "SELECT CAST(target AS CHAR), CAST(case_key AS CHAR), \
     CAST(repeat_index AS SIGNED) FROM ai_eval_result WHERE run_key = ?";

// ---- the evaluation catalog (datasets, cases, suites) ----

/// Datasets.
pub(crate) const EVAL_DATASETS: &str =
    "SELECT CAST(name AS CHAR), description FROM ai_eval_dataset ORDER BY name";
/// Cases of every dataset, in insertion order.
pub(crate) const EVAL_CASES: &str = "SELECT CAST(dataset AS CHAR), CAST(case_key AS CHAR), \
     vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, threshold, \
     CAST(is_active AS SIGNED), prompt_text, description, metadata_json FROM ai_eval_case ORDER BY id";
/// Cases of one dataset.
pub(crate) const EVAL_CASES_OF: &str = "SELECT CAST(dataset AS CHAR), CAST(case_key AS CHAR), \
     vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, threshold, \
     CAST(is_active AS SIGNED), prompt_text, description, metadata_json FROM ai_eval_case WHERE dataset = ? ORDER BY id";
/// Suites.
pub(crate) const EVAL_SUITES: &str = "SELECT CAST(name AS CHAR), CAST(dataset AS CHAR), \
     definition_json FROM ai_eval_suite WHERE is_active = 1 ORDER BY name";
/// One suite.
pub(crate) const EVAL_SUITE: &str = "SELECT CAST(name AS CHAR), CAST(dataset AS CHAR), \
     definition_json FROM ai_eval_suite WHERE name = ? AND is_active = 1";
/// One dataset's description.
pub(crate) const EVAL_DATASET: &str =
    "SELECT CAST(name AS CHAR), description FROM ai_eval_dataset WHERE name = ?";
/// Upserts.
pub(crate) const UPSERT_EVAL_DATASET_MYSQL: &str = "INSERT INTO ai_eval_dataset (name, \
     description, updated_ms) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
     description = COALESCE(VALUES(description), description), updated_ms = VALUES(updated_ms)";
pub(crate) const UPSERT_EVAL_DATASET_SQLITE: &str = "INSERT INTO ai_eval_dataset (name, \
     description, updated_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
     description = COALESCE(excluded.description, description), updated_ms = excluded.updated_ms";
pub(crate) const UPSERT_EVAL_CASE_MYSQL: &str = "INSERT INTO ai_eval_case (dataset, case_key, \
     vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, threshold, \
     is_active, source, updated_ms, prompt_text, description, metadata_json) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON DUPLICATE KEY UPDATE vars_json = VALUES(vars_json), expected_json = VALUES(expected_json), \
     media_bucket = VALUES(media_bucket), media_key = VALUES(media_key), tags_json = VALUES(tags_json), \
     assert_json = VALUES(assert_json), threshold = VALUES(threshold), is_active = VALUES(is_active), \
     updated_ms = VALUES(updated_ms), prompt_text = VALUES(prompt_text), \
     description = VALUES(description), metadata_json = VALUES(metadata_json)";
pub(crate) const UPSERT_EVAL_CASE_SQLITE: &str = "INSERT INTO ai_eval_case (dataset, case_key, \
     vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, threshold, \
     is_active, source, updated_ms, prompt_text, description, metadata_json) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (dataset, case_key) DO UPDATE SET vars_json = excluded.vars_json, \
     expected_json = excluded.expected_json, media_bucket = excluded.media_bucket, \
     media_key = excluded.media_key, tags_json = excluded.tags_json, assert_json = excluded.assert_json, \
     threshold = excluded.threshold, is_active = excluded.is_active, updated_ms = excluded.updated_ms, \
     prompt_text = excluded.prompt_text, description = excluded.description, \
     metadata_json = excluded.metadata_json";
/// A case that is new (add-from-audit / add-from-objects never overwrite a curated case).
pub(crate) const INSERT_EVAL_CASE_IF_NEW_MYSQL: &str = "INSERT IGNORE INTO ai_eval_case (dataset, \
     case_key, vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, \
     threshold, is_active, source, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const INSERT_EVAL_CASE_IF_NEW_SQLITE: &str = "INSERT OR IGNORE INTO ai_eval_case (dataset, \
     case_key, vars_json, expected_json, media_bucket, media_key, tags_json, assert_json, \
     threshold, is_active, source, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const UPSERT_EVAL_SUITE_MYSQL: &str = "INSERT INTO ai_eval_suite (name, dataset, \
     definition_json, is_active, updated_ms) VALUES (?, ?, ?, 1, ?) ON DUPLICATE KEY UPDATE \
     dataset = VALUES(dataset), definition_json = VALUES(definition_json), is_active = 1, \
     updated_ms = VALUES(updated_ms)";
pub(crate) const UPSERT_EVAL_SUITE_SQLITE: &str = "INSERT INTO ai_eval_suite (name, dataset, \
     definition_json, is_active, updated_ms) VALUES (?, ?, ?, 1, ?) ON CONFLICT (name) DO UPDATE \
     SET dataset = excluded.dataset, definition_json = excluded.definition_json, is_active = 1, \
     updated_ms = excluded.updated_ms";
/// The columns of a run (keys are binary-collated on MySQL: cast back to text).
macro_rules! eval_run_columns {
    () => {
        "CAST(run_key AS CHAR), CAST(suite AS CHAR), status, trigger_source, suite_json, \
         options_json, config_hash, \
         CAST(total AS SIGNED), baseline_run, summary_json, gate_json, report_location, \
         CAST(created_ms AS SIGNED), CAST(finished_ms AS SIGNED), stop_reason, \
         CAST(failure_streak AS SIGNED)"
    };
}
/// One run by key.
pub(crate) const EVAL_RUN: &str = concat!(
    "SELECT ",
    eval_run_columns!(),
    " FROM ai_eval_run WHERE run_key = ?"
);
/// Recent runs, newest first (all suites when the suite is NULL).
pub(crate) const EVAL_RUNS: &str = concat!(
    "SELECT ",
    eval_run_columns!(),
    " FROM ai_eval_run WHERE (? IS NULL OR suite = ?) ORDER BY created_ms DESC, id DESC LIMIT ?"
);
/// The latest finished run of a suite other than the given one.
pub(crate) const LAST_FINISHED_EVAL_RUN: &str = "SELECT CAST(run_key AS CHAR) FROM ai_eval_run \
     WHERE suite = ? AND status = 'finished' AND run_key <> ? \
     ORDER BY created_ms DESC, id DESC LIMIT 1";
/// A run's results in (target, case, repetition) order of insertion.
pub(crate) const EVAL_RESULTS: &str =
    "SELECT result_json FROM ai_eval_result WHERE run_key = ? ORDER BY id";
/// Results in a batch: one already recorded is skipped (its first record stands).
pub(crate) const INSERT_EVAL_RESULT_IF_NEW_MYSQL: &str = "INSERT IGNORE INTO ai_eval_result (run_key, \
     target, case_key, repeat_index, pass, score, latency_ms, error_code, trace_id, audit_ids, \
     result_json, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const INSERT_EVAL_RESULT_IF_NEW_SQLITE: &str = "INSERT OR IGNORE INTO ai_eval_result (run_key, \
     target, case_key, repeat_index, pass, score, latency_ms, error_code, trace_id, audit_ids, \
     result_json, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The catalog's version counter (one row; none before the first catalog write).
pub(crate) const CATALOG_VERSION: &str = "SELECT version FROM ai_catalog_version WHERE id = 1";
