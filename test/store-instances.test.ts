import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import pino from 'pino';
import { ClusterService, RESYNC_OVERLAP_MS } from '../appliance/cluster/service.ts';
import { encodeSignal, parseSignal } from '../appliance/cluster/signals.ts';
import { ApplianceInstanceStore } from '../appliance/store/appliance-instances.ts';
import { ClusterListener, LISTENER_APPLICATION_NAME } from '../appliance/store/cluster-listener.ts';
import { postgresKysely } from '../appliance/store/postgres-dialect.ts';
import { openPostgresStores } from '../appliance/store/index.ts';
import { migratePostgres } from '../appliance/store/postgres-migrate.ts';
import { newId } from '../common/ids.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';
import { waitFor } from './helpers/wait.ts';

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_000;
const LEASE = 15_000;
const A = newId('ins');
const B = newId('ins');

conformance('instance store: leases, which instance holds each stream, a release only by its holder, a lost-stream pass handing each row to one caller', async (backend) => {
  const instances = new ApplianceInstanceStore(backend.kysely, backend.name);
  assert.equal(await instances.renewLease(A, AT, LEASE), 'regained', 'a new instance takes its lease');
  assert.equal(await instances.renewLease(A, AT + 5_000, LEASE), 'renewed');
  assert.equal(await instances.renewLease(B, AT, LEASE), 'regained');
  assert.equal(await instances.othersAlive(A, AT + 1), 1);

  await instances.claimStream('hst_1', A, 'stream-1-A', undefined, AT);
  await instances.claimStream('hst_2', B, 'stream-2-B', undefined, AT);
  assert.deepEqual([...(await instances.streamingAmong(['hst_1', 'hst_2', 'hst_3'], AT + 1))].sort(), ['hst_1', 'hst_2']);
  // The agent of hst_1 moved to B before A noticed its stream had ended: A's late release changes nothing.
  const machine = { instanceId: 'agent-process-1', machineFingerprint: 'f'.repeat(64), hostname: 'web-1', source: '10.0.0.7' };
  await instances.claimStream('hst_1', B, 'stream-1-B', machine, AT + 2);
  assert.deepEqual(await instances.holderElsewhere('hst_1', A, AT + 3), machine, 'A sees the machine behind the stream B holds');
  assert.equal(await instances.holderElsewhere('hst_1', B, AT + 3), undefined, 'not elsewhere for B');
  assert.equal(await instances.holderElsewhere('hst_2', A, AT + 3), null, 'held elsewhere by an agent that said no machine');
  assert.equal(await instances.releaseStream('hst_1', A, 'any'), false, 'A no longer held it');
  assert.equal(await instances.holderOf('hst_1'), B);
  assert.ok((await instances.streamingAmong(['hst_1'], AT + 3)).has('hst_1'), 'still online, through B');
  const many = [...Array.from({ length: 600 }, (_, index) => `hst_x${index}`), 'hst_2'];
  assert.deepEqual([...(await instances.streamingAmong(many, AT + 3))], ['hst_2'], 'a list past the bound is answered the same');

  // B stops renewing: at AT + 16 s its lease is over, A's (renewed at AT + 5 s) is not.
  const later = AT + 16_000;
  assert.equal(await instances.holderElsewhere('hst_1', A, later), undefined, "a dead instance's stream holds nothing");
  assert.equal((await instances.streamingAmong(['hst_1', 'hst_2'], later)).size, 0, "a dead instance's hosts are offline to everyone at once");
  assert.equal(await instances.othersAlive(A, later), 0);
  const [first, second] = await Promise.all([instances.lostStreams(later), instances.lostStreams(later)]);
  assert.deepEqual([...first, ...second].sort(), ['hst_1', 'hst_2'], 'each lost stream handed to one pass');
  assert.deepEqual(await instances.lostStreams(later), []);

  // B comes back (a long pause, not a death): its lease is regained, and hst_2, taken by A meanwhile, is not taken back.
  await instances.claimStream('hst_2', A, 'stream-2-A', undefined, later + 1);
  assert.equal(await instances.renewLease(B, later + 2, LEASE), 'regained');
  const reclaimed = [{ hostId: 'hst_1', streamId: 's-1', claimant: machine }, { hostId: 'hst_2', streamId: 's-2', claimant: undefined }];
  assert.deepEqual(await instances.reclaimStreams(reclaimed, B, later + 2), ['hst_2']);
  assert.ok((await instances.streamingAmong(['hst_1'], later + 3)).has('hst_1'), 'hst_1 claimed again by B');
  assert.deepEqual(await instances.holderElsewhere('hst_1', A, later + 3), machine, 'with the machine behind it');
  assert.deepEqual(await instances.streamsOf(B), [{ hostId: 'hst_1', streamId: 's-1' }]);
  // A release names its stream: an older stream's late release leaves a newer one's row alone.
  assert.equal(await instances.releaseStream('hst_1', B, 's-0'), false);
  assert.equal(await instances.releaseStream('hst_1', B, 's-1'), true);
  const bulk = Array.from({ length: 1_200 }, (_, index) => ({ hostId: `hst_bulk${index}`, streamId: `s${index}`, claimant: undefined }));
  assert.deepEqual(await instances.reclaimStreams(bulk, B, later + 3), [], 'any number of streams (chunked under the bound-parameter limits)');
  assert.equal((await instances.streamsOf(B)).length, 1_200);
  // Paged in host id order (the reconcile's slices): every row once, none skipped at a page's edge.
  const paged: string[] = [];
  for (let afterHostId = ''; ; ) {
    const page = await instances.streamsOf(B, { afterHostId, limit: 500 });
    paged.push(...page.map((row) => row.hostId));
    if (page.length < 500) break;
    afterHostId = page.at(-1)!.hostId;
  }
  assert.deepEqual(paged, bulk.map((stream) => stream.hostId).sort());
  // Released together (a fleet dropped at once), past one statement's bound: only the rows naming their stream go.
  await instances.claimStream('hst_bulk7', B, 'newer-7', undefined, later + 3);
  const ended = [...bulk.map(({ hostId, streamId }) => ({ hostId, streamId })), { hostId: 'hst_1', streamId: 's-0' }];
  const released = await instances.releaseStreams(ended, B);
  assert.equal(released.size, 1_199);
  assert.equal(released.has('hst_bulk7'), false, 'a newer stream of the host keeps its row');
  assert.equal(released.has('hst_1'), false, 'no row named that stream');
  assert.deepEqual(await instances.streamsOf(B), [{ hostId: 'hst_bulk7', streamId: 'newer-7' }]);
  assert.equal((await instances.releaseStreams([{ hostId: 'hst_bulk7', streamId: 'newer-7' }], A)).size, 0, 'only the instance named in the row releases it');

  // A SQLite appliance restarted after a crash: its predecessor's instance and streams are forgotten at once.
  await instances.renewLease(A, later + 3, LEASE);
  await instances.claimStream('hst_9', B, 'stream-9-B', undefined, later + 3);
  assert.ok((await instances.streamingAmong(['hst_9'], later + 3)).has('hst_9'));
  await instances.forgetOthers(A);
  assert.equal(await instances.othersAlive(A, later + 4), 0);
  assert.equal((await instances.streamingAmong(['hst_9'], later + 4)).size, 0, "B's stream row went with it");
  assert.ok((await instances.streamingAmong(['hst_2'], later + 4)).has('hst_2'), "A's own stays");
  await instances.leave(A);
  assert.equal((await instances.streamingAmong(['hst_2'], later + 3)).size, 0, "a clean stop takes the instance's hosts offline at once");

  const clock = await instances.databaseTime();
  assert.ok(Math.abs(clock - Date.now()) < 5_000, `the database clock: ${clock} vs ${Date.now()}`);

  // One instance: the work runs; NOTIFY on SQLite has nobody to tell.
  if (backend.name === 'sqlite') {
    let ran = false;
    assert.equal(await instances.exclusively(1n, async () => void (ran = true)), true);
    assert.ok(ran);
    await instances.notify('{}');
  }
});

