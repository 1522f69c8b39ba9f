import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { PostgresAdapter, sql, type Kysely } from 'kysely';
import { indexNameBatches } from '../appliance/inventory/name-index.ts';
import { HOST_INVENTORY_LIMITS, type ChunkInput, type PackageInput } from '../appliance/model/inventory.ts';
import type { DialectName } from '../appliance/store/dialects.ts';
import type { Schema } from '../appliance/store/schema.ts';
import { SoftwareInventoryStore } from '../appliance/store/software-inventory.ts';
import { CtOpsError } from '../common/errors.ts';
import { countingTurns } from './helpers/event-loop-turns.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { backends, conformance, interleaved } from './helpers/store-backends.ts';

/** The backend a Kysely speaks to, as the store is told it in serve (store/index.ts). */
const dialectOf = (kysely: Kysely<Schema>): DialectName => (kysely.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite');

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_123;
const DAY_MS = 86_400_000;

/** The schema version before migration 015 (the name index's pending pairs). */
const BEFORE_PENDING_FLAG = 14;

async function insertHost(kysely: Kysely<Schema>, id: string, orgId = 'org_i'): Promise<void> {
  await kysely.insertInto('organisations').values({ id: orgId, name: orgId, created_at: AT }).onConflict((conflict) => conflict.column('id').doNothing()).execute();
  await kysely.insertInto('hosts').values({
    id, org_id: orgId, public_key: Buffer.from(id.padEnd(32, '.')), hostname: `${id}.example`, machine_fingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agent_version: '0.1.0', approval: 'active', enrolment_token_id: null, tags: '{}', enrolled_at: AT, last_registered_at: AT,
  }).execute();
}

function pkg(name: string, fields: Partial<PackageInput> = {}): PackageInput {
  return { name, version: '1.0', source: 'dpkg', architecture: 'amd64', publisher: 'Debian', installDate: null, ...fields };
}

/** Packages `prefix`0 … `prefix`(count − 1). */
function many(prefix: string, count: number): PackageInput[] {
  return Array.from({ length: count }, (_, n) => pkg(`${prefix}${n}`));
}

/** One chunk in a transaction of its own, as stores.transact runs InventoryService's. */
function addChunk(kysely: Kysely<Schema>, input: Omit<ChunkInput, 'taskId'> & { taskId?: string }) {
  return kysely.transaction().execute((tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).addChunk({ taskId: 'tsk_scan', ...input }));
}

/** The name index's batches, as InventoryService.indexNames runs them. */
function indexNames(kysely: Kysely<Schema>, batchAtLeast = 1): Promise<number> {
  return indexNameBatches(new SoftwareInventoryStore(kysely, dialectOf(kysely)), batchAtLeast);
}

/** "hostId:version" of every host recorded with the package, as package search reads them. */
async function search(kysely: Kysely<Schema>, name: string, options: { orgId?: string; includeRemoved?: boolean } = {}): Promise<string[]> {
  return (await new SoftwareInventoryStore(kysely, dialectOf(kysely)).hostsWithPackage(name, options)).map((record) => `${record.hostId}:${record.version}`);
}

/** "name@host" of every package row the name index's pending ranges cover, in order. */
async function pending(kysely: Kysely<Schema>): Promise<string[]> {
  const rows = await kysely
    .selectFrom('software_name_pending_ranges as r')
    .innerJoin('software_packages as p', (join) => join.onRef('p.host_id', '=', 'r.host_id').on((eb) => eb.between('p.id', eb.ref('r.first_id'), eb.ref('r.last_id'))))
    .select(['p.name', 'p.host_id'])
    .orderBy('p.name')
    .orderBy('p.host_id')
    .execute();
  return rows.map((row) => `${row.name}@${row.host_id}`);
}

/**
 * Runs `input` as a chunk in a transaction that stays open once the chunk is written: `written`
 * resolves then; `commit()` lets it commit; `result` settles with the chunk's result after that.
 */
async function chunkHeldOpen(kysely: Kysely<Schema>, input: ChunkInput) {
  let written!: () => void;
  const hasWritten = new Promise<void>((resolve) => (written = resolve));
  let commit!: () => void;
  const mayCommit = new Promise<void>((resolve) => (commit = resolve));
  const result = kysely.transaction().execute(async (tx) => {
    const stored = await new SoftwareInventoryStore(tx, dialectOf(tx)).addChunk(input);
    written();
    await mayCommit;
    return stored;
  });
  await Promise.race([hasWritten, result]);
  return { result, commit };
}

/** A behaviour only PostgreSQL can show (two transactions writing at once), on a fresh database of the file's cluster. */
function onPostgres(title: string, behaviour: (kysely: Kysely<Schema>) => Promise<void>): void {
  test(`PostgreSQL: ${title} [postgres]`, async () => {
    const opened = await backends().find((backend) => backend.name === 'postgres')!.open();
    try {
      await behaviour(opened.kysely);
    } finally {
      await opened.close();
    }
  });
}

conformance('inventory store: scan lifecycle — chunks upsert new/changed/unchanged rows, completing marks the unseen removed keeping first_seen, restarts, closes, abandons', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_a');
  await insertHost(kysely, 'hst_b');
  const store = new SoftwareInventoryStore(kysely, dialectOf(kysely));
  await assert.rejects(store.addChunk({ scanId: 's', hostId: 'hst_a', taskId: '', chunkIndex: 0, packages: [], isLast: true, now: AT }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INTERNAL', 'a chunk outside a transaction is refused');

  // Scan 1 in two chunks; a repeat inside a chunk counts as a duplicate.
  const first = await addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('curl'), pkg('bash'), pkg('curl')], isLast: false, now: AT });
  assert.deepEqual([first.added, first.unchanged, first.duplicates, first.scan.status, first.scan.chunks], [2, 0, 1, 'receiving', 1]);
  await assert.rejects(addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_a', chunkIndex: 2, packages: [pkg('x')], isLast: true, now: AT }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVENTORY_SCAN_OUT_OF_ORDER');
  await assert.rejects(addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_b', chunkIndex: 1, packages: [pkg('x')], isLast: true, now: AT }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVENTORY_SCAN_CONFLICT');
  const done = await addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_a', chunkIndex: 1, packages: [pkg('vim'), pkg('vim', { architecture: 'i386' })], isLast: true, now: AT + 1 });
  assert.deepEqual([done.added, done.scan.status, done.scan.completedAt, done.scan.added, done.scan.removed], [2, 'completed', AT + 1, 4, 0]);
  assert.equal(await store.lastInventoryAt('hst_a'), AT + 1);
  await assert.rejects(addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('x')], isLast: true, now: AT }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVENTORY_SCAN_COMPLETED');

  // Scan 2: curl unchanged, bash changed (new version: a new row, the old one removed), vim:i386 gone, nano new.
  const T2 = AT + DAY_MS;
  const second = await addChunk(kysely, { scanId: 'scan-2', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('curl', { publisher: 'Debian curl team' }), pkg('bash', { version: '2.0' }), pkg('vim'), pkg('nano')], isLast: true, now: T2 });
  assert.deepEqual([second.added, second.unchanged, second.scan.removed], [2, 2, 2]);
  const rows = new Map((await store.packages('hst_a')).map((row) => [`${row.name}:${row.version}:${row.architecture}`, row]));
  assert.deepEqual([...rows.keys()], ['bash:1.0:amd64', 'bash:2.0:amd64', 'curl:1.0:amd64', 'nano:1.0:amd64', 'vim:1.0:amd64', 'vim:1.0:i386']);
  const curl = rows.get('curl:1.0:amd64')!;
  assert.deepEqual([curl.firstSeen, curl.lastSeen, curl.publisher, curl.isRemoved], [AT, T2, 'Debian curl team', false], 'first_seen kept, the rest updated');
  assert.deepEqual([rows.get('bash:1.0:amd64')!.isRemoved, rows.get('bash:1.0:amd64')!.removedAt, rows.get('vim:1.0:i386')!.isRemoved], [true, T2, true]);
  assert.deepEqual((await store.packages('hst_a', { liveOnly: true })).map((row) => row.name), ['bash', 'curl', 'nano', 'vim']);
  assert.deepEqual((await store.packages('hst_a', { page: { limit: 2, offset: 1 } })).map((row) => `${row.name}:${row.version}`), ['bash:2.0', 'curl:1.0']);

  // A removed package back in a later scan counts as added and keeps its first_seen.
  const back = await addChunk(kysely, { scanId: 'scan-3', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('curl'), pkg('bash', { version: '2.0' }), pkg('vim'), pkg('nano'), pkg('vim', { architecture: 'i386' })], isLast: true, now: T2 + 1 });
  assert.deepEqual([back.added, back.unchanged, back.scan.removed], [1, 4, 0]);
  const vim386 = (await store.packages('hst_a')).find((row) => row.name === 'vim' && row.architecture === 'i386')!;
  assert.deepEqual([vim386.firstSeen, vim386.isRemoved, vim386.removedAt], [AT + 1, false, null]);

  // A scan restarted from chunk 0 counts its packages afresh; an empty last chunk is refused and leaves nothing.
  await addChunk(kysely, { scanId: 'scan-4', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('curl'), pkg('zsh')], isLast: false, now: T2 + 2 });
  const restarted = await addChunk(kysely, { scanId: 'scan-4', hostId: 'hst_a', chunkIndex: 0, packages: [pkg('curl'), pkg('zsh')], isLast: false, now: T2 + 3 });
  assert.deepEqual([restarted.added, restarted.unchanged, restarted.duplicates, restarted.scan.chunks], [1, 1, 0, 1]);
  await assert.rejects(addChunk(kysely, { scanId: 'scan-5', hostId: 'hst_a', chunkIndex: 0, packages: [], isLast: true, now: T2 + 3 }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVALID_ARGUMENT');
  assert.equal(await store.getScan('scan-5'), undefined, 'the refused chunk rolled back');

  // Abandoning open scans: only those of the hosts named; none for an empty list; every open one without.
  await addChunk(kysely, { scanId: 'scan-b1', hostId: 'hst_b', chunkIndex: 0, packages: [pkg('curl')], isLast: false, now: T2 + 4 });
  assert.equal(await store.abandonOpenScans(T2 + 5, []), 0);
  assert.equal(await store.abandonOpenScans(T2 + 5, ['hst_b']), 1);
  assert.deepEqual([(await store.getScan('scan-b1'))?.status, (await store.getScan('scan-b1'))?.errorCode, (await store.getScan('scan-4'))?.status], ['abandoned', 'ERR_INVENTORY_SCAN_INCOMPLETE', 'receiving']);
  assert.equal(await store.abandonOpenScans(T2 + 6), 1);
  assert.equal((await store.getScan('scan-4'))?.status, 'abandoned');
  assert.equal(await store.lastInventoryAt('hst_b'), null, 'an abandoned scan is no inventory');
  assert.deepEqual(await store.lastInventoryAtEach(['hst_a', 'hst_b', 'hst_none']), new Map([['hst_a', await store.lastInventoryAt('hst_a')]]), 'several hosts in one read: only those with a completed scan');
  // An abandoned scan resumes with its next chunk and completes; nothing was marked removed meanwhile.
  const resumed = await addChunk(kysely, { scanId: 'scan-4', hostId: 'hst_a', chunkIndex: 1, packages: [pkg('bash', { version: '2.0' }), pkg('vim'), pkg('nano'), pkg('vim', { architecture: 'i386' })], isLast: true, now: T2 + 7 });
  assert.deepEqual([resumed.scan.status, resumed.scan.errorCode, resumed.scan.removed], ['completed', null, 0]);

  // Closing: over_limits deletes what the scan added and fails it; a closed scan takes no chunk.
  await addChunk(kysely, { scanId: 'scan-b2', hostId: 'hst_b', chunkIndex: 0, packages: [pkg('htop')], isLast: false, now: T2 + 8 });
  const closed = await kysely.transaction().execute((tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).closeScan('scan-b2', 'hst_b', 'over_limits', 'ERR_INVENTORY_SCAN_TOO_LARGE', T2 + 9));
  assert.equal(closed, true);
  assert.equal(await kysely.transaction().execute((tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).closeScan('scan-b2', 'hst_a', 'refused', 'X', T2 + 9)), false, "another host's scan");
  assert.deepEqual((await store.packages('hst_b')).map((row) => row.name), ['curl'], 'htop, added by the failed scan, is gone');
  await assert.rejects(addChunk(kysely, { scanId: 'scan-b2', hostId: 'hst_b', chunkIndex: 1, packages: [pkg('x')], isLast: true, now: T2 + 10 }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVENTORY_SCAN_CLOSED');
  assert.deepEqual((await store.scans('hst_b', 10)).map((scan) => `${scan.id}:${scan.status}`), ['scan-b2:failed', 'scan-b1:abandoned']);
  assert.equal((await store.completedScanForTask('hst_a', 'tsk_scan'))?.id, 'scan-4');
  // A chunk for a host deleted under it is ERR_HOST_NOT_FOUND (the foreign key), not a raw database error.
  await assert.rejects(addChunk(kysely, { scanId: 'scan-ghost', hostId: 'hst_ghost', chunkIndex: 0, packages: [pkg('x')], isLast: true, now: T2 }),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_NOT_FOUND');
});

conformance('inventory store: a scan that received nothing since the mark is abandoned once, a later one is not, and a stream still open resumes and completes it', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_q1');
  await insertHost(kysely, 'hst_q2');
  const store = new SoftwareInventoryStore(kysely, dialectOf(kysely));
  await addChunk(kysely, { scanId: 'scan-quiet', hostId: 'hst_q1', chunkIndex: 0, packages: [pkg('less')], isLast: false, now: AT });
  await addChunk(kysely, { scanId: 'scan-busy', hostId: 'hst_q2', chunkIndex: 0, packages: [pkg('less')], isLast: false, now: AT + 100 });
  await addChunk(kysely, { scanId: 'scan-busy', hostId: 'hst_q2', chunkIndex: 1, packages: [pkg('more')], isLast: false, now: AT + 300 });
  await addChunk(kysely, { scanId: 'scan-done', hostId: 'hst_q2', chunkIndex: 0, packages: [pkg('less')], isLast: true, now: AT });

  assert.equal(await store.abandonQuietScans(AT + 1_000, AT + 200), 1, 'only the scan whose last chunk came before the mark');
  const quiet = await store.getScan('scan-quiet');
  assert.deepEqual([quiet?.status, quiet?.errorCode, (await store.getScan('scan-busy'))?.status, (await store.getScan('scan-done'))?.status], ['abandoned', 'ERR_INVENTORY_SCAN_INCOMPLETE', 'receiving', 'completed']);
  assert.equal(await store.abandonQuietScans(AT + 1_001, AT + 200), 0, 'moved once');
  const resumed = await addChunk(kysely, { scanId: 'scan-quiet', hostId: 'hst_q1', chunkIndex: 1, packages: [pkg('vim')], isLast: true, now: AT + 2_000 });
  assert.deepEqual([resumed.scan.status, resumed.scan.errorCode, resumed.scan.chunks], ['completed', null, 2]);
  assert.deepEqual((await store.packages('hst_q1')).map((row) => row.name), ['less', 'vim'], 'nothing lost while it was abandoned');
});

conformance('inventory store: a scan abandoned by a pass while its last chunk is stored ends completed, never abandoned with packages marked removed', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_race');
  await addChunk(kysely, { scanId: 'scan-old', hostId: 'hst_race', chunkIndex: 0, packages: [pkg('gone')], isLast: true, now: AT });
  await addChunk(kysely, { scanId: 'scan-race', hostId: 'hst_race', chunkIndex: 0, packages: [pkg('less')], isLast: false, now: AT + 10 });
  // The pass abandons the scan and holds its transaction open while the last chunk arrives.
  const last = await interleaved(
    backend,
    async (tx, hold) => {
      assert.equal(await new SoftwareInventoryStore(tx, dialectOf(tx)).abandonQuietScans(AT + 20, AT + 15), 1);
      await hold();
    },
    (tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).addChunk({ scanId: 'scan-race', hostId: 'hst_race', taskId: '', chunkIndex: 1, packages: [pkg('vim')], isLast: true, now: AT + 30 }),
  );
  assert.equal(last.scan.status, 'completed', 'the chunk waited for the pass, found the scan abandoned and resumed it');
  const store = new SoftwareInventoryStore(kysely, dialectOf(kysely));
  assert.equal((await store.getScan('scan-race'))?.status, 'completed');
  assert.deepEqual((await store.packages('hst_race')).map((row) => `${row.name}:${row.isRemoved}`), ['gone:true', 'less:false', 'vim:false']);
});

conformance('inventory store: completing a scan purges removed rows past the retention age and beyond the per-host cap, oldest removal first', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_r');
  const store = new SoftwareInventoryStore(kysely, dialectOf(kysely));
  const cap = HOST_INVENTORY_LIMITS.removedPackages;
  // cap packages, all removed by the next scan at T1; one more removed at T2: the cap is crossed by one.
  for (let chunk = 0; chunk * 1000 < cap; chunk += 1) {
    await addChunk(kysely, { scanId: 'scan-full', hostId: 'hst_r', chunkIndex: chunk, packages: many(`lib${chunk}-`, 1000), isLast: (chunk + 1) * 1000 >= cap, now: AT });
  }
  const T1 = AT + 1000;
  const T2 = T1 + 1000;
  assert.equal((await addChunk(kysely, { scanId: 'scan-small', hostId: 'hst_r', chunkIndex: 0, packages: [pkg('keep'), pkg('soon-gone')], isLast: true, now: T1 })).scan.removed, cap);
  assert.equal((await store.packages('hst_r')).length, cap + 2, 'exactly at the cap: nothing purged');
  const crossing = await addChunk(kysely, { scanId: 'scan-cross', hostId: 'hst_r', chunkIndex: 0, packages: [pkg('keep')], isLast: true, now: T2 });
  assert.equal(crossing.scan.removed, 1);
  const removed = (await store.packages('hst_r')).filter((row) => row.isRemoved);
  assert.equal(removed.length, cap, 'one over the cap: one purged');
  assert.ok(removed.some((row) => row.name === 'soon-gone'), 'the newest removal stays');
  assert.ok(!removed.some((row) => row.name === 'lib0-0'), 'the oldest removal (lowest id among those removed at T1) went');
  // Age: removed longer ago than the retention goes; the removal at T2 stays.
  const aged = await addChunk(kysely, { scanId: 'scan-aged', hostId: 'hst_r', chunkIndex: 0, packages: [pkg('keep')], isLast: true, now: T2 + 500, removedRetentionMs: 1000 });
  assert.equal(aged.scan.status, 'completed');
  assert.deepEqual((await store.packages('hst_r')).map((row) => `${row.name}:${row.isRemoved}`), ['keep:false', 'soon-gone:true']);
}, { timeout: 180_000 });

