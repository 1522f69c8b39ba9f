import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { HeartbeatResponse, TaskUpdate__Output } from '../../common/proto.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { mayReceiveWork } from '../hosts/status.ts';
import { DEFAULT_INVENTORY_SETTINGS, inventorySettings } from '../inventory/settings.ts';
import type { Task, TaskFilter } from '../model/task.ts';
import { SWEEP_LOCKS, type ClusterService } from '../cluster/service.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Effect, Stores, TableStores, TransactionScope } from '../store/index.ts';
import { isDuplicateUnfinishedTask, recordTask, type CreatedTask, type NewTaskRequest } from './create.ts';
import { applyTaskEvent } from './events.ts';
import { isFinished } from './states.ts';
import { expireDue, type SweepResult } from './sweep.ts';
import { applyTaskUpdate, checkTaskUpdate, type CheckedUpdate } from './updates.ts';
import { TASK_TYPE_LIMITS } from './types.ts';
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
  /**
   * The other instances on the database (cluster/service.ts): told of a task queued or cancelled for
   * a host whose stream another instance holds; the expiry pass runs on one instance at a time.
   */
  readonly cluster: Pick<ClusterService, 'instanceId' | 'publish' | 'exclusively'>;
  /** How long a write to an agent's stream is waited for (ms) before it counts as not accepted; DELIVERY_WAIT_MS unless a test says. */
  readonly deliveryWaitMs?: number;
  /** How long a finished task is kept (ms; the task_retention_days setting): prune deletes older ones. DEFAULT_TASK_RETENTION_MS unless given. */
  readonly retentionMs?: number;
}

/**
 * The longest a send waits for the agent's stream to accept a write (ms). The stream writer settles
 * every write sooner (15 s: accepted, closed, or a slow consumer); this bound keeps a dispatch from
 * hanging on a write that never settles. A write accepted later is still settled (#settleAccepted).
 */
export const DELIVERY_WAIT_MS = 20_000;
/** task_retention_days' default (config/load.ts), in ms. */
export const DEFAULT_TASK_RETENTION_MS = 90 * 86_400_000;
/** The most online hosts a task sweeper pass dispatches queued tasks for. */
const MAX_DISPATCHES_PER_SWEEP = 100;
/**
 * How far back connected() tells the agent again to stop the host's cancelled tasks (ms): the
 * longest a task may run once sent (TASK_TYPE_LIMITS), after which the agent holds nothing to stop.
 */
const CANCEL_RETELL_MS = Math.max(...Object.values(TASK_TYPE_LIMITS).map((limits) => limits.timeoutMs));
/** The most cancels connected() tells again. */
const MAX_CANCELS_RETOLD = 100;
/** The most cancels one retellCancelledSince (across hosts) tells again; older ones reach their agents at the next stream (connected). */
const MAX_CANCELS_RETOLD_AT_RESYNC = 1_000;

/** One dispatch of a host's queue, bound to the stream session it was started for. */
interface DispatchRound {
  readonly session: number;
  /** Set once, right after the round is made (its body refers to the round). */
  run: Promise<number>;
  /** The queue changed while it ran: it goes round once more. */
  again: boolean;
}

