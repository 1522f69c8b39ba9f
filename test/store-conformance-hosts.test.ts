import assert from 'node:assert/strict';
import { after } from 'node:test';
import { HostClaimantStore, MAX_CLAIMANTS_PER_HOST } from '../appliance/store/host-claimants.ts';
import { HOST_EVENTS_KEPT, HostEventStore } from '../appliance/store/host-events.ts';
import { HostTrustStore } from '../appliance/store/host-trust.ts';
import { HostVitalsStore } from '../appliance/store/host-vitals.ts';
import { HostStore, type NewHost } from '../appliance/store/hosts.ts';
import { countingTurns } from './helpers/event-loop-turns.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance, interleaved, type OpenBackend } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_123;

function newHost(id: string, fields: Partial<NewHost> = {}): NewHost {
  return {
    id, orgId: 'org_h', publicKey: Buffer.from(id.padEnd(32, '.')), hostname: `${id}.example`, machineFingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agentVersion: '0.1.0', approval: 'pending', enrolmentTokenId: null, tags: { role: 'web' }, fingerprintConflictWith: null, enrolledAt: AT, ...fields,
  };
}

async function withOrganisation({ kysely, name }: OpenBackend): Promise<HostStore> {
  await kysely.insertInto('organisations').values({ id: 'org_h', name: 'h', created_at: AT }).execute();
  return new HostStore(kysely, name);
}

conformance('host store: insert once per key, decide only from allowed states (one of racing admins wins), soft delete, facts, heartbeats, takeOver', async (backend) => {
  const hosts = await withOrganisation(backend);
  const inserted = await hosts.insert(newHost('hst_1'));
  assert.deepEqual(inserted, await hosts.get('hst_1'), 'the host as stored, as get reads it (a registration reads no row back)');
  assert.equal(await hosts.insert(newHost('hst_copy', { publicKey: Buffer.from('hst_1'.padEnd(32, '.')) })), undefined, 'the key is taken: the first registration owns it');
  assert.equal(await hosts.get('hst_copy'), undefined);
  assert.equal((await hosts.findByPublicKey(Buffer.from('hst_1'.padEnd(32, '.'))))?.id, 'hst_1');
  assert.equal((await hosts.findLiveByFingerprint('org_h', 'fp-hst_1'))?.id, 'hst_1');
  assert.deepEqual((await hosts.get('hst_1'))?.tags, { role: 'web' });

  // Two admins decide at once: the conditional UPDATE lets exactly one through.
  const decisions = await Promise.all([hosts.decide('hst_1', 'active', ['pending'], AT + 1, 'alice'), hosts.decide('hst_1', 'revoked', ['pending'], AT + 1, 'bob')]);
  assert.deepEqual(decisions.filter(Boolean).length, 1);
  const decided = (await hosts.get('hst_1'))!;
  assert.equal(decided.approval, decisions[0] ? 'active' : 'revoked');
  assert.equal(decided.decidedBy, decisions[0] ? 'alice' : 'bob');
  assert.equal(await hosts.decide('hst_1', 'active', ['revoked', 'active'], AT + 2, 'carol'), true);
  assert.equal(await hosts.decide('hst_1', 'pending', ['revoked'], AT + 3, 'carol'), false, 'not from a state the move allows');

  await hosts.updateRegistration('hst_1', { hostname: 'web-1', machineFingerprint: 'fp-2', os: 'linux', arch: 'arm64', agentVersion: '0.2.0', at: AT + 4 });
  await hosts.recordFacts('hst_1', { hostname: 'web-1b', os: 'linux', osVersion: 'Debian 12', arch: 'arm64', agentVersion: '0.2.0', ipAddresses: ['10.0.0.1', 'fe80::1'] });
  await hosts.recordHeartbeats([{ hostId: 'hst_1', receivedAt: AT + 5, intervalSecs: 30, agentVersion: '0.2.1', cpuPercent: 1.5, memoryPercent: 2.5, diskPercent: 3.5, uptimeSeconds: 99, clockOffsetMs: -40 }]);
  await hosts.recordHeartbeats([{ hostId: 'hst_1', receivedAt: AT + 6, intervalSecs: 30, agentVersion: '0.2.1', cpuPercent: 4.5, memoryPercent: 2.5, diskPercent: 3.5, uptimeSeconds: 129, clockOffsetMs: null }]);
  await hosts.recordDisconnects(['hst_1'], AT + 7);
  const seen = (await hosts.get('hst_1'))!;
  assert.deepEqual(
    [seen.hostname, seen.machineFingerprint, seen.osVersion, seen.ipAddresses, seen.lastRegisteredAt, seen.lastHeartbeatAt, seen.cpuPercent, seen.clockOffsetMs, seen.agentVersion, seen.lastDisconnectedAt, seen.approval],
    ['web-1b', 'fp-2', 'Debian 12', ['10.0.0.1', 'fe80::1'], AT + 4, AT + 6, 4.5, -40, '0.2.1', AT + 7, 'active'],
    'a heartbeat without a clock offset keeps the recorded one and never touches approval',
  );

  // A replacement takes the old host's tags and links both, once.
  await hosts.insert(newHost('hst_2', { tags: {} }));
  assert.equal(await hosts.takeOver('hst_2', seen), true);
  assert.equal(await hosts.takeOver('hst_2', seen), false, 'already replaced a host');
  const [replacing, replaced] = [(await hosts.get('hst_2'))!, (await hosts.get('hst_1'))!];
  assert.deepEqual([replacing.replaces, replacing.tags, replaced.replacedBy], ['hst_1', { role: 'web' }, 'hst_2']);

  // Soft delete once; a deleted host is neither listed nor found by fingerprint, still read by id.
  assert.equal(await hosts.markDeleted('hst_1', AT + 8, 'alice'), true);
  assert.equal(await hosts.markDeleted('hst_1', AT + 9, 'bob'), false);
  assert.deepEqual([(await hosts.get('hst_1'))?.deletedAt, (await hosts.get('hst_1'))?.deletedBy], [AT + 8, 'alice']);
  assert.equal(await hosts.findLiveByFingerprint('org_h', 'fp-2'), undefined);
  assert.deepEqual((await hosts.list('org_h')).map((host) => host.id), ['hst_2']);
});

