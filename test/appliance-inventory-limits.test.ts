import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { DATABASE_FILE } from '../appliance/serve.ts';
import { openStores } from '../appliance/store/index.ts';
import { HOST_INVENTORY_LIMITS, type PackageInput } from '../appliance/model/inventory.ts';
import { sqliteKysely } from '../appliance/store/dialects.ts';
import { SoftwareInventoryStore } from '../appliance/store/software-inventory.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { addChunk } from './helpers/inventory-store.ts';
import { chunksOf, packages, submitScan, type InventoryOutcome } from './helpers/inventory.ts';

const DAY_MS = 86_400_000;

function refusedWith(outcome: InventoryOutcome, errorCode: string): void {
  assert.equal(outcome.ok, false, `expected a refusal, got ${JSON.stringify(outcome)}`);
  if (outcome.ok) return;
  assert.equal(outcome.code, GrpcCode.RESOURCE_EXHAUSTED);
  assert.equal(codeFromGrpcDetails(outcome.details), errorCode);
}

describe('one host cannot fill the disk with inventory (real appliance)', () => {
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
  /** What the appliance stored, read through a second, read-only handle (WAL allows it beside the appliance's own). */
  let store: SoftwareInventoryStore;
  let db: Database.Database | undefined;
  before(() => {
    db = new Database(join(ingest.appliance.dataDir, DATABASE_FILE), { readonly: true });
    store = new SoftwareInventoryStore(sqliteKysely(db), 'sqlite');
  });
  after(() => db?.close());
  const enrol = async (hostname: string) => {
    const { hostId, jwt } = await ingest.enrol({ hostname });
    return { agentId: hostId, jwt };
  };

  test('a scan of 50,000 long-field packages is refused with ERR_INVENTORY_SCAN_TOO_LARGE and leaves nothing; the host keeps its last inventory', async () => {
    const { agentId, jwt } = await enrol('inv-huge');
    const base = await submitScan(ingest.client, jwt, chunksOf(agentId, randomUUID(), packages(0, 100)));
    assert.ok(base.ok);
    const long = { version: 'v'.repeat(256), publisher: 'P'.repeat(512) };
    const huge = Array.from({ length: 50_000 }, (_, index) => ({ ...packages(0, 1, long)[0]!, name: `${'n'.repeat(500)}-${index}` }));
    const scanId = randomUUID();
    refusedWith(await submitScan(ingest.client, jwt, chunksOf(agentId, scanId, huge)), 'ERR_INVENTORY_SCAN_TOO_LARGE');
    const kept = await store.packages(agentId);
    assert.equal(kept.length, 100, 'nothing of the refused scan stays');
    assert.ok(kept.every((pkg) => !pkg.isRemoved && pkg.name.startsWith('pkg-')), 'the last inventory is untouched');
    const scan = (await store.getScan(scanId))!;
    assert.equal(scan.status, 'failed');
    assert.equal(scan.errorCode, 'ERR_INVENTORY_SCAN_TOO_LARGE');
  });

  test('scans abandoned mid-way cannot pile up installed packages past the per-host limit', { timeout: 120_000 }, async () => {
    const { agentId, jwt } = await enrol('inv-abandoned');
    const perScan = 15_000;
    const outcomes: InventoryOutcome[] = [];
    for (let round = 0; round < 3; round += 1) {
      // Never the last chunk: the stream ends without is_last, so nothing is marked removed.
      const chunks = chunksOf(agentId, randomUUID(), packages(round * perScan, (round + 1) * perScan)).map((chunk) => ({ ...chunk, is_last: false }));
      outcomes.push(await submitScan(ingest.client, jwt, chunks));
    }
    assert.equal(codeFromGrpcDetails(outcomes[0]!.ok ? '' : outcomes[0]!.details), 'ERR_INVENTORY_SCAN_INCOMPLETE');
    assert.equal(codeFromGrpcDetails(outcomes[1]!.ok ? '' : outcomes[1]!.details), 'ERR_INVENTORY_SCAN_INCOMPLETE');
    refusedWith(outcomes[2]!, 'ERR_INVENTORY_SCAN_TOO_LARGE');
    const live = (await store.packages(agentId, { liveOnly: true })).length;
    assert.equal(live, 2 * perScan, 'the refused third scan left nothing');
    assert.ok(live <= HOST_INVENTORY_LIMITS.livePackages);
  });

  test('the removed-package retention is an organisation setting with API and CLI, refused out of range', async () => {
    assert.equal((await ingest.appliance.cliJson<{ removed_retention_days: number }>('settings', 'inventory')).removed_retention_days, 90);
    const changed = await ingest.appliance.cliJson<{ removed_retention_days: number; interval_hours: number }>('settings', 'inventory', '--removed-retention-days', '30');
    assert.equal(changed.removed_retention_days, 30);
    assert.equal(changed.interval_hours, 24, 'the other settings stay');
    for (const days of ['0', '3651', '1.5']) {
      const refused = await ingest.appliance.cli('settings', 'inventory', '--removed-retention-days', days, '--json');
      assert.equal(refused.code, 65, `${days}: ${refused.stderr}`);
      assert.match(refused.stderr, /ERR_INVALID_ARGUMENT/);
    }
    assert.equal((await ingest.appliance.cliJson<{ removed_retention_days: number }>('settings', 'inventory')).removed_retention_days, 30);
  });
});

