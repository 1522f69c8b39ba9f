import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { STREAM_DRAIN_DEADLINE_MS } from '../appliance/grpc/stream-writer.ts';
import { INGEST_PROTO_TEXT } from '../proto/gen/ingest-proto-text.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';

/** One gRPC message frame of a HeartbeatRequest (field names as in the .proto). */
function heartbeatFrame(fields: Record<string, unknown>): Buffer {
  const type = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.HeartbeatRequest');
  const message = type.encode(type.fromObject(fields)).finish();
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

describe('Heartbeat stream against a real appliance', () => {
  const ingest = useIngestFixture({ args: ['--jwt-ttl-secs', '15'] });

  const activeAgent = async (hostname: string): Promise<{ agentId: string; jwt: string }> => {
    const { hostId, jwt } = await ingest.enrol({ hostname });
    return { agentId: hostId, jwt };
  };

  test('every heartbeat is acknowledged by its sequence; one vitals sample per interval is stored, the host row shows the latest', async () => {
    const { agentId, jwt } = await activeAgent('acked');
    const stream = new HeartbeatStream(ingest.client, jwt);
    for (let sequence = 1; sequence <= 5; sequence += 1) stream.send(agentId, sequence, { cpu_percent: sequence * 10 });
    await waitFor('5 acks', () => stream.acks().length === 5);
    assert.deepEqual(stream.acks(), [1, 2, 3, 4, 5]);
    const host = await waitFor('stored vitals', async () => {
      const shown = await ingest.appliance.host(agentId);
      return (shown.recent_vitals as unknown[]).length === 1 && shown;
    });
    assert.equal(host.status, 'online');
    assert.equal((host.recent_vitals as Array<{ cpu_percent: number }>)[0]!.cpu_percent, 10, 'one sample per interval is stored: the first beat of it');
    assert.equal(host.cpu_percent, 50, "the host's row shows its latest heartbeat");
    assert.equal(host.heartbeat_interval_secs, 5);
    stream.call.end();
    await stream.ended;
  });

  test('the JWT travels only in metadata: a stream without one, with a forged one, or naming another agent is refused', async () => {
    const { agentId, jwt } = await activeAgent('auth-checks');
    const other = await activeAgent('auth-other');
    const missing = new HeartbeatStream(ingest.client, '');
    missing.send(agentId, 1);
    const missingEnd = await missing.ended;
    assert.equal(missingEnd.code, GrpcCode.UNAUTHENTICATED);
    assert.equal(codeFromGrpcDetails(missingEnd.details), 'ERR_JWT_MISSING');

    const [header, payload] = jwt.split('.');
    const forged = new HeartbeatStream(ingest.client, `${header}.${payload}.${Buffer.alloc(64).toString('base64url')}`);
    forged.send(agentId, 1);
    assert.equal(codeFromGrpcDetails((await forged.ended).details), 'ERR_JWT_INVALID');

    const mismatched = new HeartbeatStream(ingest.client, jwt);
    mismatched.send(other.agentId, 1);
    const mismatchEnd = await mismatched.ended;
    assert.equal(mismatchEnd.code, GrpcCode.PERMISSION_DENIED);
    assert.equal(codeFromGrpcDetails(mismatchEnd.details), 'ERR_AGENT_MISMATCH');
  });

  test('revoking a host closes its live stream at once and a heartbeat never re-activates it', async () => {
    const { agentId, jwt } = await activeAgent('to-revoke');
    const stream = new HeartbeatStream(ingest.client, jwt);
    stream.send(agentId, 1);
    await waitFor('ack', () => stream.acks().length === 1);
    const revoked = await ingest.appliance.cli('hosts', 'revoke', agentId);
    assert.equal(revoked.code, 0);
    const ended = await stream.ended;
    assert.equal(ended.code, GrpcCode.PERMISSION_DENIED);
    assert.equal(codeFromGrpcDetails(ended.details), 'ERR_AGENT_NOT_ACTIVE');
    const reopened = new HeartbeatStream(ingest.client, jwt);
    reopened.send(agentId, 1);
    assert.equal(codeFromGrpcDetails((await reopened.ended).details), 'ERR_AGENT_NOT_ACTIVE');
    assert.equal((await ingest.appliance.host(agentId)).status, 'revoked');
  });

  test('a second stream for the same agent replaces the first without the host going offline', async () => {
    const { agentId, jwt } = await activeAgent('replaced');
    const first = new HeartbeatStream(ingest.client, jwt);
    first.send(agentId, 1);
    await waitFor('first ack', () => first.acks().length === 1);
    const second = new HeartbeatStream(ingest.client, jwt);
    second.send(agentId, 1);
    await waitFor('second ack', () => second.acks().length === 1);
    await first.ended;
    await sleep(300);
    assert.equal((await ingest.appliance.host(agentId)).status, 'online');
    assert.equal(ingest.appliance.process.logged('host offline', { host_id: agentId }).length, 0);
    second.call.end();
    await second.ended;
    await waitFor('offline after the live stream closed', async () => (await ingest.appliance.host(agentId)).status === 'offline');
  });

  test('a silent stream is marked offline within twice the interval and dropped', async () => {
    const { agentId, jwt } = await activeAgent('silent');
    const stream = new HeartbeatStream(ingest.client, jwt);
    const started = Date.now();
    stream.send(agentId, 1);
    await waitFor('ack', () => stream.acks().length === 1);
    const offline = await ingest.appliance.process.waitForLog('host offline', { host_id: agentId }, 15_000);
    const elapsed = Date.now() - started;
    assert.equal(offline.reason, 'heartbeat-timeout');
    assert.ok(elapsed >= 9_000 && elapsed < 13_000, `offline after ${elapsed} ms, expected about 2 × 5 s`);
    assert.equal((await ingest.appliance.host(agentId)).status, 'offline');
    await stream.ended;
  });

  test('an online agent receives a fresh JWT before its current one expires', async () => {
    const { agentId, jwt } = await activeAgent('refreshed');
    const stream = new HeartbeatStream(ingest.client, jwt);
    let sequence = 0;
    const beat = setInterval(() => stream.send(agentId, ++sequence), 1000);
    try {
      const refresh = await waitFor('credential refresh', () => stream.received.find((message) => message.kind === 'credential'), 15_000);
      assert.notEqual(refresh.credential!.jwt, jwt);
      assert.ok(refresh.credential!.jwt_expires_unix > Math.floor(Date.now() / 1000) + 10);
      const renewed = new HeartbeatStream(ingest.client, refresh.credential!.jwt);
      renewed.send(agentId, 1);
      await waitFor('ack on the renewed JWT', () => renewed.acks().length === 1);
      renewed.call.end();
    } finally {
      clearInterval(beat);
      stream.call.end();
    }
  });

  test('out-of-range vitals are refused with INVALID_ARGUMENT and nothing is stored', async () => {
    const { agentId, jwt } = await activeAgent('bad-vitals');
    const stream = new HeartbeatStream(ingest.client, jwt);
    stream.send(agentId, 1, { cpu_percent: 250 });
    const ended = await stream.ended;
    assert.equal(ended.code, GrpcCode.INVALID_ARGUMENT);
    const host = await ingest.appliance.host(agentId);
    assert.equal((host.recent_vitals as unknown[]).length, 0);
  });

  test('a peer that stops reading is ended as a slow consumer after the drain deadline: the appliance stops reading it, the host goes offline, and the peer gets ERR_STREAM_SLOW_CONSUMER once it reads', { timeout: 60_000 }, async () => {
    const { agentId: hostId, jwt } = await activeAgent('slow-reader');
    const appliance = ingest.appliance;
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
