import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { newId } from '../appliance/lib/ids.ts';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import { openStores, type Approval, type SqliteStores } from '../appliance/store/index.ts';
import pino from 'pino';
import { PresenceRegistry } from '../appliance/presence/registry.ts';
import {
  applyTaskEvent, expireDue, nextTaskState, TaskService,
  TASK_EVENTS, TASK_OUTPUT_LIMIT_BYTES, TASK_STATES, TASK_TYPE_LIMITS, type NewTaskRequest, type TaskEvent, type TaskState,
} from '../appliance/tasks/index.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-tasks-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const isCode = (code: string) => (error: unknown) => error instanceof CtOpsError && error.code === code;

describe('the task transition table', () => {
  // Written out by hand, not derived from TRANSITIONS: every state x event, '-' where the event does not apply.
  const expected: Record<TaskState, Partial<Record<TaskEvent, TaskState>>> = {
    // The agent's reports too: one proves it holds a task whose sent mark was lost (decision 112).
    queued: { sent: 'sent', acknowledged: 'acknowledged', started: 'running', succeeded: 'succeeded', failed: 'failed', cancel: 'cancelled', expire: 'timed_out' },
    sent: { acknowledged: 'acknowledged', started: 'running', cancel: 'cancelled', timeout: 'timed_out', stream_lost: 'queued' },
    acknowledged: { started: 'running', succeeded: 'succeeded', failed: 'failed', cancel: 'cancelled', timeout: 'timed_out' },
    running: { succeeded: 'succeeded', failed: 'failed', cancel: 'cancelled', timeout: 'timed_out' },
    succeeded: {},
    failed: {},
    cancelled: {},
    timed_out: {},
  };

  test('every state and event leads exactly where the lifecycle says, and nowhere else', () => {
    for (const state of TASK_STATES) {
      for (const event of TASK_EVENTS) {
        assert.equal(nextTaskState(state, event), expected[state][event], `${state} + ${event}`);
      }
    }
  });

  test('finished states are terminal: no event moves a succeeded, failed, cancelled or timed-out task', () => {
    for (const state of ['succeeded', 'failed', 'cancelled', 'timed_out'] as const) {
      assert.deepEqual(TASK_EVENTS.filter((event) => nextTaskState(state, event) !== undefined), [], state);
    }
  });

  test('acknowledged and running tasks stay put when the stream is lost; only a sent task is queued again', () => {
    assert.deepEqual(TASK_STATES.filter((state) => nextTaskState(state, 'stream_lost') !== undefined), ['sent']);
  });
});

