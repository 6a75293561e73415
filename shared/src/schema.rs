//! Our schema, as data: the embedded SQLite schema and the additive MySQL migrations.
//!
//! Invariants: migrations only add (tables, nullable columns, indexes), never drop or rewrite, so
//! the predecessor keeps working on a migrated database and we keep working on an unmigrated one;
//! every step is guarded by an existence check, so applying twice changes nothing. Nothing here is
//! executed by a function handler: operators run `ai-runner db migrate` (or `--print` to review).

/// The full embedded schema (latest version), applied by `ai-runner db init` on SQLite.
pub const SQLITE_SCHEMA: &str = include_str!("../schema/sqlite.sql");

/// The predecessor's tables, created where missing (`ai-runner db init` on an empty MySQL).
pub const MYSQL_BASE: &str = include_str!("../schema/mysql-base.sql");

/// One additive, idempotent change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create a table (MySQL DDL; SQLite gets it from [`SQLITE_SCHEMA`]).
    CreateTable {
        /// Table name.
        table: &'static str,
        /// The full `CREATE TABLE` statement for MySQL.
        mysql: &'static str,
        /// The full `CREATE TABLE` statement for SQLite.
        sqlite: &'static str,
    },
    /// Add a nullable column.
    AddColumn {
        /// Table name.
        table: &'static str,
        /// Column name.
        column: &'static str,
        /// MySQL column definition.
        mysql: &'static str,
        /// SQLite column definition.
        sqlite: &'static str,
    },
    /// Add a unique index.
    AddUniqueIndex {
        /// Table name.
        table: &'static str,
        /// Index name.
        index: &'static str,
        /// Column list.
        columns: &'static str,
    },
    /// Add an index.
    AddIndex {
        /// Table name.
        table: &'static str,
        /// Index name.
        index: &'static str,
        /// Column list.
        columns: &'static str,
    },
}

impl Step {
    /// The statement that performs this step on MySQL (`mysql == true`) or SQLite.
    pub fn sql(&self, mysql: bool) -> String {
        match *self {
            Step::CreateTable {
                mysql: m,
                sqlite: s,
                ..
            } => if mysql { m } else { s }.to_owned(),
            Step::AddColumn {
                table,
                column,
                mysql: m,
                sqlite: s,
            } => format!(
                "ALTER TABLE {table} ADD COLUMN {column} {}",
                if mysql { m } else { s }
            ),
            Step::AddIndex {
                table,
                index,
                columns,
            } => format!("CREATE INDEX {index} ON {table} ({columns})"),
            Step::AddUniqueIndex {
                table,
                index,
                columns,
            } => format!("CREATE UNIQUE INDEX {index} ON {table} ({columns})"),
        }
    }
}

/// A numbered set of steps.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version.
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// What it does.
    pub steps: &'static [Step],
}

const fn col(column: &'static str, mysql: &'static str, sqlite: &'static str) -> Step {
    Step::AddColumn {
        table: "ai_call_logs",
        column,
        mysql,
        sqlite,
    }
}

