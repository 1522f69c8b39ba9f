/**
 * Kysely over PostgreSQL (pg). A module of its own, imported only where PostgreSQL is configured
 * (`import()`): loading pg costs a start on SQLite about 15 ms of CPU (its runtime probe builds a
 * fetch Response, which loads undici), spent before the agents' port listens (issue 14).
 */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Schema } from './schema.ts';

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