conformance('host store: identity flag, resolve, key rotation, successor allowances (racing takers never overspend), clear', async (backend) => {
  const hosts = await withOrganisation(backend);
  await hosts.insert(newHost('hst_i', { approval: 'active' }));
  assert.equal(await hosts.resolveIdentity('hst_i', { fingerprint: 'fp', instance: 'i-1' }, 1, Buffer.alloc(32, 1), AT), false, 'not flagged');
  assert.equal(await hosts.flagIdentityConflict('hst_i'), true);
  assert.equal(await hosts.flagIdentityConflict('hst_i'), false, 'flagged once');
  const nonce = Buffer.alloc(32, 2);
  assert.equal(await hosts.resolveIdentity('hst_i', { fingerprint: 'fp-kept', instance: 'i-kept' }, 3, nonce, AT + 1), true);
  const resolved = (await hosts.get('hst_i'))!;
  assert.deepEqual([resolved.identityState, resolved.identityKeptFingerprint, resolved.identityKeptInstance, resolved.identitySuccessorsAllowed, resolved.identityResolvedAt],
    ['resolved', 'fp-kept', 'i-kept', 3, AT + 1]);

  // Five racing claimants for three allowances: exactly three get one.
  const taken = await Promise.all(Array.from({ length: 5 }, () => hosts.takeSuccessorAllowance('hst_i')));
  assert.equal(taken.filter(Boolean).length, 3);
  const spent = (await hosts.get('hst_i'))!;
  assert.deepEqual([spent.identitySuccessorsAllowed, spent.identityState, spent.identityKeptFingerprint, spent.identityResolvedAt], [0, null, null, null], 'the last allowance used ends the resolution');

  // Key rotation: a rotation offered replaces the nonce; the rotation needs the current key and that nonce.
  const oldKey = resolved.publicKey;
  const newKey = Buffer.alloc(32, 9);
  const offered = Buffer.alloc(32, 3);
  await hosts.flagIdentityConflict('hst_i');
  await hosts.resolveIdentity('hst_i', { fingerprint: 'fp-kept', instance: 'i-kept' }, 1, nonce, AT + 2);
  assert.equal(await hosts.offerKeyRotation('hst_i', offered), true);
  assert.equal(await hosts.rotateKey('hst_i', oldKey, newKey, nonce, AT + 3), false, 'the replaced nonce no longer rotates');
  assert.equal(await hosts.rotateKey('hst_i', oldKey, newKey, offered, AT + 3), true);
  assert.equal(await hosts.rotateKey('hst_i', oldKey, newKey, offered, AT + 3), false, 'rotated once');
  const rotated = (await hosts.get('hst_i'))!;
  assert.deepEqual([rotated.publicKey, rotated.previousPublicKey, rotated.keyRotatedAt, rotated.identityState, rotated.identityRotationNonceSha256, rotated.identitySuccessorsAllowed],
    [newKey, oldKey, AT + 3, null, null, 1], 'the resolution ends; the allowance outlives it');
  assert.equal((await hosts.findByPreviousKey(oldKey))?.id, 'hst_i');
  assert.equal(await hosts.offerKeyRotation('hst_i', offered), false, 'no rotation pending');

  assert.equal(await hosts.clearIdentityState('hst_i'), false, 'nothing to clear');
  await hosts.flagIdentityConflict('hst_i');
  assert.equal(await hosts.clearIdentityState('hst_i'), true);
  const cleared = (await hosts.get('hst_i'))!;
  assert.deepEqual([cleared.identityState, cleared.identitySuccessorsAllowed], [null, 0]);
});

