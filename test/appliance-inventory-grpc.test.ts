import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import type { IngestServiceClient } from '../common/proto.ts';
import type { SoftwareInventoryChunk } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryChunk.ts';
import type { SoftwareInventoryStore } from '../appliance/store/software-inventory.ts';
import type { TestAppliance } from './helpers/appliance.ts';
import { activeAgent as enrolActive, chunksOf, InventoryStream, packages, submitScan, type InventoryOutcome, startInventoryAppliance } from './helpers/inventory.ts';

type Outcome = InventoryOutcome;

function refusal(outcome: Outcome): { code: number; errorCode: string | undefined; details: string } {
  assert.equal(outcome.ok, false, `expected a refusal, got ${JSON.stringify(outcome)}`);
  if (outcome.ok) throw new Error('unreachable');
  return { code: outcome.code, errorCode: codeFromGrpcDetails(outcome.details), details: outcome.details };
}

describe('SubmitSoftwareInventory against a real appliance', () => {
  let started: Awaited<ReturnType<typeof startInventoryAppliance>>;
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  let store: SoftwareInventoryStore;

  before(async () => {
    started = await startInventoryAppliance();
    ({ appliance, client, store } = started);
  });
  after(async () => {
    await started?.dispose();
  });

  const activeAgent = (hostname: string) => enrolActive(appliance, client, hostname);
  const submit = (jwt: string, chunks: SoftwareInventoryChunk[]): Promise<Outcome> => submitScan(client, jwt, chunks);

  test('a 1,200-package scan in 3 chunks is stored; a rescan without 2 packages marks exactly those removed', async () => {
    const { agentId, jwt } = await activeAgent('inv-full');
    const first = randomUUID();
    const all = packages(0, 1200);
    const outcome = await submit(jwt, chunksOf(agentId, first, all));
    assert.ok(outcome.ok, JSON.stringify(outcome));
    assert.deepEqual({ ...outcome.value }, { scan_id: first, packages_received: 1200, added: 1200, removed: 0, unchanged: 0, skipped: [] });
    const stored = await store.packages(agentId);
    assert.equal(stored.length, 1200);
    assert.ok(stored.every((pkg) => !pkg.isRemoved && pkg.source === 'dpkg' && pkg.installDate === 1_700_000_000));
    const scan = (await store.getScan(first))!;
    assert.equal(scan.status, 'completed');
    assert.equal(scan.chunks, 3);
    assert.equal(scan.taskId, '', 'a scan nobody asked for completes no task');
    assert.equal(await store.lastInventoryAt(agentId), scan.completedAt);
    const firstSeen = new Map(stored.map((pkg) => [pkg.name, pkg.firstSeen]));

    // Rescan: two packages gone, one upgraded (a new version is a new row), three new.
    const second = randomUUID();
    const rescan = all.filter((pkg) => pkg.name !== 'pkg-00007' && pkg.name !== 'pkg-01100').map((pkg) => (pkg.name === 'pkg-00500' ? { ...pkg, version: '2.0.0' } : pkg));
    rescan.push(...packages(5000, 5003));
    const again = await submit(jwt, chunksOf(agentId, second, rescan));
    assert.ok(again.ok, JSON.stringify(again));
    assert.deepEqual({ ...again.value }, { scan_id: second, packages_received: 1201, added: 4, removed: 3, unchanged: 1197, skipped: [] });
    const after = await store.packages(agentId);
    const removed = after.filter((pkg) => pkg.isRemoved).map((pkg) => `${pkg.name}@${pkg.version}`).sort();
    assert.deepEqual(removed, ['pkg-00007@1.0.0', 'pkg-00500@1.0.0', 'pkg-01100@1.0.0']);
    assert.ok(after.filter((pkg) => pkg.isRemoved).every((pkg) => pkg.removedAt !== null));
    assert.equal((await store.packages(agentId, { liveOnly: true })).length, 1201);
    for (const pkg of after) {
      if (firstSeen.has(pkg.name) && pkg.version === '1.0.0') assert.equal(pkg.firstSeen, firstSeen.get(pkg.name), `${pkg.name} kept first_seen`);
    }
    assert.ok((await store.hostsWithPackage('pkg-00500')).some((pkg) => pkg.hostId === agentId && pkg.version === '2.0.0'));
  });

  test('a stream that ends before is_last marks nothing removed and the scan is not completed', async () => {
    const { agentId, jwt } = await activeAgent('inv-eof');
    const baseline = randomUUID();
    assert.ok((await submit(jwt, chunksOf(agentId, baseline, packages(0, 1000)))).ok);
    const lastInventory = await store.lastInventoryAt(agentId);

    const partial = randomUUID();
    const chunks = chunksOf(agentId, partial, packages(0, 1000)).map((chunk) => ({ ...chunk, packages: chunk.packages!.slice(0, 10), is_last: false }));
    const ended = refusal(await submit(jwt, chunks));
    assert.equal(ended.code, GrpcCode.ABORTED);
    assert.equal(codeFromGrpcDetails(ended.details), 'ERR_INVENTORY_SCAN_INCOMPLETE');
    assert.match(ended.details, /before the last chunk/);
    assert.equal((await store.getScan(partial))!.status, 'abandoned');
    assert.equal((await store.packages(agentId)).filter((pkg) => pkg.isRemoved).length, 0);
    assert.equal(await store.lastInventoryAt(agentId), lastInventory);

    // A stream cancelled mid-scan (connection lost) is abandoned too.
    const cut = randomUUID();
    const stream = new InventoryStream(client, jwt);
    stream.write({ ...chunksOf(agentId, cut, packages(0, 20))[0]!, is_last: false });
    await appliance.process.waitForLog('inventory chunk stored', { scan_id: cut });
    stream.call.cancel();
    await appliance.process.waitForLog('inventory scan closed', { scan_id: cut });
    assert.equal((await store.getScan(cut))!.status, 'abandoned');
    assert.equal((await store.packages(agentId)).filter((pkg) => pkg.isRemoved).length, 0);
    assert.equal(await store.lastInventoryAt(agentId), lastInventory);

    // The abandoned scan can be sent again whole on a new stream and then completes.
    const retried = await submit(jwt, chunksOf(agentId, partial, packages(0, 999)));
    assert.ok(retried.ok, JSON.stringify(retried));
    assert.equal(retried.value.removed, 1);
    assert.equal((await store.getScan(partial))!.status, 'completed');
  });

  for (const [decision, status] of [['delete', 'deleted'], ['revoke', 'revoked']] as const) {
    test(`a stream opened before its host was ${status} stores no further chunk: refused, nothing of it kept, nothing marked removed`, async () => {
      const { agentId, jwt } = await activeAgent(`inv-${status}-mid-stream`);
      const baseline = randomUUID();
      assert.ok((await submit(jwt, chunksOf(agentId, baseline, packages(0, 10)))).ok);
      const lastInventory = await store.lastInventoryAt(agentId);
      const scanId = randomUUID();
      const [first, second] = chunksOf(agentId, scanId, packages(100, 1100));
      const stream = new InventoryStream(client, jwt);
      stream.write(first!);
      await appliance.process.waitForLog('inventory chunk stored', { scan_id: scanId });

      const decided = await appliance.cli('hosts', decision, agentId);
      assert.equal(decided.code, 0, decided.stderr);
      stream.write(second!);
      const refused = refusal(await stream.end());
      assert.equal(refused.errorCode, 'ERR_AGENT_NOT_ACTIVE');
      assert.match(refused.details, new RegExp(`the host is ${status}`));

      const scan = (await store.getScan(scanId))!;
      assert.deepEqual([scan.status, scan.chunks, scan.completedAt], ['failed', 1, null], 'the scan never completes');
      const kept = await store.packages(agentId);
      assert.equal(kept.filter((pkg) => pkg.name >= 'pkg-00600').length, 0, 'nothing of the chunk sent after the decision is stored');
      assert.equal(kept.filter((pkg) => pkg.isRemoved).length, 0, 'nothing is marked removed');
      assert.equal(await store.lastInventoryAt(agentId), lastInventory);
    });
  }

  test("a chunk for another host's scan is refused and changes nothing", async () => {
    const owner = await activeAgent('inv-owner');
    const intruder = await activeAgent('inv-intruder');
    const scanId = randomUUID();
    const open = new InventoryStream(client, owner.jwt);
    open.write(chunksOf(owner.agentId, scanId, packages(0, 600))[0]!);
    await appliance.process.waitForLog('inventory chunk stored', { scan_id: scanId });

    const stolen = refusal(await submit(intruder.jwt, [{ agent_id: intruder.agentId, scan_id: scanId, task_id: '', chunk_index: 1, packages: packages(0, 5), is_last: true }]));
    assert.equal(stolen.code, GrpcCode.PERMISSION_DENIED);
    assert.equal(codeFromGrpcDetails(stolen.details), 'ERR_INVENTORY_SCAN_CONFLICT');
    assert.match(stolen.details, /another host/);
    assert.equal((await store.packages(intruder.agentId)).length, 0);
    // The owner's scan is untouched and completes.
    open.write(chunksOf(owner.agentId, scanId, packages(0, 600))[1]!);
    const done = await open.end();
    assert.ok(done.ok, JSON.stringify(done));
    assert.equal(done.value.added, 600);

    // Naming another agent in the chunk is refused as well.
    const named = refusal(await submit(intruder.jwt, chunksOf(owner.agentId, randomUUID(), packages(0, 5))));
    assert.equal(named.errorCode, 'ERR_AGENT_MISMATCH');
  });

  test('a replayed completed scan is refused and changes nothing', async () => {
    const { agentId, jwt } = await activeAgent('inv-replay');
    const scanId = randomUUID();
    const chunks = chunksOf(agentId, scanId, packages(0, 700));
    assert.ok((await submit(jwt, chunks)).ok);
    const before = await store.packages(agentId);
    const replayed = refusal(await submit(jwt, chunks));
    assert.equal(replayed.code, GrpcCode.ALREADY_EXISTS);
    assert.equal(codeFromGrpcDetails(replayed.details), 'ERR_INVENTORY_SCAN_COMPLETED');
    const onlyLast = refusal(await submit(jwt, [chunks[1]!]));
    assert.equal(onlyLast.code, GrpcCode.ALREADY_EXISTS);
    assert.deepEqual(await store.packages(agentId), before);
    assert.equal((await store.getScan(scanId))!.status, 'completed');
  });

  test('a 10,000-package chunk is refused before anything is written', async () => {
    const { agentId, jwt } = await activeAgent('inv-huge');
    const scanId = randomUUID();
    const huge = refusal(await submit(jwt, [{ agent_id: agentId, scan_id: scanId, task_id: '', chunk_index: 0, packages: packages(0, 10_000), is_last: true }]));
    assert.equal(huge.code, GrpcCode.INVALID_ARGUMENT);
    assert.match(huge.details, /at most 500 packages/);
    assert.equal(await store.getScan(scanId), undefined);
    assert.equal((await store.packages(agentId)).length, 0);
  });

  test('missing or malformed chunk fields are refused, with nothing written', async () => {
    const { agentId, jwt } = await activeAgent('inv-fields');
    const good = (overrides: Partial<SoftwareInventoryChunk>): SoftwareInventoryChunk[] => [{ agent_id: agentId, scan_id: randomUUID(), task_id: '', chunk_index: 0, packages: packages(0, 3), is_last: true, ...overrides }];
    // A package that cannot be stored is skipped and counted instead (appliance-inventory-odd-records.test.ts);
    // a scan of nothing but such packages stores nothing and is refused like an empty one.
    const cases: Array<[string, SoftwareInventoryChunk[]]> = [
      ['only unstorable packages', good({ packages: [{ version: '1', source: 'dpkg' }, { name: 'n'.repeat(513), version: '1' }, { name: 'a\u0000b', version: '1' }, { name: 'x', version: '1\u001b' }] })],
      ['empty scan_id', good({ scan_id: '' })],
      ['scan_id with a slash', good({ scan_id: '../../etc/passwd' })],
      ['empty scan', good({ packages: [] })],
      ['no chunk at all', []],
    ];
    for (const [label, chunks] of cases) {
      const refused = refusal(await submit(jwt, chunks));
      assert.equal(refused.code, GrpcCode.INVALID_ARGUMENT, `${label}: ${refused.details}`);
    }
    const notFromZero = refusal(await submit(jwt, good({ chunk_index: 1 })));
    assert.equal(codeFromGrpcDetails(notFromZero.details), 'ERR_INVENTORY_SCAN_OUT_OF_ORDER', 'a scan must start at chunk 0');
    // A gap in the chunk sequence fails the scan, nothing is marked removed.
    const scanId = randomUUID();
    const [c0, , c2] = chunksOf(agentId, scanId, packages(0, 1500));
    const gap = refusal(await submit(jwt, [c0!, c2!]));
    assert.equal(gap.code, GrpcCode.ABORTED);
    assert.equal(codeFromGrpcDetails(gap.details), 'ERR_INVENTORY_SCAN_OUT_OF_ORDER');
    assert.equal((await store.getScan(scanId))!.status, 'failed');
    assert.equal(await store.lastInventoryAt(agentId), null);
    assert.equal((await store.packages(agentId)).filter((pkg) => pkg.isRemoved).length, 0);
    // Without a JWT nothing is accepted.
    const anonymous = refusal(await submit('', good({})));
    assert.equal(anonymous.errorCode, 'ERR_JWT_MISSING');
  });

  test('a duplicate (name, version, source, architecture) inside one chunk is tolerated and counted once', async () => {
    const { agentId, jwt } = await activeAgent('inv-dupes');
    const list = [...packages(0, 10), ...packages(0, 3, { publisher: 'Another Maintainer' }), ...packages(3, 5)];
    const outcome = await submit(jwt, chunksOf(agentId, randomUUID(), list));
    assert.ok(outcome.ok, JSON.stringify(outcome));
    assert.equal(outcome.value.packages_received, 15);
    assert.equal(outcome.value.added, 10);
    assert.equal((await store.packages(agentId)).length, 10);
    assert.deepEqual(outcome.value.skipped.map(({ reason, count, example }) => [reason, count, example]), [['duplicate', 5, list[0]!.name]], 'the repeats are counted, not silently dropped');
  });

  test('garbage on the wire does not crash the appliance', async () => {
    const { agentId, jwt } = await activeAgent('inv-garbage');
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${jwt}`);
    // Raw bytes that are not a SoftwareInventoryChunk, through a client with an identity serializer.
    const raw = new grpc.Client(appliance.address, grpc.credentials.createSsl(Buffer.from(appliance.caCert)));
    const garbage = await new Promise<number>((resolve) => {
      const call = raw.makeClientStreamRequest<Buffer, Buffer>('/ctops.ingest.v1.IngestService/SubmitSoftwareInventory', (value) => value, (value) => value, metadata, (error) => resolve(error?.code ?? 0));
      call.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99]));
      call.end();
    });
    raw.close();
    assert.notEqual(garbage, GrpcCode.OK);
    // Still serving.
    const outcome = await submit(jwt, chunksOf(agentId, randomUUID(), packages(0, 3)));
    assert.ok(outcome.ok, JSON.stringify(outcome));
  });
});
