import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { failureFields, StorageHealth } from '../health/storage-health.ts';
import { AdminCredentialStore } from './admin-credentials.ts';
import { openDatabase, probeWrite, type Db } from './database.ts';
import { storageFailure } from './storage-failure.ts';
import { EnrolmentTokenStore } from './enrolment-tokens.ts';
import { HostClaimantStore } from './host-claimants.ts';
import { HostTrustStore } from './host-trust.ts';
import { HostEventStore } from './host-events.ts';
import { HostVitalsStore } from './host-vitals.ts';
import { postgresKysely, sqliteKysely, type DialectName } from './dialects.ts';
import { migratePostgres } from './postgres-migrate.ts';
import { HostStore } from './hosts.ts';
import { OrganisationStore } from './organisations.ts';
import { RegisterNonceStore } from './register-nonces.ts';
import { SoftwareInventoryStore } from './software-inventory.ts';
import type { Schema } from './schema.ts';
import { TaskStore } from './tasks.ts';
import { refuseQueriesOutsideTheTransaction, runTransaction, type Executor, type TransactionScope } from './unit-of-work.ts';

/**
 * The stores of every table, each over one executor (the database, or an open transaction). A store
 * converted to Kysely is built over the executor; the remaining better-sqlite3 stores use the one
 * handle, which on SQLite is the connection any open transaction runs on.
 */
export interface TableStores {
  readonly organisations: OrganisationStore;
  readonly enrolmentTokens: EnrolmentTokenStore;
  readonly hosts: HostStore;
  readonly vitals: HostVitalsStore;
  readonly registerNonces: RegisterNonceStore;
  readonly adminCredentials: AdminCredentialStore;
  readonly softwareInventory: SoftwareInventoryStore;
  readonly tasks: TaskStore;
  readonly hostEvents: HostEventStore;
  readonly hostClaimants: HostClaimantStore;
  readonly hostTrust: HostTrustStore;
}

/** Every store over one database handle, the only one this process opens. */
export interface Stores extends TableStores {
  readonly db: Db;
  readonly dialect: DialectName;
  /** The database's Kysely; refuses queries while a transaction body of this process runs (unit-of-work.ts). */
  readonly kysely: Executor;
  /** Whether writes succeed now (degraded after a storage failure until a write probe succeeds). */
  readonly health: StorageHealth;
  /**
   * Runs fn in one transaction (no await inside: better-sqlite3 transactions are synchronous).
   * Throws ERR_STORAGE_FULL / ERR_STORAGE_UNAVAILABLE / ERR_STORAGE_CORRUPT when the storage fails,
   * the commit included: nothing of fn was stored then.
   */
  transaction<T>(fn: () => T): T;
  /**
   * Runs `body` in one transaction with the stores bound to it (use only those inside), commits, then
   * runs the effects body queued with `scope.afterCommit` (unit-of-work.ts runTransaction). Rejects with
   * ERR_STORAGE_* as `transaction` does; a failing effect is logged, not thrown. On PostgreSQL a
   * connection lost during COMMIT leaves the outcome unknown (the rejection does not prove nothing was
   * stored): callers retrying such a failure must be idempotent.
   */
  transact<T>(body: (scope: TransactionScope<TableStores>) => Promise<T>): Promise<T>;
  /** One real write now; throws the storage failure (as above) when the database cannot take it. */
  checkWritable(): void;
  /** Stops the health probe and closes the database (SQLite checkpoints the WAL into the file). */
  close(): void;
}

/**
 * Opens the database and its stores. Every store method and transaction maps a failure of the
 * storage (SQLite FULL, IOERR, READONLY, CANTOPEN, BUSY, LOCKED, CORRUPT, NOTADB) to its catalogue
 * code and marks `health` degraded, so no caller sees a raw SqliteError for those. `migrate: false` (a
 * tool on a stopped appliance's database) refuses a schema that is not the latest instead of upgrading it.
 */
export function openStores(path: string, options: { log?: Logger; migrate?: boolean } = {}): Stores {
  const db = openDatabase(path, undefined, { migrate: options.migrate ?? true });
  const health = new StorageHealth(() => probeWrite(db), options.log);
  const guard = <T extends object>(store: T): T => guardStorage(store, health);
  const database: Kysely<Schema> = sqliteKysely(db);
  const bind = (executor: Executor): TableStores => tableStores(db, executor, guard);
  return {
    ...bind(database.withPlugin(refuseQueriesOutsideTheTransaction)),
    db,
    dialect: 'sqlite',
    kysely: database.withPlugin(refuseQueriesOutsideTheTransaction),
    health,
    transaction: <T>(fn: () => T): T => withStorageFailures(health, () => db.transaction(fn)()),
    transact: <T>(body: (scope: TransactionScope<TableStores>) => Promise<T>): Promise<T> =>
      withStorageFailures(health, () =>
        runTransaction(database, bind, body, (error) => options.log?.error({ err: error }, 'an effect after commit failed')),
      ),
    checkWritable: () => withStorageFailures(health, () => probeWrite(db)),
    close: () => {
      health.close();
      db.close();
    },
  };
}

