import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import type { LoggedProcess } from './helpers/processes.ts';
import { hasCommand } from './helpers/tools.ts';
import { waitFor } from './helpers/wait.ts';

interface TaskView {
  id: string;
  state: string;
  attempts: number;
  output: string | null;
  error_code: string | null;
  result: { scan_id: string; packages: number; chunks: number; sources: string[]; added: number; removed: number; unchanged: number } | null;
}

interface PackageView {
  name: string;
  version: string;
  source: string;
  is_removed: boolean;
  first_seen: string;
}

/** dpkg's own list of this machine's packages: what the agent must report. */
function realDpkgPackages(): Map<string, string> {
  const listing = execFileSync('dpkg-query', ['-W', '-f=${Package}\\t${Version}\\t${Status}\\n'], { encoding: 'utf8' });
  const installed = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const [name, version, status] = line.split('\t');
    if (name && version && status?.endsWith(' installed')) installed.set(name, version);
  }
  return installed;
}

const skip = hasCommand('dpkg-query') ? false : 'needs a Debian host (dpkg-query)';

/** PATH with `dir` (stand-in tools) in front, as the agent's environment. */
const pathFirst = (dir: string): NodeJS.ProcessEnv => ({ PATH: `${dir}:${process.env.PATH ?? ''}` });

/** The process's state letter from /proc (R, S, Z …); '' once it is gone. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.charAt(0);
  } catch {
    return '';
  }
}

/**
 * A new auto-approved agent of `appliance`, started with `env` and streaming on return. The
 * caller disposes of the agent.
 */
async function streamingAgent(appliance: TestAppliance, env: NodeJS.ProcessEnv = {}): Promise<{ agent: TestAgent; hostId: string; proc: LoggedProcess }> {
  const { token } = await appliance.createToken('--auto-approve');
  const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 });
  const proc = agent.start([], env);
  try {
    await proc.waitForLog('heartbeat stream opened');
  } catch (error) {
    await agent.dispose();
    throw error;
  }
  return { agent, hostId: agent.state().agent_id, proc };
}

