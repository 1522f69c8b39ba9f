import assert from 'node:assert/strict';
import { after } from 'node:test';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import { ApplianceInstanceStore } from '../appliance/store/appliance-instances.ts';
import { TaskStore } from '../appliance/store/tasks.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const AT = 1_764_000_000_123;
const KEY = Buffer.alloc(32, 7);

conformance('task store: transitions by conditional UPDATE, one unfinished per type, set-based sweeps, failures count', async (backend) => {
  const kysely = backend.kysely;
  await kysely.insertInto('organisations').values({ id: 'org_c', name: 'c', created_at: AT }).execute();
  await kysely.insertInto('hosts').values({
    id: 'hst_c', org_id: 'org_c', public_key: KEY, hostname: 'web-1', machine_fingerprint: 'fp', os: 'linux', arch: 'x64',
    agent_version: '0.1.0', approval: 'active', enrolment_token_id: null, tags: '{}', enrolled_at: AT, last_registered_at: AT,
  }).execute();
  const tasks = new TaskStore(kysely);
  const base = { orgId: 'org_c', hostId: 'hst_c', payload: { a: 1 }, createdAt: AT, createdBy: 'admin', timeoutMs: 60_000, expiresAt: AT + 3_600_000 };
  assert.equal(await tasks.insert({ ...base, id: 'tsk_a', type: 'config_reload' }), true);
  await tasks.insert({ ...base, id: 'tsk_b', type: 'software_inventory', createdAt: AT + 1 });
  await assert.rejects(tasks.insert({ ...base, id: 'tsk_dup', type: 'config_reload' }), (error: unknown) => constraintViolation(error) === 'unique');
  assert.deepEqual((await tasks.queuedForHost('hst_c')).map((task) => task.id), ['tsk_a', 'tsk_b']);
  assert.equal((await tasks.findUnfinished('hst_c', 'config_reload'))?.id, 'tsk_a');
  const sent = await tasks.applyEvent('tsk_a', 'sent', AT + 10);
  assert.deepEqual([sent?.state, sent?.sentAt, sent?.attempts, sent?.deadlineAt], ['sent', AT + 10, 1, AT + 10 + 60_000]);
  assert.equal(await tasks.applyEvent('tsk_a', 'sent', AT + 11), undefined, 'sent only from queued');
  assert.equal(await tasks.applyEvent('tsk_a', 'cancel', AT + 12, {}, ['queued']), undefined, 'narrowed to queued');
  assert.deepEqual(await tasks.requeueSent('hst_c'), ['tsk_a']);
  await tasks.applyEvent('tsk_a', 'sent', AT + 20);
  await tasks.applyEvent('tsk_a', 'started', AT + 21);
  const done = await tasks.applyEvent('tsk_a', 'failed', AT + 22, { result: { x: [1] }, output: 'out', errorCode: 'ERR_TASK_FAILED' });
  assert.deepEqual([done?.state, done?.result, done?.output, done?.errorCode, done?.finishedAt, done?.deadlineAt, done?.attempts], ['failed', { x: [1] }, 'out', 'ERR_TASK_FAILED', AT + 22, null, 2]);
  assert.deepEqual(await tasks.failuresSince('config_reload', new Map([['hst_c', 0]])), new Map([['hst_c', { count: 1, lastAt: AT + 22 }]]));
  assert.deepEqual(await tasks.failuresSince('config_reload', new Map([['hst_c', AT + 22], ['hst_unknown', 0]])), new Map(), 'only failures after each host\'s own time');
  assert.deepEqual(await tasks.failuresSince('software_inventory', new Map([['hst_c', 0]])), new Map());
  assert.deepEqual(await tasks.expireDue(AT + 3_600_000 - 1, 'ERR_TASK_EXPIRED'), []);
  assert.deepEqual(await tasks.expireDue(AT + 3_600_000, 'ERR_TASK_EXPIRED'), ['tsk_b']);
  await tasks.insert({ ...base, id: 'tsk_c', type: 'config_reload', createdAt: AT + 30 });
  await tasks.applyEvent('tsk_c', 'sent', AT + 30);
  assert.deepEqual(await tasks.timeoutDue(AT + 30 + 60_000, 'ERR_TASK_TIMEOUT'), ['tsk_c']);
  await tasks.insert({ ...base, id: 'tsk_d', type: 'config_reload', createdAt: AT + 40 });
  assert.deepEqual(await tasks.cancelForHost('hst_c', AT + 41, 'ERR_AGENT_NOT_ACTIVE'), ['tsk_d']);
  assert.deepEqual((await tasks.list('org_c', { limit: 10 })).map((task) => task.id), ['tsk_d', 'tsk_c', 'tsk_b', 'tsk_a']);
  assert.deepEqual((await tasks.list('org_c', { hostId: 'hst_c', state: 'timed_out', limit: 1 })).map((task) => task.id), ['tsk_c']);
  assert.deepEqual((await tasks.get('tsk_b'))?.payload, { a: 1 });
  // The overview's failures: failed (tsk_a at +22 ms), timed out (tsk_c at +60.03 s) and expired unsent
  // (tsk_b at +1 h), newest finish first, from `since` on; the cancelled tsk_d is no failure.
  assert.deepEqual((await tasks.failedSince('org_c', AT, 10)).map((task) => task.id), ['tsk_b', 'tsk_c', 'tsk_a']);
  assert.deepEqual((await tasks.failedSince('org_c', AT + 23, 10)).map((task) => task.id), ['tsk_b', 'tsk_c'], 'finished before since: left out');
  assert.deepEqual((await tasks.failedSince('org_c', AT, 1)).map((task) => task.id), ['tsk_b']);
  assert.deepEqual(await tasks.failedSince('org_other', AT, 10), [], 'another organisation\'s');
  // The host's state is checked by the insert itself: a host revoked or deleted meanwhile gets no task.
  await kysely.updateTable('hosts').set({ approval: 'revoked' }).where('id', '=', 'hst_c').execute();
  assert.equal(await tasks.insert({ ...base, id: 'tsk_r', type: 'agent_uninstall' }), false);
  await kysely.updateTable('hosts').set({ approval: 'active', deleted_at: AT }).where('id', '=', 'hst_c').execute();
  assert.equal(await tasks.insert({ ...base, id: 'tsk_r', type: 'agent_uninstall' }), false);
  assert.equal(await tasks.insert({ ...base, id: 'tsk_r', type: 'agent_uninstall', orgId: 'org_other' }), false, "another organisation's host");
  await kysely.updateTable('hosts').set({ deleted_at: null }).where('id', '=', 'hst_c').execute();
  assert.equal(await tasks.get('tsk_r'), undefined);
  // An agent's report of a task still queued here (its sent mark was lost) starts its send time and deadline.
  await tasks.insert({ ...base, id: 'tsk_e', type: 'config_reload', createdAt: AT + 50 });
  assert.deepEqual(await tasks.hostsWithQueued(), ['hst_c']);
  const held = await tasks.applyEvent('tsk_e', 'acknowledged', AT + 51);
  assert.deepEqual([held?.state, held?.sentAt, held?.acknowledgedAt, held?.deadlineAt], ['acknowledged', AT + 51, AT + 51, AT + 51 + 60_000]);
  const running = await tasks.applyEvent('tsk_e', 'started', AT + 52);
  assert.deepEqual([running?.sentAt, running?.deadlineAt], [AT + 51, AT + 51 + 60_000], 'a later report keeps them');
  assert.deepEqual(await tasks.hostsWithQueued(), []);
  assert.deepEqual((await tasks.cancelledSince({ hostId: 'hst_c' }, AT + 41, 10)).map((task) => task.id), ['tsk_d']);
  assert.deepEqual(await tasks.cancelledSince({ hostId: 'hst_c' }, AT + 42, 10), []);
  // Through the stream rows: the cancels of the hosts an instance holds, none of another's.
  const instances = new ApplianceInstanceStore(kysely, backend.name);
  await instances.renewLease('ins_here', AT, 15_000);
  assert.deepEqual(await tasks.cancelledSince({ streamingTo: 'ins_here' }, AT + 41, 10), [], 'no stream of hst_c here yet');
  await instances.claimStream('hst_c', 'ins_here', 'stream-1', undefined, AT);
  assert.deepEqual((await tasks.cancelledSince({ streamingTo: 'ins_here' }, AT + 41, 10)).map((task) => task.id), ['tsk_d']);
  assert.deepEqual(await tasks.cancelledSince({ streamingTo: 'ins_elsewhere' }, AT + 41, 10), []);
});
