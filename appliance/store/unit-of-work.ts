import { sql, type Kysely } from 'kysely';
import { CtOpsError, errorCodeOf } from '../../common/errors.ts';
import type { DialectName } from './dialects.ts';
import type { Schema } from './schema.ts';

/** What a store runs its queries on: the database, or an open transaction (Kysely's Transaction is a Kysely). */
export type Executor = Kysely<Schema>;

/**
 * Something a workflow decided that happens outside the database (close a stream, push a task to a
 * connected agent, tell another instance): queued during the transaction with `afterCommit` and run
 * only once it committed — never for a rolled-back one.
 */
export type Effect = () => void | Promise<void>;

/** The handle a transaction body gets: stores bound to the open transaction, and the effect queue. */
export type TransactionScope<TableStores> = TableStores & {
  /** Queues an effect to run, in queue order, after the transaction commits. */
  afterCommit(effect: Effect): void;
};

/** How often a transaction body runs at most when PostgreSQL aborts it for a deadlock or a serialization failure. */
const TRANSACTION_ATTEMPTS = 3;

/** PostgreSQL SQLSTATEs (class 40, transaction rollback) after which the same transaction may succeed when run again. */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

function mustRetry(error: unknown): boolean {
  const code = errorCodeOf(error);
  return code !== undefined && RETRYABLE_SQLSTATES.has(code);
}

/**
 * Runs `body` in one transaction on `database`
 * with the stores `bind` builds over the transaction, commits, then runs the queued effects in order
 * and resolves with body's result. A body that throws rolls back and its effects are dropped. An
 * effect that throws is reported to `onEffectFailure` and the rest still run: the transaction is
 * committed, so its outcome stands.
 *
 * SQLite: the body holds the one connection, so other queries of this process wait for it. A body
 * must therefore only await its store calls — no network, file or timer waits, and never a store of
 * the database (outside the transaction), which would wait for the connection the body holds: on
 * SQLite it fails after SQLITE_CONNECTION_WAIT_MS (dialects.ts), on PostgreSQL it runs outside the
 * transaction's isolation. Short bodies are also what keeps PostgreSQL's row locks short.
 *
 * PostgreSQL may abort a transaction that did nothing wrong: a deadlock between two transactions
 * locking the same rows in opposite order (40P01), or a serialization failure (40001). The body then
 * runs again from the start, up to TRANSACTION_ATTEMPTS times in all (docs/decisions.md 97): a body
 * only reads and writes through its stores and queues its effects, so a rolled-back attempt left
 * nothing behind. SQLite serialises transactions and never reports either.
 */
export async function runTransaction<TableStores, T>(
  database: Executor,
  bind: (transaction: Executor) => TableStores,
  body: (scope: TransactionScope<TableStores>) => Promise<T>,
  onEffectFailure: (error: unknown) => void,
): Promise<T> {
  let effects: Effect[] = [];
  let result: T;
  for (let attempt = 1; ; attempt += 1) {
    // A retried body starts over with no effects: those of the rolled-back attempt never happened.
    effects = [];
    try {
      result = await database.transaction().execute((transaction) => body({ ...bind(transaction), afterCommit: (effect: Effect) => void effects.push(effect) }));
      break;
    } catch (error) {
      if (attempt >= TRANSACTION_ATTEMPTS || !mustRetry(error)) throw error;
    }
  }
  await runEffects(effects, onEffectFailure);
  return result;
}

/**
 * Runs a committed transaction's effects in queue order; one that throws is reported to
 * `onEffectFailure` and the rest still run. Also for effects a workflow hands back to its caller
 * (TaskService.report), which runs them once it answered its peer.
 */
export async function runEffects(effects: readonly Effect[], onEffectFailure: (error: unknown) => void): Promise<void> {
  for (const effect of effects) {
    try {
      await effect();
    } catch (error) {
      onEffectFailure(error);
    }
  }
}

/**
 * Runs `work` atomically on `executor`: directly when it already is a transaction (the caller's
 * transaction then covers it), else in a transaction of its own. For a store method whose statements
 * must commit together (a prune and the watermark it raises) whether or not its caller opened one.
 */
export function atomically<T>(executor: Executor, work: (transaction: Executor) => Promise<T>): Promise<T> {
  return executor.isTransaction ? work(executor) : executor.transaction().execute(work);
}

/**
 * Makes the transactions that call it with the same `key` run their decision one after the other,
 * until `transaction` commits or rolls back. For a decision on rows that may not exist yet (no
 * other host of this machine fingerprint; fewer than N claimants): there is no row to lock, and
 * under PostgreSQL's READ COMMITTED two transactions would each see the other's row absent.
 * PostgreSQL: pg_advisory_xact_lock on hashtextextended(key, 0), a 64-bit hash (two keys sharing a
 * hash only wait for each other). SQLite: nothing to do, its one writer serialises transactions.
 * Throws ERR_INTERNAL when `transaction` is not a transaction (the lock would end with the statement).
 */
export async function serialiseOn(transaction: Executor, dialect: DialectName, key: string): Promise<void> {
  if (!transaction.isTransaction) throw new CtOpsError('ERR_INTERNAL', 'serialiseOn needs an open transaction', { key });
  if (dialect === 'postgres') await sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(transaction);
}
