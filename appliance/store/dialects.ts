import { Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver } from 'kysely';
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
  return new Kysely<Schema>({ dialect: new SqliteDialectKeepingFailures(db) });
}

/** SqliteDialect whose driver rolls back only a transaction SQLite still holds open. */
class SqliteDialectKeepingFailures extends SqliteDialect {
  readonly #db: Db;

  constructor(db: Db) {
    super({ database: db });
    this.#db = db;
  }

  override createDriver(): Driver {
    return new SqliteDriverKeepingFailures(this.#db);
  }
}

/**
 * SQLite rolls a transaction back by itself when a statement or the COMMIT fails with SQLITE_FULL,
 * IOERR, BUSY or NOMEM (sqlite.org/lang_transaction.html, "Response To Errors Within A
 * Transaction"). Kysely's driver then sends ROLLBACK anyway, which fails ("no transaction is
 * active") and replaces the storage failure with that error, so the store could no longer map it to
 * ERR_STORAGE_*. Rolling back only what is still open keeps the original failure.
 */
class SqliteDriverKeepingFailures extends SqliteDriver {
  readonly #db: Db;

  constructor(db: Db) {
    super({ database: db });
    this.#db = db;
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.#db.inTransaction) await super.rollbackTransaction(connection);
  }
}
