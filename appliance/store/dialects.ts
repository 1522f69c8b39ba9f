import type { Statement } from 'better-sqlite3';
import {
  Kysely, PostgresDialect, SqliteDialect, SqliteDriver, SqliteQueryCompiler, ValueNode,
  type DatabaseConnection, type Driver, type LimitNode, type OffsetNode, type OperationNode, type QueryCompiler,
} from 'kysely';
import pg from 'pg';
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

/** How long a query waits for a free pooled connection or for the server to accept one before it fails (ERR_STORAGE_UNAVAILABLE). */
export const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;

/** PostgreSQL int8 (BIGINT: times in ms, identity ids, count(*)) — pg hands it over as a string. */
const INT8_OID = 20;

/**
 * int8 as a JavaScript number. The values are ms times, ids and counts, far below 2^53; one that is
 * not exactly representable throws rather than being silently rounded.
 */
function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`a BIGINT value ${text} is beyond JavaScript's exact integers`);
  return value;
}

const POSTGRES_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface PostgresOptions {
  /** Connections kept open at most (the appliance's database_pool_size setting). */
  readonly poolSize: number;
  /** Told about an idle pooled connection the server dropped (restart, admin termination); without a listener pg would crash the process. */
  readonly onIdleConnectionError?: (error: Error) => void;
  /** Bounds on the server's waits; POSTGRES_WAIT_BOUNDS unless given (tests pass small ones). */
  readonly waitBounds?: PostgresWaitBounds;
}

/** How long one PostgreSQL wait may last, in ms, before the statement fails (ERR_STORAGE_UNAVAILABLE). */
export interface PostgresWaitBounds {
  /** Server-side statement_timeout (SQLSTATE 57014): one statement's run. */
  readonly statementMs: number;
  /** Server-side lock_timeout (SQLSTATE 55P03): one wait for a row or table lock another session holds. */
  readonly lockMs: number;
  /** Server-side idle_in_transaction_session_timeout: a transaction left open with nothing running is ended. */
  readonly idleInTransactionMs: number;
}

/**
 * Generous for the appliance's queries (the largest, a 500-row inventory upsert, takes milliseconds;
 * transactions hold row locks only across store calls), small enough that a stuck server or a
 * session holding a lock surfaces as ERR_STORAGE_UNAVAILABLE instead of a request hanging forever.
 */
export const POSTGRES_WAIT_BOUNDS: PostgresWaitBounds = { statementMs: 30_000, lockMs: 10_000, idleInTransactionMs: 60_000 };

/** pg's client-side query_timeout past the server's statement_timeout: it fires only when the server cannot answer at all (network gone silent). */
const CLIENT_QUERY_TIMEOUT_MARGIN_MS = 5_000;

/**
 * Kysely over a pg Pool for `url` (postgres://USER:PASSWORD@HOST:PORT/DATABASE; libpq's query
 * parameters such as sslmode apply). Column values come back as schema.ts declares them: BIGINT
 * parsed to number (parseInt8), BYTEA as Buffer, SMALLINT flags and INTEGER as number. No connection
 * is made until the first query. Destroying the Kysely ends the pool.
 */
export function postgresKysely(url: string, options: PostgresOptions): Kysely<Schema> {
  const bounds = options.waitBounds ?? POSTGRES_WAIT_BOUNDS;
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize,
    connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
    types: POSTGRES_TYPES,
    // TCP keep-alive: a server vanished without a FIN (host down, network cut) is noticed on idle connections.
    keepAlive: true,
    query_timeout: bounds.statementMs + CLIENT_QUERY_TIMEOUT_MARGIN_MS,
    // Session settings sent in the startup packet, so every pooled connection has them from its first query.
    options: `-c statement_timeout=${bounds.statementMs} -c lock_timeout=${bounds.lockMs} -c idle_in_transaction_session_timeout=${bounds.idleInTransactionMs}`,
  });
  pool.on('error', (error) => options.onIdleConnectionError?.(error));
  // pg-pool listens for a client's 'error' only while the client is idle; one dropped while checked
  // out (pg_terminate_backend, idle_in_transaction_session_timeout, server restart mid-transaction)
  // would emit 'error' with no listener and crash the process. The running query rejects anyway
  // (storageFailure maps it to ERR_STORAGE_UNAVAILABLE) and pg-pool discards the broken client.
  pool.on('connect', (client) => client.on('error', (error) => options.onIdleConnectionError?.(error)));
  return new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
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
