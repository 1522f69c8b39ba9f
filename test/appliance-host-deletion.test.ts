import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { REPORT_ONLY_METADATA } from '../common/proto.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, HeartbeatStream, newIdentity, signedRegister, type TestIdentity } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';

type TaskJson = Record<string, unknown> & { id: string; type: string; state: string; expires_at: string };
type HostJson = Record<string, unknown> & { id: string; status: string; pending_uninstall: TaskJson | null };

describe('deleting hosts on a real appliance', () => {
  const ingest = useIngestFixture();

  const enrol = (autoApprove = true, identity?: TestIdentity) => ingest.enrol({ autoApprove, identity });
  const stream = (hostId: string, jwt: string) => ingest.openStream(hostId, jwt);
  const fails = async (args: string[], code: string): Promise<void> => {
    const result = await ingest.appliance.cli(...args);
    assert.notEqual(result.code, 0, `${args.join(' ')} should fail`);
    assert.match(result.stderr, new RegExp(code));
  };

  test('delete: the stream closes, the host leaves the list, and its key is retired for good; the machine can enrol afresh with a new key', async () => {
    const { hostId, jwt, identity } = await enrol();
    const live = await stream(hostId, jwt);
    const deleted = await ingest.appliance.cliJson<{ host: HostJson; uninstall: null }>('hosts', 'delete', hostId);
    assert.equal(deleted.host.status, 'deleted');
    assert.equal(deleted.uninstall, null);
    const ended = await live.ended;
    assert.equal(ended.code, 7, 'PERMISSION_DENIED');
    assert.ok(!(await ingest.appliance.hosts()).some((host) => host.id === hostId), 'not listed');
    const shown = await ingest.appliance.host(hostId);
    assert.equal(shown.status, 'deleted');
    assert.equal(typeof shown.deleted_at, 'string');

    const again = await callRegister(ingest.client, signedRegister(identity, ''));
    assert.ok(!again.ok);
    assert.equal(again.code, 7);
    assert.match(again.details, /^ERR_AGENT_KEY_RETIRED: /);
    const heartbeatAfter = new HeartbeatStream(ingest.client, jwt);
    heartbeatAfter.send(hostId, 1);
    assert.match((await heartbeatAfter.ended).details, /^ERR_AGENT_NOT_ACTIVE: the host is deleted/, 'its unexpired JWT is no use either');

    await fails(['hosts', 'rescan', hostId], 'ERR_HOST_NOT_FOUND');
    await fails(['hosts', 'delete', hostId], 'ERR_HOST_NOT_FOUND');
    await fails(['hosts', 'approve', hostId], 'ERR_HOST_NOT_FOUND');

    // Same machine, new key (data directory wiped): a fresh enrolment, not a clone of the deleted host.
    const fresh = await enrol(true, { ...newIdentity(identity.hostname), fingerprint: identity.fingerprint });
    assert.notEqual(fresh.hostId, hostId);
    const freshHost = await ingest.appliance.host(fresh.hostId);
    assert.deepEqual([freshHost.status, freshHost.fingerprint_conflict_with], ['never-connected', null]);
  });

  test('delete --uninstall of an offline host waits for the agent (the admin sees it, with its expiry); success then deletes the host', async () => {
    const { hostId, jwt, identity } = await enrol();
    const before = Date.now();
    const requested = await ingest.appliance.cliJson<{ host: HostJson; uninstall: TaskJson }>('hosts', 'delete', hostId, '--uninstall');
    assert.deepEqual([requested.uninstall.type, requested.uninstall.state], ['agent_uninstall', 'queued']);
    const expires = Date.parse(requested.uninstall.expires_at);
    assert.ok(expires >= before + 7 * 86_400_000 - 1000 && expires <= Date.now() + 7 * 86_400_000, 'waits up to 7 days');
    const waiting = await ingest.appliance.host(hostId) as HostJson;
    assert.equal(waiting.status, 'never-connected', 'still a host until the agent has uninstalled itself');
    assert.equal(waiting.pending_uninstall?.id, requested.uninstall.id);
    assert.ok((await ingest.appliance.hosts()).some((host) => host.id === hostId));
    const twice = await ingest.appliance.cli('hosts', 'delete', hostId, '--uninstall');
    assert.match(twice.stdout, new RegExp(`^uninstall task ${requested.uninstall.id} is queued \\(the host is never-connected; it waits until ${requested.uninstall.expires_at}\\); ${hostId} is deleted when the agent reports success\n$`), 'asking twice queues one uninstall');

    const live = await stream(hostId, jwt);
    // Its first heartbeat is the interval's one stored vitals sample (one per 5 s interval here).
    const firstBeatAt = Date.now();
    const atSecond = (seconds: number) => new Promise((resolve) => setTimeout(resolve, firstBeatAt + seconds * 1000 - Date.now()));
    await waitFor('uninstall pushed on connect', () => live.received.some((message) => message.task?.task_id === requested.uninstall.id && message.task.kind === 'agent_uninstall'));
    live.send(hostId, 2, { task_updates: [{ task_id: requested.uninstall.id, phase: 'TASK_PHASE_ACKNOWLEDGED' }, { task_id: requested.uninstall.id, phase: 'TASK_PHASE_RUNNING' }] });
    await waitFor('ack 2', () => live.acks().includes(2));
    assert.equal((await ingest.appliance.host(hostId)).status, 'online');
    // The uninstaller's report (ct-ops-agent report-task) arrives on a report-only stream of its own:
    // it does not replace the agent's stream, gets no tasks and records no vitals.
    const vitalsCount = async () => ((await ingest.appliance.host(hostId)).recent_vitals as unknown[]).length;
    await atSecond(3);
    live.send(hostId, 3); // keeps the agent's stream heard; too early for a second sample
    await waitFor('ack 3', () => live.acks().includes(3));
    await atSecond(5); // a sample is due again: the reporter's heartbeat would be stored if it recorded vitals
    const reporter = new HeartbeatStream(ingest.client, jwt, { [REPORT_ONLY_METADATA]: '1' });
    reporter.send(hostId, 1);
    await waitFor('reporter ack 1', () => reporter.acks().includes(1));
    assert.equal((await ingest.appliance.host(hostId)).status, 'online', "the agent's own stream is still the live one");
    assert.ok(!reporter.received.some((message) => message.kind === 'task'), 'no tasks for a reporter');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(await vitalsCount(), 1, 'the reporter records no vitals (vitals are written in 1 s batches)');
    live.send(hostId, 4);
    await waitFor('the agent stream still serves', () => live.acks().includes(4));
    await waitFor("the agent's heartbeat recorded", async () => (await vitalsCount()) === 2);
    reporter.send(hostId, 2, { task_updates: [{ task_id: requested.uninstall.id, phase: 'TASK_PHASE_SUCCEEDED', message: 'CT-Ops agent removed' }] });
    await waitFor('the report is acknowledged', () => reporter.acks().includes(2));
    assert.equal((await live.ended).code, 7, "deleting the host closes the agent's stream");
    reporter.call.end();
    const gone = await ingest.appliance.host(hostId) as HostJson;
    assert.deepEqual([gone.status, gone.pending_uninstall], ['deleted', null]);
    const task = await ingest.appliance.cliJson<TaskJson>('tasks', 'show', requested.uninstall.id);
    assert.deepEqual([task.state, task.output], ['succeeded', 'CT-Ops agent removed']);
    const registerAgain = await callRegister(ingest.client, signedRegister(identity, ''));
    assert.ok(!registerAgain.ok && /^ERR_AGENT_KEY_RETIRED/.test(registerAgain.details));
  });

  test('a sent uninstall cannot be cancelled; a failed one keeps the host until a late success report; a pending host cannot be asked to uninstall itself', async () => {
    const { hostId, jwt } = await enrol();
    const live = await stream(hostId, jwt);
    const requested = await ingest.appliance.cliJson<{ uninstall: TaskJson }>('hosts', 'delete', hostId, '--uninstall');
    await waitFor('pushed at once to the online agent', () => live.received.some((message) => message.task?.task_id === requested.uninstall.id));
    await fails(['tasks', 'cancel', requested.uninstall.id], 'ERR_TASK_STATE_CONFLICT');
    live.send(hostId, 2, { task_updates: [{ task_id: requested.uninstall.id, phase: 'TASK_PHASE_FAILED', error_code: 'ERR_UNINSTALL_UNAVAILABLE', message: 'no root helper' }] });
    await waitFor('ack 2', () => live.acks().includes(2));
    const kept = await ingest.appliance.host(hostId) as HostJson;
    assert.deepEqual([kept.status, kept.pending_uninstall], ['online', null]);
    assert.equal((await ingest.appliance.cliJson<TaskJson>('tasks', 'show', requested.uninstall.id)).error_code, 'ERR_UNINSTALL_UNAVAILABLE');
    // The helper started the uninstaller after all (just after the agent stopped waiting for it): its
    // success report arrives for a task already failed. The agent is gone, so the host is deleted.
    const reporter = new HeartbeatStream(ingest.client, jwt, { [REPORT_ONLY_METADATA]: '1' });
    reporter.send(hostId, 1, { task_updates: [{ task_id: requested.uninstall.id, phase: 'TASK_PHASE_SUCCEEDED', message: 'removed late' }] });
    await waitFor('reporter ack', () => reporter.acks().includes(1));
    assert.equal((await ingest.appliance.host(hostId)).status, 'deleted');
    await ingest.appliance.process.waitForLog('task outcome arrived after the task finished', { task_id: requested.uninstall.id });
    assert.equal((await ingest.appliance.cliJson<TaskJson>('tasks', 'show', requested.uninstall.id)).state, 'failed', 'a finished task never moves');
    reporter.call.end();

    const pending = await enrol(false);
    await fails(['hosts', 'delete', pending.hostId, '--uninstall'], 'ERR_HOST_STATE_CONFLICT');
    const deleted = await ingest.appliance.cli('hosts', 'delete', pending.hostId);
    assert.equal(deleted.stdout, `host ${pending.hostId} deleted; its key is retired\n`, 'a pending host is deleted without an uninstall');
    assert.equal((await ingest.appliance.host(pending.hostId)).status, 'deleted');
  });
});
