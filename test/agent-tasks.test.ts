import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { checkAgentText } from '../common/agent-text.ts';
import { GrpcCode, type CtOpsError } from '../common/errors.ts';
import type { SoftwareInventoryChunk, Task__Output } from '../common/proto.ts';
import { TaskUpdateQueue } from '../agent/heartbeat/task-updates.ts';
import { InventoryError, type InventoryOptions, type SoftwarePackage } from '../agent/inventory/index.ts';
import { softwarePackage } from '../agent/inventory/package.ts';
import { idPattern } from '../common/ids.ts';
import { createLogger } from '../agent/log/logger.ts';
import { LEDGER_CAPACITY, TaskLedger } from '../agent/tasks/ledger.ts';
import { TaskRunner, type TaskHandler } from '../agent/tasks/runner.ts';
import { softwareInventoryHandler } from '../agent/tasks/software-inventory.ts';
import { rpcFailure } from '../agent/transport/failure.ts';
import type { IngestTransport, SubmitResult } from '../agent/transport/types.ts';

const silent = createLogger('silent', new Writable({ write: (_chunk, _encoding, done) => done() }));

function inventoryTask(overrides: Partial<Task__Output> = {}): Task__Output {
  return { task_id: 'tsk_89270a50341bb8e83734', timeout_ms: 600_000, kind: 'software_inventory', software_inventory: { snap: true, flatpak: false, windows_store: false }, ...overrides };
}

function pkgs(count: number): SoftwarePackage[] {
  return Array.from({ length: count }, (_, index) => ({ name: `p${index}`, version: '1', architecture: 'amd64', publisher: '', source: 'dpkg', install_date_unix: 0 }));
}

/** A transport that records the chunks of each submission and answers with `answer`. */
function recordingTransport(answer: (chunks: readonly SoftwareInventoryChunk[]) => SubmitResult): { transport: IngestTransport; submissions: SoftwareInventoryChunk[][] } {
  const submissions: SoftwareInventoryChunk[][] = [];
  const transport: IngestTransport = {
    getRegisterChallenge: () => assert.fail('no Register expected'),
    register: () => assert.fail('no Register expected'),
    openHeartbeat: () => assert.fail('no stream expected'),
    submitInventory: async (jwt, chunks) => {
      assert.equal(jwt, 'jwt-1', 'the current JWT');
      submissions.push([...chunks]);
      return answer(chunks);
    },
    close: () => undefined,
  };
  return { transport, submissions };
}

const accepted = (chunks: readonly SoftwareInventoryChunk[]): SubmitResult => {
  const received = chunks.reduce((sum, chunk) => sum + (chunk.packages?.length ?? 0), 0);
  return { ok: true, response: { scan_id: chunks[0]!.scan_id!, packages_received: received, added: received, removed: 0, unchanged: 0, skipped: [] } };
};
const credential = () => ({ agentId: 'hst_1', jwt: 'jwt-1' });

