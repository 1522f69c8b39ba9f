import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Approval, Host, Stores } from '../store/index.ts';

export type HostDecision = 'approve' | 'reject' | 'revoke';

/** Each decision: the approval it leads to and the approvals it may start from. */
const TRANSITIONS: Record<HostDecision, { to: Approval; from: readonly Approval[] }> = {
  approve: { to: 'active', from: ['pending', 'rejected'] },
  reject: { to: 'rejected', from: ['pending'] },
  revoke: { to: 'revoked', from: ['pending', 'active'] },
};

export interface DecideDeps {
  stores: Stores;
  presence: PresenceRegistry;
  log: Logger;
}

/**
 * Applies an admin's decision. Revoking also closes the host's live stream at once;
 * an approved pending agent becomes active on its next Register poll.
 */
export async function decideHost(deps: DecideDeps, orgId: string, hostId: string, decision: HostDecision, by: string, now: number): Promise<Host> {
  const host = deps.stores.hosts.get(hostId);
  if (!host || host.orgId !== orgId || host.deletedAt !== null) throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${hostId}`, { host_id: hostId });
  const { to, from } = TRANSITIONS[decision];
  const cancelledTasks = await deps.stores.transact(async (tx) => {
    if (!(await tx.hosts.decide(hostId, to, from, now, by))) {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot ${decision} a host that is ${host.approval}`, { host_id: hostId, approval: host.approval });
    }
    // A host that may no longer stream can never run its queued or running tasks.
    return to === 'active' ? [] : tx.tasks.cancelForHost(hostId, now, 'ERR_AGENT_NOT_ACTIVE');
  });
  deps.log.info({ host_id: hostId, decision, by, cancelled_tasks: cancelledTasks.length }, 'host decision');
  if (decision === 'revoke') {
    deps.presence.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host was revoked'), 'revoked');
  }
  return deps.stores.hosts.get(hostId) as Host;
}