conformance('inventory store: package search reads the name index plus the pending rows, by organisation, without deleted hosts', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_1');
  await insertHost(kysely, 'hst_2');
  await insertHost(kysely, 'hst_3', 'org_other');
  await addChunk(kysely, { scanId: 'scan-1', hostId: 'hst_1', chunkIndex: 0, packages: [pkg('openssl'), pkg('openssl', { architecture: 'i386' }), pkg('curl')], isLast: true, now: AT });
  await addChunk(kysely, { scanId: 'scan-2', hostId: 'hst_2', chunkIndex: 0, packages: [pkg('openssl', { version: '3.0' })], isLast: true, now: AT });
  await addChunk(kysely, { scanId: 'scan-3', hostId: 'hst_3', chunkIndex: 0, packages: [pkg('openssl')], isLast: true, now: AT });
  assert.deepEqual(await search(kysely, 'openssl'), ['hst_1:1.0', 'hst_1:1.0', 'hst_3:1.0', 'hst_2:3.0'], 'all pending: read from the rows');
  assert.equal(await indexNames(kysely, 6), 0, 'fewer pending rows than the batch: nothing indexed');
  assert.deepEqual(await pending(kysely), ['curl@hst_1', 'openssl@hst_1', 'openssl@hst_1', 'openssl@hst_2', 'openssl@hst_3'], 'each row inserted is covered once');
  assert.equal(await indexNames(kysely, 5), 4, 'one entry per (name, host)');
  assert.deepEqual(await pending(kysely), []);
  await addChunk(kysely, { scanId: 'scan-1b', hostId: 'hst_1', chunkIndex: 0, packages: [pkg('openssl', { publisher: 'changed' }), pkg('openssl', { architecture: 'i386' }), pkg('curl')], isLast: true, now: AT });
  assert.deepEqual(await pending(kysely), [], 'a rescan that updates rows inserts none: nothing pending');
  assert.deepEqual(await search(kysely, 'openssl'), ['hst_1:1.0', 'hst_1:1.0', 'hst_3:1.0', 'hst_2:3.0'], 'the same, read from the index');
  assert.deepEqual(await search(kysely, 'openssl', { orgId: 'org_i' }), ['hst_1:1.0', 'hst_1:1.0', 'hst_2:3.0']);
  // New rows after the batch (a new version for an indexed host, a new name) are found at once; a removal hides one.
  await addChunk(kysely, { scanId: 'scan-4', hostId: 'hst_2', chunkIndex: 0, packages: [pkg('openssl', { version: '3.1' }), pkg('zlib')], isLast: true, now: AT + 1 });
  assert.deepEqual(await search(kysely, 'openssl', { orgId: 'org_i' }), ['hst_1:1.0', 'hst_1:1.0', 'hst_2:3.1']);
  assert.deepEqual(await search(kysely, 'openssl', { orgId: 'org_i', includeRemoved: true }), ['hst_1:1.0', 'hst_1:1.0', 'hst_2:3.0', 'hst_2:3.1']);
  assert.deepEqual(await search(kysely, 'zlib'), ['hst_2:1.0']);
  assert.deepEqual(await pending(kysely), ['openssl@hst_2', 'zlib@hst_2'], 'the range covers the two rows inserted');
  assert.equal(await indexNames(kysely), 1, 'zlib on hst_2 is the only new entry');
  assert.deepEqual(await pending(kysely), [], 'the pair of the new openssl row, indexed already, went too');
  await kysely.updateTable('hosts').set({ deleted_at: AT + 2 }).where('id', '=', 'hst_1').execute();
  assert.deepEqual(await search(kysely, 'openssl', { orgId: 'org_i' }), ['hst_2:3.1'], 'a deleted host is no longer part of the fleet');
  assert.deepEqual(await search(kysely, 'no-such-package'), []);
});

