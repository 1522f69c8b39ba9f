import type { Logger } from 'pino';
import type { CtOpsError } from '../../common/errors.ts';
import type { TaskUpdate__Output } from '../../common/proto.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { inventorySettings } from '../inventory/settings.ts';
import { mayReceiveWork } from '../hosts/status.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Stores, TableStores, Task, TransactionScope } from '../store/index.ts';
import { applyTaskEvent, pendingForHost, streamLost } from './events.ts';
import { isFinished } from './states.ts';
import { applyTaskUpdate } from './updates.ts';
import { toWireTask } from './wire.ts';

export interface TaskDispatcherDeps {
  readonly stores: Stores;
  readonly presence: PresenceRegistry;
  readonly log: Logger;
  /** Called once when a task reaches a finished state through its agent's report, in the report's transaction `tx`. */
  readonly onFinished?: (tx: TransactionScope<TableStores>, task: Task) => Promise<void>;
  readonly now?: () => number;
}

/**
 * Moves tasks between the database and the agents' live Heartbeat streams, driven by events
 * only: a task queued, a stream opened or lost, a report arriving. Nothing polls per stream.
 *
 * Delivery is at least once: a task goes back to the queue when its stream is lost before the
 * agent acknowledged it, and the agent runs each task id at most once (it keeps a ledger in its
 * data directory), so a resend never runs a task twice.
 */
export class TaskDispatcher {
  readonly #deps: TaskDispatcherDeps;
  readonly #now: () => number;

  constructor(deps: TaskDispatcherDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Sends the host's queued tasks, oldest first, if its agent is streaming. From reading a task
   * to marking it sent nothing else runs (the tasks store and the stream write are synchronous),
   * so a task cancelled meanwhile is never sent, and a task is marked sent only once the write
   * was accepted. A host whose key two machines use (identity conflict) gets nothing: its tasks
   * wait until an admin resolves it, so neither machine runs the other's work.
   */
  async dispatch(hostId: string): Promise<number> {
    const { stores, presence, log } = this.#deps;
    if (!presence.isStreaming(hostId)) return 0;
    const host = await stores.hosts.get(hostId);
    if (!host || !mayReceiveWork(host)) return 0;
    // Read before the loop, whose reads, sends and writes are synchronous again; the stream may have gone meanwhile.
    const settings = await inventorySettings(stores, host.orgId);
    if (!presence.isStreaming(hostId)) return 0;
    let sent = 0;
    for (const task of pendingForHost(stores, hostId)) {
      if (!presence.send(hostId, { task: toWireTask(task, settings) })) break;
      applyTaskEvent(stores, task.id, 'sent', this.#now());
      sent += 1;
      log.info({ host_id: hostId, task_id: task.id, type: task.type, attempt: task.attempts + 1 }, 'task sent');
    }
    return sent;
  }

  /**
   * The agent's stream opened: tasks an earlier stream sent but never got acknowledged go out again.
   * A storage failure is logged and the stream carries on: the tasks go out on a later stream.
   */
  async connected(hostId: string): Promise<void> {
    try {
      streamLost(this.#deps.stores, hostId);
      await this.dispatch(hostId);
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'queued tasks not sent');
    }
  }

  /**
   * The host went offline: its sent but unacknowledged tasks wait in the queue for the next stream.
   * A storage failure is logged: they stay sent, and the next stream's connected() queues them again.
   */
  disconnected(hostId: string): void {
    try {
      const requeued = streamLost(this.#deps.stores, hostId);
      if (requeued.length > 0) this.#deps.log.info({ host_id: hostId, task_ids: requeued }, 'tasks queued again after the stream was lost');
    } catch (error) {
      this.#deps.log.error({ host_id: hostId, ...failureFields(error) }, 'tasks not queued again after the stream was lost');
    }
  }

  /**
   * An admin cancelled a task its agent may hold: tell the agent to stop it. Not sent when the host
   * is offline or its stream is backed up: the task stays cancelled and a late report is ignored.
   */
  cancelled(task: Task): void {
    if (task.sentAt === null) return;
    if (!this.#deps.presence.send(task.hostId, { cancel: { task_id: task.id } })) {
      this.#deps.log.warn({ host_id: task.hostId, task_id: task.id }, 'task cancel not sent: the host is offline or not reading');
    }
  }

  /**
   * Applies the task reports a heartbeat carried, each committed in its own transaction. A bad
   * report is logged and skipped, never fatal to the stream. A storage failure stops at that report
   * and is returned (ERR_STORAGE_*): the reports from it on were not stored, so the heartbeat that
   * carried them must not be acknowledged (the agent sends them again; a repeat is harmless).
   */
  async report(hostId: string, updates: readonly TaskUpdate__Output[]): Promise<CtOpsError | undefined> {
    const { stores, log, onFinished } = this.#deps;
    for (const update of updates) {
      try {
        // The report and what a finished task does to its host (an uninstall deletes it) commit together.
        await stores.transact(async (tx) => {
          // The tasks store is still better-sqlite3 on the connection this transaction holds, so it writes inside it.
          const { task, moved } = applyTaskUpdate(stores, hostId, update, this.#now());
          if (!moved) return this.#repeated(tx, hostId, update, task);
          log.info({ host_id: hostId, task_id: task.id, type: task.type, state: task.state, error_code: task.errorCode }, 'task report');
          if (isFinished(task.state)) await onFinished?.(tx, task);
        });
      } catch (error) {
        if (isStorageFailure(error)) {
          log.error({ host_id: hostId, task_id: update.task_id.slice(0, 80), ...failureFields(error) }, 'task report not stored');
          return error;
        }
        log.warn({ err: error, host_id: hostId, task_id: update.task_id.slice(0, 80) }, 'task report refused');
      }
    }
    return undefined;
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
