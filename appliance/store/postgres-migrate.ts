import { sql, type Kysely } from 'kysely';
import { CtOpsError, errorCodeOf } from '../../common/errors.ts';
import { checkMigrationOrder } from './database.ts';
import type { Migration } from './migrations/index.ts';
import { POSTGRES_MIGRATIONS } from './migrations/postgres/index.ts';
import type { Schema } from './schema.ts';
import { refuseNewerSchema } from './schema-version.ts';

/**
 * The advisory lock every migrating instance takes (transaction-scoped): a 64-bit key of our own,
 * 'CTOPSMIG' in ASCII, so no other application's lock on the same server collides by accident.
 */
export const MIGRATION_LOCK_KEY = 0x43544f50534d4947n;

/**
 * How long an instance waits for another's migration lock before it gives up, in ms: a migration
 * of a large database (a new constraint over software_packages) may run for minutes of statements,
 * each its own transaction, so a wait for one is bounded generously; the statements themselves run
 * without statement_timeout.
 */
export const MIGRATION_LOCK_WAIT_MS = 120_000;

/** The schema's version on PostgreSQL: one row (id 1), 0 before any migration. SQLite keeps PRAGMA user_version instead. */
type VersionTable = {
  schema_version: { id: number; version: number };
};
type Migrating = Kysely<Schema & VersionTable>;

/**
 * Brings a PostgreSQL database to the latest schema: each pending migration in its own transaction,
 * which first takes MIGRATION_LOCK_KEY and re-reads the version, so two instances starting at once
 * apply each migration once (the second waits, then finds it applied). Resolves with the latest
 * version. Throws ERR_INTERNAL for a list not numbered 1, 2, 3, … (checkMigrationOrder),
 * ERR_SCHEMA_TOO_NEW when the database is past the latest version this appliance knows,
 * ERR_STORAGE_UNAVAILABLE when another instance held the lock longer than `lockWaitMs`; a failing
 * migration rolls back alone and rejects with the server's error (earlier ones stay applied).
 */
export async function migratePostgres(database: Kysely<Schema>, migrations: readonly Migration[] = POSTGRES_MIGRATIONS, lockWaitMs = MIGRATION_LOCK_WAIT_MS): Promise<number> {
  checkMigrationOrder(migrations);
  const underMigrationLock = <T>(body: (transaction: Migrating) => Promise<T>): Promise<T> => withMigrationLock(database, lockWaitMs, body);
  const current = await underMigrationLock(async (transaction) => {
    // Created under the lock: two instances' CREATE TABLE IF NOT EXISTS could otherwise both try.
    await sql`CREATE TABLE IF NOT EXISTS schema_version (id SMALLINT PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)`.execute(transaction);
    await transaction.insertInto('schema_version').values({ id: 1, version: 0 }).onConflict((conflict) => conflict.column('id').doNothing()).execute();
    return schemaVersion(transaction);
  });
  const latest = refuseNewerSchema(current, migrations);
  for (const migration of migrations.filter((candidate) => candidate.version > current)) {
    await underMigrationLock(async (transaction) => {
      if ((await schemaVersion(transaction)) >= migration.version) return; // another instance applied it meanwhile
      // Several statements in one simple-protocol query (no parameters), as the migration is written.
      await sql.raw(migration.sql).execute(transaction);
      await transaction.updateTable('schema_version').set({ version: migration.version }).where('id', '=', 1).execute();
    });
  }
  return latest;
}

/** The schema version recorded in the database (0 when none: not yet migrated, or no schema_version table). */
export async function postgresSchemaVersion(database: Kysely<Schema>): Promise<number> {
  const table = await sql<{ present: boolean }>`SELECT to_regclass('schema_version') IS NOT NULL AS present`.execute(database);
  if (table.rows[0]?.present !== true) return 0;
  return schemaVersion(database.withTables<VersionTable>());
}

async function withMigrationLock<T>(database: Kysely<Schema>, lockWaitMs: number, body: (transaction: Migrating) => Promise<T>): Promise<T> {
  return database.withTables<VersionTable>().transaction().execute(async (transaction) => {
    // SET LOCAL takes no parameters; both values are integers of ours. A migration's DDL may outlast
    // the pool's statement_timeout on a large database, so it is lifted for this transaction only.
    await sql.raw(`SET LOCAL lock_timeout = ${Math.trunc(lockWaitMs)}; SET LOCAL statement_timeout = 0`).execute(transaction);
    try {
      await sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`.execute(transaction);
    } catch (error) {
      if (errorCodeOf(error) !== '55P03') throw error;
      throw new CtOpsError('ERR_STORAGE_UNAVAILABLE', `another instance has held the schema migration lock for over ${lockWaitMs} ms; is one stuck migrating this database?`, { postgres_code: '55P03' }, { cause: error });
    }
    return body(transaction);
  });
}

/**
 * One real write that changes nothing (the storage health probe, the start's writability check):
 * throws the driver's error when the server cannot take a write.
 */
export async function probePostgresWrite(database: Kysely<Schema>): Promise<void> {
  await sql`UPDATE schema_version SET version = version`.execute(database);
}

async function schemaVersion(executor: Migrating): Promise<number> {
  const row = await executor.selectFrom('schema_version').select('version').where('id', '=', 1).executeTakeFirst();
  return row?.version ?? 0;
}
