import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { migrate, openDatabase } from '../../appliance/store/database.ts';
import { sqliteKysely, type DialectName } from '../../appliance/store/dialects.ts';
import { postgresKysely } from '../../appliance/store/postgres-dialect.ts';
import { MIGRATIONS } from '../../appliance/store/migrations/index.ts';
import { POSTGRES_MIGRATIONS } from '../../appliance/store/migrations/postgres/index.ts';
import { migratePostgres, postgresSchemaVersion } from '../../appliance/store/postgres-migrate.ts';
import type { Schema } from '../../appliance/store/schema.ts';
import { sharedPostgres } from './postgres.ts';

/** A live column as the backend reports it after migrating. */
export interface LiveColumn {
  readonly name: string;
  readonly nullable: boolean;
  /** The declared type as the backend names it, upper case: SQLite's affinity name (INTEGER, TEXT, REAL, BLOB; '' for a view's computed column), PostgreSQL's data_type (BIGINT, TEXT, DOUBLE PRECISION, BYTEA …). */
  readonly type: string;
}

/** One opened, migrated database of a backend, for one test. */
export interface OpenBackend {
  readonly name: DialectName;
  /** The database's Kysely: store classes are built over it. */
  readonly kysely: Kysely<Schema>;
  /** Applies the backend's migrations up to `version` (the latest when omitted); resolves with the version reached. */
  migrateTo(version?: number): Promise<number>;
  /** The schema version the database records (SQLite PRAGMA user_version, PostgreSQL schema_version). */
  schemaVersion(): Promise<number>;
  /** Every table's and view's columns in declaration order, by table name; the backends' own bookkeeping tables left out. */
  columns(): Promise<Map<string, LiveColumn[]>>;
  /** Closes the connection(s) and removes the database (SQLite: its temp directory; PostgreSQL: the pool — the cluster is per test file). */
  close(): Promise<void>;
}

export interface StoreBackend {
  readonly name: DialectName;
  /** A fresh empty database migrated to `schemaVersion` (default: the latest). */
  open(schemaVersion?: number): Promise<OpenBackend>;
}

let databases = 0;

const sqliteBackend: StoreBackend = {
  name: 'sqlite',
  open: async (schemaVersion = MIGRATIONS.length): Promise<OpenBackend> => {
    const dir = mkdtempSync(join(tmpdir(), 'ct-ops-conformance-'));
    const db = openDatabase(join(dir, 'appliance.db'), MIGRATIONS.slice(0, schemaVersion));
    const kysely = sqliteKysely(db);
    return {
      name: 'sqlite',
      kysely,
      migrateTo: async (version = MIGRATIONS.length) => migrate(db, MIGRATIONS.slice(0, version)),
      schemaVersion: async () => db.pragma('user_version', { simple: true }) as number,
      columns: async () => {
        const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
        return new Map(tables.map((table) => [table, (db.pragma(`table_info(${table})`) as { name: string; type: string; notnull: number; pk: number }[])
          // SQLite lets a non-INTEGER PRIMARY KEY column hold NULL unless declared NOT NULL; the schema's keys never are NULL.
          .map((column) => ({ name: column.name, nullable: column.notnull === 0 && column.pk === 0, type: column.type.toUpperCase() }))]));
      },
      close: async () => {
        await kysely.destroy();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgresBackend: StoreBackend = {
  name: 'postgres',
  open: async (schemaVersion = POSTGRES_MIGRATIONS.length): Promise<OpenBackend> => {
    const cluster = await sharedPostgres();
    databases += 1;
    const url = await cluster.createDatabase(`conformance_${process.pid}_${databases}`);
    const kysely = postgresKysely(url, { poolSize: 4 });
    const migrateTo = (version = POSTGRES_MIGRATIONS.length): Promise<number> => migratePostgres(kysely, POSTGRES_MIGRATIONS.slice(0, version));
    await migrateTo(schemaVersion);
    return {
      name: 'postgres',
      kysely,
      migrateTo,
      schemaVersion: () => postgresSchemaVersion(kysely),
      columns: async () => {
        const { rows } = await sql<{ table_name: string; column_name: string; is_nullable: 'YES' | 'NO'; data_type: string }>`
          SELECT table_name, column_name, is_nullable, data_type FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name <> 'schema_version'
          ORDER BY table_name, ordinal_position`.execute(kysely);
        const tables = new Map<string, LiveColumn[]>();
        for (const row of rows) {
          const columns = tables.get(row.table_name) ?? [];
          // A view's columns are all reported nullable, as SQLite's PRAGMA table_info reports them.
          columns.push({ name: row.column_name, nullable: row.is_nullable === 'YES', type: row.data_type.toUpperCase() });
          tables.set(row.table_name, columns);
        }
        return new Map([...tables].sort(([a], [b]) => (a < b ? -1 : 1)));
      },
      close: () => kysely.destroy(),
    };
  },
};

/** Every backend the store runs on. PostgreSQL's databases live on this test file's private cluster (test/helpers/postgres.ts). */
export function backends(): readonly StoreBackend[] {
  return [sqliteBackend, postgresBackend];
}

/**
 * Declares one test per backend, named "<title> [sqlite]" / "[postgres]", each on a fresh database
 * at the latest schema, closed afterwards. A conformance behaviour is one call:
 *   conformance('a single-use token admits one of 20 racing agents', async (backend) => { … });
 */
export function conformance(title: string, behaviour: (backend: OpenBackend) => Promise<void>, options: { timeout?: number } = {}): void {
  for (const backend of backends()) {
    test(`${title} [${backend.name}]`, { timeout: options.timeout ?? 60_000 }, async () => {
      const opened = await backend.open();
      try {
        await behaviour(opened);
      } finally {
        await opened.close();
      }
    });
  }
}

/**
 * Runs `first` in a transaction up to `hold` (its read done), starts `second` in another, then lets
 * the first finish and commit: under PostgreSQL's READ COMMITTED the second's read runs while the
 * first's write is not yet committed, unless a lock makes it wait (store/unit-of-work.ts serialiseOn).
 */
export async function interleaved<T>(backend: OpenBackend, first: (tx: OpenBackend['kysely'], hold: () => Promise<void>) => Promise<void>, second: (tx: OpenBackend['kysely']) => Promise<T>): Promise<T> {
  let held!: () => void;
  const reachedHold = new Promise<void>((resolve) => (held = resolve));
  const firstDone = backend.kysely.transaction().execute((tx) => first(tx, async () => {
    held();
    // Long enough for the second transaction to reach its read (on SQLite it waits for the connection).
    await sleep(300);
  }));
  await reachedHold;
  const secondDone = backend.kysely.transaction().execute(second);
  await firstDone;
  return secondDone;
}
