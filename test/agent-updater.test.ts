/**
 * The agent's self-update record across the swap (agent/update/updater.ts AgentUpdater), on a real
 * data directory and spool folder: what the new agent and the restored old one make of a staged
 * update and of the root helper's answer (installers/ct-ops-agent-helper.sh writes it), and the
 * status each reports until the appliance acknowledges it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { createLogger } from '../agent/log/logger.ts';
import { AgentUpdater, HELPER_ANSWER_TIMEOUT_MS, type UpdateRecord } from '../agent/update/updater.ts';
import { waitFor } from './helpers/wait.ts';

describe('the agent update record across the swap', () => {
  const roots: string[] = [];
  const updaters: AgentUpdater[] = [];
  afterEach(() => {
    for (const updater of updaters.splice(0)) updater.stop();
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });

  /** An updater of an agent running `running`, its data directory holding `record`; `now` is the clock it reads. */
  function updaterWith(running: string, record: UpdateRecord, now: () => number = Date.now, options: { request?: boolean; startInstaller?: () => Promise<void> } = {}): { updater: AgentUpdater; spool: string; dataDir: string; changes: number[] } {
    const root = mkdtempSync(join(tmpdir(), 'ct-ops-updater-'));
    roots.push(root);
    const dataDir = join(root, 'data');
    const spool = join(root, 'spool');
    mkdirSync(join(dataDir, 'update'), { recursive: true });
    mkdirSync(spool);
    writeFileSync(join(dataDir, 'update', 'state.json'), JSON.stringify(record));
    if (options.request) writeFileSync(join(spool, 'request'), 'update ct-ops-agent-linux-x64\n');
    const changes: number[] = [];
    const updater = new AgentUpdater({
      dataDir,
      running: { version: running, executableName: 'ct-ops-agent-linux-x64' },
      releaseKey: undefined,
      spoolDir: spool,
      source: () => assert.fail('nothing is downloaded here'),
      changed: () => changes.push(now()),
      log: createLogger('silent'),
      now,
      ...(options.startInstaller ? { startInstaller: options.startInstaller } : {}),
    });
    updaters.push(updater);
    return { updater, spool, dataDir, changes };
  }

  const staged = (version: string): UpdateRecord => ({ version, phase: 'staged', errorCode: '', message: '', acknowledged: true, attempts: 0 });

  it('the new agent finds its own version staged: installed, it tells the helper it streams, and the helper\'s ok makes it healthy', async () => {
    const { updater, spool, changes } = updaterWith('2.0.0', staged('2.0.0'));
    assert.deepEqual(updater.status(), { status: { version: '2.0.0', phase: 'UPDATE_PHASE_INSTALLED', error_code: '', message: '' }, pending: true });
    // agent/cli/run.ts builds the updater before the agent its `changed` flushes: the constructor must not call it.
    assert.deepEqual(changes, [], 'nothing reported from the constructor; the first heartbeat carries it');
    await updater.streaming();
    assert.equal(readFileSync(join(spool, 'streaming'), 'utf8'), '2.0.0\n');
    writeFileSync(join(spool, 'result'), 'update ok 2.0.0\n');
    await waitFor('healthy', () => updater.status()?.status.phase === 'UPDATE_PHASE_HEALTHY' || undefined, 10_000);
    const reported = updater.status()!;
    assert.equal(reported.pending, true);
    updater.delivered(reported.status);
    assert.equal(updater.status()!.pending, false, 'acknowledged: carried only on a stream\'s first heartbeat from now on');
  });

  it('the restored old agent reads the helper\'s rollback and reports it with the helper\'s reason', async () => {
    const { updater, spool, dataDir } = updaterWith('1.0.0', staged('2.0.0'));
    assert.equal(updater.status()!.status.phase, 'UPDATE_PHASE_STAGED', 'the old agent does not take itself for the new one');
    await updater.streaming();
    assert.throws(() => readFileSync(join(spool, 'streaming')), /ENOENT/, 'only the new version says it streams');
    writeFileSync(join(spool, 'result'), 'update rolled-back new-agent-never-streamed\n');
    await waitFor('rolled back', () => updater.status()?.status.phase === 'UPDATE_PHASE_ROLLED_BACK' || undefined, 10_000);
    assert.deepEqual(updater.status()!.status, { version: '2.0.0', phase: 'UPDATE_PHASE_ROLLED_BACK', error_code: 'ERR_UPDATE_ROLLED_BACK', message: 'new-agent-never-streamed' });
    assert.equal(JSON.parse(readFileSync(join(dataDir, 'update', 'state.json'), 'utf8')).phase, 'rolled_back', 'kept across restarts');
    // A rolled-back version is not taken again.
    updater.offered({ version: '2.0.0', file_name: 'ct-ops-agent-linux-x64', size: 10, sha256: 'a'.repeat(64), download_path: '/x/', https_port: 1 });
    assert.equal(updater.status()!.status.phase, 'UPDATE_PHASE_ROLLED_BACK');
  });

  it('a staged update no helper answers is given up after HELPER_ANSWER_TIMEOUT_MS, not waited on for ever', async () => {
    let clock = Date.now();
    const { updater } = updaterWith('1.0.0', staged('2.0.0'), () => clock);
    clock += HELPER_ANSWER_TIMEOUT_MS + 1;
    await waitFor('given up', () => updater.status()?.status.phase === 'UPDATE_PHASE_FAILED' || undefined, 10_000);
    assert.equal(updater.status()!.status.error_code, 'ERR_UPDATE_UNAVAILABLE');
  });

  it('Windows: a staged request no watcher took (the agent restarted before it started one) is handed to a new watcher; one that cannot start withdraws the request', async () => {
    let launches = 0;
    const { updater } = updaterWith('1.0.0', staged('2.0.0'), Date.now, { request: true, startInstaller: async () => void (launches += 1) });
    await waitFor('the watcher started again', () => launches === 1 || undefined, 5_000);
    assert.equal(updater.status()!.status.phase, 'UPDATE_PHASE_STAGED', 'still waiting for its answer');

    const { updater: stuck, spool } = updaterWith('1.0.0', staged('2.0.0'), Date.now, { request: true, startInstaller: () => Promise.reject(new Error('spawn EACCES')) });
    await waitFor('given up', () => stuck.status()?.status.phase === 'UPDATE_PHASE_FAILED' || undefined, 5_000);
    assert.equal(stuck.status()!.status.error_code, 'ERR_UPDATE_UNAVAILABLE');
    assert.match(stuck.status()!.status.message ?? '', /spawn EACCES/);
    assert.throws(() => readFileSync(join(spool, 'request')), /ENOENT/, 'no request is left for a watcher that will never come');

    let none = 0;
    updaterWith('1.0.0', staged('2.0.0'), Date.now, { startInstaller: async () => void (none += 1) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(none, 0, 'no request in the spool: a watcher has it already');
  });

  it('a download cut by a restart is resumed by the next offer of that version, not given up; another version waits', () => {
    const { updater } = updaterWith('1.0.0', { ...staged('2.0.0'), phase: 'downloading' });
    assert.equal(updater.status()!.status.phase, 'UPDATE_PHASE_DOWNLOADING');
    // No release key: the resumed attempt is refused at once, which shows it was taken.
    updater.offered({ version: '2.0.0', file_name: 'ct-ops-agent-linux-x64', size: 10, sha256: 'a'.repeat(64), download_path: '/x/', https_port: 1 });
    assert.equal(updater.status()!.status.error_code, 'ERR_UPDATE_NO_RELEASE_KEY');
  });
});
