-- The embedded database: the same logical schema as the predecessor's MySQL tables, plus the
-- columns and tables our MySQL migrations add (so a fresh SQLite file is already at the latest
-- schema version). Applied by `ai-runner db init`; every statement is idempotent.
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS ai_connection (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  name              TEXT    NOT NULL UNIQUE,
  provider          TEXT    NOT NULL,
  base_url          TEXT    NOT NULL,
  api_key_encrypted TEXT    NOT NULL CHECK (json_valid(api_key_encrypted)),
  is_active         INTEGER NOT NULL DEFAULT 1,
  created_at        TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at        TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_model (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  name          TEXT    NOT NULL UNIQUE,
  connection_id INTEGER NOT NULL,
  is_active     INTEGER NOT NULL DEFAULT 1,
  created_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_ai_model_connection ON ai_model (connection_id);

CREATE TABLE IF NOT EXISTS ai_param_profile (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  name        TEXT    NOT NULL UNIQUE,
  params_json TEXT    NULL CHECK (params_json IS NULL OR json_valid(params_json)),
  is_active   INTEGER NOT NULL DEFAULT 1,
  created_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_prompt (
  id                   INTEGER PRIMARY KEY AUTOINCREMENT,
  name                 TEXT NOT NULL,
  version              TEXT NOT NULL,
  description          TEXT NULL,
  messages_json        TEXT NOT NULL CHECK (json_valid(messages_json)),
  response_format_json TEXT NULL CHECK (response_format_json IS NULL OR json_valid(response_format_json)),
  variables_json       TEXT NULL CHECK (variables_json IS NULL OR json_valid(variables_json)),
  status               TEXT NOT NULL DEFAULT 'active',
  created_at           TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at           TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (name, version)
);

CREATE TABLE IF NOT EXISTS ai_config (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  config_key       TEXT    NOT NULL UNIQUE,
  description      TEXT    NULL,
  model_id         INTEGER NOT NULL,
  prompt_id        INTEGER NULL,
  param_profile_id INTEGER NULL,
  is_active        INTEGER NOT NULL DEFAULT 1,
  created_at       TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at       TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_ai_config_model ON ai_config (model_id);
CREATE INDEX IF NOT EXISTS idx_ai_config_active ON ai_config (is_active, id);

CREATE TABLE IF NOT EXISTS ai_project_v2 (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  status     TEXT NOT NULL DEFAULT 'active',
  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_route_v2 (
  id                   INTEGER PRIMARY KEY AUTOINCREMENT,
  project_id           INTEGER NOT NULL,
  route_key            TEXT    NOT NULL,
  policy               TEXT    NOT NULL DEFAULT 'primary_backup',
  policy_config_json   TEXT    NULL CHECK (policy_config_json IS NULL OR json_valid(policy_config_json)),
  variables_json       TEXT    NULL CHECK (variables_json IS NULL OR json_valid(variables_json)),
  param_profile_id     INTEGER NULL,
  prompt_id            INTEGER NULL,
  response_format_json TEXT    NULL CHECK (response_format_json IS NULL OR json_valid(response_format_json)),
  is_active            INTEGER NOT NULL DEFAULT 1,
  created_at           TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at           TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (project_id, route_key)
);

CREATE TABLE IF NOT EXISTS ai_route_member_v2 (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  route_id   INTEGER NOT NULL,
  config_id  INTEGER NOT NULL,
  priority   INTEGER NOT NULL DEFAULT 1,
  weight     INTEGER NOT NULL DEFAULT 1,
  is_active  INTEGER NOT NULL DEFAULT 1,
  created_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (route_id, config_id)
);
CREATE INDEX IF NOT EXISTS idx_ai_route_member_order ON ai_route_member_v2 (route_id, is_active, priority, id);

CREATE TABLE IF NOT EXISTS ai_call_logs (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  config_key         TEXT    NOT NULL,
  http_status        INTEGER NOT NULL DEFAULT 0,
  duration_ms        INTEGER NOT NULL DEFAULT 0,
  prompt_tokens      INTEGER NULL,
  completion_tokens  INTEGER NULL,
  total_tokens       INTEGER NULL,
  response_id        TEXT    NULL,
  error_code         TEXT    NULL,
  error_message      TEXT    NULL,
  request_body_json  TEXT    NULL,
  response_body_json TEXT    NULL,
  created_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
  trace_id           TEXT    NULL,
  status             TEXT    NULL,
  attempts           INTEGER NULL,
  provider_ms        INTEGER NULL,
  ttft_ms            INTEGER NULL,
  trigger_source     TEXT    NULL,
  request_id         TEXT    NULL,
  model_name         TEXT    NULL,
  project_name       TEXT    NULL,
  route_key          TEXT    NULL,
  route_policy       TEXT    NULL,
  route_attempt      INTEGER NULL,
  handover_reason    TEXT    NULL,
  row_key            TEXT    NULL,
  caller_key         TEXT    NULL,
  caller_principal   TEXT    NULL,
  source_ip          TEXT    NULL,
  cost_nano_usd      INTEGER NULL,
  cost_status        TEXT    NULL,
  price_id           INTEGER NULL
);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_key_time ON ai_call_logs (config_key, created_at);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_time ON ai_call_logs (created_at);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_trace ON ai_call_logs (trace_id);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_error ON ai_call_logs (error_code, created_at);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_project ON ai_call_logs (project_name, created_at);
CREATE INDEX IF NOT EXISTS idx_ai_call_logs_route ON ai_call_logs (route_key, created_at);

-- Round-robin cursors, advanced atomically so every instance shares one rotation.
CREATE TABLE IF NOT EXISTS ai_route_cursor_v2 (
  route_id   INTEGER PRIMARY KEY,
  position   INTEGER NOT NULL DEFAULT 0,
  updated_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Which route processes which uploaded objects (most specific match wins).
CREATE TABLE IF NOT EXISTS ai_media_route_map (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  bucket         TEXT    NOT NULL,
  key_prefix     TEXT    NOT NULL DEFAULT '',
  key_suffix     TEXT    NOT NULL DEFAULT '',
  project_name   TEXT    NOT NULL,
  route_key      TEXT    NOT NULL,
  variables_json TEXT    NULL,
  is_active      INTEGER NOT NULL DEFAULT 1,
  created_at     TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- One row per uploaded object version: makes repeated deliveries no-ops.
CREATE TABLE IF NOT EXISTS ai_media_job (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  bucket         TEXT    NOT NULL,
  object_key     TEXT    NOT NULL,
  object_version TEXT    NOT NULL DEFAULT '',
  status         TEXT    NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 1,
  lease_until_ms INTEGER NOT NULL DEFAULT 0,
  project_name   TEXT    NULL,
  route_key      TEXT    NULL,
  media_format   TEXT    NULL,
  size_bytes     INTEGER NULL,
  content_type   TEXT    NULL,
  trace_id       TEXT    NULL,
  audit_ids      TEXT    NULL,
  result_bucket  TEXT    NULL,
  result_key     TEXT    NULL,
  error_code     TEXT    NULL,
  error_message  TEXT    NULL,
  summary_json   TEXT    NULL,
  created_ms     INTEGER NOT NULL,
  started_ms     INTEGER NULL,
  finished_ms    INTEGER NULL,
  duration_ms    INTEGER NULL,
  UNIQUE (bucket, object_key, object_version)
);

CREATE TABLE IF NOT EXISTS ai_runner_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_catalog_version (
  id      INTEGER PRIMARY KEY,
  version INTEGER NOT NULL DEFAULT 0
);

-- Each connection's circuit breaker, shared by every instance (store::breaker).
CREATE TABLE IF NOT EXISTS ai_connection_breaker (
  connection_id   INTEGER PRIMARY KEY,
  failures        INTEGER NOT NULL DEFAULT 0,
  window_start_ms INTEGER NOT NULL DEFAULT 0,
  opened          INTEGER NOT NULL DEFAULT 0,
  open_until_ms   INTEGER NULL,
  probe_until_ms  INTEGER NULL,
  failures_max    INTEGER NULL,
  cooldown_ms     INTEGER NULL,
  updated_ms      INTEGER NOT NULL DEFAULT 0
);
