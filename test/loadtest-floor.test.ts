/**
 * The load generator against the floor server it is compared with (issue 14): the floor writes a data
 * directory the generator reads as an appliance's, answers its admin calls and acks every heartbeat,
 * and the run's JSON carries the figures bench:fleet divides (CPU per heartbeat, memory per agent, the
 * server's own event-loop windows). Small and short: what is checked is that the parts fit, not a speed.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { tempDir } from './helpers/bundler-fixtures.ts';
import { LoggedProcess, REPO_ROOT, run } from './helpers/processes.ts';

const FLOOR_BIN = join(REPO_ROOT, 'dist/ct-ops-loadtest-floor.js');
const LOADTEST_BIN = join(REPO_ROOT, 'dist/ct-ops-loadtest.js');

let dataDir: string;
let floor: LoggedProcess;
before(async () => {
  dataDir = join(tempDir('ct-ops-floor-'), 'floor');
  floor = new LoggedProcess(process.execPath, [FLOOR_BIN, '--data-dir', dataDir], {});
  await floor.waitForLog('floor server started');
});
after(async () => {
  floor?.child.kill('SIGTERM');
  await floor?.exited;
  rmSync(join(dataDir, '..'), { recursive: true, force: true });
});

test('ct-ops-loadtest drives the floor as it drives an appliance, and reports the server-side figures', { timeout: 120_000 }, async () => {
  for (const file of ['ca.crt', 'appliance.json', 'admin-cli.token']) assert.ok(existsSync(join(dataDir, file)), file);
  assert.equal(JSON.parse(readFileSync(join(dataDir, 'appliance.json'), 'utf8')).pid, floor.child.pid);
  // Past one 10-s window, so the runtime report has a whole window inside the heartbeat phase.
  const result = await run(process.execPath, [LOADTEST_BIN, '--data-dir', dataDir, '--agents', '60', '--interval', '5', '--duration', '12', '--drain', '2', '--json'], {}, 90_000);
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout.trim().split('\n').at(-1)!);
  assert.equal(summary.registered, 60);
  assert.equal(summary.agents_online, 60);
  assert.equal(summary.lost, 0);
  assert.equal(summary.errors, 0, JSON.stringify(summary.error_examples));
  // Two or three timed heartbeats each in 12 s at 5 s, and each stream's untimed opening one.
  assert.ok(summary.heartbeats >= 60 * 3 && summary.heartbeats <= 60 * 4, String(summary.heartbeats));
  assert.equal(summary.appliance.pid, floor.child.pid);
  assert.ok(summary.appliance.cpu_us_per_heartbeat > 0, JSON.stringify(summary.appliance));
  assert.ok(summary.appliance.rss_mib_before_agents > 10, JSON.stringify(summary.appliance));
  assert.equal(typeof summary.appliance.memory_kib_per_agent, 'number');
  const loop = summary.appliance.event_loop;
  assert.ok(loop && loop.windows >= 1 && loop.max_ms >= loop.worst_window_p99_ms && loop.worst_window_p99_ms >= 0, JSON.stringify(loop));
  // The floor keeps serving after the generator's streams closed.
  await sleep(100);
  assert.equal(floor.child.exitCode, null);
});
