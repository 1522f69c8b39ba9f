import { TRANSITIONS, UNFINISHED_STATES, type TaskEvent, type TaskState } from '../tasks/states.ts';
import type { TaskType } from '../tasks/types.ts';
import type { Db } from './database.ts';

export type TaskPayload = Readonly<Record<string, unknown>>;

export interface Task {
  id: string;
  orgId: string;
  hostId: string;
  type: TaskType;
  state: TaskState;
  payload: TaskPayload;
  result: unknown;
  output: string | null;
  errorCode: string | null;
  createdAt: number;
  createdBy: string;
  sentAt: number | null;
  acknowledgedAt: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  timeoutMs: number;
  deadlineAt: number | null;
  expiresAt: number;
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

interface TaskRow {
  id: string;
  org_id: string;
  host_id: string;
  type: TaskType;
  state: TaskState;
  payload: string;
  result: string | null;
  output: string | null;
  error_code: string | null;
  created_at: number;
  created_by: string;
  sent_at: number | null;
  acknowledged_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  timeout_ms: number;
  deadline_at: number | null;
  expires_at: number;
  attempts: number;
}

const FINISH = 'finished_at = @now, deadline_at = NULL, result = @result, output = @output, error_code = @errorCode';

/** The columns each event stamps besides the state. */
const STAMPS: Record<TaskEvent, string> = {
  // The deadline runs from the (latest) send; timeout_ms was fixed when the task was created.
  sent: 'sent_at = @now, attempts = attempts + 1, deadline_at = @now + timeout_ms',
  acknowledged: 'acknowledged_at = @now',
  started: 'started_at = @now',
  succeeded: FINISH,
  failed: FINISH,
  cancel: FINISH,
  timeout: FINISH,
  expire: FINISH,
  stream_lost: 'deadline_at = NULL',
};

/**
 * "state IN (...)" over literals; the states are our own closed union, never input. One state is
 * written "state = 'x'", the exact term the partial indexes are declared with, so the planner uses them.
 */
const stateIn = (states: readonly TaskState[]): string =>
  states.length === 1 ? `state = '${states[0]}'` : `state IN (${states.map((state) => `'${state}'`).join(', ')})`;

/** Owns the tasks table. Every state change is one conditional UPDATE over the transition table. */
export class TaskStore {
  readonly #insert;
  readonly #get;
  readonly #list;
  readonly #listForHost;
  readonly #queuedForHost;
  readonly #unfinishedOfType;
  readonly #apply: Record<TaskEvent, ReturnType<Db['prepare']>>;
  readonly #timeoutDue;
  readonly #expireDue;
  readonly #streamLost;
  readonly #cancelForHost;
  readonly #failuresSince;

