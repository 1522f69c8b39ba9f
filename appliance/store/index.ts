import type { Logger } from 'pino';
import { StorageHealth } from '../health/storage-health.ts';
import { AdminCredentialStore } from './admin-credentials.ts';
import { openDatabase, probeWrite, storageFailure, type Db } from './database.ts';
import { EnrolmentTokenStore } from './enrolment-tokens.ts';
import { HostClaimantStore } from './host-claimants.ts';
import { HostTrustStore } from './host-trust.ts';
import { HostEventStore } from './host-events.ts';
import { HostVitalsStore } from './host-vitals.ts';
import { HostStore } from './hosts.ts';
import { OrganisationStore } from './organisations.ts';
import { RegisterNonceStore } from './register-nonces.ts';
import { SoftwareInventoryStore } from './software-inventory.ts';
import { TaskStore } from './tasks.ts';

/** Every store over one database handle, the only one this process opens. */
export interface Stores {
  readonly db: Db;
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
  /** Whether writes succeed now (degraded after a storage failure until a write probe succeeds). */
  readonly health: StorageHealth;
  /**
   * Runs fn in one transaction (no await inside: better-sqlite3 transactions are synchronous).
   * Throws ERR_STORAGE_FULL / ERR_STORAGE_UNAVAILABLE / ERR_STORAGE_CORRUPT when the storage fails,
   * the commit included: nothing of fn was stored then.
   */
  transaction<T>(fn: () => T): T;
  /** One real write now; throws the storage failure (as above) when the database cannot take it. */
  checkWritable(): void;
  /** Stops the health probe and closes the database (SQLite checkpoints the WAL into the file). */
  close(): void;
}

/**
 * Opens the database and its stores. Every store method and transaction maps a failure of the
 * storage (SQLite FULL, IOERR, READONLY, CANTOPEN, BUSY, LOCKED, CORRUPT, NOTADB) to its catalogue
 * code and marks `health` degraded, so no caller sees a raw SqliteError for those.
 */
export function openStores(path: string, options: { log?: Logger } = {}): Stores {
  const db = openDatabase(path);
  const health = new StorageHealth(() => probeWrite(db), options.log);
  const guard = <T extends object>(store: T): T => guardStorage(store, health);
  return {
    db,
    health,
    organisations: guard(new OrganisationStore(db)),
    enrolmentTokens: guard(new EnrolmentTokenStore(db)),
    hosts: guard(new HostStore(db)),
    vitals: guard(new HostVitalsStore(db)),
    registerNonces: guard(new RegisterNonceStore(db)),
    adminCredentials: guard(new AdminCredentialStore(db)),
    softwareInventory: guard(new SoftwareInventoryStore(db)),
    tasks: guard(new TaskStore(db)),
    hostEvents: guard(new HostEventStore(db)),
    hostClaimants: guard(new HostClaimantStore(db)),
    hostTrust: guard(new HostTrustStore(db)),
    transaction: <T>(fn: () => T): T => withStorageFailures(health, () => db.transaction(fn)()),
    checkWritable: () => withStorageFailures(health, () => probeWrite(db)),
    close: () => {
      health.close();
      db.close();
    },
  };
}

/** Runs fn; a storage failure leaves as its catalogue error and marks health degraded. */
function withStorageFailures<T>(health: StorageHealth, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    const failure = storageFailure(error);
    if (failure === undefined) throw error;
    health.failed(failure);
    throw failure;
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
export type { Task, TaskOutcome } from './tasks.ts';