/** How a report that did not move its task is logged once committed. */
type RepeatedReport = 'repeat' | 'late-outcome';

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
  readonly #deliveryWaitMs: number;
  /** Per host, the dispatch under way for its current session: one at a time, so two never send the same queued task. */
  readonly #dispatching = new Map<string, DispatchRound>();
  /**
   * Per host, its stream session: a number that changes whenever its stream is accepted or lost
   * (connected, disconnected). A dispatch writes and marks sent only within the session it started
   * in, so one left hanging on a stream that is gone neither blocks nor races the next stream.
   */
  readonly #sessions = new Map<string, number>();
  #lastSession = 0;
  /**
   * Per host, the tail of its marking and requeueing (store writes only, never a stream write): a
   * dispatch's "sent" checks its session and writes in one turn of this chain, and a new session's
   * requeue runs after it, so a task marked sent by a stale dispatch is always queued again.
   */
  readonly #marking = new Map<string, Promise<unknown>>();
  /** Tasks this process is writing to a stream now (from the read before the write until it settled or the wait ended). */
  readonly #writing = new Set<string>();

  constructor(deps: TaskServiceDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#deliveryWaitMs = deps.deliveryWaitMs ?? DELIVERY_WAIT_MS;
  }

  /**
   * Queues a task for an active host of the organisation and, after commit, starts sending it if the
   * agent is streaming (dispatch; not awaited: a peer that stops reading must not hold the caller).
   * Asking for a type the host has unfinished returns that task (created false). Resolves with the
   * task as committed (a new one is queued). `now`: its creation time (ms), the
   * service's clock unless a pass that reads one clock for all its work (the inventory sweeper)
   * gives it. Throws ERR_HOST_NOT_FOUND or ERR_HOST_STATE_CONFLICT (recordTask), ERR_STORAGE_* when
   * the storage fails.
   */
  async create(orgId: string, request: NewTaskRequest, now = this.#now()): Promise<CreatedTask> {
    const queue = (): Promise<CreatedTask> => this.#deps.stores.transact((tx) => this.createIn(tx, orgId, request, now));
    try {
      return await queue();
    } catch (error) {
      // A concurrent transaction (PostgreSQL) queued the same type first: the retry returns its task.
      if (!isDuplicateUnfinishedTask(error)) throw error;
      return queue();
    }
  }

  /**
   * create's transaction part, for a workflow that queues a task within its own transaction (`tx`):
   * records the task and starts its send after commit (not awaited); a rollback sends nothing.
   */
  async createIn(tx: TransactionScope<TableStores>, orgId: string, request: NewTaskRequest, now: number): Promise<CreatedTask> {
    const outcome = await recordTask(tx, orgId, request, now);
    const { task, created } = outcome;
    if (created) tx.afterCommit(() => this.#deps.log.info({ task_id: task.id, host_id: task.hostId, type: task.type, by: request.by }, 'task queued'));
    tx.afterCommit(() => void this.#handOut(task.hostId));
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

  /** The organisation's tasks that failed or timed out at or after `since` (ms), newest first, at most `limit` (TaskStore.failedSince). */
  failedSince(orgId: string, since: number, limit: number): Promise<Task[]> {
    return this.#deps.stores.tasks.failedSince(orgId, since, limit);
  }

  /** The host's unfinished task of a type (e.g. the uninstall a host's deletion waits for). */
  unfinished(hostId: string, type: Task['type']): Promise<Task | undefined> {
    return this.#deps.stores.tasks.findUnfinished(hostId, type);
  }

  /**
   * An admin cancels a task that has not finished; after commit the agent is told to stop it when it
   * may hold it (it was sent at some point): the tell is started, not awaited. A send in flight that
   * is accepted after the cancel tells the agent again (#settleAccepted), and the next stream is
   * told once more (connected): the agent ignores a cancel of a task it does not run. Throws
   * ERR_TASK_NOT_FOUND, or ERR_TASK_STATE_CONFLICT when the task finished or is an uninstall already
   * sent or being written now (its agent could start it before the cancel arrived).
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
      // Checked after the UPDATE took the row: a dispatch marks a task as being written before it reads it again.
      if (cancelled && uninstall && this.#writing.has(taskId)) {
        throw new CtOpsError('ERR_TASK_STATE_CONFLICT', 'the uninstall is being sent to its agent and cannot be cancelled now', { task_id: taskId, state: 'queued' });
      }
      if (!cancelled) {
        const { state } = (await tx.tasks.get(taskId)) ?? task;
        if (uninstall && !isFinished(state)) {
          throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `an uninstall that was sent to its agent cannot be cancelled (it is ${state})`, { task_id: taskId, state });
        }
        throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `cannot cancel a task that is ${state}`, { task_id: taskId, state });
      }
      tx.afterCommit(() => this.#deps.log.info({ task_id: taskId, host_id: cancelled.hostId, type: cancelled.type, by }, 'task cancelled'));
      // sent_at as the cancelling UPDATE found it: set, the agent may hold the task; null, a send in flight tells it (dispatch).
      if (cancelled.sentAt !== null) {
        tx.afterCommit(() => void this.#tellAgentToStop(cancelled));
        // Also told when its stream is here: that stream may be a stale one, the agent on another instance.
        tx.afterCommit(() => void this.#deps.cluster.publish({ kind: 'task-cancelled', hostId: cancelled.hostId, taskId }));
      }
      return cancelled;
    });
  }

  /**
   * Sends the host's queued tasks, oldest first, if its agent is streaming and the host may receive
   * work (hosts/status.ts: a host whose key two machines use gets nothing until an admin resolves
   * it; read again before each write). Each task is read again right before its write and skipped
   * once it left the queue; it is marked sent (a conditional UPDATE from queued) only once the
   * stream accepted the write, within the session the dispatch started in (#settleAccepted). A call
   * while a dispatch of the same session runs joins it (which then goes round once more); one of an
   * earlier session is left to end on its own. Each write is waited for at most DELIVERY_WAIT_MS.
   * Resolves with how many tasks were sent; never rejects (a storage failure is logged: the tasks
   * stay queued for the next stream, dispatch or sweeper pass).
   */
  dispatch(hostId: string): Promise<number> {
    const session = this.#sessionOf(hostId);
    const running = this.#dispatching.get(hostId);
    if (running?.session === session) {
      running.again = true;
      return running.run;
    }
    const round: DispatchRound = { session, again: false, run: Promise.resolve(0) };
    round.run = (async () => {
      let sent = 0;
      try {
        do {
          round.again = false;
          sent += await this.#sendQueued(hostId, session);
        } while (round.again && this.#sessionOf(hostId) === session);
      } catch (error) {
        this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'queued tasks not sent');
      } finally {
        if (this.#dispatching.get(hostId) === round) this.#dispatching.delete(hostId);
      }
      return sent;
    })();
    this.#dispatching.set(hostId, round);
    return round.run;
  }

  /**
   * The agent's stream was accepted: a new session begins (a dispatch of an earlier stream writes
   * and marks nothing more), tasks an earlier stream sent but never got acknowledged go out again
   * with the rest of the queue, and the agent is told again to stop the tasks cancelled within
   * CANCEL_RETELL_MS (a tell lost with the earlier stream or a restart reaches it now). Resolves once
   * this session's dispatch ended (bounded: DELIVERY_WAIT_MS per write). A storage failure is
   * logged and the stream carries on.
   */
  async connected(hostId: string): Promise<void> {
    const session = this.#beginSession(hostId);
    try {
      await this.#requeue(hostId);
      const cancelled = await this.#deps.stores.tasks.cancelledSince({ hostId }, this.#now() - CANCEL_RETELL_MS, MAX_CANCELS_RETOLD);
      for (const task of cancelled) void this.#tellAgentToStop(task);
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'queued tasks not sent');
      return;
    }
    if (this.#sessionOf(hostId) === session) await this.dispatch(hostId);
  }

  /**
   * The instance holding these hosts' streams died (PresenceService.lostWithInstance): their sent
   * but unacknowledged tasks go back to the queue in the caller's transaction `tx`, for their next
   * stream wherever it opens. None of them streams here, so no session or dispatch here is touched.
   */
  async requeueLostIn(tx: TransactionScope<TableStores>, hostIds: readonly string[]): Promise<void> {
    const requeued = await tx.tasks.requeueSentOfHosts(hostIds);
    if (requeued.length > 0) tx.afterCommit(() => this.#deps.log.info({ task_ids: requeued.slice(0, 100), count: requeued.length }, 'tasks queued again: the instance holding their hosts died'));
  }

  /**
   * The hosts went offline: their sessions end, and their sent but unacknowledged tasks wait in the
   * queue for their next streams, in a few statements for all of them (a fleet whose connections
   * dropped together goes offline in batches: PresenceService). A storage failure is logged: they
   * stay sent, and each host's next stream's connected() queues them again.
   */
  async disconnected(hostIds: readonly string[]): Promise<void> {
    for (const hostId of hostIds) this.#beginSession(hostId);
    const hosts = hostIds.length === 1 ? { host_id: hostIds[0] } : { hosts: hostIds.length };
    try {
      const requeued = await this.#serialised(hostIds, () => this.#deps.stores.tasks.requeueSentOfHosts(hostIds));
      if (requeued.length > 0) this.#deps.log.info({ ...hosts, task_ids: requeued.slice(0, 100), count: requeued.length }, 'tasks queued again after the stream was lost');
    } catch (error) {
      this.#deps.log.error({ ...hosts, ...failureFields(error) }, 'tasks not queued again after the stream was lost');
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
        const { task, moved, deferred, repeated } = await stores.transact(async (tx) => {
          // The report's effects wait for the caller's acknowledgement, and only once committed.
          const deferred: Effect[] = [];
          const scope = { ...tx, afterCommit: (effect: Effect) => void deferred.push(effect) };
          const applied = await applyTaskUpdate(scope, hostId, update, this.#now());
          let repeated: RepeatedReport | undefined;
          if (applied.moved) {
            if (isFinished(applied.task.state)) await this.#deps.onFinished?.(scope, applied.task);
          } else {
            repeated = await this.#repeated(scope, update, applied.task);
          }
          return { ...applied, deferred, repeated };
        });
        if (moved) log.info({ host_id: hostId, task_id: task.id, type: task.type, state: task.state, error_code: task.errorCode }, 'task report');
        if (repeated === 'repeat') log.debug({ host_id: hostId, task_id: task.id, phase: update.phase }, 'task report repeated');
        if (repeated === 'late-outcome') log.warn({ host_id: hostId, task_id: task.id, type: task.type, state: task.state, reported: update.phase }, 'task outcome arrived after the task finished');
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
   * expiry (sweep.ts), and logs what it finished — on one instance at a time (SWEEP_LOCKS.taskExpiry;
   * empty when another ran it) —; then dispatchWaiting. Rejects with ERR_STORAGE_* when the storage fails.
   */
  async sweep(): Promise<SweepResult> {
    const { stores, log, cluster } = this.#deps;
    let swept: SweepResult = { timedOut: [], expired: [] };
    const expire = async (): Promise<void> => {
      swept = await expireDue(stores, this.#now());
    };
    await cluster.exclusively(SWEEP_LOCKS.taskExpiry, expire);
    if (swept.timedOut.length + swept.expired.length > 0) log.info({ timed_out: swept.timedOut, expired: swept.expired }, 'tasks swept');
    await this.dispatchWaiting();
    return swept;
  }

  /**
   * The retention pass (hourly, serve.ts): deletes the tasks that finished more than the retention
   * before `now`, of every organisation and host (a deleted host's too), on one instance at a time
   * (SWEEP_LOCKS.taskRetention). Unfinished tasks are never deleted: the expiry pass (sweep) finishes
   * them first. Resolves with how many were deleted (0 when another instance ran the pass); rejects
   * with ERR_STORAGE_* when the storage fails.
   */
  async prune(now: number): Promise<number> {
    const { stores, log, cluster } = this.#deps;
    const retentionMs = this.#deps.retentionMs ?? DEFAULT_TASK_RETENTION_MS;
    let deleted = 0;
    await cluster.exclusively(SWEEP_LOCKS.taskRetention, async () => {
      deleted = await stores.tasks.pruneFinishedBefore(now - retentionMs);
    });
    if (deleted > 0) log.info({ deleted, retention_days: retentionMs / 86_400_000 }, 'finished tasks pruned');
    return deleted;
  }

  /**
   * Starts a dispatch (not awaited) for up to MAX_DISPATCHES_PER_SWEEP hosts streaming here with
   * queued tasks, so a task whose send failed (a storage failure, a write not accepted, a
   * tasks-queued signal lost while the cluster's listener was away) is retried while its host stays
   * online. Rejects with ERR_STORAGE_* when the storage fails.
   */
  async dispatchWaiting(): Promise<void> {
    const { stores, presence } = this.#deps;
    const waiting = (await stores.tasks.hostsWithQueued()).filter((hostId) => presence.isStreaming(hostId));
    for (const hostId of waiting.slice(0, MAX_DISPATCHES_PER_SWEEP)) void this.dispatch(hostId);
  }

  /**
   * One round of dispatch: the queue as read now, sent until the stream stops accepting, the host
   * may no longer receive work, or the session ended. Before each write the host and the task are
   * read again: a task cancelled or expired meanwhile is not written (its cancel may already be on
   * the stream, ahead of it).
   */
  async #sendQueued(hostId: string, session: number): Promise<number> {
    const { stores, presence } = this.#deps;
    let sent = 0;
    if (!presence.isStreaming(hostId)) return 0;
    for (const queued of await stores.tasks.queuedForHost(hostId)) {
      // Only an inventory task carries the organisation's settings (tasks/wire.ts toWireTask).
      const settings = queued.type === 'software_inventory' ? await inventorySettings(stores, queued.orgId) : DEFAULT_INVENTORY_SETTINGS;
      const host = await stores.hosts.get(hostId);
      if (!host || !mayReceiveWork(host) || !presence.isStreaming(hostId)) break;
      // Before the read: an uninstall's cancel committed after it is refused (cancel), not told behind the task.
      this.#writing.add(queued.id);
      try {
        const task = await stores.tasks.get(queued.id);
        if (task?.state !== 'queued') continue;
        // No await from here to the write: a cancel committed after the read above is written after the task.
        if (this.#sessionOf(hostId) !== session || !presence.isStreaming(hostId)) break;
        const accepted = await this.#deliver(hostId, { task: toWireTask(task, settings) }, () => void this.#settleAcceptedLogged(task, session));
        if (!accepted) break;
        if (await this.#settleAccepted(task, session)) sent += 1;
      } finally {
        this.#writing.delete(queued.id);
      }
    }
    return sent;
  }

  /**
   * A task's write was accepted: marks it sent when it is still queued and the session it was written
   * in is still the host's; answers whether it did. Otherwise the agent holds a task the appliance
   * does not count as sent: a task that finished meanwhile (cancelled, expired) is told to stop,
   * whatever its sent_at, since the cancel may have reached the agent before the task; one of an
   * ended session stays queued and goes out again on the next stream (the agent runs it once).
   */
  async #settleAccepted(task: Task, session: number): Promise<boolean> {
    const { stores, log } = this.#deps;
    const marked = await this.#serialised([task.hostId], () =>
      this.#sessionOf(task.hostId) === session ? applyTaskEvent(stores, task.id, 'sent', this.#now()) : Promise.resolve(undefined),
    );
    if (marked) {
      log.info({ host_id: task.hostId, task_id: task.id, type: task.type, attempt: marked.attempts }, 'task sent');
      return true;
    }
    const current = await stores.tasks.get(task.id);
    if (current && isFinished(current.state)) void this.#tellAgentToStop(current);
    return false;
  }

  /** #settleAccepted for a write accepted after its dispatch stopped waiting: a failure is logged. */
  async #settleAcceptedLogged(task: Task, session: number): Promise<void> {
    try {
      await this.#settleAccepted(task, session);
    } catch (error) {
      this.#deps.log.error({ host_id: task.hostId, task_id: task.id, ...failureFields(error) }, 'late accepted task not marked sent');
    }
  }

  /**
   * Writes to the host's current stream; true once accepted, false when not (no stream, closed, not
   * accepted within the delivery wait). `lateAccepted` runs when a write stopped waiting for is
   * accepted after all. Never rejects.
   */
  async #deliver(hostId: string, message: HeartbeatResponse, lateAccepted?: () => void): Promise<boolean> {
    const delivery = this.#deps.presence.send(hostId, message).catch(() => false);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'waited'>((resolve) => {
      // Unref'd: a write that hangs must not keep a stopping process alive either.
      timer = setTimeout(() => resolve('waited'), this.#deliveryWaitMs).unref();
    });
    const outcome = await Promise.race([delivery, waited]);
    clearTimeout(timer);
    if (outcome !== 'waited') return outcome;
    void delivery.then((accepted) => accepted && lateAccepted?.());
    return false;
  }

  /**
   * Another instance cancelled the task (signal task-cancelled): the agent, if it streams here, is
   * told to stop it. The task is read again: one not cancelled (a stale or foreign signal) is not told.
   */
  async tellCancelled(hostId: string, taskId: string): Promise<void> {
    if (!this.#deps.presence.isStreaming(hostId)) return;
    try {
      const task = await this.#deps.stores.tasks.get(taskId);
      if (task?.hostId === hostId && task.state === 'cancelled') await this.#tellAgentToStop(task);
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, task_id: taskId, ...failureFields(error) }, 'task cancel not sent');
    }
  }

  /**
   * Tells the agents streaming here again to stop the tasks cancelled at or after `since` (ms, on
   * the cancelling instance's clock), at most MAX_CANCELS_RETOLD_AT_RESYNC, newest first: what the
   * task-cancelled signals of that time said, for an instance that may have missed them (its
   * listening connection was lost; cluster/handlers.ts resync). An agent told twice stops once
   * (agent/tasks/runner.ts cancel). Rejects with ERR_STORAGE_* when the storage fails.
   */
  async retellCancelledSince(since: number): Promise<void> {
    const { stores, presence, cluster } = this.#deps;
    const cancelled = await stores.tasks.cancelledSince({ streamingTo: cluster.instanceId }, since, MAX_CANCELS_RETOLD_AT_RESYNC);
    for (const task of cancelled) if (presence.isStreaming(task.hostId)) void this.#tellAgentToStop(task);
  }

  /** The host's queue changed: sent here when its stream is here, else the instance holding it is told (tasks-queued). */
  async #handOut(hostId: string): Promise<void> {
    if (this.#deps.presence.isStreaming(hostId)) await this.dispatch(hostId);
    else await this.#deps.cluster.publish({ kind: 'tasks-queued', hostId });
  }

  /** Tells the agent to stop a task it may hold. Not sent when the host is offline: the next stream is told (connected). Never rejects. */
  async #tellAgentToStop(task: Task): Promise<void> {
    if (await this.#deliver(task.hostId, { cancel: { task_id: task.id } })) {
      this.#deps.log.info({ host_id: task.hostId, task_id: task.id, state: task.state }, 'agent told to stop a task');
    } else {
      this.#deps.log.warn({ host_id: task.hostId, task_id: task.id }, 'task cancel not sent: the host is offline or not reading');
    }
  }

  #sessionOf(hostId: string): number {
    return this.#sessions.get(hostId) ?? 0;
  }

  #beginSession(hostId: string): number {
    this.#lastSession += 1;
    this.#sessions.set(hostId, this.#lastSession);
    return this.#lastSession;
  }

  /** Queues the host's sent tasks again, after any "sent" mark under way (#marking). */
  #requeue(hostId: string): Promise<string[]> {
    return this.#serialised([hostId], () => this.#deps.stores.tasks.requeueSent(hostId));
  }

  /** Runs `work` after the earlier marking and requeueing of every host of `hostIds` settled; theirs wait for it in turn. */
  #serialised<T>(hostIds: readonly string[], work: () => Promise<T>): Promise<T> {
    const earlier = hostIds.map((hostId) => this.#marking.get(hostId)).filter((pending) => pending !== undefined);
    const result = (earlier.length === 0 ? Promise.resolve() : Promise.all(earlier)).then(work, work);
    const tail = result.catch(() => undefined);
    for (const hostId of hostIds) this.#marking.set(hostId, tail);
    void tail.then(() => {
      for (const hostId of hostIds) if (this.#marking.get(hostId) === tail) this.#marking.delete(hostId);
    });
    return result;
  }

  /**
   * A report of a phase the task already left: normally a resend after a dropped stream, or the
   * agent's "failed, cancelled" of a task cancelled here. An outcome that arrives after the task
   * finished otherwise (timed out, failed) is worth a warning, and an uninstall that succeeded late
   * still happened: the agent is gone, so the host is deleted. Answers how to log it after commit.
   */
  async #repeated(tx: TransactionScope<TableStores>, update: TaskUpdate__Output, task: Task): Promise<RepeatedReport> {
    const outcome = update.phase === 'TASK_PHASE_SUCCEEDED' || update.phase === 'TASK_PHASE_FAILED';
    const cancelledHere = task.state === 'cancelled' && update.phase === 'TASK_PHASE_FAILED' && update.error_code === 'ERR_TASK_CANCELLED';
    if (!outcome || !isFinished(task.state) || reportedState(update) === task.state || cancelledHere) return 'repeat';
    if (task.type === 'agent_uninstall' && update.phase === 'TASK_PHASE_SUCCEEDED') await this.#deps.onFinished?.(tx, { ...task, state: 'succeeded', finishedAt: this.#now() });
    return 'late-outcome';
  }
}

function reportedState(update: TaskUpdate__Output): string {
  return update.phase === 'TASK_PHASE_SUCCEEDED' ? 'succeeded' : 'failed';
}
