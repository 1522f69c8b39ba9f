import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { Kysely } from 'kysely';
import { CtOpsError } from '../common/errors.ts';
import type { HostUpdate, Rollout } from '../appliance/model/rollout.ts';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import { HostUpdateStore } from '../appliance/store/host-updates.ts';
import { RolloutStore } from '../appliance/store/rollouts.ts';
import type { Schema } from '../appliance/store/schema.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

/** A time in ms past 2^32, which BIGINT must carry unchanged. */
const AT = 1_764_000_000_123;
const HOSTS = ['hst_a', 'hst_b', 'hst_c'];

/** Organisations org_r and org_other, the release 1.2.0 (1.3.0 too) and the hosts HOSTS of org_r. */
async function insertFixtures(kysely: Kysely<Schema>): Promise<void> {
  await kysely.insertInto('organisations').values([{ id: 'org_r', name: 'r', created_at: AT }, { id: 'org_other', name: 'other', created_at: AT }]).execute();
  await kysely.insertInto('agent_releases').values(['1.2.0', '1.3.0'].map((version) => {
    const [major, minor, patch] = version.split('.').map(Number) as [number, number, number];
    return { version, version_major: major, version_minor: minor, version_patch: patch, key_id: 'k', trusted_comment: 'c', files: '[]', imported_at: AT, imported_by: 'admin', retired_at: null };
  })).execute();
  await kysely.insertInto('hosts').values(HOSTS.map((id, index) => ({
    id, org_id: 'org_r', public_key: Buffer.alloc(32, index + 1), hostname: id, machine_fingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agent_version: '1.1.0', approval: 'active' as const, enrolment_token_id: null, tags: '{}', enrolled_at: AT, last_registered_at: AT,
  }))).execute();
}

/** A running rollout of 1.2.0 in org_r with one group of each selector kind, in position order. */
function rollout(id: string, overrides: Partial<Rollout> = {}): Rollout {
  return {
    id,
    orgId: 'org_r',
    version: '1.2.0',
    state: 'running',
    haltedReason: null,
    createdAt: AT,
    createdBy: 'admin',
    updatedAt: AT,
    groups: [
      { position: 0, name: 'canary', selector: { kind: 'hosts', hostIds: ['hst_a', 'hst_b'] }, successPercent: 100, startedAt: AT, maintenanceWindow: null },
      { position: 1, name: 'staging', selector: { kind: 'tag', key: 'env', value: 'staging' }, successPercent: 90, startedAt: null, maintenanceWindow: 'Mon-Fri 22:00-06:00 Europe/Berlin' },
      { position: 2, name: 'everyone', selector: { kind: 'all' }, successPercent: 1, startedAt: null, maintenanceWindow: null },
    ],
    ...overrides,
  };
}

function hostUpdate(hostId: string, overrides: Partial<HostUpdate> = {}): HostUpdate {
  return { hostId, version: '1.2.0', phase: 'offered', errorCode: null, detail: null, rolloutId: 'rol_a', updatedAt: AT, ...overrides };
}

conformance('rollout store: a rollout reads back with every field and its groups of each selector kind in position order, whatever order they were inserted in', async ({ kysely }) => {
  await insertFixtures(kysely);
  const rollouts = new RolloutStore(kysely);
  const stored = rollout('rol_a', { state: 'halted', haltedReason: 'hst_b rolled back: ERR_UPDATE_HEALTH', updatedAt: AT + 5 });
  await rollouts.insert({ ...stored, groups: [stored.groups[2]!, stored.groups[0]!, stored.groups[1]!] });
  assert.deepEqual(await rollouts.get('rol_a'), stored);
  assert.equal(await rollouts.get('rol_missing'), undefined);

  await rollouts.insert(rollout('rol_bare', { state: 'superseded', groups: [] }));
  assert.deepEqual((await rollouts.get('rol_bare'))?.groups, []);
});

