import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { TaskUpdate__Output } from '../../common/proto.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { mayReceiveWork } from '../hosts/status.ts';
import { inventorySettings } from '../inventory/settings.ts';
import type { Task, TaskFilter } from '../model/task.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Effect, Stores, TableStores, TransactionScope } from '../store/index.ts';
import { isDuplicateUnfinishedTask, recordTask, type CreatedTask, type NewTaskRequest } from './create.ts';
import { applyTaskEvent } from './events.ts';
import { isFinished } from './states.ts';
import { expireDue, type SweepResult } from './sweep.ts';
import { applyTaskUpdate, checkTaskUpdate, type CheckedUpdate } from './updates.ts';
import { toWireTask } from './wire.ts';

export interface TaskServiceDeps {
  readonly stores: Stores;
  readonly presence: PresenceRegistry;
  readonly log: Logger;
  /**
   * What the task's host does when one of its tasks finishes through its agent's report (an
   * uninstall that succeeded deletes the host: hosts/task-finished.ts). Runs inside the report's
   * transaction; what it implies outside the database it queues with `tx.afterCommit`.
   */
  readonly onFinished?: (tx: TransactionScope<TableStores>, task: Task) => Promise<void>;
  readonly now?: () => number;
}

/** What applying a heartbeat's task reports came to. */
export interface ReportOutcome {
  /** The storage failure (ERR_STORAGE_*) that stopped the reports from it on; the heartbeat must not be acknowledged. */
  readonly notStored: CtOpsError | undefined;
  /**
   * What the committed reports imply outside the database (a deleted host's stream closed), for
   * the caller to run once it answered the heartbeat, so its acknowledgement still goes out first.
   */
  readonly effects: readonly Effect[];
}

/**
 * Owns the tasks' workflows: queue then send, cancel then tell the agent, the agents' reports, the
 * sweeper pass, a stream opened or lost. Its transactions decide and record; a write to an agent's
 * stream happens only after commit, and a task is marked sent only once that write was accepted.
 *
 * Delivery is at least once: a task goes back to the queue when its stream is lost before the
 * agent acknowledged it, and the agent runs each task id at most once (it keeps a ledger in its
 * data directory), so a resend never runs a task twice.
 */
export class TaskService {
  readonly #deps: TaskServiceDeps;
  readonly #now: () => number;
  /** Per host, the dispatch under way: one at a time, so two never send the same queued task. */
  readonly #dispatching = new Map<string, Promise<number>>();
  /** Hosts whose queue changed while their dispatch ran: it goes round once more. */
  readonly #dispatchAgain = new Set<string>();