test('an inventory task submits one scan in chunks of 500 tied to the task, with the sources the task asks for and the lines its parsers skipped', async () => {
  const { transport, submissions } = recordingTransport(accepted);
  const unreadable = [{ reason: 'unparsable' as const, count: 2, example: 'garbage line' }];
  let asked: InventoryOptions | undefined;
  const handler = softwareInventoryHandler({ transport, credential, collect: async (options) => ((asked = options), { packages: pkgs(1201), sources: ['dpkg', 'snap'], duplicatesRemoved: 2, skipped: unreadable }) });
  const outcome = await handler(inventoryTask(), new AbortController().signal);
  assert.deepEqual(asked?.optionalSources, { snap: true, flatpak: false, windowsStore: false });
  assert.equal(asked?.timeoutMs, 120_000, 'at most the default collection limit, within half the task timeout');
  const [chunks] = submissions;
  assert.deepEqual(chunks!.map((chunk) => [chunk.chunk_index, chunk.packages!.length, chunk.is_last]), [[0, 500, false], [1, 500, false], [2, 201, true]]);
  assert.equal(new Set(chunks!.map((chunk) => chunk.scan_id)).size, 1, 'one scan id');
  assert.match(chunks![0]!.scan_id!, idPattern('scn'));
  assert.ok(chunks!.every((chunk) => chunk.task_id === 'tsk_89270a50341bb8e83734' && chunk.agent_id === 'hst_1'));
  assert.deepEqual(chunks!.map((chunk) => chunk.skipped), [undefined, undefined, unreadable], 'the host\'s counts travel on the last chunk, for the scan record');
  assert.equal(outcome.kind, 'done');
  assert.deepEqual(outcome.kind === 'done' && outcome.result, { scan_id: chunks![0]!.scan_id, packages: 1201, chunks: 3, sources: ['dpkg', 'snap'], duplicates_removed: 2, added: 1201, removed: 0, unchanged: 0, skipped_on_host: unreadable, skipped_by_appliance: [] });
  assert.match(outcome.kind === 'done' ? outcome.message : '', /1201 packages from dpkg, snap .*; skipped on the host: unparsable 2$/);
});

test('an empty inventory fails the task and is not sent (the appliance would refuse it); a short task timeout shortens the collection', async () => {
  const { transport, submissions } = recordingTransport(accepted);
  let asked: InventoryOptions | undefined;
  const handler = softwareInventoryHandler({ transport, credential, collect: async (options) => ((asked = options), { packages: [], sources: ['apk'], duplicatesRemoved: 0, skipped: [] }) });
  await assert.rejects(handler(inventoryTask({ timeout_ms: 30_000 }), new AbortController().signal), (error: unknown) => (error as CtOpsError).code === 'ERR_INVENTORY_COLLECTOR_FAILED' && /apk listed no installed packages/.test((error as Error).message));
  assert.equal(submissions.length, 0);
  assert.equal(asked?.timeoutMs, 15_000);
  // Every record skipped on the host: the error says why, not that nothing is installed.
  const allSkipped = softwareInventoryHandler({ transport, credential, collect: async () => ({ packages: [], sources: ['dpkg'], duplicatesRemoved: 0, skipped: [{ reason: 'name_too_long', count: 3, example: 'x' }] }) });
  await assert.rejects(allSkipped(inventoryTask(), new AbortController().signal), (error: unknown) => /dpkg listed no package that can be stored \(skipped: name_too_long 3\)/.test((error as Error).message));
  assert.equal(submissions.length, 0);
});

test('a collector failure fails the task and sends nothing; a refused submission fails it with the appliance code', async () => {
  const { transport, submissions } = recordingTransport(() => ({ ok: false, failure: rpcFailure({ code: GrpcCode.PERMISSION_DENIED, details: 'ERR_AGENT_NOT_ACTIVE: the host is revoked' }) }));
  const broken = softwareInventoryHandler({ transport, credential, collect: async () => { throw new InventoryError('ERR_INVENTORY_TIMEOUT', 'dpkg-query did not finish'); } });
  await assert.rejects(broken(inventoryTask(), new AbortController().signal), (error: unknown) => (error as CtOpsError).code === 'ERR_INVENTORY_TIMEOUT');
  assert.equal(submissions.length, 0, 'never an empty list standing in for a failure');
  const refused = softwareInventoryHandler({ transport, credential, collect: async () => ({ packages: pkgs(3), sources: ['dpkg'], duplicatesRemoved: 0, skipped: [] }) });
  await assert.rejects(refused(inventoryTask(), new AbortController().signal), (error: unknown) => (error as CtOpsError).code === 'ERR_AGENT_NOT_ACTIVE');
});

function runnerIn(dir: string, handlers: Record<string, TaskHandler>): { runner: TaskRunner; updates: TaskUpdateQueue; flushes: number[] } {
  const updates = new TaskUpdateQueue();
  const flushes: number[] = [];
  const runner = new TaskRunner({ ledger: TaskLedger.open(dir, silent), updates, handlers, flush: () => flushes.push(updates.size), log: silent, now: () => 1 });
  return { runner, updates, flushes };
}

