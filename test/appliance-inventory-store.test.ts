import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { openDatabase } from '../appliance/store/database.ts';
import { HostStore } from '../appliance/store/hosts.ts';
import { openStores, type Stores } from '../appliance/store/index.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { OrganisationStore } from '../appliance/store/organisations.ts';
import { sqliteKysely } from '../appliance/store/dialects.ts';
import type { PackageInput } from '../appliance/store/software-inventory.ts';

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

async function freshStores(name: string): Promise<{ stores: Stores; hostId: string }> {
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
    assert.equal((await stores.hosts.get(hostId))?.hostname, `h${hostCounter}`);
    assert.equal((await stores.vitals.recent(hostId, 10)).length, 1);
    assert.equal(stores.softwareInventory.lastInventoryAt(hostId), null);
    const result = stores.softwareInventory.addChunk({ scanId: 'scan-migrated', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 3), isLast: true, now: 10 });
    assert.equal(result.scan.status, 'completed');
    assert.equal(stores.softwareInventory.lastInventoryAt(hostId), 10);
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
    inventory.addChunk({ scanId: 'scan-one-0001', taskId: 't', hostId, chunkIndex: 0, packages: pkgs(0, 5), isLast: false, now: 100 });
    const one = inventory.addChunk({ scanId: 'scan-one-0001', taskId: 't', hostId, chunkIndex: 1, packages: pkgs(5, 10), isLast: true, now: 110 });
    assert.deepEqual([one.scan.added, one.scan.unchanged, one.scan.removed, one.scan.packagesReceived, one.scan.chunks], [10, 0, 0, 10, 2]);

    const two = inventory.addChunk({ scanId: 'scan-two-0002', taskId: 't', hostId, chunkIndex: 0, packages: pkgs(2, 10, { publisher: 'New Co', installDate: 1_700_000_000 }), isLast: true, now: 200 });
    assert.deepEqual([two.scan.added, two.scan.unchanged, two.scan.removed], [0, 8, 2]);
    const p2 = inventory.packages(hostId).find((pkg) => pkg.name === 'p2')!;
    assert.deepEqual([p2.firstSeen, p2.lastSeen, p2.publisher, p2.installDate], [100, 200, 'New Co', 1_700_000_000]);
    const p0 = inventory.packages(hostId).find((pkg) => pkg.name === 'p0')!;
    assert.deepEqual([p0.isRemoved, p0.removedAt, p0.firstSeen], [true, 200, 100]);

    // p0 comes back: added again, first_seen still the original one, no longer removed.
    const three = inventory.addChunk({ scanId: 'scan-three-03', taskId: 't', hostId, chunkIndex: 0, packages: [...pkgs(0, 1), ...pkgs(2, 10)], isLast: true, now: 300 });
    assert.deepEqual([three.scan.added, three.scan.unchanged, three.scan.removed], [1, 8, 0]);
    const back = inventory.packages(hostId).find((pkg) => pkg.name === 'p0')!;
    assert.deepEqual([back.isRemoved, back.removedAt, back.firstSeen, back.lastSeen], [false, null, 100, 300]);
    assert.equal(inventory.packages(hostId, { liveOnly: true }).length, 9);
    assert.equal(inventory.lastInventoryAt(hostId), 300);
  } finally {
    stores.close();
  }
});

