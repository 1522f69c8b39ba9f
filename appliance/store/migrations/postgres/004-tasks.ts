import { migration004Tasks } from '../004-tasks.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration004Tasks = mirroring(migration004Tasks, `
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
  created_at       BIGINT NOT NULL,
  created_by       TEXT NOT NULL,
  sent_at          BIGINT,
  acknowledged_at  BIGINT,
  started_at       BIGINT,
  finished_at      BIGINT,
  timeout_ms       BIGINT NOT NULL CHECK (timeout_ms > 0),
  deadline_at      BIGINT,
  expires_at       BIGINT NOT NULL,
  attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  CHECK ((state IN ('succeeded', 'failed', 'cancelled', 'timed_out')) = (finished_at IS NOT NULL))
);
CREATE UNIQUE INDEX tasks_one_unfinished ON tasks(host_id, type) WHERE state IN ('queued', 'sent', 'acknowledged', 'running');
CREATE INDEX tasks_host_state ON tasks(host_id, state, created_at);
CREATE INDEX tasks_deadline ON tasks(deadline_at) WHERE state IN ('sent', 'acknowledged', 'running');
CREATE INDEX tasks_queued_expiry ON tasks(expires_at) WHERE state = 'queued';
CREATE INDEX tasks_org_created ON tasks(org_id, created_at);
`);
