import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLOCK_OFFSET_CLEAR_SECS } from '../common/clock-offset.ts';
import { codeFromGrpcDetails } from '../common/errors.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { waitFor } from './helpers/wait.ts';

const HOUR_MS = 3_600_000;

/**
 * The appliance measures each host's clock offset from the agent's time on its heartbeats, stores
 * and shows it, and logs each crossing of the threshold once (a real appliance, a gRPC client that
 * sends the agent's time it chooses).
 */
describe("a host's clock offset against a real appliance", () => {
  const ingest = useIngestFixture();

  async function shownOffset(hostId: string, expectedSecs: number): Promise<Record<string, unknown>> {
    // Stored with the host's heartbeat row by the one-second batch.
    return waitFor(`clock_offset_secs near ${expectedSecs}`, async () => {
      const host = await ingest.appliance.host(hostId);
      return typeof host.clock_offset_secs === 'number' && Math.abs(host.clock_offset_secs - expectedSecs) <= 5 && host;
    });
  }

  test('recorded from timestamp_unix_ms (or an older agent\'s whole seconds), shown by hosts show, echoed in the ack, warned once per crossing each way', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'clock-offset' });
    const threshold = { host_id: hostId };
    const stream = await ingest.openStream(hostId, jwt);
    assert.equal((await shownOffset(hostId, 0)).clock_offset_warning, false);

    stream.send(hostId, 2, { timestamp_unix_ms: Date.now() + HOUR_MS });
    await waitFor('ack 2', () => stream.acks().includes(2));
    const ack = stream.received.find((message) => message.ack?.sequence === 2)?.ack;
    assert.ok(ack?.clock_offset_known === true && Math.abs(Number(ack.clock_offset_ms) - HOUR_MS) < 5_000, `the ack tells the agent its offset: ${JSON.stringify(ack)}`);
    assert.equal((await shownOffset(hostId, 3600)).clock_offset_warning, true);
    await ingest.appliance.process.waitForLog('host clock offset above threshold', threshold);

    // Still past the threshold (now behind, in an older agent's whole seconds): no new warning.
    stream.send(hostId, 3, { timestamp_unix: Math.floor((Date.now() - 2 * HOUR_MS) / 1000) });
    assert.equal((await shownOffset(hostId, -7200)).clock_offset_warning, true);

    stream.send(hostId, 4, { timestamp_unix_ms: Date.now() });
    assert.equal((await shownOffset(hostId, 0)).clock_offset_warning, false);
    const back = await ingest.appliance.process.waitForLog('host clock offset back within threshold', threshold);
    assert.equal(back.threshold_secs, CLOCK_OFFSET_CLEAR_SECS);
    assert.equal(ingest.appliance.process.logged('host clock offset above threshold', threshold).length, 1, 'one warning for the whole time past the threshold');
  });

  test('a clock hovering at the threshold is warned once, and logged back only well within it', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'clock-hover' });
    const threshold = { host_id: hostId };
    const stream = await ingest.openStream(hostId, jwt);
    // The reviewer's case: a host alternating 299.5 s / 300.5 s ahead logged a line per heartbeat.
    let sequence = 2;
    for (; sequence < 22; sequence += 1) {
      stream.send(hostId, sequence, { timestamp_unix_ms: Date.now() + (sequence % 2 === 1 ? 299_500 : 300_500) });
      await waitFor(`ack ${sequence}`, () => stream.acks().includes(sequence));
    }
    // Under the threshold but not yet under the clear level: still flagged, nothing logged.
    stream.send(hostId, sequence, { timestamp_unix_ms: Date.now() - 270_000 });
    await waitFor(`ack ${sequence}`, () => stream.acks().includes(sequence));
    assert.equal(ingest.appliance.process.logged('host clock offset above threshold', threshold).length, 1);
    assert.equal(ingest.appliance.process.logged('host clock offset back within threshold', threshold).length, 0);
    sequence += 1;
    stream.send(hostId, sequence, { timestamp_unix_ms: Date.now() + 200_000 });
    await ingest.appliance.process.waitForLog('host clock offset back within threshold', threshold);
  });

  test('implausible agent times are refused or ignored: no stored offset, no warning, no offset in the ack', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'clock-garbage' });
    const stream = await ingest.openStream(hostId, jwt);
    // Beyond 100 years either way: no clock, however wrong, is that far off (an RTC reset to 1970 is ~56 years).
    const garbage = [{ timestamp_unix_ms: Number.MAX_SAFE_INTEGER }, { timestamp_unix_ms: 0, timestamp_unix: Math.floor(Number.MAX_SAFE_INTEGER / 1000) }];
    for (const [index, extra] of garbage.entries()) {
      const sequence = index + 2;
      stream.send(hostId, sequence, extra);
      await waitFor(`ack ${sequence}`, () => stream.acks().includes(sequence));
      const ack = stream.received.find((message) => message.ack?.sequence === sequence)?.ack;
      assert.equal(ack?.clock_offset_known, false, `no offset claimed for ${JSON.stringify(extra)}: ${JSON.stringify(ack)}`);
    }
    // A real offset of (about) zero is still told, so absent reads "unknown", never "in sync".
    stream.send(hostId, 5, { timestamp_unix_ms: Date.now() });
    await waitFor('ack 5', () => stream.acks().includes(5));
    assert.equal(stream.received.find((message) => message.ack?.sequence === 5)?.ack?.clock_offset_known, true);
    const host = await shownOffset(hostId, 0);
    assert.equal(host.clock_offset_warning, false);
    assert.equal(ingest.appliance.process.logged('host clock offset above threshold', { host_id: hostId }).length, 0);

    // Out of int64's safe range (2^63-1, -2^63 seconds) or negative: the heartbeat is refused.
    for (const [name, extra] of [['2^63-1', { timestamp_unix: '9223372036854775807' }], ['-2^63', { timestamp_unix: '-9223372036854775808' }], ['-1', { timestamp_unix: -1 }]] as const) {
      const { hostId: badId, jwt: badJwt } = await ingest.enrol({ hostname: `clock-int64-${name.replace(/[^0-9]/g, '')}` });
      const bad = await ingest.openStream(badId, badJwt);
      bad.send(badId, 2, extra as never);
      const ended = await bad.ended;
      assert.equal(codeFromGrpcDetails(ended.details), 'ERR_INVALID_ARGUMENT', `timestamp_unix ${name}: ${ended.details}`);
      assert.match(ended.details, /timestamp_unix must be a non-negative integer/);
    }
  });
});
