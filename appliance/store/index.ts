import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { failureFields, StorageHealth } from '../health/storage-health.ts';
import { AdminCredentialStore } from './admin-credentials.ts';
import { AgentReleaseStore } from './agent-releases.ts';
import { AuditEventStore } from './audit-events.ts';
import { ApplianceInstanceStore } from './appliance-instances.ts';
import { openDatabase, type Db } from './database.ts';
import { isPoolSaturated, storageFailure } from './storage-failure.ts';
import { EnrolmentTokenStore } from './enrolment-tokens.ts';
import { HostClaimantStore } from './host-claimants.ts';
import { HostUpdateStore } from './host-updates.ts';
import { HostTrustStore } from './host-trust.ts';
import { HostEventStore } from './host-events.ts';
import { HostVitalsStore } from './host-vitals.ts';
import { keepStatementsPrepared, sqliteKysely, type DialectName } from './dialects.ts';
import { migratePostgres, probePostgresWrite } from './postgres-migrate.ts';
import { HostStore } from './hosts.ts';
import { InstallBundleStore } from './install-bundles.ts';
import { OrganisationStore } from './organisations.ts';
import { RegisterNonceStore } from './register-nonces.ts';
import { RolloutStore } from './rollouts.ts';
import { SoftwareInventoryStore } from './software-inventory.ts';
import type { Schema } from './schema.ts';
import { TaskStore } from './tasks.ts';
import { WalCheckpointer } from './wal-checkpointer.ts';
import { runTransaction, type Executor, type TransactionScope } from './unit-of-work.ts';

/** The stores of every table, each over one executor (the database, or an open transaction). */
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
  /** The imported agent releases. */
  readonly releases: AgentReleaseStore;
  /** Agent update rollouts with their groups. */
  readonly rollouts: RolloutStore;
  /** Each host's latest agent update and the versions blocked for it. */
  readonly hostUpdates: HostUpdateStore;
  /** Leases and which instance holds each host's stream (in a transaction: the lost-stream pass). */
  readonly instances: ApplianceInstanceStore;
  /** Admin actions and security events (the audit log). */
  readonly auditEvents: AuditEventStore;
  /** The install bundles built, and the hosts that claim each. */
  readonly installBundles: InstallBundleStore;
}

/**
 * The connections of a PostgreSQL appliance's own pool for its lease and the pass locks
 * (ApplianceInstanceStore): a renewal, a host list's online query and the three passes' locks at once.
 */
const CLUSTER_POOL_SIZE = 5;

/** Every store over one database (a SQLite file or a PostgreSQL pool), the only one this process opens. */
export interface Stores extends TableStores {
  readonly dialect: DialectName;
  /**
   * The serving instances' leases, which instance holds each host's stream, advisory locks and
   * NOTIFY, through a pool of its own on PostgreSQL (a lease is renewed while the main pool is busy).
   */
  readonly instances: ApplianceInstanceStore;
  /** The database's Kysely. */
  readonly kysely: Executor;
  /** Whether writes succeed now (degraded after a storage failure until a write probe succeeds). */
  readonly health: StorageHealth;
  /**
   * Runs `body` in one transaction with the stores bound to it (use only those inside), commits, then
   * runs the effects body queued with `scope.afterCommit` (unit-of-work.ts runTransaction). Rejects with
   * ERR_STORAGE_FULL / ERR_STORAGE_UNAVAILABLE / ERR_STORAGE_CORRUPT when the storage fails, the
   * commit included (on SQLite nothing of body was stored then; on PostgreSQL a connection lost
   * during COMMIT leaves the outcome unknown, so callers retrying such a failure must be idempotent);
   * a failing effect is logged, not thrown.
   */
  transact<T>(body: (scope: TransactionScope<TableStores>) => Promise<T>): Promise<T>;
  /** One real write now; rejects with the storage failure (as above) when the database cannot take it. */
  checkWritable(): Promise<void>;
  /** Stops the health probe and closes the database (SQLite checkpoints the WAL into the file; PostgreSQL's pool ends). */
  close(): Promise<void>;
}

