import { catalogueCodeOf, CtOpsError } from '../../common/errors.ts';
import { replaceUnsafeText } from '../../common/agent-text.ts';
import { idPattern } from '../../common/ids.ts';
import type { Task__Output, TaskUpdate } from '../../common/proto.ts';
import type { TaskUpdateQueue } from '../heartbeat/task-updates.ts';
import type { AgentLogger } from '../log/logger.ts';
import type { LedgerEntry, LedgerPhase, TaskLedger } from './ledger.ts';

const TASK_ID = idPattern('tsk');

export type TaskKind = NonNullable<Task__Output['kind']>;

/** How a handler ended: done (with a result for the appliance), or handed to a process that reports itself. */
export type TaskHandlerResult =
  | { readonly kind: 'done'; readonly message: string; readonly result?: Readonly<Record<string, unknown>> }
  | { readonly kind: 'handed-off'; readonly message: string };

/** Runs one task. Throws (ideally a CtOpsError) to fail it; `signal` aborts when an admin cancels it. */
export type TaskHandler = (task: Task__Output, signal: AbortSignal) => Promise<TaskHandlerResult>;

export interface TaskRunnerDeps {
  readonly ledger: TaskLedger;
  readonly updates: TaskUpdateQueue;
  readonly handlers: Readonly<Partial<Record<TaskKind, TaskHandler>>>;
  /** Sends the queued reports now rather than with the next timed heartbeat. */
  readonly flush: () => void;
  readonly log: AgentLogger;
  readonly now: () => number;
}

/** The most message text sent per report (the appliance keeps at most 64 KiB). */
export const MESSAGE_LIMIT_CHARS = 16 * 1024;

const PHASES: Readonly<Record<LedgerPhase, TaskUpdate['phase']>> = {
  acknowledged: 'TASK_PHASE_ACKNOWLEDGED',
  running: 'TASK_PHASE_RUNNING',
  'handed-off': 'TASK_PHASE_RUNNING',
  succeeded: 'TASK_PHASE_SUCCEEDED',
  failed: 'TASK_PHASE_FAILED',
};

/**
 * Runs the tasks the appliance pushes, each id at most once: the ledger is written before the
 * task is acknowledged or started, and a task delivered again is answered with its latest phase
 * instead of being run. Reports go into the heartbeat's update queue, which resends them until
 * a heartbeat carrying them is acknowledged.
 */
export class TaskRunner {
  readonly #deps: TaskRunnerDeps;
  readonly #running = new Map<string, AbortController>();

  constructor(deps: TaskRunnerDeps) {
    this.#deps = deps;
  }

  /**
   * At start: a task the previous run was executing cannot be resumed safely, so it is reported
   * failed (never run again); outcomes that had not reached the appliance are sent again.
   */
  resume(): void {
    const { ledger, updates, log } = this.#deps;
    for (const entry of ledger.entries()) {
      if (entry.phase === 'acknowledged' || entry.phase === 'running') {
        const failed = { ...entry, phase: 'failed' as const, errorCode: 'ERR_TASK_INTERRUPTED', message: 'the agent restarted while this task ran; it is not run again', delivered: false };
        this.#record(failed);
        log.warn({ task_id: entry.id, type: entry.type }, 'task interrupted by a restart');
        updates.add(reportOf(failed));
      } else if ((entry.phase === 'succeeded' || entry.phase === 'failed') && !entry.delivered) {
        updates.add(reportOf(entry));
      }
    }
  }

  receive(task: Task__Output): void {
    const { ledger, updates, handlers, log } = this.#deps;
    // An id the appliance never generates cannot be reported back (the appliance refuses the update) nor be a ledger key to trust.
    if (!TASK_ID.test(task.task_id)) {
      log.warn({ task_id: replaceUnsafeText(task.task_id.slice(0, 64)), type: task.kind ?? 'unknown' }, 'task with a malformed id ignored');
      return;
    }
    const known = ledger.get(task.task_id);
    if (known) {
      log.info({ task_id: task.task_id, phase: known.phase }, 'task received again; not running it twice');
      updates.add(reportOf(known));
      return this.#deps.flush();
    }
    const type = task.kind ?? 'unknown';
    const handler = task.kind === undefined ? undefined : handlers[task.kind];
    const receivedAt = this.#deps.now();
    if (!handler) {
      log.warn({ task_id: task.task_id, type }, 'unsupported task');
      this.#finish({ id: task.task_id, type, receivedAt, phase: 'failed', errorCode: 'ERR_TASK_UNSUPPORTED', message: `this agent cannot run ${type} tasks`, delivered: false });
      return;
    }
    const acknowledged: LedgerEntry = { id: task.task_id, type, phase: 'acknowledged', receivedAt, delivered: false };
    if (!this.#record(acknowledged)) {
      // Not recorded, not run: after a restart the agent could not tell it had run it.
      this.#finish({ ...acknowledged, phase: 'failed', errorCode: 'ERR_DATA_DIR_UNUSABLE', message: 'the task ledger in data_dir cannot be written; the task was not run' });
      return;
    }
    updates.add(reportOf(acknowledged));
    log.info({ task_id: task.task_id, type, timeout_ms: Number(task.timeout_ms) }, 'task received');
    void this.#run(task, handler, acknowledged);
    // #run has queued RUNNING synchronously: one heartbeat tells the appliance both at once.
    this.#deps.flush();
  }