conformance('rollout store: a rollout of an unknown release or organisation, two groups at one position and a success percent outside 1–100 are refused by the tables', async ({ kysely }) => {
  await insertFixtures(kysely);
  const rollouts = new RolloutStore(kysely);
  const refused = async (candidate: Rollout) => constraintViolation(await rollouts.insert(candidate).then(() => assert.fail('accepted'), (error: unknown) => error));
  assert.equal(await refused(rollout('rol_v', { version: '9.9.9' })), 'foreign-key');
  assert.equal(await refused(rollout('rol_o', { orgId: 'org_missing' })), 'foreign-key');
  const [first, second] = rollout('rol_x').groups;
  assert.equal(await refused(rollout('rol_p', { groups: [first!, { ...second!, position: 0 }] })), 'unique');
  assert.equal(await refused(rollout('rol_s', { groups: [{ ...first!, successPercent: 101 }] })), 'check');
  assert.equal(await refused(rollout('rol_z', { groups: [{ ...first!, successPercent: 0 }] })), 'check');
  // At most one open rollout per organisation (rollouts_one_open): a second one is refused, a final one is not.
  await rollouts.insert(rollout('rol_open'));
  for (const state of ['running', 'paused', 'halted'] as const) assert.equal(await refused(rollout(`rol_${state}`, { state })), 'unique', state);
  await rollouts.insert(rollout('rol_done', { state: 'completed' }));
});

conformance('rollout store: open finds the organisation\'s running, paused or halted rollout only, and list gives its rollouts newest first', async ({ kysely }) => {
  await insertFixtures(kysely);
  const rollouts = new RolloutStore(kysely);
  await rollouts.insert(rollout('rol_1', { state: 'completed', createdAt: AT }));
  await rollouts.insert(rollout('rol_2', { state: 'superseded', createdAt: AT + 1 }));
  assert.equal(await rollouts.open('org_r'), undefined, 'no open rollout');

  await rollouts.insert(rollout('rol_3', { version: '1.3.0', createdAt: AT + 2 }));
  assert.deepEqual(await rollouts.open('org_r'), rollout('rol_3', { version: '1.3.0', createdAt: AT + 2 }));
  assert.equal(await rollouts.open('org_other'), undefined, 'another organisation has none');
  for (const state of ['paused', 'halted'] as const) {
    await rollouts.setState('rol_3', ['running', 'paused', 'halted'], state, AT + 3, null);
    assert.equal((await rollouts.open('org_r'))?.id, 'rol_3', state);
  }
  await rollouts.setState('rol_3', ['halted'], 'completed', AT + 4, null);
  assert.equal(await rollouts.open('org_r'), undefined, 'completed is not open');

  assert.deepEqual((await rollouts.list('org_r', 10)).map(({ id }) => id), ['rol_3', 'rol_2', 'rol_1']);
  const [newest] = await rollouts.list('org_r', 1);
  assert.deepEqual(newest?.groups, rollout('rol_3').groups, 'listed with groups');
  assert.deepEqual(await rollouts.list('org_other', 10), []);
});

conformance('rollout store: setState moves a rollout only from a listed state, storing the halted reason and time, and startGroup starts a group once', async ({ kysely }) => {
  await insertFixtures(kysely);
  const rollouts = new RolloutStore(kysely);
  await rollouts.insert(rollout('rol_a'));
  assert.equal(await rollouts.setState('rol_a', ['paused'], 'running', AT + 1, null), false, 'not paused');
  assert.equal(await rollouts.setState('rol_a', [], 'paused', AT + 1, null), false, 'no state to move from');
  assert.equal(await rollouts.setState('rol_a', ['running', 'paused'], 'halted', AT + 2, 'hst_a rolled back'), true);
  assert.equal(await rollouts.setState('rol_a', ['running', 'paused'], 'halted', AT + 3, 'again'), false, 'already halted');
  const halted = await rollouts.get('rol_a');
  assert.deepEqual([halted?.state, halted?.haltedReason, halted?.updatedAt], ['halted', 'hst_a rolled back', AT + 2]);
  assert.equal(await rollouts.setState('rol_a', ['halted'], 'running', AT + 4, null), true);
  const resumed = await rollouts.get('rol_a');
  assert.deepEqual([resumed?.state, resumed?.haltedReason, resumed?.updatedAt], ['running', null, AT + 4]);
  assert.equal(await rollouts.setState('rol_missing', ['running'], 'paused', AT, null), false);

  assert.equal(await rollouts.startGroup('rol_a', 1, AT + 10), true);
  assert.equal(await rollouts.startGroup('rol_a', 1, AT + 11), false, 'already started');
  assert.equal(await rollouts.startGroup('rol_a', 0, AT + 12), false, 'started on insert');
  assert.equal(await rollouts.startGroup('rol_a', 7, AT + 13), false, 'no such group');
  assert.deepEqual((await rollouts.get('rol_a'))?.groups.map((group) => group.startedAt), [AT, AT + 10, null]);
});

