import assert from 'node:assert/strict';
import { after } from 'node:test';
import { PostgresAdapter, type Kysely } from 'kysely';
import { indexNameBatches } from '../appliance/inventory/name-index.ts';
import type { ChunkInput, PackageInput } from '../appliance/model/inventory.ts';
import type { DialectName } from '../appliance/store/dialects.ts';
import type { Schema } from '../appliance/store/schema.ts';
import { SoftwareInventoryStore } from '../appliance/store/software-inventory.ts';
import { TaskStore } from '../appliance/store/tasks.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_123;
const DAY_MS = 86_400_000;

const dialectOf = (kysely: Kysely<Schema>): DialectName => (kysely.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite');

async function insertHost(kysely: Kysely<Schema>, id: string, orgId: string, deletedAt: number | null = null): Promise<void> {
  await kysely.insertInto('organisations').values({ id: orgId, name: orgId, created_at: AT }).onConflict((conflict) => conflict.column('id').doNothing()).execute();
  await kysely.insertInto('hosts').values({
    id, org_id: orgId, public_key: Buffer.from(id.padEnd(32, '.')), hostname: id, machine_fingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agent_version: '0.1.0', approval: 'active', enrolment_token_id: null, tags: '{}', enrolled_at: AT, last_registered_at: AT, deleted_at: deletedAt,
  }).execute();
}

const pkg = (name: string, version = '1.0'): PackageInput => ({ name, version, source: 'dpkg', architecture: 'amd64', publisher: 'Debian', installDate: null });

/** One whole scan (one chunk) in its own transaction, as InventoryService.acceptChunk runs it. */
async function scan(kysely: Kysely<Schema>, hostId: string, scanId: string, packages: PackageInput[], now: number, removedRetentionMs?: number) {
  const input: ChunkInput = { scanId, taskId: 'tsk_scan', hostId, chunkIndex: 0, packages, skipped: [], isLast: true, now, removedRetentionMs };
  const result = await kysely.transaction().execute((tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).addChunk(input));
  await indexNameBatches(new SoftwareInventoryStore(kysely, dialectOf(kysely)), 1);
  return result;
}

/** "name@host" of every name index entry, sorted. */
async function indexEntries(kysely: Kysely<Schema>): Promise<string[]> {
  const rows = await kysely.selectFrom('software_name_index').select(['name', 'host_id']).orderBy('name').orderBy('host_id').execute();
  return rows.map((row) => `${row.name}@${row.host_id}`);
}

conformance('task retention: finished tasks older than the cutoff are deleted, in batches; unfinished and newer ones stay', async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_t', 'org_t');
  const tasks = new TaskStore(kysely);
  const base = { orgId: 'org_t', hostId: 'hst_t', payload: {}, createdBy: 'admin', timeoutMs: 60_000, expiresAt: AT + DAY_MS };
  // 5,003 old finished tasks (more than one delete statement's batch), one finished at the cutoff, one unfinished as old.
  const old = Array.from({ length: 5_003 }, (_, n) => ({
    id: `tsk_old${n}`, org_id: 'org_t', host_id: 'hst_t', type: 'config_reload' as const, payload: '{}', state: 'succeeded' as const, created_at: AT, created_by: 'admin',
    timeout_ms: 60_000, expires_at: AT + DAY_MS, finished_at: AT + n, attempts: 1,
  }));
  for (let start = 0; start < old.length; start += 500) await kysely.insertInto('tasks').values(old.slice(start, start + 500)).execute();
  await tasks.insert({ ...base, id: 'tsk_edge', type: 'software_inventory', createdAt: AT });
  await tasks.applyEvent('tsk_edge', 'succeeded', AT + 10 * DAY_MS);
  await tasks.insert({ ...base, id: 'tsk_open', type: 'agent_uninstall', createdAt: AT });
  assert.equal(await tasks.pruneFinishedBefore(AT + 10 * DAY_MS), 5_003);
  const left = await kysely.selectFrom('tasks').select('id').orderBy('id').execute();
  assert.deepEqual(left.map((row) => row.id), ['tsk_edge', 'tsk_open'], 'finished at the cutoff and unfinished tasks stay');
  assert.equal(await tasks.pruneFinishedBefore(AT + 10 * DAY_MS), 0);
});

conformance("inventory retention: a purge of package rows drops the name index entries no row of the host carries any more; a deleted host's whole inventory goes once due", async (backend) => {
  const { kysely } = backend;
  await insertHost(kysely, 'hst_a', 'org_r');
  await insertHost(kysely, 'hst_b', 'org_r');
  await scan(kysely, 'hst_a', 'scan-a-0001', [pkg('curl'), pkg('vim'), pkg('jq')], AT);
  await scan(kysely, 'hst_b', 'scan-b-0001', [pkg('curl'), pkg('vim')], AT);
  // Day 1: hst_a drops jq and updates vim; day 3 its next scan purges rows removed more than a day before.
  await scan(kysely, 'hst_a', 'scan-a-0002', [pkg('curl'), pkg('vim', '2.0')], AT + DAY_MS, DAY_MS);
  assert.deepEqual(await indexEntries(kysely), ['curl@hst_a', 'curl@hst_b', 'jq@hst_a', 'vim@hst_a', 'vim@hst_b'], 'removed rows keep their entries while kept');
  await scan(kysely, 'hst_a', 'scan-a-0003', [pkg('curl'), pkg('vim', '2.0')], AT + 3 * DAY_MS, DAY_MS);
  assert.deepEqual(await indexEntries(kysely), ['curl@hst_a', 'curl@hst_b', 'vim@hst_a', 'vim@hst_b'], "jq's last row went, vim 2.0 keeps vim's entry");

  const store = new SoftwareInventoryStore(kysely, dialectOf(kysely));
  assert.deepEqual(await store.orgsWithDeletedHosts(), []);
  await kysely.updateTable('hosts').set({ deleted_at: AT + 4 * DAY_MS }).where('id', '=', 'hst_b').execute();
  assert.deepEqual(await store.orgsWithDeletedHosts(), ['org_r']);
  assert.deepEqual(await store.deletedHostsWithInventory('org_r', AT + 4 * DAY_MS, 10), [], 'deleted at the cutoff: not yet');
  assert.deepEqual(await store.deletedHostsWithInventory('org_other', AT + 5 * DAY_MS, 10), []);
  assert.deepEqual(await store.deletedHostsWithInventory('org_r', AT + 5 * DAY_MS, 10), ['hst_b']);
  const purged = await kysely.transaction().execute((tx) => new SoftwareInventoryStore(tx, dialectOf(tx)).purgeHost('hst_b'));
  assert.deepEqual(purged, { packages: 2, scans: 1 });
  assert.deepEqual(await indexEntries(kysely), ['curl@hst_a', 'vim@hst_a']);
  assert.deepEqual(await store.deletedHostsWithInventory('org_r', AT + 5 * DAY_MS, 10), [], 'nothing left to purge');
  assert.equal((await store.packages('hst_a')).length, 2, "the other host's inventory is untouched");
  assert.equal((await kysely.selectFrom('hosts').select('id').where('id', '=', 'hst_b').execute()).length, 1, 'the host row stays: its key stays retired');
  await assert.rejects(store.purgeHost('hst_a'), /runs inside stores.transact/);
});