describe('removed packages are purged (store on a real SQLite file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-inventory-limits-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function freshHost(name: string) {
    const stores = openStores(join(dir, name));
    const org = await stores.organisations.ensureDefault(1);
    const hostId = 'hst_limits0001';
    await stores.hosts.insert({ id: hostId, orgId: org.id, publicKey: Buffer.alloc(32, 7), hostname: 'h', machineFingerprint: 'fp', os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    return { stores, hostId };
  }

  const pkgs = (names: readonly string[]): PackageInput[] => names.map((name) => ({ name, version: '1', source: 'dpkg', architecture: 'amd64', publisher: '', installDate: null }));

  test('removed rows older than the retention are purged when a scan completes; newer ones are kept', async () => {
    const { stores, hostId } = await freshHost('retention.db');
    const inventory = stores.softwareInventory;
    const retention = 90 * DAY_MS;
    const scan = (id: string, names: string[], day: number) =>
      addChunk(stores, { scanId: id, taskId: '', hostId, chunkIndex: 0, packages: pkgs(names), isLast: true, now: day * DAY_MS, removedRetentionMs: retention });
    await scan('scan-day-000', ['a', 'b', 'c'], 0);
    await scan('scan-day-010', ['a', 'b'], 10); // c removed on day 10
    await scan('scan-day-050', ['a'], 50); // b removed on day 50
    assert.deepEqual((await inventory.packages(hostId)).map((pkg) => [pkg.name, pkg.isRemoved]), [['a', false], ['b', true], ['c', true]], 'all within 90 days');
    await scan('scan-day-101', ['a'], 101); // day 101 - 90 = day 11: c (day 10) goes, b (day 50) stays
    assert.deepEqual((await inventory.packages(hostId)).map((pkg) => [pkg.name, pkg.isRemoved]), [['a', false], ['b', true]]);
    stores.close();
  });

  test('removed rows beyond the per-host cap go oldest first, whatever the retention', async () => {
    const { stores, hostId } = await freshHost('removed-cap.db');
    const inventory = stores.softwareInventory;
    const cap = HOST_INVENTORY_LIMITS.removedPackages;
    const names = (round: number) => Array.from({ length: cap }, (_, index) => `r${round}-${index}`);
    const scan = async (round: number, now: number) => {
      const all = names(round);
      for (let index = 0; index * 500 < all.length; index += 1) {
        await addChunk(stores, { scanId: `scan-round-${round}`, taskId: '', hostId, chunkIndex: index, packages: pkgs(all.slice(index * 500, (index + 1) * 500)), isLast: (index + 1) * 500 >= all.length, now });
      }
    };
    await scan(0, 1_000);
    await scan(1, 2_000); // round 0 removed at 2,000
    await scan(2, 3_000); // round 1 removed at 3,000: 2 x cap removed, the older round goes
    const removed = (await inventory.packages(hostId)).filter((pkg) => pkg.isRemoved);
    assert.equal(removed.length, cap);
    assert.ok(removed.every((pkg) => pkg.name.startsWith('r1-')), 'the newest removals are the ones kept');
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, cap);
    stores.close();
  });
});