describe('the task store and lifecycle', () => {
  let stores: SqliteStores;
  let tasks: TaskService;
  let orgId: string;
  let hostId: string;
  let counter = 0;

  const addHost = async (approval: Approval): Promise<string> => {
    const id = newId('hst');
    await stores.hosts.insert({
      id, orgId, publicKey: randomBytes(32), hostname: id, machineFingerprint: id, os: 'linux', arch: 'amd64', agentVersion: '0.1.0',
      approval, enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: Date.now(),
    });
    return id;
  };
  const createTask = (org: string, request: NewTaskRequest, now: number) => tasks.create(org, request, now);
  /** The task's row now. */
  const stored = async (id: string) => (await stores.tasks.get(id))!;
  const moved = async (id: string, event: TaskEvent, now: number, outcome = {}) => (await applyTaskEvent(stores, id, event, now, outcome)) !== undefined;

  beforeEach(async () => {
    stores?.close();
    stores = openStores(join(dir, `tasks-${counter++}.db`));
    // No agent streams here: created tasks stay queued.
    const log = pino({ level: 'silent' });
    tasks = new TaskService({ stores, presence: new PresenceRegistry(() => undefined), log, cluster: await singleInstance(stores, log) });
    orgId = (await stores.organisations.ensureDefault(Date.now())).id;
    hostId = await addHost('active');
  });
  after(() => stores.close());

  test('a rescan queues one task with its type limits; asking again returns the same task', async () => {
    const now = 1_000_000;
    const first = await createTask(orgId, { type: 'software_inventory', hostId, by: 'admin' }, now);
    assert.equal(first.created, true);
    assert.match(first.task.id, /^tsk_[0-9a-f]{20}$/);
    assert.equal(first.task.state, 'queued');
    assert.equal(first.task.expiresAt, now + TASK_TYPE_LIMITS.software_inventory.queuedExpiryMs);
    assert.equal(first.task.timeoutMs, 10 * 60_000);
    const again = await createTask(orgId, { type: 'software_inventory', hostId, by: 'other-admin' }, now + 1);
    assert.deepEqual(again, { task: first.task, created: false });
    const uninstall = await createTask(orgId, { type: 'agent_uninstall', hostId, by: 'admin' }, now);
    assert.equal(uninstall.created, true, 'another type is another task');
    assert.equal(uninstall.task.expiresAt, now + 7 * 24 * 3600_000);
    await tasks.cancel(orgId, first.task.id, 'admin');
    const afterCancel = await createTask(orgId, { type: 'software_inventory', hostId, by: 'admin' }, now + 3);
    assert.equal(afterCancel.created, true, 'a finished task does not block a new one');
    assert.notEqual(afterCancel.task.id, first.task.id);
  });

  test('a task is refused for an unknown host or one that is not active', async () => {
    await assert.rejects(createTask(orgId, { type: 'config_reload', hostId: newId('hst'), by: 'a' }, 1), isCode('ERR_HOST_NOT_FOUND'));
    for (const approval of ['pending', 'rejected', 'revoked'] as const) {
      await assert.rejects(createTask(orgId, { type: 'config_reload', hostId: await addHost(approval), by: 'a' }, 1), isCode('ERR_HOST_STATE_CONFLICT'), approval);
    }
    await assert.rejects(createTask('org_other', { type: 'config_reload', hostId, by: 'a' }, 1), isCode('ERR_HOST_NOT_FOUND'), 'another organisation');
  });

  test('of two racing cancels exactly one applies, and the second is told the task already finished', async () => {
    const { task } = await createTask(orgId, { type: 'config_reload', hostId, by: 'a' }, 1);
    assert.equal(await moved(task.id, 'sent', 2), true);
    assert.notEqual(await stores.tasks.applyEvent(task.id, 'cancel', 3), undefined);
    assert.equal(await stores.tasks.applyEvent(task.id, 'cancel', 4), undefined);
    assert.equal((await stored(task.id)).finishedAt, 3, 'the losing cancel wrote nothing');
    await assert.rejects(tasks.cancel(orgId, task.id, 'a'), isCode('ERR_TASK_STATE_CONFLICT'));
    await assert.rejects(tasks.cancel(orgId, newId('tsk'), 'a'), isCode('ERR_TASK_NOT_FOUND'));
  });

  test('an uninstall can be cancelled while queued, not once sent to its agent', async () => {
    const queued = (await createTask(orgId, { type: 'agent_uninstall', hostId, by: 'a' }, 1)).task;
    assert.equal((await tasks.cancel(orgId, queued.id, 'a')).state, 'cancelled');
    const sent = (await createTask(orgId, { type: 'agent_uninstall', hostId, by: 'a' }, 2)).task;
    assert.equal(await moved(sent.id, 'sent', 3), true);
    await assert.rejects(tasks.cancel(orgId, sent.id, 'a'), (error: unknown) => isCode('ERR_TASK_STATE_CONFLICT')(error) && /cannot be cancelled \(it is sent\)/.test((error as Error).message));
    assert.equal((await stored(sent.id)).state, 'sent');
  });

  test('a sent task whose stream is lost is queued again and listed as queued; an acknowledged one is not', async () => {
    const scan = (await createTask(orgId, { type: 'software_inventory', hostId, by: 'a' }, 1)).task;
    const reload = (await createTask(orgId, { type: 'config_reload', hostId, by: 'a' }, 2)).task;
    const queuedIds = async () => (await stores.tasks.queuedForHost(hostId)).map((task) => task.id);
    assert.deepEqual(await queuedIds(), [scan.id, reload.id], 'oldest first');
    assert.equal(await moved(scan.id, 'sent', 10), true);
    assert.equal(await moved(reload.id, 'sent', 10), true);
    assert.equal(await moved(reload.id, 'acknowledged', 11), true);
    assert.deepEqual(await queuedIds(), []);
    const sent = await stored(scan.id);
    assert.equal(sent.deadlineAt, 10 + TASK_TYPE_LIMITS.software_inventory.timeoutMs);
    assert.equal(sent.attempts, 1);

    assert.deepEqual(await stores.tasks.requeueSent(hostId), [scan.id]);
    const requeued = await stored(scan.id);
    assert.equal(requeued.state, 'queued');
    assert.equal(requeued.deadlineAt, null, 'a queued task has no deadline, only its expiry');
    assert.equal((await stored(reload.id)).state, 'acknowledged');
    assert.deepEqual(await queuedIds(), [scan.id]);

    assert.equal(await moved(scan.id, 'sent', 20), true, 'sent again on reconnect');
    assert.equal((await stored(scan.id)).attempts, 2);
    assert.equal((await stored(scan.id)).deadlineAt, 20 + TASK_TYPE_LIMITS.software_inventory.timeoutMs);
  });

  test('a finished task never returns: no event, lost stream or sweep moves it again', async () => {
    const { task } = await createTask(orgId, { type: 'software_inventory', hostId, by: 'a' }, 1);
    for (const event of ['sent', 'started'] as const) assert.equal(await moved(task.id, event, 2), true, event);
    assert.equal(await moved(task.id, 'succeeded', 3, { result: { packages: 12 }, output: 'done' }), true);
    const finished = await stored(task.id);
    assert.deepEqual([finished.state, finished.result, finished.output, finished.finishedAt, finished.deadlineAt], ['succeeded', { packages: 12 }, 'done', 3, null]);
    for (const event of TASK_EVENTS) assert.equal(await moved(task.id, event, 4), false, event);
    assert.deepEqual(await stores.tasks.requeueSent(hostId), []);
    assert.deepEqual(await expireDue(stores, Number.MAX_SAFE_INTEGER), { timedOut: [], expired: [] });
    assert.deepEqual(await stored(task.id), finished);
  });

  test('the sweeper times out overdue sent tasks and expires overdue queued ones, each with its code, and nothing early', async () => {
    const sentAt = 100;
    const running = (await createTask(orgId, { type: 'config_reload', hostId, by: 'a' }, 0)).task;
    await moved(running.id, 'sent', sentAt);
    await moved(running.id, 'started', sentAt + 1);
    const offlineHost = await addHost('active');
    const waiting = (await createTask(orgId, { type: 'agent_uninstall', hostId: offlineHost, by: 'a' }, 0)).task;
    const deadline = sentAt + TASK_TYPE_LIMITS.config_reload.timeoutMs;

    assert.deepEqual(await expireDue(stores, deadline - 1), { timedOut: [], expired: [] });
    assert.deepEqual(await expireDue(stores, deadline), { timedOut: [running.id], expired: [] });
    const timedOut = await stored(running.id);
    assert.deepEqual([timedOut.state, timedOut.errorCode, timedOut.finishedAt], ['timed_out', 'ERR_TASK_TIMEOUT', deadline]);

    assert.deepEqual(await expireDue(stores, waiting.expiresAt - 1), { timedOut: [], expired: [] });
    assert.deepEqual(await expireDue(stores, waiting.expiresAt), { timedOut: [], expired: [waiting.id] });
    const expired = await stored(waiting.id);
    assert.deepEqual([expired.state, expired.errorCode], ['timed_out', 'ERR_TASK_EXPIRED']);
    assert.equal(await moved(running.id, 'succeeded', deadline + 1), false, 'a late result does not revive a timed-out task');
  });

  test('task output is bounded without splitting a character', async () => {
    const { task } = await createTask(orgId, { type: 'config_reload', hostId, by: 'a' }, 1);
    await moved(task.id, 'sent', 2);
    await moved(task.id, 'acknowledged', 3);
    await moved(task.id, 'failed', 4, { output: `x${'é'.repeat(TASK_OUTPUT_LIMIT_BYTES)}`, errorCode: 'ERR_CONFIG_INVALID' });
    const output = (await stored(task.id)).output!;
    assert.ok(Buffer.byteLength(output) <= TASK_OUTPUT_LIMIT_BYTES);
    assert.ok(Buffer.byteLength(output) >= TASK_OUTPUT_LIMIT_BYTES - 1);
    assert.ok(!output.includes('\uFFFD'));
    assert.equal((await stored(task.id)).errorCode, 'ERR_CONFIG_INVALID');
  });

  test('a second unfinished task of a type is refused by the database itself, as a unique violation', async () => {
    const { task } = await createTask(orgId, { type: 'config_reload', hostId, by: 'a' }, 1);
    const duplicate = { ...task, id: newId('tsk') };
    await assert.rejects(stores.tasks.insert(duplicate), (error: unknown) => constraintViolation(error) === 'unique');
  });

  test('the dispatcher and sweeper queries read the partial indexes, not the whole table', () => {
    const plan = (sql: string): string => stores.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row) => (row as { detail: string }).detail).join('; ');
    assert.match(plan("SELECT * FROM tasks WHERE host_id = 'h' AND state = 'queued' ORDER BY created_at"), /tasks_host_state \(host_id=\? AND state=\?\)/);
    assert.match(plan("UPDATE tasks SET state = 'timed_out' WHERE state IN ('sent', 'acknowledged', 'running') AND deadline_at <= 5"), /tasks_deadline/);
    assert.match(plan("UPDATE tasks SET state = 'timed_out' WHERE state = 'queued' AND expires_at <= 5"), /tasks_queued_expiry/);
  });
});
