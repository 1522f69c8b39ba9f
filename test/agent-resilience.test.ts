import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { RETRY_FLOOR_MS } from '../agent/lifecycle/backoff.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/wait.ts';

describe('agent resilience', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test('after an appliance restart the agent reconnects within the 1, 2, 4 s backoff ceilings and the host is online again', async () => {
    const first = await TestAppliance.start();
    cleanup.push(() => first.dispose());
    const { token } = await first.createToken('--auto-approve');
    const agent = new TestAgent({ address: first.address, caCertFile: first.caCertPath, orgToken: token });
    cleanup.push(() => agent.dispose());
    const proc = agent.start();
    await proc.waitForLog('heartbeat stream opened');
    await first.stop();
    await sleep(6_500);
    const second = await TestAppliance.start({ dataDir: first.dataDir, grpcPort: first.grpcPort });
    cleanup.push(() => second.dispose());
    await proc.waitForLog('heartbeat stream opened', {}, 20_000, 2);
    const delays = proc.events.filter((event) => typeof event.reconnect_in_ms === 'number').map((event) => event.reconnect_in_ms as number);
    assert.ok(delays.length >= 3, `reconnect delays logged: ${JSON.stringify(delays)}`);
    for (const [index, ceiling] of [1000, 2000, 4000].entries()) {
      assert.ok(delays[index]! >= RETRY_FLOOR_MS && delays[index]! < ceiling, `delay ${index} was ${delays[index]} ms, expected full jitter in [${RETRY_FLOOR_MS}, ${ceiling})`);
    }
    await waitFor('online again', async () => (await second.host(agent.state().agent_id)).status === 'online');
    assert.equal(proc.logged('registering agent').length, 1, 'the JWT was still valid: no new registration');
  });

  test('a short-lived JWT is renewed on the stream without registering again', async () => {
    const appliance = await TestAppliance.start({ args: ['--jwt-ttl-secs', '12'] });
    cleanup.push(() => appliance.dispose());
    const { token } = await appliance.createToken('--auto-approve');
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token });
    cleanup.push(() => agent.dispose());
    const proc = agent.start();
    await proc.waitForLog('heartbeat stream opened');
    const original = agent.state().jwt;
    await proc.waitForLog('credential refreshed', {}, 20_000);
    await waitFor('new JWT saved', () => agent.state().jwt !== original);
    assert.equal(proc.logged('registering agent').length, 1);
    assert.equal(proc.logged('heartbeat stream opened').length, 1, 'the stream stayed up');
  });

  test('an agent whose JWT expired while it was stopped registers again by key, although its single-use token is used up', async () => {
    const appliance = await TestAppliance.start({ args: ['--jwt-ttl-secs', '10'] });
    cleanup.push(() => appliance.dispose());
    const { token, id } = await appliance.createToken('--auto-approve', '--max-uses', '1');
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token });
    cleanup.push(() => agent.dispose());
    await agent.start().waitForLog('heartbeat stream opened');
    const { agent_id } = agent.state();
    await agent.stop();
    const tokens = await appliance.cliJson<Array<{ id: string; state: string }>>('tokens', 'list');
    assert.equal(tokens.find((entry) => entry.id === id)?.state, 'used-up');
    await sleep(11_000);
    const proc = agent.start();
    await proc.waitForLog('heartbeat stream opened', {}, 20_000);
    assert.equal(proc.logged('registering agent').length, 1, 'the expired JWT led to a registration by key');
    assert.equal(agent.state().agent_id, agent_id);
    assert.equal((await appliance.hosts()).length, 1);
  });
});
