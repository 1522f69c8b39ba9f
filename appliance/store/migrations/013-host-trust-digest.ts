import type { Migration } from './index.ts';

/**
 * trust_digest: hex SHA-256 of the trust bundle the host's agent last reported holding
 * (HeartbeatRequest.trust_digest); '' for none. A host holds the appliance's bundle when the digests
 * are equal: a generation alone can repeat once a data directory is restored (decisions.md 77).
 */
export const migration013HostTrustDigest: Migration = {
  version: 13,
  description: 'hosts: the digest of the trust bundle each agent holds',
  sql: `ALTER TABLE hosts ADD COLUMN trust_digest TEXT NOT NULL DEFAULT '';`,
};
