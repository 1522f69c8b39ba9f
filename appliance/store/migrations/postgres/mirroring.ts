import type { Migration } from '../index.ts';

/**
 * The PostgreSQL counterpart of a SQLite migration: the same version and description (so both
 * backends number and describe one schema history alike), PostgreSQL's DDL. Types: BIGINT for ms
 * times and ids, BYTEA for keys, DOUBLE PRECISION for REAL, SMALLINT 0/1 flags with SQLite's CHECKs,
 * identity columns for AUTOINCREMENT; every table the same columns in the same order as on SQLite
 * (test/store-conformance.test.ts compares them).
 */
export function mirroring(sqlite: Migration, sql: string): Migration {
  return { version: sqlite.version, description: sqlite.description, sql };
}
