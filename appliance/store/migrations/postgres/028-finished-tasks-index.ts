import { migration028FinishedTasksIndex } from '../028-finished-tasks-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration028FinishedTasksIndex = mirroring(
  migration028FinishedTasksIndex,
  `
CREATE INDEX tasks_finished ON tasks(finished_at) WHERE finished_at IS NOT NULL;
`,
);
