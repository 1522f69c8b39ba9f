import { CtOpsError } from '../../common/errors.ts';
import type { Host } from '../model/host.ts';
import type { TableStores, Task, TransactionScope } from '../store/index.ts';
import type { HostDeps } from './deps.ts';
import { hostOfOrg } from './lookup.ts';

export interface DeleteOutcome {
  host: Host;
  /** The agent_uninstall task when the agent was asked to remove itself first; the host is deleted when it succeeds. */
  uninstall: Task | undefined;
}

/**
 * Deletes a host. Without uninstall: at once — the host leaves the list, its key is retired (a
 * later Register with it is refused), its unfinished tasks are cancelled and, after commit, its
 * stream closed. With uninstall: an agent_uninstall task is queued (sent at once if the agent is
 * online, else when it comes back, until the task expires) and the deletion happens when the
 * agent's uninstaller reports success (retireHost from the report's transaction). Both leave the
 * inventory and task history. Throws ERR_HOST_NOT_FOUND; ERR_HOST_STATE_CONFLICT for an uninstall
 * of a host that is not active.
 */
export async function deleteHost(deps: HostDeps, orgId: string, hostId: string, options: { uninstall: boolean }, by: string, now: number): Promise<DeleteOutcome> {
  if (!options.uninstall) {
    return deps.stores.transact(async (tx) => {
      await hostOfOrg(tx.hosts, orgId, hostId);
      await retireHost(deps, tx, hostId, now, by, 'host deleted');
      return { host: (await tx.hosts.get(hostId)) as Host, uninstall: undefined };
    });
  }
  const host = await hostOfOrg(deps.stores.hosts, orgId, hostId);
  if (host.approval !== 'active') {
    throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `a ${host.approval} host runs no agent that could uninstall itself; delete it without uninstall`, { host_id: hostId, approval: host.approval });
  }
  const online = await deps.presence.isOnline(hostId);
  // TaskService.create sends the task after commit when the agent is online.
  const { task, created } = await deps.tasks.create(orgId, { type: 'agent_uninstall', hostId, by }, now);
  if (created) deps.log.info({ host_id: hostId, task_id: task.id, by, online }, 'uninstall queued; the host is deleted when it succeeds');
  return { host, uninstall: task };
}

/** Why a host is retired, when it is not a plain deletion: what its stream is closed with and what its log line says. */
export interface Retirement {
  /** Closes the host's live stream after commit; its code is also the error code of the host's cancelled tasks. */
  closeWith: CtOpsError;
  /** Merged into the log line after commit (they may name another host as `host_id`). */
  logFields?: Record<string, unknown>;
}

/**
 * Soft-deletes the host in the caller's transaction `tx` and cancels its unfinished tasks; after
 * commit its stream is closed, its claim history forgotten and `message` logged. False, and
 * nothing done, when it was already deleted (the conditional soft delete decides between racing
 * transactions). A plain deletion closes with ERR_AGENT_NOT_ACTIVE; `retirement` says
 * otherwise (a replaced host's key is retired: ERR_AGENT_KEY_RETIRED).
 */
export async function retireHost(
  deps: Pick<HostDeps, 'presence' | 'log'>,
  tx: TransactionScope<TableStores>,
  hostId: string,
  now: number,
  by: string,
  message: string,
  retirement: Retirement = { closeWith: new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host was deleted') },
): Promise<boolean> {
  if (!(await tx.hosts.markDeleted(hostId, now, by))) return false;
  const cancelled = await tx.tasks.cancelForHost(hostId, now, retirement.closeWith.code);
  tx.afterCommit(() => {
    deps.presence.disconnect(hostId, retirement.closeWith, 'revoked');
    deps.presence.forgetClaims(hostId);
    deps.log.info({ host_id: hostId, by, cancelled_tasks: cancelled.length, ...retirement.logFields }, message);
  });
  return true;
}
