import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import type { Task__Output } from '../common/proto.ts';
import { createLogger } from '../agent/log/logger.ts';
import { launchCommand, planUninstall, uninstallHandler, type UninstallFacts } from '../agent/tasks/uninstall.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { AGENT_BIN, LoggedProcess, run } from './helpers/processes.ts';
import { standInEnv, standInMarker, STANDIN_REMOVED, UNINSTALL_LOG, writeStandInUninstaller } from './helpers/uninstaller.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * Remote uninstall from the agent's side: the pure choice of how to start the uninstaller, the
 * root helper's spool protocol against a stand-in helper process, and a real agent running as
 * root that starts a real (stand-in) uninstaller detached, is killed with its whole process
 * group, and whose uninstaller still finishes and reports through `ct-ops-agent report-task`.
 */

const silent = createLogger('silent');
const TASK_ID = 'tsk_0123456789abcdef0123';
const task = (id = TASK_ID): Task__Output => ({ task_id: id, timeout_ms: 300_000, agent_uninstall: {}, kind: 'agent_uninstall' }) as Task__Output;

const facts = (overrides: Partial<UninstallFacts>): UninstallFacts => ({
  platform: 'linux', uid: 0, env: {}, spoolWritable: false, uninstallerExists: true, systemdRunning: false, ...overrides,
});

