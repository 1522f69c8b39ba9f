import type { Migration } from './index.ts';

/**
 * Agent update rollouts and where each host's update stands (issue 12).
 *
 * - rollouts: one per release an admin rolls out to an organisation; state follows
 *   appliance/model/rollout.ts RolloutState (the CHECK lists the same closed set). halted_reason is
 *   set with the halted state. rollouts_org_created serves the organisation's list, newest first,
 *   and its open rollout: an open rollout is the organisation's newest (a new one supersedes it), so
 *   that lookup reads the first entries of the organisation's range. rollouts_one_open makes "at
 *   most one open rollout per organisation" a constraint: two admins starting rollouts at once on
 *   PostgreSQL cannot both leave one open (the second insert fails, its transaction rolls back).
 * - rollout_groups: a rollout's groups in the order they start (position 0, 1, …); selector is a
 *   GroupSelector as JSON, read whole with its rollout; started_at stays null until the group is
 *   offered the release. Removed with their rollout.
 * - host_updates: the latest update attempt of each host, one row per host, replaced by each report.
 *   rollout_id is null for an offer no rollout made (a minimum-version offer).
 * - update_blocks: a version that rolled back on a host is not offered to that host again until an
 *   admin clears the block. Keyed by version first: the blocks of one version are read and cleared
 *   together, and one host's block of one version is a lookup on the same key.
 * - Rows of a host go with it (ON DELETE CASCADE, as for every host-linked table); a soft-deleted
 *   host keeps them, as it keeps its task history.
 * - Timestamps are Unix milliseconds.
 */
export const migration019Rollouts: Migration = {
  version: 19,
  description: 'rollouts, rollout_groups, host_updates, update_blocks: agent update rollouts and the update of each host',
  sql: `
CREATE TABLE rollouts (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES organisations(id),
  version        TEXT NOT NULL REFERENCES agent_releases(version),
  state          TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'completed', 'superseded')),
  halted_reason  TEXT,
  created_at     INTEGER NOT NULL,
  created_by     TEXT NOT NULL,
  updated_at     INTEGER NOT NULL
);
CREATE INDEX rollouts_org_created ON rollouts(org_id, created_at, id);
CREATE UNIQUE INDEX rollouts_one_open ON rollouts(org_id) WHERE state IN ('running', 'paused', 'halted');

CREATE TABLE rollout_groups (
  rollout_id       TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
  position         INTEGER NOT NULL CHECK (position >= 0),
  name             TEXT NOT NULL,
  selector         TEXT NOT NULL,
  success_percent  INTEGER NOT NULL CHECK (success_percent BETWEEN 1 AND 100),
  started_at       INTEGER,
  PRIMARY KEY (rollout_id, position)
) WITHOUT ROWID;

CREATE TABLE host_updates (
  host_id     TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
  version     TEXT NOT NULL,
  phase       TEXT NOT NULL CHECK (phase IN ('offered', 'downloading', 'staged', 'installed', 'healthy', 'rolled_back', 'failed')),
  error_code  TEXT,
  detail      TEXT,
  rollout_id  TEXT,
  updated_at  INTEGER NOT NULL
);

CREATE TABLE update_blocks (
  host_id     TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  version     TEXT NOT NULL,
  reason      TEXT NOT NULL,
  blocked_at  INTEGER NOT NULL,
  PRIMARY KEY (version, host_id)
) WITHOUT ROWID;
`,
};