conformance('name index: a batch of several statements indexes every (name, host) exactly once, the event loop running between them', async (backend) => {
  const { kysely } = backend;
  const hostIds = ['hst_n1', 'hst_n2', 'hst_n3'];
  for (const hostId of hostIds) await insertHost(kysely, hostId);
  // Each host: 1,500 names in three chunks, the last chunk's names sorting first (the merge orders
  // them), plus 200 of the names again for another architecture (a name twice per host, in another range).
  for (const hostId of hostIds) {
    const chunks = [many('pkg-b', 500), many('pkg-c', 500), many('pkg-a', 500), many('pkg-a', 200).map((input) => ({ ...input, architecture: 'i386' }))];
    for (const [chunkIndex, packages] of chunks.entries()) {
      await addChunk(kysely, { scanId: `scan-${hostId}`, hostId, chunkIndex, packages, isLast: chunkIndex === chunks.length - 1, now: AT });
    }
  }
  // One entry already there: ignored, not counted.
  await kysely.insertInto('software_name_index').values({ name: 'pkg-a0', host_id: 'hst_n1' }).execute();
  const { result: added, turns } = await countingTurns(() => indexNames(kysely));
  const expected = hostIds.flatMap((hostId) => ['a', 'b', 'c'].flatMap((prefix) => many(`pkg-${prefix}`, 500).map((input) => `${input.name}@${hostId}`))).sort();
  assert.equal(expected.length, 4_500, 'more entries than one statement writes (2,000)');
  assert.equal(added, 4_499, 'each new (name, host) counted once');
  const entries = await kysely.selectFrom('software_name_index').select(['name', 'host_id']).execute();
  assert.deepEqual(entries.map((entry) => `${entry.name}@${entry.host_id}`).sort(), expected, 'every pair, each once');
  assert.deepEqual(await pending(kysely), [], 'every range the batch read went');
  assert.ok(turns >= 3, `the event loop ran between statements (${turns} turns)`);
});

