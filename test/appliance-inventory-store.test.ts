import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pino from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { InventoryService } from '../appliance/inventory/service.ts';
import { PresenceRegistry } from '../appliance/presence/registry.ts';
import { TaskService } from '../appliance/tasks/service.ts';
import { openDatabase } from '../appliance/store/database.ts';
import { HostStore } from '../appliance/store/hosts.ts';
import { openStores, type SqliteStores } from '../appliance/store/index.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { OrganisationStore } from '../appliance/store/organisations.ts';
import type { PackageInput } from '../appliance/model/inventory.ts';
import { addChunk, closeScan, indexNames } from './helpers/inventory-store.ts';
import { singleInstance } from './helpers/single-instance.ts';
import { sqliteKysely } from '../appliance/store/dialects.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-inventory-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let hostCounter = 0;
async function addHost(hosts: HostStore, orgId: string, approval: 'active' | 'pending' = 'active'): Promise<string> {
  hostCounter += 1;
  const id = `hst_inventory${String(hostCounter).padStart(4, '0')}`;
  const publicKey = Buffer.alloc(32, hostCounter);
  await hosts.insert({ id, orgId, publicKey, hostname: `h${hostCounter}`, machineFingerprint: `fp${hostCounter}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval, enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
  return id;
}

function pkgs(from: number, to: number, extra: Partial<PackageInput> = {}): PackageInput[] {
  return Array.from({ length: to - from }, (_, i) => ({ name: `p${from + i}`, version: '1', source: 'dpkg', architecture: 'amd64', publisher: '', installDate: null, ...extra }));
}

async function inventoryService(stores: SqliteStores): Promise<InventoryService> {
  const log = pino({ level: 'silent' });
  const presence = new PresenceRegistry(() => undefined);
  return new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log, cluster: await singleInstance(stores, log) }), log });
}

async function freshStores(name: string): Promise<{ stores: SqliteStores; hostId: string }> {
  const stores = openStores(join(dir, name));
  const org = await stores.organisations.ensureDefault(1);
  return { stores, hostId: await addHost(stores.hosts, org.id) };
}

test('a version-1 database with hosts migrates to the inventory schema, keeping its data', async () => {
  const path = join(dir, 'v1.db');
  const v1 = openDatabase(path, MIGRATIONS.filter((migration) => migration.version === 1));
  assert.equal(v1.pragma('user_version', { simple: true }), 1);
  const org = await new OrganisationStore(sqliteKysely(v1)).ensureDefault(1);
  // Written with the version-1 columns: today's HostStore prepares statements for the current schema.
  hostCounter += 1;
  const hostId = `hst_inventory${String(hostCounter).padStart(4, '0')}`;
  v1.prepare(
    `INSERT INTO hosts (id, org_id, public_key, hostname, machine_fingerprint, os, arch, agent_version, approval, tags, enrolled_at, last_registered_at)
     VALUES (?, ?, ?, ?, 'fp', 'linux', 'x64', '0.1.0', 'active', '{}', 1, 1)`,
  ).run(hostId, org.id, Buffer.alloc(32, hostCounter), `h${hostCounter}`);
  v1.prepare('INSERT INTO host_vitals (host_id, received_at, agent_timestamp, cpu_percent, memory_percent, disk_percent, uptime_seconds) VALUES (?, 1, 1, 1, 1, 1, 1)').run(hostId);
  v1.close();

  const stores = openStores(path);
  try {
    assert.equal(stores.db.pragma('user_version', { simple: true }), MIGRATIONS.at(-1)!.version);
    assert.equal(await stores.softwareInventory.lastInventoryAt(hostId), null);
    const result = await addChunk(stores, { scanId: 'scan-migrated', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 3), isLast: true, now: 10 });
    assert.equal((await stores.hosts.get(hostId))?.hostname, `h${hostCounter}`);
    assert.equal((await stores.vitals.recent(hostId, 10)).length, 1);
    assert.equal(result.scan.status, 'completed');
    assert.equal(await stores.softwareInventory.lastInventoryAt(hostId), 10);
    // Deleting the host takes its packages and scans with it.
    stores.db.prepare('DELETE FROM host_vitals WHERE host_id = ?').run(hostId);
    stores.db.prepare('DELETE FROM hosts WHERE id = ?').run(hostId);
    assert.equal(stores.db.prepare('SELECT count(*) AS n FROM software_packages').pluck().get(), 0);
    assert.equal(stores.db.prepare('SELECT count(*) AS n FROM software_scans').pluck().get(), 0);
  } finally {
    stores.close();
  }
});

test('upsert keeps first_seen, refreshes the rest, and counts added, unchanged, removed and re-added', async () => {
  const { stores, hostId } = await freshStores('counts.db');
  const inventory = stores.softwareInventory;
  try {
    await addChunk(stores, { scanId: 'scan-one-0001', taskId: 't', hostId, chunkIndex: 0, packages: pkgs(0, 5), isLast: false, now: 100 });
    const one = await addChunk(stores, { scanId: 'scan-one-0001', taskId: 't', hostId, chunkIndex: 1, packages: pkgs(5, 10), isLast: true, now: 110 });
    assert.deepEqual([one.scan.added, one.scan.unchanged, one.scan.removed, one.scan.packagesReceived, one.scan.chunks], [10, 0, 0, 10, 2]);

    const two = await addChunk(stores, { scanId: 'scan-two-0002', taskId: 't', hostId, chunkIndex: 0, packages: pkgs(2, 10, { publisher: 'New Co', installDate: 1_700_000_000 }), isLast: true, now: 200 });
    assert.deepEqual([two.scan.added, two.scan.unchanged, two.scan.removed], [0, 8, 2]);
    const p2 = (await inventory.packages(hostId)).find((pkg) => pkg.name === 'p2')!;
    assert.deepEqual([p2.firstSeen, p2.lastSeen, p2.publisher, p2.installDate], [100, 200, 'New Co', 1_700_000_000]);
    const p0 = (await inventory.packages(hostId)).find((pkg) => pkg.name === 'p0')!;
    assert.deepEqual([p0.isRemoved, p0.removedAt, p0.firstSeen], [true, 200, 100]);

    // p0 comes back: added again, first_seen still the original one, no longer removed.
    const three = await addChunk(stores, { scanId: 'scan-three-03', taskId: 't', hostId, chunkIndex: 0, packages: [...pkgs(0, 1), ...pkgs(2, 10)], isLast: true, now: 300 });
    assert.deepEqual([three.scan.added, three.scan.unchanged, three.scan.removed], [1, 8, 0]);
    const back = (await inventory.packages(hostId)).find((pkg) => pkg.name === 'p0')!;
    assert.deepEqual([back.isRemoved, back.removedAt, back.firstSeen, back.lastSeen], [false, null, 100, 300]);
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, 9);
    assert.equal(await inventory.lastInventoryAt(hostId), 300);
  } finally {
    stores.close();
  }
});

test('an abandoned or failed scan marks nothing removed and never stamps the last inventory', async () => {
  const { stores, hostId } = await freshStores('abandon.db');
  const inventory = stores.softwareInventory;
  try {
    await addChunk(stores, { scanId: 'scan-base-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 10), isLast: true, now: 100 });
    await addChunk(stores, { scanId: 'scan-part-002', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: false, now: 200 });
    assert.equal(await closeScan(stores, 'scan-part-002', hostId, 'cut_off', 'ERR_INVALID_ARGUMENT', 210), true);
    assert.equal((await inventory.getScan('scan-part-002'))!.status, 'abandoned');
    assert.equal((await inventory.packages(hostId)).filter((pkg) => pkg.isRemoved).length, 0);
    assert.equal(await inventory.lastInventoryAt(hostId), 100);

    // Resumed at the next chunk, it completes.
    const resumed = await addChunk(stores, { scanId: 'scan-part-002', taskId: '', hostId, chunkIndex: 1, packages: pkgs(2, 9), isLast: true, now: 300 });
    assert.deepEqual([resumed.scan.status, resumed.scan.removed, resumed.scan.chunks], ['completed', 1, 2]);

    await addChunk(stores, { scanId: 'scan-fail-003', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 1), isLast: false, now: 400 });
    await closeScan(stores, 'scan-fail-003', hostId, 'refused', 'ERR_INVALID_ARGUMENT', 410);
    await assert.rejects(
      addChunk(stores, { scanId: 'scan-fail-003', taskId: '', hostId, chunkIndex: 1, packages: pkgs(0, 1), isLast: true, now: 420 }),
      (error: unknown) => error instanceof CtOpsError && error.details.reason === 'scan_failed',
    );
    assert.equal(await inventory.lastInventoryAt(hostId), 300);
  } finally {
    stores.close();
  }
});

test('an empty scan is refused whole: it would wipe the inventory', async () => {
  const { stores, hostId } = await freshStores('empty.db');
  const inventory = stores.softwareInventory;
  try {
    await addChunk(stores, { scanId: 'scan-base-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 10), isLast: true, now: 100 });
    await assert.rejects(
      addChunk(stores, { scanId: 'scan-empty-02', taskId: '', hostId, chunkIndex: 0, packages: [], isLast: true, now: 200 }),
      (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVALID_ARGUMENT' && error.details.reason === 'scan_empty',
    );
    assert.equal(await inventory.getScan('scan-empty-02'), undefined);
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, 10);
  } finally {
    stores.close();
  }
});

test("scans are bound to their host, in order, and refused once completed or when the host is not active", async () => {
  const { stores, hostId } = await freshStores('bound.db');
  const inventory = stores.softwareInventory;
  const other = await addHost(stores.hosts, (await stores.organisations.ensureDefault(1)).id);
  const pending = await addHost(stores.hosts, (await stores.organisations.ensureDefault(1)).id, 'pending');
  const refusedWith = (reason: string) => (error: unknown) => error instanceof CtOpsError && error.details.reason === reason;
  try {
    await addChunk(stores, { scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: false, now: 1 });
    await assert.rejects(addChunk(stores, { scanId: 'scan-mine-001', taskId: '', hostId: other, chunkIndex: 1, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('scan_conflict'));
    await assert.rejects(addChunk(stores, { scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 2, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('chunk_out_of_order'));
    await assert.rejects(addChunk(stores, { scanId: 'scan-none-001', taskId: '', hostId, chunkIndex: 1, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('chunk_out_of_order'));
    await addChunk(stores, { scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 1, packages: pkgs(2, 4), isLast: true, now: 3 });
    await assert.rejects(addChunk(stores, { scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: true, now: 4 }), refusedWith('scan_completed'));
    assert.equal((await inventory.packages(other)).length, 0);
    // Whether the host may report is the service's question, asked in the chunk's own transaction.
    const service = await inventoryService(stores);
    const chunk = { scanId: 'scan-pend-001', taskId: '', chunkIndex: 0, packages: pkgs(0, 2), skipped: [], isLast: true };
    await assert.rejects(service.acceptChunk(pending, chunk, { now: 5, opensStream: true }), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_AGENT_NOT_ACTIVE');
    await stores.hosts.markDeleted(other, 6, 'admin');
    await assert.rejects(service.acceptChunk(other, { ...chunk, scanId: 'scan-gone-001' }, { now: 6, opensStream: true }), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_AGENT_NOT_ACTIVE');
    assert.equal(await inventory.getScan('scan-pend-001'), undefined);
    assert.equal(await inventory.getScan('scan-gone-001'), undefined);
  } finally {
    stores.close();
  }
});

test('a name-index run asked for while one runs is that run, which then takes the ranges committed meanwhile: each range indexed once', async () => {
  const { stores, hostId } = await freshStores('name-runs.db');
  const other = await addHost(stores.hosts, (await stores.organisations.ensureDefault(1)).id);
  const count = (sql: string): number => stores.db.prepare(sql).pluck().get() as number;
  try {
    const service = await inventoryService(stores);
    for (let chunkIndex = 0; chunkIndex < 8; chunkIndex += 1) {
      await addChunk(stores, { scanId: 'scan-runs-001', taskId: '', hostId, chunkIndex, packages: pkgs(chunkIndex * 500, (chunkIndex + 1) * 500), isLast: chunkIndex === 7, now: 1 });
    }
    const running = service.indexNames();
    assert.equal(service.indexNames(), running, 'a second call while the first runs joins it');
    // The run reads its ranges one statement at a time: a chunk commits while it is under way.
    await new Promise((resolve) => setImmediate(resolve));
    await addChunk(stores, { scanId: 'scan-runs-002', taskId: '', hostId: other, chunkIndex: 0, packages: pkgs(0, 300), isLast: true, now: 1 });
    assert.equal(service.indexNames(), running, 'still the same run');
    assert.equal(await running, 4_300, 'both hosts\' names, each once');
    assert.equal(count('SELECT count(*) FROM software_name_index'), 4_300);
    assert.equal(count('SELECT count(*) FROM software_name_pending_ranges'), 0, 'the range committed during the run was taken by it');
    assert.equal(await service.indexNames(), 0, 'a later run finds nothing');
  } finally {
    stores.close();
  }
});

test('"which hosts have package X" is exact before and after the names are indexed in bulk', async () => {
  const { stores, hostId } = await freshStores('by-name.db');
  const inventory = stores.softwareInventory;
  const other = await addHost(stores.hosts, (await stores.organisations.ensureDefault(1)).id);
  const hostsOf = async (name: string): Promise<string[]> => (await inventory.hostsWithPackage(name)).map((pkg) => `${pkg.hostId}:${pkg.version}`).sort();
  try {
    await addChunk(stores, { scanId: 'scan-name-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 5), isLast: true, now: 1 });
    await addChunk(stores, { scanId: 'scan-name-002', taskId: '', hostId: other, chunkIndex: 0, packages: pkgs(3, 8), isLast: true, now: 1 });
    assert.deepEqual(await hostsOf('p3'), [`${hostId}:1`, `${other}:1`].sort());
    assert.ok((await indexNames(stores)) > 0);
    assert.deepEqual(await hostsOf('p3'), [`${hostId}:1`, `${other}:1`].sort());
    // A new version after indexing, and a removal: both visible at once, no duplicates.
    await addChunk(stores, { scanId: 'scan-name-003', taskId: '', hostId, chunkIndex: 0, packages: [...pkgs(0, 3), ...pkgs(3, 4, { version: '2' })], isLast: true, now: 2 });
    assert.deepEqual(await hostsOf('p3'), [`${hostId}:2`, `${other}:1`].sort());
    assert.deepEqual(await hostsOf('p4'), [`${other}:1`]);
    assert.equal(await indexNames(stores), 0);
    assert.deepEqual(await hostsOf('p3'), [`${hostId}:2`, `${other}:1`].sort());
    stores.db.prepare('DELETE FROM hosts WHERE id = ?').run(other);
    assert.deepEqual(await hostsOf('p3'), [`${hostId}:2`]);
  } finally {
    stores.close();
  }
});

test('duplicates inside one upsert statement and across the statements of a chunk are counted once', async () => {
  const { stores, hostId } = await freshStores('duplicates-across-batches.db');
  try {
    const list = pkgs(0, 248);
    // 250 packages upserted as 100 + 100 + 50 rows: p5 repeats in another statement, p6 in the same one.
    const chunk = [...list.slice(0, 7), list[6]!, ...list.slice(7, 149), list[5]!, ...list.slice(149)];
    assert.equal(chunk.length, 250);
    const first = await addChunk(stores, { scanId: 'dup-1', taskId: '', hostId, chunkIndex: 0, packages: chunk, isLast: true, now: 10 });
    assert.deepEqual([first.added, first.unchanged, first.duplicates], [248, 0, 2]);
    const again = await addChunk(stores, { scanId: 'dup-2', taskId: '', hostId, chunkIndex: 0, packages: chunk, isLast: true, now: 20 });
    assert.deepEqual([again.added, again.unchanged, again.duplicates, again.scan.removed], [0, 248, 2, 0]);
    assert.equal((await stores.softwareInventory.packages(hostId)).length, 248);
  } finally {
    stores.close();
  }
});

test('a scan moves only as its transition table allows: a closing event that no longer applies changes nothing', async () => {
  const { stores, hostId } = await freshStores('transitions.db');
  const inventory = stores.softwareInventory;
  const status = async (scanId: string) => (await inventory.getScan(scanId))?.status;
  try {
    await addChunk(stores, { scanId: 'scan-done-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 5), isLast: true, now: 10 });
    assert.equal(await closeScan(stores, 'scan-done-001', hostId, 'cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE', 11), false, 'a completed scan stays completed');
    assert.equal(await closeScan(stores, 'scan-done-001', hostId, 'over_limits', 'ERR_INVENTORY_SCAN_TOO_LARGE', 11), false);
    assert.equal(await status('scan-done-001'), 'completed');

    // Cut off, then refused: abandoned is not a status `refused` applies to; over the limits it is, and what the scan added goes.
    await addChunk(stores, { scanId: 'scan-cut-0002', taskId: '', hostId, chunkIndex: 0, packages: pkgs(3, 8), isLast: false, now: 20 });
    assert.equal(await closeScan(stores, 'scan-cut-0002', hostId, 'cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE', 21), true);
    assert.equal(await closeScan(stores, 'scan-cut-0002', hostId, 'refused', 'ERR_INVALID_ARGUMENT', 22), false);
    assert.equal(await status('scan-cut-0002'), 'abandoned');
    assert.equal(await closeScan(stores, 'scan-cut-0002', 'hst_someone_else', 'over_limits', 'ERR_INVENTORY_SCAN_TOO_LARGE', 23), false, "another host's scan is not closed");
    assert.equal(await closeScan(stores, 'scan-cut-0002', hostId, 'over_limits', 'ERR_INVENTORY_SCAN_TOO_LARGE', 23), true);
    assert.equal(await status('scan-cut-0002'), 'failed');
    assert.deepEqual((await inventory.packages(hostId)).map((pkg) => [pkg.name, pkg.isRemoved]), [['p0', false], ['p1', false], ['p2', false], ['p3', false], ['p4', false]], 'p5-p7, which only the failed scan saw, are gone; p3 and p4 stay');

    // At start-up every scan still receiving is abandoned, and only those.
    await addChunk(stores, { scanId: 'scan-open-003', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: false, now: 30 });
    assert.equal(await inventory.abandonOpenScans(31), 1);
    assert.deepEqual([await status('scan-open-003'), await status('scan-done-001'), await status('scan-cut-0002')], ['abandoned', 'completed', 'failed']);
  } finally {
    stores.close();
  }
});