  constructor(db: Db) {
    this.#insert = db.prepare(
      `INSERT INTO tasks (id, org_id, host_id, type, state, payload, created_at, created_by, timeout_ms, expires_at)
       VALUES (@id, @orgId, @hostId, @type, 'queued', @payload, @createdAt, @createdBy, @timeoutMs, @expiresAt)`,
    );
    this.#get = db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE id = ?');
    // Two statements, so each filter reads its own index (an "@x IS NULL OR" term would defeat both).
    this.#list = db.prepare<[{ orgId: string; state: string | null; limit: number }], TaskRow>(
      `SELECT * FROM tasks WHERE org_id = @orgId AND (@state IS NULL OR state = @state) ORDER BY created_at DESC, id DESC LIMIT @limit`,
    );
    this.#listForHost = db.prepare<[{ orgId: string; hostId: string; state: string | null; limit: number }], TaskRow>(
      `SELECT * FROM tasks WHERE host_id = @hostId AND org_id = @orgId AND (@state IS NULL OR state = @state)
       ORDER BY created_at DESC, id DESC LIMIT @limit`,
    );
    this.#queuedForHost = db.prepare<[string], TaskRow>("SELECT * FROM tasks WHERE host_id = ? AND state = 'queued' ORDER BY created_at");
    this.#unfinishedOfType = db.prepare<[string, string], TaskRow>(
      `SELECT * FROM tasks WHERE host_id = ? AND type = ? AND ${stateIn(UNFINISHED_STATES)}`,
    );
    const apply = {} as Record<TaskEvent, ReturnType<Db['prepare']>>;
    for (const [event, { to, from }] of Object.entries(TRANSITIONS) as [TaskEvent, (typeof TRANSITIONS)[TaskEvent]][]) {
      apply[event] = db.prepare(`UPDATE tasks SET state = '${to}', ${STAMPS[event]} WHERE id = @id AND ${stateIn(from)}`);
    }
    this.#apply = apply;
    // Set-based forms of the timeout and expire events for the sweeper: the same conditions, every due row at once.
    const { timeout, expire, stream_lost: streamLost } = TRANSITIONS;
    this.#timeoutDue = db.prepare<[{ now: number; errorCode: string }], { id: string }>(
      `UPDATE tasks SET state = '${timeout.to}', finished_at = @now, deadline_at = NULL, error_code = @errorCode
       WHERE ${stateIn(timeout.from)} AND deadline_at <= @now RETURNING id`,
    );
    this.#expireDue = db.prepare<[{ now: number; errorCode: string }], { id: string }>(
      `UPDATE tasks SET state = '${expire.to}', finished_at = @now, deadline_at = NULL, error_code = @errorCode
       WHERE ${stateIn(expire.from)} AND expires_at <= @now RETURNING id`,
    );
    const { cancel } = TRANSITIONS;
    this.#cancelForHost = db.prepare<[{ hostId: string; now: number; errorCode: string }], { id: string }>(
      `UPDATE tasks SET state = '${cancel.to}', finished_at = @now, deadline_at = NULL, error_code = @errorCode
       WHERE host_id = @hostId AND ${stateIn(cancel.from)} RETURNING id`,
    );
    this.#failuresSince = db.prepare<[string, string, number], { count: number; last_at: number | null }>(
      `SELECT count(*) AS count, max(finished_at) AS last_at FROM tasks
       WHERE host_id = ? AND type = ? AND state IN ('failed', 'timed_out') AND finished_at > ?`,
    );
    this.#streamLost = db.prepare<[string], { id: string }>(
      `UPDATE tasks SET state = '${streamLost.to}', deadline_at = NULL WHERE host_id = ? AND ${stateIn(streamLost.from)} RETURNING id`,
    );
  }

  insert(task: NewTask): void {
    this.#insert.run({ ...task, payload: JSON.stringify(task.payload) });
  }

  get(id: string): Task | undefined {
    const row = this.#get.get(id);
    return row && toTask(row);
  }

  /** Newest first. */
  list(orgId: string, filter: TaskFilter): Task[] {
    const state = filter.state ?? null;
    const rows = filter.hostId === undefined
      ? this.#list.all({ orgId, state, limit: filter.limit })
      : this.#listForHost.all({ orgId, hostId: filter.hostId, state, limit: filter.limit });
    return rows.map(toTask);
  }

  /** The host's queued tasks, oldest first: what to send when its agent connects. */
  queuedForHost(hostId: string): Task[] {
    return this.#queuedForHost.all(hostId).map(toTask);
  }

  findUnfinished(hostId: string, type: TaskType): Task | undefined {
    const row = this.#unfinishedOfType.get(hostId, type);
    return row && toTask(row);
  }

  /**
   * Applies an event if the task is in a state the event may start from; false otherwise
   * (unknown id, already moved by a racing event, or finished). Check and write are one statement.
   */
  applyEvent(id: string, event: TaskEvent, now: number, outcome: TaskOutcome = {}): boolean {
    const params = {
      id,
      now,
      result: outcome.result === undefined ? null : JSON.stringify(outcome.result),
      output: outcome.output ?? null,
      errorCode: outcome.errorCode ?? null,
    };
    return this.#apply[event].run(params).changes === 1;
  }

  /** Times out every sent, acknowledged or running task whose deadline has passed; their ids. */
  timeoutDue(now: number, errorCode: string): string[] {
    return this.#timeoutDue.all({ now, errorCode }).map((row) => row.id);
  }

  /** Expires every queued task past its expires_at; their ids. */
  expireDue(now: number, errorCode: string): string[] {
    return this.#expireDue.all({ now, errorCode }).map((row) => row.id);
  }

  /** The cancel event for every unfinished task of a host (revoked or rejected); their ids. */
  cancelForHost(hostId: string, now: number, errorCode: string): string[] {
    return this.#cancelForHost.all({ hostId, now, errorCode }).map((row) => row.id);
  }

  /** How many tasks of a type failed or timed out for a host after `since`, and when the last did. */
  failuresSince(hostId: string, type: TaskType, since: number): { count: number; lastAt: number | null } {
    const row = this.#failuresSince.get(hostId, type, since) as { count: number; last_at: number | null };
    return { count: row.count, lastAt: row.last_at };
  }

  /** The stream_lost event for every sent task of a host; their ids. */
  requeueSent(hostId: string): string[] {
    return this.#streamLost.all(hostId).map((row) => row.id);
  }
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    orgId: row.org_id,
    hostId: row.host_id,
    type: row.type,
    state: row.state,
    payload: JSON.parse(row.payload) as TaskPayload,
    result: row.result === null ? null : (JSON.parse(row.result) as unknown),
    output: row.output,
    errorCode: row.error_code,
    createdAt: row.created_at,
    createdBy: row.created_by,
    sentAt: row.sent_at,
    acknowledgedAt: row.acknowledged_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    timeoutMs: row.timeout_ms,
    deadlineAt: row.deadline_at,
    expiresAt: row.expires_at,
    attempts: row.attempts,
  };
}
