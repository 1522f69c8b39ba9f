import { CtOpsError } from '../../common/errors.ts';
import type { Approval, Host } from '../model/host.ts';
import type { HostDeps } from './deps.ts';
import { hostOfOrg } from './lookup.ts';

export type HostDecision = 'approve' | 'reject' | 'revoke';

/** Each decision: the approval it leads to and the approvals it may start from. */
const TRANSITIONS: Record<HostDecision, { to: Approval; from: readonly Approval[] }> = {
  approve: { to: 'active', from: ['pending', 'rejected'] },
  reject: { to: 'rejected', from: ['pending'] },
  revoke: { to: 'revoked', from: ['pending', 'active'] },
};

/**
 * Applies an admin's decision (`now` ms since the epoch) in one transaction: the approval moves,
 * and a host that may no longer stream has its unfinished tasks cancelled. After commit a revoked
 * host's live stream is closed; an approved pending agent becomes active on its next Register poll.
 * Throws ERR_HOST_NOT_FOUND, ERR_HOST_STATE_CONFLICT (the decision does not apply to its approval).
 */
export async function decideHost(deps: HostDeps, orgId: string, hostId: string, decision: HostDecision, by: string, now: number): Promise<Host> {
  const { to, from } = TRANSITIONS[decision];
  return deps.stores.transact(async (tx) => {
    await hostOfOrg(tx.hosts, orgId, hostId);
    if (!(await tx.hosts.decide(hostId, to, from, now, by))) {
      // Read again: on PostgreSQL another instance may have decided or deleted the host since (ERR_HOST_NOT_FOUND then).
      const current = await hostOfOrg(tx.hosts, orgId, hostId);
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot ${decision} a host that is ${current.approval}`, { host_id: hostId, approval: current.approval });
    }
    // A host that may no longer stream can never run its queued or running tasks.
    const cancelledTasks = to === 'active' ? [] : await tx.tasks.cancelForHost(hostId, now, 'ERR_AGENT_NOT_ACTIVE');
    tx.afterCommit(() => {
      deps.log.info({ host_id: hostId, decision, by, cancelled_tasks: cancelledTasks.length }, 'host decision');
      if (decision === 'revoke') deps.presence.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host was revoked'), 'revoked');
    });
    return (await tx.hosts.get(hostId)) as Host;
  });
}