const phases = (updates: TaskUpdateQueue): string[] => updates.takeFor(1).map((update) => `${update.task_id}:${String(update.phase).replace('TASK_PHASE_', '')}${update.error_code ? `:${update.error_code}` : ''}`);

test('cancelling a running task aborts its handler and reports it failed with ERR_TASK_CANCELLED', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const waitForAbort: TaskHandler = (_task, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
  const { runner, updates } = runnerIn(dir, { software_inventory: waitForAbort });
  runner.receive(inventoryTask({ task_id: 'tsk_fc66f021c67d064c1490' }));
  await new Promise((resolve) => setImmediate(resolve));
  runner.cancel('tsk_fc66f021c67d064c1490');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(phases(updates), ['tsk_fc66f021c67d064c1490:ACKNOWLEDGED', 'tsk_fc66f021c67d064c1490:RUNNING', 'tsk_fc66f021c67d064c1490:FAILED:ERR_TASK_CANCELLED']);
});

test('a cancel that arrives before its task is remembered across a restart: the task delivered after it is not run, and is reported failed with ERR_TASK_CANCELLED', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let runs = 0;
  const uninstall: TaskHandler = async () => ((runs += 1), { kind: 'handed-off', message: 'uninstaller started' });
  const first = runnerIn(dir, { agent_uninstall: uninstall });
  first.runner.cancel('tsk_0b1e0b1e0b1e0b1e0b1e');
  first.runner.resume();
  assert.deepEqual(phases(first.updates), [], 'nothing to report: the appliance holds the task as cancelled');
  const restarted = runnerIn(dir, { agent_uninstall: uninstall });
  restarted.runner.resume();
  restarted.runner.receive({ task_id: 'tsk_0b1e0b1e0b1e0b1e0b1e', timeout_ms: 300_000, kind: 'agent_uninstall', agent_uninstall: {} });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(runs, 0, 'the uninstaller never ran');
  assert.deepEqual(phases(restarted.updates), ['tsk_0b1e0b1e0b1e0b1e0b1e:FAILED:ERR_TASK_CANCELLED']);
  assert.equal(restarted.flushes.length, 1, 'answered at once');
  // A cancel of a task the agent finished changes nothing.
  restarted.runner.cancel('tsk_0b1e0b1e0b1e0b1e0b1e');
  assert.equal(TaskLedger.open(dir, silent).get('tsk_0b1e0b1e0b1e0b1e0b1e')?.message, 'cancelled before it reached this agent');
});

test('a handed-off task stays running across a restart (its own process reports), and the ledger keeps at most its capacity of delivered entries', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = runnerIn(dir, { agent_uninstall: async () => ({ kind: 'handed-off', message: 'uninstaller started' }) });
  first.runner.receive({ task_id: 'tsk_b49f425a7e1f9cff3856', timeout_ms: 300_000, kind: 'agent_uninstall', agent_uninstall: {} });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(phases(first.updates), ['tsk_b49f425a7e1f9cff3856:ACKNOWLEDGED', 'tsk_b49f425a7e1f9cff3856:RUNNING', 'tsk_b49f425a7e1f9cff3856:RUNNING']);
  const restarted = runnerIn(dir, {});
  restarted.runner.resume();
  assert.deepEqual(phases(restarted.updates), [], 'not reported interrupted: the uninstaller reports');

  const ledger = TaskLedger.open(dir, silent);
  for (let index = 0; index < LEDGER_CAPACITY + 20; index += 1) ledger.put({ id: `tsk_${index}`, type: 'config_reload', phase: 'succeeded', receivedAt: index, delivered: true });
  const reopened = TaskLedger.open(dir, silent);
  assert.equal(reopened.entries().length, LEDGER_CAPACITY);
  assert.equal(reopened.get('tsk_b49f425a7e1f9cff3856')?.phase, 'handed-off', 'an entry whose outcome is not delivered is never evicted');
  assert.equal(reopened.get('tsk_0'), undefined, 'the oldest delivered entries go first');
});