conformance('rollout store: a stored selector that is not one fails the read with ERR_DATABASE', async ({ kysely }) => {
  await insertFixtures(kysely);
  const rollouts = new RolloutStore(kysely);
  await rollouts.insert(rollout('rol_a'));
  for (const selector of ['not json', 'null', '{"kind":"some"}', '{"kind":"tag","key":"env"}', '{"kind":"hosts","hostIds":[1]}']) {
    await kysely.updateTable('rollout_groups').set({ selector }).where('rollout_id', '=', 'rol_a').where('position', '=', 1).execute();
    await assert.rejects(rollouts.get('rol_a'), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_DATABASE', selector);
  }
});

conformance('host update store: a host\'s update is replaced whole by the next, listed by host ids, and goes with its host', async ({ kysely }) => {
  await insertFixtures(kysely);
  const updates = new HostUpdateStore(kysely);
  assert.equal(await updates.get('hst_a'), undefined);
  await updates.record(hostUpdate('hst_a', { phase: 'rolled_back', errorCode: 'ERR_UPDATE_HEALTH', detail: 'no stream within 120 s' }));
  const replacement = hostUpdate('hst_a', { version: '1.3.0', phase: 'downloading', rolloutId: null, updatedAt: AT + 1 });
  await updates.record(replacement);
  assert.deepEqual(await updates.get('hst_a'), replacement, 'every column replaced, the nulls included');
  await updates.record(hostUpdate('hst_b', { phase: 'healthy' }));

  // More ids than one statement binds: the unknown ones have no update.
  const many = [...Array.from({ length: 1_200 }, (_, index) => `hst_unknown_${index}`), 'hst_b', 'hst_a', 'hst_c'];
  const listed = await updates.list(many);
  assert.deepEqual(listed.sort((x, y) => x.hostId.localeCompare(y.hostId)), [replacement, hostUpdate('hst_b', { phase: 'healthy' })]);
  assert.deepEqual(await updates.list([]), []);

  await assert.rejects(updates.record(hostUpdate('hst_missing')), (error: unknown) => constraintViolation(error) === 'foreign-key');
  await updates.block('hst_a', '1.2.0', 'rolled back', AT);
  await kysely.deleteFrom('hosts').where('id', '=', 'hst_a').execute();
  assert.equal(await updates.get('hst_a'), undefined);
  assert.equal((await updates.blockedHosts('1.2.0')).includes('hst_a'), false);
});

conformance('host update store: a blocked version stays blocked for its host until cleared for that host or for every host', async ({ kysely }) => {
  await insertFixtures(kysely);
  const updates = new HostUpdateStore(kysely);
  await updates.block('hst_b', '1.2.0', 'rolled back: ERR_UPDATE_HEALTH', AT);
  await updates.block('hst_a', '1.2.0', 'rolled back: ERR_UPDATE_HEALTH', AT);
  await updates.block('hst_a', '1.2.0', 'a second rollback', AT + 1);
  await updates.block('hst_c', '1.2.0', 'rolled back', AT);
  await updates.block('hst_a', '1.3.0', 'rolled back', AT);
  assert.equal((await updates.blockedHosts('1.2.0')).includes('hst_a'), true);
  assert.equal((await updates.blockedHosts('1.3.0')).includes('hst_b'), false);
  assert.deepEqual(await updates.blockedHosts('1.2.0'), ['hst_a', 'hst_b', 'hst_c'], 'a repeated block is one');
  assert.deepEqual(await kysely.selectFrom('update_blocks').select(['reason', 'blocked_at']).where('host_id', '=', 'hst_a').where('version', '=', '1.2.0').execute(),
    [{ reason: 'rolled back: ERR_UPDATE_HEALTH', blocked_at: AT }], 'the first block kept');

  assert.equal(await updates.clearBlocks('1.2.0', 'hst_b'), 1);
  assert.equal(await updates.clearBlocks('1.2.0', 'hst_b'), 0);
  assert.deepEqual(await updates.blockedHosts('1.2.0'), ['hst_a', 'hst_c']);
  assert.equal(await updates.clearBlocks('1.2.0'), 2);
  assert.deepEqual(await updates.blockedHosts('1.2.0'), []);
  assert.equal((await updates.blockedHosts('1.3.0')).includes('hst_a'), true, 'another version\'s block stays');
  assert.equal(await updates.clearBlocks('9.9.9'), 0);
});
