import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openStores } from '../appliance/store/index.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { callRegister, ingestClient, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { addChunk } from './helpers/inventory-store.ts';

/*
 * What the appliance cleans up by itself: tasks of hosts that may no longer stream, and
 * inventory scans a stop cut off. Driven through the real process and its data directory.
 */
describe('appliance housekeeping', () => {
  let appliance: TestAppliance;
  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await appliance.dispose();
  });

  async function activeHost(hostname: string): Promise<string> {
    const { token } = await appliance.createToken('--auto-approve');
    const client = ingestClient(appliance.address, appliance.caCert);
    const registered = await callRegister(client, signedRegister(newIdentity(hostname), token));
    client.close();
    assert.ok(registered.ok);
    return registered.value.agent_id;
  }

  test('revoking a host cancels its unfinished tasks; they never wait for an agent that may not connect', async () => {
    const hostId = await activeHost('revoked-with-tasks');
    const queued = await appliance.cliJson<{ id: string; state: string }>('hosts', 'rescan', hostId);
    assert.equal(queued.state, 'queued');
    assert.equal((await appliance.cli('hosts', 'revoke', hostId)).code, 0);
    const task = await appliance.cliJson<{ state: string; error_code: string | null }>('tasks', 'show', queued.id);
    assert.equal(task.state, 'cancelled');
    assert.equal(task.error_code, 'ERR_AGENT_NOT_ACTIVE');
    assert.equal(appliance.process.logged('host decision', { host_id: hostId, decision: 'revoke' })[0]?.cancelled_tasks, 1);
  });

  test('an inventory scan left receiving by a stop is abandoned at the next start, marking nothing removed', async () => {
    const hostId = await activeHost('scan-cut-off');
    await appliance.stop();
    const stores = openStores(join(appliance.dataDir, 'appliance.db'));
    const packages = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => ({ name: `pkg-${from + index}`, version: '1.0', source: 'dpkg', architecture: 'amd64', publisher: '', installDate: null }));
    await addChunk(stores, { scanId: 'scan-complete-1', taskId: '', hostId, chunkIndex: 0, packages: packages(0, 10), isLast: true, now: 1 });
    await addChunk(stores, { scanId: 'scan-cut-off-2', taskId: '', hostId, chunkIndex: 0, packages: packages(0, 3), isLast: false, now: 2 });
    stores.close();

    appliance = await TestAppliance.start({ dataDir: appliance.dataDir });
    await appliance.process.waitForLog('inventory scans cut off by the last stop marked abandoned');
    await appliance.stop();
    const after = openStores(join(appliance.dataDir, 'appliance.db'));
    try {
      assert.equal((await after.softwareInventory.getScan('scan-cut-off-2'))?.status, 'abandoned');
      assert.equal((await after.softwareInventory.packages(hostId, { liveOnly: true })).length, 10, 'nothing was marked removed');
      assert.equal(await after.softwareInventory.lastInventoryAt(hostId), 1);
    } finally {
      after.close();
    }
    appliance = await TestAppliance.start({ dataDir: appliance.dataDir });
  });
});
