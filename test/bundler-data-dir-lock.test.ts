import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tryLockDataDir } from '../appliance/lib/data-dir-lock.ts';
import { openStores } from '../appliance/store/index.ts';
import { packageRoot } from '../common/package-root.ts';
import { createFixtureAppliance, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { reachAppliance } from '../bundler/cli/appliance-access.ts';
import { APPLIANCE_BIN, LoggedProcess, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

const BUNDLE_CLI = join(packageRoot(), 'bundler/main.ts');

describe("the data directory's lock: stopped-mode bundle builds and the appliance", () => {
  let fixture: FixtureAppliance;
  before(async () => {
    fixture = await createFixtureAppliance();
  });
  after(() => rmSync(fixture.root, { recursive: true, force: true }));

  const build = (out: string) =>
    run(process.execPath, ['--import', 'tsx', BUNDLE_CLI, 'build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--out', join(fixture.root, out), '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir, '--json'], { SOURCE_DATE_EPOCH: '', CT_OPS_ORG_TOKEN: '' }, 120_000);

  const tokenCount = async (): Promise<number> => {
    const stores = openStores(join(fixture.dataDir, 'appliance.db'), { migrate: false });
    try {
      return (await stores.enrolmentTokens.list((await stores.organisations.ensureDefault(Date.now())).id)).length;
    } finally {
      await stores.close();
    }
  };

  test('two concurrent stopped-mode builds serialise: both build, neither is told the appliance runs', async () => {
    const before = (await tokenCount());
    const [first, second] = await Promise.all([build('first'), build('second')]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    assert.notEqual(JSON.parse(first.stdout).token.id, JSON.parse(second.stdout).token.id);
    assert.equal((await tokenCount()), before + 2);
  });

  test('the appliance refuses to start, and restore to replace the directory, while a build holds it (naming it); a build waits for a build before it', async () => {
    // This process holds the lock exactly as a stopped-mode build does.
    const held = tryLockDataDir(fixture.dataDir, 'bundle-build');
    assert.ok(held);
    try {
      const serve = await run(process.execPath, [APPLIANCE_BIN, 'serve', '--data-dir', fixture.dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'localhost'], {}, 60_000);
      assert.equal(serve.code, 75, serve.stdout + serve.stderr);
      assert.match(serve.stdout + serve.stderr, new RegExp(`ERR_DATA_DIR_LOCKED.*a ct-ops-bundle build \\(pid ${process.pid}`));

      const restore = await run(process.execPath, [APPLIANCE_BIN, 'restore', join(fixture.root, 'no-such-backup.age'), '--data-dir', fixture.dataDir, '--force', '--owner', 'root'], {}, 60_000);
      assert.equal(restore.code, 75, restore.stdout + restore.stderr);
      assert.match(restore.stderr, /ERR_DATA_DIR_LOCKED: .* is in use by a ct-ops-bundle build/);

      const waiting = build('after-release');
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const before = (await tokenCount());
      const releasedAt = Date.now();
      held.release();
      const result = await waiting;
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await tokenCount()), before + 1);
      // Made after the release, not merely slow to start: the build waited for the lock.
      const stores = openStores(join(fixture.dataDir, 'appliance.db'), { migrate: false });
      try {
        const token = await stores.enrolmentTokens.get((JSON.parse(result.stdout) as { token: { id: string } }).token.id);
        assert.ok(token !== undefined && token.createdAt >= releasedAt, 'the token was made only once the lock was released');
      } finally {
        await stores.close();
      }
    } finally {
      held.release();
    }
  });

  test('an appliance serving from PostgreSQL (no appliance.db, the lock held by serve) is reached through its API, not refused as a missing database', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-lock-pg-'));
    // A process holding the lock as serve does (kept referenced: a collected lock closes its file); its data directory has no SQLite file.
    const holder = new LoggedProcess(process.execPath, ['--import', 'tsx', '-e', `import('${join(packageRoot(), 'appliance/lib/data-dir-lock.ts')}').then((m) => { globalThis.heldLock = m.lockDataDir(process.argv[1], 'serve'); console.log('locked'); setInterval(() => {}, 60_000); })`, dataDir]);
    try {
      await waitFor('the lock held', () => holder.stdout.includes('locked'), 15_000);
      // The API is the way in: here it has no endpoint file, so the admin client says so.
      await assert.rejects(reachAppliance(dataDir), (error: { code?: string }) => error.code === 'ERR_APPLIANCE_UNREACHABLE');
    } finally {
      holder.child.kill();
      await holder.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
