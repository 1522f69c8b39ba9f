import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { backoffCeilingMs, RETRY_FLOOR_MS, stepReaching } from '../agent/lifecycle/backoff.ts';
import { STOPPING_RETRY_AFTER_MS } from '../appliance/heartbeat/stopping.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/wait.ts';

describe('agent resilience', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("after an appliance restart the agent waits the stopping appliance's hint, then within its backoff ceilings, and the host is online again", async () => {
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
    await proc.waitForLog('heartbeat stream opened', {}, 25_000, 2);
    const closes = proc.logged('heartbeat stream closed');
    const hint = closes[0]?.retry_after_ms as number;
    assert.ok(hint >= STOPPING_RETRY_AFTER_MS.min && hint < STOPPING_RETRY_AFTER_MS.max, `the stopping appliance sent a retry hint: ${hint}`);
    const [afterHint, ...delays] = closes.map((event) => event.reconnect_in_ms as number);
    assert.ok(afterHint! >= hint && afterHint! < hint * 1.5, `the agent waited ${afterHint} ms for a ${hint} ms hint`);
    for (const [index, delay] of delays.entries()) {
      const ceiling = backoffCeilingMs(stepReaching(2 * afterHint!) + index);
      assert.ok(delay >= RETRY_FLOOR_MS && delay < ceiling, `delay ${index + 1} was ${delay} ms, expected full jitter in [${RETRY_FLOOR_MS}, ${ceiling})`);
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
