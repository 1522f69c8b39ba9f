import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { ConnectionGate, settleOnFirstCall, type ConnectionGateLimits } from '../appliance/grpc/connection-gate.ts';
import { ensureTlsMaterial } from '../appliance/pki/certificates.ts';
import { loadIngestProto } from '../common/proto.ts';
import { waitFor } from './helpers/wait.ts';

/** A real listener on loopback behind a gate whose "setup" only records the sockets it was handed. */
async function gated(limits: ConnectionGateLimits): Promise<{ port: number; setUp: Socket[]; gate: ConnectionGate; server: Server; logged: object[] }> {
  const setUp: Socket[] = [];
  const logged: object[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line) as object) });
  const gate = new ConnectionGate((socket) => {
    setUp.push(socket);
    // Read (and drop) as TLS would, so that a peer's close is seen.
    socket.on('error', () => undefined).resume();
  }, log, limits);
  const server = createServer({ pauseOnConnect: true }, (socket) => gate.offer(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, setUp, gate, server, logged };
}

/** A client connection and how it ended: 'reset' when the gate refused it, 'open' while it stands. */
function client(port: number): { socket: Socket; outcome: Promise<'reset' | 'closed'>; local: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  const outcome = new Promise<'reset' | 'closed'>((resolve) => {
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNRESET' ? 'reset' : 'closed'));
    socket.on('close', () => resolve('closed'));
  });
  // The gate keys a connection as grpc-js getPeer() writes it: address:port as the appliance sees the peer.
  const local = new Promise<string>((resolve) => socket.once('connect', () => resolve(`${socket.localAddress}:${socket.localPort}`)));
  return { socket, outcome, local };
}

