import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CERTIFICATE_TIME_WARNING } from '../agent/transport/failure.ts';
import { ExitCode } from '../common/errors.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { shiftedClockEnv } from './helpers/faketime.ts';
import { waitFor } from './helpers/wait.ts';

const TEN_MINUTES_SECS = 600;
const TWO_DAYS_SECS = 2 * 86_400;
/** An offset is measured from one heartbeat's trip: within a few seconds on a loaded machine. */
const OFFSET_MARGIN_SECS = 10;

type HostView = Record<string, unknown> & { status: string; clock_offset_secs?: number | null; clock_offset_warning?: boolean };

/**
 * Real agents (dist/ct-ops-agent.cjs) whose wall clock libfaketime shifts, for their process only,
 * against a real appliance on the true time: enrolment, approval, streaming and JWT renewal work
 * whatever the agent's clock says, and the appliance shows (and warns about) the offset.
 */
describe('an agent whose clock is wrong by minutes or days', () => {
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];
  before(async () => {
    // A short JWT lifetime, so the appliance pushes a fresh JWT on the stream within the test.
    appliance = await TestAppliance.start({ args: ['--jwt-ttl-secs', '30'] });
  });
  after(async () => {
    for (const agent of agents) await agent.dispose();
    await appliance?.dispose();
  });

  function shiftedAgent(token: string): TestAgent {
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token });
    agents.push(agent);
    return agent;
  }

  async function hostOf(agent: TestAgent): Promise<HostView> {
    return (await appliance.host(agent.state().agent_id)) as HostView;
  }

  function assertOffset(host: HostView, expectedSecs: number, what: string): void {
    assert.equal(typeof host.clock_offset_secs, 'number', `${what}: clock_offset_secs is shown`);
    assert.ok(Math.abs((host.clock_offset_secs as number) - expectedSecs) <= OFFSET_MARGIN_SECS, `${what}: clock_offset_secs ${host.clock_offset_secs}, expected about ${expectedSecs}`);
    assert.equal(host.clock_offset_warning, true, `${what}: flagged past the 300 s threshold`);
  }

  test('agents 10 minutes ahead and 10 minutes behind enrol and stream at once; the offset is shown', async () => {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '2');
    const ahead = shiftedAgent(token);
    const behind = shiftedAgent(token);
    const procs = [ahead.start([], shiftedClockEnv({ offset: '+10m' })), behind.start([], shiftedClockEnv({ offset: '-10m' }))];
    await Promise.all(procs.map((proc) => proc.waitForLog('heartbeat stream opened', {}, 30_000)));
    for (const proc of procs) {
      assert.equal(proc.logged('registering agent').length, 1, 'one Register, not a retry loop');
      assert.equal(proc.logged('registration failed').length, 0);
    }
    await waitFor('offsets recorded', async () => typeof (await hostOf(behind)).clock_offset_secs === 'number' && typeof (await hostOf(ahead)).clock_offset_secs === 'number');
    assertOffset(await hostOf(ahead), TEN_MINUTES_SECS, '+10 min');
    assertOffset(await hostOf(behind), -TEN_MINUTES_SECS, '-10 min');
  });

  test('agents 2 days ahead and 2 days behind: enrol pending, approved, stream, get a fresh JWT on the stream and keep it across a restart; hosts show the offset and the appliance warns once each', async () => {
    const { token } = await appliance.createToken('--max-uses', '2');
    const cases = [
      { agent: shiftedAgent(token), offset: '+2d', expectedSecs: TWO_DAYS_SECS },
      { agent: shiftedAgent(token), offset: '-2d', expectedSecs: -TWO_DAYS_SECS },
    ];
    const procs = cases.map(({ agent, offset }) => agent.start([], shiftedClockEnv({ offset })));
    await Promise.all(procs.map((proc) => proc.waitForLog('awaiting approval', {}, 30_000)));
    const ids = procs.map((proc) => proc.logged('awaiting approval')[0]!.agent_id as string);
    for (const id of ids) assert.equal((await appliance.cli('hosts', 'approve', id)).code, 0);
    await Promise.all(procs.map((proc) => proc.waitForLog('heartbeat stream opened', {}, 30_000)));

    // The appliance renews the JWT on the stream (a third of its 30 s lifetime before expiry): the
    // agent takes it although, by its own clock, the JWT is long expired or not yet valid.
    await Promise.all(procs.map((proc) => proc.waitForLog('credential refreshed', {}, 40_000)));
    for (const proc of procs) {
      assert.equal(proc.logged('heartbeat stream opened').length, 1, 'the stream stayed up through the renewal');
      assert.ok(proc.logged('host clock differs from the appliance').length >= 1, 'the agent logs that its clock is off');
    }
    for (const [index, { agent, expectedSecs }] of cases.entries()) {
      const host = await hostOf(agent);
      assert.equal(host.status, 'online');
      assertOffset(host, expectedSecs, cases[index]!.offset);
      const warnings = appliance.process.logged('host clock offset above threshold', { host_id: ids[index] });
      assert.equal(warnings.length, 1, 'one warning per host per crossing, not one per heartbeat');
      assert.ok(Math.abs((warnings[0]!.clock_offset_secs as number) - expectedSecs) <= OFFSET_MARGIN_SECS);
    }
    const listed = await appliance.hosts();
    for (const id of ids) assert.equal(listed.find((host) => host.id === id)?.clock_offset_warning, true, '`hosts list --json` marks the host');
    const table = (await appliance.cli('hosts', 'list')).stdout.split('\n');
    assert.match(table[0]!, /CLOCK_OFFSET_SECS\s+CLOCK_OFFSET_WARNING/);
    for (const [index, id] of ids.entries()) {
      const [, shown] = /\s(-?\d+)\s+true$/.exec(table.find((line) => line.startsWith(id)) ?? '') ?? [];
      assert.ok(shown !== undefined && Math.abs(Number(shown) - cases[index]!.expectedSecs) <= OFFSET_MARGIN_SECS, `the table shows the offset and the marker: ${table.join('\n')}`);
    }

    // A restart keeps the saved JWT: the agent does not judge it by its own clock, so no Register.
    // Stopped right after a fresh renewal, so the saved JWT is still valid (by the appliance's
    // clock) when the restarted agent uses it, however slow the loaded machine is.
    for (const [index, { agent, offset }] of cases.entries()) {
      const proc = procs[index]!;
      await proc.waitForLog('credential refreshed', {}, 40_000, proc.logged('credential refreshed').length + 1);
      await agent.stop();
      const restarted = agent.start([], shiftedClockEnv({ offset }));
      await restarted.waitForLog('heartbeat stream opened', {}, 30_000);
      assert.equal(restarted.logged('registering agent').length, 0, `${offset}: the saved JWT was used, not discarded`);
    }
    for (const id of ids) assert.equal(appliance.process.logged('host clock offset above threshold', { host_id: id }).length, 1, 'a reconnect is no new crossing');
  });

  test('an agent 8 days behind (before the certificate is valid) keeps retrying, names its clock, and enrols once its clock is set; -check says why', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = shiftedAgent(token);
    const clockDir = mkdtempSync(join(tmpdir(), 'ct-ops-agent-clock-'));
    const clockFile = join(clockDir, 'faketime');
    try {
      // The server certificate is valid from 7 days before the appliance made it: 8 days behind is before that.
      writeFileSync(clockFile, '-8d\n');
      const check = agent.start(['-check'], shiftedClockEnv({ timestampFile: clockFile }));
      assert.equal((await check.exited).code, ExitCode.TEMP_FAIL, `-check exits 75, not 78: ${check.stderr}`);
      assert.match(check.stderr + JSON.stringify(check.events), /ERR_INGEST_TLS_CLOCK[\s\S]*not valid at this host's clock/);

      const proc = agent.start([], shiftedClockEnv({ timestampFile: clockFile }));
      const warning = await proc.waitForLog(CERTIFICATE_TIME_WARNING, {}, 30_000, 2);
      assert.ok(typeof warning.local_time === 'string' && Date.parse(warning.local_time) < Date.now() - 7 * 86_400_000, `the warning names the host's (wrong) time: ${JSON.stringify(warning)}`);
      assert.equal(proc.running, true, 'retried, not a fatal exit (78) that systemd would not restart');
      assert.equal(proc.logged('registration failed').length, 0);

      // NTP sets the clock: the running agent enrols on its next attempt.
      writeFileSync(clockFile, '+0\n');
      await proc.waitForLog('heartbeat stream opened', {}, 60_000);
      assert.equal(proc.running, true);
    } finally {
      rmSync(clockDir, { recursive: true, force: true });
    }
  });
});
