import { migration024ConsoleIndexes } from '../024-console-indexes.ts';
import { mirroring } from './mirroring.ts';

// NULLS FIRST: host-page.ts orders hosts never heard from lowest, as SQLite does; a descending page scans it backwards.
export const postgresMigration024ConsoleIndexes = mirroring(
  migration024ConsoleIndexes,
  `
CREATE INDEX hosts_org_hostname ON hosts(org_id, lower(hostname), id) WHERE deleted_at IS NULL;
CREATE INDEX hosts_org_last_seen ON hosts(org_id, last_heartbeat_at ASC NULLS FIRST, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_org_host_created ON tasks(org_id, host_id, created_at, id);
`,
);
