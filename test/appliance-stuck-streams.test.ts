import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { ClientHttp2Session } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { HEARTBEAT_OPEN_CALLS_PER_HOST } from '../appliance/grpc/guards.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { heartbeatFrame, openRawHeartbeat, rawSession, type RawHeartbeatCall } from './helpers/raw-heartbeat.ts';
import { waitFor } from './helpers/wait.ts';

/** Resident memory of a process, in KiB, as the kernel counts it. */
function rssKb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1]);
}

describe('a host whose streams never read cannot pile up closed streams (real appliance, raw HTTP/2)', () => {
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });

  test(`a deaf host gets at most ${HEARTBEAT_OPEN_CALLS_PER_HOST} Heartbeat calls open, the next is refused with ERR_STREAM_RATE_LIMITED and a retry hint, and it reconnects once its connection is gone`, async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'deaf-reopener' });
    const session = rawSession(ingest.appliance.grpcPort, ingest.appliance.caCert);
    const calls: RawHeartbeatCall[] = [];
    for (let index = 0; index < HEARTBEAT_OPEN_CALLS_PER_HOST; index += 1) {
      // Each new stream replaces the last: the replaced one is closed by the appliance but cannot flush its ack.
      calls.push(openRawHeartbeat(session, jwt, [heartbeatFrame(hostId)]));
      await waitFor('the stream opened', () => ingest.appliance.process.logged('heartbeat stream opened', { host_id: hostId }).length === index + 1, 10_000);
      await sleep(300);
    }
    assert.ok(calls.every((call) => !call.closed && call.status === undefined), 'the first calls are admitted and stay open (they cannot flush)');
    const refused = openRawHeartbeat(session, jwt, [heartbeatFrame(hostId)]);
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
    const calls: RawHeartbeatCall[] = [];
    const until = Date.now() + 40_000;
    let openAtEnd: number;
    try {
      while (Date.now() < until) {
        const session = rawSession(ingest.appliance.grpcPort, ingest.appliance.caCert);
        sessions.push(session);
        calls.push(openRawHeartbeat(session, jwt, frames));
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
