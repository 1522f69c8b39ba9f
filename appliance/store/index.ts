import { AdminCredentialStore } from './admin-credentials.ts';
import { openDatabase, type Db } from './database.ts';
import { EnrolmentTokenStore } from './enrolment-tokens.ts';
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
  /** Runs fn in one transaction (no await inside: better-sqlite3 transactions are synchronous). */
  transaction<T>(fn: () => T): T;
  close(): void;
}

export function openStores(path: string): Stores {
  const db = openDatabase(path);
  return {
    db,
    organisations: new OrganisationStore(db),
    enrolmentTokens: new EnrolmentTokenStore(db),
    hosts: new HostStore(db),
    vitals: new HostVitalsStore(db),
    registerNonces: new RegisterNonceStore(db),
    adminCredentials: new AdminCredentialStore(db),
    softwareInventory: new SoftwareInventoryStore(db),
    tasks: new TaskStore(db),
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),
    close: () => db.close(),
  };
}

export type { Approval, Host } from './hosts.ts';
export type { EnrolmentToken, Tags } from './enrolment-tokens.ts';
export type { Task, TaskOutcome } from './tasks.ts';
