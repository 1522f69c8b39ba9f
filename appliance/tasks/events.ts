import type { Task, TaskOutcome } from '../model/task.ts';
import type { TableStores } from '../store/index.ts';
import type { TaskEvent, TaskState } from './states.ts';
import { TASK_OUTPUT_LIMIT_BYTES } from './types.ts';

/**
 * Applies a lifecycle event to a task, its output cut to TASK_OUTPUT_LIMIT_BYTES; answers the task
 * as the event left it, or undefined when the task is not in a state the event starts from (it
 * moved already, or finished). `stores`: the database's, or a transaction's. For the dispatcher:
 * apply `sent` only once the write to the agent's stream was accepted, never before; undefined
 * then means the task was cancelled or expired meanwhile (TaskService.dispatch). `onlyFrom`
 * narrows the states it may start from (TaskStore.applyEvent).
 */
export async function applyTaskEvent(
  stores: TableStores,
  taskId: string,
  event: TaskEvent,
  now: number,
  outcome: TaskOutcome = {},
  onlyFrom?: readonly TaskState[],
): Promise<Task | undefined> {
  const bounded = outcome.output === undefined ? outcome : { ...outcome, output: truncateUtf8(outcome.output, TASK_OUTPUT_LIMIT_BYTES) };
  return stores.tasks.applyEvent(taskId, event, now, bounded, onlyFrom);
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