conformance('host claimants, events, trust and vitals: seen upserts bounded per host, churn events bounded per kind, trust recorded, vitals pruned by age', async (backend) => {
  const { kysely } = backend;
  const hosts = await withOrganisation(backend);
  await hosts.insert(newHost('hst_c', { approval: 'active', hostname: 'b-host' }));
  await hosts.insert(newHost('hst_p', { hostname: 'a-pending' }));

  // Claimants: one row per machine instance; first_seen kept; beyond the bound the one seen longest ago goes.
  const claimants = new HostClaimantStore(kysely, backend.name);
  const seen = (instanceId: string, at: number, hostname = 'web') =>
    kysely.transaction().execute((tx) => new HostClaimantStore(tx, backend.name).seen({ hostId: 'hst_c', instanceId, machineFingerprint: `fp-${instanceId}`, hostname, source: 'heartbeat' }, at));
  for (let n = 0; n < MAX_CLAIMANTS_PER_HOST; n += 1) await seen(`i-${n}`, AT + n);
  await seen('i-0', AT + 100, 'web-renamed');
  await seen('i-new', AT + 101);
  const listed = await claimants.list('hst_c');
  assert.equal(listed.length, MAX_CLAIMANTS_PER_HOST);
  assert.ok(!listed.some((claimant) => claimant.instanceId === 'i-1'), 'i-1, seen longest ago, made room');
  const refreshed = listed.find((claimant) => claimant.instanceId === 'i-0')!;
  assert.deepEqual([refreshed.firstSeen, refreshed.lastSeen, refreshed.hostname], [AT, AT + 100, 'web-renamed']);
  await claimants.clear('hst_c');
  assert.deepEqual(await claimants.list('hst_c'), []);

  // Events: a churn kind keeps its newest HOST_EVENTS_KEPT; a decision's kind is never dropped.
  const events = new HostEventStore(kysely);
  await events.record('hst_c', AT, 'identity-conflict', { by: 'fingerprint' });
  for (let n = 0; n < HOST_EVENTS_KEPT + 3; n += 1) await events.record('hst_c', AT + n, 'renamed', { to: `web-${n}` });
  const renamed = await events.ofKind('hst_c', 'renamed', HOST_EVENTS_KEPT + 10);
  assert.equal(renamed.length, HOST_EVENTS_KEPT);
  assert.deepEqual([renamed[0]?.details, renamed.at(-1)?.details], [{ to: `web-${HOST_EVENTS_KEPT + 2}` }, { to: 'web-3' }], 'newest first, the oldest three dropped');
  assert.deepEqual((await events.ofKind('hst_c', 'identity-conflict', 10)).map((event) => event.details), [{ by: 'fingerprint' }]);
  await events.record('hst_p', AT, 'identity-resolved', {});
  assert.deepEqual((await events.recent('hst_c', 2, 'hst_p')).map((event) => event.kind), ['identity-resolved', 'renamed'], "with the replaced host's, newest first");

  // Trust: what each agent holds; pending and active hosts listed apart, deleted ones not at all.
  const trust = new HostTrustStore(kysely);
  await trust.record('hst_c', 2, 'ab'.repeat(32));
  await trust.record('hst_c', 2, 'ab'.repeat(32));
  assert.deepEqual(await trust.activeHosts(), [{ hostId: 'hst_c', hostname: 'b-host', trustGeneration: 2, trustDigest: 'ab'.repeat(32) }]);
  assert.deepEqual(await trust.pendingHosts(), [{ hostId: 'hst_p', hostname: 'a-pending' }]);
  await hosts.markDeleted('hst_p', AT, 'admin');
  assert.deepEqual(await trust.pendingHosts(), []);

  // Vitals: a batch of samples, newest first; retention deletes those received before the cutoff.
  const vitals = new HostVitalsStore(kysely);
  await vitals.insertMany(Array.from({ length: 10 }, (_, n) => ({ hostId: 'hst_c', receivedAt: AT + n * 1000, agentTimestamp: AT + n * 1000 - 5, cpuPercent: n + 0.5, memoryPercent: 50, diskPercent: 60.25, uptimeSeconds: 100 + n })));
  const newest = await vitals.recent('hst_c', 3);
  assert.deepEqual(newest.map((sample) => sample.receivedAt), [AT + 9000, AT + 8000, AT + 7000]);
  assert.deepEqual([newest[0]?.cpuPercent, newest[0]?.diskPercent, newest[0]?.agentTimestamp, newest[0]?.uptimeSeconds], [9.5, 60.25, AT + 8995, 109]);
  assert.equal(await vitals.prune(AT + 4000), 4);
  assert.equal(await vitals.prune(AT + 4000), 0);
  assert.deepEqual((await vitals.recent('hst_c', 100)).map((sample) => sample.receivedAt).at(-1), AT + 4000);
  assert.equal((await vitals.recent('hst_c', 100)).length, 6);
});

