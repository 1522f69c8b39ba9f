import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Host, Stores, Task } from '../store/index.ts';
import { createTask } from '../tasks/create.ts';
import type { TaskDispatcher } from '../tasks/dispatcher.ts';

export interface DeleteDeps {
  stores: Stores;
  presence: PresenceRegistry;
  tasks: TaskDispatcher;
  log: Logger;
}

export interface DeleteOutcome {
  host: Host;
  /** The agent_uninstall task when the agent was asked to remove itself first; the host is deleted when it succeeds. */
  uninstall: Task | undefined;
}

/**
 * Deletes a host. Without uninstall: at once — the host leaves the list, its key is retired (a
 * later Register with it is refused), its unfinished tasks are cancelled and its stream closed.
 * With uninstall: an agent_uninstall task is queued (sent at once if the agent is online, else
 * when it comes back, until the task expires) and the deletion happens when the agent's
 * uninstaller reports success (onUninstallFinished). Both leave the inventory and task history.
 */
export function deleteHost(deps: DeleteDeps, orgId: string, hostId: string, options: { uninstall: boolean }, by: string, now: number): DeleteOutcome {
  const host = deps.stores.hosts.get(hostId);
  if (!host || host.orgId !== orgId || host.deletedAt !== null) throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${hostId}`, { host_id: hostId });
  if (!options.uninstall) {
    retire(deps, host.id, now, by, 'host deleted');
    return { host: deps.stores.hosts.get(host.id) as Host, uninstall: undefined };
  }
  if (host.approval !== 'active') {
    throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `a ${host.approval} host runs no agent that could uninstall itself; delete it without uninstall`, { host_id: hostId, approval: host.approval });
  }
  const { task, created } = createTask(deps.stores, orgId, { type: 'agent_uninstall', hostId, by }, now);
  if (created) deps.log.info({ host_id: hostId, task_id: task.id, by, online: deps.presence.isStreaming(hostId) }, 'uninstall queued; the host is deleted when it succeeds');
  void deps.tasks.dispatch(hostId);
  return { host, uninstall: deps.stores.tasks.get(task.id) };
}

/** The agent's uninstaller reported success: finish the deletion it was asked for. */
export function onUninstallSucceeded(deps: Omit<DeleteDeps, 'tasks'>, task: Task, now: number): void {
  retire(deps, task.hostId, now, task.createdBy, 'host deleted after remote uninstall');
}

function retire(deps: Omit<DeleteDeps, 'tasks'>, hostId: string, now: number, by: string, message: string): void {
  const cancelled = deps.stores.transaction(() => {
    if (!deps.stores.hosts.markDeleted(hostId, now, by)) return undefined;
    return deps.stores.tasks.cancelForHost(hostId, now, 'ERR_AGENT_NOT_ACTIVE');
  });
  if (cancelled === undefined) return;
  deps.presence.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host was deleted'), 'revoked');
  deps.presence.forgetClaims(hostId);
  deps.log.info({ host_id: hostId, by, cancelled_tasks: cancelled.length }, message);
}