test('an advisory-locked pass runs on one instance at a time: the other skips it while it runs and runs it after', { timeout: 60_000 }, async () => {
  const url = await (await sharedPostgres()).createDatabase('instances_lock');
  const [one, two] = [postgresKysely(url, { poolSize: 2 }), postgresKysely(url, { poolSize: 2 })];
  try {
    await migratePostgres(one);
    const first = new ApplianceInstanceStore(one, 'postgres');
    const second = new ApplianceInstanceStore(two, 'postgres');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const running = new Promise<void>((resolve) => (entered = resolve));
    const firstPass = first.exclusively(0x43544f5054455354n, async () => {
      entered();
      await held;
    });
    await running;
    let secondRan = false;
    assert.equal(await second.exclusively(0x43544f5054455354n, async () => void (secondRan = true)), false, 'skipped while the other instance holds the lock');
    assert.equal(secondRan, false);
    assert.equal(await second.exclusively(0x43544f5054455355n, async () => undefined), true, 'another pass is not held up');
    release();
    assert.equal(await firstPass, true);
    assert.equal(await second.exclusively(0x43544f5054455354n, async () => void (secondRan = true)), true, 'runs once the first pass ended');
    assert.ok(secondRan);
  } finally {
    await Promise.all([one.destroy(), two.destroy()]);
  }
});