/** The stores of a SQLite file, with its better-sqlite3 handle for what reads the file itself (tests, tools on a stopped appliance). */
export interface SqliteStores extends Stores {
  readonly db: Db;
}

/**
 * Opens the database and its stores. Every store method and transaction maps a failure of the
 * storage (SQLite FULL, IOERR, READONLY, CANTOPEN, BUSY, LOCKED, CORRUPT, NOTADB) to its catalogue
 * code and marks `health` degraded, so no caller sees a raw SqliteError for those. `migrate: false` (a
 * tool on a stopped appliance's database) refuses a schema that is not the latest instead of upgrading it.
 * `checkpointThread` (the serving appliance): the WAL is checkpointed from a worker thread, never in a
 * commit on this thread (WalCheckpointer, decision 155); without it SQLite checkpoints in the commit
 * that passes 1,000 WAL pages, which suits a tool that opens the stores for a moment.
 */
export function openStores(path: string, options: { log?: Logger; migrate?: boolean; checkpointThread?: boolean } = {}): SqliteStores {
  const db = keepStatementsPrepared(openDatabase(path, undefined, { migrate: options.migrate ?? true }));
  const database: Kysely<Schema> = sqliteKysely(db);
  // Through Kysely, so the probe waits for the one connection instead of writing into another caller's
  // open transaction (better-sqlite3 would make it a savepoint there, a success that commits nothing).
  const probe = (): Promise<void> => database.transaction().execute(probeSqliteWrite);
  // The one connection's mutex: no query runs while the checkpointer holds it.
  const holdWrites = (during: () => Promise<void>): Promise<void> => database.connection().execute(during);
  const checkpointer = options.checkpointThread ? new WalCheckpointer(db, path, holdWrites, options.log) : undefined;
  const close = async (): Promise<void> => {
    // The thread's connection first: the serving one, closing last, checkpoints the whole WAL and removes it.
    // Without a thread the handle closes before close() returns, as callers that go on at once expect.
    if (checkpointer !== undefined) await checkpointer.close();
    db.close();
  };
  return { ...assembleStores(database, 'sqlite', probe, options.log, close), db };
}

/**
 * Opens a PostgreSQL database (`url`: postgres://USER:PASSWORD@HOST:PORT/DATABASE), migrates it to
 * the latest schema (migratePostgres: one instance at a time, under an advisory lock) and returns its
 * stores over a pool of at most `poolSize` connections. Throws ERR_STORAGE_UNAVAILABLE when the
 * server cannot be reached (within POSTGRES_CONNECT_TIMEOUT_MS) or refuses, ERR_SCHEMA_TOO_NEW for a
 * newer schema. Nothing of the URL is logged or put in an error (the password).
 */
export async function openPostgresStores(url: string, options: { log?: Logger; poolSize: number }): Promise<Stores> {
  const onIdleConnectionError = (error: Error): void => options.log?.warn(failureFields(storageFailure(error) ?? error), 'an idle PostgreSQL connection failed');
  const { postgresKysely } = await import('./postgres-dialect.ts');
  const database = postgresKysely(url, { poolSize: options.poolSize, onIdleConnectionError });
  try {
    await migratePostgres(database);
  } catch (error) {
    await database.destroy();
    throw storageFailure(error) ?? error;
  }
  // Leases and pass locks on connections of their own: request load cannot starve a lease renewal
  // (the instance would be taken for dead), and a pass holding its lock connection still gets one
  // from the main pool for its work, whatever database_pool_size is.
  const cluster = postgresKysely(url, { poolSize: CLUSTER_POOL_SIZE, onIdleConnectionError });
  return assembleStores(database, 'postgres', () => probePostgresWrite(database), options.log, async () => {
    await Promise.all([database.destroy(), cluster.destroy()]);
  }, cluster);
}

