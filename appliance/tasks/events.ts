import { CtOpsError } from '../../common/errors.ts';
import type { Stores, TableStores, Task, TaskOutcome } from '../store/index.ts';
import type { TaskEvent } from './states.ts';
import { TASK_OUTPUT_LIMIT_BYTES } from './types.ts';

/**
 * Applies a lifecycle event to a task; false when the task is not in a state the event starts
 * from (it moved already, or finished). For the heartbeat dispatcher:
 * - apply `sent` only after the write to the agent's stream succeeded, never before;
 * - `sent` returning false means the task was cancelled or expired meanwhile: do not send it.
 */
export function applyTaskEvent(stores: Pick<TableStores, 'tasks'>, taskId: string, event: TaskEvent, now: number, outcome: TaskOutcome = {}): boolean {
  const bounded = outcome.output === undefined ? outcome : { ...outcome, output: truncateUtf8(outcome.output, TASK_OUTPUT_LIMIT_BYTES) };
  return stores.tasks.applyEvent(taskId, event, now, bounded);
}

/** The host's queued tasks, oldest first: what the dispatcher sends when the agent connects. */
export function pendingForHost(stores: Stores, hostId: string): Task[] {
  return stores.tasks.queuedForHost(hostId);
}

/**
 * The agent's stream closed: tasks sent but not acknowledged go back to the queue and are
 * sent again on the next connection (the agent ignores a task id it already has).
 * Acknowledged and running tasks stay; the agent reports them or they time out.
 */
export function streamLost(stores: Stores, hostId: string): string[] {
  return stores.tasks.requeueSent(hostId);
}

/** An admin cancels a task that has not finished. */
export function cancelTask(stores: Stores, orgId: string, taskId: string, now: number): Task {
  const task = stores.tasks.get(taskId);
  if (!task || task.orgId !== orgId) throw new CtOpsError('ERR_TASK_NOT_FOUND', `no task ${taskId}`, { task_id: taskId });
  // Once sent, the uninstall may already be removing the agent, and nothing can stop it then:
  // a cancelled task would only hide its outcome.
  if (task.type === 'agent_uninstall' && task.state !== 'queued') {
    throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `an uninstall that was sent to its agent cannot be cancelled (it is ${task.state})`, { task_id: taskId, state: task.state });
  }
  if (!stores.tasks.applyEvent(taskId, 'cancel', now)) {
    const current = stores.tasks.get(taskId) as Task;
    throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `cannot cancel a task that is ${current.state}`, { task_id: taskId, state: current.state });
  }
  return stores.tasks.get(taskId) as Task;
}

/** Cuts text to at most maxBytes of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString('utf8');
}
