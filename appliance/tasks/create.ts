import { CtOpsError } from '../../common/errors.ts';
import { newId } from '../lib/ids.ts';
import { hostOfOrg } from '../hosts/lookup.ts';
import type { Stores, Task } from '../store/index.ts';
import type { TaskPayload } from '../store/tasks.ts';
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
 * Queues a task for an active host of the organisation. A host has at most one unfinished task
 * of each type, so asking twice (two admins, a double click) returns the task already queued.
 */
export function createTask(stores: Stores, orgId: string, request: NewTaskRequest, now: number): Promise<CreatedTask> {
  const { type, hostId, by } = request;
  return stores.transact(async (tx) => {
    const host = await hostOfOrg(tx.hosts, orgId, hostId);
    if (host.approval !== 'active') {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot queue ${type} for a host that is ${host.approval}`, { host_id: hostId, approval: host.approval });
    }
    const existing = tx.tasks.findUnfinished(hostId, type);
    if (existing) return { task: existing, created: false };
    const limits = TASK_TYPE_LIMITS[type];
    const id = newId('tsk');
    tx.tasks.insert({
      id, orgId, hostId, type, payload: request.payload ?? {}, createdAt: now, createdBy: by,
      timeoutMs: limits.timeoutMs, expiresAt: now + limits.queuedExpiryMs,
    });
    return { task: tx.tasks.get(id) as Task, created: true };
  });
}
