import type { Migration } from './index.ts';

/**
 * When an admin resolved a host's identity conflict (ms since the epoch; NULL unless
 * hosts.identity_state is 'resolved'). A resolution ends when every retired machine has
 * re-enrolled, or after IDENTITY_RESOLUTION_MAX_MS (appliance/hosts/identity.ts) whatever is left:
 * a machine that never comes back must not keep the host's judgement bent for good.
 */
export const migration010IdentityResolvedAt: Migration = {
  version: 10,
  description: 'when an identity conflict was resolved',
  sql: `ALTER TABLE hosts ADD COLUMN identity_resolved_at INTEGER;`,
};