test('an abandoned or failed scan marks nothing removed and never stamps the last inventory', async () => {
  const { stores, hostId } = await freshStores('abandon.db');
  const inventory = stores.softwareInventory;
  try {
    inventory.addChunk({ scanId: 'scan-base-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 10), isLast: true, now: 100 });
    inventory.addChunk({ scanId: 'scan-part-002', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: false, now: 200 });
    assert.equal(inventory.closeScan('scan-part-002', hostId, 'abandoned', 'ERR_INVALID_ARGUMENT', 210), true);
    assert.equal(inventory.getScan('scan-part-002')!.status, 'abandoned');
    assert.equal(inventory.packages(hostId).filter((pkg) => pkg.isRemoved).length, 0);
    assert.equal(inventory.lastInventoryAt(hostId), 100);

    // Resumed at the next chunk, it completes.
    const resumed = inventory.addChunk({ scanId: 'scan-part-002', taskId: '', hostId, chunkIndex: 1, packages: pkgs(2, 9), isLast: true, now: 300 });
    assert.deepEqual([resumed.scan.status, resumed.scan.removed, resumed.scan.chunks], ['completed', 1, 2]);

    inventory.addChunk({ scanId: 'scan-fail-003', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 1), isLast: false, now: 400 });
    inventory.closeScan('scan-fail-003', hostId, 'failed', 'ERR_INVALID_ARGUMENT', 410);
    assert.throws(
      () => inventory.addChunk({ scanId: 'scan-fail-003', taskId: '', hostId, chunkIndex: 1, packages: pkgs(0, 1), isLast: true, now: 420 }),
      (error: unknown) => error instanceof CtOpsError && error.details.reason === 'scan_failed',
    );
    assert.equal(inventory.lastInventoryAt(hostId), 300);
  } finally {
    stores.close();
  }
});

test('an empty scan is refused whole: it would wipe the inventory', async () => {
  const { stores, hostId } = await freshStores('empty.db');
  const inventory = stores.softwareInventory;
  try {
    inventory.addChunk({ scanId: 'scan-base-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 10), isLast: true, now: 100 });
    assert.throws(
      () => inventory.addChunk({ scanId: 'scan-empty-02', taskId: '', hostId, chunkIndex: 0, packages: [], isLast: true, now: 200 }),
      (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVALID_ARGUMENT' && error.details.reason === 'scan_empty',
    );
    assert.equal(inventory.getScan('scan-empty-02'), undefined);
    assert.equal(inventory.packages(hostId, { liveOnly: true }).length, 10);
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
    inventory.addChunk({ scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: false, now: 1 });
    assert.throws(() => inventory.addChunk({ scanId: 'scan-mine-001', taskId: '', hostId: other, chunkIndex: 1, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('scan_conflict'));
    assert.throws(() => inventory.addChunk({ scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 2, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('chunk_out_of_order'));
    assert.throws(() => inventory.addChunk({ scanId: 'scan-none-001', taskId: '', hostId, chunkIndex: 1, packages: pkgs(0, 2), isLast: true, now: 2 }), refusedWith('chunk_out_of_order'));
    inventory.addChunk({ scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 1, packages: pkgs(2, 4), isLast: true, now: 3 });
    assert.throws(() => inventory.addChunk({ scanId: 'scan-mine-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 2), isLast: true, now: 4 }), refusedWith('scan_completed'));
    assert.equal(inventory.packages(other).length, 0);
    assert.throws(
      () => inventory.addChunk({ scanId: 'scan-pend-001', taskId: '', hostId: pending, chunkIndex: 0, packages: pkgs(0, 2), isLast: true, now: 5 }),
      (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_AGENT_NOT_ACTIVE',
    );
  } finally {
    stores.close();
  }
});

test('"which hosts have package X" is exact before and after the names are indexed in bulk', async () => {
  const { stores, hostId } = await freshStores('by-name.db');
  const inventory = stores.softwareInventory;
  const other = await addHost(stores.hosts, (await stores.organisations.ensureDefault(1)).id);
  const hostsOf = (name: string): string[] => inventory.hostsWithPackage(name).map((pkg) => `${pkg.hostId}:${pkg.version}`).sort();
  try {
    inventory.addChunk({ scanId: 'scan-name-001', taskId: '', hostId, chunkIndex: 0, packages: pkgs(0, 5), isLast: true, now: 1 });
    inventory.addChunk({ scanId: 'scan-name-002', taskId: '', hostId: other, chunkIndex: 0, packages: pkgs(3, 8), isLast: true, now: 1 });
    assert.deepEqual(hostsOf('p3'), [`${hostId}:1`, `${other}:1`].sort());
    assert.ok(inventory.indexNames() > 0);
    assert.deepEqual(hostsOf('p3'), [`${hostId}:1`, `${other}:1`].sort());
    // A new version after indexing, and a removal: both visible at once, no duplicates.
    inventory.addChunk({ scanId: 'scan-name-003', taskId: '', hostId, chunkIndex: 0, packages: [...pkgs(0, 3), ...pkgs(3, 4, { version: '2' })], isLast: true, now: 2 });
    assert.deepEqual(hostsOf('p3'), [`${hostId}:2`, `${other}:1`].sort());
    assert.deepEqual(hostsOf('p4'), [`${other}:1`]);
    assert.equal(inventory.indexNames(), 0);
    assert.deepEqual(hostsOf('p3'), [`${hostId}:2`, `${other}:1`].sort());
    stores.db.prepare('DELETE FROM hosts WHERE id = ?').run(other);
    assert.deepEqual(hostsOf('p3'), [`${hostId}:2`]);
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
    const first = stores.softwareInventory.addChunk({ scanId: 'dup-1', taskId: '', hostId, chunkIndex: 0, packages: chunk, isLast: true, now: 10 });
    assert.deepEqual([first.added, first.unchanged, first.duplicates], [248, 0, 2]);
    const again = stores.softwareInventory.addChunk({ scanId: 'dup-2', taskId: '', hostId, chunkIndex: 0, packages: chunk, isLast: true, now: 20 });
    assert.deepEqual([again.added, again.unchanged, again.duplicates, again.scan.removed], [0, 248, 2, 0]);
    assert.equal(stores.softwareInventory.packages(hostId).length, 248);
  } finally {
    stores.close();
  }
});