describe('tasks pushed to the real agent process', { skip }, () => {
  let appliance: TestAppliance;
  let shimDir: string;
  const agents: TestAgent[] = [];

  before(async () => {
    appliance = await TestAppliance.start();
    // A dpkg-query in front of the real one that hides the package named in ./hide: a package
    // "removed" from this machine without touching it.
    shimDir = mkdtempSync(join(tmpdir(), 'ct-ops-dpkg-shim-'));
    const realDpkgQuery = execFileSync('sh', ['-c', 'command -v dpkg-query'], { encoding: 'utf8' }).trim();
    writeFileSync(
      join(shimDir, 'dpkg-query'),
      `#!/bin/sh\nhide=$(cat "${shimDir}/hide" 2>/dev/null || true)\n[ -n "$hide" ] || exec ${realDpkgQuery} "$@"\n${realDpkgQuery} "$@" | awk -F '\\t' -v hide="$hide" '$1 != hide'\n`,
    );
    chmodSync(join(shimDir, 'dpkg-query'), 0o755);
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
    rmSync(shimDir, { recursive: true, force: true });
  });

  async function onlineAgent(): Promise<{ agent: TestAgent; hostId: string; proc: LoggedProcess }> {
    const started = await streamingAgent(appliance, pathFirst(shimDir));
    agents.push(started.agent);
    return started;
  }

  const showTask = (id: string) => appliance.cliJson<TaskView>('tasks', 'show', id);
  const finished = (id: string, timeoutMs = 60_000) =>
    waitFor(`task ${id} finished`, async () => {
      const task = await showTask(id);
      return ['succeeded', 'failed', 'timed_out', 'cancelled'].includes(task.state) && task;
    }, timeoutMs, 250);

  test("a rescan collects this machine's real dpkg inventory, streams it in chunks of 500, and a second scan marks a removed package, keeping first_seen", async () => {
    const { hostId } = await onlineAgent();
    const expected = realDpkgPackages();
    assert.ok(expected.size > 500, `this machine has ${expected.size} packages: enough for several chunks`);

    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    const first = await finished(queued.id);
    assert.equal(first.state, 'succeeded', JSON.stringify(first));
    assert.equal(first.attempts, 1);
    assert.deepEqual(first.result?.sources, ['dpkg']);
    assert.equal(first.result?.packages, expected.size);
    assert.equal(first.result?.chunks, Math.ceil(expected.size / 500));
    assert.equal(first.result?.added, expected.size);

    const stored = await appliance.cliJson<PackageView[]>('hosts', 'packages', hostId, '--removed');
    assert.equal(stored.length, expected.size);
    for (const pkg of stored) {
      assert.equal(pkg.source, 'dpkg');
      assert.equal(pkg.is_removed, false);
    }
    const dpkg = stored.find((pkg) => pkg.name === 'dpkg');
    assert.equal(dpkg?.version, expected.get('dpkg'), 'the version dpkg itself reports');

    // "Remove" dpkg's own package from what dpkg-query lists, then scan again.
    writeFileSync(join(shimDir, 'hide'), 'dpkg\n');
    try {
      const again = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
      assert.notEqual(again.id, queued.id);
      const second = await finished(again.id);
      assert.equal(second.state, 'succeeded', JSON.stringify(second));
      assert.deepEqual([second.result?.added, second.result?.removed, second.result?.unchanged], [0, 1, expected.size - 1]);
      const scans = await appliance.cliJson<Array<{ id: string; task_id: string; status: string }>>('hosts', 'scans', hostId);
      assert.deepEqual(scans.map((scan) => [scan.id, scan.task_id, scan.status]), [[second.result?.scan_id, again.id, 'completed'], [first.result?.scan_id, queued.id, 'completed']], 'each scan is tied to its task');
    } finally {
      rmSync(join(shimDir, 'hide'), { force: true });
    }
    const live = await appliance.cliJson<PackageView[]>('hosts', 'packages', hostId);
    assert.equal(live.length, expected.size - 1);
    assert.ok(!live.some((pkg) => pkg.name === 'dpkg'), 'the removed package is hidden by default');
    const withRemoved = await appliance.cliJson<PackageView[]>('hosts', 'packages', hostId, '--removed');
    const removed = withRemoved.find((pkg) => pkg.name === 'dpkg');
    assert.equal(removed?.is_removed, true, 'kept, marked removed');
    assert.equal(removed?.first_seen, dpkg?.first_seen, 'first_seen is never overwritten');
  });

  test('a collector failure fails the task and changes nothing stored', async () => {
    const { hostId, proc } = await onlineAgent();
    const first = await finished((await appliance.cliJson<TaskView>('hosts', 'rescan', hostId)).id);
    assert.equal(first.state, 'succeeded');
    // dpkg-query that fails (as on a broken dpkg database).
    const brokenDir = mkdtempSync(join(tmpdir(), 'ct-ops-broken-dpkg-'));
    writeFileSync(join(brokenDir, 'dpkg-query'), '#!/bin/sh\necho "dpkg-query: error: status database area is locked" >&2\nexit 2\n');
    chmodSync(join(brokenDir, 'dpkg-query'), 0o755);
    await proc.stop();
    const restarted = agents.at(-1)!.start([], pathFirst(brokenDir));
    try {
      await restarted.waitForLog('heartbeat stream opened');
      const failed = await finished((await appliance.cliJson<TaskView>('hosts', 'rescan', hostId)).id);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.error_code, 'ERR_INVENTORY_COLLECTOR_FAILED');
      assert.match(failed.output ?? '', /status database area is locked/);
      const stored = await appliance.cliJson<PackageView[]>('hosts', 'packages', hostId);
      assert.equal(stored.length, first.result?.packages, 'a failed collection never reaches the appliance as an empty list');
    } finally {
      rmSync(brokenDir, { recursive: true, force: true });
    }
  });

  test('a task sent on a stream that drops before the agent acknowledges it is sent again on the next stream and runs once', async () => {
    const { hostId, proc } = await onlineAgent();
    const pid = proc.child.pid!;
    // Freeze the agent: the appliance writes the task to a stream nobody reads, then drops the
    // stream when heartbeats stop (twice the 5 s interval) and queues the task again.
    process.kill(pid, 'SIGSTOP');
    let resumed = false;
    try {
      const queued = await appliance.cliJson<TaskView>('hosts', 'reload-config', hostId);
      await waitFor('the task was sent', async () => (await showTask(queued.id)).state === 'sent', 10_000);
      await waitFor('the stream was dropped and the task queued again', async () => (await showTask(queued.id)).state === 'queued', 20_000, 250);
      process.kill(pid, 'SIGCONT');
      resumed = true;
      const done = await finished(queued.id, 30_000);
      assert.equal(done.state, 'succeeded', JSON.stringify(done));
      assert.ok(done.attempts >= 2, `sent ${done.attempts} times`);
      assert.equal(proc.logged('config reloaded').length, 1, 'run exactly once');
    } finally {
      if (!resumed) process.kill(pid, 'SIGCONT');
    }
  });

  test('a task sent to an agent that dies before acknowledging it runs once after the agent restarts; a queued task waits for an offline host', async () => {
    const { agent, hostId, proc } = await onlineAgent();
    process.kill(proc.child.pid!, 'SIGSTOP');
    const queued = await appliance.cliJson<TaskView>('hosts', 'reload-config', hostId);
    await waitFor('the task was sent', async () => (await showTask(queued.id)).state === 'sent', 10_000);
    await proc.stop('SIGKILL');
    await waitFor('the task went back to the queue', async () => (await showTask(queued.id)).state === 'queued', 20_000, 250);
    // Its heartbeats reach the host's row in batches (VitalsWriter, every second): 'never-connected' until the first lands.
    await waitFor('the host shown offline', async () => (await appliance.host(hostId)).status === 'offline', 5_000, 250);

    const restarted = agent.start();
    const done = await finished(queued.id, 30_000);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempts, 2);
    assert.equal(restarted.logged('config reloaded').length, 1);
  });

  test('cancelling a queued task means it is never sent; a finished task cannot be cancelled', async () => {
    const { hostId, proc } = await onlineAgent();
    await proc.stop();
    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    assert.equal(queued.state, 'queued', 'the host is offline: the task waits');
    const cancelled = await appliance.cliJson<TaskView>('tasks', 'cancel', queued.id);
    assert.equal(cancelled.state, 'cancelled');
    const restarted = agents.at(-1)!.start();
    await restarted.waitForLog('heartbeat stream opened');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(restarted.logged('task received').length, 0, 'a cancelled task never reaches the agent');
    const again = await appliance.cli('tasks', 'cancel', queued.id);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /ERR_TASK_STATE_CONFLICT/);
  });
});

