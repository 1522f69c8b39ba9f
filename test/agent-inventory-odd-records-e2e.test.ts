import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/wait.ts';

// Issue 9, §3, reproduced with the real compiled agent and a real appliance: the agent's dpkg-query
// prints the empty-version line, libc6 for amd64 and i386, an unreadable line and a record over
// the name cap. Before, the scan failed whole ("packages[N].version is required") and nothing was stored.

const installed = (name: string, version: string, arch: string) => `${name}\t${version}\t${arch}\tDebian Maintainers <d@example.org>\t1719830403\tinstall ok installed`;
const DPKG_OUTPUT = [
  'emptyver\t\tall\t\t\tinstall ok installed',
  installed('libc6', '2.36-9+deb12u4', 'amd64'),
  installed('libc6', '2.36-9+deb12u4', 'i386'),
  installed('bash', '5.2.15-2+b7', 'amd64'),
  installed('held-pkg', '1:1.0~rc1', 'all').replace('install ok installed', 'hold ok installed'),
  installed(`lib${'x'.repeat(600)}`, '1.0', 'amd64'),
  'dpkg-query: warning: files list file for package \'x\' missing',
  // The clock was wrong when it was installed (year 2300); a maintainer field over the publisher cap.
  installed('clock-skewed', '1.0', 'amd64').replace('1719830403', '10413792000'),
  installed('long-maintainer', '1.0', 'amd64').replace('Debian Maintainers', 'M'.repeat(600)),
  '',
].join('\n');

interface TaskView {
  id: string;
  state: string;
  output: string | null;
  result: { packages: number; added: number; skipped_on_host: Array<{ reason: string; count: number }>; skipped_by_appliance: unknown[] } | null;
}

test('the real agent reports a dpkg list with an empty version, multi-arch twins and odd lines: all records stored, the rest counted', async (t) => {
  const shimDir = mkdtempSync(join(tmpdir(), 'ct-ops-odd-dpkg-'));
  t.after(() => rmSync(shimDir, { recursive: true, force: true }));
  writeFileSync(join(shimDir, 'dpkg-output.txt'), DPKG_OUTPUT);
  writeFileSync(join(shimDir, 'dpkg-query'), `#!/bin/sh\nexec cat '${join(shimDir, 'dpkg-output.txt')}'\n`);
  chmodSync(join(shimDir, 'dpkg-query'), 0o755);

  const appliance = await TestAppliance.start();
  t.after(() => appliance.dispose());
  const { token } = await appliance.createToken('--auto-approve');
  const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 });
  t.after(() => agent.dispose());
  const proc = agent.start([], { PATH: `${shimDir}:${process.env.PATH ?? ''}` });
  await proc.waitForLog('heartbeat stream opened');
  const hostId = agent.state().agent_id;

  const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
  const done = await waitFor('the inventory task finished', async () => {
    const task = await appliance.cliJson<TaskView>('tasks', 'show', queued.id);
    return ['succeeded', 'failed'].includes(task.state) && task;
  }, 60_000, 250);
  assert.equal(done.state, 'succeeded', JSON.stringify(done));
  assert.equal(done.result?.packages, 7);
  assert.equal(done.result?.added, 7);
  assert.deepEqual(done.result?.skipped_on_host.map(({ reason, count }) => [reason, count]), [['name_too_long', 1], ['publisher_truncated', 1], ['unparsable', 1]]);
  assert.deepEqual(done.result?.skipped_by_appliance, []);
  assert.match(done.output ?? '', /skipped on the host: name_too_long 1, unparsable 1; stored changed: publisher_truncated 1/);
  // The host's counts are kept with the scan record and shown with it.
  const scans = await appliance.cliJson<Array<{ skipped: Array<{ reason: string; count: number; on_host?: boolean }> }>>('hosts', 'scans', hostId);
  assert.deepEqual(scans[0]!.skipped.map(({ reason, count, on_host: onHost }) => [reason, count, onHost]), [['name_too_long', 1, true], ['publisher_truncated', 1, true], ['unparsable', 1, true]]);
  assert.match((await appliance.cli('hosts', 'scans', hostId)).stdout, /name_too_long 1 \(on the host\), unparsable 1 \(on the host\); stored changed: publisher_truncated 1 \(on the host\)/);
  assert.ok(proc.logged('task succeeded', { task_id: queued.id }).some((line) => /unparsable 1/.test(String(line.detail))), 'the agent logs the count');

  const stored = await appliance.cliJson<Array<{ name: string; version: string; architecture: string; install_date: string | null }>>('hosts', 'packages', hostId);
  assert.equal(stored.find((row) => row.name === 'clock-skewed')?.install_date, null, 'a date in 2300 is stored unknown');
  assert.deepEqual(stored.map((row) => [row.name, row.version, row.architecture]), [
    ['bash', '5.2.15-2+b7', 'amd64'],
    ['clock-skewed', '1.0', 'amd64'],
    ['emptyver', '', 'all'],
    ['held-pkg', '1:1.0~rc1', 'all'],
    ['libc6', '2.36-9+deb12u4', 'amd64'],
    ['libc6', '2.36-9+deb12u4', 'i386'],
    ['long-maintainer', '1.0', 'amd64'],
  ]);
});
