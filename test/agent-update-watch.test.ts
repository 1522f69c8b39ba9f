/**
 * The Windows update watcher's logic (agent/update/update-watch.ts runUpdateWatch), run here with
 * real files and real processes: a signed release staged in a spool is verified again, swapped in
 * for the service's executable with the previous one kept, the service started, and gated as the
 * root helper gates it (the new agent's version in <spool>/streaming in time, then the same process
 * for the settle period); a failure restores the previous executable and answers with the helper's
 * reason. What stands in for Windows: the service is a ServiceControl over a child process that
 * runs the installed "executable" (a script), restarted after a non-zero exit as WinSW's onfailure
 * restart does, so a crashing agent shows as a new process id as `sc queryex` would show it. The
 * Service Control Manager through sc.exe, the detached start outside WinSW's process tree and
 * MoveFileEx on NTFS are not executed here; the real Windows executable runs the watcher under Wine
 * in agent-executables.test.ts (a refusal: no service to control there).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, beforeEach, describe, it } from 'node:test';
import { signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { createLogger } from '../agent/log/logger.ts';
import { runUpdateWatch, type ServiceControl } from '../agent/update/update-watch.ts';
import { writeReleaseFiles } from '../scripts/agents/release-files.mjs';
import { tempDir } from './helpers/bundler-fixtures.ts';
import { waitFor } from './helpers/wait.ts';

const RELEASE_FILE = 'ct-ops-agent-windows-x64.exe';
const releaseKey = signingKeyFromSeed(randomBytes(32));
const log = createLogger('silent');

/** An "agent" the stand-in service runs: logs its start; `streams` writes its version into the spool's streaming marker after 200 ms; `exitAfterMs` exits 1. */
function agentScript(version: string, behaviour: { streams: boolean; exitAfterMs?: number }): string {
  return [
    `// ct-ops-agent ${version}`,
    "const { writeFileSync, appendFileSync } = require('node:fs');",
    "const spool = process.argv[2];",
    `appendFileSync(spool + '/../starts', '${version} ' + process.pid + '\\n');`,
    behaviour.streams ? `setTimeout(() => writeFileSync(spool + '/streaming', '${version}\\n'), 200);` : '',
    behaviour.exitAfterMs === undefined ? 'setInterval(() => undefined, 1000);' : `setTimeout(() => process.exit(1), ${behaviour.exitAfterMs});`,
  ].join('\n');
}

/** The service: runs `<installDir>/ct-ops-agent.exe` with node; after a non-zero exit starts it again 100 ms later (WinSW's onfailure restart). */
class StandInService implements ServiceControl {
  #child: ChildProcess | undefined;
  #wanted = false;
  starts = 0;
  /** Stops that fail before they do anything, as `sc stop` does while the service manager is busy with the service. */
  failingStops = 0;

  constructor(readonly executable: string, readonly spool: string) {}

  async start(): Promise<void> {
    // As `sc start` of a running service (1056): refused.
    if ((await this.runningPid()) !== undefined) throw new Error('An instance of the service is already running.');
    this.#wanted = true;
    this.starts += 1;
    this.#spawn();
  }