describe('how the agent starts its uninstaller (pure decision)', () => {
  test('a writable helper spool comes first, for the unprivileged Linux agent and the root macOS agent alike', () => {
    assert.deepEqual(planUninstall(facts({ uid: 998, spoolWritable: true })), { method: 'helper', spoolDir: '/var/lib/ct-ops/requests' });
    assert.deepEqual(planUninstall(facts({ uid: 0, spoolWritable: true, systemdRunning: true })), { method: 'helper', spoolDir: '/var/lib/ct-ops/requests' });
    assert.deepEqual(planUninstall(facts({ platform: 'darwin', spoolWritable: true })), { method: 'helper', spoolDir: '/Library/Application Support/CT-Ops/requests' });
    assert.deepEqual(planUninstall(facts({ uid: 998, spoolWritable: true, env: { CT_OPS_HELPER_REQUESTS_DIR: '/srv/spool' } })), { method: 'helper', spoolDir: '/srv/spool' });
  });

  test('root on Linux with systemd: a transient unit from systemd-run --no-block --collect, output appended to the log', () => {
    const plan = planUninstall(facts({ systemdRunning: true }));
    assert.deepEqual(plan, { method: 'systemd-run', uninstaller: '/usr/local/libexec/ct-ops/uninstall.sh' });
    assert.ok(plan.method === 'systemd-run');
    assert.deepEqual(launchCommand(plan, TASK_ID, '/var/log/ct-ops-uninstall.log', 1_700_000_000_000, {}), {
      command: 'systemd-run',
      args: [
        '--no-block', '--collect', '--quiet', `--unit=ct-ops-uninstall-${TASK_ID}-1700000000000`, '--description=CT-Ops agent uninstall',
        '--property=StandardOutput=append:/var/log/ct-ops-uninstall.log', '--property=StandardError=append:/var/log/ct-ops-uninstall.log',
        '/bin/sh', '/usr/local/libexec/ct-ops/uninstall.sh', '--report-task', TASK_ID,
      ],
    });
  });

  test('root on Linux without systemd, and root on macOS without a helper: a detached /bin/sh (setsid)', () => {
    const linux = planUninstall(facts({ env: { CT_OPS_UNINSTALLER: '/opt/u.sh' } }));
    assert.deepEqual(linux, { method: 'setsid', uninstaller: '/opt/u.sh' });
    assert.deepEqual(planUninstall(facts({ platform: 'darwin' })), { method: 'setsid', uninstaller: '/usr/local/libexec/ct-ops/uninstall.sh' });
    assert.ok(linux.method === 'setsid');
    assert.deepEqual(launchCommand(linux, TASK_ID, '/x.log', 0, {}), { command: '/bin/sh', args: ['/opt/u.sh', '--report-task', TASK_ID] });
  });

  test('Windows: uninstall.ps1 from %ProgramFiles%\\CT-Ops through the full path of powershell.exe; there is no helper', () => {
    const env = { ProgramFiles: 'D:\\Programs', SystemRoot: 'D:\\Win', CT_OPS_HELPER_REQUESTS_DIR: 'C:\\spool' };
    const plan = planUninstall(facts({ platform: 'win32', uid: undefined, env, spoolWritable: false }));
    assert.deepEqual(plan, { method: 'windows-detached', uninstaller: 'D:\\Programs\\CT-Ops\\uninstall.ps1' });
    assert.ok(plan.method === 'windows-detached');
    assert.deepEqual(launchCommand(plan, TASK_ID, 'D:\\Win\\Logs\\CT-Ops\\ct-ops-uninstall.log', 0, env), {
      command: 'D:\\Win\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
      args: ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', 'D:\\Programs\\CT-Ops\\uninstall.ps1', '-ReportTask', TASK_ID],
    });
  });

  test('unavailable, saying why: not root and no helper spool, no uninstaller installed, an unsupported platform', () => {
    const notRoot = planUninstall(facts({ uid: 1000 }));
    assert.equal(notRoot.method, 'unavailable');
    assert.match(notRoot.method === 'unavailable' ? notRoot.reason : '', /uid 1000, not root, and the root helper's spool \/var\/lib\/ct-ops\/requests is missing or not writable/);
    const missing = planUninstall(facts({ uninstallerExists: false }));
    assert.deepEqual(missing, { method: 'unavailable', reason: 'no uninstaller at /usr/local/libexec/ct-ops/uninstall.sh' });
    assert.equal(planUninstall(facts({ platform: 'freebsd' })).method, 'unavailable');
  });
});

describe('the root helper protocol, against a stand-in helper process', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-uninstall-spool-'));
  let counter = 0;
  const newSpool = (): string => {
    const dir = join(scratch, `spool-${(counter += 1)}`);
    mkdirSync(dir, { mode: 0o770 });
    return dir;
  };
  after(() => rmSync(scratch, { recursive: true, force: true }));

  /**
   * Plays the root helper: waits for `request`, takes it (rename, as the helper does), keeps what
   * it read in `taken`, and answers `answer` in `result` (written aside, then renamed).
   */
  function standInHelper(spool: string, answer: string): { exited: Promise<number | null> } {
    const script = `
      i=0
      while [ ! -f "$SPOOL/request" ]; do i=$((i + 1)); [ $i -lt 200 ] || exit 3; sleep 0.05; done
      mv "$SPOOL/request" "$SPOOL/../taken-$(basename "$SPOOL")"
      printf '%s\\n' "$ANSWER" >"$SPOOL/.result.tmp"
      mv "$SPOOL/.result.tmp" "$SPOOL/result"`;
    const child = spawn('/bin/sh', ['-c', script], { env: { PATH: process.env.PATH, SPOOL: spool, ANSWER: answer }, stdio: 'ignore' });
    return { exited: new Promise((resolve) => child.once('exit', resolve)) };
  }
  const handlerFor = (spool: string, helperTimeoutMs = 10_000) => uninstallHandler({ log: silent, env: { PATH: process.env.PATH, CT_OPS_HELPER_REQUESTS_DIR: spool }, helperTimeoutMs });
  const taken = (spool: string): string => readFileSync(join(spool, '..', `taken-${spool.split('/').pop()}`), 'utf8');

  test('"uninstall ok" hands the task off; the request was exactly "uninstall <task_id>" and a stale answer was cleared first', async () => {
    const spool = newSpool();
    writeFileSync(join(spool, 'result'), 'uninstall refused stale-answer-from-before\n');
    const helper = standInHelper(spool, 'uninstall ok');
    const outcome = await handlerFor(spool)(task(), new AbortController().signal);
    assert.equal(await helper.exited, 0);
    assert.deepEqual(outcome, { kind: 'handed-off', message: 'the root helper started the uninstaller; it reports the outcome when it has finished' });
    assert.equal(taken(spool), `uninstall ${TASK_ID}\n`);
    assert.ok(!existsSync(join(spool, 'result')), 'the answer is consumed');
    assert.ok(!existsSync(join(spool, 'request')));
  });

  test('"uninstall refused <reason>" fails the task with ERR_UNINSTALL_FAILED and the reason', async () => {
    const spool = newSpool();
    const helper = standInHelper(spool, 'uninstall refused uninstaller-missing');
    await assert.rejects(handlerFor(spool)(task(), new AbortController().signal), { code: 'ERR_UNINSTALL_FAILED', message: 'the root helper refused the uninstall: uninstaller-missing' });
    assert.equal(await helper.exited, 0);
  });

  test('no helper answering: ERR_UNINSTALL_UNAVAILABLE naming the path unit, and the request is withdrawn', async () => {
    const spool = newSpool();
    writeFileSync(join(spool, 'result'), 'uninstall ok\n');
    await assert.rejects(handlerFor(spool, 600)(task(), new AbortController().signal), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_UNINSTALL_UNAVAILABLE');
      assert.match(error.message, /the root helper did not answer within 1 s; is ct-ops-agent-helper\.path enabled\?/);
      return true;
    });
    assert.ok(!existsSync(join(spool, 'request')), 'withdrawn: no uninstall starts after the task failed');
  });

  test('an admin cancelling while the agent waits aborts with the cancel reason and withdraws the request', async () => {
    const spool = newSpool();
    const controller = new AbortController();
    const pending = handlerFor(spool)(task(), controller.signal);
    await waitFor('the request', () => existsSync(join(spool, 'request')));
    controller.abort(new CtOpsError('ERR_TASK_CANCELLED', 'an admin cancelled this task'));
    await assert.rejects(pending, { code: 'ERR_TASK_CANCELLED' });
    assert.ok(!existsSync(join(spool, 'request')));
  });

  test('a task id that is not tsk_ and letters or digits never reaches a request', async () => {
    const spool = newSpool();
    await assert.rejects(handlerFor(spool)(task('tsk_a/../b'), new AbortController().signal), { code: 'ERR_INVALID_ARGUMENT' });
    assert.ok(!existsSync(join(spool, 'request')));
  });
});

