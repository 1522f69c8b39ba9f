import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import pino from 'pino';
import { VitalsWriter } from '../appliance/heartbeat/vitals-writer.ts';
import { PeriodicPasses } from '../appliance/lib/periodic-passes.ts';
import { openStores } from '../appliance/store/index.ts';
import { memoryLogger } from './helpers/memory-logger.ts';
import { waitFor } from './helpers/wait.ts';


test('a pass runs at once when asked and on its interval; a failure, thrown or rejected, is logged under its name and the next run still comes', async () => {
  const { log, lines } = memoryLogger();
  const passes = new PeriodicPasses(log);
  let runs = 0;
  passes.every(20, 'flaky pass failed', () => {
    runs += 1;
    if (runs === 1) throw new Error('thrown');
    if (runs === 2) return Promise.reject(new Error('rejected'));
    return Promise.resolve();
  }, { runNow: true });
  assert.equal(runs, 1, 'ran at once');
  await waitFor('two more runs', () => runs >= 3, 5_000, 5);
  await passes.stop(1_000);
  const failures = lines().filter((line) => line.msg === 'flaky pass failed');
  assert.equal(failures.length, 2);
  const after = runs;
  await sleep(80);
  assert.equal(runs, after, 'no run after stop');
});

test('a pass still running when its timer fires is not started again', async () => {
  const passes = new PeriodicPasses(pino({ level: 'silent' }));
  let running = 0;
  let most = 0;
  let runs = 0;
  passes.every(10, 'slow pass failed', async () => {
    runs += 1;
    running += 1;
    most = Math.max(most, running);
    await sleep(60);
    running -= 1;
  });
  await waitFor('two runs', () => runs >= 2, 5_000, 5);
  await passes.stop(1_000);
  assert.equal(most, 1);
});

test('stop aborts the running passes\' signal and resolves once they ended', async () => {
  const passes = new PeriodicPasses(pino({ level: 'silent' }));
  let steps = 0;
  let ended = false;
  passes.every(60_000, 'stepping pass failed', async (signal) => {
    // A pass of many steps, as the software sweep: it looks at the signal between them.
    while (!signal.aborted) {
      steps += 1;
      await sleep(5);
    }
    await sleep(30);
    ended = true;
  }, { runNow: true });
  await waitFor('a few steps', () => steps >= 3, 5_000, 5);
  await passes.stop(5_000);
  assert.equal(ended, true, 'stop waited for the pass to end');
});

test('a pass that ignores its signal holds a stop for graceMs at most, and is named in the log', async () => {
  const { log, lines } = memoryLogger();
  const passes = new PeriodicPasses(log);
  passes.every(60_000, 'stubborn pass failed', () => sleep(10_000), { runNow: true });
  const started = Date.now();
  await passes.stop(200);
  const waited = Date.now() - started;
  assert.ok(waited >= 190 && waited < 5_000, `stop waited ${waited} ms`);
  const line = lines().find((entry) => entry.msg === 'periodic passes still running at the stop');
  assert.deepEqual(line?.passes, ['stubborn pass failed']);
});

test('the trigger runs a pass now, or once more after the run in hand (an event may come after the run read what it needed); nothing after stop', async () => {
  const passes = new PeriodicPasses(pino({ level: 'silent' }));
  let runs = 0;
  let release: (() => void) | undefined;
  const resync = passes.every(60_000, 'resync failed', async () => {
    runs += 1;
    await new Promise<void>((resolve) => (release = resolve));
  });
  resync();
  assert.equal(runs, 1);
  // Three events while it runs: one more run, not three.
  resync();
  resync();
  resync();
  release!();
  await waitFor('the run asked for meanwhile', () => runs === 2, 5_000, 5);
  release!();
  await sleep(20);
  assert.equal(runs, 2);
  await passes.stop(1_000);
  resync();
  assert.equal(runs, 2, 'no run once stopped');
});

test('the vitals writer\'s close waits for the prune it started, so its stores may close at once (a real SQLite file)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-passes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stores = openStores(join(dir, 'appliance.db'));
  const org = await stores.organisations.ensureDefault(1);
  await stores.hosts.insert({ id: 'hst_vitals00000001', orgId: org.id, publicKey: Buffer.alloc(32, 1), hostname: 'h', machineFingerprint: 'fp', os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
  // A backlog of several prune slices, all older than the retention.
  for (let start = 0; start < 12_000; start += 1_000) {
    await stores.vitals.insertMany(Array.from({ length: 1_000 }, (_, index) => ({ hostId: 'hst_vitals00000001', receivedAt: start + index + 1, agentTimestamp: 1, cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1 })));
  }
  const { log, lines } = memoryLogger();
  // Its prune starts at once, in slices with the event loop free between them.
  const writer = new VitalsWriter(stores, log, 60_000);
  await writer.close();
  assert.deepEqual(await stores.vitals.recent('hst_vitals00000001', 10), [], 'the prune ran to its end before close resolved');
  await stores.close();
  await sleep(50);
  assert.deepEqual(lines().filter((line) => (line.level as number) >= 50), [], 'nothing ran against the closed stores');
});
