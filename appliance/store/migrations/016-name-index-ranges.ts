import type { Migration } from './index.ts';

/**
 * The name index's pending list holds, per chunk, the range of package ids that chunk inserted for
 * its host, instead of one (name, host_id) pair per inserted row (decisions.md 130). The pair list
 * came from a row trigger: an extra row written, copied and deleted for every package of a first
 * scan, which cost SQLite's first scan about a fifth of its throughput (bench:inventory, paired runs).
 * A range row is written by the chunk in its own transaction, so it becomes visible exactly when the
 * rows it covers do — the property that makes it safe on PostgreSQL, where ids commit out of order.
 * The pairs still pending are indexed here; the trigger and the pair list go.
 */
export const migration016NameIndexRanges: Migration = {
  version: 16,
  description: 'software_name_pending_ranges: the name index takes the id ranges each chunk inserted, not a pair per row',
  sql: `
INSERT INTO software_name_index (name, host_id)
  SELECT DISTINCT name, host_id FROM software_name_pending WHERE true ORDER BY name, host_id
  ON CONFLICT (name, host_id) DO NOTHING;
DROP TRIGGER software_packages_name_pending;
DROP TABLE software_name_pending;
CREATE TABLE software_name_pending_ranges (
  host_id   TEXT NOT NULL,
  first_id  INTEGER NOT NULL,
  last_id   INTEGER NOT NULL,
  CHECK (first_id <= last_id)
);
`,
};
