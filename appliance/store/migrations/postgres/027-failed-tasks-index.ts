import { migration027FailedTasksIndex } from '../027-failed-tasks-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration027FailedTasksIndex = mirroring(
  migration027FailedTasksIndex,
  `
CREATE INDEX tasks_org_failed ON tasks(org_id, finished_at, id) WHERE state IN ('failed', 'timed_out');
`,
);
