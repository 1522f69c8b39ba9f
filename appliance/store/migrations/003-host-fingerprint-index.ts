import type { Migration } from './index.ts';

/**
 * The clone check (HostStore.findLiveByFingerprint) filters on org and fingerprint and takes the
 * earliest host; the planner preferred (org_id, enrolled_at) and walked every host of the
 * organisation on each new enrolment (found by bench:core). One index serves filter and order.
 */
export const migration003HostFingerprintIndex: Migration = {
  version: 3,
  description: 'index hosts by (org_id, machine_fingerprint, enrolled_at) for the clone check',
  sql: `
DROP INDEX hosts_org_fingerprint;
CREATE INDEX hosts_org_fingerprint ON hosts(org_id, machine_fingerprint, enrolled_at);
`,
};
