import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { HeartbeatResponse__Output, TaskUpdate } from '../common/proto.ts';
import { nextScanDueAt } from '../appliance/inventory/sweeper.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { HeartbeatStream } from './helpers/ingest-client.ts';
import { chunksOf, packages, submitScan } from './helpers/inventory.ts';
import { waitFor } from './helpers/wait.ts';

type TaskJson = Record<string, unknown> & { id: string; state: string; attempts: number; result: unknown; output: string | null; error_code: string | null };

const tasksIn = (stream: HeartbeatStream): string[] =>
  stream.received.filter((message): message is HeartbeatResponse__Output & { task: NonNullable<HeartbeatResponse__Output['task']> } => message.kind === 'task').map((message) => message.task.task_id);

describe('task dispatch on the Heartbeat stream of a real appliance', () => {
  const ingest = useIngestFixture();

  const enrol = () => ingest.enrol();
  const open = (hostId: string, jwt: string) => ingest.openStream(hostId, jwt);
  const report = (stream: HeartbeatStream, hostId: string, sequence: number, ...updates: TaskUpdate[]) => stream.send(hostId, sequence, { task_updates: updates });
  const show = (id: string) => ingest.appliance.cliJson<TaskJson>('tasks', 'show', id);

  test('a task queued while the host is offline goes out when its stream opens; reports move it to succeeded with its result', async () => {
    const { hostId, jwt } = await enrol();
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    assert.equal(queued.state, 'queued');
    const stream = await open(hostId, jwt);
    await waitFor('task pushed on connect', () => tasksIn(stream).includes(queued.id));
    const pushed = stream.received.find((message) => message.task?.task_id === queued.id)!.task!;
    assert.equal(pushed.kind, 'software_inventory');
    assert.equal(Number(pushed.timeout_ms), 600_000);
    assert.deepEqual(pushed.software_inventory, { snap: false, flatpak: false, windows_store: false });
    assert.equal((await show(queued.id)).state, 'sent');

    report(stream, hostId, 2, { task_id: queued.id, phase: 'TASK_PHASE_ACKNOWLEDGED' });
    await waitFor('acknowledged', async () => (await show(queued.id)).state === 'acknowledged');
    // The scan the task asked for, tied to it by task_id.
    const scanId = `scn_${queued.id}`;
    const submitted = await submitScan(ingest.client, jwt, chunksOf(hostId, scanId, packages(0, 700)).map((chunk) => ({ ...chunk, task_id: queued.id })));
    assert.ok(submitted.ok, JSON.stringify(submitted));
    // The acknowledgement and the outcome may arrive together, repeated (a resend): each applies once.
    const claimed = { scan_id: scanId, packages: 999, sources: ['dpkg'] };
    report(stream, hostId, 3, { task_id: queued.id, phase: 'TASK_PHASE_RUNNING' }, { task_id: queued.id, phase: 'TASK_PHASE_SUCCEEDED', message: '700 packages', result_json: JSON.stringify(claimed) });
    report(stream, hostId, 4, { task_id: queued.id, phase: 'TASK_PHASE_SUCCEEDED', message: 'again', result_json: '{}' });
    await waitFor('ack 4', () => stream.acks().includes(4));
    const done = await show(queued.id);
    assert.deepEqual([done.state, done.output], ['succeeded', '700 packages']);
    assert.deepEqual(done.result, { scan_id: scanId, packages: 700, chunks: 2, sources: ['dpkg'], added: 700, removed: 0, unchanged: 0 }, "the counts are the appliance's own");
    const late = await submitScan(ingest.client, jwt, chunksOf(hostId, `${scanId}-late`, packages(0, 1)).map((chunk) => ({ ...chunk, task_id: queued.id })));
    assert.ok(!late.ok && /^ERR_TASK_STATE_CONFLICT/.test(late.details), 'a finished task takes no further scan');
  });

  test('an inventory task reported successful without its scan having arrived fails; a scan naming another host\'s task is refused', async () => {
    const owner = await enrol();
    const other = await enrol();
    const stream = await open(owner.hostId, owner.jwt);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', owner.hostId);
    await waitFor('pushed', () => tasksIn(stream).includes(queued.id));
    const stolen = await submitScan(ingest.client, other.jwt, chunksOf(other.hostId, 'scn_stolen_0001', packages(0, 3)).map((chunk) => ({ ...chunk, task_id: queued.id })));
    assert.equal(stolen.ok, false);
    assert.match(stolen.ok ? '' : stolen.details, /^ERR_TASK_NOT_FOUND/);
    report(stream, owner.hostId, 2, { task_id: queued.id, phase: 'TASK_PHASE_SUCCEEDED', result_json: '{"packages":3}' });
    await waitFor('finished', async () => (await show(queued.id)).state !== 'sent');
    const failed = await show(queued.id);
    assert.deepEqual([failed.state, failed.error_code], ['failed', 'ERR_INVENTORY_SCAN_INCOMPLETE']);
  });

  test('a task queued while the host is online is pushed at once; cancelling a sent task tells the agent', async () => {
    const { hostId, jwt } = await enrol();
    const stream = await open(hostId, jwt);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'reload-config', hostId);
    await waitFor('pushed at once', () => tasksIn(stream).includes(queued.id), 5_000);
    assert.equal(stream.received.find((message) => message.task?.task_id === queued.id)?.task?.kind, 'config_reload');
    await ingest.appliance.cliJson('tasks', 'cancel', queued.id);
    await waitFor('cancel pushed', () => stream.received.some((message) => message.cancel?.task_id === queued.id), 5_000);
    report(stream, hostId, 2, { task_id: queued.id, phase: 'TASK_PHASE_SUCCEEDED' });
    await waitFor('ack 2', () => stream.acks().includes(2));
    assert.equal((await show(queued.id)).state, 'cancelled', 'a cancelled task stays cancelled');
  });

  test('a sent task not acknowledged before the stream ends is sent again on the next stream', async () => {
    const { hostId, jwt } = await enrol();
    const first = await open(hostId, jwt);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    await waitFor('pushed', () => tasksIn(first).includes(queued.id));
    first.call.cancel();
    await waitFor('queued again', async () => (await show(queued.id)).state === 'queued');
    const second = await open(hostId, jwt);
    await waitFor('pushed again', () => tasksIn(second).includes(queued.id));
    assert.equal((await show(queued.id)).attempts, 2);
    report(second, hostId, 2, { task_id: queued.id, phase: 'TASK_PHASE_FAILED', error_code: 'ERR_INVENTORY_TIMEOUT', message: 'dpkg-query did not finish' });
    await waitFor('failed', async () => (await show(queued.id)).state === 'failed');
    assert.equal((await show(queued.id)).error_code, 'ERR_INVENTORY_TIMEOUT');
  });

  test('a second stream replacing a live one takes over the unacknowledged task; the replaced stream closing later changes nothing', async () => {
    const { hostId, jwt } = await enrol();
    const first = await open(hostId, jwt);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    await waitFor('pushed on the first stream', () => tasksIn(first).includes(queued.id));
    const second = await open(hostId, jwt);
    await waitFor('pushed again on the second stream', () => tasksIn(second).includes(queued.id));
    assert.equal((await first.ended).code, 0, 'the replaced stream is ended');
    const task = await show(queued.id);
    assert.deepEqual([task.state, task.attempts], ['sent', 2]);
    report(second, hostId, 2, { task_id: queued.id, phase: 'TASK_PHASE_ACKNOWLEDGED' });
    await waitFor('acknowledged', async () => (await show(queued.id)).state === 'acknowledged');
    assert.equal((await ingest.appliance.host(hostId)).status, 'online');
    second.call.cancel();
    await waitFor('offline', async () => (await ingest.appliance.host(hostId)).status === 'offline');
    assert.equal((await show(queued.id)).state, 'acknowledged', 'an acknowledged task is not queued again: the agent has it');
  });

  test("an inventory task carries the optional sources the organisation switched on when it is sent", async () => {
    const { hostId, jwt } = await enrol();
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    // Switched on while the task waits: the agent collects what the settings say at send time.
    await ingest.appliance.cliJson('settings', 'inventory', '--flatpak', 'on', '--windows-store', 'on');
    try {
      const stream = await open(hostId, jwt);
      await waitFor('pushed', () => tasksIn(stream).includes(queued.id));
      const pushed = stream.received.find((message) => message.task?.task_id === queued.id)!.task!;
      assert.deepEqual(pushed.software_inventory, { snap: false, flatpak: true, windows_store: true });
      stream.call.cancel();
    } finally {
      await ingest.appliance.cliJson('settings', 'inventory', '--flatpak', 'off', '--windows-store', 'off');
    }
  });

  test("bad reports are refused one by one without ending the stream: another host's task, unknown ids, bad phases, malformed results, foreign error codes", async () => {
    const owner = await enrol();
    const other = await enrol();
    const ownerStream = await open(owner.hostId, owner.jwt);
    const otherStream = await open(other.hostId, other.jwt);
    const task = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', owner.hostId);
    await waitFor('pushed', () => tasksIn(ownerStream).includes(task.id));

    report(otherStream, other.hostId, 2, { task_id: task.id, phase: 'TASK_PHASE_SUCCEEDED' }, { task_id: 'tsk_unknown', phase: 'TASK_PHASE_ACKNOWLEDGED' }, { task_id: 'not a task', phase: 'TASK_PHASE_ACKNOWLEDGED' });
    await waitFor('ack 2', () => otherStream.acks().includes(2));
    assert.equal((await show(task.id)).state, 'sent', "another host's report changes nothing");
    await ingest.appliance.process.waitForLog('ingest refused', { host_id: other.hostId, what: 'task report', code: 'ERR_TASK_NOT_FOUND' });

    report(ownerStream, owner.hostId, 2, { task_id: task.id, phase: 'TASK_PHASE_UNSPECIFIED' }, { task_id: task.id, phase: 'TASK_PHASE_SUCCEEDED', result_json: '[1,2' });
    await waitFor('ack 2', () => ownerStream.acks().includes(2));
    assert.equal((await show(task.id)).state, 'sent', 'an unknown phase and a malformed result are refused');
    report(ownerStream, owner.hostId, 3, { task_id: task.id, phase: 'TASK_PHASE_FAILED', error_code: 'E_SOMETHING_ELSE', message: 'x'.repeat(100_000) });
    await waitFor('ack 3', () => ownerStream.acks().includes(3));
    assert.equal((await show(task.id)).state, 'sent', 'output over 64 KiB is refused (the agent sends 16 KiB at most)');
    report(ownerStream, owner.hostId, 4, { task_id: task.id, phase: 'TASK_PHASE_FAILED', error_code: 'E_SOMETHING_ELSE', message: 'x'.repeat(64 * 1024) });
    await waitFor('failed', async () => (await show(task.id)).state === 'failed');
    const failed = await show(task.id);
    assert.equal(failed.error_code, 'ERR_TASK_FAILED', 'a code outside the catalogue is not stored as such');
    assert.equal(Buffer.byteLength(failed.output ?? ''), 64 * 1024, 'output of 64 KiB is stored whole');
    ownerStream.send(owner.hostId, 5);
    otherStream.send(other.hostId, 3);
    await waitFor('both streams still serve', () => ownerStream.acks().includes(5) && otherStream.acks().includes(3));
  });
});

