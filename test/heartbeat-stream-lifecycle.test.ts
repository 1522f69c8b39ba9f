import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { GrpcCode } from '../common/errors.ts';
import { STREAM_DRAIN_DEADLINE_MS } from '../appliance/grpc/stream-writer.ts';
import { INGEST_PROTO_TEXT } from '../proto/gen/ingest-proto-text.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { enrolHost } from './helpers/ingest-fixture.ts';
import { ingestClient } from './helpers/ingest-client.ts';

/** One gRPC message frame of a HeartbeatRequest (field names as in the .proto). */
function heartbeatFrame(fields: Record<string, unknown>): Buffer {
  const type = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.HeartbeatRequest');
  const message = type.encode(type.fromObject(fields)).finish();
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

describe('the heartbeat stream lifecycle against a real appliance', () => {
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];

  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
  });

  test('revoking a host through the admin API while its real agent streams closes the stream at once (under 5 s), and no heartbeat of it is stored after', { timeout: 60_000 }, async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 });
    agents.push(agent);
    const proc = agent.start();
    await proc.waitForLog('heartbeat acknowledged', {}, 30_000);
    const agentId = agent.state().agent_id;
    const before = await appliance.host(agentId);
    assert.equal(before.status, 'online');

    const revokedAt = Date.now();
    const revoked = await appliance.cli('hosts', 'revoke', agentId);
    assert.equal(revoked.code, 0, revoked.stderr);
    await proc.waitForLog('heartbeat stream closed', { error_code: 'ERR_AGENT_NOT_ACTIVE' }, 10_000);
    // Closed when the revocation committed, not at a deadline (the CLI itself takes about a second to start).
    const closedAfterMs = Date.now() - revokedAt;
    assert.ok(closedAfterMs < 5_000, `closed ${closedAfterMs} ms after the revoke was asked`);
    assert.equal(proc.logged('heartbeat stream closed').length, 1);

    // More than an interval later: nothing of the host was stored after the revocation, and it is not online.
    await sleep(6_000);
    const later = await appliance.host(agentId);
    assert.equal(later.status, 'revoked');
    assert.equal(later.last_heartbeat_at, before.last_heartbeat_at, 'no heartbeat stored after the revocation');
    assert.deepEqual(later.recent_vitals, before.recent_vitals);
    assert.equal(appliance.process.logged('heartbeat stream opened', { host_id: agentId }).length, 1, 'the revoked agent opened no stream again');
  });

  test('a peer that stops reading is ended as a slow consumer after the drain deadline: the appliance stops reading it, the host goes offline, and the peer gets ERR_STREAM_SLOW_CONSUMER once it reads', { timeout: 60_000 }, async () => {
    const client = ingestClient(appliance.address, appliance.caCert);
    const { hostId, jwt } = await enrolHost(appliance, client, { hostname: 'slow-reader' });
    client.close();
    // A stream window of 0: the appliance can send this peer no byte until it says otherwise, as
    // a peer that stopped reading with its window spent.
    const session = connect(`https://localhost:${appliance.grpcPort}`, { ca: appliance.caCert, settings: { initialWindowSize: 0 } });
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/ctops.ingest.v1.IngestService/Heartbeat', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${jwt}` });
      stream.on('error', () => undefined);
      const heartbeat = (sequence: number): Buffer => heartbeatFrame({ agent_id: hostId, sequence, interval_secs: 30, cpu_percent: 1, memory_percent: 1, disk_percent: 1, uptime_seconds: 1, timestamp_unix: Math.floor(Date.now() / 1000), agent_version: '0.1.0' });
      const opened = Date.now();
      // Within the host's burst budget; far more acks than grpc-js buffers (16) for a peer that takes none.
      for (let sequence = 1; sequence <= 28; sequence += 1) stream.write(heartbeat(sequence));
      await appliance.process.waitForLog('heartbeat stream opened', { host_id: hostId });

      await appliance.process.waitForLog('heartbeat stream ended: the agent did not read', { host_id: hostId }, STREAM_DRAIN_DEADLINE_MS + 15_000);
      const endedAfterMs = Date.now() - opened;
      assert.ok(endedAfterMs >= STREAM_DRAIN_DEADLINE_MS - 1_000 && endedAfterMs < STREAM_DRAIN_DEADLINE_MS + 10_000, `ended ${endedAfterMs} ms after the stream opened`);
      assert.equal((await appliance.host(hostId)).status, 'offline', 'the stream no longer holds the host online');

      // The peer reads again: what the appliance had accepted, then the status, and never more than
      // it accepted before it stopped reading the peer (16 buffered acks and the one being written).
      let acks = 0;
      stream.on('data', (chunk: Buffer) => (acks += chunk.length));
      session.settings({ initialWindowSize: 65_535 });
      const [trailers] = (await once(stream, 'trailers')) as [Record<string, string>];
      assert.equal(Number(trailers['grpc-status']), GrpcCode.RESOURCE_EXHAUSTED);
      assert.match(decodeURIComponent(trailers['grpc-message'] ?? ''), /^ERR_STREAM_SLOW_CONSUMER: /);
      assert.ok(acks > 0 && acks < 28 * 40, `${acks} bytes of acks for 28 heartbeats`);
      assert.equal(appliance.process.logged('heartbeat stream ended: the agent did not read').length, 1);
    } finally {
      session.destroy();
    }
  });
});