/** One real write that changes nothing, in the caller's transaction: PRAGMA user_version rewritten with its own value. */
async function probeSqliteWrite(transaction: Executor): Promise<void> {
  const { rows } = await sql<{ user_version: number }>`PRAGMA user_version`.execute(transaction);
  await sql.raw(`PRAGMA user_version = ${rows[0]!.user_version}`).execute(transaction);
}

/**
 * The backend-neutral part of Stores over `database` (the backend's Kysely): the
 * top-level stores guarded for storage failures, and transactions whose stores are not (the whole
 * transaction is, once). `probe` is one real write; `closeDatabase` releases the backend;
 * `instancesDatabase` serves ApplianceInstanceStore (the same database through its own pool on PostgreSQL).
 */
function assembleStores(database: Kysely<Schema>, dialect: DialectName, probe: () => Promise<void>, log: Logger | undefined, closeDatabase: () => Promise<void>, instancesDatabase?: Kysely<Schema>): Stores {
  const health = new StorageHealth(probe, log);
  const unguarded = (executor: Executor): TableStores => tableStores(executor, dialect, (store) => store);
  return {
    ...tableStores(database, dialect, (store) => guardStorage(store, health)),
    dialect,
    instances: guardStorage(new ApplianceInstanceStore(instancesDatabase ?? database, dialect), health),
    kysely: database,
    health,
    transact: <T>(body: (scope: TransactionScope<TableStores>) => Promise<T>): Promise<T> =>
      withStorageFailures(health, () =>
        runTransaction(database, unguarded, body, (error) => log?.error({ err: error }, 'an effect after commit failed')),
      ),
    checkWritable: () => withStorageFailures(health, probe),
    close: async () => {
      health.close();
      await closeDatabase();
    },
  };
}

/**
 * The table stores over `executor`.
 */
function tableStores(executor: Executor, dialect: DialectName, guard: <T extends object>(store: T) => T): TableStores {
  return {
    organisations: guard(new OrganisationStore(executor)),
    enrolmentTokens: guard(new EnrolmentTokenStore(executor)),
    hosts: guard(new HostStore(executor, dialect)),
    vitals: guard(new HostVitalsStore(executor)),
    registerNonces: guard(new RegisterNonceStore(executor)),
    adminCredentials: guard(new AdminCredentialStore(executor)),
    softwareInventory: guard(new SoftwareInventoryStore(executor, dialect)),
    tasks: guard(new TaskStore(executor)),
    hostEvents: guard(new HostEventStore(executor)),
    hostClaimants: guard(new HostClaimantStore(executor, dialect)),
    hostTrust: guard(new HostTrustStore(executor)),
    releases: guard(new AgentReleaseStore(executor)),
    rollouts: guard(new RolloutStore(executor)),
    hostUpdates: guard(new HostUpdateStore(executor)),
    instances: guard(new ApplianceInstanceStore(executor, dialect)),
    auditEvents: guard(new AuditEventStore(executor)),
    installBundles: guard(new InstallBundleStore(executor)),
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
    // A saturated pool is load: the request fails retryable, the storage is not reported degraded.
    if (!isPoolSaturated(error)) health.failed(failure);
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

export type { Approval, Host, HostClaimant, HostEvent, HostEventKind, HostFactsUpdate, HostTrust } from '../model/host.ts';
export type { EnrolmentToken, Tags } from '../model/enrolment.ts';
export type { Task, TaskOutcome } from '../model/task.ts';
export type { AgentRelease, ReleaseFile } from '../model/release.ts';
export type { GroupSelector, HostUpdate, Rollout, RolloutGroup, RolloutState, UpdatePhase } from '../model/rollout.ts';
export type { Effect, Executor, TransactionScope } from './unit-of-work.ts';
export type { HostPackageRecord, PackageInput, ScanStatus, SoftwarePackageRecord, SoftwareScan } from '../model/inventory.ts';