test('the software sweeper schedule: due at once when never scanned, after the interval, and backing off after failures up to the interval', () => {
  const hour = 3_600_000;
  assert.equal(nextScanDueAt({ lastSuccessAt: null, failuresSince: 0, lastFailureAt: null }, 24), 0);
  assert.equal(nextScanDueAt({ lastSuccessAt: 1_000, failuresSince: 0, lastFailureAt: null }, 24), 1_000 + 24 * hour);
  const failedAt = 10 * hour;
  assert.equal(nextScanDueAt({ lastSuccessAt: null, failuresSince: 1, lastFailureAt: failedAt }, 24), failedAt + 5 * 60_000);
  assert.equal(nextScanDueAt({ lastSuccessAt: null, failuresSince: 3, lastFailureAt: failedAt }, 24), failedAt + 20 * 60_000);
  assert.equal(nextScanDueAt({ lastSuccessAt: null, failuresSince: 40, lastFailureAt: failedAt }, 24), failedAt + 24 * hour, 'never longer than the interval');
  assert.equal(nextScanDueAt({ lastSuccessAt: failedAt - 10 * 60_000, failuresSince: 1, lastFailureAt: failedAt }, 1), failedAt + 50 * 60_000, 'a failure never makes a scan due sooner than the interval');
});
