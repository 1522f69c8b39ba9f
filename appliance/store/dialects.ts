import type { Statement } from 'better-sqlite3';
import {
  Kysely, SqliteDialect, SqliteDriver, SqliteQueryCompiler, ValueNode,
  type DatabaseConnection, type Driver, type LimitNode, type OffsetNode, type OperationNode, type QueryCompiler,
} from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import type { Db } from './database.ts';
import type { Schema } from './schema.ts';

/** The backends the store runs on: embedded SQLite (the default) or a PostgreSQL server. */
export type DialectName = 'sqlite' | 'postgres';

/**
 * Kysely over the process's one better-sqlite3 handle (opened and migrated by openDatabase). Every
 * query and transaction takes that handle in turn (SqliteDriverKeepingFailures), so a transaction
 * sees no other query of this process between its statements. Closing the Kysely closes the handle.
 * `connectionWaitMs` bounds a wait for the handle (SQLITE_CONNECTION_WAIT_MS unless a test says).
 */
export function sqliteKysely(db: Db, options: { connectionWaitMs?: number } = {}): Kysely<Schema> {
  return new Kysely<Schema>({ dialect: new SqliteDialectKeepingFailures(db, options.connectionWaitMs ?? SQLITE_CONNECTION_WAIT_MS) });
}

/**
 * The longest a query or transaction waits for the one SQLite handle (ms) before it fails with
 * ERR_INTERNAL. Transactions only await their own statements (store/unit-of-work.ts), so the handle
 * is held for microseconds to a few milliseconds and the longest queue drains far sooner; a wait
 * this long means a transaction body waits for a query outside it (a store of the database used
 * inside a transaction), which would otherwise hang both for ever.
 */
export const SQLITE_CONNECTION_WAIT_MS = 10_000;

/**
 * Kysely's SQLite compiler, writing LIMIT and OFFSET counts into the SQL text (`LIMIT 1`, not
 * `LIMIT ?`) when they are non-negative safe integers (others stay bound parameters). Kysely binds
 * every value, and a bound LIMIT made each run of a statement cost about as much as preparing it
 * again: measured on this build (SQLite 3.51, SQLITE_ENABLE_STAT4, under which SQLite recompiles a
 * statement whose bound values may change its plan: sqlite.org/c3ref/prepare.html),
 * `SELECT * FROM hosts … LIMIT ?` 72–88 µs against 11 µs with `LIMIT 1`, and a 4-column lookup
 * 16 µs against 5 µs. The counts are the stores' constants or validated page sizes: a few texts.
 */
class SqliteCompilerInliningRowCounts extends SqliteQueryCompiler {
  protected override visitLimit(node: LimitNode): void {
    this.append('limit ');
    this.#count(node.limit);
  }

  protected override visitOffset(node: OffsetNode): void {
    this.append('offset ');
    this.#count(node.offset);
  }

  #count(node: OperationNode): void {
    if (ValueNode.is(node) && Number.isSafeInteger(node.value) && (node.value as number) >= 0) this.append(String(node.value));
    else this.visitNode(node);
  }
}

/** SqliteDialect with SqliteDriverKeepingFailures, and a compiler that writes row counts as literals. */
class SqliteDialectKeepingFailures extends SqliteDialect {
  readonly #db: Db;
  readonly #connectionWaitMs: number;

  constructor(db: Db, connectionWaitMs: number) {
    super({ database: db });
    this.#db = db;
    this.#connectionWaitMs = connectionWaitMs;
  }

  override createDriver(): Driver {
    return new SqliteDriverKeepingFailures(this.#db, this.#connectionWaitMs);
  }

  override createQueryCompiler(): QueryCompiler {
    return new SqliteCompilerInliningRowCounts();
  }
}

/**
 * Kysely's SQLite driver with two changes.
 *
 * The handle is handed to waiters in arrival order, one at a time. Kysely's own lock wakes every
 * waiter at each release and all but one wait again, so under a registration or reconnect storm
 * (hundreds of flows waiting) each query cost a wake-up per waiter. A wait longer than
 * `connectionWaitMs` fails with ERR_INTERNAL (SQLITE_CONNECTION_WAIT_MS says why).
 *
 * SQLite rolls a transaction back by itself when a statement or the COMMIT fails with SQLITE_FULL,
 * IOERR, BUSY or NOMEM (sqlite.org/lang_transaction.html, "Response To Errors Within A
 * Transaction"). Kysely's driver then sends ROLLBACK anyway, which fails ("no transaction is
 * active") and replaces the storage failure with that error, so the store could no longer map it to
 * ERR_STORAGE_*. Rolling back only what is still open keeps the original failure.
 */
class SqliteDriverKeepingFailures extends SqliteDriver {
  readonly #db: Db;
  readonly #connectionWaitMs: number;
  #connection: DatabaseConnection | undefined;
  #held = false;
  readonly #waiting: Array<{ grant: () => void }> = [];

  constructor(db: Db, connectionWaitMs: number) {
    super({ database: db });
    this.#db = db;
    this.#connectionWaitMs = connectionWaitMs;
  }

  override async init(): Promise<void> {
    await super.init();
    // Kysely's driver keeps its one connection private: taken once through its own lock, then handed out here.
    this.#connection = await super.acquireConnection();
    await super.releaseConnection();
  }

  override acquireConnection(): Promise<DatabaseConnection> {
    const connection = this.#connection as DatabaseConnection;
    if (!this.#held) {
      this.#held = true;
      return Promise.resolve(connection);
    }
    return new Promise<DatabaseConnection>((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve(connection);
        },
      };
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        reject(new CtOpsError('ERR_INTERNAL', `waited ${this.#connectionWaitMs} ms for the database connection; is a store of the database used inside a transaction (use the transaction scope's stores)?`, { waited_ms: this.#connectionWaitMs }));
      }, this.#connectionWaitMs);
      this.#waiting.push(waiter);
    });
  }

  override async releaseConnection(): Promise<void> {
    const next = this.#waiting.shift();
    if (next) next.grant();
    else this.#held = false;
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.#db.inTransaction) await super.rollbackTransaction(connection);
  }
}


/**
 * Statements kept prepared, least recently used dropped first: more than the stores' query shapes
 * (a chunk's upsert has one shape per row count, 500 at most in use).
 */
const PREPARED_STATEMENTS = 512;

/**
 * The handle with each SQL text prepared once and the statement reused. Kysely's SQLite driver
 * prepares every query it runs, and preparing a chunk's 500-row upsert (5,000 bound values) cost a
 * third of bench:inventory. Safe because this process runs one
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