conformance('name index: names with quotes, commas, braces, backslashes, NULL-like words and characters beyond U+FFFF are indexed as they are', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_odd');
  const names = ['a "quoted", name', '{braced}', 'back\\slash', 'NULL', 'ünïcödé', 'emoji-\u{1F600}', 'private-\u{E000}', "it's"];
  await addChunk(kysely, { scanId: 'scan-odd', hostId: 'hst_odd', chunkIndex: 0, packages: names.map((name) => pkg(name)), isLast: true, now: AT });
  assert.equal(await indexNames(kysely), names.length);
  const entries = await kysely.selectFrom('software_name_index').select('name').where('host_id', '=', 'hst_odd').execute();
  assert.deepEqual(entries.map((entry) => entry.name).sort(), [...names].sort());
  for (const name of names) assert.deepEqual(await search(kysely, name), ['hst_odd:1.0'], name);
});

conformance('inventory store: a package back after removal is found through the index it kept; only rows new to the table are pending', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_b');
  await insertHost(kysely, 'hst_c');
  await addChunk(kysely, { scanId: 'scan-b1', hostId: 'hst_b', chunkIndex: 0, packages: [pkg('a'), pkg('b')], isLast: true, now: AT });
  assert.equal(await indexNames(kysely), 2);
  await addChunk(kysely, { scanId: 'scan-b2', hostId: 'hst_b', chunkIndex: 0, packages: [pkg('a')], isLast: true, now: AT + 1 });
  // Another host's rows land between: a range is read for its own host only.
  await addChunk(kysely, { scanId: 'scan-c1', hostId: 'hst_c', chunkIndex: 0, packages: [pkg('b'), pkg('z')], isLast: true, now: AT + 2 });
  const back = await addChunk(kysely, { scanId: 'scan-b3', hostId: 'hst_b', chunkIndex: 0, packages: [pkg('a'), pkg('b'), pkg('c')], isLast: true, now: AT + 3 });
  assert.equal(back.added, 2, 'b back after removal and c new both count as added');
  assert.deepEqual(await pending(kysely), ['b@hst_c', 'c@hst_b', 'z@hst_c'], 'b of hst_b kept its row and its entry: not pending again');
  assert.deepEqual(await search(kysely, 'b'), ['hst_b:1.0', 'hst_c:1.0']);
  assert.equal(await indexNames(kysely), 3);
  assert.deepEqual(await pending(kysely), []);
  assert.deepEqual(await search(kysely, 'c'), ['hst_b:1.0']);
});

