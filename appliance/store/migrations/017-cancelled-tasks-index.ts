import type { Migration } from './index.ts';

/**
 * The tasks cancelled recently, across hosts: an instance that may have missed other instances'
 * task-cancelled signals (its listening connection was lost) looks them up at each resync and tells
 * the agents streaming to it again (TaskService.retellCancelledSince). A partial index: cancelled
 * tasks are few, and the term is the literal the store writes (tasks.ts stateIn).
 */
export const migration017CancelledTasksIndex: Migration = {
  version: 17,
  description: 'tasks_cancelled_finished: the tasks cancelled since a time, for re-telling cancels a lost signal carried',
  sql: `
CREATE INDEX tasks_cancelled_finished ON tasks(finished_at) WHERE state = 'cancelled';
`,
};
