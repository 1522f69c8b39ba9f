import { migration001Initial } from '../001-initial.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration001Initial = mirroring(migration001Initial, `
CREATE TABLE organisations (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  BIGINT NOT NULL
);

CREATE TABLE org_settings (
  org_id  TEXT NOT NULL REFERENCES organisations(id),
  key     TEXT NOT NULL,
  value   TEXT NOT NULL,
  PRIMARY KEY (org_id, key)
);

CREATE TABLE enrolment_tokens (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES organisations(id),
  secret_hash   TEXT NOT NULL UNIQUE,
  label         TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  created_by    TEXT NOT NULL,
  expires_at    BIGINT NOT NULL,
  max_uses      INTEGER NOT NULL CHECK (max_uses >= 1),
  uses          INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
  auto_approve  SMALLINT NOT NULL CHECK (auto_approve IN (0, 1)),
  tags          TEXT NOT NULL,
  source        TEXT NOT NULL,
  metadata      TEXT NOT NULL,
  revoked_at    BIGINT
);
CREATE INDEX enrolment_tokens_org ON enrolment_tokens(org_id, created_at);

CREATE TABLE hosts (
  id                       TEXT PRIMARY KEY,
  org_id                   TEXT NOT NULL REFERENCES organisations(id),
  public_key               BYTEA NOT NULL UNIQUE CHECK (length(public_key) = 32),
  hostname                 TEXT NOT NULL,
  machine_fingerprint      TEXT NOT NULL,
  os                       TEXT NOT NULL,
  arch                     TEXT NOT NULL,
  agent_version            TEXT NOT NULL,
  approval                 TEXT NOT NULL CHECK (approval IN ('pending', 'active', 'rejected', 'revoked')),
  enrolment_token_id       TEXT REFERENCES enrolment_tokens(id),
  tags                     TEXT NOT NULL,
  fingerprint_conflict_with TEXT REFERENCES hosts(id),
  enrolled_at              BIGINT NOT NULL,
  decided_at               BIGINT,
  decided_by               TEXT,
  last_registered_at       BIGINT NOT NULL,
  last_heartbeat_at        BIGINT,
  last_disconnected_at     BIGINT,
  heartbeat_interval_secs  INTEGER,
  cpu_percent              DOUBLE PRECISION,
  memory_percent           DOUBLE PRECISION,
  disk_percent             DOUBLE PRECISION,
  uptime_seconds           BIGINT
);
CREATE INDEX hosts_org_fingerprint ON hosts(org_id, machine_fingerprint);
CREATE INDEX hosts_org_enrolled ON hosts(org_id, enrolled_at);

CREATE TABLE host_vitals (
  host_id          TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  received_at      BIGINT NOT NULL,
  agent_timestamp  BIGINT NOT NULL,
  cpu_percent      DOUBLE PRECISION NOT NULL,
  memory_percent   DOUBLE PRECISION NOT NULL,
  disk_percent     DOUBLE PRECISION NOT NULL,
  uptime_seconds   BIGINT NOT NULL
);
CREATE INDEX host_vitals_host_time ON host_vitals(host_id, received_at);
CREATE INDEX host_vitals_time ON host_vitals(received_at);

CREATE TABLE register_nonces (
  public_key  BYTEA NOT NULL,
  nonce       BYTEA NOT NULL,
  expires_at  BIGINT NOT NULL,
  PRIMARY KEY (public_key, nonce)
);
CREATE INDEX register_nonces_expiry ON register_nonces(expires_at);

CREATE TABLE admin_users (
  id             TEXT PRIMARY KEY,
  username       TEXT NOT NULL UNIQUE,
  password_hash  TEXT NOT NULL,
  created_at     BIGINT NOT NULL
);

CREATE TABLE admin_api_tokens (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES admin_users(id),
  secret_hash  TEXT NOT NULL UNIQUE,
  label        TEXT NOT NULL,
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT
);
`);
