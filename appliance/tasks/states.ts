/**
 * The task lifecycle as a pure transition table. The store applies an event with one
 * conditional UPDATE (WHERE state IN from), so two racing events cannot both move a task
 * and a finished task never moves again.
 */

export const TASK_STATES = ['queued', 'sent', 'acknowledged', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type TaskState = (typeof TASK_STATES)[number];

export const FINISHED_STATES = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const satisfies readonly TaskState[];
export type FinishedState = (typeof FINISHED_STATES)[number];
export const UNFINISHED_STATES = ['queued', 'sent', 'acknowledged', 'running'] as const satisfies readonly TaskState[];

/**
 * - sent: the dispatcher wrote the task to the agent's stream (only after the write succeeded).
 * - acknowledged / started / succeeded / failed: reported by the agent. Also from queued: a report
 *   proves the agent holds the task although the appliance has it queued (its write was accepted
 *   but marking it sent failed, or the stream was lost and it was queued again), and dropping the
 *   report would leave a task that succeeded to expire.
 * - cancel: an admin cancelled it.
 * - timeout: its deadline (sent_at + the type's timeout) passed.
 * - expire: it stayed queued past expires_at because its host never connected.
 * - stream_lost: the stream closed before the agent acknowledged: queue it again for the next connection.
 *   Acknowledged and running tasks stay: the agent has them and reports on reconnect, or they time out.
 */
export const TASK_EVENTS = ['sent', 'acknowledged', 'started', 'succeeded', 'failed', 'cancel', 'timeout', 'expire', 'stream_lost'] as const;
export type TaskEvent = (typeof TASK_EVENTS)[number];

export const TRANSITIONS: Readonly<Record<TaskEvent, { readonly to: TaskState; readonly from: readonly TaskState[] }>> = {
  sent: { to: 'sent', from: ['queued'] },
  acknowledged: { to: 'acknowledged', from: ['queued', 'sent'] },
  started: { to: 'running', from: ['queued', 'sent', 'acknowledged'] },
  succeeded: { to: 'succeeded', from: ['queued', 'acknowledged', 'running'] },
  failed: { to: 'failed', from: ['queued', 'acknowledged', 'running'] },
  cancel: { to: 'cancelled', from: ['queued', 'sent', 'acknowledged', 'running'] },
  timeout: { to: 'timed_out', from: ['sent', 'acknowledged', 'running'] },
  expire: { to: 'timed_out', from: ['queued'] },
  stream_lost: { to: 'queued', from: ['sent'] },
};

/** The state an event moves a task to, or undefined when the event does not apply in that state. */
export function nextTaskState(state: TaskState, event: TaskEvent): TaskState | undefined {
  const { to, from } = TRANSITIONS[event];
  return from.includes(state) ? to : undefined;
}

export function isFinished(state: TaskState): state is FinishedState {
  return (FINISHED_STATES as readonly TaskState[]).includes(state);
}
