import type { Migration } from './index.ts';

/**
 * Indexes for the console's pages (issue 13; measured by `npm run bench:console`, docs/BENCHMARKS.md):
 * - the hosts list's default order (hostname, case-blind) and its last-heartbeat order, so a page is
 *   read in order instead of sorting every live host of the organisation (20,000 hosts, page 399:
 *   p95 324 ms before, 8 ms after);
 * - a host's tasks newest first, so the host page does not walk the whole organisation's task history
 *   (30 tasks per host: p95 292 ms before, 2 ms after).
 * The host-page order's NULLS FIRST is SQLite's own rule for ascending order.
 */
export const migration024ConsoleIndexes: Migration = {
  version: 24,
  description: "indexes for the console's host list orders and a host's tasks",
  sql: `
CREATE INDEX hosts_org_hostname ON hosts(org_id, lower(hostname), id) WHERE deleted_at IS NULL;
CREATE INDEX hosts_org_last_seen ON hosts(org_id, last_heartbeat_at, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_org_host_created ON tasks(org_id, host_id, created_at, id);
`,
};
