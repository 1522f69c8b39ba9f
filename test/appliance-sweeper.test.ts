import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { CtOpsError } from '../common/errors.ts';
import type { HeartbeatResponse } from '../common/proto.ts';
import { InventoryService } from '../appliance/inventory/service.ts';
import { MAX_SCANS_PER_SWEEP } from '../appliance/inventory/sweeper.ts';
import { PresenceRegistry } from '../appliance/presence/registry.ts';
import { openStores } from '../appliance/store/index.ts';
import { TaskService } from '../appliance/tasks/service.ts';
import { waitFor } from './helpers/wait.ts';
import { singleInstance } from './helpers/single-instance.ts';

/**
 * `count` active hosts, each streaming to `deliver(hostId, message)`, and an InventoryService over a
 * fresh database; everything is closed when the test ends.
 */
async function streamingHosts(t: { after: (fn: () => void) => void }, count: number, prefix: string, deliver: (hostId: string, index: number, message: HeartbeatResponse) => Promise<boolean>, deliveryWaitMs?: number): Promise<InventoryService> {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-sweeper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stores = openStores(join(dir, 'appliance.db'));
  t.after(() => stores.close());
  const log = pino({ level: 'silent' });
  const org = await stores.organisations.ensureDefault(1);
  const presence = new PresenceRegistry(() => undefined);
  // Its deadline timers would keep the test process alive.
  t.after(() => presence.closeAll(new CtOpsError('ERR_INTERNAL', 'test over')));
  for (let index = 0; index < count; index += 1) {
    const id = `hst_${prefix}${String(index).padStart(16 - prefix.length, '0')}`;
    await stores.hosts.insert({ id, orgId: org.id, publicKey: Buffer.alloc(32, index + 1), hostname: `h${index}`, machineFingerprint: `fp${index}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    presence.attach({ agentId: id, send: (message) => deliver(id, index, message), close: () => undefined }, 3600);
  }
  return new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log, cluster: await singleInstance(stores, log), deliveryWaitMs }), log });
}

test('one sweep queues at most MAX_SCANS_PER_SWEEP scans; the next sweep takes the rest', async (t) => {
  const pushed: string[] = [];
  const inventory = await streamingHosts(t, MAX_SCANS_PER_SWEEP + 50, 'sweep', async (id, _index, message) => (message.task && pushed.push(id), true));
  const first = await inventory.sweep(1_000);
  assert.equal(first.length, MAX_SCANS_PER_SWEEP);
  // Sent after the task committed, without holding the pass.
  await waitFor('each queued scan sent to its online agent', () => pushed.length === MAX_SCANS_PER_SWEEP, 10_000, 5);
  const second = await inventory.sweep(61_000);
  assert.equal(second.length, 50, 'hosts with a scan under way get no second one; the rest get theirs');
  assert.deepEqual(await inventory.sweep(121_000), []);
});

test('a host whose peer never accepts a write does not hold the sweeper pass: the hosts after it get their scans', async (t) => {
  const pushed: string[] = [];
  // The first host's peer stopped reading: its write is never accepted.
  const inventory = await streamingHosts(t, 3, 'stuck', (id, index, message) => (index === 0 ? new Promise<boolean>(() => undefined) : Promise.resolve((message.task && pushed.push(id), true))), 60_000);
  const started = Date.now();
  assert.equal((await inventory.sweep(1_000)).length, 3);
  assert.ok(Date.now() - started < 5_000, 'the pass does not wait for any write');
  await waitFor('the other hosts got their scans', () => pushed.length === 2, 10_000, 5);
});

test('a sweep whose signal is aborted (the appliance stopping) ends at its next step and queues nothing more', async (t) => {
  const pushed: string[] = [];
  const inventory = await streamingHosts(t, 40, 'stop', async (id, _index, message) => (message.task && pushed.push(id), true));
  const stopping = new AbortController();
  const sweep = inventory.sweep(1_000, stopping.signal);
  // Aborted while the pass is under way (it yields between its steps).
  stopping.abort();
  const queued = await sweep;
  assert.ok(queued.length < 40, `stopped early: ${queued.length} of 40 queued`);
  // The next pass (no stop) queues the rest.
  assert.equal((await inventory.sweep(2_000)).length, 40 - queued.length);
});
