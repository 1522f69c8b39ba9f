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

test('one sweep queues at most MAX_SCANS_PER_SWEEP scans; the next sweep takes the rest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-sweeper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stores = openStores(join(dir, 'appliance.db'));
  t.after(() => stores.close());
  const log = pino({ level: 'silent' });
  const org = stores.organisations.ensureDefault(1);
  const presence = new PresenceRegistry(() => undefined);
  // Its deadline timers would keep the test process alive.
  t.after(() => presence.closeAll(new CtOpsError('ERR_INTERNAL', 'test over')));
  const pushed: string[] = [];
  const hosts = MAX_SCANS_PER_SWEEP + 50;
  for (let index = 0; index < hosts; index += 1) {
    const id = `hst_sweep${String(index).padStart(11, '0')}`;
    stores.hosts.insert({ id, orgId: org.id, publicKey: Buffer.alloc(32, index + 1), hostname: `h${index}`, machineFingerprint: `fp${index}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    const send = (message: HeartbeatResponse): boolean => (message.task && pushed.push(id), true);
    presence.attach({ agentId: id, send, deliver: (message) => Promise.resolve(send(message)), close: () => undefined }, 3600);
  }
  const inventory = new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log }), log });
  const first = await inventory.sweep(1_000);
  assert.equal(first.length, MAX_SCANS_PER_SWEEP);
  // Sent after the task committed, without holding the pass.
  await waitFor('each queued scan sent to its online agent', () => pushed.length === MAX_SCANS_PER_SWEEP, 10_000, 5);
  const second = await inventory.sweep(61_000);
  assert.equal(second.length, 50, 'hosts with a scan under way get no second one; the rest get theirs');
  assert.deepEqual(await inventory.sweep(121_000), []);
});

test('a host whose peer never accepts a write does not hold the sweeper pass: the hosts after it get their scans', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-sweeper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stores = openStores(join(dir, 'appliance.db'));
  t.after(() => stores.close());
  const log = pino({ level: 'silent' });
  const org = stores.organisations.ensureDefault(1);
  const presence = new PresenceRegistry(() => undefined);
  t.after(() => presence.closeAll(new CtOpsError('ERR_INTERNAL', 'test over')));
  const pushed: string[] = [];
  for (let index = 0; index < 3; index += 1) {
    const id = `hst_stuck${String(index).padStart(11, '0')}`;
    stores.hosts.insert({ id, orgId: org.id, publicKey: Buffer.alloc(32, index + 1), hostname: `h${index}`, machineFingerprint: `fp${index}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    // The first host's peer stopped reading: its write is never accepted.
    const deliver = (message: HeartbeatResponse): Promise<boolean> => (index === 0 ? new Promise<boolean>(() => undefined) : Promise.resolve((message.task && pushed.push(id), true)));
    presence.attach({ agentId: id, send: () => true, deliver, close: () => undefined }, 3600);
  }
  const inventory = new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log, deliveryWaitMs: 60_000 }), log });
  const started = Date.now();
  assert.equal((await inventory.sweep(1_000)).length, 3);
  assert.ok(Date.now() - started < 5_000, 'the pass does not wait for any write');
  await waitFor('the other hosts got their scans', () => pushed.length === 2, 10_000, 5);
});