describe('the software sweeper with a real agent', { skip }, () => {
  let appliance: TestAppliance;
  let brokenDir: string;
  const agents: TestAgent[] = [];

  before(async () => {
    // Sweeping every second instead of every minute: the schedule is the same, the test shorter.
    appliance = await TestAppliance.start({ args: ['--inventory-sweep-secs', '1'] });
    brokenDir = mkdtempSync(join(tmpdir(), 'ct-ops-broken-dpkg-'));
    writeFileSync(join(brokenDir, 'dpkg-query'), '#!/bin/sh\necho "dpkg-query: error: database is locked" >&2\nexit 2\n');
    chmodSync(join(brokenDir, 'dpkg-query'), 0o755);
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
    rmSync(brokenDir, { recursive: true, force: true });
  });

  async function online(env: NodeJS.ProcessEnv = {}): Promise<string> {
    const { agent, hostId } = await streamingAgent(appliance, env);
    agents.push(agent);
    return hostId;
  }
  const inventoryTasks = (hostId: string) => appliance.cliJson<Array<TaskView & { type: string; created_by: string }>>('tasks', 'list', '--host', hostId);

  test('a host never scanned is scanned on its own; a host scanned within the interval is left alone', async () => {
    const hostId = await online();
    const [task] = await waitFor('the sweeper scanned the new host', async () => {
      const tasks = await inventoryTasks(hostId);
      return tasks.length > 0 && tasks[0]!.state === 'succeeded' && tasks;
    }, 60_000, 500);
    assert.deepEqual([task!.type, task!.created_by], ['software_inventory', 'software-sweeper']);
    const scans = await appliance.cliJson<Array<{ status: string }>>('hosts', 'scans', hostId);
    assert.deepEqual(scans.map((scan) => scan.status), ['completed']);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.equal((await inventoryTasks(hostId)).length, 1, 'four more sweeps, no second scan within 24 h');
  });

  test('a host whose scans fail backs off instead of being asked again every sweep', async () => {
    const hostId = await online(pathFirst(brokenDir));
    const [failed] = await waitFor('the first scan failed', async () => {
      const tasks = await inventoryTasks(hostId);
      return tasks.length > 0 && tasks[0]!.state === 'failed' && tasks;
    }, 60_000, 500);
    assert.equal(failed!.error_code, 'ERR_INVENTORY_COLLECTOR_FAILED');
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.equal((await inventoryTasks(hostId)).length, 1, 'the next attempt waits 5 minutes');
  });
});

