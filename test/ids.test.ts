import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { parseCli } from '../agent/cli/args.ts';
import { createLogger } from '../agent/log/logger.ts';
import { uninstallHandler } from '../agent/tasks/uninstall.ts';
import { parseChunk } from '../appliance/inventory/chunk.ts';
import { newId as applianceNewId } from '../appliance/lib/ids.ts';
import { openStores } from '../appliance/store/index.ts';
import { checkTaskUpdate } from '../appliance/tasks/updates.ts';
import { TOKEN_ID } from '../bundler/lib/validate.ts';
import { packageRoot } from '../common/package-root.ts';
import { ACCEPTED_SCAN_ID, ID_PREFIXES, derivedId, idPattern, idPatternSource, newId, newTimeOrderedId } from '../common/ids.ts';

/** Task ids that are not what the appliance makes: other alphabets, lengths, prefixes, shell and path text. */
const NOT_TASK_IDS = ['tsk_', 'tsk_0123456789ABCDEF0123', 'tsk_0123456789abcdef012', 'tsk_0123456789abcdef01234', 'tsk_0123456789abcdef-123', 'tsk_0123456789abcdef_123', 'task_0123456789abcdef0123', 'tsk_$(id)', 'tsk_../../etc/passwd', 'not a task'];

test('every generated id of every kind matches its one format, and ids derived from a digest too', () => {
  for (const prefix of Object.values(ID_PREFIXES)) {
    const pattern = idPattern(prefix);
    const seen = new Set<string>();
    for (let index = 0; index < 200; index += 1) {
      const id = newId(prefix);
      assert.match(id, pattern, id);
      assert.ok(new RegExp(idPatternSource(prefix)).test(id), 'the JSON-schema form says the same');
      seen.add(id);
    }
    assert.equal(seen.size, 200, `${prefix}: random`);
    assert.ok(!pattern.test(`${prefix}_${'0'.repeat(19)}`) && !pattern.test(`x${prefix}_${'0'.repeat(20)}`), `${prefix}: anchored, exact length`);
  }
  assert.match(applianceNewId('hst'), idPattern('hst'), 'the appliance generates through the same definition');
  assert.match(derivedId('bnd', 'ab'.repeat(32)), idPattern('bnd'));
  assert.throws(() => derivedId('bnd', 'AB'.repeat(32)), TypeError);
  assert.ok(TOKEN_ID.test(newId('etk')), 'the bundler takes the token ids the appliance makes');
  for (let index = 0; index < 50; index += 1) assert.match(newId('scn'), ACCEPTED_SCAN_ID, 'the appliance takes the scan ids the agent makes');
});

test('host ids made in a later millisecond sort after earlier ones, in the same format as every id (decision 156)', () => {
  const start = Date.UTC(2026, 11, 2);
  const ids = Array.from({ length: 1000 }, (_, index) => newTimeOrderedId('hst', start + index * 7));
  for (const id of ids) assert.match(id, idPattern('hst'), id);
  assert.deepEqual([...ids].sort(), ids, 'string order is enrolment order');
  assert.equal(newTimeOrderedId('hst', start).slice(0, 16), `hst_${start.toString(16).padStart(12, '0')}`, 'the time leads');
  const sameMillisecond = new Set(Array.from({ length: 1000 }, () => newTimeOrderedId('hst', start)));
  assert.equal(sameMillisecond.size, 1000, 'random within one millisecond');
  assert.match(newTimeOrderedId('hst', 2 ** 48 - 1), idPattern('hst'), 'twelve digits hold the time until the year 10,889');
  for (const bad of [1.5, -1, 2 ** 48]) assert.throws(() => newTimeOrderedId('hst', bad), TypeError, String(bad));
});

test('a task id that is not of the generated format is refused where a task report enters the appliance', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-ids-'));
  const stores = openStores(join(dir, 'ids.db'));
  t.after(() => {
    stores.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const taskId of NOT_TASK_IDS) {
    await assert.rejects(async () => checkTaskUpdate(stores, 'hst_00000000000000000000', { task_id: taskId, phase: 'TASK_PHASE_ACKNOWLEDGED', error_code: '', message: '', result_json: '' }), { code: 'ERR_INVALID_ARGUMENT' }, taskId);
  }
  await assert.rejects(async () => checkTaskUpdate(stores, 'hst_00000000000000000000', { task_id: newId('tsk'), phase: 'TASK_PHASE_ACKNOWLEDGED', error_code: '', message: '', result_json: '' }), { code: 'ERR_TASK_NOT_FOUND' }, 'a well-formed id passes the format check');
});

