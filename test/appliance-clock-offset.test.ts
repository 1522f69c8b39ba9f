import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLOCK_OFFSET_WARN_SECS } from '../common/clock-offset.ts';
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
    assert.ok(ack && Math.abs(ack.clock_offset_ms - HOUR_MS) < 5_000, `the ack tells the agent its offset: ${JSON.stringify(ack)}`);
    assert.equal((await shownOffset(hostId, 3600)).clock_offset_warning, true);
    await ingest.appliance.process.waitForLog('host clock offset above threshold', threshold);

    // Still past the threshold (now behind, in an older agent's whole seconds): no new warning.
    stream.send(hostId, 3, { timestamp_unix: Math.floor((Date.now() - 2 * HOUR_MS) / 1000) });
    assert.equal((await shownOffset(hostId, -7200)).clock_offset_warning, true);

    stream.send(hostId, 4, { timestamp_unix_ms: Date.now() });
    assert.equal((await shownOffset(hostId, 0)).clock_offset_warning, false);
    const back = await ingest.appliance.process.waitForLog('host clock offset back within threshold', threshold);
    assert.equal(back.threshold_secs, CLOCK_OFFSET_WARN_SECS);
    assert.equal(ingest.appliance.process.logged('host clock offset above threshold', threshold).length, 1, 'one warning for the whole time past the threshold');
  });
});
