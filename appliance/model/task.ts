import type { TaskState } from '../tasks/states.ts';
import type { TaskType } from '../tasks/types.ts';

export type { TaskState } from '../tasks/states.ts';
export type { TaskType } from '../tasks/types.ts';

/** What the task asks of the agent beyond its type (a JSON object). */
export type TaskPayload = Readonly<Record<string, unknown>>;

/** A task as every layer sees it; times are milliseconds since the epoch, null until they happened. */
export interface Task {
  id: string;
  orgId: string;
  hostId: string;
  type: TaskType;
  state: TaskState;
  payload: TaskPayload;
  /** The agent's result object (finishing reports only), null otherwise. */
  result: unknown;
  output: string | null;
  /** A catalogue code (common/errors.ts) when the task failed, timed out or was cancelled. */
  errorCode: string | null;
  createdAt: number;
  createdBy: string;
  sentAt: number | null;
  acknowledgedAt: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  /** How long after each send the task must finish (ms), fixed at creation from its type. */
  timeoutMs: number;
  /** sentAt + timeoutMs while the task is with its agent; null otherwise. */
  deadlineAt: number | null;
  /** When a task still queued gives up waiting for its host. */
  expiresAt: number;
  /** How many times it was sent. */
  attempts: number;
}

export type NewTask = Pick<Task, 'id' | 'orgId' | 'hostId' | 'type' | 'payload' | 'createdAt' | 'createdBy' | 'timeoutMs' | 'expiresAt'>;

/** What a finishing event records; absent fields are stored as NULL. */
export interface TaskOutcome {
  result?: unknown;
  output?: string;
  errorCode?: string;
}

export interface TaskFilter {
  hostId?: string;
  state?: TaskState;
  limit: number;
}
