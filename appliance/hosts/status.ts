import type { Approval, Host } from '../store/hosts.ts';

/** What an admin sees of a host: its approval combined with its live connectivity. */
export type HostStatus = 'pending' | 'online' | 'offline' | 'never-connected' | 'rejected' | 'revoked' | 'deleted';

export interface HostStatusInputs {
  approval: Approval;
  /** The presence registry holds a live, recently heard stream for the host. */
  streaming: boolean;
  lastHeartbeatAt: number | null;
  deleted: boolean;
}

export function hostStatus({ approval, streaming, lastHeartbeatAt, deleted }: HostStatusInputs): HostStatus {
  if (deleted) return 'deleted';
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

/** Only an approved host that was not deleted may stream heartbeats, report inventory or get tasks. */
export function mayStream(host: Host): boolean {
  return host.approval === 'active' && host.deletedAt === null;
}

/** The host's state in words for an error message: its approval, or "deleted". */
export function describeHost(host: Host | undefined): string {
  if (!host) return 'unknown';
  return host.deletedAt === null ? host.approval : 'deleted';
}
