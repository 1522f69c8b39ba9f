import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { waitFor } from './helpers/wait.ts';

/** A first heartbeat's HostFacts for one machine (fingerprint) and agent process (instance). */
const facts = (instance: string, fingerprint: string, hostname = 'web-1') => ({
  host_facts: { hostname, machine_fingerprint: fingerprint, os: 'linux', os_version: '6.1', arch: 'x64', agent_version: '0.2.0', ip_addresses: [], instance_id: instance },
});
const MACHINE_A = '1'.repeat(64);
const MACHINE_B = '2'.repeat(64);
const INSTANCE_A = 'aaaaaaaaaaaaaaaa';
const INSTANCE_B = 'bbbbbbbbbbbbbbbb';

/** The stream's end, or 'open' when it is still open after `ms`. */
const endedWithin = (stream: HeartbeatStream, ms: number) => Promise.race([stream.ended, sleep(ms).then(() => 'open' as const)]);

describe('identity judgement of Heartbeat streams (real appliance over TLS)', () => {
  const fx = useIngestFixture();
  /** A new host flagged by two machines: machine A holds its stream, machine B was refused. */
  const flaggedHost = async (hostname: string) => {
    const { hostId, jwt } = await fx.enrol({ hostname });
    const holder = new HeartbeatStream(fx.client, jwt);
    holder.send(hostId, 1, facts(INSTANCE_A, MACHINE_A, hostname));
    await waitFor('holder ack', () => holder.acks().includes(1));
    const rival = new HeartbeatStream(fx.client, jwt);
    rival.send(hostId, 1, facts(INSTANCE_B, MACHINE_B, hostname));
    assert.match((await rival.ended).details, /ERR_HOST_IDENTITY_CONFLICT/);
    return { hostId, jwt, holder };
  };

  test('leaving out HostFacts skips no identity check: refused while flagged, retired after resolve, facts sent later are judged; no task reaches an unjudged stream', { timeout: 120_000 }, async () => {
    const { hostId, jwt } = await fx.enrol({ hostname: 'web-1' });
    const holder = new HeartbeatStream(fx.client, jwt);
    holder.send(hostId, 1, facts(INSTANCE_A, MACHINE_A));
    await waitFor('holder ack', () => holder.acks().includes(1));
    const rival = new HeartbeatStream(fx.client, jwt);
    rival.send(hostId, 1, facts(INSTANCE_B, MACHINE_B));
    assert.equal((await rival.ended).code, grpc.status.FAILED_PRECONDITION);
    assert.equal((await fx.appliance.host(hostId)).identity_state, 'conflict');

    // Flagged: a stream that says no machine is a claimant like any other, and the holder keeps the host.
    const unidentified = new HeartbeatStream(fx.client, jwt);
    unidentified.send(hostId, 1);
    const refused = await unidentified.ended;
    assert.match(refused.details, /ERR_HOST_IDENTITY_CONFLICT/);
    assert.ok(refused.retryAfterMs !== undefined && refused.retryAfterMs > 0, 'with a retry hint');
    assert.equal(await endedWithin(holder, 1_000), 'open', 'the holder keeps its stream');

    await fx.appliance.cliJson('hosts', 'resolve', hostId, '--keep', MACHINE_A);
    holder.call.cancel();
    await sleep(300);

    // Resolved: a stream without facts cannot show it is the kept machine.
    const retired = new HeartbeatStream(fx.client, jwt);
    retired.send(hostId, 1);
    const retiredEnd = await retired.ended;
    assert.match(retiredEnd.details, /ERR_IDENTITY_RETIRED/);
    assert.deepEqual(retired.received.filter((message) => message.task), [], 'no task reached it');

    // Facts first sent on a later heartbeat are judged like first-heartbeat ones.
    const { hostId: otherId, jwt: otherJwt } = await fx.enrol({ hostname: 'db-1' });
    const kept = new HeartbeatStream(fx.client, otherJwt);
    kept.send(otherId, 1, facts(INSTANCE_A, MACHINE_A, 'db-1'));
    await waitFor('kept ack', () => kept.acks().includes(1));
    const late = new HeartbeatStream(fx.client, otherJwt);
    late.send(otherId, 1);
    await waitFor('late ack', () => late.acks().includes(1));
    late.send(otherId, 2, facts(INSTANCE_B, MACHINE_B, 'db-1'));
    await waitFor('late ack', () => late.acks().includes(2));
    // The facts-less stream replaced the first one; its late facts say another machine holds the key now.
    const back = new HeartbeatStream(fx.client, otherJwt);
    back.send(otherId, 1, facts(INSTANCE_A, MACHINE_A, 'db-1'));
    assert.match((await back.ended).details, /ERR_HOST_IDENTITY_CONFLICT/);
    assert.equal((await fx.appliance.host(otherId)).identity_state, 'conflict');
    for (const stream of [kept, late]) stream.call.cancel();
  });

  test('a task queued while a second stream has not sent its first heartbeat waits for its judgement, and a retired machine never gets it', { timeout: 60_000 }, async () => {
    const { hostId, jwt, holder } = await flaggedHost('web-2');
    await fx.appliance.cliJson('hosts', 'resolve', hostId, '--keep', MACHINE_A);
    holder.call.cancel();
    await sleep(300);
    // The retired machine opens first (nothing else streams, so it is attached at open) and stays silent.
    const silent = new HeartbeatStream(fx.client, jwt);
    await sleep(500);
    await fx.appliance.cliJson('hosts', 'rescan', hostId);
    await sleep(1_000);
    assert.deepEqual(silent.received.filter((message) => message.task), [], 'no task before the claim is judged');
    silent.send(hostId, 1, facts(INSTANCE_B, MACHINE_B, 'web-2'));
    assert.match((await silent.ended).details, /ERR_IDENTITY_RETIRED/);
    assert.deepEqual(silent.received.filter((message) => message.task), []);
    const kept = new HeartbeatStream(fx.client, jwt);
    kept.send(hostId, 1, facts('cccccccccccccccc', MACHINE_A, 'web-2'));
    await waitFor('the kept machine gets the held task', () => kept.received.some((message) => message.task));
    kept.call.cancel();
  });

  test('silent second streams are given up within seconds, whatever the interval: they cannot lock the host out of its open-call cap', { timeout: 60_000 }, async () => {
    const { hostId, jwt } = await fx.enrol({ hostname: 'web-3' });
    const holder = new HeartbeatStream(fx.client, jwt);
    holder.send(hostId, 1, { ...facts(INSTANCE_A, MACHINE_A, 'web-3'), interval_secs: 3600 });
    await waitFor('ack', () => holder.acks().includes(1));
    await waitFor('interval stored', async () => (await fx.appliance.host(hostId)).heartbeat_interval_secs === 3600, 10_000);
    const silent = [new HeartbeatStream(fx.client, jwt), new HeartbeatStream(fx.client, jwt)];
    const started = Date.now();
    for (const stream of silent) await stream.ended;
    const waited = Date.now() - started;
    assert.ok(waited < 25_000, `given up after ${waited} ms, not 2 h`);
    const reconnect = new HeartbeatStream(fx.client, jwt);
    reconnect.send(hostId, 2, facts(INSTANCE_A, MACHINE_A, 'web-3'));
    await waitFor('the agent reconnects', () => reconnect.acks().includes(2));
    for (const stream of [holder, reconnect]) stream.call.cancel();
  });

  test('a host renamed to a name sethostname accepts but a terminal must not run (an escape, combining marks, nothing) keeps streaming under a displayable name', { timeout: 60_000 }, async () => {
    const { hostId, jwt } = await fx.enrol({ hostname: 'web-4' });
    const stream = new HeartbeatStream(fx.client, jwt);
    const names: Array<[string, string]> = [['सर्वर', 'सर्वर'], ['', '(no hostname)'], ['web\u001b[31mRED', 'web\uFFFD[31mRED']];
    let sequence = 0;
    for (const [name, shown] of names) {
      sequence += 1;
      stream.send(hostId, sequence, facts(INSTANCE_A, MACHINE_A, name));
      await waitFor(`ack of ${JSON.stringify(name)}`, () => stream.acks().includes(sequence));
      assert.equal((await fx.appliance.host(hostId)).hostname, shown);
    }
    assert.equal(await endedWithin(stream, 500), 'open');
    stream.call.cancel();
  });

  test('hosts resolve --dismiss ends a false alarm over the admin CLI: nobody is retired and the held task goes to the holder', { timeout: 60_000 }, async () => {
    const { hostId, jwt, holder } = await flaggedHost('web-5');
    await fx.appliance.cliJson('hosts', 'rescan', hostId);
    await sleep(500);
    assert.deepEqual(holder.received.filter((message) => message.task), [], 'held while flagged');
    const usage = await fx.appliance.cli('hosts', 'resolve', hostId);
    assert.notEqual(usage.code, 0);
    assert.match(usage.stderr, /--keep <claimant>\) or --dismiss/);
    const dismissed = await fx.appliance.cliJson<Record<string, unknown>>('hosts', 'resolve', hostId, '--dismiss');
    assert.equal(dismissed.identity_state ?? null, null);
    await waitFor('the held task reaches the holder', () => holder.received.some((message) => message.task));
    const shown = await fx.appliance.cliJson<{ recent_events: Array<{ kind: string }> }>('hosts', 'show', hostId);
    assert.ok(shown.recent_events.some((event) => event.kind === 'identity-dismissed'));
    const back = new HeartbeatStream(fx.client, jwt);
    back.send(hostId, 1, facts(INSTANCE_B, MACHINE_B, 'web-5'));
    assert.match((await back.ended).details, /ERR_HOST_IDENTITY_CONFLICT/, 'dismissing does not switch detection off');
    holder.call.cancel();
  });
});