  async stop(): Promise<void> {
    if (this.failingStops > 0) {
      this.failingStops -= 1;
      throw new Error('the service did not stop in time');
    }
    this.#wanted = false;
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  async runningPid(): Promise<number | undefined> {
    const child = this.#child;
    return child !== undefined && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  #spawn(): void {
    const child = spawn(process.execPath, [this.executable, this.spool], { stdio: 'ignore' });
    this.#child = child;
    child.once('exit', (code) => {
      if (code !== 0 && code !== null && this.#wanted && this.#child === child) setTimeout(() => this.#wanted && this.#child === child && this.#spawn(), 100);
    });
  }
}

describe('the Windows update watcher (runUpdateWatch)', () => {
  const root = tempDir('ct-ops-update-watch-');
  let dir: string;
  let spool: string;
  let installDir: string;
  let service: StandInService;
  after(async () => {
    await service?.stop();
  });
  beforeEach(async () => {
    await service?.stop();
    dir = join(root, randomBytes(4).toString('hex'));
    spool = join(dir, 'requests');
    installDir = join(dir, 'program');
    mkdirSync(spool, { recursive: true });
    mkdirSync(installDir);
    // The running agent, and the copy of it the agent keeps before it starts the watcher.
    writeFileSync(join(installDir, 'ct-ops-agent.exe'), agentScript('1.0.0', { streams: false }));
    writeFileSync(join(installDir, 'ct-ops-agent.previous.exe'), agentScript('1.0.0', { streams: false }));
    service = new StandInService(join(installDir, 'ct-ops-agent.exe'), spool);
    await service.start();
    service.starts = 0;
  });

  /** Stages `script` as release `version` in the spool, signed by `key`, with the request line, as the agent's updater does. */
  async function stage(version: string, script: string, options: { key?: SigningKey; name?: string; listedScript?: string } = {}): Promise<void> {
    const media = join(dir, `media-${version}-${randomBytes(2).toString('hex')}`);
    mkdirSync(media);
    writeFileSync(join(media, RELEASE_FILE), options.listedScript ?? script);
    await writeReleaseFiles({ dir: media, files: [RELEASE_FILE], key: options.key ?? releaseKey, version, keyLabel: 'test release key' });
    for (const name of ['SHA256SUMS', 'SHA256SUMS.minisig']) writeFileSync(join(spool, name), readFileSync(join(media, name)));
    writeFileSync(join(spool, RELEASE_FILE), script);
    writeFileSync(join(spool, 'request'), `update ${options.name ?? RELEASE_FILE}\n`);
  }

  const watch = (settleMs = 1_500) =>
    runUpdateWatch({
      spool,
      installDir,
      agentExecutable: 'ct-ops-agent.exe',
      previousExecutable: 'ct-ops-agent.previous.exe',
      releaseFileName: RELEASE_FILE,
      installedVersion: '1.0.0',
      releaseKey,
      service,
      streamWithinMs: 3_000,
      settleMs,
      log,
      pollMs: 100,
    });

  /** Resolves once the service started `version` (its start line). */
  const waitForStart = (version: string): Promise<true> =>
    waitFor(`${version} started`, () => (existsSync(join(dir, 'starts')) && readFileSync(join(dir, 'starts'), 'utf8').includes(`${version} `)) || undefined, 10_000, 20);

  const installed = (): string => readFileSync(join(installDir, 'ct-ops-agent.exe'), 'utf8').split('\n')[0]!;
  const answer = (): string => readFileSync(join(spool, 'result'), 'utf8');

  it('swaps in a good release, starts it, waits for its stream and its settle, keeps the previous executable', async () => {
    await stage('2.0.0', agentScript('2.0.0', { streams: true }));
    assert.equal(await watch(), 'update ok 2.0.0');
    assert.equal(answer(), 'update ok 2.0.0\n');
    assert.equal(installed(), '// ct-ops-agent 2.0.0');
    assert.equal(readFileSync(join(installDir, 'ct-ops-agent.previous.exe'), 'utf8').split('\n')[0], '// ct-ops-agent 1.0.0', 'kept for one more rollback');
    assert.ok(await service.runningPid(), 'the new agent runs');
    for (const name of ['request', 'SHA256SUMS', 'SHA256SUMS.minisig', RELEASE_FILE]) assert.equal(existsSync(join(spool, name)), false, `${name} consumed`);
  });

  it('rolls back a release that never streams, one that exits at start, and one that streams and then dies', async () => {
    for (const [behaviour, reason] of [
      [{ streams: false }, 'new-agent-never-streamed'],
      [{ streams: false, exitAfterMs: 0 }, 'new-agent-never-streamed'],
      [{ streams: true, exitAfterMs: 700 }, 'new-binary-did-not-stay-up'],
    ] as const) {
      await stage('3.0.0', agentScript('3.0.0', behaviour));
      assert.equal(await watch(), `update rolled-back ${reason}`, JSON.stringify(behaviour));
      assert.equal(installed(), '// ct-ops-agent 1.0.0', 'the previous executable is back');
      await sleep(300);
      assert.ok(await service.runningPid(), 'and runs');
      const lastStart = readFileSync(join(dir, 'starts'), 'utf8').trim().split('\n').at(-1)!;
      assert.match(lastStart, /^1\.0\.0 /, 'the last start was the restored agent');
    }
  });

  it('a rollback whose stops fail at first is tried again, and ends with the previous executable running', async () => {
    await stage('3.0.0', agentScript('3.0.0', { streams: false }));
    const watching = watch();
    // The swap's own stop is done once the new agent has started; the next two stops (the rollback's) fail.
    await waitForStart('3.0.0');
    service.failingStops = 2;
    assert.equal(await watching, 'update rolled-back new-agent-never-streamed');
    assert.equal(service.failingStops, 0, 'both failures were met and tried past');
    assert.equal(installed(), '// ct-ops-agent 1.0.0');
    assert.ok(await service.runningPid(), 'the previous agent runs');
  });

  it('refuses, without touching the service or the executable, a release signed by another key, not newer, for another target, or with another hash', async () => {
    const cases: Array<[() => Promise<void>, string]> = [
      [() => stage('2.0.0', agentScript('2.0.0', { streams: true }), { key: signingKeyFromSeed(randomBytes(32)) }), 'update refused release-signature-invalid-signature-mismatch'],
      [() => stage('1.0.0', agentScript('1.0.0', { streams: true })), 'update refused not-newer-than-installed-1.0.0'],
      [() => stage('2.0.0', agentScript('2.0.0', { streams: true }), { name: 'ct-ops-agent-linux-x64' }), 'update refused wrong-target'],
      [() => stage('2.0.0', agentScript('2.0.0', { streams: true }), { listedScript: agentScript('2.0.0', { streams: false }) }), 'update refused sha256-mismatch'],
    ];
    const pid = await service.runningPid();
    for (const [prepare, expected] of cases) {
      await prepare();
      assert.equal(await watch(), expected);
      assert.equal(answer(), `${expected}\n`);
      assert.equal(installed(), '// ct-ops-agent 1.0.0');
      assert.equal(await service.runningPid(), pid, 'the running agent was left alone');
      assert.equal(service.starts, 0);
      assert.equal(existsSync(join(spool, RELEASE_FILE)), false, 'the staged file is removed');
    }
  });
});