test('an inventory chunk names a task only by a generated task id (or none), and its scan by an id the agent generates', () => {
  const chunk = (taskId: string, scanId = newId('scn')) => ({ agent_id: 'hst_00000000000000000000', scan_id: scanId, task_id: taskId, chunk_index: 0, packages: [], is_last: false, skipped: [] }) as never;
  assert.equal(parseChunk(chunk(''), 'hst_00000000000000000000').taskId, '');
  const taskId = newId('tsk');
  assert.equal(parseChunk(chunk(taskId), 'hst_00000000000000000000').taskId, taskId);
  for (const bad of NOT_TASK_IDS) assert.throws(() => parseChunk(chunk(bad), 'hst_00000000000000000000'), { code: 'ERR_INVALID_ARGUMENT' }, bad);
  assert.throws(() => parseChunk(chunk('', 'scan$(id)'), 'hst_00000000000000000000'), { code: 'ERR_INVALID_ARGUMENT' });
});

test('the agent hands only a generated task id to the uninstaller, and report-task takes only one', async () => {
  const log = createLogger('silent', new Writable({ write: (_chunk, _encoding, done) => done() }));
  const handler = uninstallHandler({ log, env: {} });
  for (const taskId of NOT_TASK_IDS) {
    await assert.rejects(handler({ task_id: taskId, timeout_ms: 1000, kind: 'agent_uninstall', agent_uninstall: {} } as never, new AbortController().signal), { code: 'ERR_INVALID_ARGUMENT' }, taskId);
    const output = { out: '', err: '' };
    const parsed = parseCli(['report-task', '--task-id', taskId, '--outcome', 'succeeded'], { out: (text) => (output.out += text), err: (text) => (output.err += text) });
    assert.deepEqual(parsed, { kind: 'exit', exitCode: 64 }, taskId);
    assert.match(output.err, /is not a task id/);
  }
  const good = newId('tsk');
  const parsed = parseCli(['report-task', '--task-id', good, '--outcome', 'succeeded'], { out: () => undefined, err: () => undefined });
  assert.equal(parsed.kind, 'report-task');
});

test("the installers' wider task-id checks (sh helper, uninstall.sh, uninstall.ps1) pass every generated task id and refuse what is not one", () => {
  const helper = readFileSync(join(packageRoot(), 'installers/ct-ops-agent-helper.sh'), 'utf8');
  const isTaskId = /^is_task_id\(\) \{\n[\s\S]*?\n\}\n/m.exec(helper)?.[0];
  assert.ok(isTaskId, 'is_task_id is defined in the helper');
  const uninstall = readFileSync(join(packageRoot(), 'installers/uninstall.sh'), 'utf8');
  const reportTaskChecks = uninstall.split('\n').filter((line) => /^\s*case \$\{?REPORT_TASK/.test(line)).join('\n');
  assert.equal(reportTaskChecks.split('\n').length, 2, 'uninstall.sh checks --report-task in two case lines');
  const ps1Pattern = /\[ValidatePattern\('([^']+)'\)\]/.exec(readFileSync(join(packageRoot(), 'installers/uninstall.ps1'), 'utf8'))?.[1];
  assert.ok(ps1Pattern);
  const generated = Array.from({ length: 200 }, () => newId('tsk'));
  const refused = ['tsk_', 'tsk_a/b', 'tsk_a b', `tsk_${'a'.repeat(65)}`, 'hst_0123', '-tsk_1'];
  const script = `${isTaskId}die() { exit 2; }\nfor id in "$@"; do\n  if is_task_id "$id"; then helper=1; else helper=0; fi\n  if (REPORT_TASK=$id\n${reportTaskChecks}\n  ); then un=1; else un=0; fi\n  echo "$helper$un"\ndone\n`;
  const result = spawnSync('sh', ['-c', script, 'sh', ...generated, ...refused], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  const verdicts = result.stdout.trim().split('\n');
  assert.deepEqual(verdicts.slice(0, generated.length), generated.map(() => '11'), 'both sh checks pass every generated id');
  assert.equal(verdicts[generated.length], '00', 'tsk_ alone is refused');
  assert.equal(verdicts[generated.length + 1], '00', 'a path is refused');
  assert.equal(verdicts[generated.length + 2], '00', 'a space is refused');
  assert.equal(verdicts[generated.length + 3]![0], '0', 'the helper refuses more than 64 characters after tsk_');
  assert.ok(generated.every((id) => new RegExp(ps1Pattern).test(id)), 'uninstall.ps1 passes every generated id');
  assert.ok(!['tsk_a/b', 'tsk_', `tsk_${'a'.repeat(65)}`].some((id) => new RegExp(ps1Pattern).test(id)));
});
