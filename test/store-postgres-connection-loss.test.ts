import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { postgresKysely } from '../appliance/store/postgres-dialect.ts';
import { migratePostgres } from '../appliance/store/postgres-migrate.ts';
import { isPoolSaturated, storageFailure } from '../appliance/store/storage-failure.ts';
import { openPostgresStores } from '../appliance/store/index.ts';
import { CtOpsError } from '../common/errors.ts';
import { runTransaction } from '../appliance/store/unit-of-work.ts';
import { sharedPostgres } from './helpers/postgres.ts';

after(async () => (await sharedPostgres()).stop());

test('a backend terminated inside a transaction, between statements and during a query, is ERR_STORAGE_UNAVAILABLE and the process lives', { timeout: 60_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('terminated_backend');
  const dropped: Error[] = [];
  const kysely = postgresKysely(url, { poolSize: 2, onIdleConnectionError: (error) => dropped.push(error) });
  const admin = postgresKysely(url, { poolSize: 1 });
  const terminate = (pid: number) => sql`SELECT pg_terminate_backend(${pid})`.execute(admin);
  try {
    const between = await runTransaction(kysely, (executor) => ({ executor }), async (tx) => {
      const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(tx.executor);
      await terminate(rows[0]!.pid);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sql`SELECT 1`.execute(tx.executor);
    }, () => undefined).then(() => undefined, (error: unknown) => error);
    assert.equal(storageFailure(between)?.code, 'ERR_STORAGE_UNAVAILABLE', String(between));

    const during = await runTransaction(kysely, (executor) => ({ executor }), async (tx) => {
      const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(tx.executor);
      const query = sql`SELECT pg_sleep(5)`.execute(tx.executor);
      // Its rejection may come while the termination below is still awaited: handled from now on, still thrown by `await query`.
      query.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await terminate(rows[0]!.pid);
      await query;
    }, () => undefined).then(() => undefined, (error: unknown) => error);
    assert.equal(storageFailure(during)?.code, 'ERR_STORAGE_UNAVAILABLE', String(during));

    const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(kysely);
    assert.equal(rows[0]!.one, 1, 'the pool serves again on a fresh connection');
  } finally {
    await Promise.all([kysely.destroy(), admin.destroy()]);
  }
});

test('hosts.trust_generation (a time in ms) is BIGINT on PostgreSQL and holds a value past 2^31', { timeout: 60_000 }, async () => {
  const cluster = await sharedPostgres();
  const kysely = postgresKysely(await cluster.createDatabase('trust_generation_width'), { poolSize: 1 });
  try {
    await migratePostgres(kysely);
    const { rows } = await sql<{ data_type: string }>`SELECT data_type FROM information_schema.columns WHERE table_name = 'hosts' AND column_name = 'trust_generation'`.execute(kysely);
    assert.equal(rows[0]?.data_type, 'bigint');
  } finally {
    await kysely.destroy();
  }
});

test('a socket EPIPE (shaped like a SQLSTATE) is a server that cannot be reached', () => {
  const mapped = storageFailure(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  assert.equal(mapped?.code, 'ERR_STORAGE_UNAVAILABLE');
  assert.match(mapped!.message, /cannot be reached: EPIPE/);
});

test('a saturated pool fails the waiting query retryable (ERR_STORAGE_UNAVAILABLE, naming the pool) without reporting the storage degraded; a server that cannot be reached still is', { timeout: 60_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('saturated_pool');
  const stores = await openPostgresStores(url, { poolSize: 1 });
  try {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const holding = new Promise<void>((resolve) => (entered = resolve));
    // The one pooled connection held by a transaction; a query outside it waits for a connection.
    const transaction = stores.transact(async (tx) => {
      await tx.organisations.ensureDefault(Date.now());
      entered();
      await held;
    });
    await holding;
    const waited = await stores.hosts.get('hst_none').then(() => undefined, (error: unknown) => error);
    release();
    await transaction;
    assert.ok(waited instanceof CtOpsError && waited.code === 'ERR_STORAGE_UNAVAILABLE', String(waited));
    assert.match(waited.message, /pooled database connection stayed busy/);
    assert.equal(stores.health.state.status, 'ok', 'load is not a failed storage');
    assert.equal(await stores.hosts.get('hst_none'), undefined, 'served again once a connection is free');
  } finally {
    await stores.close();
  }
  const unreachable = storageFailure(new Error('Connection terminated due to connection timeout'));
  assert.equal(unreachable?.code, 'ERR_STORAGE_UNAVAILABLE');
  assert.ok(!isPoolSaturated(new Error('Connection terminated due to connection timeout')), 'a connection that cannot be made is a storage failure, not load');
});
