import Database from 'better-sqlite3';
import { CtOpsError, errorCodeOf } from '../../common/errors.ts';
import type { StorageFailureCode } from '../health/storage-health.ts';

/** SQLite's primary result codes that mean the storage failed, not the statement (sqlite.org/rescode.html). */
const SQLITE_FAILURES: Readonly<Record<string, StorageFailureCode>> = {
  SQLITE_FULL: 'ERR_STORAGE_FULL',
  // Growing the WAL index (-shm) failed: "may indicate that the underlying filesystem volume is out of space".
  SQLITE_IOERR_SHMSIZE: 'ERR_STORAGE_FULL',
  SQLITE_IOERR: 'ERR_STORAGE_UNAVAILABLE',
  SQLITE_READONLY: 'ERR_STORAGE_UNAVAILABLE',
  SQLITE_CANTOPEN: 'ERR_STORAGE_UNAVAILABLE',
  SQLITE_BUSY: 'ERR_STORAGE_UNAVAILABLE',
  SQLITE_LOCKED: 'ERR_STORAGE_UNAVAILABLE',
  SQLITE_CORRUPT: 'ERR_STORAGE_CORRUPT',
  SQLITE_NOTADB: 'ERR_STORAGE_CORRUPT',
};

/**
 * PostgreSQL SQLSTATEs (postgresql.org/docs/15/errcodes-appendix.html) that mean the server or its
 * storage failed, not the statement: by full code, else by class (the first two characters).
 */
const POSTGRES_FAILURES: Readonly<Record<string, StorageFailureCode>> = {
  '53100': 'ERR_STORAGE_FULL', // disk_full
  '53200': 'ERR_STORAGE_UNAVAILABLE', // out_of_memory
  '53300': 'ERR_STORAGE_UNAVAILABLE', // too_many_connections
  '08': 'ERR_STORAGE_UNAVAILABLE', // connection_exception and its subclasses
  '57P01': 'ERR_STORAGE_UNAVAILABLE', // admin_shutdown
  '57P02': 'ERR_STORAGE_UNAVAILABLE', // crash_shutdown
  '57P03': 'ERR_STORAGE_UNAVAILABLE', // cannot_connect_now (starting up, shutting down, recovering)
  '25006': 'ERR_STORAGE_UNAVAILABLE', // read_only_sql_transaction: connected to a standby
  '58030': 'ERR_STORAGE_UNAVAILABLE', // io_error
  '57014': 'ERR_STORAGE_UNAVAILABLE', // query_canceled: statement_timeout (dialects.ts POSTGRES_WAIT_BOUNDS) passed
  '55P03': 'ERR_STORAGE_UNAVAILABLE', // lock_not_available: lock_timeout passed waiting for another session's lock
  XX001: 'ERR_STORAGE_CORRUPT', // data_corrupted
  XX002: 'ERR_STORAGE_CORRUPT', // index_corrupted
};

/** Socket errors of the connection to a PostgreSQL server: it cannot be reached. */
const UNREACHABLE_SERVER = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * pg's own errors for a connection lost or never made carry no code, only these messages
 * (pg's client.js and pg-pool's index.js).
 */
const LOST_CONNECTION_MESSAGE = /^(Connection terminated|Client has encountered a connection error)/;

/**
 * pg-pool's error for a query that waited connectionTimeoutMillis for a pooled connection while
 * every one was busy (pg-pool index.js, the pending queue's timer): the pool is saturated, the server
 * may be fine. A new connection that cannot be made fails as "Connection terminated due to
 * connection timeout" instead.
 */
const POOL_BUSY_MESSAGE = 'timeout exceeded when trying to connect';

const MESSAGES: Readonly<Record<StorageFailureCode, string>> = {
  ERR_STORAGE_FULL: 'the volume holding the database is full',
  ERR_STORAGE_UNAVAILABLE: 'the database cannot be written',
  ERR_STORAGE_CORRUPT: 'the database file is damaged',
};

/** The catalogue error of a storage failure, `details` naming the backend's own code. */
export type StorageFailure = CtOpsError & { code: StorageFailureCode };

/**
 * The catalogue error for a failure of the storage itself, on either backend; undefined for anything
 * else (a constraint, a syntax error, one of our own errors).
 * - SQLite: an extended code maps as listed, else by its primary code (SQLITE_IOERR_WRITE →
 *   ERR_STORAGE_UNAVAILABLE); `details.sqlite_code` keeps the original.
 * - PostgreSQL: a SQLSTATE as listed (full code, else its class); a server that cannot be reached
 *   (socket error, pg's lost-connection errors) is ERR_STORAGE_UNAVAILABLE, and so is a saturated
 *   pool (isPoolSaturated: retryable, though the storage itself has not failed);
 *   `details.postgres_code` keeps the SQLSTATE or the socket error's code.
 * Messages never carry the connection URL (pg's errors do not contain it either).
 */
export function storageFailure(error: unknown): StorageFailure | undefined {
  if (error instanceof Database.SqliteError) {
    const code = SQLITE_FAILURES[error.code] ?? SQLITE_FAILURES[error.code.split('_', 2).join('_')];
    return code === undefined ? undefined : failure(code, error.code, { sqlite_code: error.code }, error);
  }
  const errorCode = errorCodeOf(error);
  const { message } = (error ?? {}) as { message?: unknown };
  // Socket errors first: EPIPE has the shape of a SQLSTATE.
  if (errorCode !== undefined && UNREACHABLE_SERVER.has(errorCode)) {
    return failure('ERR_STORAGE_UNAVAILABLE', `the PostgreSQL server cannot be reached: ${errorCode}`, { postgres_code: errorCode }, error);
  }
  if (errorCode !== undefined && /^[0-9A-Z]{5}$/.test(errorCode)) {
    const code = POSTGRES_FAILURES[errorCode] ?? POSTGRES_FAILURES[errorCode.slice(0, 2)];
    return code === undefined ? undefined : failure(code, `SQLSTATE ${errorCode}`, { postgres_code: errorCode }, error);
  }
  if (isPoolSaturated(error)) {
    return failure('ERR_STORAGE_UNAVAILABLE', 'every pooled database connection stayed busy past the connect timeout; raise database_pool_size or lighten the load', { postgres_code: null }, error);
  }
  if (error instanceof Error && typeof message === 'string' && LOST_CONNECTION_MESSAGE.test(message)) {
    return failure('ERR_STORAGE_UNAVAILABLE', `the PostgreSQL server cannot be reached: ${message}`, { postgres_code: null }, error);
  }
  return undefined;
}

function failure(code: StorageFailureCode, what: string, details: Record<string, string | null>, cause: unknown): StorageFailure {
  return new CtOpsError(code, `${MESSAGES[code]} (${what})`, details, { cause }) as StorageFailure;
}

/**
 * Whether `error` is pg-pool's wait for a free connection running out: load, not a failed storage,
 * so it fails the request (ERR_STORAGE_UNAVAILABLE) without marking the storage degraded.
 */
export function isPoolSaturated(error: unknown): boolean {
  return error instanceof Error && error.message === POOL_BUSY_MESSAGE;
}
