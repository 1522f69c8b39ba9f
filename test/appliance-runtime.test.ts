/**
 * GET /api/v1/appliance/runtime (issue 14): the appliance reports how late its own event loop runs,
 * in 10-second windows, so a load run (ct-ops-loadtest) and an admin can see stalls from outside.
 * A real stall is made by stopping the process (SIGSTOP) for longer than any healthy delay: the
 * window holding it must report it, and the appliance must log it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { waitFor } from './helpers/wait.ts';

const STALL_MS = 400;

let appliance: TestAppliance;
let bearer: string;
before(async () => {
  appliance = await TestAppliance.start();
  bearer = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
});
after(async () => {
  await appliance?.dispose();
});

const runtime = (query = '') => httpsJson(appliance.httpPort, appliance.caCert, 'GET', `/api/v1/appliance/runtime${query}`, { bearer });

test('the runtime route needs an admin credential', async () => {
  const anonymous = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/appliance/runtime');
  assert.equal(anonymous.status, 401);
});

test(`a ${STALL_MS} ms stop of the appliance shows in its event-loop window and in its log`, { timeout: 60_000 }, async () => {
  const before = Date.now();
  const pid = appliance.process.child.pid!;
  process.kill(pid, 'SIGSTOP');
  await sleep(STALL_MS);
  process.kill(pid, 'SIGCONT');
  const reply = await runtime(`?since=${encodeURIComponent(new Date(before).toISOString())}`);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.pid, pid);
  assert.equal(reply.body.online_hosts, 0);
  assert.ok(reply.body.rss_mib > 10 && reply.body.heap_used_mib > 1, JSON.stringify(reply.body));
  assert.equal(reply.body.event_loop.window_secs, 10);
  const windows = reply.body.event_loop.windows as Array<{ started_at: string; seconds: number; p50_ms: number; p99_ms: number; max_ms: number }>;
  assert.ok(windows.length >= 1 && windows.length <= 2, JSON.stringify(windows));
  const worst = Math.max(...windows.map((window) => window.max_ms));
  // The stop's whole length (less the 10 ms sampling interval), and not wildly more.
  assert.ok(worst >= STALL_MS - 20 && worst < STALL_MS + 2_000, `worst delay ${worst} ms after a ${STALL_MS} ms stop`);
  for (const window of windows) assert.ok(window.p50_ms <= window.p99_ms && window.p99_ms <= window.max_ms, JSON.stringify(window));
  // The stall is logged when its window closes (up to 10 s later).
  await waitFor('event_loop_stall logged', () => appliance.process.logged('the event loop was blocked: heartbeat acks waited').length > 0, 15_000);
  const logged = appliance.process.logged('the event loop was blocked: heartbeat acks waited')[0]!;
  assert.equal(logged.event, 'event_loop_stall');
  assert.ok((logged.max_ms as number) >= STALL_MS - 20);
});

test('windows that ended before `since` are left out; a malformed `since` is refused', async () => {
  const future = await runtime(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
  assert.equal(future.status, 200);
  assert.deepEqual(future.body.event_loop.windows, []);
  const malformed = await runtime('?since=yesterday');
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.error.code, 'ERR_INVALID_ARGUMENT');
});
