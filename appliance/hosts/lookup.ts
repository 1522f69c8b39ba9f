import { CtOpsError } from '../../common/errors.ts';
import type { Host } from '../model/host.ts';
import type { HostStore } from '../store/hosts.ts';

/**
 * The host `hostId` of organisation `orgId`, read through `hosts` (the root store, or a
 * transaction's to guard a write in it). A deleted host counts only with `includeDeleted` (reads of
 * its history: `hosts show`, its inventory); workflows that change a host never see one. Throws
 * ERR_HOST_NOT_FOUND otherwise — the one answer for a host of another organisation and an unknown id,
 * so an id of another organisation is not told apart from a missing one.
 */
export async function hostOfOrg(hosts: HostStore, orgId: string, hostId: string, options: { includeDeleted?: boolean } = {}): Promise<Host> {
  const host = await hosts.get(hostId);
  if (!host || host.orgId !== orgId || (host.deletedAt !== null && options.includeDeleted !== true)) {
    throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${hostId}`, { host_id: hostId });
  }
  return host;
}