test('a handler that throws something other than a CtOpsError fails the task with ERR_TASK_FAILED', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { runner, updates } = runnerIn(dir, { config_reload: async () => { throw new TypeError('boom'); } });
  runner.receive({ task_id: 'tsk_81f52337ebb4cb1669bb', timeout_ms: 1000, kind: 'config_reload', config_reload: {} });
  await new Promise((resolve) => setImmediate(resolve));
  const reported = updates.takeFor(1).at(-1);
  assert.deepEqual([reported?.phase, reported?.error_code, reported?.message], ['TASK_PHASE_FAILED', 'ERR_TASK_FAILED', 'boom']);
});

test('a task the ledger cannot record is not run: it is reported failed with ERR_DATA_DIR_UNUSABLE', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let ran = 0;
  // A data directory that is gone: every ledger write fails (root ignores permission bits, so not chmod).
  const { runner, updates } = runnerIn(join(dir, 'missing'), { config_reload: async () => ((ran += 1), { kind: 'done', message: 'ran' }) });
  runner.receive({ task_id: 'tsk_ac6169bfa2d3a19883af', timeout_ms: 1000, kind: 'config_reload', config_reload: {} });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(ran, 0);
  assert.deepEqual(phases(updates), ['tsk_ac6169bfa2d3a19883af:FAILED:ERR_DATA_DIR_UNUSABLE']);
});

test('task output and package fields holding control or bidi characters are sent with them replaced, so the appliance accepts the report', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A collector's error text in colour, with a title-setting OSC and a line break of its own.
  const { runner, updates } = runnerIn(dir, { config_reload: async () => { throw new Error('\x1b[31mE: dpkg\x1b[0m\x1b]0;x\x07 broken\nsecond line\u202e'); } });
  runner.receive({ task_id: 'tsk_d6838c357444c5ad1699', timeout_ms: 1000, kind: 'config_reload', config_reload: {} });
  await new Promise((resolve) => setImmediate(resolve));
  const reported = updates.takeFor(1).at(-1)!;
  assert.equal(reported.message, '\uFFFD[31mE: dpkg\uFFFD[0m\uFFFD]0;x\uFFFD broken\nsecond line\uFFFD');
  assert.doesNotThrow(() => checkAgentText(reported.message, 'TaskUpdate.message', { max: 65_536, multiline: true }, { field: 'message' }));

  const hostile = softwarePackage({ name: 'evil\u202egpj.exe', version: '1.0\u009b2J', source: 'dpkg', publisher: 'Acme\x1b]0;PWNED\x07', architecture: 'amd64' });
  assert.deepEqual([hostile.name, hostile.version, hostile.publisher, hostile.architecture], ['evil\uFFFDgpj.exe', '1.0\uFFFD2J', 'Acme\uFFFD]0;PWNED\uFFFD', 'amd64']);
  for (const field of [hostile.name, hostile.version, hostile.publisher]) assert.doesNotThrow(() => checkAgentText(field, 'SoftwarePackage', { max: 1024 }, { field: 'name' }));
});

test('a task whose id is not of the generated form is ignored: not run, not recorded, not reported', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let ran = 0;
  const { runner, updates } = runnerIn(dir, { config_reload: async () => ((ran += 1), { kind: 'done', message: 'reloaded' }) });
  for (const id of ['tsk_short', 'tsk_a/../b', `tsk_${'A'.repeat(20)}`, '', 'hst_0123456789abcdef0123']) {
    runner.receive({ task_id: id, timeout_ms: 1000, kind: 'config_reload', config_reload: {} });
  }
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(ran, 0);
  assert.deepEqual(phases(updates), []);
  assert.deepEqual(TaskLedger.open(dir, silent).entries(), []);
});
