import { migration019Rollouts } from '../019-rollouts.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration019Rollouts = mirroring(
  migration019Rollouts,
  `
CREATE TABLE rollouts (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES organisations(id),
  version        TEXT NOT NULL REFERENCES agent_releases(version),
  state          TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'completed', 'superseded')),
  halted_reason  TEXT,
  created_at     BIGINT NOT NULL,
  created_by     TEXT NOT NULL,
  updated_at     BIGINT NOT NULL
);
CREATE INDEX rollouts_org_created ON rollouts(org_id, created_at, id);
CREATE UNIQUE INDEX rollouts_one_open ON rollouts(org_id) WHERE state IN ('running', 'paused', 'halted');

CREATE TABLE rollout_groups (
  rollout_id       TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
  position         INTEGER NOT NULL CHECK (position >= 0),
  name             TEXT NOT NULL,
  selector         TEXT NOT NULL,
  success_percent  INTEGER NOT NULL CHECK (success_percent BETWEEN 1 AND 100),
  started_at       BIGINT,
  PRIMARY KEY (rollout_id, position)
);

CREATE TABLE host_updates (
  host_id     TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
  version     TEXT NOT NULL,
  phase       TEXT NOT NULL CHECK (phase IN ('offered', 'downloading', 'staged', 'installed', 'healthy', 'rolled_back', 'failed')),
  error_code  TEXT,
  detail      TEXT,
  rollout_id  TEXT,
  updated_at  BIGINT NOT NULL
);

CREATE TABLE update_blocks (
  host_id     TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  version     TEXT NOT NULL,
  reason      TEXT NOT NULL,
  blocked_at  BIGINT NOT NULL,
  PRIMARY KEY (version, host_id)
);
`,
);