for (const backend of backends()) {
  test(`migrations 015 and 016 index the pairs the name index lacks: a row the old high-water mark skipped is found through the index [${backend.name}]`, async () => {
    const opened = await backend.open(BEFORE_PENDING_FLAG);
    try {
      const { kysely } = opened;
      await insertHost(kysely, 'hst_m');
      await kysely.insertInto('software_scans').values({ id: 'scan-m', host_id: 'hst_m', task_id: '', started_at: AT, updated_at: AT, completed_at: AT, status: 'completed' }).execute();
      const { seq } = await kysely.selectFrom('software_scans').select('seq').executeTakeFirstOrThrow();
      const row = { host_id: 'hst_m', version: '1', source: 'dpkg', architecture: 'amd64', publisher: '', first_seen: AT, last_seen: AT, last_seen_scan: seq };
      await kysely.insertInto('software_packages').values([{ ...row, name: 'indexed' }, { ...row, name: 'skipped' }]).execute();
      await kysely.insertInto('software_name_index').values({ name: 'indexed', host_id: 'hst_m' }).execute();
      // The old mark past both rows: "skipped" is the row a late commit left out of the index.
      await sql`UPDATE software_name_index_state SET indexed_through = (SELECT max(id) FROM software_packages)`.execute(kysely);
      // 015 makes pending the pair the index lacks; 016 indexes the pending pairs before it drops their list.
      await opened.migrateTo();
      assert.deepEqual(await kysely.selectFrom('software_name_index').select('name').orderBy('name').execute(), [{ name: 'indexed' }, { name: 'skipped' }]);
      assert.deepEqual(await search(kysely, 'skipped'), ['hst_m:1']);
      assert.deepEqual(await pending(kysely), []);
      assert.equal(await indexNames(kysely), 0, 'nothing left pending');
    } finally {
      await opened.close();
    }
  });
}

