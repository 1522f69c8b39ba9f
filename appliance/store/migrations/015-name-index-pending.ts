import type { Migration } from './index.ts';

/**
 * The name index takes rows by a pending flag instead of an id high-water mark (decisions.md 128).
 * On PostgreSQL ids become visible out of order: a transaction that took id 100 may commit after
 * one that took 101, and a mark moved to 101 meanwhile never saw 100 — package search missed it.
 * software_packages.name_indexed is 0 for a row whose (name, host_id) may not be in
 * software_name_index yet, set to 1 by the indexer only where that entry exists; the insert leaves
 * the default, so the chunk upsert writes nothing more. The partial index holds only the pending
 * rows, in id order (appended like the rows themselves, unlike an index by name, 002's note).
 * Backfill: a row is indexed when its entry exists — rows the old mark skipped stay pending and
 * the next batch takes them.
 */
export const migration015NameIndexPending: Migration = {
  version: 15,
  description: 'software_packages.name_indexed: the name index takes pending rows, not ids above a mark',
  sql: `
ALTER TABLE software_packages ADD COLUMN name_indexed INTEGER NOT NULL DEFAULT 0 CHECK (name_indexed IN (0, 1));
UPDATE software_packages SET name_indexed = 1
  WHERE EXISTS (SELECT 1 FROM software_name_index i WHERE i.name = software_packages.name AND i.host_id = software_packages.host_id);
CREATE INDEX software_packages_name_pending ON software_packages(id) WHERE name_indexed = 0;
DROP TABLE software_name_index_state;
`,
};
