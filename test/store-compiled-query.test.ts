import assert from 'node:assert/strict';
import { after } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { compiledOnce } from '../appliance/store/compiled-query.ts';
import { HostStore } from '../appliance/store/hosts.ts';
import { runTransaction } from '../appliance/store/unit-of-work.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_123;

/** Built once per dialect, run with new values: a constant (the approval list) stays, each named value is bound again. */
const hostnamesOfOrg = compiledOnce((db, values: { orgId: string; enrolledFrom: number }) =>
  db.selectFrom('hosts').select('hostname').where('org_id', '=', values.orgId).where('approval', 'in', ['pending', 'active']).where('enrolled_at', '>=', values.enrolledFrom).orderBy('hostname'),
);
const renameHost = compiledOnce((db, values: { id: string; hostname: string }) => db.updateTable('hosts').set({ hostname: values.hostname }).where('id', '=', values.id));

function isInternal(error: unknown): boolean {
  return error instanceof CtOpsError && error.code === 'ERR_INTERNAL';
}

conformance('a compiled-once query runs with each call\'s values, in and out of a transaction, and refuses values it cannot bind', async (backend) => {
  const db = backend.kysely;
  const hosts = new HostStore(db, backend.name);
  await db.insertInto('organisations').values([{ id: 'org_a', name: 'a', created_at: AT }, { id: 'org_b', name: 'b', created_at: AT }]).execute();
  const host = (id: string, orgId: string, hostname: string, enrolledAt: number, approval: 'pending' | 'active' | 'rejected') => ({
    id, orgId, publicKey: Buffer.alloc(32, id.charCodeAt(4)), hostname, machineFingerprint: `fp-${id}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0',
    approval, enrolmentTokenId: null, tags: { site: id }, fingerprintConflictWith: null, enrolledAt,
  });
  // HostStore.insert is itself compiled once: the second host's values must not be the first's.
  assert.ok(await hosts.insert(host('hst_a', 'org_a', 'web-2', AT, 'active')));
  assert.ok(await hosts.insert(host('hst_b', 'org_a', 'web-1', AT + 10, 'pending')));
  assert.ok(await hosts.insert(host('hst_c', 'org_a', 'web-0', AT + 20, 'rejected')));
  assert.ok(await hosts.insert(host('hst_d', 'org_b', 'db-1', AT, 'active')));
  assert.equal(await hosts.insert({ ...host('hst_e', 'org_b', 'db-2', AT, 'active'), publicKey: Buffer.alloc(32, 'a'.charCodeAt(0)) }), undefined, 'a key already enrolled inserts nothing');
  assert.deepEqual([(await hosts.get('hst_b'))?.hostname, (await hosts.get('hst_d'))?.tags], ['web-1', { site: 'hst_d' }]);

  const names = async (orgId: string, enrolledFrom: number, on = db) => (await hostnamesOfOrg(on, { orgId, enrolledFrom })).rows.map((row) => row.hostname);
  assert.deepEqual(await names('org_a', 0), ['web-1', 'web-2'], 'the rejected host is left out by the constant list');
  assert.deepEqual(await names('org_a', AT + 5), ['web-1']);
  assert.deepEqual(await names('org_b', 0), ['db-1']);

  // Inside a transaction (another executor of the same database), and rolled back with it.
  await assert.rejects(runTransaction(db, (transaction) => ({ transaction }), async ({ transaction }) => {
    assert.equal(Number((await renameHost(transaction, { id: 'hst_d', hostname: 'db-renamed' })).numAffectedRows), 1);
    assert.deepEqual(await names('org_b', 0, transaction), ['db-renamed']);
    throw new Error('roll back');
  }, () => {}), /roll back/);
  assert.deepEqual(await names('org_b', 0), ['db-1']);
  assert.equal(Number((await renameHost(db, { id: 'hst_missing', hostname: 'x' })).numAffectedRows), 0);

  // A value that decides the query's shape or is spread is refused on the first run, not bound wrongly.
  const spread = compiledOnce((on, values: { id: string; hostname: string }) => on.updateTable('hosts').set({ ...values }).where('id', '=', 'hst_a'));
  await assert.rejects(spread(db, { id: 'hst_a', hostname: 'x' }), isInternal);
  const shapedByValue = compiledOnce((on, values: { orgId: string; named: boolean }) => {
    const query = on.selectFrom('hosts').select('id').where('org_id', '=', values.orgId);
    return values.named ? query.where('hostname', '!=', '') : query;
  });
  await assert.rejects(shapedByValue(db, { orgId: 'org_a', named: true }), isInternal, 'a value read but never bound (it chose the shape)');
  assert.equal((await hosts.get('hst_a'))?.hostname, 'web-2');
});
