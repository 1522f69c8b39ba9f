import type { Migration } from './index.ts';

/**
 * The task retention (TaskStore.pruneFinishedBefore, hourly): finished tasks by finish time, so the
 * pass deletes the hour's tasks past the retention instead of reading the whole task history. Only
 * finished tasks have a finished_at (store/tasks.ts STAMPS); a `finished_at < cutoff` term implies
 * the index's `IS NOT NULL`, so SQLite's planner proves it applies.
 */
export const migration028FinishedTasksIndex: Migration = {
  version: 28,
  description: 'index of finished tasks by finish time, for the task retention',
  sql: `
CREATE INDEX tasks_finished ON tasks(finished_at) WHERE finished_at IS NOT NULL;
`,
};
