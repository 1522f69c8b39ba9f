import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { HEARTBEAT_RATE_LIMIT, MAX_TASK_UPDATES_PER_HEARTBEAT } from '../common/heartbeat-limits.ts';
import { clientFactory, signedRegisterRequests } from '../loadtest/lib/clients.ts';
import { HeartbeatLoad } from '../loadtest/lib/heartbeat-load.ts';
import { registerAll, type ActiveAgent } from '../loadtest/lib/register-load.ts';
import { distribution } from '../loadtest/lib/stats.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream, ingestClient } from './helpers/ingest-client.ts';
import { LoggedProcess, REPO_ROOT } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

const FLOOD_SCRIPT = `${REPO_ROOT}test/helpers/heartbeat-flood.ts`;
const FLOOD_SECS = 60;
const HONEST_AGENTS = 50;
const RSS_GROWTH_LIMIT_KB = 64 * 1024;

/** Resident memory of a process, in KiB, as the kernel counts it. */
function rssKb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1]);
}

const madeUpReports = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ task_id: `tsk_${index.toString(16).padStart(20, "0")}`, phase: 'TASK_PHASE_SUCCEEDED' as const, result_json: '{"fake":true}', message: 'm'.repeat(8) }));

describe('one enrolled agent cannot exhaust the appliance: memory, disk or log (real appliance, real TLS)', () => {
  // Info level, as in production: debug would log every stored chunk and refused stream.
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });

  async function honestFleet(count: number): Promise<ActiveAgent[]> {
    const { token } = await ingest.appliance.createToken('--auto-approve', '--max-uses', String(count));
    const clients = Array.from({ length: 5 }, () => ingestClient(ingest.appliance.address, ingest.appliance.caCert));
    try {
      const registered = await registerAll(signedRegisterRequests(count, token), clients);
      assert.deepEqual(registered.errors, []);
      return registered.agents;
    } finally {
      for (const client of clients) client.close();
    }
  }

  async function floodBesideHonestFleet(readResponses: boolean): Promise<void> {
    const attacker = await ingest.enrol({ hostname: `flood-${readResponses ? 'reading' : 'deaf'}` });
    const fleet = await honestFleet(HONEST_AGENTS);
    const load = await HeartbeatLoad.connect(fleet, clientFactory(ingest.appliance.address, ingest.appliance.caCert), {
      intervalMs: 5_000,
      durationMs: FLOOD_SECS * 1000,
      connectConcurrency: 10,
      drainMs: 5_000,
    });
    const logLinesBefore = ingest.appliance.process.events.length;
    const pid = ingest.appliance.process.child.pid!;
    const baselineKb = rssKb(pid);
    let peakKb = baselineKb;
    const sampler = setInterval(() => {
      if (ingest.appliance.process.running) peakKb = Math.max(peakKb, rssKb(pid));
    }, 250);
    const flooder = new LoggedProcess(process.execPath, ['--import', 'tsx', FLOOD_SCRIPT], {
      FLOOD_PORT: String(ingest.appliance.grpcPort),
      FLOOD_CA: ingest.appliance.caCert,
      FLOOD_JWT: attacker.jwt,
      FLOOD_AGENT_ID: attacker.hostId,
      FLOOD_SECS: String(FLOOD_SECS),
      FLOOD_READ: readResponses ? '1' : '0',
      FLOOD_STREAMS: '8',
    });
    try {
      const result = await load.run();
      await flooder.exited;
      clearInterval(sampler);
      const flood = JSON.parse(flooder.stdout.trim().split('\n').at(-1)!) as { frames: number; streams: number; statuses: Record<string, number> };
      const rtt = distribution(result.rttMs);
      const growthKb = peakKb - baselineKb;
      // The figures, for the report and for CI logs: a loaded machine shows here first.
      console.log(JSON.stringify({ readResponses, baseline_mb: Math.round(baselineKb / 1024), peak_mb: Math.round(peakKb / 1024), growth_mb: Math.round(growthKb / 1024), flood, honest: { sent: result.sent, acked: result.acked, lost: result.lost, rtt_ms: rtt } }));
      assert.ok(ingest.appliance.process.running, 'the appliance survived the flood');
      assert.ok(flood.frames > 10_000 && flood.streams > 100, 'the flood really flooded');
      assert.ok((flood.statuses[String(GrpcCode.RESOURCE_EXHAUSTED)] ?? 0) > 0, 'the flooding streams were ended with RESOURCE_EXHAUSTED');
      assert.ok(growthKb < RSS_GROWTH_LIMIT_KB, `appliance RSS grew by ${Math.round(growthKb / 1024)} MB`);
      assert.deepEqual(result.errors, []);
      assert.equal(result.lost, 0, 'every honest heartbeat was acknowledged');
      assert.ok(rtt.count >= HONEST_AGENTS * (FLOOD_SECS / 5 - 1), `honest heartbeats measured: ${rtt.count}`);
      assert.ok(rtt.p99 < 100, `honest heartbeat RTT p99 ${rtt.p99.toFixed(1)} ms`);
      // Two peers (the connection's address for refused opens, the host for refused messages), each at
      // most a first line and a summary per minute, over a flood of about a minute.
      const refusedLines = ingest.appliance.process.events.slice(logLinesBefore).filter((event) => event.msg === 'ingest refused' || event.msg === 'ingest refusals').length;
      assert.ok(refusedLines <= 8, `the flood cost ${refusedLines} refusal log lines`);
    } finally {
      clearInterval(sampler);
      flooder.child.kill('SIGKILL');
      await load.close();
    }
  }

  test('a flood of heartbeats that never reads the acks, for 60 s: RSS grows < 64 MB, the appliance lives, 50 honest agents keep RTT p99 < 100 ms', { timeout: 180_000 }, async () => {
    await floodBesideHonestFleet(false);
  });

  test('the same flood reading every ack: RSS grows < 64 MB, the appliance lives, 50 honest agents keep RTT p99 < 100 ms', { timeout: 180_000 }, async () => {
    await floodBesideHonestFleet(true);
  });

  test('a host over its message rate is cut off with RESOURCE_EXHAUSTED and a retry-after-ms hint, logged once, and a new stream does not reset its budget', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'too-fast' });
    const stream = new HeartbeatStream(ingest.client, jwt);
    const sent = HEARTBEAT_RATE_LIMIT.burst * 3;
    for (let sequence = 1; sequence <= sent; sequence += 1) stream.send(hostId, sequence);
    const end = await stream.ended;
    assert.equal(end.code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.equal(codeFromGrpcDetails(end.details), 'ERR_STREAM_RATE_LIMITED');
    const burstWindowMs = (HEARTBEAT_RATE_LIMIT.burst / HEARTBEAT_RATE_LIMIT.perSecond) * 1000;
    assert.ok(end.retryAfterMs !== undefined && end.retryAfterMs > 1_000 && end.retryAfterMs <= burstWindowMs, `retry-after-ms ${end.retryAfterMs}: until the burst budget is back`);
    const acked = stream.acks().length;
    assert.ok(acked >= HEARTBEAT_RATE_LIMIT.burst - 2 && acked < HEARTBEAT_RATE_LIMIT.burst + 5, `${acked} acks before the cut`);

    const again = new HeartbeatStream(ingest.client, jwt);
    for (let sequence = 1; sequence <= 10; sequence += 1) again.send(hostId, sequence);
    const againEnd = await again.ended;
    assert.equal(codeFromGrpcDetails(againEnd.details), 'ERR_STREAM_RATE_LIMITED', 'reconnecting does not refill the bucket');
    assert.ok(again.acks().length <= 3);
    const refused = ingest.appliance.process.logged('ingest refused', { host_id: hostId });
    assert.equal(refused.length, 1, 'one log line for all the refusals of the interval');
    assert.equal(refused[0]!.code, 'ERR_STREAM_RATE_LIMITED');
    assert.equal(refused[0]!.err, undefined, 'no stack trace');
  });

  test('the server announces at most 16 concurrent streams per connection (HTTP/2 SETTINGS), which clients queue under and nghttp2 enforces', async () => {
    const session = http2Connect(`https://localhost:${ingest.appliance.grpcPort}`, { ca: ingest.appliance.caCert });
    session.on('error', () => undefined);
    try {
      await new Promise((resolve) => session.once('remoteSettings', resolve));
      assert.equal(session.remoteSettings.maxConcurrentStreams, 16);
    } finally {
      session.destroy();
    }
  });

  test('a burst of heartbeats is acknowledged beat by beat but stores at most one vitals sample per interval', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'burst-vitals' });
    const stream = new HeartbeatStream(ingest.client, jwt);
    for (let sequence = 1; sequence <= 20; sequence += 1) stream.send(hostId, sequence, { cpu_percent: sequence });
    await waitFor('20 acks', () => stream.acks().length === 20);
    await sleep(1_500); // the vitals writer flushes every second
    const host = await ingest.appliance.host(hostId);
    const stored = host.recent_vitals as Array<{ cpu_percent: number }>;
    assert.equal(stored.length, 1, 'one sample for 20 beats within one 5 s interval');
    assert.equal(stored[0]!.cpu_percent, 1, 'the first beat of the interval is the one stored');
    stream.call.end();
    await stream.ended;
  });

  test('reconnecting does not multiply samples: three streams of one host, five beats each, within one interval, store one', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'reconnect-vitals' });
    let sequence = 0;
    for (let round = 0; round < 3; round += 1) {
      const stream = new HeartbeatStream(ingest.client, jwt);
      for (let beat = 0; beat < 5; beat += 1) stream.send(hostId, ++sequence);
      await waitFor('5 acks', () => stream.acks().length === 5);
      stream.call.end();
      await stream.ended;
    }
    await sleep(1_500);
    const host = await ingest.appliance.host(hostId);
    assert.equal((host.recent_vitals as unknown[]).length, 1);
  });

  test('a heartbeat with 15,000 made-up task reports (under the 1 MiB message limit) is refused whole with INVALID_ARGUMENT and costs one short log line', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'report-flood' });
    const stream = new HeartbeatStream(ingest.client, jwt);
    const logBefore = ingest.appliance.process.stdout.length;
    stream.send(hostId, 1, { task_updates: madeUpReports(15_000) });
    const end = await stream.ended;
    assert.equal(end.code, GrpcCode.INVALID_ARGUMENT);
    assert.equal(codeFromGrpcDetails(end.details), 'ERR_INVALID_ARGUMENT');
    assert.match(end.details, new RegExp(`at most ${MAX_TASK_UPDATES_PER_HEARTBEAT} task reports`));
    assert.deepEqual(stream.acks(), [], 'nothing acknowledged: no report of it was applied');
    await ingest.appliance.process.waitForLog('ingest refused', { host_id: hostId });
    await sleep(500);
    const logBytes = ingest.appliance.process.stdout.length - logBefore;
    assert.ok(logBytes < 2_048, `${logBytes} bytes of log`);
    // A well-behaved stream of the same host is served as before.
    const next = new HeartbeatStream(ingest.client, jwt);
    next.send(hostId, 2);
    await waitFor('ack', () => next.acks().includes(2));
    next.call.end();
    await next.ended;
  });

  test('64 made-up task reports in each of 20 heartbeats: every heartbeat acknowledged, 1,280 refusals cost one log line', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'report-drip' });
    const stream = new HeartbeatStream(ingest.client, jwt);
    const logBefore = ingest.appliance.process.stdout.length;
    for (let sequence = 1; sequence <= 20; sequence += 1) stream.send(hostId, sequence, { task_updates: madeUpReports(MAX_TASK_UPDATES_PER_HEARTBEAT) });
    await waitFor('20 acks', () => stream.acks().length === 20);
    await sleep(500);
    const logBytes = ingest.appliance.process.stdout.length - logBefore;
    assert.ok(logBytes < 2_048, `${logBytes} bytes of log`);
    const refused = ingest.appliance.process.logged('ingest refused', { host_id: hostId });
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!.code, 'ERR_TASK_NOT_FOUND');
    assert.equal(refused[0]!.what, 'task report');
    stream.call.end();
    await stream.ended;
  });
});
