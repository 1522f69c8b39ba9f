import type { Approval } from '../store/hosts.ts';

/** What an admin sees of a host: its approval combined with its live connectivity. */
export type HostStatus = 'pending' | 'online' | 'offline' | 'never-connected' | 'rejected' | 'revoked';

export interface HostStatusInputs {
  approval: Approval;
  /** The presence registry holds a live, recently heard stream for the host. */
  streaming: boolean;
  lastHeartbeatAt: number | null;
}

export function hostStatus({ approval, streaming, lastHeartbeatAt }: HostStatusInputs): HostStatus {
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