onPostgres('a package row whose lower id commits after a higher one is still indexed and found by search', async (kysely) => {
  await insertHost(kysely, 'hst_early');
  await insertHost(kysely, 'hst_late');
  // T1 takes the lower id and stays open; T2 takes the next id and commits first.
  const t1 = await chunkHeldOpen(kysely, { scanId: 'scan-late', hostId: 'hst_late', taskId: '', chunkIndex: 0, packages: [pkg('late-commit')], isLast: true, now: AT });
  try {
    await addChunk(kysely, { scanId: 'scan-early', hostId: 'hst_early', chunkIndex: 0, packages: [pkg('early-commit')], isLast: true, now: AT });
    assert.equal(await indexNames(kysely), 1, 'the committed row is indexed; the open one is not visible');
    assert.deepEqual(await search(kysely, 'early-commit'), ['hst_early:1.0']);
  } finally {
    t1.commit();
    await t1.result;
  }
  const ids = await kysely.selectFrom('software_packages').select(['name', 'id']).orderBy('id').execute();
  assert.deepEqual(ids.map((row) => row.name), ['late-commit', 'early-commit'], 'the row committed last has the lower id');
  assert.deepEqual(await pending(kysely), ['late-commit@hst_late'], 'the late row is pending, not passed over');
  assert.deepEqual(await search(kysely, 'late-commit'), ['hst_late:1.0'], 'found as a pending row');
  assert.equal(await indexNames(kysely), 1);
  assert.deepEqual(await kysely.selectFrom('software_name_index').select(['name', 'host_id']).orderBy('name').execute(),
    [{ name: 'early-commit', host_id: 'hst_early' }, { name: 'late-commit', host_id: 'hst_late' }]);
  assert.deepEqual(await search(kysely, 'late-commit'), ['hst_late:1.0'], 'found through the index');
  assert.deepEqual(await pending(kysely), []);
});

