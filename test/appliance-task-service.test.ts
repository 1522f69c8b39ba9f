import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import pino from 'pino';
import { CtOpsError } from '../common/errors.ts';
import type { HeartbeatResponse } from '../common/proto.ts';
import type { ClusterService } from '../appliance/cluster/service.ts';
import { HostService } from '../appliance/hosts/service.ts';
import { newId } from '../appliance/lib/ids.ts';
import { PresenceRegistry, type LiveSession } from '../appliance/presence/registry.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import { openStores, type Stores } from '../appliance/store/index.ts';
import { runEffects } from '../appliance/store/unit-of-work.ts';
import { expireDue, recordTask, TaskService } from '../appliance/tasks/index.ts';
import { waitFor } from './helpers/wait.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-task-service-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

/**
 * An agent's stream as the presence registry sees it, recording every message written to it. While
 * `holdTasks` (`holdCancels`) is set, a task's (cancel's) write is not yet accepted (a full buffer
 * waiting to drain) until `acceptHeld()`: the window in which a send is in flight; a peer that stops
 * reading never accepts it.
 */
class RecordingStream implements LiveSession {
  readonly written: HeartbeatResponse[] = [];
  holdTasks = false;
  holdCancels = false;
  readonly #held: Array<() => void> = [];

  constructor(readonly agentId: string) {}

  send(message: HeartbeatResponse): Promise<boolean> {
    this.written.push(message);
    const held = (this.holdTasks && message.task !== undefined) || (this.holdCancels && message.cancel !== undefined);
    if (!held) return Promise.resolve(true);
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

  /** What was written, in order: `task:<id>` and `cancel:<id>`. */
  order(): string[] {
    return this.written.map((message) => (message.task ? `task:${message.task.task_id}` : message.cancel ? `cancel:${message.cancel.task_id}` : Object.keys(message).join()));
  }
}

/** 'settled', or 'pending' when `promise` has not settled within `ms`. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  return Promise.race([promise.then(() => 'settled' as const), pending]).finally(() => clearTimeout(timer));
}

/** How long the service waits for a write here (ms): short, so the tests of a peer that stops reading run fast. */
const DELIVERY_WAIT_MS = 1_000;

describe('TaskService: effects after commit, sends in flight', () => {
  let stores: Stores;
  let presence: PresenceRegistry;
  let tasks: TaskService;
  let stream: RecordingStream;
  let cluster: ClusterService;
  let orgId: string;
  let hostId: string;
  let counter = 0;

  beforeEach(async () => {
    presence?.closeAll(new CtOpsError('ERR_INTERNAL', 'test over'));
    stores?.close();
    stores = openStores(join(dir, `service-${counter++}.db`));
    cluster = await singleInstance(stores, log);
    const presenceService = new PresenceService({ stores, log, cluster, requeueTasks: () => undefined });
    presence = presenceService.registry;
    // Wired as serve.ts wires them: what a finished task does to its host is HostService's.
    tasks = new TaskService({ stores, presence, log, cluster, onFinished: (tx, task) => hosts.taskFinished(tx, task), deliveryWaitMs: DELIVERY_WAIT_MS });
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
    assert.equal((await creating).task.state, 'queued', 'create does not wait for the send');
    stream.acceptHeld();
    await tasks.dispatch(hostId);
    const stored = await stores.tasks.get(taskId);
    assert.equal(stored?.state, 'cancelled', 'the accepted write does not mark a cancelled task sent');
    assert.equal(stored?.attempts, 0);
    assert.equal(stream.tasksWritten(taskId), 1);
    assert.equal(stream.cancelsWritten(taskId), 1);
  });

  test('a task cancelled after its send was accepted is marked sent first, and the cancel alone tells the agent, once', async () => {
    const created = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await tasks.dispatch(hostId);
    const task = await stores.tasks.get(created.task.id);
    assert.deepEqual([task?.state, task?.attempts], ['sent', 1]);
    await tasks.cancel(orgId, created.task.id, 'admin');
    await waitFor('the cancel written', () => stream.cancelsWritten(created.task.id) === 1, 5_000, 5);
    assert.equal((await stores.tasks.get(created.task.id))?.state, 'cancelled');
    assert.equal(stream.cancelsWritten(created.task.id), 1);
  });

  test('a task queued again after a lost stream and cancelled while its resend is in flight: the cancel tells the agent, and the accepted resend tells it again after the task', async () => {
    const { task } = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'admin' });
    await tasks.dispatch(hostId);
    assert.deepEqual(await stores.tasks.requeueSent(hostId), [task.id]);
    stream.holdTasks = true;
    const resending = tasks.dispatch(hostId);
    await waitFor('the resend written, its acceptance pending', () => stream.heldWrites === 1, 5_000, 5);
    const cancelled = await tasks.cancel(orgId, task.id, 'admin');
    assert.notEqual(cancelled.sentAt, null, 'sent once before: the agent may hold it');
    await waitFor('the cancel written', () => stream.cancelsWritten(task.id) === 1, 5_000, 5);
    stream.acceptHeld();
    assert.equal(await resending, 0, 'nothing counted as sent');
    assert.equal(stream.tasksWritten(task.id), 2);
    // The agent may have read the cancel before the task: a cancel after the task stops it whatever the order (decision 112).
    await waitFor('the agent told again, after the task', () => stream.cancelsWritten(task.id) === 2, 5_000, 5);
    assert.equal(stream.order().at(-1), `cancel:${task.id}`);
    assert.equal((await stores.tasks.get(task.id))?.attempts, 1);
  });

