import type { Migration } from './index.ts';

/**
 * CA rotation (appliance/pki/ca-rotation.ts): trust_generation is the generation of the trust bundle
 * the host's agent last reported holding (HeartbeatRequest.trust_generation); 0 for none, so every
 * host enrolled before it counts as not yet holding any bundle.
 */
export const migration012HostTrustGeneration: Migration = {
  version: 12,
  description: 'hosts: the trust bundle generation each agent holds',
  sql: `ALTER TABLE hosts ADD COLUMN trust_generation INTEGER NOT NULL DEFAULT 0;`,
};
