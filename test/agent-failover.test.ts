import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/wait.ts';

/** A loopback port nothing listens on: bound, then closed again (connections to it are refused). */
async function refusingPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP forwarder to `targetPort` on loopback: a second address of the same appliance (TLS passes
 * through untouched, so the appliance's certificate for localhost is what the agent verifies).
 * `kill` closes the listener and every connection, as an instance killed with -9 would.
 */
async function forwarder(targetPort: number): Promise<{ port: number; kill: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    kill: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

describe('agent failover between ingest addresses', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test('an agent whose first ingest address refuses connections enrols and streams through the second; -check reports each address and passes while one is usable', { timeout: 60_000 }, async () => {
    const appliance = await TestAppliance.start();
    cleanup.push(() => appliance.dispose());
    const { token } = await appliance.createToken('--auto-approve');
    const dead = `localhost:${await refusingPort()}`;
    const agent = new TestAgent({ address: '', addresses: [dead, appliance.address], caCertFile: appliance.caCertPath, orgToken: token });
    cleanup.push(() => agent.dispose());

    const check = agent.start(['-check']);
    assert.equal((await check.exited).code, 0, check.stderr);
    assert.deepEqual(check.logged('ingest address not usable').map((event) => [event.address, event.error_code]), [[dead, 'ERR_INGEST_UNREACHABLE']]);
    assert.deepEqual(check.logged('ingest reachable and trusted').map((event) => event.address), [appliance.address]);

    const proc = agent.start();
    const opened = await proc.waitForLog('heartbeat stream opened', {}, 30_000);
    assert.deepEqual([opened.address, opened.address_index], [appliance.address, 1]);
    assert.equal(proc.logged('registration failed', { address: dead }).length, 1, 'one Register failed at the dead address, then the next went to the live one');
    await waitFor('host online', async () => (await appliance.host(agent.state().agent_id)).status === 'online');
    await agent.stop();

    agent.writeConfig({ address: '', addresses: [dead, `localhost:${await refusingPort()}`], caCertFile: appliance.caCertPath, orgToken: token });
    const none = agent.start(['-check']);
    assert.equal((await none.exited).code, 69);
    assert.match(none.stderr, /ERR_INGEST_UNREACHABLE.*no ingest address is usable/);
    assert.equal(none.logged('ingest address not usable').length, 2);
  });

  test('an established stream whose address dies moves the agent to the next address, and the host stays online', { timeout: 60_000 }, async () => {
    const appliance = await TestAppliance.start();
    cleanup.push(() => appliance.dispose());
    const { token } = await appliance.createToken('--auto-approve');
    const first = await forwarder(appliance.grpcPort);
    cleanup.push(() => first.kill());
    const firstAddress = `localhost:${first.port}`;
    const agent = new TestAgent({ address: '', addresses: [firstAddress, appliance.address], caCertFile: appliance.caCertPath, orgToken: token });
    cleanup.push(() => agent.dispose());
    const proc = agent.start();
    const opened = await proc.waitForLog('heartbeat stream opened', {}, 30_000);
    assert.deepEqual([opened.address, opened.address_index], [firstAddress, 0]);
    const { agent_id } = agent.state();
    await waitFor('host online', async () => (await appliance.host(agent_id)).status === 'online');

    await first.kill();
    const reopened = await proc.waitForLog('heartbeat stream opened', {}, 30_000, 2);
    assert.deepEqual([reopened.address, reopened.address_index], [appliance.address, 1]);
    assert.equal(proc.logged('ingest address failed; the next connection goes to the next address', { failed_address: firstAddress }).length, 1);
    assert.equal(proc.logged('registering agent').length, 1, 'the JWT is valid at every instance: no new registration');
    await waitFor('host online after failover', async () => (await appliance.host(agent_id)).status === 'online');
  });
});
