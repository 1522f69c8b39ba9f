import { migration017CancelledTasksIndex } from '../017-cancelled-tasks-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration017CancelledTasksIndex = mirroring(
  migration017CancelledTasksIndex,
  `
CREATE INDEX tasks_cancelled_finished ON tasks(finished_at) WHERE state = 'cancelled';
`,
);
