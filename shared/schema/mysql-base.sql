-- The predecessor's 14 tables (ai-runner-hjy 0.0.3), created only where missing.
-- Generated from tests/fixtures/spec/seed-schema.mysql.sql without its DROP statements.

CREATE TABLE IF NOT EXISTS ai_connection (
  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name              VARCHAR(128)  NOT NULL,
  provider          VARCHAR(64)   NOT NULL,
  base_url          VARCHAR(1024) NOT NULL,
  api_key_encrypted JSON          NOT NULL,
  is_active         TINYINT(1)    NOT NULL DEFAULT 1,
  created_at        DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at        DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_connection_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_model (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name          VARCHAR(191)  NOT NULL,
  connection_id BIGINT UNSIGNED NOT NULL,
  is_active     TINYINT(1)    NOT NULL DEFAULT 1,
  created_at    DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at    DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_model_name (name),
  KEY idx_ai_model_connection (connection_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_param_profile (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name        VARCHAR(191) NOT NULL,
  params_json JSON         NULL,
  is_active   TINYINT(1)   NOT NULL DEFAULT 1,
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_param_profile_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_prompt (
  id                   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name                 VARCHAR(191) NOT NULL,
  version              VARCHAR(64)  NOT NULL,
  description          VARCHAR(512) NULL,
  messages_json        JSON         NOT NULL,
  response_format_json JSON         NULL,
  variables_json       JSON         NULL,
  status               VARCHAR(32)  NOT NULL DEFAULT 'active',
  created_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_prompt_name_version (name, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_config (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  config_key       VARCHAR(191) NOT NULL,
  description      VARCHAR(512) NULL,
  model_id         BIGINT UNSIGNED NOT NULL,
  prompt_id        BIGINT UNSIGNED NULL,
  param_profile_id BIGINT UNSIGNED NULL,
  is_active        TINYINT(1)   NOT NULL DEFAULT 1,
  created_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_config_key (config_key),
  KEY idx_ai_config_model (model_id),
  KEY idx_ai_config_prompt (prompt_id),
  KEY idx_ai_config_param (param_profile_id),
  KEY idx_ai_config_active (is_active, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_project_v2 (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name        VARCHAR(191) NOT NULL,
  status      VARCHAR(32)  NOT NULL DEFAULT 'active',
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_project_v2_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_route_v2 (
  id                   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  project_id           BIGINT UNSIGNED NOT NULL,
  route_key            VARCHAR(191) NOT NULL,
  policy               VARCHAR(32)  NOT NULL DEFAULT 'primary_backup',
  policy_config_json   JSON         NULL,
  variables_json       JSON         NULL,
  param_profile_id     BIGINT UNSIGNED NULL,
  prompt_id            BIGINT UNSIGNED NULL,
  response_format_json JSON         NULL,
  is_active            TINYINT(1)   NOT NULL DEFAULT 1,
  created_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at           DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_route_v2_project_route (project_id, route_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_route_member_v2 (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  route_id    BIGINT UNSIGNED NOT NULL,
  config_id   BIGINT UNSIGNED NOT NULL,
  priority    INT          NOT NULL DEFAULT 1,
  weight      INT          NOT NULL DEFAULT 1,
  is_active   TINYINT(1)   NOT NULL DEFAULT 1,
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_route_member_route_config (route_id, config_id),
  KEY idx_ai_route_member_order (route_id, is_active, priority, id),
  KEY idx_ai_route_member_config (config_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_call_logs (
  id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  config_key         VARCHAR(191) NOT NULL,
  http_status        INT          NOT NULL DEFAULT 0,
  duration_ms        INT          NOT NULL DEFAULT 0,
  prompt_tokens      INT          NULL,
  completion_tokens  INT          NULL,
  total_tokens       INT          NULL,
  response_id        VARCHAR(191) NULL,
  error_code         VARCHAR(64)  NULL,
  error_message      TEXT         NULL,
  request_body_json  JSON         NULL,
  response_body_json JSON         NULL,
  created_at         DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY idx_ai_call_logs_key_time (config_key, created_at),
  KEY idx_ai_call_logs_time (created_at),
  KEY idx_ai_call_logs_error (error_code, created_at),
  KEY idx_ai_call_logs_response (response_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_project_credential_v2 (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  project_id       BIGINT UNSIGNED NOT NULL,
  access_key_id    VARCHAR(128) NOT NULL,
  secret_encrypted JSON         NOT NULL,
  status           VARCHAR(32)  NOT NULL DEFAULT 'active',
  created_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_project_credential_ak (access_key_id),
  KEY idx_ai_project_credential_project (project_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_user (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  name        VARCHAR(191) NOT NULL,
  email       VARCHAR(191) NULL,
  status      VARCHAR(32)  NOT NULL DEFAULT 'active',
  created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_user_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_user_key (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id          BIGINT UNSIGNED NOT NULL,
  access_key_id    VARCHAR(128) NOT NULL,
  secret_encrypted JSON         NOT NULL,
  allow_ips_json   JSON         NULL,
  daily_quota      INT          NULL,
  rps_limit        INT          NULL,
  status           VARCHAR(32)  NOT NULL DEFAULT 'active',
  created_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at       DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_ai_user_key_ak (access_key_id),
  KEY idx_ai_user_key_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_user_call_log (
  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id           BIGINT UNSIGNED NULL,
  key_id            BIGINT UNSIGNED NULL,
  project_name      VARCHAR(191) NOT NULL,
  route_key         VARCHAR(191) NOT NULL,
  http_status       INT          NULL,
  duration_ms       INT          NULL,
  tokens_prompt     INT          NULL,
  tokens_completion INT          NULL,
  ai_call_log_id    BIGINT UNSIGNED NULL,
  trace_id          VARCHAR(64)  NULL,
  created_at        DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY idx_ai_user_call_log_key_time (key_id, created_at),
  KEY idx_ai_user_call_log_user_time (user_id, created_at),
  KEY idx_ai_user_call_log_call (ai_call_log_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ai_oss_upload_log (
  id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  project_name      VARCHAR(191)  NULL,
  original_filename VARCHAR(512)  NOT NULL,
  oss_object_name   VARCHAR(1024) NOT NULL,
  file_size         BIGINT        NOT NULL,
  file_type         VARCHAR(128)  NULL,
  file_acl          VARCHAR(32)   NOT NULL DEFAULT 'private',
  created_at        DATETIME      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  KEY idx_ai_oss_upload_project (project_name, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

