import { sql, type ExpressionBuilder, type Selectable, type UpdateObject } from 'kysely';
import type { NewTask, Task, TaskFilter, TaskOutcome, TaskPayload } from '../model/task.ts';
import { TRANSITIONS, UNFINISHED_STATES, type TaskEvent, type TaskState } from '../tasks/states.ts';
import type { TaskType } from '../tasks/types.ts';
import { compiledOnce } from './compiled-query.ts';
import type { Schema, TasksTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';
import { HOSTS_PER_STATEMENT, slices } from './runs.ts';
import { inSlices } from './slices.ts';

type TaskRow = Selectable<TasksTable>;
/** Finished tasks deleted per statement by the retention pass, the event loop free between statements (inSlices). */
const PRUNE_BATCH = 2_000;
type TaskUpdate = UpdateObject<Schema, 'tasks'>;

/**
 * `state = 'x'` or `state IN ('x', …)` over literals, never parameters: the terms the partial
 * indexes are declared with (store/migrations/004-tasks.ts), so SQLite's planner can prove the
 * index applies. The states are our own closed union, never input.
 */
const stateIn = (states: readonly TaskState[]) => (eb: ExpressionBuilder<Schema, 'tasks'>) =>
  states.length === 1 ? eb('state', '=', sql.lit(states[0]!)) : eb('state', 'in', states.map((state) => sql.lit(state)));

/** The columns a finishing event (succeeded, failed, cancel, timeout, expire) writes. */
const finish = (now: number, outcome: TaskOutcome): TaskUpdate => ({
  finished_at: now,
  deadline_at: null,
  result: outcome.result === undefined ? null : JSON.stringify(outcome.result),
  output: outcome.output ?? null,
  error_code: outcome.errorCode ?? null,
});

/** A task the agent reports on was sent, at the latest now: its send time and deadline, unless set. */
const heldByAgent = (now: number): TaskUpdate => ({
  sent_at: sql<number>`coalesce(sent_at, ${now})`,
  deadline_at: sql<number>`coalesce(deadline_at, ${now} + timeout_ms)`,
});

/** The columns each event stamps besides the state. */
const STAMPS: Readonly<Record<TaskEvent, (now: number, outcome: TaskOutcome) => TaskUpdate>> = {
  // The deadline runs from the (latest) send; timeout_ms was fixed when the task was created.
  sent: (now) => ({ sent_at: now, attempts: sql<number>`attempts + 1`, deadline_at: sql<number>`${now} + timeout_ms` }),
  // From queued (the agent holds a task whose sent mark was lost), the report starts the deadline.
  acknowledged: (now) => ({ acknowledged_at: now, ...heldByAgent(now) }),
  started: (now) => ({ started_at: now, ...heldByAgent(now) }),
  succeeded: finish,
  failed: finish,
  cancel: finish,
  timeout: finish,
  expire: finish,
  stream_lost: () => ({ deadline_at: null }),
};

// What every stream opening runs, built once (compiled-query.ts).
const queuedTasksOfHost = compiledOnce((db, values: { hostId: string }) =>
  db.selectFrom('tasks').selectAll().where('host_id', '=', values.hostId).where(stateIn(['queued'])).orderBy('created_at'),
);
const requeueSentOfHost = compiledOnce((db, values: { hostId: string }) =>
  db
    .updateTable('tasks')
    .set({ state: TRANSITIONS.stream_lost.to, ...STAMPS.stream_lost(0, {}) })
    .where('host_id', '=', values.hostId)
    .where(stateIn(TRANSITIONS.stream_lost.from))
    .returning('id'),
);

/**
 * Owns the tasks table. Every state change is one conditional UPDATE over the transition table
 * (tasks/states.ts): the row moves only if it is in a state the event starts from, so of two racing
 * events (a cancel and the dispatcher's "sent", a report and the sweeper's timeout) exactly one
 * applies on either backend, and the caller learns which from the row the UPDATE returned.
 */
export class TaskStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /**
   * Queues a task for a host of its organisation that is active and not deleted, checked in the
   * same statement (INSERT … SELECT from the host's row), so a host revoked or deleted by a
   * concurrent transaction (PostgreSQL) gets no task: answers false then. Throws the unique
   * violation of tasks_one_unfinished (constraintViolation 'unique') when the host already has an
   * unfinished task of the type.
   */
  async insert(task: NewTask): Promise<boolean> {
    // Numbers cast: PostgreSQL types a parameter in a select list as text otherwise.
    const integer = (value: number) => sql<number>`cast(${value} as bigint)`;
    const result = await this.#db
      .insertInto('tasks')
      .columns(['id', 'org_id', 'host_id', 'type', 'state', 'payload', 'created_at', 'created_by', 'timeout_ms', 'expires_at'])
      .expression((eb) =>
        eb
          .selectFrom('hosts')
          .select([
            eb.val(task.id).as('id'), eb.val(task.orgId).as('org_id'), eb.val(task.hostId).as('host_id'), eb.val(task.type).as('type'),
            sql.lit('queued').as('state'), eb.val(JSON.stringify(task.payload)).as('payload'), integer(task.createdAt).as('created_at'),
            eb.val(task.createdBy).as('created_by'), integer(task.timeoutMs).as('timeout_ms'), integer(task.expiresAt).as('expires_at'),
          ])
          .where('id', '=', task.hostId)
          .where('org_id', '=', task.orgId)
          .where('approval', '=', 'active')
          .where('deleted_at', 'is', null),
      )
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async get(id: string): Promise<Task | undefined> {
    const row = await this.#db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toTask(row);
  }

  /** The organisation's tasks, newest first, at most filter.limit. */
  async list(orgId: string, filter: TaskFilter): Promise<Task[]> {
    let query = this.#db.selectFrom('tasks').selectAll().where('org_id', '=', orgId);
    // Only the filters given, so each reads its own index (an "x IS NULL OR" term would defeat both).
    if (filter.hostId !== undefined) query = query.where('host_id', '=', filter.hostId);
    if (filter.state !== undefined) query = query.where('state', '=', filter.state);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map(toTask);
  }

  /** The host's queued tasks, oldest first: what to send when its agent connects. */
  async queuedForHost(hostId: string): Promise<Task[]> {
    return (await queuedTasksOfHost(this.#db, { hostId })).rows.map(toTask);
  }

  /**
   * The tasks cancelled at or after `since` (ms), at most `limit`, newest first, of one host
   * (`hostId`: its agent may still hold them, TaskService.connected) or of the hosts whose stream an
   * instance holds (`streamingTo`: those a lost task-cancelled signal may not have reached,
   * TaskService.retellCancelledSince, read through host_streams). Reads tasks_host_state.
   */
  async cancelledSince(of: { readonly hostId: string } | { readonly streamingTo: string }, since: number, limit: number): Promise<Task[]> {
    const query = this.#db.selectFrom('tasks').selectAll('tasks').where(stateIn(['cancelled'])).where('tasks.finished_at', '>=', since);
    const scoped = 'hostId' in of
      ? query.where('tasks.host_id', '=', of.hostId)
      : query.innerJoin('host_streams', 'host_streams.host_id', 'tasks.host_id').where('host_streams.instance_id', '=', of.streamingTo);
    const rows = await scoped.orderBy('tasks.finished_at', 'desc').limit(limit).execute();
    return rows.map(toTask);
  }

  /**
   * The organisation's tasks that failed or timed out at or after `since` (ms), newest finish first,
   * at most `limit`: the console overview's "failed tasks". Reads the partial index tasks_org_failed
   * (migration 027), so it costs the failures of the window, not the task history.
   */
  async failedSince(orgId: string, since: number, limit: number): Promise<Task[]> {
    const rows = await this.#db
      .selectFrom('tasks')
      .selectAll()
      .where('org_id', '=', orgId)
      .where(stateIn(['failed', 'timed_out']))
      .where('finished_at', '>=', since)
      .orderBy('finished_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toTask);
  }

  /** The hosts that have queued tasks, each once (reads the partial index tasks_queued_expiry). */
  async hostsWithQueued(): Promise<string[]> {
    const rows = await this.#db.selectFrom('tasks').select('host_id').distinct().where(stateIn(['queued'])).execute();
    return rows.map((row) => row.host_id);
  }

  async findUnfinished(hostId: string, type: TaskType): Promise<Task | undefined> {
    const row = await this.#db.selectFrom('tasks').selectAll().where('host_id', '=', hostId).where('type', '=', type).where(stateIn(UNFINISHED_STATES)).executeTakeFirst();
    return row && toTask(row);
  }

  /**
   * Applies an event if the task is in a state the event may start from and answers the task as
   * it left the UPDATE; undefined otherwise (unknown id, already moved by a racing event, or
   * finished). Check and write are one statement. `onlyFrom` narrows the states the event may
   * start from (an uninstall is cancelled only while still queued).
   */
  async applyEvent(id: string, event: TaskEvent, now: number, outcome: TaskOutcome = {}, onlyFrom?: readonly TaskState[]): Promise<Task | undefined> {
    const { to } = TRANSITIONS[event];
    const from = onlyFrom === undefined ? TRANSITIONS[event].from : TRANSITIONS[event].from.filter((state) => onlyFrom.includes(state));
    if (from.length === 0) return undefined;
    const row = await this.#db
      .updateTable('tasks')
      .set({ state: to, ...STAMPS[event](now, outcome) })
      .where('id', '=', id)
      .where(stateIn(from))
      .returningAll()
      .executeTakeFirst();
    return row && toTask(row);
  }

  /** Times out every sent, acknowledged or running task whose deadline has passed; their ids. */
  async timeoutDue(now: number, errorCode: string): Promise<string[]> {
    const { to, from } = TRANSITIONS.timeout;
    return this.#finishWhere(to, now, errorCode, (eb) => eb.and([stateIn(from)(eb), eb('deadline_at', '<=', now)]));
  }

  /** Expires every queued task past its expires_at; their ids. */
  async expireDue(now: number, errorCode: string): Promise<string[]> {
    const { to, from } = TRANSITIONS.expire;
    return this.#finishWhere(to, now, errorCode, (eb) => eb.and([stateIn(from)(eb), eb('expires_at', '<=', now)]));
  }

  /** The cancel event for every unfinished task of a host (revoked, rejected or deleted); their ids. */
  async cancelForHost(hostId: string, now: number, errorCode: string): Promise<string[]> {
    const { to, from } = TRANSITIONS.cancel;
    return this.#finishWhere(to, now, errorCode, (eb) => eb.and([eb('host_id', '=', hostId), stateIn(from)(eb)]));
  }

  /**
   * For each host of `sinceByHost` (host id → ms since the epoch), its tasks of `type` that failed or
   * timed out after that time: how many, and when the last one finished. Hosts with none are
   * absent. One statement, joining a VALUES list of (host, since) pairs; callers pass at most a few
   * hundred hosts (each binds two parameters).
   */
  async failuresSince(type: TaskType, sinceByHost: ReadonlyMap<string, number>): Promise<Map<string, { count: number; lastAt: number }>> {
    const failures = new Map<string, { count: number; lastAt: number }>();
    if (sinceByHost.size === 0) return failures;
    const pairs = [...sinceByHost].map(([hostId, since]) => sql`(CAST(${hostId} AS TEXT), CAST(${since} AS BIGINT))`);
    const { rows } = await sql<{ host_id: string; count: number | string; last_at: number | string }>`
      SELECT t.host_id, count(*) AS count, max(t.finished_at) AS last_at
      FROM tasks AS t JOIN (VALUES ${sql.join(pairs)}) AS s ON t.host_id = s.column1
      WHERE t.type = ${type} AND t.state IN ('failed', 'timed_out') AND t.finished_at > s.column2
      GROUP BY t.host_id`.execute(this.#db);
    // count(*) and max(BIGINT) may arrive as strings from pg.
    for (const row of rows) failures.set(row.host_id, { count: Number(row.count), lastAt: Number(row.last_at) });
    return failures;
  }

  /**
   * The stream_lost event for every sent task of the hosts `hostIds` (those whose instance died),
   * HOSTS_PER_STATEMENT per statement; the ids moved.
   */
  async requeueSentOfHosts(hostIds: readonly string[]): Promise<string[]> {
    const moved: string[] = [];
    for (const slice of slices(hostIds, HOSTS_PER_STATEMENT)) {
      const rows = await this.#db
        .updateTable('tasks')
        .set({ state: TRANSITIONS.stream_lost.to, ...STAMPS.stream_lost(0, {}) })
        .where('host_id', 'in', slice)
        .where(stateIn(TRANSITIONS.stream_lost.from))
        .returning('id')
        .execute();
      moved.push(...rows.map((row) => row.id));
    }
    return moved;
  }

  /** The stream_lost event for every sent task of a host; their ids. */
  async requeueSent(hostId: string): Promise<string[]> {
    return (await requeueSentOfHost(this.#db, { hostId })).rows.map((row) => row.id);
  }

  /**
   * Deletes the tasks that finished before `cutoff` (ms), of every organisation, in statements of at
   * most PRUNE_BATCH rows (each a short write, whatever the backlog); returns how many. Reads the
   * partial index tasks_finished (migration 028). Unfinished tasks have no finished_at and stay.
   */
  async pruneFinishedBefore(cutoff: number): Promise<number> {
    return inSlices(async () => {
      const result = await this.#db
        .deleteFrom('tasks')
        .where('id', 'in', (eb) => eb.selectFrom('tasks').select('id').where('finished_at', '<', cutoff).limit(PRUNE_BATCH))
        .executeTakeFirst();
      const affected = Number(result.numDeletedRows);
      return { affected, more: affected === PRUNE_BATCH };
    });
  }

  /** The set-based form of a finishing event (the sweeper's, a host's cancel): every matching row at once. */
  async #finishWhere(
    to: TaskState,
    now: number,
    errorCode: string,
    where: (eb: ExpressionBuilder<Schema, 'tasks'>) => ReturnType<ExpressionBuilder<Schema, 'tasks'>['and']>,
  ): Promise<string[]> {
    const rows = await this.#db
      .updateTable('tasks')
      .set({ state: to, finished_at: now, deadline_at: null, error_code: errorCode })
      .where(where)
      .returning('id')
      .execute();
    return rows.map((row) => row.id);
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