test('signals: NOTIFY reaches a listener on another connection after commit, never on rollback; a listener whose connection is killed listens again and says so', { timeout: 60_000 }, async () => {
  const url = await (await sharedPostgres()).createDatabase('instances_listen');
  const kysely = postgresKysely(url, { poolSize: 2 });
  const heard: string[] = [];
  let relistened = 0;
  const listener = new ClusterListener(url, {
    onPayload: (payload) => heard.push(payload),
    onListening: (first) => void (first || (relistened += 1)),
    onLost: () => undefined,
  });
  try {
    await migratePostgres(kysely);
    await listener.start();
    const store = new ApplianceInstanceStore(kysely, 'postgres');
    const queued = encodeSignal(A, { kind: 'tasks-queued', hostId: 'hst_1' });
    await kysely.transaction().execute(async (tx) => {
      await new ApplianceInstanceStore(tx, 'postgres').notify(encodeSignal(A, { kind: 'stream-claimed', hostId: 'hst_rolled_back' }));
      throw new Error('roll back');
    }).catch(() => undefined);
    await store.notify(queued);
    await waitFor('the signal heard', () => heard.includes(queued));
    assert.ok(!heard.some((payload) => payload.includes('hst_rolled_back')), 'a rolled-back NOTIFY is never delivered');

    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'instances_listen' AND application_name = ${LISTENER_APPLICATION_NAME}`.execute(kysely);
    await waitFor('listening again', () => relistened === 1, 20_000);
    const closed = encodeSignal(B, { kind: 'host-closed', hostId: 'hst_2', code: 'ERR_AGENT_NOT_ACTIVE', message: 'this host was revoked' });
    await store.notify(closed);
    await waitFor('a signal heard after the reconnect', () => heard.includes(closed));
  } finally {
    await listener.stop();
    await kysely.destroy();
  }
});

test('an instance whose listening connection was lost resyncs at once, looking again from before the loss; the next loss is looked up from its own time', { timeout: 60_000 }, async () => {
  const url = await (await sharedPostgres()).createDatabase('instances_resync');
  const stores = await openPostgresStores(url, { log: pino({ level: 'silent' }), poolSize: 2 });
  const resyncs: Array<number | undefined> = [];
  const cluster = new ClusterService({
    stores,
    log: pino({ level: 'silent' }),
    listenUrl: url,
    handlers: { signal: () => undefined, lostStreams: async () => undefined, resync: async (missedSince) => void resyncs.push(missedSince) },
  });
  const killListener = async (): Promise<number> => {
    const at = Date.now();
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'instances_resync' AND application_name = ${LISTENER_APPLICATION_NAME}`.execute(stores.kysely);
    return at;
  };
  try {
    await cluster.start();
    const firstLoss = await killListener();
    await waitFor('a resync once listening again', () => resyncs.length === 1, 20_000);
    const [first] = resyncs;
    assert.equal(typeof first, 'number', 'a loss is looked up again');
    assert.ok(first! >= firstLoss - RESYNC_OVERLAP_MS && first! <= Date.now() - RESYNC_OVERLAP_MS, 'from the overlap before the loss');

    await waitFor('the first resync ran to its end', () => cluster.hearing?.listening === true);
    const secondLoss = await killListener();
    await waitFor('a second resync', () => resyncs.length === 2, 20_000);
    assert.ok(resyncs[1]! >= secondLoss - RESYNC_OVERLAP_MS, 'the first resync cleared what it looked up: the window starts at the second loss');
  } finally {
    await cluster.stop();
    await stores.close();
  }
});