  test('a task is written to the open stream only after its transaction committed; a transaction that fails on a duplicate unfinished task writes nothing', async () => {
    const created = await stores.transact(async (tx) => {
      const outcome = await tasks.createIn(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now());
      assert.equal(stream.written.length, 0, 'nothing written before commit');
      return outcome;
    });
    // By createIn's own after-commit send: nothing here dispatches.
    await waitFor('written once committed', () => stream.tasksWritten(created.task.id) === 1, 5_000, 5);
    await waitFor('marked sent once accepted', async () => (await stores.tasks.get(created.task.id))?.state === 'sent', 5_000, 5);
    assert.equal(stream.tasksWritten(created.task.id), 1, 'written once committed');

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
    // Long enough for a send queued by the rolled-back body to have been written, had it run.
    await new Promise((resolve) => setTimeout(resolve, 200));
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
    await tasks.dispatch(hostId);
    assert.equal((await stores.tasks.get(task.id))?.state, 'sent');
    const { notStored, effects } = await tasks.report(hostId, [{ task_id: task.id, phase: 'TASK_PHASE_SUCCEEDED', message: '', error_code: '', result_json: '' }]);
    assert.equal(notStored, undefined);
    assert.notEqual((await stores.hosts.get(hostId))?.deletedAt, null, 'the deletion committed with the report');
    assert.equal((await stores.tasks.get(task.id))?.state, 'succeeded');
    assert.equal(presence.isStreaming(hostId), true, 'the stream stays until the caller runs the effects');
    assert.equal(effects.length, 1);
    await runEffects(effects, (error) => assert.fail(String(error)));
    assert.equal(presence.isStreaming(hostId), false, 'the deleted host\'s stream is closed');
  });

  test('a cancel told while a stale dispatch waits on an earlier write is never followed by the task: the dispatch reads each task again before its write', async () => {
    const reload = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    const uninstall = await tasks.create(orgId, { type: 'agent_uninstall', hostId, by: 'admin' });
    await tasks.dispatch(hostId);
    assert.deepEqual((await stores.tasks.requeueSent(hostId)).sort(), [reload.task.id, uninstall.task.id].sort());
    stream.written.length = 0;
    stream.holdTasks = true;
    const resending = tasks.dispatch(hostId);
    await waitFor('the first resend pending', () => stream.heldWrites === 1, 5_000, 5);
    const cancelled = await tasks.cancel(orgId, uninstall.task.id, 'admin');
    assert.equal(cancelled.state, 'cancelled');
    await waitFor('the cancel written', () => stream.cancelsWritten(uninstall.task.id) === 1, 5_000, 5);
    stream.holdTasks = false;
    stream.acceptHeld();
    assert.equal(await resending, 1);
    assert.deepEqual(stream.order(), [`task:${reload.task.id}`, `cancel:${uninstall.task.id}`], 'the cancelled uninstall is not written after its cancel');
    assert.equal((await stores.tasks.get(uninstall.task.id))?.state, 'cancelled');
  });

