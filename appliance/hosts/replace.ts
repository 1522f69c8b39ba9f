import { CtOpsError } from '../../common/errors.ts';
import type { Host } from '../model/host.ts';
import { retireHost } from './delete.ts';
import type { HostDeps } from './deps.ts';
import { hostOfOrg } from './lookup.ts';

/**
 * "Approve as replacement of host X": a reimaged machine enrolled with a fresh key (held pending,
 * usually with fingerprint_conflict_with X) is approved and takes over X's record, so reimaged
 * hosts do not pile up. In one transaction: the new host becomes active with X's tags and a link
 * to X (`replaces`; its `hosts show` then includes X's events and previous names), X is soft-deleted
 * (its key retired, `replaced_by` set; its inventory and task history stay readable under its id)
 * and X's unfinished tasks are cancelled. After commit X's live stream, if any, is closed.
 * Throws ERR_HOST_NOT_FOUND for either id, ERR_HOST_STATE_CONFLICT when the new host is not pending
 * or rejected, names X itself, or already replaced a host, when X was deleted or replaced by another
 * admin meanwhile (the losing transaction changes nothing), and when X is online unless `force`: a
 * machine still streaming under X's key is not the reimaged one (a mistyped id, or two machines),
 * and replacing it would retire a working agent.
 */
export async function approveAsReplacement(deps: Pick<HostDeps, 'stores' | 'presence' | 'log'>, orgId: string, newId: string, oldId: string, by: string, now: number, force = false): Promise<Host> {
  const { stores, presence } = deps;
  // Online on any instance; read before the transaction, whose body reads only the database's rows through it.
  const oldOnline = !force && (await presence.isOnline(oldId));
  return stores.transact(async (tx) => {
    const incoming = await hostOfOrg(tx.hosts, orgId, newId);
    const old = await hostOfOrg(tx.hosts, orgId, oldId);
    if (incoming.id === old.id) throw new CtOpsError('ERR_HOST_STATE_CONFLICT', 'a host cannot replace itself', { host_id: newId });
    if (oldOnline) {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `${oldId} is online: its machine still runs under the old key; stop it first, or replace it anyway with --force`, { host_id: oldId, online: true });
    }
    if (!(await tx.hosts.decide(newId, 'active', ['pending', 'rejected'], now, by))) {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `cannot approve a host that is ${incoming.approval} as a replacement`, { host_id: newId, approval: incoming.approval });
    }
    // The old host's read above guards nothing on PostgreSQL, where another admin's replacement or
    // deletion of it may commit meanwhile: retiring it (a conditional soft delete) decides, waiting for theirs.
    const retired = await retireHost(deps, tx, oldId, now, by, 'host approved as replacement', {
      closeWith: new CtOpsError('ERR_AGENT_KEY_RETIRED', `this host was replaced by ${newId}; its key is retired`, { host_id: oldId }),
      logFields: { host_id: newId, replaces: oldId },
    });
    if (!retired) throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `${oldId} was deleted or replaced meanwhile`, { host_id: oldId });
    if (!(await tx.hosts.takeOver(newId, old))) throw new CtOpsError('ERR_HOST_STATE_CONFLICT', `${newId} already replaced another host`, { host_id: newId });
    await tx.hostEvents.record(newId, now, 'replaces', { host_id: oldId, hostname: old.hostname, by });
    // The name the admins knew the machine by joins the new host's previous names.
    if (old.hostname !== incoming.hostname) await tx.hostEvents.record(newId, now, 'renamed', { from: old.hostname, to: incoming.hostname });
    await tx.hostEvents.record(oldId, now, 'replaced-by', { host_id: newId, hostname: incoming.hostname, by });
    return (await tx.hosts.get(newId)) as Host;
  });
}
