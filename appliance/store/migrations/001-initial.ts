import type { Migration } from './index.ts';

export const migration001Initial: Migration = {
  version: 1,
  description: 'organisations, enrolment tokens, hosts, vitals, register nonces, admin credentials',
  sql: `
CREATE TABLE organisations (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  INTEGER NOT NULL
);

CREATE TABLE org_settings (
  org_id  TEXT NOT NULL REFERENCES organisations(id),
  key     TEXT NOT NULL,
  value   TEXT NOT NULL,
  PRIMARY KEY (org_id, key)
) WITHOUT ROWID;

CREATE TABLE enrolment_tokens (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES organisations(id),
  secret_hash   TEXT NOT NULL UNIQUE,
  label         TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  created_by    TEXT NOT NULL,
  expires_at    INTEGER NOT NULL,
  max_uses      INTEGER NOT NULL CHECK (max_uses >= 1),
  uses          INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
  auto_approve  INTEGER NOT NULL CHECK (auto_approve IN (0, 1)),
  tags          TEXT NOT NULL,
  source        TEXT NOT NULL,
  metadata      TEXT NOT NULL,
  revoked_at    INTEGER
);
CREATE INDEX enrolment_tokens_org ON enrolment_tokens(org_id, created_at);

CREATE TABLE hosts (
  id                       TEXT PRIMARY KEY,
  org_id                   TEXT NOT NULL REFERENCES organisations(id),
  public_key               BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
  hostname                 TEXT NOT NULL,
  machine_fingerprint      TEXT NOT NULL,
  os                       TEXT NOT NULL,
  arch                     TEXT NOT NULL,
  agent_version            TEXT NOT NULL,
  approval                 TEXT NOT NULL CHECK (approval IN ('pending', 'active', 'rejected', 'revoked')),
  enrolment_token_id       TEXT REFERENCES enrolment_tokens(id),
  tags                     TEXT NOT NULL,
  fingerprint_conflict_with TEXT REFERENCES hosts(id),
  enrolled_at              INTEGER NOT NULL,
  decided_at               INTEGER,
  decided_by               TEXT,
  last_registered_at       INTEGER NOT NULL,
  last_heartbeat_at        INTEGER,
  last_disconnected_at     INTEGER,
  heartbeat_interval_secs  INTEGER,
  cpu_percent              REAL,
  memory_percent           REAL,
  disk_percent             REAL,
  uptime_seconds           INTEGER
);
CREATE INDEX hosts_org_fingerprint ON hosts(org_id, machine_fingerprint);
CREATE INDEX hosts_org_enrolled ON hosts(org_id, enrolled_at);

CREATE TABLE host_vitals (
  host_id          TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  received_at      INTEGER NOT NULL,
  agent_timestamp  INTEGER NOT NULL,
  cpu_percent      REAL NOT NULL,
  memory_percent   REAL NOT NULL,
  disk_percent     REAL NOT NULL,
  uptime_seconds   INTEGER NOT NULL
);
CREATE INDEX host_vitals_host_time ON host_vitals(host_id, received_at);
CREATE INDEX host_vitals_time ON host_vitals(received_at);

CREATE TABLE register_nonces (
  public_key  BLOB NOT NULL,
  nonce       BLOB NOT NULL,
  expires_at  INTEGER NOT NULL,
  PRIMARY KEY (public_key, nonce)
) WITHOUT ROWID;
CREATE INDEX register_nonces_expiry ON register_nonces(expires_at);

CREATE TABLE admin_users (
  id             TEXT PRIMARY KEY,
  username       TEXT NOT NULL UNIQUE,
  password_hash  TEXT NOT NULL,
  created_at     INTEGER NOT NULL
);

CREATE TABLE admin_api_tokens (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES admin_users(id),
  secret_hash  TEXT NOT NULL UNIQUE,
  label        TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER
);
`,
};