describe('ConnectionGate (admission control of the agents\' port, issue 14 reconnect storm)', () => {
  const servers: Server[] = [];
  const clients: Socket[] = [];
  after(() => {
    for (const socket of clients) socket.destroy();
    for (const server of servers) server.close();
  });

  test('sets up at most inSetup connections at once; the others wait in arrival order and each first call frees a slot for the next', async () => {
    const { port, setUp, gate, server } = await gated({ inSetup: 2, slotMs: 60_000, waitMs: 60_000, queue: 100 });
    servers.push(server);
    const peers: string[] = [];
    for (let index = 0; index < 5; index += 1) {
      const connection = client(port);
      clients.push(connection.socket);
      peers.push(await connection.local);
      // In order: each connection accepted before the next is dialled.
      await waitFor('the connection accepted', () => gate.counts.inSetup + gate.counts.waiting === index + 1);
    }
    assert.deepEqual(gate.counts, { inSetup: 2, waiting: 3 });
    assert.deepEqual(setUp.map((socket) => `${socket.remoteAddress}:${socket.remotePort}`), peers.slice(0, 2));
    // A peer the gate never admitted settles nothing.
    gate.settled('127.0.0.1:1');
    assert.equal(setUp.length, 2);
    gate.settled(peers[1]!);
    assert.deepEqual(setUp.map((socket) => `${socket.remoteAddress}:${socket.remotePort}`), peers.slice(0, 3));
    gate.settled(peers[0]!);
    gate.settled(peers[2]!);
    assert.deepEqual(setUp.map((socket) => `${socket.remoteAddress}:${socket.remotePort}`), peers);
    assert.deepEqual(gate.counts, { inSetup: 2, waiting: 0 });
    gate.close();
  });

  test('a connection that waited longer than waitMs is refused with a TCP reset, and the refusals are logged as one count', async () => {
    const { port, gate, server, logged } = await gated({ inSetup: 1, slotMs: 60_000, waitMs: 300, queue: 100 });
    servers.push(server);
    const first = client(port);
    const second = client(port);
    const third = client(port);
    clients.push(first.socket, second.socket, third.socket);
    assert.equal(await second.outcome, 'reset');
    assert.equal(await third.outcome, 'reset');
    assert.deepEqual(gate.counts, { inSetup: 1, waiting: 0 });
    gate.close();
    const line = logged.find((entry) => 'refused' in entry) as { refused: number; in_setup: number; msg: string } | undefined;
    assert.equal(line?.refused, 2);
    assert.match(line.msg, /agent connections refused/);
    // The admitted one was not touched.
    first.socket.write('still here');
    await sleep(50);
    assert.equal(first.socket.destroyed, false);
  });

  test('a full queue refuses a new connection at once; a slot is freed after slotMs, and by a close', async () => {
    const { port, setUp, gate, server } = await gated({ inSetup: 1, slotMs: 400, waitMs: 60_000, queue: 1 });
    servers.push(server);
    const held = client(port);
    clients.push(held.socket);
    await waitFor('the first set up', () => setUp.length === 1);
    const queued = client(port);
    clients.push(queued.socket);
    await waitFor('the second queued', () => gate.counts.waiting === 1);
    const refusedAt = Date.now();
    const overflow = client(port);
    clients.push(overflow.socket);
    assert.equal(await overflow.outcome, 'reset');
    assert.ok(Date.now() - refusedAt < 300, 'refused at once, not after a wait');
    // The first never calls: its slot runs out after slotMs and the queued one is set up.
    await waitFor('the queued connection set up once the silent one\'s slot ran out', () => setUp.length === 2, 5_000, 20);
    // The second closes before its first call: its slot is free at once, not after slotMs.
    const third = client(port);
    clients.push(third.socket);
    await waitFor('the third queued', () => gate.counts.waiting === 1);
    queued.socket.destroy();
    await waitFor('the third set up after the second closed', () => setUp.length === 3, 300, 10);
    gate.close();
  });

  test('through grpc-js, a connection\'s first call frees its slot (the interceptor names the peer as the gate does)', async () => {
    // A real grpc-js TLS server fed by the gate, as appliance/grpc/server.ts does; slots never expire
    // here, so only the first call can free the one slot and let the second connection in.
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-gate-'));
    const tls = await ensureTlsMaterial(dataDir, ['localhost'], new Date());
    rmSync(dataDir, { recursive: true, force: true });
    const limits = { inSetup: 1, slotMs: 60_000, waitMs: 60_000, queue: 10 };
    const gate: ConnectionGate = new ConnectionGate((socket) => injector.injectConnection(socket), pino({ level: 'silent' }), limits);
    const server = new grpc.Server({ interceptors: [settleOnFirstCall(gate)] });
    const { IngestService } = loadIngestProto().ctops.ingest.v1;
    server.addService(IngestService.service, {
      GetRegisterChallenge: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, { nonce: Buffer.alloc(32), expires_unix_ms: 0 }),
    });
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.serverCertPem), private_key: Buffer.from(tls.serverKeyPem) }]));
    const listener = createServer({ pauseOnConnect: true }, (socket) => gate.offer(socket));
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    servers.push(listener);
    const address = `localhost:${(listener.address() as { port: number }).port}`;
    const credentials = grpc.credentials.createSsl(Buffer.from(tls.caCertPem));
    const call = (client: InstanceType<typeof IngestService>): Promise<unknown> =>
      new Promise((resolve, reject) => client.GetRegisterChallenge({}, { deadline: Date.now() + 10_000 }, (error, answer) => (error ? reject(error) : resolve(answer))));
    const first = new IngestService(address, credentials, { 'grpc.use_local_subchannel_pool': 1 });
    const second = new IngestService(address, credentials, { 'grpc.use_local_subchannel_pool': 1 });
    try {
      await call(first);
      assert.deepEqual(gate.counts, { inSetup: 0, waiting: 0 }, 'the first call freed the slot');
      // The first connection stays open: the second is set up only because the slot was freed by that call.
      await call(second);
    } finally {
      first.close();
      second.close();
      gate.close();
      server.forceShutdown();
    }
  });

  test('close refuses the connections still waiting', async () => {
    const { port, gate, server } = await gated({ inSetup: 1, slotMs: 60_000, waitMs: 60_000, queue: 10 });
    servers.push(server);
    const admitted = client(port);
    const waiting = client(port);
    clients.push(admitted.socket, waiting.socket);
    await waitFor('one waiting', () => gate.counts.waiting === 1);
    gate.close();
    assert.equal(await waiting.outcome, 'closed');
    assert.deepEqual(gate.counts, { inSetup: 1, waiting: 0 });
  });
});
