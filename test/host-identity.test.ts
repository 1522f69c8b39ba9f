import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { HeartbeatStream, ingestClient } from './helpers/ingest-client.ts';
import { AGENT_BIN, LoggedProcess } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

type ShownHost = Record<string, unknown> & {
  status: string;
  hostname: string;
  identity_state: string | null;
  identity_claimants: Array<{ instance_id: string; machine_fingerprint: string; hostname: string }>;
  previous_names: Array<{ hostname: string; until: string }>;
  recent_events: Array<{ kind: string; host_id: string; details: Record<string, unknown> }>;
  tags: Record<string, string>;
};

/** The instance id the agent process logged at start ("agent process instance"). */
function instanceOf(process: LoggedProcess): string {
  const event = process.logged('agent process instance')[0];
  assert.ok(event, 'the agent logged its instance id');
  return event.instance_id as string;
}

describe('cloned, restarted, reimaged and renamed hosts (real appliance, real compiled agents)', () => {
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];
  const processes: LoggedProcess[] = [];

  before(async () => {
    appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
  });
  after(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
  });

  function newAgent(orgToken?: string): TestAgent {
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken, intervalSecs: 5 });
    agents.push(agent);
    return agent;
  }

  /** A second data directory holding a copy of `original`'s identity (a cloned disk). */
  function cloneOf(original: TestAgent, options: { sameMachineId: boolean }): TestAgent {
    const clone = newAgent();
    cpSync(original.dataDir, clone.dataDir, { recursive: true });
    if (options.sameMachineId) cpSync(original.machineIdFile, clone.machineIdFile);
    return clone;
  }

  const show = (id: string) => appliance.cliJson<ShownHost>('hosts', 'show', id);

  async function enrolled(tags: string[] = []): Promise<{ agent: TestAgent; hostId: string }> {
    const { token } = await appliance.createToken('--auto-approve', ...tags.flatMap((tag) => ['--tag', tag]));
    const agent = newAgent(token);
    await agent.start().waitForLog('heartbeat stream opened');
    return { agent, hostId: agent.state().agent_id };
  }

  const opensOf = (hostId: string): number => appliance.process.logged('heartbeat stream opened', { host_id: hostId }).length;

  test('two machines using one copied identity are flagged, their tasks held, no endless replacement; resolving keeps one online and the other enrols as a new pending host', { timeout: 180_000 }, async () => {
    const { agent: first, hostId } = await enrolled(['site:lab']);
    const clone = cloneOf(first, { sameMachineId: false });
    const second = clone.start();

    const flagged = await waitFor('the host flagged', async () => {
      const shown = await show(hostId);
      return shown.status === 'identity-conflict' && shown;
    }, 30_000);
    assert.equal(flagged.identity_state, 'conflict');
    assert.equal(flagged.identity_claimants.length, 2, JSON.stringify(flagged.identity_claimants));
    assert.deepEqual(new Set(flagged.identity_claimants.map((claimant) => claimant.instance_id)), new Set([instanceOf(first.process!), instanceOf(second)]));
    assert.ok(flagged.recent_events.some((event) => event.kind === 'identity-conflict'), 'hosts show lists the audit event');
    const warning = appliance.process.logged('identity conflict: two machines use one host key', { host_id: hostId });
    assert.equal(warning.length, 1, 'one audit line at warn');
    assert.equal(warning[0]!.level, 40);
    const listed = (await appliance.hosts()).find((host) => host.id === hostId);
    assert.equal(listed?.status, 'identity-conflict');

    // The displaced machine was told why and when to come back; it does not reconnect at once.
    const refusal = await second.waitForLog('heartbeat stream closed', { error_code: 'ERR_HOST_IDENTITY_CONFLICT' }, 30_000);
    assert.equal(refusal.retry_after_ms, 15_000);
    assert.ok((refusal.reconnect_in_ms as number) >= 15_000);

    // Bounded: over 10 s the two machines open at most a couple of streams (counted by the agents,
    // refused ones included), not one a second as they did replacing each other.
    const streamsOpened = () => [first.process!, second].reduce((sum, proc) => sum + proc.logged('starting heartbeat').length, 0);
    const opensBefore = streamsOpened();
    const linesBefore = appliance.process.events.length;
    const queued = await appliance.cliJson<{ id: string; state: string }>('hosts', 'rescan', hostId);
    await sleep(10_000);
    assert.ok(streamsOpened() - opensBefore <= 2, `stream opens in 10 s: ${streamsOpened() - opensBefore}`);
    assert.ok(appliance.process.events.length - linesBefore < 40, 'no flood of log lines');
    assert.equal((await appliance.cliJson<{ state: string }>('tasks', 'show', queued.id)).state, 'queued', 'tasks are held while flagged');

    const keep = instanceOf(first.process!);
    const resolved = await appliance.cliJson<ShownHost>('hosts', 'resolve', hostId, '--keep', keep);
    assert.equal(resolved.identity_state, 'resolved');
    await waitFor('the held task sent to the kept machine', async () => (await appliance.cliJson<{ state: string }>('tasks', 'show', queued.id)).state !== 'queued', 30_000);

    // The other machine learns it at its next stream open, makes a new key and enrols as a new pending host.
    await second.waitForLog('the appliance retired this identity (another machine kept it); enrolling as a new host', {}, 40_000);
    const response = await second.waitForLog('registration response', { status: 'pending' }, 20_000);
    const successorId = response.agent_id as string;
    assert.notEqual(successorId, hostId);
    await second.waitForLog('new identity enrolled; retired key removed', {}, 10_000);
    assert.equal(existsSync(join(clone.dataDir, 'retired_agent_key.pem')), false);
    const successor = await show(successorId);
    assert.equal(successor.status, 'pending');
    assert.deepEqual(successor.tags, { site: 'lab' }, "it carries the old host's token tags, not its approval");
    const kept = await show(hostId);
    assert.equal(kept.identity_state, null, 'the resolution ends once the retired machine re-enrolled');
    assert.equal(kept.status, 'online');
    assert.ok(first.process!.running && second.running);
  });

  test('a cloned VM that keeps machine id and hostname: alternating processes are flagged, and resolving by instance retires the other', { timeout: 180_000 }, async () => {
    const { agent: first, hostId } = await enrolled();
    const clone = cloneOf(first, { sameMachineId: true });
    const second = clone.start();
    const flagged = await waitFor('the host flagged', async () => {
      const shown = await show(hostId);
      return shown.status === 'identity-conflict' && shown;
    }, 30_000);
    assert.equal(new Set(flagged.identity_claimants.map((claimant) => claimant.machine_fingerprint)).size, 1, 'one fingerprint, two instances');
    assert.equal(flagged.identity_claimants.length, 2);
    const fingerprint = flagged.identity_claimants[0]!.machine_fingerprint;
    const ambiguous = await appliance.cli('hosts', 'resolve', hostId, '--keep', fingerprint);
    assert.notEqual(ambiguous.code, 0, 'a fingerprint both machines share names no one');
    assert.match(ambiguous.stderr, /ERR_INVALID_ARGUMENT/);

    await appliance.cliJson('hosts', 'resolve', hostId, '--keep', instanceOf(second));
    // Told at its next call: refused while flagged, it may be waiting out the back-off's last step (60 s).
    await first.process!.waitForLog('the appliance retired this identity (another machine kept it); enrolling as a new host', {}, 75_000);
    const response = await first.process!.waitForLog('registration response', { status: 'pending' }, 20_000);
    const successor = await show(response.agent_id as string);
    assert.equal(successor.status, 'pending');
    assert.equal(successor.fingerprint_conflict_with, hostId, 'the same machine id: held pending beside the kept host');
    await waitFor('the kept clone online', async () => (await show(hostId)).status === 'online', 20_000);
  });

  test('a cloned VM resolved by instance: the kept machine rotates its key and may then restart freely; the clone is retired by key, its old JWT refused, and it enrols as a new pending host', { timeout: 240_000 }, async () => {
    const { agent: first, hostId } = await enrolled(['site:vm']);
    const clone = cloneOf(first, { sameMachineId: true });
    const sharedJwt = clone.state().jwt;
    const keyBefore = readFileSync(join(first.dataDir, 'agent_key.pub'), 'utf8');
    const second = clone.start();
    await waitFor('the host flagged', async () => (await show(hostId)).status === 'identity-conflict', 30_000);

    await appliance.cliJson('hosts', 'resolve', hostId, '--keep', instanceOf(first.process!));
    // Offered on the kept machine's live stream, or on its next accepted one (after its back-off).
    await first.process!.waitForLog('key rotated; the old key is deleted', {}, 60_000);
    const keyAfter = readFileSync(join(first.dataDir, 'agent_key.pub'), 'utf8');
    assert.notEqual(keyAfter, keyBefore, 'the kept machine has a new key');
    assert.equal(existsSync(join(first.dataDir, 'key_rotation.json')), false);
    assert.equal(first.state().agent_id, hostId, 'the same host record');
    const rotated = await show(hostId);
    assert.equal(rotated.identity_state, null, 'no pin left to trip over');
    assert.equal(rotated.approval, 'active');
    assert.deepEqual(rotated.tags, { site: 'vm' });
    assert.ok(rotated.recent_events.some((event) => event.kind === 'identity-key-rotated'));

    // The JWT both machines shared is refused at once, whoever presents it.
    const ingest = ingestClient(appliance.address, appliance.caCert);
    const stale = new HeartbeatStream(ingest, sharedJwt);
    stale.send(hostId, 1);
    const staleEnd = await stale.ended;
    assert.match(staleEnd.details, /ERR_IDENTITY_RETIRED/);
    ingest.close();

    // The clone is retired (by its stale JWT or the kept pin) and enrols once as a new pending host.
    await second.waitForLog('the appliance retired this identity (another machine kept it); enrolling as a new host', {}, 60_000);
    const response = await second.waitForLog('registration response', { status: 'pending' }, 20_000);
    assert.notEqual(response.agent_id, hostId);
    assert.equal((await show(response.agent_id as string)).status, 'pending');

    // The kept machine restarts (a new process instance): it keeps streaming, it is not retired.
    const keptInstance = instanceOf(first.process!);
    await first.process!.stop();
    const restarted = first.start();
    await restarted.waitForLog('heartbeat stream opened', {}, 30_000);
    assert.notEqual(instanceOf(restarted), keptInstance, 'a new instance');
    await sleep(8_000);
    assert.equal(restarted.logged('the appliance retired this identity (another machine kept it); enrolling as a new host').length, 0);
    assert.ok(restarted.running, 'still running');
    assert.equal(readFileSync(join(first.dataDir, 'agent_key.pub'), 'utf8'), keyAfter, 'the rotated key stays');
    await waitFor('the kept host online', async () => (await show(hostId)).status === 'online', 20_000);
    assert.equal(first.state().agent_id, hostId);
  });

  test('restarting an agent (cleanly, or killed) is not a second claimant', { timeout: 120_000 }, async () => {
    const { agent, hostId } = await enrolled();
    await agent.stop();
    await agent.start().waitForLog('heartbeat stream opened');
    await agent.process!.stop('SIGKILL');
    await agent.start().waitForLog('heartbeat stream opened');
    await waitFor('three stream opens', () => opensOf(hostId) >= 3, 20_000);
    await sleep(6_000);
    const shown = await show(hostId);
    assert.equal(shown.status, 'online');
    assert.equal(shown.identity_state, null);
    assert.ok(!shown.recent_events.some((event) => event.kind === 'identity-conflict'));
  });

  test('a reimaged machine approved as the replacement of its old host takes over its tags and history; the old key is retired', { timeout: 120_000 }, async () => {
    const { agent, hostId: oldId } = await enrolled(['rack:r7']);
    await agent.stop();
    const oldIdentity = `${agent.root}/old-data`;
    cpSync(agent.dataDir, oldIdentity, { recursive: true });
    // Reinstalled: same machine, a fresh data directory and a new token.
    rmSync(agent.dataDir, { recursive: true, force: true });
    const { token } = await appliance.createToken();
    agent.writeConfig({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 });
    const reinstalled = agent.start();
    const response = await reinstalled.waitForLog('registration response', { status: 'pending' }, 20_000);
    const newId = response.agent_id as string;
    assert.equal((await show(newId)).fingerprint_conflict_with, oldId);

    const approved = await appliance.cliJson<ShownHost>('hosts', 'approve', newId, '--replaces', oldId);
    assert.equal(approved.replaces, oldId);
    assert.deepEqual(approved.tags, { 'rack': 'r7' });
    await reinstalled.waitForLog('heartbeat stream opened', {}, 20_000);
    const shown = await show(newId);
    assert.ok(shown.recent_events.some((event) => event.kind === 'replaces'), 'its history shows the takeover');
    assert.ok(shown.recent_events.some((event) => event.host_id === oldId), "the old host's events are visible from the new one");
    assert.ok(!(await appliance.hosts()).some((host) => host.id === oldId), 'the old host no longer piles up in the list');
    assert.equal((await show(oldId)).replaced_by, newId);

    // The old identity, brought back, is refused for good.
    const ghost = newAgent();
    cpSync(oldIdentity, ghost.dataDir, { recursive: true });
    cpSync(agent.machineIdFile, ghost.machineIdFile);
    const ghostProcess = ghost.start();
    const exit = await ghostProcess.exited;
    assert.notEqual(exit.code, 0);
    assert.match(ghostProcess.stdout + ghostProcess.stderr, /ERR_AGENT_KEY_RETIRED/);
  });

  test('a renamed host shows its new name and the previous ones: after a restart and while it streams; its own log lines use the new name', { timeout: 120_000 }, async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = newAgent(token);
    /** The agent in its own UTS namespace, named `name`: a rename touches nothing else on this machine. */
    const startNamed = (name: string): LoggedProcess => {
      const proc = new LoggedProcess('unshare', ['--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', name, process.execPath, AGENT_BIN, '-config', agent.configPath], {
        CT_OPS_MACHINE_ID_FILE: agent.machineIdFile,
        CT_OPS_LOG_LEVEL: 'debug',
      });
      processes.push(proc);
      return proc;
    };
    const before = startNamed('rename-old');
    await before.waitForLog('heartbeat stream opened');
    const hostId = agent.state().agent_id;
    assert.equal((await show(hostId)).hostname, 'rename-old');
    await before.stop();

    const restarted = startNamed('rename-new');
    await restarted.waitForLog('heartbeat stream opened');
    const afterRestart = await waitFor('the new name', async () => {
      const shown = await show(hostId);
      return shown.hostname === 'rename-new' && shown;
    }, 15_000);
    assert.deepEqual(afterRestart.previous_names.map((entry) => entry.hostname), ['rename-old']);

    // Renamed while streaming: the next heartbeat carries the change.
    execFileSync('nsenter', ['-t', String(restarted.child.pid), '--uts', 'hostname', 'rename-live']);
    const live = await waitFor('the live rename', async () => {
      const shown = await show(hostId);
      return shown.hostname === 'rename-live' && shown;
    }, 20_000);
    assert.deepEqual(live.previous_names.map((entry) => entry.hostname), ['rename-new', 'rename-old']);
    assert.equal(live.status, 'online', 'no re-enrolment, same host');
    const linesAfter = await waitFor('a log line after the rename', () => restarted.events.filter((event) => event.hostname === 'rename-live').length > 0 && restarted.events, 15_000);
    assert.equal(linesAfter.at(-1)!.hostname, 'rename-live');
    assert.equal(appliance.process.logged('host renamed', { host_id: hostId }).length, 2);
  });
});