  test('a task that expires while its resend is in flight: the agent is told to stop it once the write is accepted', async () => {
    const { task } = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await tasks.dispatch(hostId);
    await stores.tasks.requeueSent(hostId);
    stream.holdTasks = true;
    const resending = tasks.dispatch(hostId);
    await waitFor('the resend pending', () => stream.heldWrites === 1, 5_000, 5);
    assert.deepEqual((await expireDue(stores, task.expiresAt)).expired, [task.id]);
    stream.acceptHeld();
    assert.equal(await resending, 0);
    await waitFor('the agent told to stop the expired task', () => stream.cancelsWritten(task.id) === 1, 5_000, 5);
    assert.equal(stream.order().at(-1), `cancel:${task.id}`);
    assert.equal((await stores.tasks.get(task.id))?.state, 'timed_out');
  });

  test('a peer that never accepts a write holds nothing: create, cancel and the next stream settle at once, and the next stream gets the task', async () => {
    stream.holdTasks = true;
    stream.holdCancels = true;
    const created = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    assert.equal(created.task.state, 'queued');
    await waitFor('the write pending', () => stream.heldWrites === 1, 5_000, 5);
    const inventory = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'sweeper' });
    assert.equal(inventory.created, true);
    // The host's stream is replaced while the write hangs; the earlier dispatch is left behind.
    presence.detach(stream, 'heartbeat-timeout');
    await tasks.disconnected([hostId]);
    const next = new RecordingStream(hostId);
    presence.attach(next, 30);
    assert.equal(await settlesWithin(tasks.connected(hostId), DELIVERY_WAIT_MS / 2), 'settled', "connected() does not join the earlier stream's dispatch");
    assert.deepEqual(next.order().sort(), [`task:${created.task.id}`, `task:${inventory.task.id}`].sort());
    assert.deepEqual([(await stores.tasks.get(created.task.id))?.state, (await stores.tasks.get(inventory.task.id))?.state], ['sent', 'sent']);
    next.holdCancels = true;
    assert.equal(await settlesWithin(tasks.cancel(orgId, created.task.id, 'admin'), DELIVERY_WAIT_MS / 2), 'settled', 'cancel does not wait for its tell');
    await waitFor('the cancel written', () => next.cancelsWritten(created.task.id) === 1, 5_000, 5);
    // The earlier stream accepts at last: its session is over, so nothing is marked or written again.
    stream.acceptHeld();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal((await stores.tasks.get(inventory.task.id))?.attempts, 1);
    assert.equal(next.tasksWritten(created.task.id), 1);
  });

  test('a write not accepted within the delivery wait ends the dispatch; accepted later, the task is marked sent then', async () => {
    stream.holdTasks = true;
    const { task } = await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now()));
    const started = Date.now();
    assert.equal(await tasks.dispatch(hostId), 0);
    const waited = Date.now() - started;
    assert.ok(waited >= DELIVERY_WAIT_MS - 50 && waited < DELIVERY_WAIT_MS + 2_000, `the dispatch waited ${waited} ms`);
    assert.equal((await stores.tasks.get(task.id))?.state, 'queued');
    stream.acceptHeld();
    await waitFor('the late acceptance marked', async () => (await stores.tasks.get(task.id))?.state === 'sent', 5_000, 5);
  });

  test("a write of an ended session accepted after the next stream's requeue is not marked sent: the task goes out on the new stream", async () => {
    stream.holdTasks = true;
    const { task } = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await waitFor('the write pending', () => stream.heldWrites === 1, 5_000, 5);
    const next = new RecordingStream(hostId);
    next.holdTasks = true;
    presence.attach(next, 30);
    const connecting = tasks.connected(hostId);
    await waitFor('the new stream has the task', () => next.heldWrites === 1, 5_000, 5);
    stream.acceptHeld();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal((await stores.tasks.get(task.id))?.state, 'queued', 'the old stream\'s acceptance marks nothing');
    next.acceptHeld();
    await connecting;
    const stored = await stores.tasks.get(task.id);
    assert.deepEqual([stored?.state, stored?.attempts], ['sent', 1]);
  });

  test('reports for a task the appliance holds as queued move it: the agent has it', async () => {
    const { task } = await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now()));
    const acknowledged = await tasks.report(hostId, [{ task_id: task.id, phase: 'TASK_PHASE_ACKNOWLEDGED', message: '', error_code: '', result_json: '' }]);
    assert.equal(acknowledged.notStored, undefined);
    const held = await stores.tasks.get(task.id);
    assert.equal(held?.state, 'acknowledged');
    assert.notEqual(held?.sentAt, null, 'its send time is the report');
    assert.equal(held?.deadlineAt, held!.sentAt! + held!.timeoutMs, 'and its deadline runs from it');
    const other = (await stores.transact((tx) => recordTask(tx, orgId, { type: 'software_inventory', hostId, by: 'admin' }, Date.now()))).task;
    await tasks.report(hostId, [{ task_id: other.id, phase: 'TASK_PHASE_FAILED', message: 'no dpkg', error_code: 'ERR_INVENTORY_COLLECTOR_FAILED', result_json: '' }]);
    const failed = await stores.tasks.get(other.id);
    assert.deepEqual([failed?.state, failed?.errorCode], ['failed', 'ERR_INVENTORY_COLLECTOR_FAILED']);
  });

  test('the task sweeper sends the queued tasks of a streaming host that no dispatch sent', async () => {
    const { task } = await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now()));
    await tasks.sweep();
    await waitFor('sent by the sweeper pass', async () => (await stores.tasks.get(task.id))?.state === 'sent', 5_000, 5);
    assert.equal(stream.tasksWritten(task.id), 1);
  });

  test('a cancel told while the host was offline reaches its next stream', async () => {
    const { task } = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'admin' });
    await tasks.dispatch(hostId);
    await tasks.report(hostId, [{ task_id: task.id, phase: 'TASK_PHASE_RUNNING', message: '', error_code: '', result_json: '' }]);
    presence.detach(stream, 'heartbeat-timeout');
    await tasks.disconnected([hostId]);
    await tasks.cancel(orgId, task.id, 'admin');
    const next = new RecordingStream(hostId);
    presence.attach(next, 30);
    await tasks.connected(hostId);
    await waitFor('the cancel told on the new stream', () => next.cancelsWritten(task.id) === 1, 5_000, 5);
    assert.equal(next.tasksWritten(task.id), 0);
  });

  test("a cancel another instance decided, whose signal never came, is told at the resync that looks from before it; one cancelled earlier is not told again", async () => {
    // Another instance on the same database: the host does not stream there, and its signal is lost (on SQLite a publish reaches nobody).
    let otherClock = Date.now() - 120_000;
    const elsewhere = new TaskService({ stores, presence: new PresenceRegistry(() => undefined), log, cluster, now: () => otherClock });
    // The host's stream row names this instance, as the heartbeat handler's claim writes it before the first ack.
    await stores.instances.claimStream(hostId, cluster.instanceId, 'stream-here', undefined, Date.now());
    const earlier = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'admin' });
    const later = await tasks.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await waitFor('both tasks sent here', async () => (await stores.tasks.get(later.task.id))?.state === 'sent' && (await stores.tasks.get(earlier.task.id))?.state === 'sent', 5_000, 5);
    await elsewhere.cancel(orgId, earlier.task.id, 'admin');
    otherClock += 60_000;
    const missedSince = otherClock - 1_000;
    await elsewhere.cancel(orgId, later.task.id, 'admin');
    assert.deepEqual([stream.cancelsWritten(earlier.task.id), stream.cancelsWritten(later.task.id)], [0, 0], 'nothing reached the agent streaming here');

    await tasks.retellCancelledSince(missedSince);
    await waitFor('the missed cancel told', () => stream.cancelsWritten(later.task.id) === 1, 5_000, 5);
    assert.equal(stream.cancelsWritten(earlier.task.id), 0, 'cancelled before the window: an earlier resync or the next stream told it');
    // A second look at the same window tells the agent again, which ignores a cancel it already has.
    await tasks.retellCancelledSince(missedSince);
    await waitFor('told again', () => stream.cancelsWritten(later.task.id) === 2, 5_000, 5);
  });

  test('a host flagged as used by two machines while a dispatch runs gets no further task: the host is read again before each write', async () => {
    const first = (await stores.transact((tx) => recordTask(tx, orgId, { type: 'config_reload', hostId, by: 'admin' }, Date.now()))).task;
    const second = (await stores.transact((tx) => recordTask(tx, orgId, { type: 'software_inventory', hostId, by: 'admin' }, Date.now() + 1))).task;
    stream.holdTasks = true;
    const dispatching = tasks.dispatch(hostId);
    await waitFor('the first write pending', () => stream.heldWrites === 1, 5_000, 5);
    assert.equal(await stores.hosts.flagIdentityConflict(hostId), true);
    stream.acceptHeld();
    assert.equal(await dispatching, 1);
    assert.deepEqual(stream.order(), [`task:${first.id}`]);
    assert.equal((await stores.tasks.get(second.id))?.state, 'queued');
  });

  test("the agent's \"failed, cancelled\" for a task cancelled here is a repeat, logged after commit; a late success of a timed-out task is a warning", async () => {
    const lines: Array<{ msg: string; level: number }> = [];
    const recording = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string; level: number }) });
    const logged = new TaskService({ stores, presence, log: recording, cluster, deliveryWaitMs: DELIVERY_WAIT_MS });
    const { task } = await logged.create(orgId, { type: 'config_reload', hostId, by: 'admin' });
    await logged.dispatch(hostId);
    await logged.cancel(orgId, task.id, 'admin');
    const report = (phase: 'TASK_PHASE_FAILED' | 'TASK_PHASE_SUCCEEDED', errorCode: string) => logged.report(hostId, [{ task_id: task.id, phase, message: '', error_code: errorCode, result_json: '' }]);
    await report('TASK_PHASE_FAILED', 'ERR_TASK_CANCELLED');
    assert.deepEqual(lines.filter((line) => line.msg.startsWith('task report') || line.msg.startsWith('task outcome')).map((line) => line.msg), ['task report repeated']);
    await report('TASK_PHASE_SUCCEEDED', '');
    assert.equal(lines.at(-1)?.msg, 'task outcome arrived after the task finished');
    assert.equal((await stores.tasks.get(task.id))?.state, 'cancelled');
  });

  test('an uninstall whose write is in flight cannot be cancelled: its agent could start it before the cancel arrived', async () => {
    stream.holdTasks = true;
    const { task } = await tasks.create(orgId, { type: 'agent_uninstall', hostId, by: 'admin' });
    await waitFor('the write pending', () => stream.heldWrites === 1, 5_000, 5);
    await assert.rejects(tasks.cancel(orgId, task.id, 'admin'), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_TASK_STATE_CONFLICT' && /being sent/.test(error.message));
    assert.equal((await stores.tasks.get(task.id))?.state, 'queued', 'the refused cancel rolled back');
    stream.acceptHeld();
    await tasks.dispatch(hostId);
    assert.equal((await stores.tasks.get(task.id))?.state, 'sent');
    assert.equal(stream.cancelsWritten(task.id), 0);
  });
});
