import type { Migration } from './index.ts';

/**
 * A package's identity includes its architecture (issue 9, §3): libc6 amd64 and libc6 i386 at the
 * same version are two installations, and were one row under UNIQUE (host_id, name, version, source).
 * SQLite cannot change a table's UNIQUE constraint, so software_packages is rebuilt with the wider
 * key: every row is copied with its id (the name index and its high-water mark refer to ids), and
 * the AUTOINCREMENT counter is carried over, so an id is never handed out twice. Existing rows were
 * unique under the narrower key, hence under the wider one.
 *
 * software_scans.skipped: the packages of a scan that could not be stored, as a JSON array of
 * {reason, count, example} (common/inventory-records.ts), counted instead of failing the scan.
 */
export const migration008PackageArchitecture: Migration = {
  version: 8,
  description: 'software inventory: architecture in the package key; skipped packages counted per scan',
  sql: `
ALTER TABLE software_scans ADD COLUMN skipped TEXT NOT NULL DEFAULT '[]';

CREATE TABLE software_packages_008 (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  name            TEXT NOT NULL,
  version         TEXT NOT NULL,
  source          TEXT NOT NULL,
  architecture    TEXT NOT NULL,
  publisher       TEXT NOT NULL,
  install_date    INTEGER,
  first_seen      INTEGER NOT NULL,
  last_seen       INTEGER NOT NULL,
  last_seen_scan  INTEGER NOT NULL,
  prior_scan      INTEGER,
  is_removed      INTEGER NOT NULL DEFAULT 0 CHECK (is_removed IN (0, 1)),
  removed_at      INTEGER,
  CHECK ((is_removed = 1) = (removed_at IS NOT NULL)),
  UNIQUE (host_id, name, version, source, architecture)
);
INSERT INTO software_packages_008 (id, host_id, name, version, source, architecture, publisher, install_date, first_seen, last_seen, last_seen_scan, prior_scan, is_removed, removed_at)
  SELECT id, host_id, name, version, source, architecture, publisher, install_date, first_seen, last_seen, last_seen_scan, prior_scan, is_removed, removed_at
  FROM software_packages;
DELETE FROM sqlite_sequence WHERE name = 'software_packages_008';
INSERT INTO sqlite_sequence (name, seq) SELECT 'software_packages_008', seq FROM sqlite_sequence WHERE name = 'software_packages';
DROP TABLE software_packages;
ALTER TABLE software_packages_008 RENAME TO software_packages;
`,
};