conformance('vitals prune: a backlog of several slices goes in slices with the event loop running between them, ties at a slice edge included', async (backend) => {
  const hosts = await withOrganisation(backend);
  await hosts.insert(newHost('hst_v', { approval: 'active' }));
  const vitals = new HostVitalsStore(backend.kysely);
  // 5,000 samples 1 ms apart, 700 received in one instant inside the second slice's edge (4,000), then
  // 2,100 more in another instant (more than a slice: the slice deletes that instant alone), then 200 newer.
  const at = (n: number): number => (n < 5_000 ? AT + n : n < 5_700 ? AT + 3_900 : n < 7_800 ? AT + 9_000 : AT + 10_000 + n);
  const sample = (n: number) => ({ hostId: 'hst_v', receivedAt: at(n), agentTimestamp: at(n), cpuPercent: 1, memoryPercent: 2, diskPercent: 3, uptimeSeconds: n });
  for (let start = 0; start < 8_000; start += 1_000) await vitals.insertMany(Array.from({ length: 1_000 }, (_, index) => sample(start + index)));
  const { result: pruned, turns } = await countingTurns(() => vitals.prune(AT + 10_000));
  assert.equal(pruned, 7_800, 'every sample received before the cutoff');
  assert.ok(turns >= 2, `the event loop ran between slices (${turns} turns)`);
  const left = await vitals.recent('hst_v', 1_000);
  assert.equal(left.length, 200);
  assert.ok(left.every((row) => row.receivedAt >= AT + 10_000));
});

