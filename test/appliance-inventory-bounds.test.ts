import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { HEARTBEAT_RATE_LIMIT } from '../common/heartbeat-limits.ts';
import type { IngestServiceClient } from '../common/proto.ts';
import { RETRY_AFTER_MS_METADATA } from '../common/retry-hint.ts';
import { openStores } from '../appliance/store/index.ts';
import { HOST_INVENTORY_LIMITS, type PackageInput } from '../appliance/model/inventory.ts';
import type { SoftwareInventoryChunk } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryChunk.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { chunksOf, packages } from './helpers/inventory.ts';
import { addChunk, closeScan } from './helpers/inventory-store.ts';

/** One whole scan on one SubmitSoftwareInventory stream: its gRPC code (0 when stored) and the ERR_ code and retry hint of a refusal. */
function submitWithHint(client: IngestServiceClient, jwt: string, chunks: readonly SoftwareInventoryChunk[]): Promise<{ code: number; errorCode: string | undefined; retryAfterMs: string | undefined }> {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${jwt}`);
    const call = client.SubmitSoftwareInventory(metadata, { deadline: Date.now() + 30_000 }, (error) => {
      if (!error) return resolve({ code: GrpcCode.OK, errorCode: undefined, retryAfterMs: undefined });
      resolve({ code: error.code, errorCode: codeFromGrpcDetails(error.details), retryAfterMs: error.metadata?.get(RETRY_AFTER_MS_METADATA)[0]?.toString() });
    });
    for (const chunk of chunks) call.write(chunk);
    call.end();
  });
}

describe('inventory streams share the host message rate (real appliance)', () => {
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });

  test('a host opening scans nobody asked for (task_id "") in a loop is refused with ERR_STREAM_RATE_LIMITED and a retry hint, and its heartbeats then share the refusal', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'scan-looper' });
    const attempts = HEARTBEAT_RATE_LIMIT.burst + 10;
    const outcomes = [];
    for (let index = 0; index < attempts; index += 1) outcomes.push(await submitWithHint(ingest.client, jwt, chunksOf(hostId, randomUUID(), packages(0, 1))));
    const stored = outcomes.filter((outcome) => outcome.code === GrpcCode.OK).length;
    const refused = outcomes.filter((outcome) => outcome.errorCode === 'ERR_STREAM_RATE_LIMITED');
    assert.equal(stored + refused.length, attempts, JSON.stringify(outcomes.filter((outcome) => outcome.code !== GrpcCode.OK && outcome.errorCode !== 'ERR_STREAM_RATE_LIMITED')));
    assert.ok(refused.length >= 5, `${refused.length} of ${attempts} opens refused`);
    assert.ok(refused.every((outcome) => outcome.code === GrpcCode.RESOURCE_EXHAUSTED && Number(outcome.retryAfterMs) > 0), 'every refusal says when to come back');

    // One budget per host: the scans spent it, so a heartbeat stream opened now is refused as well.
    const beats = new HeartbeatStream(ingest.client, jwt);
    beats.send(hostId, 1);
    const end = await beats.ended;
    assert.equal(codeFromGrpcDetails(end.details), 'ERR_STREAM_RATE_LIMITED');
  });
});

describe('inventory rows a host leaves behind stay bounded and never lock it out (store on a real SQLite file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-inventory-bounds-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function freshHost(name: string) {
    const stores = openStores(join(dir, name));
    const org = await stores.organisations.ensureDefault(1);
    const hostId = 'hst_bounds00001';
    await stores.hosts.insert({ id: hostId, orgId: org.id, publicKey: Buffer.alloc(32, 7), hostname: 'h', machineFingerprint: 'fp', os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    return { stores, inventory: stores.softwareInventory, hostId };
  }
  const named = (from: number, to: number): PackageInput[] =>
    Array.from({ length: to - from }, (_, offset) => ({ name: `p${from + offset}`, version: '1', source: 'dpkg', architecture: 'amd64', publisher: '', installDate: null }));

  test(`completing scans keeps the host's newest ${HOST_INVENTORY_LIMITS.scans} scan records, whatever their status`, async () => {
    const { stores, inventory, hostId } = await freshHost('scans.db');
    const total = HOST_INVENTORY_LIMITS.scans + 20;
    for (let index = 0; index < total; index += 1) {
      // Every fifth scan is abandoned: records of scans that never completed are bounded too.
      const isLast = index % 5 !== 0 || index === total - 1;
      await addChunk(stores, { scanId: `scan-${index}`, taskId: '', hostId, chunkIndex: 0, packages: named(0, 3), isLast, now: 1_000 + index });
      if (!isLast) await closeScan(stores, `scan-${index}`, hostId, 'cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE', 1_000 + index);
    }
    const kept = await inventory.scans(hostId, 10 * total);
    assert.equal(kept.length, HOST_INVENTORY_LIMITS.scans);
    assert.equal(kept[0]!.id, `scan-${total - 1}`, 'the newest stays');
    assert.equal(kept.at(-1)!.id, `scan-${total - HOST_INVENTORY_LIMITS.scans}`, 'the oldest go');
    assert.equal(await inventory.getScan('scan-0'), undefined);
    stores.close();
  });

  test('after an abandoned scan left nearly the live-row limit, a scan reporting those packages again completes; rows truly new beyond the limit are refused and rolled back', async () => {
    const { stores, inventory, hostId } = await freshHost('lockout.db');
    const leftBehind = HOST_INVENTORY_LIMITS.livePackages - 400;
    const add = async (scanId: string, all: PackageInput[], isLast: boolean) => {
      for (let index = 0; index * 500 < all.length; index += 1) {
        const last = isLast && (index + 1) * 500 >= all.length;
        await addChunk(stores, { scanId, taskId: '', hostId, chunkIndex: index, packages: all.slice(index * 500, (index + 1) * 500), isLast: last, now: 5_000 });
      }
    };
    // Two scans abandoned mid-way (each within the per-scan limit) leave 39,600 live rows.
    for (const [scanId, from, to] of [['abandoned-1', 0, leftBehind / 2], ['abandoned-2', leftBehind / 2, leftBehind]] as const) {
      await add(scanId, named(from, to), false);
      await closeScan(stores, scanId, hostId, 'cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE', 6_000);
    }
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, leftBehind);

    // Packages already live again, then a last chunk of 200 known and 300 new: within the limit, so the scan completes.
    await add('again', named(0, 19_500), false);
    const last = await addChunk(stores, { scanId: 'again', taskId: '', hostId, chunkIndex: 39, packages: named(leftBehind - 200, leftBehind + 300), isLast: true, now: 7_000 });
    assert.equal(last.scan.status, 'completed');
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, 20_000, 'what the scan saw stays live; the rest is marked removed');

    // The same class of input with rows that are really new: 40,000 live then a chunk of 500 more is refused whole.
    await add('fill', named(100_000, 100_000 + HOST_INVENTORY_LIMITS.packagesPerScan), false);
    const liveBefore = (await inventory.packages(hostId, { liveOnly: true })).length;
    assert.ok(liveBefore + 500 > HOST_INVENTORY_LIMITS.livePackages);
    await assert.rejects(
      addChunk(stores, { scanId: 'overflow', taskId: '', hostId, chunkIndex: 0, packages: named(200_000, 200_500), isLast: false, now: 8_000 }),
      (error: { code?: string; details?: { reason?: string } }) => error.code === 'ERR_INVENTORY_SCAN_TOO_LARGE' && error.details?.reason === 'host_inventory_full',
    );
    assert.equal((await inventory.packages(hostId, { liveOnly: true })).length, liveBefore, 'the refused chunk left nothing');
    assert.equal(await inventory.getScan('overflow'), undefined, 'nor a scan record');
    stores.close();
  });
});
