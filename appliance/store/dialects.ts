import type { Statement } from 'better-sqlite3';
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

/**
 * Statements kept prepared, least recently used dropped first: more than the stores' query shapes
 * (a chunk's upsert has one shape per row count, 500 at most in use).
 */
const PREPARED_STATEMENTS = 512;

/**
 * The handle with each SQL text prepared once and the statement reused. Kysely's SQLite driver
 * prepares every query it runs, and preparing a chunk's 500-row upsert (5,000 bound values) cost a
 * third of bench:inventory; the better-sqlite3 stores, built anew for each transaction while they
 * remain, prepare all their statements in their constructors. Safe because this process runs one
 * statement at a time on its one connection and reads results whole (all, get, run: nothing
 * iterates a statement while another query could run it). A statement's mode is shared with its
 * SQL text: a store that sets one (pluck) owns SQL no other caller writes.
 */
export function keepStatementsPrepared(db: Db): Db {
  const prepared = new Map<string, Statement>();
  const prepare = (sql: string): Statement => {
    let statement = prepared.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      if (prepared.size >= PREPARED_STATEMENTS) prepared.delete(prepared.keys().next().value as string);
    } else {
      prepared.delete(sql);
    }
    prepared.set(sql, statement);
    return statement;
  };
  return new Proxy(db, {
    get(target, property) {
      if (property === 'prepare') return prepare;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
