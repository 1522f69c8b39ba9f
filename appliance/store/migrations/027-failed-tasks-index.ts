import type { Migration } from './index.ts';

/**
 * The console overview's "failed tasks in the last 24 hours" (TaskStore.failedSince): a partial
 * index over the failures only, by finish time, so the overview reads the window's failures instead
 * of walking the organisation's task history newest first until it has found enough failed ones
 * (a site with few failures walked all of it). The WHERE uses the literal states TaskStore's stateIn writes, so SQLite's
 * planner can prove the index applies.
 */
export const migration027FailedTasksIndex: Migration = {
  version: 27,
  description: 'index of failed and timed-out tasks by finish time',
  sql: `
CREATE INDEX tasks_org_failed ON tasks(org_id, finished_at, id) WHERE state IN ('failed', 'timed_out');
`,
};
