/**
 * The install bundles' store on both backends (migration 026): a bundle reads back with every field,
 * the list pages newest first with its total, a withdrawal is marked once, a reproducible rebuild's
 * repeated id keeps the first record, and each bundle counts the hosts that claim it (deleted ones
 * included) with the newest of them.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { InstallBundleInput } from '../appliance/model/bundle.ts';
import { HostStore, type NewHost } from '../appliance/store/hosts.ts';
import { InstallBundleStore } from '../appliance/store/install-bundles.ts';
import { OrganisationStore } from '../appliance/store/organisations.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance, type OpenBackend } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

/** A time in ms past 2^32, which BIGINT must carry unchanged. */
const AT = 1_764_000_000_123;

function bundle(orgId: string, id: string, overrides: Partial<InstallBundleInput> = {}): InstallBundleInput {
  return {
    id,
    orgId,
    createdAt: AT,
    createdBy: 'admin',
    os: 'linux',
    arch: 'x64',
    agentVersion: '0.1.0',
    addresses: ['ingest.example:9443', '10.0.0.2:9443'],
    tags: { site: 'lab', empty: '' },
    label: 'rack 4',
    tokenMode: 'new',
    tokenId: 'etk_0123456789abcdef0123',
    zipFile: 'ct-ops-agent-0.1.0-linux-x64.zip',
    // Past 2^32 bytes: BIGINT on PostgreSQL.
    zipSize: 5_000_000_000,
    zipSha256: 'a'.repeat(64),
    bundleKeyId: '0123456789ABCDEF',
    caFingerprint: 'b'.repeat(64),
    ...overrides,
  };
}

function host(orgId: string, id: string, fields: Partial<NewHost> = {}): NewHost {
  return {
    id, orgId, publicKey: Buffer.from(id.padEnd(32, '.')), hostname: `${id}.example`, machineFingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agentVersion: '0.1.0', approval: 'pending', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: AT, ...fields,
  };
}

async function open(backend: OpenBackend): Promise<{ store: InstallBundleStore; hosts: HostStore; orgId: string }> {
  const org = await new OrganisationStore(backend.kysely).ensureDefault(AT);
  return { store: new InstallBundleStore(backend.kysely), hosts: new HostStore(backend.kysely, backend.name), orgId: org.id };
}

conformance('install bundle store: a bundle reads back with every field, the list is newest first with its total, a withdrawal is marked once', async (backend) => {
  const { store, orgId } = await open(backend);
  const first = bundle(orgId, 'bnd_00000000000000000001');
  await store.insert(first);
  await store.insert(bundle(orgId, 'bnd_00000000000000000002', { createdAt: AT + 1, tokenMode: 'none', tokenId: null, tags: {}, label: '' }));
  // The same time as the second: the higher id is the newer.
  await store.insert(bundle(orgId, 'bnd_00000000000000000003', { createdAt: AT + 1, tokenMode: 'existing' }));

  assert.deepEqual(await store.get(first.id), { ...first, withdrawnAt: null, withdrawnBy: null });
  assert.equal(await store.get('bnd_ffffffffffffffffffff'), undefined);

  const all = await store.list(orgId, 10, 0);
  assert.equal(all.total, 3);
  assert.deepEqual(all.bundles.map((row) => row.id), ['bnd_00000000000000000003', 'bnd_00000000000000000002', 'bnd_00000000000000000001']);
  assert.deepEqual(all.bundles[1]!.tags, {});
  assert.equal(all.bundles[1]!.tokenId, null);
  const second = await store.list(orgId, 2, 2);
  assert.deepEqual([second.bundles.map((row) => row.id), second.total], [['bnd_00000000000000000001'], 3], 'a later page, the same total');
  assert.deepEqual(await store.list('org_other', 10, 0), { bundles: [], total: 0 }, 'another organisation sees none');

  assert.equal(await store.markWithdrawn(first.id, 'alice', AT + 5), true);
  assert.equal(await store.markWithdrawn(first.id, 'bob', AT + 6), false, 'withdrawn once: the first withdrawal stays on record');
  assert.equal(await store.markWithdrawn('bnd_ffffffffffffffffffff', 'bob', AT + 6), false);
  assert.deepEqual(await store.get(first.id), { ...first, withdrawnAt: AT + 5, withdrawnBy: 'alice' });
});

conformance('install bundle store: a repeated id (a reproducible rebuild) keeps the first record', async (backend) => {
  const { store, orgId } = await open(backend);
  const original = bundle(orgId, 'bnd_0123456789abcdef0123', { tokenMode: 'none', tokenId: null });
  await store.insert(original);
  await store.insert({ ...original, createdBy: 'someone else' });
  assert.equal((await store.get(original.id))?.createdBy, 'admin');
  assert.equal((await store.list(orgId, 10, 0)).total, 1);
});

conformance('install bundle store: each bundle counts the hosts that claim it, deleted ones included, and names the newest', async (backend) => {
  const { store, hosts, orgId } = await open(backend);
  const claimed = 'bnd_0000000000000000000a';
  const other = 'bnd_0000000000000000000b';
  const unclaimed = 'bnd_0000000000000000000c';
  for (const id of [claimed, other, unclaimed]) await store.insert(bundle(orgId, id));
  assert.ok(await hosts.insert(host(orgId, 'hst_1', { installBundleId: claimed, enrolledAt: AT })));
  assert.ok(await hosts.insert(host(orgId, 'hst_3', { installBundleId: claimed, enrolledAt: AT + 10 })));
  // Enrolled at the same time as hst_3: the higher id is the newest.
  assert.ok(await hosts.insert(host(orgId, 'hst_2', { installBundleId: claimed, enrolledAt: AT + 10 })));
  assert.ok(await hosts.insert(host(orgId, 'hst_4', { installBundleId: other, enrolledAt: AT + 20 })));
  assert.ok(await hosts.insert(host(orgId, 'hst_5', { enrolledAt: AT + 30 })));
  assert.equal(await hosts.markDeleted('hst_3', AT + 40, 'admin'), true);

  assert.equal((await hosts.get('hst_1'))?.installBundleId, claimed, 'the host keeps the bundle it claimed');
  assert.equal((await hosts.get('hst_5'))?.installBundleId, null, 'null when it claimed none');

  const enrolled = await store.hostsEnrolled(orgId, [claimed, other, unclaimed]);
  assert.deepEqual(enrolled.get(claimed), { enrolled: 3, last: { hostId: 'hst_3', hostname: 'hst_3.example', enrolledAt: AT + 10 } }, 'the deleted host counts and may be the newest');
  assert.deepEqual(enrolled.get(other), { enrolled: 1, last: { hostId: 'hst_4', hostname: 'hst_4.example', enrolledAt: AT + 20 } });
  assert.equal(enrolled.has(unclaimed), false, 'a bundle no host claimed is absent');
  assert.deepEqual(await store.hostsEnrolled(orgId, []), new Map());
  assert.deepEqual(await store.hostsEnrolled('org_other', [claimed]), new Map(), "another organisation's hosts are not counted");
});