describe('task delivery across an appliance crash and an agent restart', { skip }, () => {
  let slowDir: string;
  const cleanups: Array<() => Promise<void>> = [];

  before(() => {
    // A dpkg-query that takes 3 s: long enough to crash things while the agent is inside the task.
    slowDir = mkdtempSync(join(tmpdir(), 'ct-ops-slow-dpkg-'));
    const realDpkgQuery = execFileSync('sh', ['-c', 'command -v dpkg-query'], { encoding: 'utf8' }).trim();
    writeFileSync(join(slowDir, 'dpkg-query'), `#!/bin/sh\nsleep 3\nexec ${realDpkgQuery} "$@"\n`);
    chmodSync(join(slowDir, 'dpkg-query'), 0o755);
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    rmSync(slowDir, { recursive: true, force: true });
  });

  test('the appliance dies before it sees the acknowledgement: after its restart the task is sent again, answered from the ledger, and run once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-appliance-crash-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    let appliance = await TestAppliance.start({ dataDir });
    const grpcPort = appliance.grpcPort;
    cleanups.push(async () => appliance.dispose());
    const { agent, hostId, proc } = await streamingAgent(appliance, pathFirst(slowDir));
    cleanups.push(() => agent.dispose());

    // The agent frozen, the task is written to its socket; then the appliance is frozen before the
    // agent (thawed) can acknowledge: the acknowledgement reaches a socket nobody reads; then the crash.
    process.kill(proc.child.pid!, 'SIGSTOP');
    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    await appliance.process.waitForLog('task sent', { task_id: queued.id });
    process.kill(appliance.process.child.pid!, 'SIGSTOP');
    process.kill(proc.child.pid!, 'SIGCONT');
    await proc.waitForLog('task received', { task_id: queued.id });
    await appliance.process.stop('SIGKILL');
    appliance = await TestAppliance.start({ dataDir, grpcPort });

    const done = await waitFor('the task finished', async () => {
      const task = await appliance.cliJson<TaskView>('tasks', 'show', queued.id);
      return ['succeeded', 'failed'].includes(task.state) && task;
    }, 60_000, 250);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.equal(done.attempts, 2, 'sent again after the restart: the appliance never saw it acknowledged');
    assert.equal(proc.logged('task received', { task_id: queued.id }).length, 1);
    assert.equal(proc.logged('task received again; not running it twice', { task_id: queued.id }).length, 1);
    const scans = await appliance.cliJson<Array<{ task_id: string; status: string }>>('hosts', 'scans', hostId);
    assert.deepEqual(scans.map((scan) => [scan.task_id, scan.status]), [[queued.id, 'completed']], 'one scan');
  });

  test('cancelling a running inventory kills the collector at once; the task stays cancelled', async (t) => {
    const stuckDir = mkdtempSync(join(tmpdir(), 'ct-ops-stuck-dpkg-'));
    t.after(() => rmSync(stuckDir, { recursive: true, force: true }));
    const marker = join(stuckDir, 'pid');
    writeFileSync(join(stuckDir, 'dpkg-query'), `#!/bin/sh\necho $$ > ${marker}\nexec sleep 120\n`);
    chmodSync(join(stuckDir, 'dpkg-query'), 0o755);
    const appliance = await TestAppliance.start();
    cleanups.push(async () => appliance.dispose());
    const { agent, hostId, proc } = await streamingAgent(appliance, pathFirst(stuckDir));
    cleanups.push(() => agent.dispose());
    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    await waitFor('the collector runs', () => existsSync(marker), 10_000);
    const collectorPid = Number(readFileSync(marker, 'utf8'));
    const cancelled = await appliance.cliJson<TaskView>('tasks', 'cancel', queued.id);
    assert.equal(cancelled.state, 'cancelled');
    await proc.waitForLog('task failed', { task_id: queued.id, error_code: 'ERR_TASK_CANCELLED' }, 5_000);
    // Killed when the task is aborted: gone, or a zombie its parent (the agent) has not reaped yet under load.
    await waitFor('the stuck dpkg-query to be killed', () => {
      try {
        process.kill(collectorPid, 0);
      } catch {
        return true;
      }
      return processState(collectorPid) === 'Z';
    }, 10_000, 50);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await appliance.cliJson<TaskView>('tasks', 'show', queued.id)).state, 'cancelled', "the agent's failure report does not change a cancelled task");
  });

  test('the agent dies inside a task: at its next start the task is reported interrupted, not run again', async () => {
    const appliance = await TestAppliance.start();
    cleanups.push(async () => appliance.dispose());
    const env = pathFirst(slowDir);
    const { agent, hostId, proc } = await streamingAgent(appliance, env);
    cleanups.push(() => agent.dispose());
    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    await waitFor('running', async () => (await appliance.cliJson<TaskView>('tasks', 'show', queued.id)).state === 'running', 10_000, 100);
    await proc.stop('SIGKILL');

    const restarted = agent.start([], env);
    const done = await waitFor('the task finished', async () => {
      const task = await appliance.cliJson<TaskView>('tasks', 'show', queued.id);
      return ['succeeded', 'failed'].includes(task.state) && task;
    }, 30_000, 250);
    assert.deepEqual([done.state, done.error_code], ['failed', 'ERR_TASK_INTERRUPTED']);
    assert.equal(restarted.logged('task received').length, 0, 'the restarted agent did not run it again');
    assert.deepEqual(await appliance.cliJson('hosts', 'scans', hostId), [], 'no scan was submitted');
  });
});