  constructor(deps: TaskServiceDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Queues a task for an active host of the organisation and, after commit, sends it if the agent
   * is streaming. Asking for a type the host has unfinished returns that task (created false).
   * Resolves with the task as it stands after the send. `now`: its creation time (ms), the
   * service's clock unless a pass that reads one clock for all its work (the inventory sweeper)
   * gives it. Throws ERR_HOST_NOT_FOUND or ERR_HOST_STATE_CONFLICT (recordTask), ERR_STORAGE_* when
   * the storage fails.
   */
  async create(orgId: string, request: NewTaskRequest, now = this.#now()): Promise<CreatedTask> {
    const queue = (): Promise<CreatedTask> => this.#deps.stores.transact((tx) => this.createIn(tx, orgId, request, now));
    let outcome: CreatedTask;
    try {
      outcome = await queue();
    } catch (error) {
      // A concurrent transaction (PostgreSQL) queued the same type first: the retry returns its task.
      if (!isDuplicateUnfinishedTask(error)) throw error;
      outcome = await queue();
    }
    return { task: (await this.#deps.stores.tasks.get(outcome.task.id)) ?? outcome.task, created: outcome.created };
  }

  /**
   * create's transaction part, for a workflow that queues a task within its own transaction (`tx`):
   * records the task and queues its send after commit; a rollback sends nothing.
   */
  async createIn(tx: TransactionScope<TableStores>, orgId: string, request: NewTaskRequest, now: number): Promise<CreatedTask> {
    const outcome = await recordTask(tx, orgId, request, now);
    const { task, created } = outcome;
    if (created) tx.afterCommit(() => this.#deps.log.info({ task_id: task.id, host_id: task.hostId, type: task.type, by: request.by }, 'task queued'));
    tx.afterCommit(async () => void (await this.dispatch(task.hostId)));
    return outcome;
  }

  /** The organisation's task; throws ERR_TASK_NOT_FOUND for an unknown id or another organisation's. */
  async get(orgId: string, taskId: string): Promise<Task> {
    const task = await this.#deps.stores.tasks.get(taskId);
    if (!task || task.orgId !== orgId) throw new CtOpsError('ERR_TASK_NOT_FOUND', `no task ${taskId}`, { task_id: taskId });
    return task;
  }

  /** The organisation's tasks, newest first. */
  list(orgId: string, filter: TaskFilter): Promise<Task[]> {
    return this.#deps.stores.tasks.list(orgId, filter);
  }

  /** The host's unfinished task of a type (e.g. the uninstall a host's deletion waits for). */
  unfinished(hostId: string, type: Task['type']): Promise<Task | undefined> {
    return this.#deps.stores.tasks.findUnfinished(hostId, type);
  }

  /**
   * An admin cancels a task that has not finished; after commit the agent is told to stop it when it
   * may hold it (it was sent at some point). Exactly one of this and an in-flight send tells the
   * agent (dispatch). Throws ERR_TASK_NOT_FOUND, or ERR_TASK_STATE_CONFLICT when the task finished
   * or is an uninstall already sent.
   */
  async cancel(orgId: string, taskId: string, by: string): Promise<Task> {
    const now = this.#now();
    return this.#deps.stores.transact(async (tx) => {
      const task = await tx.tasks.get(taskId);
      if (!task || task.orgId !== orgId) throw new CtOpsError('ERR_TASK_NOT_FOUND', `no task ${taskId}`, { task_id: taskId });
      // Once sent, the uninstall may already be removing the agent, and nothing can stop it then:
      // a cancelled task would only hide its outcome.
      const uninstall = task.type === 'agent_uninstall';
      const cancelled = await applyTaskEvent(tx, taskId, 'cancel', now, {}, uninstall ? ['queued'] : undefined);
      if (!cancelled) {
        const { state } = (await tx.tasks.get(taskId)) ?? task;
        if (uninstall && !isFinished(state)) {
          throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `an uninstall that was sent to its agent cannot be cancelled (it is ${state})`, { task_id: taskId, state });
        }
        throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `cannot cancel a task that is ${state}`, { task_id: taskId, state });
      }
      tx.afterCommit(() => this.#deps.log.info({ task_id: taskId, host_id: cancelled.hostId, type: cancelled.type, by }, 'task cancelled'));
      // sent_at as the cancelling UPDATE found it: set, the agent may hold the task; null, a send in flight tells it (dispatch).
      if (cancelled.sentAt !== null) tx.afterCommit(() => this.#tellAgentToStop(cancelled));
      return cancelled;
    });
  }

  /**
   * Sends the host's queued tasks, oldest first, if its agent is streaming and the host may receive
   * work (hosts/status.ts: a host whose key two machines use gets nothing until an admin resolves
   * it). Each task is marked sent (a conditional UPDATE from queued) only once the stream accepted
   * its write; a task that left the queue meanwhile (cancelled, expired) is not marked, and the
   * agent that now holds it is told to stop when nobody else tells it (cancel tells when it found
   * the task sent before). Resolves with how many tasks were sent; never rejects (a storage
   * failure is logged: the tasks stay queued for the next stream or dispatch).
   */
  dispatch(hostId: string): Promise<number> {
    const running = this.#dispatching.get(hostId);
    if (running) {
      this.#dispatchAgain.add(hostId);
      return running;
    }
    const run = (async () => {
      let sent = 0;
      try {
        do {
          this.#dispatchAgain.delete(hostId);
          sent += await this.#sendQueued(hostId);
        } while (this.#dispatchAgain.has(hostId));
      } catch (error) {
        this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'queued tasks not sent');
      } finally {
        this.#dispatching.delete(hostId);
        this.#dispatchAgain.delete(hostId);
      }
      return sent;
    })();
    this.#dispatching.set(hostId, run);
    return run;
  }

  /**
   * The agent's stream was accepted: tasks an earlier stream sent but never got acknowledged go out
   * again, with the rest of the queue. A storage failure is logged and the stream carries on.
   */
  async connected(hostId: string): Promise<void> {
    try {
      await this.#deps.stores.tasks.requeueSent(hostId);
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'queued tasks not sent');
      return;
    }
    await this.dispatch(hostId);
  }

  /**
   * The host went offline: its sent but unacknowledged tasks wait in the queue for the next stream.
   * A storage failure is logged: they stay sent, and the next stream's connected() queues them again.
   */
  async disconnected(hostId: string): Promise<void> {
    try {
      const requeued = await this.#deps.stores.tasks.requeueSent(hostId);
      if (requeued.length > 0) this.#deps.log.info({ host_id: hostId, task_ids: requeued }, 'tasks queued again after the stream was lost');
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'tasks not queued again after the stream was lost');
    }
  }

