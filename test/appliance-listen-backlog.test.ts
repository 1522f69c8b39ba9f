/**
 * The gRPC port's listen backlog holds a reconnect storm (issue 14): while the appliance cannot
 * accept (stopped with SIGSTOP, as a busy event loop or a restart would leave it), the kernel still
 * completes and queues the TCP handshakes up to the backlog. With Node's default of 511 the
 * connections past it had their SYNs dropped and waited out TCP's retransmission; with LISTEN_BACKLOG
 * every one of STORM connections is established at once, and all of them are served once the
 * appliance runs again.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { LISTEN_BACKLOG } from '../appliance/grpc/server.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { callGetRegisterChallenge, ingestClient } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';

/** Far past Node's default backlog (511), within this container's open-file limit. */
const STORM = 1_500;

let appliance: TestAppliance;
before(async () => {
  appliance = await TestAppliance.start();
});
after(async () => {
  await appliance?.dispose();
});

test(`${STORM} connections at once to a stopped appliance are all established by the kernel, and served once it runs`, { timeout: 120_000 }, async () => {
  assert.ok(LISTEN_BACKLOG > STORM);
  const pid = appliance.process.child.pid!;
  const sockets: Socket[] = [];
  let established = 0;
  process.kill(pid, 'SIGSTOP');
  try {
    for (let index = 0; index < STORM; index += 1) {
      const socket = connect({ host: '127.0.0.1', port: appliance.grpcPort });
      socket.once('connect', () => (established += 1));
      socket.on('error', () => undefined);
      sockets.push(socket);
    }
    // While the appliance is stopped nothing leaves the accept queue: with a backlog under STORM the
    // connections past it stay unestablished whatever the wait (their SYNs, retransmitted after 1 s and
    // 3 s, are dropped again), so a generous wait keeps a busy machine from failing the test.
    await waitFor(`all ${STORM} established while the appliance is stopped`, () => established === STORM, 5_000, 20);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  for (const socket of sockets) socket.destroy();
  // The queued connections were accepted and closed; the port serves as before.
  const client = ingestClient(appliance.address, appliance.caCert);
  try {
    const challenge = await callGetRegisterChallenge(client);
    assert.ok(challenge.ok, JSON.stringify(challenge));
  } finally {
    client.close();
  }
});
