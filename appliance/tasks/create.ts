import { CtOpsError } from '../../common/errors.ts';
import { newId } from '../lib/ids.ts';
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
export function createTask(stores: Stores, orgId: string, request: NewTaskRequest, now: number): CreatedTask {
  const { type, hostId, by } = request;
  return stores.transaction(() => {
    const host = stores.hosts.get(hostId);
    if (!host || host.orgId !== orgId || host.deletedAt !== null) throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${hostId}`, { host_id: hostId });
    if (host.approval !== 'active') {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot queue ${type} for a host that is ${host.approval}`, { host_id: hostId, approval: host.approval });
    }
    const existing = stores.tasks.findUnfinished(hostId, type);
    if (existing) return { task: existing, created: false };
    const limits = TASK_TYPE_LIMITS[type];
    const id = newId('tsk');
    stores.tasks.insert({
      id, orgId, hostId, type, payload: request.payload ?? {}, createdAt: now, createdBy: by,
      timeoutMs: limits.timeoutMs, expiresAt: now + limits.queuedExpiryMs,
    });
    return { task: stores.tasks.get(id) as Task, created: true };
  });
}