  /**
   * Screens one report before anything is written (updates.ts checkTaskUpdate). Throws
   * ERR_INVALID_ARGUMENT or ERR_TASK_NOT_FOUND for a report to refuse, ERR_STORAGE_* when the
   * task could not be read.
   */
  screenReport(hostId: string, update: TaskUpdate__Output): Promise<CheckedUpdate> {
    return checkTaskUpdate(this.#deps.stores, hostId, update);
  }

  /**
   * Applies the task reports a heartbeat carried, each committed in its own transaction together
   * with what a finished task does to its host (onFinished). A bad report is logged and skipped,
   * never fatal to the stream. A storage failure stops at that report (ReportOutcome.notStored).
   */
  async report(hostId: string, updates: readonly TaskUpdate__Output[]): Promise<ReportOutcome> {
    const { stores, log } = this.#deps;
    const effects: Effect[] = [];
    for (const update of updates) {
      try {
        const { task, moved, deferred } = await stores.transact(async (tx) => {
          // The report's effects wait for the caller's acknowledgement, and only once committed.
          const deferred: Effect[] = [];
          const scope = { ...tx, afterCommit: (effect: Effect) => void deferred.push(effect) };
          const applied = await applyTaskUpdate(scope, hostId, update, this.#now());
          if (applied.moved) {
            if (isFinished(applied.task.state)) await this.#deps.onFinished?.(scope, applied.task);
          } else {
            await this.#repeated(scope, hostId, update, applied.task);
          }
          return { ...applied, deferred };
        });
        if (moved) log.info({ host_id: hostId, task_id: task.id, type: task.type, state: task.state, error_code: task.errorCode }, 'task report');
        effects.push(...deferred);
      } catch (error) {
        if (isStorageFailure(error)) {
          log.error({ host_id: hostId, task_id: update.task_id.slice(0, 80), ...failureFields(error) }, 'task report not stored');
          return { notStored: error, effects };
        }
        log.warn({ err: error, host_id: hostId, task_id: update.task_id.slice(0, 80) }, 'task report refused');
      }
    }
    return { notStored: undefined, effects };
  }

  /**
   * The sweeper pass: times out tasks past their deadline and expires queued ones past their
   * expiry (sweep.ts), and logs what it finished. Rejects with ERR_STORAGE_* when the storage fails.
   */
  async sweep(): Promise<SweepResult> {
    const swept = await expireDue(this.#deps.stores, this.#now());
    if (swept.timedOut.length + swept.expired.length > 0) this.#deps.log.info({ timed_out: swept.timedOut, expired: swept.expired }, 'tasks swept');
    return swept;
  }

  /** One round of dispatch: the queue as read now, sent until the stream stops accepting. */
  async #sendQueued(hostId: string): Promise<number> {
    const { stores, presence, log } = this.#deps;
    if (!presence.isStreaming(hostId)) return 0;
    const host = await stores.hosts.get(hostId);
    if (!host || !mayReceiveWork(host)) return 0;
    let sent = 0;
    for (const task of await stores.tasks.queuedForHost(hostId)) {
      const settings = await inventorySettings(stores, task.orgId);
      if (!(await presence.send(hostId, { task: toWireTask(task, settings) }))) break;
      const marked = await applyTaskEvent(stores, task.id, 'sent', this.#now());
      if (marked) {
        sent += 1;
        log.info({ host_id: hostId, task_id: task.id, type: task.type, attempt: marked.attempts }, 'task sent');
        continue;
      }
      // The task left the queue while its write was in flight. Never sent before, nobody told the
      // agent that now holds it (cancel tells only about a task it found sent): this does.
      const current = await stores.tasks.get(task.id);
      if (current && isFinished(current.state) && current.sentAt === null) await this.#tellAgentToStop(current);
    }
    return sent;
  }

  /** Tells the agent to stop a task it may hold. Not sent when the host is offline: the task stays finished and a late report is ignored. */
  async #tellAgentToStop(task: Task): Promise<void> {
    if (await this.#deps.presence.send(task.hostId, { cancel: { task_id: task.id } })) {
      this.#deps.log.info({ host_id: task.hostId, task_id: task.id, state: task.state }, 'agent told to stop a task');
    } else {
      this.#deps.log.warn({ host_id: task.hostId, task_id: task.id }, 'task cancel not sent: the host is offline or not reading');
    }
  }

  /**
   * A report of a phase the task already left: normally a resend after a dropped stream. An outcome
   * that arrives after the task finished otherwise (timed out, failed) is worth a warning, and an
   * uninstall that succeeded late still happened: the agent is gone, so the host is deleted.
   */
  async #repeated(tx: TransactionScope<TableStores>, hostId: string, update: TaskUpdate__Output, task: Task): Promise<void> {
    const { log, onFinished } = this.#deps;
    const outcome = update.phase === 'TASK_PHASE_SUCCEEDED' || update.phase === 'TASK_PHASE_FAILED';
    if (!outcome || !isFinished(task.state) || reportedState(update) === task.state) {
      log.debug({ host_id: hostId, task_id: update.task_id, phase: update.phase }, 'task report repeated');
      return;
    }
    log.warn({ host_id: hostId, task_id: task.id, type: task.type, state: task.state, reported: update.phase }, 'task outcome arrived after the task finished');
    if (task.type === 'agent_uninstall' && update.phase === 'TASK_PHASE_SUCCEEDED') await onFinished?.(tx, { ...task, state: 'succeeded', finishedAt: this.#now() });
  }
}

function reportedState(update: TaskUpdate__Output): string {
  return update.phase === 'TASK_PHASE_SUCCEEDED' ? 'succeeded' : 'failed';
}