  /**
   * An admin cancelled the task: a running handler is aborted. A task this agent never received is
   * remembered as cancelled, so a delivery of it that arrives after the cancel (the appliance wrote
   * both around the same moment) is answered "failed, cancelled" instead of being run. Anything
   * else has nothing to stop.
   */
  cancel(taskId: string): void {
    const controller = this.#running.get(taskId);
    this.#deps.log.info({ task_id: taskId, running: controller !== undefined }, 'task cancelled by the appliance');
    controller?.abort(new CtOpsError('ERR_TASK_CANCELLED', 'an admin cancelled this task'));
    // Only a well-formed id is remembered: a malformed one can name no task the appliance sends.
    if (TASK_ID.test(taskId) && this.#deps.ledger.get(taskId) === undefined) {
      // delivered: the appliance already holds the task as cancelled; nothing to report unless it is delivered.
      this.#record({ id: taskId, type: 'unknown', phase: 'failed', receivedAt: this.#deps.now(), errorCode: 'ERR_TASK_CANCELLED', message: 'cancelled before it reached this agent', delivered: true });
    }
  }

  /** Heartbeats carrying these reports were acknowledged: final outcomes need not be sent again. */
  delivered(reports: readonly TaskUpdate[]): void {
    const { ledger } = this.#deps;
    for (const report of reports) {
      const entry = ledger.get(report.task_id ?? '');
      if (entry && !entry.delivered && (entry.phase === 'succeeded' || entry.phase === 'failed') && report.phase === PHASES[entry.phase]) {
        this.#record({ ...entry, delivered: true });
      }
    }
  }

  async #run(task: Task__Output, handler: TaskHandler, acknowledged: LedgerEntry): Promise<void> {
    const { updates, log } = this.#deps;
    const running: LedgerEntry = { ...acknowledged, phase: 'running' };
    this.#record(running);
    updates.add(reportOf(running));
    const controller = new AbortController();
    this.#running.set(task.task_id, controller);
    try {
      const outcome = await handler(task, controller.signal);
      if (outcome.kind === 'handed-off') {
        const handedOff: LedgerEntry = { ...running, phase: 'handed-off', message: outcome.message };
        this.#record(handedOff);
        updates.add(reportOf(handedOff));
        log.info({ task_id: task.task_id, type: running.type, detail: outcome.message }, 'task handed off');
        return this.#deps.flush();
      }
      const resultJson = outcome.result === undefined ? undefined : JSON.stringify(outcome.result);
      this.#finish({ ...running, phase: 'succeeded', message: outcome.message, resultJson });
    } catch (error) {
      const code = catalogueCodeOf(error) ?? 'ERR_TASK_FAILED';
      this.#finish({ ...running, phase: 'failed', errorCode: code, message: (error as Error)?.message ?? String(error) });
    } finally {
      this.#running.delete(task.task_id);
    }
  }

  /** Writes an entry to the ledger; false (logged) when data_dir cannot be written. */
  #record(entry: LedgerEntry): boolean {
    try {
      this.#deps.ledger.put(entry);
      return true;
    } catch (error) {
      this.#deps.log.error({ task_id: entry.id, error: (error as Error).message }, 'cannot write the task ledger');
      return false;
    }
  }

  #finish(entry: LedgerEntry): void {
    const { updates, log } = this.#deps;
    // The appliance refuses control and bidi characters; output of other programs may hold them.
    const message = entry.message === undefined ? undefined : replaceUnsafeText(entry.message.slice(0, MESSAGE_LIMIT_CHARS), { multiline: true });
    const bounded = { ...entry, message, delivered: false };
    this.#record(bounded);
    updates.add(reportOf(bounded));
    const fields = { task_id: entry.id, type: entry.type, error_code: entry.errorCode ?? null, detail: bounded.message ?? null };
    if (entry.phase === 'succeeded') log.info(fields, 'task succeeded');
    else log.warn(fields, 'task failed');
    this.#deps.flush();
  }
}

/** The report of a ledger entry's current phase, as the heartbeat carries it. */
export function reportOf(entry: LedgerEntry): TaskUpdate {
  return {
    task_id: entry.id,
    phase: PHASES[entry.phase],
    error_code: entry.errorCode ?? '',
    message: entry.message ?? '',
    result_json: entry.resultJson ?? '',
  };
}
