import { Kysely, SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely';
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
  return new Kysely<Schema>({ dialect: new SqliteDialect({ database: withPreparedStatements(db) }) });
}

/**
 * Statements kept prepared, least recently used dropped first. Enough for every query shape of
 * the stores (a chunk's upsert has one shape per row count, 500 at most in use).
 */
const PREPARED_STATEMENTS = 512;

/**
 * The handle as Kysely's SQLite driver uses it, with each SQL text prepared once: the driver
 * prepares every query it runs, and preparing cost a third of bench:inventory's time (a chunk's
 * 500-row upsert is 5,000 bound values). Safe because the driver runs one statement at a time on
 * the one connection and reads results whole (all/run); the stores use no streaming query, which
 * would hold a statement open while another query ran it.
 */
function withPreparedStatements(db: Db): SqliteDatabase {
  const prepared = new Map<string, SqliteStatement>();
  return {
    close: () => db.close(),
    prepare(sql: string): SqliteStatement {
      let statement = prepared.get(sql);
      if (statement === undefined) {
        statement = db.prepare(sql);
        if (prepared.size >= PREPARED_STATEMENTS) prepared.delete(prepared.keys().next().value as string);
      } else {
        prepared.delete(sql);
      }
      prepared.set(sql, statement);
      return statement;
    },
  };
}
