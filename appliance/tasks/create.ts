import { CtOpsError } from '../../common/errors.ts';
import { hostOfOrg } from '../hosts/lookup.ts';
import { newId } from '../lib/ids.ts';
import type { Task, TaskPayload } from '../model/task.ts';
import { constraintViolation } from '../store/constraint-violation.ts';
import type { TableStores } from '../store/index.ts';
import { TASK_TYPE_LIMITS, type TaskType } from './types.ts';

export interface NewTaskRequest {
  type: TaskType;
  hostId: string;
  by: string;
  payload?: TaskPayload;
}

export interface CreatedTask {
  task: Task;
  /** False when the host already had an unfinished task of this type, which is returned instead. */
  created: boolean;
}

/**
 * Records a task for an active host of the organisation, inside the caller's transaction (`tx`:
 * its stores). A host has at most one unfinished task of each type (the partial unique index
 * tasks_one_unfinished), so asking twice (two admins, a double click) returns the task already
 * queued. Sending it is TaskService.create's business, after commit.
 * Throws ERR_HOST_NOT_FOUND (unknown, deleted, another organisation's) or ERR_HOST_STATE_CONFLICT
 * (not active, also when it stopped being active after it was read here); a unique violation when a concurrent transaction queued the same type first (on
 * PostgreSQL; SQLite serialises transactions), which rolls this one back.
 */
export async function recordTask(tx: TableStores, orgId: string, request: NewTaskRequest, now: number): Promise<CreatedTask> {
  const { type, hostId, by } = request;
  const host = await hostOfOrg(tx.hosts, orgId, hostId);
  if (host.approval !== 'active') {
    throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot queue ${type} for a host that is ${host.approval}`, { host_id: hostId, approval: host.approval });
  }
  const existing = await tx.tasks.findUnfinished(hostId, type);
  if (existing) return { task: existing, created: false };
  const limits = TASK_TYPE_LIMITS[type];
  const id = newId('tsk');
  const inserted = await tx.tasks.insert({
    id, orgId, hostId, type, payload: request.payload ?? {}, createdAt: now, createdBy: by,
    timeoutMs: limits.timeoutMs, expiresAt: now + limits.queuedExpiryMs,
  });
  // The host read above is not locked: a concurrent transaction (PostgreSQL) revoked or deleted it since.
  if (!inserted) throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot queue ${type} for a host that is no longer active`, { host_id: hostId });
  return { task: (await tx.tasks.get(id)) as Task, created: true };
}

/** Whether `error` is the one-unfinished-task-per-type index refusing a second insert. */
export function isDuplicateUnfinishedTask(error: unknown): boolean {
  return constraintViolation(error) === 'unique';
}
