import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Host, Stores, TableStores, Task, TransactionScope } from '../store/index.ts';
import type { TaskService } from '../tasks/service.ts';

export interface DeleteDeps {
  stores: Stores;
  presence: PresenceRegistry;
  services: { readonly tasks: TaskService };
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
 * uninstaller reports success (hosts/task-finished.ts). Both leave the inventory and task history.
 */
export async function deleteHost(deps: DeleteDeps, orgId: string, hostId: string, options: { uninstall: boolean }, by: string, now: number): Promise<DeleteOutcome> {
  const host = deps.stores.hosts.get(hostId);
  if (!host || host.orgId !== orgId || host.deletedAt !== null) throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${hostId}`, { host_id: hostId });
  if (!options.uninstall) {
    await deps.stores.transact((tx) => retireHost(deps, tx, host.id, now, by, 'host deleted'));
    return { host: deps.stores.hosts.get(host.id) as Host, uninstall: undefined };
  }
  if (host.approval !== 'active') {
    throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `a ${host.approval} host runs no agent that could uninstall itself; delete it without uninstall`, { host_id: hostId, approval: host.approval });
  }
  const online = deps.presence.isStreaming(hostId);
  const { task, created } = await deps.services.tasks.create(orgId, { type: 'agent_uninstall', hostId, by });
  if (created) deps.log.info({ host_id: hostId, task_id: task.id, by, online }, 'uninstall queued; the host is deleted when it succeeds');
  return { host, uninstall: task };
}

/**
 * Retires a host inside the caller's transaction (`tx`): marks it deleted and cancels its
 * unfinished tasks; after commit its stream is closed and its claims forgotten. False (nothing
 * recorded or queued) when it was deleted already.
 */
export async function retireHost(deps: Pick<DeleteDeps, 'presence' | 'log'>, tx: TransactionScope<TableStores>, hostId: string, now: number, by: string, message: string): Promise<boolean> {
  if (!(await tx.hosts.markDeleted(hostId, now, by))) return false;
  const cancelled = await tx.tasks.cancelForHost(hostId, now, 'ERR_AGENT_NOT_ACTIVE');
  tx.afterCommit(() => {
    deps.presence.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host was deleted'), 'revoked');
    deps.presence.forgetClaims(hostId);
    deps.log.info({ host_id: hostId, by, cancelled_tasks: cancelled.length }, message);
  });
  return true;
}