conformance('host store: every conditional write of a workflow changes nothing on a host deleted since it was read', async (backend) => {
  const hosts = await withOrganisation(backend);
  const key = Buffer.from('hst_d'.padEnd(32, '.'));
  await hosts.insert(newHost('hst_d'));
  await hosts.insert(newHost('hst_new', { publicKey: Buffer.from('hst_new'.padEnd(32, '.')) }));
  // Set up every precondition the writes test, then delete: each would succeed on the live host.
  assert.equal(await hosts.flagIdentityConflict('hst_d'), true);
  assert.equal(await hosts.resolveIdentity('hst_d', { fingerprint: 'fp', instance: 'i-1' }, 2, Buffer.alloc(32, 7), AT), true);
  const before = (await hosts.get('hst_d'))!;
  assert.equal(await hosts.markDeleted('hst_d', AT + 1, 'alice'), true);
  assert.equal(await hosts.decide('hst_d', 'active', ['pending'], AT + 2, 'bob'), false, 'approve');
  assert.equal(await hosts.offerKeyRotation('hst_d', Buffer.alloc(32, 8)), false, 'offer a key rotation');
  assert.equal(await hosts.rotateKey('hst_d', key, Buffer.alloc(32, 9), Buffer.alloc(32, 7), AT + 3), false, 'rotate the key');
  assert.equal(await hosts.takeSuccessorAllowance('hst_d'), false, 'spend a successor allowance');
  assert.equal(await hosts.clearIdentityState('hst_d'), false, 'clear the identity state');
  assert.equal(await hosts.flagIdentityConflict('hst_d'), false, 'flag');
  assert.equal(await hosts.takeOver('hst_d', (await hosts.get('hst_new'))!), false, 'a deleted host takes over none');
  const after = (await hosts.get('hst_d'))!;
  assert.deepEqual(
    [after.approval, after.publicKey, after.identityState, after.identitySuccessorsAllowed, after.replaces],
    [before.approval, before.publicKey, before.identityState, before.identitySuccessorsAllowed, before.replaces],
  );
});

conformance('host store: two registrations from one machine decide one after the other; racing streams keep no more claimants than the cap', async (backend) => {
  const hosts = await withOrganisation(backend);
  // The second lookup runs while the first registration's host is inserted but not committed: it must wait and see it.
  const twinSeenBySecond = await interleaved(
    backend,
    async (tx, hold) => {
      const store = new HostStore(tx, backend.name);
      assert.equal(await store.findLiveByFingerprint('org_h', 'fp-clone'), undefined);
      await store.insert(newHost('hst_first', { machineFingerprint: 'fp-clone' }));
      await hold();
    },
    async (tx) => (await new HostStore(tx, backend.name).findLiveByFingerprint('org_h', 'fp-clone'))?.id,
  );
  assert.equal(twinSeenBySecond, 'hst_first', 'the second registration is a clone of the first, not a second original');

  await hosts.insert(newHost('hst_cap', { approval: 'active' }));
  const claimant = (instanceId: string) => ({ hostId: 'hst_cap', instanceId, machineFingerprint: `fp-${instanceId}`, hostname: 'web', source: 'heartbeat' });
  for (let n = 0; n < MAX_CLAIMANTS_PER_HOST - 1; n += 1) await backend.kysely.transaction().execute((tx) => new HostClaimantStore(tx, backend.name).seen(claimant(`i-${n}`), AT + n));
  await interleaved(
    backend,
    async (tx, hold) => {
      await new HostClaimantStore(tx, backend.name).seen(claimant('i-racer-1'), AT + 100);
      await hold();
    },
    (tx) => new HostClaimantStore(tx, backend.name).seen(claimant('i-racer-2'), AT + 101),
  );
  const kept = await new HostClaimantStore(backend.kysely, backend.name).list('hst_cap');
  assert.equal(kept.length, MAX_CLAIMANTS_PER_HOST, 'the second racer counted the first one and made room');
  assert.ok(kept.some((each) => each.instanceId === 'i-racer-2'));
  await assert.rejects(new HostClaimantStore(backend.kysely, backend.name).seen(claimant('i-outside'), AT), /needs an open transaction/);
});

