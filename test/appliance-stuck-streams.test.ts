import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { HEARTBEAT_OPEN_CALLS_PER_HOST } from '../appliance/grpc/guards.ts';
import { RETRY_AFTER_MS_METADATA } from '../common/retry-hint.ts';
import { INGEST_PROTO_TEXT } from '../proto/gen/ingest-proto-text.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';

const HEARTBEAT_PATH = '/ctops.ingest.v1.IngestService/Heartbeat';
const HEARTBEAT_TYPE = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.HeartbeatRequest');

/** A HeartbeatRequest as one gRPC message frame (flag byte, 4-byte length, protobuf). */
function heartbeatFrame(agentId: string, agentVersion = '0.1.0-test'): Buffer {
  const body = HEARTBEAT_TYPE.encode(HEARTBEAT_TYPE.fromObject({
    agent_id: agentId, cpu_percent: 1, memory_percent: 1, disk_percent: 1, uptime_seconds: 1,
    timestamp_unix: Math.floor(Date.now() / 1000), sequence: 1, interval_secs: 5, agent_version: agentVersion,
  })).finish();
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(frame, 5);
  return frame;
}

/** Resident memory of a process, in KiB, as the kernel counts it. */
function rssKb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1]);
}

/** One raw Heartbeat call of a deaf peer: what it was answered (from headers, readable even with a zero window) and whether it ended. */
interface DeafCall {
  stream: ClientHttp2Stream;
  status: string | undefined;
  message: string | undefined;
  retryAfterMs: string | undefined;
  closed: boolean;
}

/**
 * A connection that never reads: its HTTP/2 initial window is 0, so the appliance cannot send one
 * byte of DATA on any stream, and a stream it closes stays open waiting to flush its first ack.
 */
function deafSession(port: number, ca: string): ClientHttp2Session {
  const session = http2Connect(`https://localhost:${port}`, { ca, settings: { initialWindowSize: 0 } });
  session.on('error', () => undefined);
  return session;
}

function openDeafCall(session: ClientHttp2Session, jwt: string, frames: readonly Buffer[]): DeafCall {
  const stream = session.request({ ':method': 'POST', ':path': HEARTBEAT_PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${jwt}` });
  const call: DeafCall = { stream, status: undefined, message: undefined, retryAfterMs: undefined, closed: false };
  stream.on('response', (headers) => {
    call.status ??= headers['grpc-status'] as string | undefined;
    call.retryAfterMs ??= headers[RETRY_AFTER_MS_METADATA] as string | undefined;
    call.message ??= headers['grpc-message'] === undefined ? undefined : decodeURIComponent(headers['grpc-message'] as string);
  });
  stream.on('error', () => undefined);
  stream.on('close', () => (call.closed = true));
  for (const frame of frames) stream.write(frame);
  return call;
}

describe('a host whose streams never read cannot pile up closed streams (real appliance, raw HTTP/2)', () => {
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });

  test(`a deaf host gets at most ${HEARTBEAT_OPEN_CALLS_PER_HOST} Heartbeat calls open, the next is refused with ERR_STREAM_RATE_LIMITED and a retry hint, and it reconnects once its connection is gone`, async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'deaf-reopener' });
    const session = deafSession(ingest.appliance.grpcPort, ingest.appliance.caCert);
    const calls: DeafCall[] = [];
    for (let index = 0; index < HEARTBEAT_OPEN_CALLS_PER_HOST; index += 1) {
      // Each new stream replaces the last: the replaced one is closed by the appliance but cannot flush its ack.
      calls.push(openDeafCall(session, jwt, [heartbeatFrame(hostId)]));
      await waitFor('the stream opened', () => ingest.appliance.process.logged('heartbeat stream opened', { host_id: hostId }).length === index + 1, 10_000);
      await sleep(300);
    }
    assert.ok(calls.every((call) => !call.closed && call.status === undefined), 'the first calls are admitted and stay open (they cannot flush)');
    const refused = openDeafCall(session, jwt, [heartbeatFrame(hostId)]);
    await waitFor('the refusal', () => refused.status !== undefined, 10_000);
    assert.equal(Number(refused.status), GrpcCode.RESOURCE_EXHAUSTED);
    assert.equal(codeFromGrpcDetails(refused.message ?? ''), 'ERR_STREAM_RATE_LIMITED');
    assert.match(refused.message ?? '', /at most 3 heartbeat streams open/);
    assert.equal(refused.retryAfterMs, '10000');
    assert.ok(calls.every((call) => !call.closed), 'the refusal ends no admitted call');

    // The connection dies (as a crashed agent's does): its calls end, and the host may stream again.
    const gone = new Promise((resolve) => session.once('close', resolve));
    session.destroy();
    await gone;
    await sleep(500);
    const honest = new HeartbeatStream(ingest.client, jwt);
    honest.send(hostId, 1);
    await waitFor('the ack', () => honest.acks().length === 1, 10_000);
    honest.call.end();
    assert.equal((await honest.ended).code, GrpcCode.OK);
  });

  test('a deaf host reopening streams with 4 MiB of read-ahead each for 40 s: RSS grows < 64 MB and no more than the cap stay open', { timeout: 120_000 }, async (t) => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'deaf-hoarder' });
    const pid = ingest.appliance.process.child.pid!;
    const baselineKb = rssKb(pid);
    let peakKb = baselineKb;
    // 1 MiB messages the appliance must decode and hold: a 1,000,000-character agent_version (refused when handled).
    const padding = heartbeatFrame(hostId, 'v'.repeat(1_000_000));
    const frames = [heartbeatFrame(hostId), ...Array.from({ length: 4 }, () => padding)];
    // A connection per stream, as a hoarder would open: Node's per-connection memory cap (maxSessionMemory) does not bound them.
    const sessions: ClientHttp2Session[] = [];
    const calls: DeafCall[] = [];
    const until = Date.now() + 40_000;
    let openAtEnd: number;
    try {
      while (Date.now() < until) {
        const session = deafSession(ingest.appliance.grpcPort, ingest.appliance.caCert);
        sessions.push(session);
        calls.push(openDeafCall(session, jwt, frames));
        await sleep(500);
        peakKb = Math.max(peakKb, rssKb(pid));
      }
      await sleep(2_000);
      peakKb = Math.max(peakKb, rssKb(pid));
      openAtEnd = calls.filter((call) => !call.closed && call.status === undefined).length;
    } finally {
      for (const session of sessions) session.destroy();
    }
    const refusals = calls.filter((call) => codeFromGrpcDetails(call.message ?? '') === 'ERR_STREAM_RATE_LIMITED').length;
    assert.ok(refusals > 0, 'reopening beyond the cap or the rate is refused');
    assert.ok(openAtEnd <= HEARTBEAT_OPEN_CALLS_PER_HOST, `${openAtEnd} of ${calls.length} calls still open`);
    const growthMb = (peakKb - baselineKb) / 1024;
    t.diagnostic(`${calls.length} opens, ${refusals} refused, ${openAtEnd} open at the end, RSS peak growth ${growthMb.toFixed(1)} MB`);
    assert.ok(growthMb < 64, `RSS grew ${growthMb.toFixed(1)} MB`);
    assert.equal(ingest.appliance.process.child.exitCode, null, 'the appliance lives');
  });
});
