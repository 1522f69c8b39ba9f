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

test('one sweep queues at most MAX_SCANS_PER_SWEEP scans; the next sweep takes the rest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-sweeper-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stores = openStores(join(dir, 'appliance.db'));
  t.after(() => stores.close());
  const log = pino({ level: 'silent' });
  const org = await stores.organisations.ensureDefault(1);
  const presence = new PresenceRegistry(() => undefined);
  // Its deadline timers would keep the test process alive.
  t.after(() => presence.closeAll(new CtOpsError('ERR_INTERNAL', 'test over')));
  const pushed: string[] = [];
  const hosts = MAX_SCANS_PER_SWEEP + 50;
  for (let index = 0; index < hosts; index += 1) {
    const id = `hst_sweep${String(index).padStart(11, '0')}`;
    await stores.hosts.insert({ id, orgId: org.id, publicKey: Buffer.alloc(32, index + 1), hostname: `h${index}`, machineFingerprint: `fp${index}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
    const send = (message: HeartbeatResponse): boolean => (message.task && pushed.push(id), true);
    presence.attach({ agentId: id, send, deliver: (message) => Promise.resolve(send(message)), close: () => undefined }, 3600);
  }
  const inventory = new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log }), log });
  const first = await inventory.sweep(1_000);
  assert.equal(first.length, MAX_SCANS_PER_SWEEP);
  assert.equal(pushed.length, MAX_SCANS_PER_SWEEP, 'each queued scan is sent to its online agent at once');
  const second = await inventory.sweep(61_000);
  assert.equal(second.length, 50, 'hosts with a scan under way get no second one; the rest get theirs');
  assert.deepEqual(await inventory.sweep(121_000), []);
});