conformance('host store: a host read for share is not decided on until the reading transaction ends', async (backend) => {
  await withOrganisation(backend);
  await new HostStore(backend.kysely, backend.name).insert(newHost('hst_s', { approval: 'active' }));
  const order: string[] = [];
  await interleaved(
    backend,
    async (tx, hold) => {
      assert.equal((await new HostStore(tx, backend.name).getForShare('hst_s'))?.approval, 'active');
      await hold();
      order.push('reader done');
    },
    async (tx) => {
      assert.equal(await new HostStore(tx, backend.name).decide('hst_s', 'revoked', ['active'], AT, 'alice'), true);
      order.push('revoked');
    },
  );
  assert.deepEqual(order, ['reader done', 'revoked']);
});

conformance('heartbeats and samples of many hosts are written in a few multi-row statements, each host getting its own values', async (backend) => {
  const hosts = await withOrganisation(backend);
  // 700 hosts: runs of 512, 128, 32, 16, 8 and 4 rows (store/runs.ts).
  const ids = Array.from({ length: 700 }, (_, n) => `hst_m${n}`);
  for (const id of ids) await hosts.insert(newHost(id, { approval: 'active' }));
  await hosts.recordHeartbeats([{ hostId: 'hst_m7', receivedAt: AT, intervalSecs: 30, agentVersion: '0.1.0', cpuPercent: 0, memoryPercent: 0, diskPercent: 0, uptimeSeconds: 0, clockOffsetMs: 1234 }]);
  const update = (id: string, n: number) => ({ hostId: id, receivedAt: AT + 2 ** 40 + n, intervalSecs: 5 + (n % 60), agentVersion: `1.${n}.0`, cpuPercent: n / 7, memoryPercent: 99.5, diskPercent: 0.25, uptimeSeconds: 2 ** 35 + n, clockOffsetMs: n === 7 ? null : 1 - n });
  await hosts.recordHeartbeats(ids.map(update));
  for (const n of [0, 7, 511, 512, 639, 699]) {
    const host = (await hosts.get(`hst_m${n}`))!;
    const sent = update(`hst_m${n}`, n);
    assert.deepEqual(
      [host.lastHeartbeatAt, host.heartbeatIntervalSecs, host.agentVersion, host.cpuPercent, host.memoryPercent, host.diskPercent, host.uptimeSeconds, host.clockOffsetMs, host.approval],
      [sent.receivedAt, sent.intervalSecs, sent.agentVersion, sent.cpuPercent, 99.5, 0.25, sent.uptimeSeconds, n === 7 ? 1234 : 1 - n, 'active'],
      `host ${n}`,
    );
  }
  const vitals = new HostVitalsStore(backend.kysely);
  await vitals.insertMany(ids.map((id, n) => ({ hostId: id, receivedAt: AT + n, agentTimestamp: AT, cpuPercent: n / 3, memoryPercent: 1, diskPercent: 2, uptimeSeconds: n })));
  const [{ count }] = await backend.kysely.selectFrom('host_vitals').select((eb) => eb.fn.countAll<number>().as('count')).execute() as [{ count: number }];
  assert.equal(Number(count), 700);
  assert.deepEqual((await vitals.recent('hst_m699', 5)).map((sample) => [sample.receivedAt, sample.cpuPercent, sample.uptimeSeconds]), [[AT + 699, 699 / 3, 699]]);
});
