import type { Approval, Host } from '../store/hosts.ts';

/** What an admin sees of a host: its approval combined with its live connectivity. */
export const HOST_STATUSES = ['pending', 'online', 'offline', 'never-connected', 'rejected', 'revoked', 'deleted', 'identity-conflict'] as const;
export type HostStatus = (typeof HOST_STATUSES)[number];

export interface HostStatusInputs {
  approval: Approval;
  /** The presence registry holds a live, recently heard stream for the host. */
  streaming: boolean;
  lastHeartbeatAt: number | null;
  deleted: boolean;
  /** Two machines use the host's key (hosts.identity_state 'conflict'): shown before connectivity. */
  identityConflict?: boolean;
}

export function hostStatus({ approval, streaming, lastHeartbeatAt, deleted, identityConflict = false }: HostStatusInputs): HostStatus {
  if (deleted) return 'deleted';
  if (identityConflict && approval === 'active') return 'identity-conflict';
  switch (approval) {
    case 'pending':
    case 'rejected':
    case 'revoked':
      return approval;
    case 'active':
      if (streaming) return 'online';
      return lastHeartbeatAt === null ? 'never-connected' : 'offline';
  }
}

/** The status of a stored host, given whether a live instance holds its stream (PresenceService "online"). */
export function statusOfHost(host: Host, online: boolean): HostStatus {
  return hostStatus({ approval: host.approval, streaming: online, lastHeartbeatAt: host.lastHeartbeatAt, deleted: host.deletedAt !== null, identityConflict: host.identityState === 'conflict' });
}

/** Only an approved host that was not deleted may stream heartbeats, report inventory or get tasks. */
export function mayStream(host: Host): boolean {
  return host.approval === 'active' && host.deletedAt === null;
}

/**
 * The one answer to "may this host be given work or have its inventory written?": it may stream,
 * and no second machine is using its key (a flagged host's tasks and inventory are held until an
 * admin resolves it, so neither machine's data lands on the other's record).
 */
export function mayReceiveWork(host: Host): boolean {
  return mayStream(host) && host.identityState !== 'conflict';
}

/** The host's state in words for an error message: its approval, or "deleted". */
export function describeHost(host: Host | undefined): string {
  if (!host) return 'unknown';
  return host.deletedAt === null ? host.approval : 'deleted';
}