test('a signal payload is read only in the forms this version sends: anything else is skipped, never trusted', () => {
  const closed = { kind: 'host-closed', hostId: 'hst_1', code: 'ERR_AGENT_NOT_ACTIVE', message: 'revoked' } as const;
  assert.deepEqual(parseSignal(encodeSignal(A, closed)), { from: A, signal: closed });
  assert.deepEqual(parseSignal(encodeSignal(A, { kind: 'task-cancelled', hostId: 'hst_1', taskId: 'tsk_1' }))?.signal, { kind: 'task-cancelled', hostId: 'hst_1', taskId: 'tsk_1' });
  assert.deepEqual(parseSignal(encodeSignal(A, { kind: 'stream-claimed', hostId: 'hst_1', agentInstanceId: 'abc' }))?.signal, { kind: 'stream-claimed', hostId: 'hst_1', agentInstanceId: 'abc' });
  assert.deepEqual(parseSignal(encodeSignal(A, { kind: 'stream-claimed', hostId: 'hst_1' }))?.signal, { kind: 'stream-claimed', hostId: 'hst_1' });
  assert.equal(parseSignal(encodeSignal(A, { ...closed, message: 'x'.repeat(5_000) }))?.signal.kind, 'host-closed', 'a long message is cut to fit, not dropped');
  for (const payload of [
    'not json',
    'null',
    JSON.stringify({ from: 'someone', signal: { kind: 'tasks-queued', hostId: 'hst_1' } }),
    JSON.stringify({ from: A, signal: { kind: 'reboot-everything', hostId: 'hst_1' } }),
    JSON.stringify({ from: A, signal: { kind: 'tasks-queued', hostId: '' } }),
    JSON.stringify({ from: A, signal: { kind: 'tasks-queued', hostId: 'h'.repeat(200) } }),
    JSON.stringify({ from: A, signal: { kind: 'task-cancelled', hostId: 'hst_1' } }),
    JSON.stringify({ from: A, signal: { ...closed, code: 'ERR_NOT_A_CODE' } }),
    JSON.stringify({ from: A, signal: { ...closed, message: 42 } }),
    JSON.stringify({ from: A, signal: { kind: 'stream-claimed', hostId: 'hst_1', agentInstanceId: 7 } }),
  ]) {
    assert.equal(parseSignal(payload), undefined, payload);
  }
});

test('a listening connection gone silent (no FIN, no RST) is found by its check, connected again and said so; signals flow again', { timeout: 60_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('instances_silent');
  // A relay that can black-hole traffic, as a dead firewall or host would.
  let blackhole = false;
  const sockets: Socket[] = [];
  const relay = createServer((client) => {
    const upstream = connect(cluster.port, '127.0.0.1');
    sockets.push(client, upstream);
    client.on('data', (data) => void (blackhole || upstream.write(data)));
    upstream.on('data', (data) => void (blackhole || client.write(data)));
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const relayed = url.replace(`:${cluster.port}/`, `:${(relay.address() as AddressInfo).port}/`);
  const heard: string[] = [];
  const lost: string[] = [];
  let relistened = 0;
  const listener = new ClusterListener(relayed, { onPayload: (payload) => heard.push(payload), onListening: (first) => void (first || (relistened += 1)), onLost: (error) => lost.push(error.message) });
  const kysely = postgresKysely(url, { poolSize: 1 });
  try {
    await listener.start();
    const store = new ApplianceInstanceStore(kysely, 'postgres');
    blackhole = true;
    await store.notify('lost-while-silent');
    listener.check(1_000);
    await waitFor('the silence noticed', () => lost.length > 0, 5_000);
    assert.match(lost[0]!, /did not answer within 1000 ms/);
    blackhole = false;
    await waitFor('listening again', () => relistened === 1, 20_000);
    await store.notify('after');
    await waitFor('a signal heard after the reconnect', () => heard.includes('after'));
  } finally {
    blackhole = false;
    await listener.stop();
    await kysely.destroy();
    for (const socket of sockets) socket.destroy();
    relay.close();
  }
});

test('with one pooled connection (database_pool_size = 1) a locked pass still runs its work: the lock is held on a connection of its own', { timeout: 60_000 }, async () => {
  const url = await (await sharedPostgres()).createDatabase('instances_pool_one');
  const stores = await openPostgresStores(url, { poolSize: 1 });
  try {
    const started = Date.now();
    let ran = false;
    assert.equal(await stores.instances.exclusively(0x43544f5054455354n, async () => {
      await stores.instances.lostStreams(Date.now());
      await stores.hosts.get('hst_none');
      ran = true;
    }), true);
    assert.ok(ran);
    assert.ok(Date.now() - started < 3_000, `no wait for a pooled connection: ${Date.now() - started} ms`);
  } finally {
    await stores.close();
  }
});
