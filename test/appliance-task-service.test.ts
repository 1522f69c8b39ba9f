import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import pino from 'pino';
import { CtOpsError } from '../common/errors.ts';
import type { HeartbeatResponse } from '../common/proto.ts';
import { HostService } from '../appliance/hosts/service.ts';
import { newId } from '../appliance/lib/ids.ts';
import type { LiveSession, PresenceRegistry } from '../appliance/presence/registry.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import { openStores, type Stores } from '../appliance/store/index.ts';
import { runEffects } from '../appliance/store/unit-of-work.ts';
import { recordTask, TaskService } from '../appliance/tasks/index.ts';
import { waitFor } from './helpers/wait.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-task-service-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

/**
 * An agent's stream as the presence registry sees it, recording every message written to it. While
 * `holdTasks` is set, a task's write is not yet accepted (a full buffer waiting to drain) until
 * `acceptHeld()`: the window in which a send is in flight.
 */
class RecordingStream implements LiveSession {
  readonly written: HeartbeatResponse[] = [];
  holdTasks = false;
  readonly #held: Array<() => void> = [];

  constructor(readonly agentId: string) {}

  send(message: HeartbeatResponse): boolean {
    this.written.push(message);
    return true;
  }

  deliver(message: HeartbeatResponse): Promise<boolean> {
    this.written.push(message);
    if (!this.holdTasks || message.task === undefined) return Promise.resolve(true);
    return new Promise((resolve) => this.#held.push(() => resolve(true)));
  }

  close(): void {}

  get heldWrites(): number {
    return this.#held.length;
  }

  acceptHeld(): void {
    for (const accept of this.#held.splice(0)) accept();
  }

  tasksWritten(taskId: string): number {
    return this.written.filter((message) => message.task?.task_id === taskId).length;
  }

  cancelsWritten(taskId: string): number {
    return this.written.filter((message) => message.cancel?.task_id === taskId).length;
  }
}

describe('TaskService: effects after commit, sends in flight', () => {
  let stores: Stores;
  let presence: PresenceRegistry;
  let tasks: TaskService;
  let stream: RecordingStream;
  let orgId: string;
  let hostId: string;
  let counter = 0;

  beforeEach(async () => {
    presence?.closeAll(new CtOpsError('ERR_INTERNAL', 'test over'));
    stores?.close();
    stores = openStores(join(dir, `service-${counter++}.db`));
    const presenceService = new PresenceService({ stores, log, requeueTasks: () => undefined });
    presence = presenceService.registry;
    // Wired as serve.ts wires them: what a finished task does to its host is HostService's.
    tasks = new TaskService({ stores, presence, log, onFinished: (tx, task) => hosts.taskFinished(tx, task) });
    const hosts: HostService = new HostService({ stores, presence: presenceService, tasks, log });
    orgId = (await stores.organisations.ensureDefault(Date.now())).id;
    hostId = newId('hst');
    await stores.hosts.insert({
      id: hostId, orgId, publicKey: randomBytes(32), hostname: 'web-1', machineFingerprint: 'f'.repeat(64), os: 'linux', arch: 'amd64', agentVersion: '0.2.0',
      approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: Date.now(),
    });
    stream = new RecordingStream(hostId);
    presence.attach(stream, 30);
  });
  after(() => {
    presence.closeAll(new CtOpsError('ERR_INTERNAL', 'test over'));
    stores.close();
  });

  test('a task cancelled through the API while its send is in flight ends cancelled, unsent, and its agent is told to stop exactly once', async () => {
    stream.holdTasks = true;
    const creating = tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await waitFor('the task written, its acceptance pending', () => stream.heldWrites === 1, 5_000, 5);
    const [written] = stream.written;
    const taskId = written!.task!.task_id!;
    const cancelled = await tasks.cancel(orgId, taskId, 'admin');
    assert.deepEqual([cancelled.state, cancelled.sentAt], ['cancelled', null]);
    assert.equal(stream.cancelsWritten(taskId), 0, 'the cancel found it unsent: the send in flight tells the agent');
    stream.acceptHeld();
    const created = await creating;
    assert.equal(created.task.state, 'cancelled', 'the accepted write does not mark a cancelled task sent');
    assert.equal(created.task.attempts, 0);
    assert.equal(stream.tasksWritten(taskId), 1);
    assert.equal(stream.cancelsWritten(taskId), 1);
  });

  test('a task cancelled after its send was accepted is marked sent first, and the cancel alone tells the agent, once', async () => {
    const { task } = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    assert.deepEqual([task.state, task.attempts], ['sent', 1]);
    await tasks.cancel(orgId, task.id, 'admin');
    assert.equal(stream.cancelsWritten(task.id), 1);
    assert.equal((await stores.tasks.get(task.id))?.state, 'cancelled');
  });

  test('a task queued again after a lost stream and cancelled while its resend is in flight: the agent is told once, by the cancel', async () => {
    const { task } = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'admin' });
    assert.deepEqual(await stores.tasks.requeueSent(hostId), [task.id]);
    stream.holdTasks = true;
    const resending = tasks.dispatch(hostId);
    await waitFor('the resend written, its acceptance pending', () => stream.heldWrites === 1, 5_000, 5);
    const cancelled = await tasks.cancel(orgId, task.id, 'admin');
    assert.notEqual(cancelled.sentAt, null, 'sent once before: the agent may hold it');
    assert.equal(stream.cancelsWritten(task.id), 1);
    stream.acceptHeld();
    assert.equal(await resending, 0, 'nothing counted as sent');
    assert.equal(stream.tasksWritten(task.id), 2);
    assert.equal(stream.cancelsWritten(task.id), 1, 'the failed mark does not tell the agent again');
    assert.equal((await stores.tasks.get(task.id))?.attempts, 1);
  });

  test('a task is written to the open stream only after its transaction committed; a transaction that fails on a duplicate unfinished task writes nothing', async () => {
    const created = await stores.transact(async (tx) => {
      const outcome = await tasks.createIn(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now());
      assert.equal(stream.written.length, 0, 'nothing written before commit');
      return outcome;
    });
    assert.equal(stream.tasksWritten(created.task.id), 1, 'written once committed');
    assert.equal((await stores.tasks.get(created.task.id))?.state, 'sent');

    const before = stream.written.length;
    let duplicateId = '';
    await assert.rejects(
      stores.transact(async (tx) => {
        const { task } = await tasks.createIn(tx, orgId, { type: 'software_inventory', hostId, by: 'admin' }, Date.now());
        duplicateId = newId('tsk');
        // A second unfinished inventory task of the host: the partial unique index refuses it, and the transaction rolls back.
        await tx.tasks.insert({ ...task, id: duplicateId });
      }),
      (error: unknown) => constraintViolation(error) === 'unique',
    );
    assert.equal(stream.written.length, before, 'nothing written for a rolled-back transaction');
    assert.equal(await stores.tasks.findUnfinished(hostId, 'software_inventory'), undefined, 'neither task was stored');
    assert.equal(await stores.tasks.get(duplicateId), undefined);
  });

  test('dispatches of one host started while one is in flight write each queued task once', async () => {
    // Recorded without its send, so the test starts every dispatch itself.
    const { task } = await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now()));
    stream.holdTasks = true;
    const first = tasks.dispatch(hostId);
    await waitFor('the first write pending', () => stream.heldWrites === 1, 5_000, 5);
    // Still queued in the database: a dispatch that read it now would write it a second time.
    const racing = [tasks.dispatch(hostId), tasks.dispatch(hostId)];
    stream.holdTasks = false;
    stream.acceptHeld();
    assert.deepEqual(await Promise.all([first, ...racing]), [1, 1, 1], 'the later calls join the one under way');
    assert.equal(stream.tasksWritten(task.id), 1);
    const stored = await stores.tasks.get(task.id);
    assert.deepEqual([stored?.state, stored?.attempts], ['sent', 1]);
  });

  test("an uninstall's success deletes the host in the report's transaction; its stream is closed only by the effects handed back, after the acknowledgement", async () => {
    const { task } = await tasks.create(orgId, { type: 'agent_uninstall', hostId, by: 'admin' });
    assert.equal(task.state, 'sent');
    const { notStored, effects } = await tasks.report(hostId, [{ task_id: task.id, phase: 'TASK_PHASE_SUCCEEDED', message: '', error_code: '', result_json: '' }]);
    assert.equal(notStored, undefined);
    assert.notEqual((await stores.hosts.get(hostId))?.deletedAt, null, 'the deletion committed with the report');
    assert.equal((await stores.tasks.get(task.id))?.state, 'succeeded');
    assert.equal(presence.isStreaming(hostId), true, 'the stream stays until the caller runs the effects');
    assert.equal(effects.length, 1);
    await runEffects(effects, (error) => assert.fail(String(error)));
    assert.equal(presence.isStreaming(hostId), false, 'the deleted host\'s stream is closed');
  });
});
