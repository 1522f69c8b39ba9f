import { Kysely, SqliteDialect } from 'kysely';
import type { Db } from './database.ts';
import type { Schema } from './schema.ts';

/** The backends the store runs on: embedded SQLite (the default) or a PostgreSQL server. */
export type DialectName = 'sqlite' | 'postgres';

/**
 * Kysely over the process's one better-sqlite3 handle (opened and migrated by openDatabase). Kysely's
 * SQLite driver serialises every query and transaction on that handle with a mutex, so a transaction
 * sees no other query of this process between its statements. Closing the Kysely closes the handle.
 */
export function sqliteKysely(db: Db): Kysely<Schema> {
  return new Kysely<Schema>({ dialect: new SqliteDialect({ database: db }) });
}
