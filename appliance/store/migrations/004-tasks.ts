import type { Migration } from './index.ts';

/**
 * Tasks the appliance asks an agent to run (software inventory, uninstall, config reload).
 *
 * - state follows appliance/tasks/states.ts; the CHECK lists the same closed set.
 * - timeout_ms is copied from the task type when the task is created, so deadline_at can be
 *   computed inside the conditional UPDATE that marks the task sent (deadline = sent_at + timeout).
 * - expires_at bounds how long a task may stay queued while its host is offline.
 * - tasks_one_unfinished makes "at most one unfinished task of a type per host" a constraint,
 *   so two admins racing to queue the same rescan cannot both insert.
 * - tasks_host_state (host_id = ? AND state = 'queued') is what the heartbeat dispatcher reads
 *   when an agent connects, touching only the queued rows; it also serves the per-host listing.
 *   (A partial index WHERE state = 'queued' lost to any (host_id, ...) index in the planner.)
 * - tasks_deadline and tasks_queued_expiry serve the sweeper; they are partial, so they hold
 *   only the few live rows, never the history.
 * - Timestamps are Unix milliseconds.
 */
export const migration004Tasks: Migration = {
  version: 4,
  description: 'tasks: work queued for agents, with deadlines and queued expiry',
  sql: `
CREATE TABLE tasks (
  id               TEXT PRIMARY KEY,
  org_id           TEXT NOT NULL REFERENCES organisations(id),
  host_id          TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  type             TEXT NOT NULL CHECK (type IN ('software_inventory', 'agent_uninstall', 'config_reload')),
  state            TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'acknowledged', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')),
  payload          TEXT NOT NULL DEFAULT '{}',
  result           TEXT,
  output           TEXT,
  error_code       TEXT,
  created_at       INTEGER NOT NULL,
  created_by       TEXT NOT NULL,
  sent_at          INTEGER,
  acknowledged_at  INTEGER,
  started_at       INTEGER,
  finished_at      INTEGER,
  timeout_ms       INTEGER NOT NULL CHECK (timeout_ms > 0),
  deadline_at      INTEGER,
  expires_at       INTEGER NOT NULL,
  attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  CHECK ((state IN ('succeeded', 'failed', 'cancelled', 'timed_out')) = (finished_at IS NOT NULL))
);
CREATE UNIQUE INDEX tasks_one_unfinished ON tasks(host_id, type) WHERE state IN ('queued', 'sent', 'acknowledged', 'running');
CREATE INDEX tasks_host_state ON tasks(host_id, state, created_at);
CREATE INDEX tasks_deadline ON tasks(deadline_at) WHERE state IN ('sent', 'acknowledged', 'running');
CREATE INDEX tasks_queued_expiry ON tasks(expires_at) WHERE state = 'queued';
CREATE INDEX tasks_org_created ON tasks(org_id, created_at);
`,
};