describe('a real agent running as root starts the uninstaller detached, and the uninstaller reports', { skip: process.getuid?.() === 0 ? undefined : 'the agent launches the uninstaller itself only as root' }, () => {
  let appliance: TestAppliance;
  let admin: string;
  const agents: TestAgent[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-uninstall-e2e-'));
  const api = (method: string, path: string) => httpsJson(appliance.httpPort, appliance.caCert, method, path, { bearer: admin });

  const uninstaller = writeStandInUninstaller(scratch);

  before(async () => {
    appliance = await TestAppliance.start();
    admin = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance?.dispose();
    rmSync(scratch, { recursive: true, force: true });
    rmSync(UNINSTALL_LOG, { force: true });
  });

  /** An enrolled agent in a process group of its own (setsid), so the test can kill the whole group. */
  async function enrolledAgent(outcome: 'succeeded' | 'failed'): Promise<{ agent: TestAgent; proc: LoggedProcess; hostId: string; marker: string }> {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token });
    agents.push(agent);
    const marker = standInMarker(agent);
    const proc = new LoggedProcess('setsid', [process.execPath, AGENT_BIN, '-config', agent.configPath], {
      CT_OPS_MACHINE_ID_FILE: agent.machineIdFile,
      CT_OPS_LOG_LEVEL: 'debug',
      ...standInEnv(uninstaller, agent, outcome),
    });
    agent.process = proc;
    await proc.waitForLog('heartbeat stream opened');
    return { agent, proc, hostId: agent.state().agent_id, marker };
  }

  async function deleteWithUninstall(hostId: string): Promise<string> {
    const deleted = await api('DELETE', `/api/v1/hosts/${hostId}?uninstall=true`);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(deleted.body.uninstall.type, 'agent_uninstall');
    return deleted.body.uninstall.id as string;
  }

  const taskIn = (taskId: string, state: string) => waitFor(`task ${taskId} ${state}`, async () => {
    const shown = (await api('GET', `/api/v1/tasks/${taskId}`)).body;
    return shown.state === state && shown;
  }, 20_000);
  const processGroupOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);

  test('killing the agent\'s whole process group does not stop the detached uninstaller, whose report deletes the host and retires its key', { timeout: 120_000 }, async () => {
    const { agent, proc, hostId, marker } = await enrolledAgent('succeeded');
    const taskId = await deleteWithUninstall(hostId);
    const shown = await api('GET', `/api/v1/hosts/${hostId}`);
    assert.equal(shown.body.pending_uninstall?.id, taskId, 'the host shows the pending uninstall');

    const started = await proc.waitForLog('uninstaller started detached', { task_id: taskId }, 15_000);
    assert.equal(started.method, 'setsid');
    assert.equal(started.log, UNINSTALL_LOG, 'a root agent logs into /var/log, not a predictable /tmp path');
    const uninstallerPid = Number(started.pid);
    const agentPid = proc.child.pid!;
    assert.equal(processGroupOf(agentPid), agentPid, 'the agent leads its own process group');
    assert.notEqual(processGroupOf(uninstallerPid), agentPid, 'the uninstaller is in a process group of its own');
    await taskIn(taskId, 'running');

    process.kill(-agentPid, 'SIGKILL');
    assert.equal((await proc.exited).signal, 'SIGKILL');
    assert.ok(!existsSync(marker), 'the uninstaller was still running when its agent died');

    await waitFor('the detached uninstaller to finish', () => existsSync(marker), 15_000);
    const finished = await taskIn(taskId, 'succeeded');
    assert.equal(finished.output, STANDIN_REMOVED);
    const host = await api('GET', `/api/v1/hosts/${hostId}`);
    assert.equal(host.body.status, 'deleted');
    assert.equal(host.body.pending_uninstall, null);
    assert.ok(!(await api('GET', '/api/v1/hosts')).body.some((listed: { id: string }) => listed.id === hostId), 'gone from the host list');

    // The appliance records the report before report-task prints its line into the log: wait for the line.
    const reported = `ct-ops-agent: reported task ${taskId} succeeded`;
    await waitFor('report-task to log its report', () => readFileSync(UNINSTALL_LOG, 'utf8').includes(reported), 15_000);
    const log = readFileSync(UNINSTALL_LOG, 'utf8');
    assert.match(log, new RegExp(`stand-in uninstaller for ${taskId}`));
    assert.match(log, new RegExp(`ct-ops-agent: reported task ${taskId} succeeded to localhost:${appliance.grpcPort}`));
    assert.equal(statSync(UNINSTALL_LOG).mode & 0o777, 0o600);
    const jwt = agent.state().jwt;
    assert.ok(!log.includes(jwt), 'the JWT never appears in the uninstall log');

    // The same identity can never come back.
    const restarted = agent.start();
    const exit = await restarted.exited;
    assert.equal(exit.code, 77, restarted.stdout + restarted.stderr);
    assert.match(restarted.stderr, /ERR_AGENT_KEY_RETIRED/);
    assert.ok(restarted.logged('agent stopped on a fatal error', { code: 'ERR_AGENT_KEY_RETIRED' }).length === 1);

    // Reporting again is refused with the same code: the key is retired.
    const again = await run(process.execPath, [AGENT_BIN, '-config', agent.configPath, 'report-task', '--task-id', taskId, '--outcome', 'succeeded'], { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile });
    assert.equal(again.code, 77, again.stderr);
    assert.match(again.stderr, /ERR_AGENT_KEY_RETIRED/);
  });

  test('an uninstaller that reports failure fails the task with its code and message, and the host stays', { timeout: 120_000 }, async () => {
    const { proc, hostId, marker } = await enrolledAgent('failed');
    const taskId = await deleteWithUninstall(hostId);
    await waitFor('the uninstaller to finish', () => existsSync(marker), 20_000);
    const failed = await taskIn(taskId, 'failed');
    assert.equal(failed.error_code, 'ERR_UNINSTALL_FAILED');
    assert.equal(failed.output, 'failed: rm -rf /etc/ct-ops');
    // The reporter's stream replaced the agent's for a moment; the agent reconnects.
    const host = await waitFor('the host online again', async () => {
      const shownHost = (await api('GET', `/api/v1/hosts/${hostId}`)).body;
      return shownHost.status === 'online' && shownHost;
    }, 20_000);
    assert.equal(host.deleted_at, null, 'a failed uninstall deletes nothing');
    assert.equal(host.pending_uninstall, null);
    assert.ok(proc.running, 'the agent was not stopped by the stand-in');
  });

  test('report-task refuses a malformed task id (64), a task this agent never received (66), a missing identity (73) and an unreachable appliance (69)', { timeout: 60_000 }, async () => {
    const { agent } = await enrolledAgent('succeeded');
    const report = (args: string[], env: NodeJS.ProcessEnv = {}) => run(process.execPath, [AGENT_BIN, '-config', agent.configPath, 'report-task', ...args], { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile, ...env });

    const malformed = await report(['--task-id', 'tsk_$(id)', '--outcome', 'succeeded']);
    assert.equal(malformed.code, 64);
    assert.match(malformed.stderr, /--task-id "tsk_\$\(id\)" is not a task id/);
    const badOutcome = await report(['--task-id', TASK_ID, '--outcome', 'maybe']);
    assert.equal(badOutcome.code, 64);
    const badCode = await report(['--task-id', TASK_ID, '--outcome', 'failed', '--error-code', 'ERR_MADE_UP']);
    assert.equal(badCode.code, 64);
    assert.match(badCode.stderr, /--error-code must be a catalogue code/);

    const unknown = await report(['--task-id', TASK_ID, '--outcome', 'succeeded']);
    assert.equal(unknown.code, 66, unknown.stderr);
    assert.match(unknown.stderr, new RegExp(`ERR_TASK_NOT_FOUND: this agent never received task ${TASK_ID}`));

    const empty = join(scratch, 'empty-data');
    mkdirSync(empty, { recursive: true });
    const noIdentity = await report(['--task-id', TASK_ID, '--outcome', 'succeeded'], { CT_OPS_DATA_DIR: empty });
    assert.equal(noIdentity.code, 73, noIdentity.stderr);
    assert.match(noIdentity.stderr, /ERR_DATA_DIR_UNUSABLE: no agent identity/);
    assert.ok(!existsSync(join(empty, 'agent_key.pem')), 'a reporter never creates a key');

    // A task the agent did receive (a rescan), reported to an address where nothing listens.
    const hostId = agent.state().agent_id;
    const rescan = await appliance.cliJson<{ id: string }>('hosts', 'rescan', hostId);
    await waitFor('the agent to receive the rescan', () => agent.process!.logged('task received', { task_id: rescan.id }).length > 0);
    const unreachable = await report(['--task-id', rescan.id, '--outcome', 'failed'], { CT_OPS_INGEST_ADDRESS: '127.0.0.1:1' });
    assert.equal(unreachable.code, 69, unreachable.stderr);
    assert.match(unreachable.stderr, /ERR_INGEST_UNREACHABLE/);
  });
});
