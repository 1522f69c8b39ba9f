import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isAlive, startPostgres } from './helpers/postgres.ts';
import { LoggedProcess, REPO_ROOT } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

test('a test process killed with SIGKILL takes its private PostgreSQL cluster down with it, and the next start removes the directory it left', { timeout: 90_000 }, async () => {
  const owner = new LoggedProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
    import { startPostgres } from './test/helpers/postgres.ts';
    const cluster = await startPostgres();
    console.log(JSON.stringify({ port: cluster.port }));
    setInterval(() => {}, 60_000);
  `], {}, REPO_ROOT);
  try {
    const { port } = await waitFor('the cluster started by the owner process', () => {
      if (!owner.running) throw new Error(`owner exited: ${owner.stderr}`);
      const line = owner.stdout.split('\n').find((text) => text.startsWith('{'));
      return line === undefined ? undefined : (JSON.parse(line) as { port: number });
    }, 45_000);
    const dir = readdirSync(tmpdir()).map((name) => join(tmpdir(), name)).find((path) => path.includes('ct-ops-postgres-') && Number(textOrEmpty(join(path, 'owner.pid'))) === owner.child.pid);
    assert.ok(dir !== undefined, 'the cluster directory names its owner');
    const postmaster = Number(textOrEmpty(join(dir, 'data', 'postmaster.pid')).split('\n')[0]);
    assert.ok(isAlive(postmaster), `postmaster ${postmaster} on port ${port} runs`);
    owner.child.kill('SIGKILL');
    await owner.exited;
    await waitFor('the postmaster to shut down after its owner died', () => !isAlive(postmaster), 15_000, 100);
    const next = await startPostgres();
    try {
      assert.equal(existsSync(dir), false, 'the abandoned directory was swept');
    } finally {
      await next.stop();
    }
  } finally {
    await owner.stop('SIGKILL');
  }
});

test('the sweep leaves alone a process that reused an abandoned postmaster\'s pid (not postgres), and still removes the directory', { timeout: 90_000 }, async () => {
  const bystander = new LoggedProcess('sleep', ['300']);
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-postgres-'));
  try {
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'owner.pid'), '2147483646\n'); // no such process
    writeFileSync(join(dir, 'data', 'postmaster.pid'), `${bystander.child.pid}\n${dir}/data\n`);
    const next = await startPostgres();
    await next.stop();
    assert.equal(existsSync(dir), false, 'the abandoned directory was swept');
    assert.equal(bystander.running, true, 'the pid\'s new owner was not signalled');
  } finally {
    await bystander.stop('SIGKILL');
  }
});

/** A file's text, or '' while it does not exist (the postmaster writes its pid file once it runs). */
function textOrEmpty(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}
