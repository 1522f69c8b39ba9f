import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pino from 'pino';
import { clusterHandlers } from '../appliance/cluster/handlers.ts';
import { InventoryService } from '../appliance/inventory/service.ts';
import { newId } from '../appliance/lib/ids.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { openStores } from '../appliance/store/index.ts';
import { applyTaskEvent, recordTask, TaskService } from '../appliance/tasks/index.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-lost-streams-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

// The lost-stream pass over a real SQLite file, with the services wired as serve.ts wires them: the
// rows of a dead instance's streams, their hosts' disconnect time, their sent tasks and their open
// scans move in one transaction, so a pass cut off part-way leaves everything to the next pass.
test('the lost-stream pass takes a dead instance’s hosts offline in one transaction: cut off after its delete, it leaves the rows, the tasks and the scans to the next pass', async () => {
  const stores = openStores(join(dir, 'lost.db'));
  after(() => stores.close());
  const cluster = await singleInstance(stores, log);
  const presence: PresenceService = new PresenceService({ stores, log, cluster, requeueTasks: (hostIds) => void tasks.disconnected(hostIds) });
  const tasks: TaskService = new TaskService({ stores, presence: presence.registry, log, cluster });
  const inventory = new InventoryService({ stores, presence: presence.registry, tasks, log });
  const handlers = clusterHandlers(() => ({ presence, tasks, inventory }));

  const now = Date.now();
  const orgId = (await stores.organisations.ensureDefault(now)).id;
  const hostId = newId('hst');
  await stores.hosts.insert({
    id: hostId, orgId, publicKey: randomBytes(32), hostname: 'web-1', machineFingerprint: 'f'.repeat(64), os: 'linux', arch: 'x64', agentVersion: '0.2.0',
    approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: now,
  });
  // Its stream was held by instance B, whose lease ran out; a task was sent on it and a scan was arriving.
  const dead = newId('ins');
  await stores.instances.renewLease(dead, now - 60_000, 15_000);
  await stores.instances.claimStream(hostId, dead, 'stream-on-b', undefined, now - 50_000);
  const { task } = await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, now - 40_000));
  assert.ok(await applyTaskEvent(stores, task.id, 'sent', now - 40_000));
  await stores.transact((tx) => tx.softwareInventory.addChunk({ scanId: 'scan-on-b', hostId, taskId: '', chunkIndex: 0, packages: [], isLast: false, now: now - 30_000 }));

  // Cut off after the tasks moved, before it could finish: the whole pass rolls back.
  await assert.rejects(
    presence.lostWithInstance(now, async (tx, hostIds) => {
      await tasks.requeueLostIn(tx, hostIds);
      throw new Error('cut off');
    }),
    /cut off/,
  );
  assert.equal(await stores.instances.holderOf(hostId), dead, 'the row is still there for the next pass');
  assert.equal((await stores.tasks.get(task.id))?.state, 'sent');
  assert.equal((await stores.hosts.get(hostId))?.lastDisconnectedAt, null);

  // The next pass, as ClusterService runs it.
  await handlers.lostStreams(now);
  assert.equal(await stores.instances.holderOf(hostId), undefined);
  assert.equal((await stores.tasks.get(task.id))?.state, 'queued', 'queued again for the next stream, wherever it opens');
  assert.ok(((await stores.hosts.get(hostId))?.lastDisconnectedAt ?? 0) >= now);
  assert.deepEqual([(await stores.softwareInventory.getScan('scan-on-b'))?.status], ['abandoned']);
  await handlers.lostStreams(now + 1);
  assert.equal((await stores.tasks.get(task.id))?.state, 'queued', 'nothing left for a later pass');
});
