import { Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection } from 'kysely';
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
  return new Kysely<Schema>({ dialect: new KeepingTheFailureSqliteDialect(db) });
}

/**
 * SQLite rolls a transaction back by itself on some failures (SQLITE_FULL or IOERR in a statement or
 * in COMMIT); Kysely's ROLLBACK after that fails with "no transaction is active", and that error
 * would replace the storage failure the caller must see (ERR_STORAGE_FULL, not a refused report).
 * So the rollback is skipped when the handle has no transaction left.
 */
class KeepingTheFailureSqliteDialect extends SqliteDialect {
  readonly #db: Db;

  constructor(db: Db) {
    super({ database: db });
    this.#db = db;
  }

  override createDriver(): SqliteDriver {
    const db = this.#db;
    return new (class extends SqliteDriver {
      override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
        if (db.inTransaction) await super.rollbackTransaction(connection);
      }
    })({ database: db });
  }
}