onPostgres('the same chunk delivered twice at once (an agent failing over mid-scan) is stored once; the second is out of order', async (kysely) => {
  await insertHost(kysely, 'hst_f');
  await addChunk(kysely, { scanId: 'scan-f', hostId: 'hst_f', chunkIndex: 0, packages: [pkg('a')], isLast: false, now: AT });
  const chunk = { scanId: 'scan-f', hostId: 'hst_f', taskId: '', chunkIndex: 1, packages: [pkg('b'), pkg('c')], isLast: false, now: AT + 1 };
  // The first delivery's transaction stays open after writing; the second one starts and waits on its rows.
  const first = await chunkHeldOpen(kysely, chunk);
  const second = addChunk(kysely, chunk);
  const secondSettled = second.then(() => 'stored', () => 'refused');
  assert.equal(await Promise.race([secondSettled, new Promise((resolve) => setTimeout(() => resolve('waiting'), 300))]), 'waiting', 'the second delivery waits for the first');
  first.commit();
  const stored = await first.result;
  assert.deepEqual([stored.added, stored.scan.chunks], [2, 2]);
  await assert.rejects(second, (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVENTORY_SCAN_OUT_OF_ORDER');
  const scan = (await new SoftwareInventoryStore(kysely, dialectOf(kysely)).getScan('scan-f'))!;
  assert.deepEqual([scan.chunks, scan.packagesReceived, scan.added, scan.skipped], [2, 3, 3, []], 'counted once');
});
