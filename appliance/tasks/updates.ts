import { checkAgentText, stringsIn } from '../../common/agent-text.ts';
import { CtOpsError, isErrorCode } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import type { TaskUpdate__Output } from '../../common/proto.ts';
import type { Task, TaskOutcome } from '../model/task.ts';
import type { TableStores } from '../store/index.ts';
import type { TaskEvent } from './states.ts';
import { applyTaskEvent } from './events.ts';
import { TASK_OUTPUT_LIMIT_BYTES } from './types.ts';

const PHASE_EVENTS: Readonly<Record<string, TaskEvent>> = {
  TASK_PHASE_ACKNOWLEDGED: 'acknowledged',
  TASK_PHASE_RUNNING: 'started',
  TASK_PHASE_SUCCEEDED: 'succeeded',
  TASK_PHASE_FAILED: 'failed',
};

const TASK_ID = idPattern('tsk');

export interface AppliedUpdate {
  /** The task after the update; as it was, when the update did not move it. */
  readonly task: Task;
  /** False: the update repeated a phase the task already passed (a resend after a dropped stream), or came after it finished. */
  readonly moved: boolean;
}

/** A task report that passed every check that does not depend on the task's state. */
export interface CheckedUpdate {
  /** This host's task the report names. */
  readonly task: Task;
  readonly event: TaskEvent;
  /** What the agent reported with a finishing phase; empty for the others. */
  readonly outcome: TaskOutcome;
}

/**
 * Checks one task report before anything is written: a well-formed task id, a known phase, a task
 * of this host, a result that is a JSON object of at most 64 KiB. The heartbeat handler screens
 * every report with it (refusals are counted, not logged one by one), and applyTaskUpdate checks
 * again inside its transaction. `stores`: the database's, or a transaction's.
 * Throws ERR_INVALID_ARGUMENT or ERR_TASK_NOT_FOUND (someone else's task reads as unknown).
 */
export async function checkTaskUpdate(stores: TableStores, hostId: string, update: TaskUpdate__Output): Promise<CheckedUpdate> {
  if (!TASK_ID.test(update.task_id)) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'TaskUpdate.task_id is not a task id', { field: 'task_id' });
  const event = PHASE_EVENTS[update.phase];
  if (event === undefined) throw new CtOpsError('ERR_INVALID_ARGUMENT', `TaskUpdate.phase ${String(update.phase)} is not a phase`, { field: 'phase', task_id: update.task_id });
  checkAgentText(update.error_code, 'TaskUpdate.error_code', { max: 64 }, { field: 'error_code', task_id: update.task_id });
  // Output may span lines; it is stored as sent and escaped wherever it is shown.
  checkAgentText(update.message, 'TaskUpdate.message', { max: TASK_OUTPUT_LIMIT_BYTES, multiline: true }, { field: 'message', task_id: update.task_id });
  const task = await stores.tasks.get(update.task_id);
  // Someone else's task reads as unknown: an agent learns nothing about other hosts.
  if (!task || task.hostId !== hostId) throw new CtOpsError('ERR_TASK_NOT_FOUND', `no task ${update.task_id} for this agent`, { task_id: update.task_id });
  const finishing = event === 'succeeded' || event === 'failed';
  const outcome: TaskOutcome = finishing
    ? {
        result: parseResult(update.result_json, update.task_id),
        output: update.message === '' ? undefined : update.message,
        errorCode: event === 'failed' ? failureCode(update.error_code) : undefined,
      }
    : {};
  return { task, event, outcome };
}

/**
 * Applies one progress report from an agent to its task. The agent resends a report until a
 * heartbeat ack covers it, so a report of a phase already passed is a harmless repeat.
 * A report naming another host's task, an unknown phase or a malformed result is refused
 * with a coded error (checkTaskUpdate); the heartbeat stream carries on. `stores`: the stores of
 * the report's transaction (TaskService.report).
 */
export async function applyTaskUpdate(stores: TableStores, hostId: string, update: TaskUpdate__Output, now: number): Promise<AppliedUpdate> {
  const checked = await checkTaskUpdate(stores, hostId, update);
  const { task, event } = checked;
  let { outcome } = checked;
  const finishing = event === 'succeeded' || event === 'failed';
  let applied = event;
  if (event === 'succeeded' && task.type === 'software_inventory') {
    // The appliance's own record decides: the scan the task asked for must have completed here.
    const scan = await stores.softwareInventory.completedScanForTask(hostId, task.id);
    if (scan) {
      const counts = { scan_id: scan.id, packages: scan.packagesReceived, chunks: scan.chunks, added: scan.added, removed: scan.removed, unchanged: scan.unchanged };
      outcome = { ...outcome, result: { ...(outcome.result as object | undefined), ...counts } };
    } else {
      applied = 'failed';
      outcome = { ...outcome, errorCode: 'ERR_INVENTORY_SCAN_INCOMPLETE', output: 'the agent reported success, but no completed scan for this task reached the appliance' };
    }
  }
  // An agent may report a later phase first (the earlier report's heartbeat was lost), so an
  // agent that finished a task straight from "sent" passes through the phases it skipped.
  if (finishing && (task.state === 'sent' || task.state === 'queued')) await applyTaskEvent(stores, task.id, 'started', now);
  const moved = await applyTaskEvent(stores, task.id, applied, now, outcome);
  return { task: moved ?? task, moved: moved !== undefined };
}

function parseResult(json: string, taskId: string): unknown {
  if (json === '') return undefined;
  if (Buffer.byteLength(json, 'utf8') > TASK_OUTPUT_LIMIT_BYTES) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', `TaskUpdate.result_json is over ${TASK_OUTPUT_LIMIT_BYTES} bytes`, { field: 'result_json', task_id: taskId });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'TaskUpdate.result_json is not JSON', { field: 'result_json', task_id: taskId });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'TaskUpdate.result_json must be a JSON object', { field: 'result_json', task_id: taskId });
  }
  // An escaped \u001b, raw C1 and bidirectional characters all survive JSON.parse: every string in the result is checked.
  for (const text of stringsIn(parsed)) checkAgentText(text, 'TaskUpdate.result_json', { max: TASK_OUTPUT_LIMIT_BYTES, multiline: true }, { field: 'result_json', task_id: taskId });
  return parsed;
}

/** The agent's code when it is one of ours; anything else is recorded as ERR_TASK_FAILED. */
function failureCode(code: string): string {
  return isErrorCode(code) ? code : 'ERR_TASK_FAILED';
}