const fn key_col(
    table: &'static str,
    column: &'static str,
    mysql: &'static str,
    sqlite: &'static str,
) -> Step {
    Step::AddColumn {
        table,
        column,
        mysql,
        sqlite,
    }
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema_migrations",
        steps: &[Step::CreateTable {
            table: "ai_runner_schema_migrations",
            mysql: "CREATE TABLE IF NOT EXISTS ai_runner_schema_migrations (\n  version    BIGINT       NOT NULL,\n  name       VARCHAR(191) NOT NULL,\n  applied_at DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  PRIMARY KEY (version)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            sqlite: "CREATE TABLE IF NOT EXISTS ai_runner_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        }],
    },
    Migration {
        version: 2,
        name: "extended_audit_columns",
        steps: &[
            col("trace_id", "VARCHAR(64) NULL", "TEXT NULL"),
            col("status", "VARCHAR(16) NULL", "TEXT NULL"),
            col("attempts", "INT NULL", "INTEGER NULL"),
            col("provider_ms", "INT NULL", "INTEGER NULL"),
            col("ttft_ms", "INT NULL", "INTEGER NULL"),
            col("trigger_source", "VARCHAR(32) NULL", "TEXT NULL"),
            col("request_id", "VARCHAR(128) NULL", "TEXT NULL"),
            col("model_name", "VARCHAR(191) NULL", "TEXT NULL"),
            col("project_name", "VARCHAR(191) NULL", "TEXT NULL"),
            col("route_key", "VARCHAR(191) NULL", "TEXT NULL"),
            col("route_policy", "VARCHAR(32) NULL", "TEXT NULL"),
            col("route_attempt", "INT NULL", "INTEGER NULL"),
            col("handover_reason", "VARCHAR(64) NULL", "TEXT NULL"),
            Step::AddIndex {
                table: "ai_call_logs",
                index: "idx_ai_call_logs_trace",
                columns: "trace_id",
            },
        ],
    },
    Migration {
        version: 3,
        name: "route_cursor",
        steps: &[Step::CreateTable {
            table: "ai_route_cursor_v2",
            mysql: "CREATE TABLE IF NOT EXISTS ai_route_cursor_v2 (\n  route_id   BIGINT UNSIGNED NOT NULL,\n  position   BIGINT UNSIGNED NOT NULL DEFAULT 0,\n  updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),\n  PRIMARY KEY (route_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            sqlite: "CREATE TABLE IF NOT EXISTS ai_route_cursor_v2 (route_id INTEGER PRIMARY KEY, position INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        }],
    },
    Migration {
        version: 4,
        name: "media_pipeline",
        steps: &[
            Step::CreateTable {
                table: "ai_media_route_map",
                mysql: "CREATE TABLE IF NOT EXISTS ai_media_route_map (\n  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  bucket         VARCHAR(255)  NOT NULL,\n  key_prefix     VARCHAR(512)  NOT NULL DEFAULT '',\n  key_suffix     VARCHAR(128)  NOT NULL DEFAULT '',\n  project_name   VARCHAR(191)  NOT NULL,\n  route_key      VARCHAR(191)  NOT NULL,\n  variables_json LONGTEXT      NULL,\n  is_active      TINYINT(1)    NOT NULL DEFAULT 1,\n  created_at     DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  KEY idx_ai_media_route_map_bucket (bucket, is_active)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_media_route_map (id INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, key_prefix TEXT NOT NULL DEFAULT '', key_suffix TEXT NOT NULL DEFAULT '', project_name TEXT NOT NULL, route_key TEXT NOT NULL, variables_json TEXT NULL, is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            },
            Step::CreateTable {
                table: "ai_media_job",
                mysql: "CREATE TABLE IF NOT EXISTS ai_media_job (\n  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  bucket         VARCHAR(255)  NOT NULL,\n  object_key     VARCHAR(768)  NOT NULL,\n  object_version VARCHAR(191)  NOT NULL DEFAULT '',\n  status         VARCHAR(16)   NOT NULL,\n  attempts       INT           NOT NULL DEFAULT 1,\n  lease_until_ms BIGINT        NOT NULL DEFAULT 0,\n  project_name   VARCHAR(191)  NULL,\n  route_key      VARCHAR(191)  NULL,\n  media_format   VARCHAR(16)   NULL,\n  size_bytes     BIGINT        NULL,\n  content_type   VARCHAR(128)  NULL,\n  trace_id       VARCHAR(64)   NULL,\n  audit_ids      VARCHAR(1024) NULL,\n  result_bucket  VARCHAR(255)  NULL,\n  result_key     VARCHAR(1024) NULL,\n  error_code     VARCHAR(64)   NULL,\n  error_message  TEXT          NULL,\n  summary_json   LONGTEXT      NULL,\n  created_ms     BIGINT        NOT NULL,\n  started_ms     BIGINT        NULL,\n  finished_ms    BIGINT        NULL,\n  duration_ms    BIGINT        NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_media_job_object (bucket(191), object_key(400), object_version(100)),\n  KEY idx_ai_media_job_created (created_ms)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_media_job (id INTEGER PRIMARY KEY AUTOINCREMENT, bucket TEXT NOT NULL, object_key TEXT NOT NULL, object_version TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, lease_until_ms INTEGER NOT NULL DEFAULT 0, project_name TEXT NULL, route_key TEXT NULL, media_format TEXT NULL, size_bytes INTEGER NULL, content_type TEXT NULL, trace_id TEXT NULL, audit_ids TEXT NULL, result_bucket TEXT NULL, result_key TEXT NULL, error_code TEXT NULL, error_message TEXT NULL, summary_json TEXT NULL, created_ms INTEGER NOT NULL, started_ms INTEGER NULL, finished_ms INTEGER NULL, duration_ms INTEGER NULL, UNIQUE (bucket, object_key, object_version))",
            },
        ],
    },
    Migration {
        version: 5,
        name: "evaluations",
        steps: &[
            Step::CreateTable {
                table: "ai_eval_run",
                mysql: "CREATE TABLE IF NOT EXISTS ai_eval_run (\n  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  run_key         VARCHAR(32)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n  suite           VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  status          VARCHAR(16)   NOT NULL,\n  trigger_source  VARCHAR(32)   NOT NULL,\n  suite_json      LONGTEXT      NOT NULL,\n  options_json    LONGTEXT      NOT NULL,\n  config_hash     VARCHAR(64)   NULL,\n  total           INT           NOT NULL,\n  baseline_run    VARCHAR(32)   NULL,\n  summary_json    LONGTEXT      NULL,\n  gate_json       LONGTEXT      NULL,\n  gate_passed     TINYINT(1)    NULL,\n  report_location VARCHAR(1024) NULL,\n  created_ms      BIGINT        NOT NULL,\n  finished_ms     BIGINT        NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_eval_run_key (run_key),\n  KEY idx_ai_eval_run_suite (suite, created_ms)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_eval_run (id INTEGER PRIMARY KEY AUTOINCREMENT, run_key TEXT NOT NULL UNIQUE, suite TEXT NOT NULL, status TEXT NOT NULL, trigger_source TEXT NOT NULL, suite_json TEXT NOT NULL, options_json TEXT NOT NULL, config_hash TEXT NULL, total INTEGER NOT NULL, baseline_run TEXT NULL, summary_json TEXT NULL, gate_json TEXT NULL, gate_passed INTEGER NULL, report_location TEXT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER NULL)",
            },
            Step::CreateTable {
                table: "ai_eval_result",
                mysql: "CREATE TABLE IF NOT EXISTS ai_eval_result (\n  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  run_key         VARCHAR(32)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n  target          VARCHAR(383)  COLLATE utf8mb4_bin NOT NULL,\n  case_key        VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  repeat_index    INT           NOT NULL,\n  pass            TINYINT(1)    NOT NULL,\n  score           DOUBLE        NOT NULL,\n  latency_ms      BIGINT        NOT NULL,\n  error_code      VARCHAR(64)   NULL,\n  trace_id        VARCHAR(64)   NULL,\n  audit_ids       VARCHAR(1024) NULL,\n  result_json     LONGTEXT      NOT NULL,\n  created_ms      BIGINT        NOT NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_eval_result (run_key, target, case_key, repeat_index)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_eval_result (id INTEGER PRIMARY KEY AUTOINCREMENT, run_key TEXT NOT NULL, target TEXT NOT NULL, case_key TEXT NOT NULL, repeat_index INTEGER NOT NULL, pass INTEGER NOT NULL, score REAL NOT NULL, latency_ms INTEGER NOT NULL, error_code TEXT NULL, trace_id TEXT NULL, audit_ids TEXT NULL, result_json TEXT NOT NULL, created_ms INTEGER NOT NULL, UNIQUE (run_key, target, case_key, repeat_index))",
            },
        ],
    },
    Migration {
        version: 6,
        name: "evaluation_catalog_and_fanout",
        steps: &[
            Step::CreateTable {
                table: "ai_eval_dataset",
                mysql: "CREATE TABLE IF NOT EXISTS ai_eval_dataset (\n  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  name        VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  description TEXT          NULL,\n  updated_ms  BIGINT        NOT NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_eval_dataset_name (name)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_eval_dataset (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, description TEXT NULL, updated_ms INTEGER NOT NULL)",
            },
            Step::CreateTable {
                table: "ai_eval_case",
                mysql: "CREATE TABLE IF NOT EXISTS ai_eval_case (\n  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  dataset       VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  case_key      VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  vars_json     LONGTEXT      NULL,\n  expected_json LONGTEXT      NULL,\n  media_bucket  VARCHAR(255)  NULL,\n  media_key     VARCHAR(1024) NULL,\n  tags_json     TEXT          NULL,\n  assert_json   LONGTEXT      NULL,\n  threshold     DOUBLE        NULL,\n  is_active     TINYINT(1)    NOT NULL DEFAULT 1,\n  source        VARCHAR(32)   NOT NULL DEFAULT 'yaml',\n  updated_ms    BIGINT        NOT NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_eval_case (dataset, case_key)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_eval_case (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, case_key TEXT NOT NULL, vars_json TEXT NULL, expected_json TEXT NULL, media_bucket TEXT NULL, media_key TEXT NULL, tags_json TEXT NULL, assert_json TEXT NULL, threshold REAL NULL, is_active INTEGER NOT NULL DEFAULT 1, source TEXT NOT NULL DEFAULT 'yaml', updated_ms INTEGER NOT NULL, UNIQUE (dataset, case_key))",
            },
            Step::CreateTable {
                table: "ai_eval_suite",
                mysql: "CREATE TABLE IF NOT EXISTS ai_eval_suite (\n  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  name            VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  dataset         VARCHAR(191)  COLLATE utf8mb4_bin NOT NULL,\n  definition_json LONGTEXT      NOT NULL,\n  is_active       TINYINT(1)    NOT NULL DEFAULT 1,\n  updated_ms      BIGINT        NOT NULL,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_eval_suite_name (name)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_eval_suite (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, dataset TEXT NOT NULL, definition_json TEXT NOT NULL, is_active INTEGER NOT NULL DEFAULT 1, updated_ms INTEGER NOT NULL)",
            },
            Step::AddColumn {
                table: "ai_eval_run",
                column: "stop_reason",
                mysql: "VARCHAR(512) NULL",
                sqlite: "TEXT NULL",
            },
            Step::AddColumn {
                table: "ai_eval_run",
                column: "failure_streak",
                mysql: "INT NOT NULL DEFAULT 0",
                sqlite: "INTEGER NOT NULL DEFAULT 0",
            },
            Step::AddColumn {
                table: "ai_eval_run",
                column: "finalize_token",
                mysql: "VARCHAR(32) NULL",
                sqlite: "TEXT NULL",
            },
            Step::AddColumn {
                table: "ai_eval_run",
                column: "finalize_ms",
                mysql: "BIGINT NULL",
                sqlite: "INTEGER NULL",
            },
        ],
    },
    Migration {
        version: 7,
        name: "audit_row_key",
        steps: &[
            col("row_key", "VARCHAR(80) NULL", "TEXT NULL"),
            Step::AddUniqueIndex {
                table: "ai_call_logs",
                index: "uk_ai_call_logs_row_key",
                columns: "row_key",
            },
        ],
    },
    Migration {
        version: 8,
        name: "access_control",
        steps: &[
            // The predecessor's access tables (created where missing, in its shape: a plan is
            // computed before it runs, so the columns below are added by their own steps),
            // then what access control adds to them.
            Step::CreateTable {
                table: "ai_user",
                mysql: "CREATE TABLE IF NOT EXISTS ai_user (\n  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  name        VARCHAR(191) NOT NULL,\n  email       VARCHAR(191) NULL,\n  status      VARCHAR(32)  NOT NULL DEFAULT 'active',\n  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_user_name (name)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_user (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, email TEXT NULL, status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            },
            Step::CreateTable {
                table: "ai_project_credential_v2",
                mysql: "CREATE TABLE IF NOT EXISTS ai_project_credential_v2 (\n  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  project_id       BIGINT UNSIGNED NOT NULL,\n  access_key_id    VARCHAR(128) NOT NULL,\n  secret_encrypted JSON         NOT NULL,\n  status           VARCHAR(32)  NOT NULL DEFAULT 'active',\n  created_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  updated_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_project_credential_ak (access_key_id),\n  KEY idx_ai_project_credential_project (project_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_project_credential_v2 (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL, access_key_id TEXT NOT NULL UNIQUE, secret_encrypted TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            },
            Step::CreateTable {
                table: "ai_user_key",
                mysql: "CREATE TABLE IF NOT EXISTS ai_user_key (\n  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  user_id          BIGINT UNSIGNED NOT NULL,\n  access_key_id    VARCHAR(128) NOT NULL,\n  secret_encrypted JSON         NOT NULL,\n  allow_ips_json   JSON         NULL,\n  daily_quota      INT          NULL,\n  rps_limit        INT          NULL,\n  status           VARCHAR(32)  NOT NULL DEFAULT 'active',\n  created_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  updated_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_user_key_ak (access_key_id),\n  KEY idx_ai_user_key_user (user_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_user_key (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, access_key_id TEXT NOT NULL UNIQUE, secret_encrypted TEXT NOT NULL, allow_ips_json TEXT NULL, daily_quota INTEGER NULL, rps_limit INTEGER NULL, status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            },
            Step::CreateTable {
                table: "ai_user_call_log",
                mysql: "CREATE TABLE IF NOT EXISTS ai_user_call_log (\n  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  user_id           BIGINT UNSIGNED NULL,\n  key_id            BIGINT UNSIGNED NULL,\n  project_name      VARCHAR(191) NOT NULL,\n  route_key         VARCHAR(191) NOT NULL,\n  http_status       INT          NULL,\n  duration_ms       INT          NULL,\n  tokens_prompt     INT          NULL,\n  tokens_completion INT          NULL,\n  ai_call_log_id    BIGINT UNSIGNED NULL,\n  trace_id          VARCHAR(64)  NULL,\n  created_at        DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n  PRIMARY KEY (id),\n  KEY idx_ai_user_call_log_key_time (key_id, created_at),\n  KEY idx_ai_user_call_log_user_time (user_id, created_at),\n  KEY idx_ai_user_call_log_call (ai_call_log_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_user_call_log (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NULL, key_id INTEGER NULL, project_name TEXT NOT NULL, route_key TEXT NOT NULL, http_status INTEGER NULL, duration_ms INTEGER NULL, tokens_prompt INTEGER NULL, tokens_completion INTEGER NULL, ai_call_log_id INTEGER NULL, trace_id TEXT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))",
            },
            key_col(
                "ai_project_credential_v2",
                "scope_json",
                "TEXT NULL",
                "TEXT NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "expires_ms",
                "BIGINT NULL",
                "INTEGER NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "previous_secret_encrypted",
                "TEXT NULL",
                "TEXT NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "previous_until_ms",
                "BIGINT NULL",
                "INTEGER NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "daily_quota",
                "INT NULL",
                "INTEGER NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "rps_limit",
                "INT NULL",
                "INTEGER NULL",
            ),
            key_col(
                "ai_project_credential_v2",
                "allow_ips_json",
                "TEXT NULL",
                "TEXT NULL",
            ),
            key_col("ai_user_key", "scope_json", "TEXT NULL", "TEXT NULL"),
            key_col("ai_user_key", "expires_ms", "BIGINT NULL", "INTEGER NULL"),
            key_col(
                "ai_user_key",
                "previous_secret_encrypted",
                "TEXT NULL",
                "TEXT NULL",
            ),
            key_col(
                "ai_user_key",
                "previous_until_ms",
                "BIGINT NULL",
                "INTEGER NULL",
            ),
            key_col(
                "ai_user_call_log",
                "access_key_id",
                "VARCHAR(128) NULL",
                "TEXT NULL",
            ),
            Step::AddIndex {
                table: "ai_user_call_log",
                index: "idx_ai_user_call_log_ak_time",
                columns: "access_key_id, created_at",
            },
            // Nonces, used once per key while their timestamp is acceptable.
            Step::CreateTable {
                table: "ai_access_nonce",
                mysql: "CREATE TABLE IF NOT EXISTS ai_access_nonce (\n  access_key_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,\n  nonce         VARCHAR(191) COLLATE utf8mb4_bin NOT NULL,\n  expires_ms    BIGINT       NOT NULL,\n  PRIMARY KEY (access_key_id, nonce),\n  KEY idx_ai_access_nonce_expiry (expires_ms)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_access_nonce (access_key_id TEXT NOT NULL, nonce TEXT NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (access_key_id, nonce))",
            },
            // The per-second window: one row per key, reset when the second changes.
            Step::CreateTable {
                table: "ai_access_rate",
                mysql: "CREATE TABLE IF NOT EXISTS ai_access_rate (\n  access_key_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,\n  window_s      BIGINT       NOT NULL,\n  used          INT          NOT NULL,\n  PRIMARY KEY (access_key_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_access_rate (access_key_id TEXT PRIMARY KEY, window_s INTEGER NOT NULL, used INTEGER NOT NULL)",
            },
            // Calls per key per UTC day: the daily quota's counter and `access usage`.
            Step::CreateTable {
                table: "ai_access_usage",
                mysql: "CREATE TABLE IF NOT EXISTS ai_access_usage (\n  access_key_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,\n  day           DATE         NOT NULL,\n  granted       BIGINT       NOT NULL DEFAULT 0,\n  refused       BIGINT       NOT NULL DEFAULT 0,\n  last_ok       TINYINT(1)   NOT NULL DEFAULT 1,\n  PRIMARY KEY (access_key_id, day)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_access_usage (access_key_id TEXT NOT NULL, day TEXT NOT NULL, granted INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0, last_ok INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (access_key_id, day))",
            },
            // Who called, on every audit row of an API call.
            col("caller_key", "VARCHAR(128) NULL", "TEXT NULL"),
            col("caller_principal", "VARCHAR(512) NULL", "TEXT NULL"),
            col("source_ip", "VARCHAR(64) NULL", "TEXT NULL"),
            Step::AddIndex {
                table: "ai_call_logs",
                index: "idx_ai_call_logs_caller",
                columns: "caller_key",
            },
        ],
    },
    Migration {
        version: 9,
        name: "costs_and_budgets",
        steps: &[
            // Per-unit USD prices under LiteLLM's field names; a changed price closes its row
            // (valid_to_ms) and opens a new one, so an audit row's price_id stays explainable.
            Step::CreateTable {
                table: "ai_model_price",
                mysql: "CREATE TABLE IF NOT EXISTS ai_model_price (\n  id                              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  provider                        VARCHAR(64)  NOT NULL DEFAULT '',\n  model                           VARCHAR(191) NOT NULL,\n  input_cost_per_token            DOUBLE       NULL,\n  output_cost_per_token           DOUBLE       NULL,\n  cache_read_input_token_cost     DOUBLE       NULL,\n  cache_creation_input_token_cost DOUBLE       NULL,\n  input_cost_per_audio_token      DOUBLE       NULL,\n  output_cost_per_audio_token     DOUBLE       NULL,\n  output_cost_per_reasoning_token DOUBLE       NULL,\n  input_cost_per_second           DOUBLE       NULL,\n  max_output_tokens               BIGINT       NULL,\n  valid_from_ms                   BIGINT       NOT NULL DEFAULT 0,\n  valid_to_ms                     BIGINT       NULL,\n  source                          VARCHAR(191) NOT NULL DEFAULT 'manual',\n  is_active                       TINYINT(1)   NOT NULL DEFAULT 1,\n  created_at                      DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_model_price (provider, model, valid_from_ms),\n  KEY idx_ai_model_price_model (model)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_model_price (id INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, input_cost_per_token REAL NULL, output_cost_per_token REAL NULL, cache_read_input_token_cost REAL NULL, cache_creation_input_token_cost REAL NULL, input_cost_per_audio_token REAL NULL, output_cost_per_audio_token REAL NULL, output_cost_per_reasoning_token REAL NULL, input_cost_per_second REAL NULL, max_output_tokens INTEGER NULL, valid_from_ms INTEGER NOT NULL DEFAULT 0, valid_to_ms INTEGER NULL, source TEXT NOT NULL DEFAULT 'manual', is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE (provider, model, valid_from_ms))",
            },
            // Limits in nano-USD per project, route or access key, per UTC day or month.
            Step::CreateTable {
                table: "ai_budget",
                mysql: "CREATE TABLE IF NOT EXISTS ai_budget (\n  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,\n  scope       VARCHAR(16)  NOT NULL,\n  target      VARCHAR(255) NOT NULL,\n  period      VARCHAR(8)   NOT NULL,\n  limit_nano  BIGINT       NOT NULL,\n  is_active   TINYINT(1)   NOT NULL DEFAULT 1,\n  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n  PRIMARY KEY (id),\n  UNIQUE KEY uk_ai_budget (scope, target, period)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_budget (id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, target TEXT NOT NULL, period TEXT NOT NULL, limit_nano INTEGER NOT NULL, is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE (scope, target, period))",
            },
            // A budget's window: settled costs and reservations of calls in flight.
            Step::CreateTable {
                table: "ai_budget_use",
                mysql: "CREATE TABLE IF NOT EXISTS ai_budget_use (\n  budget_id     BIGINT UNSIGNED NOT NULL,\n  period_start  VARCHAR(10)  NOT NULL,\n  used_nano     BIGINT       NOT NULL DEFAULT 0,\n  reserved_nano BIGINT       NOT NULL DEFAULT 0,\n  calls         BIGINT       NOT NULL DEFAULT 0,\n  refused       BIGINT       NOT NULL DEFAULT 0,\n  PRIMARY KEY (budget_id, period_start)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_budget_use (budget_id INTEGER NOT NULL, period_start TEXT NOT NULL, used_nano INTEGER NOT NULL DEFAULT 0, reserved_nano INTEGER NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (budget_id, period_start))",
            },
            // What each call cost.
            col("cost_nano_usd", "BIGINT NULL", "INTEGER NULL"),
            col("cost_status", "VARCHAR(16) NULL", "TEXT NULL"),
            col("price_id", "BIGINT NULL", "INTEGER NULL"),
        ],
    },
    Migration {
        version: 10,
        name: "audit_trail_indexes",
        // The console's trail pages newest first by (created_at, id) under each filter: every
        // filter has an index that starts with its column and ends with created_at (InnoDB and
        // SQLite append the primary key), so a page reads its rows in order and stops.
        steps: &[
            Step::AddIndex {
                table: "ai_call_logs",
                index: "idx_ai_call_logs_error",
                columns: "error_code, created_at",
            },
            Step::AddIndex {
                table: "ai_call_logs",
                index: "idx_ai_call_logs_project",
                columns: "project_name, created_at",
            },
            Step::AddIndex {
                table: "ai_call_logs",
                index: "idx_ai_call_logs_route",
                columns: "route_key, created_at",
            },
        ],
    },
    Migration {
        version: 11,
        name: "budget_reservations",
        steps: &[
            // Each reservation's share of a budget window, with its identity and expiry: the
            // settlement deletes it; once expired (its call cannot be running any more) the next
            // reservation that finds the budget full reclaims it, and `budget release` frees it
            // by hand. `ai_budget_use.reserved_nano` stays the sum the limit is checked against.
            Step::CreateTable {
                table: "ai_budget_reservation",
                mysql: "CREATE TABLE IF NOT EXISTS ai_budget_reservation (\n  reservation_id VARCHAR(32)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n  budget_id      BIGINT UNSIGNED NOT NULL,\n  period_start   VARCHAR(10)     NOT NULL,\n  amount_nano    BIGINT          NOT NULL,\n  created_ms     BIGINT          NOT NULL,\n  expires_ms     BIGINT          NOT NULL,\n  trace_id       VARCHAR(64)     NULL,\n  PRIMARY KEY (reservation_id, budget_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
                sqlite: "CREATE TABLE IF NOT EXISTS ai_budget_reservation (reservation_id TEXT NOT NULL, budget_id INTEGER NOT NULL, period_start TEXT NOT NULL, amount_nano INTEGER NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, trace_id TEXT NULL, PRIMARY KEY (reservation_id, budget_id))",
            },
            Step::AddIndex {
                table: "ai_budget_reservation",
                index: "idx_ai_budget_reservation_window",
                columns: "budget_id, period_start, expires_ms",
            },
        ],
    },
    Migration {
        version: 12,
        name: "catalog_version",
        // One row: the counter every catalog write bumps in its transaction, which warm
        // processes read now and then to drop their configuration snapshot (`snapshot`).
        steps: &[Step::CreateTable {
            table: "ai_catalog_version",
            mysql: "CREATE TABLE IF NOT EXISTS ai_catalog_version (\n  id      TINYINT NOT NULL,\n  version BIGINT  NOT NULL DEFAULT 0,\n  PRIMARY KEY (id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            sqlite: "CREATE TABLE IF NOT EXISTS ai_catalog_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0)",
        }],
    },
    Migration {
        version: 13,
        name: "connection_breaker",
        // One row per connection whose circuit breaker has been used: the failure streak, when
        // it opened and until when, the half-open probe's claim, and the connection's own
        // thresholds (`store::breaker`, its one writer; the rules are `model::breaker`'s).
        steps: &[Step::CreateTable {
            table: "ai_connection_breaker",
            mysql: "CREATE TABLE IF NOT EXISTS ai_connection_breaker (\n  connection_id   BIGINT NOT NULL,\n  failures        BIGINT NOT NULL DEFAULT 0,\n  window_start_ms BIGINT NOT NULL DEFAULT 0,\n  opened          BIGINT NOT NULL DEFAULT 0,\n  open_until_ms   BIGINT NULL,\n  probe_until_ms  BIGINT NULL,\n  failures_max    BIGINT NULL,\n  cooldown_ms     BIGINT NULL,\n  updated_ms      BIGINT NOT NULL DEFAULT 0,\n  PRIMARY KEY (connection_id)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            sqlite: "CREATE TABLE IF NOT EXISTS ai_connection_breaker (connection_id INTEGER PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0, window_start_ms INTEGER NOT NULL DEFAULT 0, opened INTEGER NOT NULL DEFAULT 0, open_until_ms INTEGER NULL, probe_until_ms INTEGER NULL, failures_max INTEGER NULL, cooldown_ms INTEGER NULL, updated_ms INTEGER NOT NULL DEFAULT 0)",
        }],
    },
    Migration {
        version: 14,
        name: "eval_case_prompt",
        // A case may carry its own prompt (a promptfoo test's rendered prompt, sent after the
        // target's), its description and its metadata: imported promptfoo suites keep them,
        // so `cfg export` writes back what `eval import` read.
        steps: &[
            key_col("ai_eval_case", "prompt_text", "LONGTEXT NULL", "TEXT NULL"),
            key_col("ai_eval_case", "description", "TEXT NULL", "TEXT NULL"),
            key_col(
                "ai_eval_case",
                "metadata_json",
                "LONGTEXT NULL",
                "TEXT NULL",
            ),
        ],
    },
];

/// The schema version a fully migrated database reports.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_only_add() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last);
            last = m.version;
            for s in m.steps {
                let sql = s.sql(true).to_ascii_uppercase();
                assert!(!sql.contains("DROP") && !sql.contains("MODIFY"), "{sql}");
            }
        }
    }

    #[test]
    fn the_sqlite_schema_already_has_every_migrated_column() {
        for m in MIGRATIONS {
            for s in m.steps {
                // Columns of tables the embedded schema creates itself (later tables come with
                // their migrations).
                if let Step::AddColumn { table, column, .. } = s
                    && SQLITE_SCHEMA.contains(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
                {
                    assert!(SQLITE_SCHEMA.contains(&format!("  {column} ")), "{column}");
                }
            }
        }
    }
}