/**
 * The table stores that still take the better-sqlite3 handle instead of an Executor: PostgreSQL
 * cannot serve them. Empty once every store is on Kysely; then openPostgresStores returns the stores.
 */
const STORES_ON_THE_SQLITE_HANDLE: readonly (keyof TableStores)[] = [
  'organisations', 'enrolmentTokens', 'hosts', 'vitals', 'registerNonces', 'adminCredentials', 'softwareInventory', 'hostEvents', 'hostClaimants', 'hostTrust',
];

/**
 * Opens a PostgreSQL database (`url`: postgres://USER:PASSWORD@HOST:PORT/DATABASE) and migrates it
 * to the latest schema (migratePostgres: one instance at a time, under an advisory lock). Throws
 * ERR_STORAGE_UNAVAILABLE when the server cannot be reached (within POSTGRES_CONNECT_TIMEOUT_MS) or
 * refuses, ERR_SCHEMA_TOO_NEW for a newer schema, and — until every table store is built over an
 * Executor — ERR_CONFIG_INVALID naming the stores that still need the SQLite handle, after migrating.
 * Nothing of the URL is logged or put in an error (the password).
 */
export async function openPostgresStores(url: string, options: { log?: Logger; poolSize: number }): Promise<Stores> {
  const database = postgresKysely(url, {
    poolSize: options.poolSize,
    onIdleConnectionError: (error) => options.log?.warn(failureFields(storageFailure(error) ?? error), 'an idle PostgreSQL connection failed'),
  });
  try {
    await migratePostgres(database).catch((error: unknown) => {
      throw storageFailure(error) ?? error;
    });
    throw new CtOpsError('ERR_CONFIG_INVALID', `this build cannot serve on PostgreSQL yet: the stores ${STORES_ON_THE_SQLITE_HANDLE.join(', ')} still run on the SQLite handle (appliance/store/index.ts tableStores); the database was migrated to the latest schema`, { stores: STORES_ON_THE_SQLITE_HANDLE.join(',') });
  } catch (error) {
    await database.destroy();
    throw error;
  }
}

/**
 * The table stores over `executor` (the Kysely stores: tasks); the better-sqlite3 stores share `db`,
 * the connection every SQLite transaction runs on.
 */
function tableStores(db: Db, executor: Executor, guard: <T extends object>(store: T) => T): TableStores {
  return {
    organisations: guard(new OrganisationStore(db)),
    enrolmentTokens: guard(new EnrolmentTokenStore(db)),
    hosts: guard(new HostStore(db)),
    vitals: guard(new HostVitalsStore(db)),
    registerNonces: guard(new RegisterNonceStore(db)),
    adminCredentials: guard(new AdminCredentialStore(db)),
    softwareInventory: guard(new SoftwareInventoryStore(db)),
    tasks: guard(new TaskStore(executor)),
    hostEvents: guard(new HostEventStore(db)),
    hostClaimants: guard(new HostClaimantStore(db)),
    hostTrust: guard(new HostTrustStore(db)),
  };
}

/**
 * Runs fn; a storage failure leaves as its catalogue error and marks health degraded — thrown by fn,
 * or the rejection of the promise fn returns (an async store method, a transaction).
 */
function withStorageFailures<T>(health: StorageHealth, fn: () => T): T {
  const mapFailure = (error: unknown): never => {
    const failure = storageFailure(error);
    if (failure === undefined) throw error;
    health.failed(failure);
    throw failure;
  };
  try {
    const result = fn();
    return (result instanceof Promise ? result.catch(mapFailure) : result) as T;
  } catch (error) {
    return mapFailure(error);
  }
}

/** The store with every method run through withStorageFailures: one boundary for every table's module. */
function guardStorage<T extends object>(store: T, health: StorageHealth): T {
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => withStorageFailures(health, () => (value as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}

export type { Approval, Host, HostFactsUpdate } from './hosts.ts';
export type { HostEvent, HostEventKind } from './host-events.ts';
export type { HostClaimant } from './host-claimants.ts';
export type { HostTrust } from './host-trust.ts';
export type { EnrolmentToken, Tags } from './enrolment-tokens.ts';
export type { Task, TaskOutcome } from '../model/task.ts';
export type { Effect, Executor, TransactionScope } from './unit-of-work.ts';
