import type { Migration } from './index.ts';

/**
 * The name index takes the rows it has not seen from a pending list instead of ids above a mark
 * (decisions.md 128). On PostgreSQL ids become visible out of order: a transaction that took id 100
 * may commit after one that took 101, and a mark moved to 101 meanwhile never saw 100 — package
 * search missed it. software_name_pending gets (name, host_id) of every inserted package row from
 * a trigger, in the inserting statement and transaction: the chunk upsert stays one statement, and
 * an update of a row (same name and host) adds nothing. The indexer copies pending pairs into
 * software_name_index, then deletes the pending pairs whose entry exists; a pair committed while it
 * ran stays for the next batch. SQLite fires a row trigger (an append to a rowid table, no extra
 * statement); PostgreSQL's is per statement, over the statement's inserted rows.
 * Backfill: the pairs of rows the index lacks — those the old mark skipped — are pending.
 */
export const migration015NameIndexPending: Migration = {
  version: 15,
  description: 'software_name_pending: the name index takes the pairs inserted since, not ids above a mark',
  sql: `
CREATE TABLE software_name_pending (
  name     TEXT NOT NULL,
  host_id  TEXT NOT NULL
);
CREATE TRIGGER software_packages_name_pending AFTER INSERT ON software_packages
BEGIN
  INSERT INTO software_name_pending (name, host_id) VALUES (NEW.name, NEW.host_id);
END;
INSERT INTO software_name_pending (name, host_id)
  SELECT DISTINCT name, host_id FROM software_packages p
  WHERE NOT EXISTS (SELECT 1 FROM software_name_index i WHERE i.name = p.name AND i.host_id = p.host_id);
DROP TABLE software_name_index_state;
`,
};
