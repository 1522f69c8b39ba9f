import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql, type Kysely } from 'kysely';
import { CtOpsError } from '../common/errors.ts';
import { constraintViolation, type ConstraintKind } from '../appliance/store/constraint-violation.ts';
import { postgresKysely } from '../appliance/store/postgres-dialect.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { POSTGRES_MIGRATIONS } from '../appliance/store/migrations/postgres/index.ts';
import { MIGRATION_LOCK_KEY, migratePostgres, postgresSchemaVersion } from '../appliance/store/postgres-migrate.ts';
import type { Schema } from '../appliance/store/schema.ts';
import { storageFailure } from '../appliance/store/storage-failure.ts';
import { runTransaction, type Executor, type TransactionScope } from '../appliance/store/unit-of-work.ts';
import { sharedPostgres, startPostgres } from './helpers/postgres.ts';
import { backends, conformance, type LiveColumn } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const LATEST = MIGRATIONS.length;
/** A time in ms past 2^32 and a key of 32 bytes: what BIGINT and BYTEA must carry unchanged. */
const AT = 1_764_000_000_123;
const KEY = Buffer.alloc(32, 7);

/**
 * The SQLite INTEGER columns that may stay 32-bit (INTEGER) or 16-bit (SMALLINT) on PostgreSQL: each
 * holds a value that cannot outgrow 2^31 — a count bounded by the work it counts, a 0/1 flag, or the
 * constant id of a one-row table. Every other SQLite INTEGER holds ms, an id or a size and must be
 * BIGINT: a 32-bit column there overflows (22003) long after the tests pass (hosts.trust_generation did).
 */
const SMALL_INTEGER_COLUMNS = new Map<string, 'INTEGER' | 'SMALLINT'>([
  // Counts: uses of one token, chunks/packages of one scan, delivery attempts of one task, successors allowed by an operator.
  ['enrolment_tokens.max_uses', 'INTEGER'], ['enrolment_tokens.uses', 'INTEGER'],
  ['software_scans.chunks', 'INTEGER'], ['software_scans.packages_received', 'INTEGER'], ['software_scans.added', 'INTEGER'],
  ['software_scans.removed', 'INTEGER'], ['software_scans.unchanged', 'INTEGER'],
  ['tasks.attempts', 'INTEGER'], ['hosts.identity_successors_allowed', 'INTEGER'],
  // A heartbeat interval in seconds, bounded by the agent's configuration checks.
  ['hosts.heartbeat_interval_secs', 'INTEGER'],
  // A rollout group's place among its rollout's few groups, and its threshold in percent (CHECK 1..100).
  ['rollout_groups.position', 'INTEGER'], ['rollout_groups.success_percent', 'INTEGER'],
  // An HTTP status (CHECK 100..599).
  ['audit_events.status', 'SMALLINT'],
  // 0/1 flags.
  ['enrolment_tokens.auto_approve', 'SMALLINT'], ['admin_users.must_change_password', 'SMALLINT'], ['software_packages.is_removed', 'SMALLINT'],
  // The constant id (= 1) of one-row tables.
  ['register_nonce_watermark.id', 'INTEGER'],
]);

/** A view's computed columns, which SQLite leaves untyped, with the PostgreSQL type their values need. */
const UNTYPED_VIEW_COLUMNS = new Map([
  ['host_last_inventory.last_inventory_at', 'BIGINT'], // MAX of ms times
]);

/** The PostgreSQL data_type a column of SQLite's declared type must have (see SMALL_INTEGER_COLUMNS for INTEGER). */
function postgresTypeFor(table: string, column: LiveColumn): string {
  if (column.type === 'INTEGER') {
    return SMALL_INTEGER_COLUMNS.get(`${table}.${column.name}`) ?? 'BIGINT';
  }
  if (column.type === '') return UNTYPED_VIEW_COLUMNS.get(`${table}.${column.name}`) ?? '(an untyped view column: add it to UNTYPED_VIEW_COLUMNS)';
  return ({ REAL: 'DOUBLE PRECISION', BLOB: 'BYTEA', TEXT: 'TEXT' } as Record<string, string>)[column.type] ?? `(no rule for SQLite ${column.type || 'untyped'})`;
}

describe('migrations', () => {
  test('every PostgreSQL migration mirrors the SQLite one of its version: same numbers, same descriptions', () => {
    assert.deepEqual(
      POSTGRES_MIGRATIONS.map(({ version, description }) => ({ version, description })),
      MIGRATIONS.map(({ version, description }) => ({ version, description })),
    );
  });

  test('both schemas, migrated to the latest version, have the same tables and views with the same columns in the same order and nullability', async () => {
    const [sqlite, postgres] = await Promise.all(backends().map((backend) => backend.open()));
    try {
      const [sqliteColumns, postgresColumns] = await Promise.all([sqlite!.columns(), postgres!.columns()]);
      assert.deepEqual([...postgresColumns.keys()], [...sqliteColumns.keys()], 'the same tables and views');
      const shape = (columns: readonly LiveColumn[] | undefined) => columns?.map(({ name, nullable }) => ({ name, nullable }));
      for (const [table, columns] of sqliteColumns) assert.deepEqual(shape(postgresColumns.get(table)), shape(columns), table);
      assert.ok(sqliteColumns.get('hosts')!.some((column) => column.name === 'trust_digest'), 'the latest migration is applied');
    } finally {
      await Promise.all([sqlite!.close(), postgres!.close()]);
    }
  });

  test('every column has the PostgreSQL type its SQLite type asks for: INTEGER is BIGINT unless listed as small, REAL double precision, BLOB bytea, TEXT text', async () => {
    const [sqlite, postgres] = await Promise.all(backends().map((backend) => backend.open()));
    try {
      const [sqliteColumns, postgresColumns] = await Promise.all([sqlite!.columns(), postgres!.columns()]);
      const mismatches: string[] = [];
      for (const [table, columns] of sqliteColumns) {
        for (const column of columns) {
          const postgresType = postgresColumns.get(table)?.find(({ name }) => name === column.name)?.type;
          const wanted = postgresTypeFor(table, column);
          if (postgresType !== wanted) mismatches.push(`${table}.${column.name}: SQLite ${column.type || '(none)'} wants PostgreSQL ${wanted}, is ${postgresType}`);
        }
      }
      assert.deepEqual(mismatches, []);
      // The lists name only columns that exist, so a renamed column cannot leave a stale exemption behind.
      for (const column of [...SMALL_INTEGER_COLUMNS.keys(), ...UNTYPED_VIEW_COLUMNS.keys()]) {
        const [table, name] = column.split('.');
        assert.ok(sqliteColumns.get(table!)?.some((live) => live.name === name), `${column} exists`);
      }
    } finally {
      await Promise.all([sqlite!.close(), postgres!.close()]);
    }
  });

  for (const backend of backends()) {
    test(`a database at every earlier schema version keeps its rows when migrated to the latest, and migrating again changes nothing [${backend.name}]`, { timeout: 120_000 }, async () => {
      for (let start = 1; start < LATEST; start += 1) {
        const opened = await backend.open(start);
        try {
          assert.equal(await opened.schemaVersion(), start);
          const written = await writeRepresentativeRows(opened.kysely, start);
          assert.equal(await opened.migrateTo(), LATEST);
          assert.equal(await opened.schemaVersion(), LATEST, `from ${start}`);
          assert.equal(await opened.migrateTo(), LATEST, `from ${start}: again`);
          await assertRowsIntact(opened.kysely, written, `from ${start}`);
        } finally {
          await opened.close();
        }
      }
    });
  }

  test('two instances migrating one empty PostgreSQL database at once apply each migration once (advisory lock)', async () => {
    const cluster = await sharedPostgres();
    const url = await cluster.createDatabase(`concurrent_migration_${process.pid}`);
    const instances = [postgresKysely(url, { poolSize: 2 }), postgresKysely(url, { poolSize: 2 })];
    try {
      assert.deepEqual(await Promise.all(instances.map((instance) => migratePostgres(instance))), [LATEST, LATEST]);
      assert.equal(await postgresSchemaVersion(instances[0]!), LATEST);
    } finally {
      await Promise.all(instances.map((instance) => instance.destroy()));
    }
  });

  test('a PostgreSQL statement blocked behind another session\'s row lock, or a migration behind another\'s migration lock, fails within its bound as ERR_STORAGE_UNAVAILABLE', async () => {
    const cluster = await sharedPostgres();
    const url = await cluster.createDatabase(`bounded_waits_${process.pid}`);
    const holder = postgresKysely(url, { poolSize: 1 });
    const waiter = postgresKysely(url, { poolSize: 1, waitBounds: { statementMs: 30_000, lockMs: 300, idleInTransactionMs: 60_000 } });
    const versions = (database: Kysely<Schema>) => database.withTables<{ schema_version: { id: number; version: number } }>();
    const isUnavailable = (code: string) => (error: unknown) => storageFailure(error)?.code === 'ERR_STORAGE_UNAVAILABLE' && (error as { code?: string }).code === code;
    try {
      await migratePostgres(holder);
      await versions(holder).transaction().execute(async (transaction) => {
        await transaction.selectFrom('schema_version').select('version').where('id', '=', 1).forUpdate().execute();
        const started = Date.now();
        await assert.rejects(versions(waiter).updateTable('schema_version').set({ version: LATEST }).where('id', '=', 1).execute(), isUnavailable('55P03'));
        const waited = Date.now() - started;
        assert.ok(waited >= 250 && waited < 5_000, `failed after ${waited} ms (bound 300 ms)`);
      });
      await holder.transaction().execute(async (transaction) => {
        await sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`.execute(transaction); // the migration lock
        await assert.rejects(migratePostgres(waiter, POSTGRES_MIGRATIONS, 300), (error: unknown) =>
          error instanceof CtOpsError && error.code === 'ERR_STORAGE_UNAVAILABLE' && /migration lock/.test(error.message));
      });
      assert.equal(await postgresSchemaVersion(waiter), LATEST, 'the waiter still works once the locks are gone');
    } finally {
      await Promise.all([holder.destroy(), waiter.destroy()]);
    }
  });

  test('a PostgreSQL database written by a newer appliance is refused with ERR_SCHEMA_TOO_NEW, and a misnumbered list before anything is applied', async () => {
    const [postgres] = backends().filter((backend) => backend.name === 'postgres');
    const opened = await postgres!.open();
    try {
      await opened.kysely.withTables<{ schema_version: { id: number; version: number } }>().updateTable('schema_version').set({ version: 999 }).execute();
      await assert.rejects(opened.migrateTo(), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_SCHEMA_TOO_NEW');
      await assert.rejects(migratePostgres(opened.kysely, [POSTGRES_MIGRATIONS[1]!]), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INTERNAL');
      assert.equal(await opened.schemaVersion(), 999);
    } finally {
      await opened.close();
    }
  });
});

conformance('values come back as schema.ts declares them: ms times past 2^32 and counts as numbers, keys as Buffers, flags as 0/1, reals as numbers', async ({ kysely }) => {
  await insertOrganisationAndHost(kysely);
  const host = await kysely.selectFrom('hosts').selectAll().where('id', '=', 'hst_conformance').executeTakeFirstOrThrow();
  assert.equal(host.enrolled_at, AT);
  assert.ok(Buffer.isBuffer(host.public_key) && host.public_key.equals(KEY));
  assert.equal(host.cpu_percent, 12.5);
  assert.equal(host.trust_generation, 0);
  const { count } = await kysely.selectFrom('hosts').select((eb) => eb.fn.countAll<number>().as('count')).executeTakeFirstOrThrow();
  assert.equal(count, 1);
  const token = await kysely.selectFrom('enrolment_tokens').select(['auto_approve', 'uses', 'expires_at']).executeTakeFirstOrThrow();
  assert.deepEqual(token, { auto_approve: 1, uses: 0, expires_at: AT + 60_000 });
});

conformance('each broken constraint is named alike on both backends by constraintViolation', async ({ kysely }) => {
  await insertOrganisationAndHost(kysely);
  const broken = async (statement: () => Promise<unknown>): Promise<ConstraintKind | undefined> => {
    try {
      await statement();
    } catch (error) {
      return constraintViolation(error);
    }
    assert.fail('the statement was accepted');
  };
  assert.equal(await broken(() => kysely.insertInto('organisations').values({ id: 'org_other', name: 'conformance', created_at: AT }).execute()), 'unique');
  assert.equal(await broken(() => kysely.insertInto('host_events').values({ host_id: 'hst_missing', at: AT, kind: 'renamed', details: '{}' }).execute()), 'foreign-key');
  assert.equal(await broken(() => kysely.updateTable('enrolment_tokens').set({ uses: 5 }).execute()), 'check', 'uses may not pass max_uses');
  assert.equal(await broken(() => kysely.updateTable('organisations').set({ name: null as unknown as string }).execute()), 'not-null');
  assert.equal(constraintViolation(new Error('23505')), undefined, 'only a driver error is read');
});

conformance('the affected-row count of a conditional UPDATE lets exactly one of 20 concurrent transactions take a single-use token', async ({ kysely }) => {
  await insertOrganisationAndHost(kysely);
  const takeOneUse = () => runTransaction(kysely, (tx) => ({ tx }), async ({ tx }) => {
    const taken = await tx.updateTable('enrolment_tokens').set((eb) => ({ uses: eb('uses', '+', 1) }))
      .where('id', '=', 'tok_conformance').whereRef('uses', '<', 'max_uses').executeTakeFirst();
    return Number(taken.numUpdatedRows);
  }, (error) => assert.fail(String(error)));
  const taken = await Promise.all(Array.from({ length: 20 }, takeOneUse));
  assert.equal(taken.filter((rows) => rows === 1).length, 1, `taken: ${taken.join(',')}`);
  const { uses } = await kysely.selectFrom('enrolment_tokens').select('uses').executeTakeFirstOrThrow();
  assert.equal(uses, 1);
});

test('a stopped PostgreSQL server fails queries with ERR_STORAGE_UNAVAILABLE, and a SQL error is not a storage failure', { timeout: 60_000 }, async () => {
  const cluster = await startPostgres();
  const kysely = postgresKysely(await cluster.createDatabase('stopped_server'), { poolSize: 2, onIdleConnectionError: () => undefined });
  try {
    await migratePostgres(kysely);
    const syntaxError = await kysely.selectFrom('hosts').select('id').where('no_such_column' as 'id', '=', 'x').execute().catch((error: unknown) => error);
    assert.equal(storageFailure(syntaxError), undefined);
    await cluster.stop();
    const failed = await kysely.selectFrom('hosts').select('id').execute().catch((error: unknown) => error);
    const mapped = storageFailure(failed);
    assert.equal(mapped?.code, 'ERR_STORAGE_UNAVAILABLE', `mapped from ${String(failed)}`);
    assert.doesNotMatch(mapped!.message, new RegExp(cluster.password), 'no password in the message');
  } finally {
    await cluster.stop();
    await kysely.destroy();
  }
});

test('transactions PostgreSQL aborts as deadlock victims run again and commit; the effects of an aborted attempt never run', { timeout: 60_000 }, async () => {
  const [postgres] = backends().filter((backend) => backend.name === 'postgres');
  const { kysely, close } = await postgres!.open();
  try {
    await kysely.insertInto('organisations').values([{ id: 'org_a', name: 'a', created_at: AT }, { id: 'org_b', name: 'b', created_at: AT }]).execute();
    let locked = 0;
    let bothLocked!: () => void;
    const firstRowsLocked = new Promise<void>((resolve) => (bothLocked = resolve));
    const attempts: string[] = [];
    const effects: string[] = [];
    // First attempts: each locks its first row, waits until the other holds its own, then asks for the
    // other's row — a deadlock. A retry locks in one order (org_a, then org_b), so retries cannot deadlock again.
    const lockInOrder = (label: string, first: string, second: string) => async (scope: TransactionScope<{ tx: Executor }>) => {
      const retry = attempts.includes(label);
      attempts.push(label);
      if (retry) [first, second] = ['org_a', 'org_b'];
      await scope.tx.updateTable('organisations').set({ created_at: AT + 1 }).where('id', '=', first).execute();
      scope.afterCommit(() => void effects.push(label));
      if ((locked += 1) === 2) bothLocked();
      await firstRowsLocked;
      await scope.tx.updateTable('organisations').set({ created_at: AT + 2 }).where('id', '=', second).execute();
      return label;
    };
    const effectFailed = (error: unknown) => assert.fail(`an effect failed: ${String(error)}`);
    const results = await Promise.all([
      runTransaction(kysely, (tx) => ({ tx }), lockInOrder('a', 'org_a', 'org_b'), effectFailed),
      runTransaction(kysely, (tx) => ({ tx }), lockInOrder('b', 'org_b', 'org_a'), effectFailed),
    ]);
    assert.deepEqual(results, ['a', 'b']);
    // The victim ran again (3 attempts; 4 had PostgreSQL aborted both).
    assert.ok(attempts.length === 3 || attempts.length === 4, `attempts: ${attempts.join(', ')}`);
    assert.deepEqual(effects.sort(), ['a', 'b'], 'each effect ran once, after its commit');
  } finally {
    await close();
  }
});

test('PostgreSQL SQLSTATEs of a failing server map to the ERR_STORAGE_* codes; statement errors do not', () => {
  const mapped = (code: string) => storageFailure(Object.assign(new Error('boom'), { code }))?.code;
  assert.equal(mapped('53100'), 'ERR_STORAGE_FULL');
  assert.equal(mapped('08006'), 'ERR_STORAGE_UNAVAILABLE', 'connection_failure, by its class');
  assert.equal(mapped('57P01'), 'ERR_STORAGE_UNAVAILABLE');
  assert.equal(mapped('53300'), 'ERR_STORAGE_UNAVAILABLE');
  assert.equal(mapped('XX001'), 'ERR_STORAGE_CORRUPT');
  assert.equal(mapped('57014'), 'ERR_STORAGE_UNAVAILABLE', 'query_canceled: statement_timeout');
  assert.equal(mapped('55P03'), 'ERR_STORAGE_UNAVAILABLE', 'lock_not_available: lock_timeout');
  assert.equal(mapped('ECONNREFUSED'), 'ERR_STORAGE_UNAVAILABLE');
  assert.equal(mapped('23505'), undefined);
  assert.equal(mapped('42703'), undefined);
  assert.equal(storageFailure(Object.assign(new Error('boom'), { code: '53100' }))?.details.postgres_code, '53100');
});

/** One organisation, enrolment token and host with every kind of column filled (schema version 1 columns only). */
async function insertOrganisationAndHost(kysely: Kysely<Schema>): Promise<void> {
  await kysely.insertInto('organisations').values({ id: 'org_conformance', name: 'conformance', created_at: AT }).execute();
  await kysely.insertInto('enrolment_tokens').values({
    id: 'tok_conformance', org_id: 'org_conformance', secret_hash: 'hash', label: 'label', created_at: AT, created_by: 'admin',
    expires_at: AT + 60_000, max_uses: 1, auto_approve: 1, tags: '{}', source: 'api', metadata: '{}',
  }).execute();
  await kysely.insertInto('hosts').values({
    id: 'hst_conformance', org_id: 'org_conformance', public_key: KEY, hostname: 'web-1', machine_fingerprint: 'fp', os: 'linux', arch: 'x64',
    agent_version: '0.1.0', approval: 'active', enrolment_token_id: 'tok_conformance', tags: '{}', enrolled_at: AT, last_registered_at: AT,
    cpu_percent: 12.5, uptime_seconds: 3_600,
  }).execute();
}

/** What writeRepresentativeRows stored, to be read back after the migration. */
interface Written {
  readonly packageId?: number;
  readonly tables: readonly string[];
}

/**
 * A row in every table that exists at `version`, with only the columns that version has; returns
 * what to check. Tables appear at: 1 the core, 2 inventory, 4 tasks, 6 claimants and events.
 */
async function writeRepresentativeRows(kysely: Kysely<Schema>, version: number): Promise<Written> {
  await insertOrganisationAndHost(kysely);
  await kysely.insertInto('org_settings').values({ org_id: 'org_conformance', key: 'k', value: 'v' }).execute();
  await kysely.insertInto('host_vitals').values({ host_id: 'hst_conformance', received_at: AT, agent_timestamp: AT - 5, cpu_percent: 1.5, memory_percent: 2.5, disk_percent: 3.5, uptime_seconds: 60 }).execute();
  await kysely.insertInto('register_nonces').values({ public_key: KEY, nonce: Buffer.alloc(16, 1), expires_at: AT }).execute();
  await kysely.insertInto('admin_users').values({ id: 'usr_conformance', username: 'admin', password_hash: 'hash', created_at: AT }).execute();
  await kysely.insertInto('admin_api_tokens').values({ id: 'atk_conformance', user_id: 'usr_conformance', secret_hash: 'hash', label: 'cli', created_at: AT, expires_at: null }).execute();
  const tables = ['organisations', 'enrolment_tokens', 'hosts', 'org_settings', 'host_vitals', 'register_nonces', 'admin_users', 'admin_api_tokens'];
  let packageId: number | undefined;
  if (version >= 2) {
    await kysely.insertInto('software_scans').values({ id: 'scan-conformance', host_id: 'hst_conformance', task_id: '', started_at: AT, updated_at: AT, completed_at: AT, status: 'completed' }).execute();
    const { seq } = await kysely.selectFrom('software_scans').select('seq').executeTakeFirstOrThrow();
    const inserted = await kysely.insertInto('software_packages').values({
      host_id: 'hst_conformance', name: 'libc6', version: '2.36', source: 'dpkg', architecture: 'amd64', publisher: '', first_seen: AT, last_seen: AT, last_seen_scan: seq,
    }).returning('id').executeTakeFirstOrThrow();
    packageId = inserted.id;
    await kysely.insertInto('software_name_index').values({ name: 'libc6', host_id: 'hst_conformance' }).execute();
    tables.push('software_scans', 'software_packages', 'software_name_index');
  }
  if (version >= 4) {
    await kysely.insertInto('tasks').values({ id: 'tsk_conformance', org_id: 'org_conformance', host_id: 'hst_conformance', type: 'software_inventory', state: 'queued', created_at: AT, created_by: 'admin', timeout_ms: 600_000, expires_at: AT + 1 }).execute();
    tables.push('tasks');
  }
  if (version >= 6) {
    await kysely.insertInto('host_claimants').values({ host_id: 'hst_conformance', instance_id: 'i-1', machine_fingerprint: 'fp', hostname: 'web-1', source: 'heartbeat', first_seen: AT, last_seen: AT }).execute();
    await kysely.insertInto('host_events').values({ host_id: 'hst_conformance', at: AT, kind: 'renamed', details: '{}' }).execute();
    tables.push('host_claimants', 'host_events');
  }
  return packageId === undefined ? { tables } : { packageId, tables };
}

/** Every written row is still there with its values; a package keeps its id and the next one gets a higher id (the counter was kept). */
async function assertRowsIntact(kysely: Kysely<Schema>, written: Written, label: string): Promise<void> {
  for (const table of written.tables) {
    const rows = await kysely.selectFrom(table as keyof Schema).selectAll().execute();
    assert.equal(rows.length, 1, `${label}: ${table} keeps its row`);
  }
  const host = await kysely.selectFrom('hosts').selectAll().executeTakeFirstOrThrow();
  assert.equal(host.enrolled_at, AT, label);
  assert.ok(host.public_key.equals(KEY), label);
  assert.equal(host.trust_digest, '', `${label}: a later column takes its default`);
  if (written.packageId !== undefined) {
    const scan = await kysely.selectFrom('software_scans').select(['seq', 'skipped']).executeTakeFirstOrThrow();
    assert.equal(scan.skipped, '[]', label);
    const kept = await kysely.selectFrom('software_packages').select(['id', 'architecture', 'first_seen']).executeTakeFirstOrThrow();
    assert.deepEqual(kept, { id: written.packageId, architecture: 'amd64', first_seen: AT }, label);
    const next = await kysely.insertInto('software_packages').values({
      host_id: 'hst_conformance', name: 'libc6', version: '2.36', source: 'dpkg', architecture: 'i386', publisher: '', first_seen: AT, last_seen: AT, last_seen_scan: scan.seq,
    }).returning('id').executeTakeFirstOrThrow();
    assert.ok(next.id > written.packageId, `${label}: the id counter carried over (${next.id} > ${written.packageId})`);
  }
}
