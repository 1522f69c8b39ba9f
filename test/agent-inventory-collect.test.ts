import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectInventory, InventoryError, NOT_AVAILABLE, type CollectionPlan, type InventoryCollector, type InventoryErrorCode, type SoftwarePackage } from '../agent/inventory/index.ts';
import { softwarePackage } from '../agent/inventory/package.ts';
import { readDatabaseFile } from '../agent/inventory/read.ts';
import { runCommand } from '../agent/inventory/run.ts';
import { hasCommand } from './helpers/tools.ts';

const limits = { timeoutMs: 10_000, maxOutputBytes: 1024 * 1024 };
const node = (script: string) => ({ command: process.execPath, args: ['-e', script] });
const failsWith = (code: InventoryErrorCode) => (error: unknown) => error instanceof InventoryError && error.code === code;

function fake(name: string, result: readonly SoftwarePackage[] | typeof NOT_AVAILABLE | Error, calls: string[] = []): InventoryCollector {
  return {
    name,
    async collect() {
      calls.push(name);
      if (result instanceof Error) throw result;
      return result === NOT_AVAILABLE ? result : { packages: [...result], skipped: [] };
    },
  };
}
const pkg = (name: string, source: string, extra: Partial<SoftwarePackage> = {}) => softwarePackage({ name, version: '1.0', source, ...extra });
const collectorFailure = () => new InventoryError('ERR_INVENTORY_COLLECTOR_FAILED', 'tool failed', { source: 'x' });

test('a command that outlives the time limit is killed and reported as a timeout', async () => {
  assert.ok(hasCommand('dpkg-query'), 'these tests read the real dpkg database of the Debian machine they run on');
  const started = Date.now();
  await assert.rejects(runCommand(node('setTimeout(() => {}, 30_000)'), { ...limits, timeoutMs: 300 }), failsWith('ERR_INVENTORY_TIMEOUT'));
  assert.ok(Date.now() - started < 5_000, 'it did not wait for the command');
});

test('a command exiting non-zero fails with its exit status and an excerpt of its stderr', async () => {
  await assert.rejects(runCommand(node('process.stderr.write("E: database is locked\\n"); process.exit(3)'), limits), (error: unknown) => {
    assert.ok(failsWith('ERR_INVENTORY_COLLECTOR_FAILED')(error));
    const { details, message } = error as InventoryError;
    assert.equal(details.exit_code, 3);
    assert.equal(details.stderr, 'E: database is locked');
    assert.match(message, /exited with status 3: E: database is locked/);
    return true;
  });
});

test('a command that is not installed is reported as not available, so the next collector is tried', async () => {
  assert.equal(await runCommand({ command: 'ct-ops-no-such-package-manager', args: [] }, limits), NOT_AVAILABLE);
});

test('output beyond the cap fails the command instead of being truncated', async () => {
  await assert.rejects(runCommand(node('process.stdout.write("x".repeat(200_000))'), { ...limits, maxOutputBytes: 10_000 }), failsWith('ERR_INVENTORY_OUTPUT_TOO_LARGE'));
});

test('commands run without a shell, in the C locale, and their UTF-8 output is decoded', async () => {
  const script = 'console.log(JSON.stringify([process.env.LC_ALL, process.argv[1], "Müller 株式会社"]))';
  const output = await runCommand({ command: process.execPath, args: ['-e', script, '$(echo injected); true'] }, limits);
  assert.notEqual(output, NOT_AVAILABLE);
  assert.deepEqual(JSON.parse(output as string), ['C', '$(echo injected); true', 'Müller 株式会社']);
});

test('a package database file is read whole, missing means not available, and oversized fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-inventory-'));
  try {
    const file = join(dir, 'installed');
    writeFileSync(file, 'P:musl\nV:1.2.4-r2\n');
    assert.equal(await readDatabaseFile(file, 1024), 'P:musl\nV:1.2.4-r2\n');
    assert.equal(await readDatabaseFile(join(dir, 'absent'), 1024), NOT_AVAILABLE);
    await assert.rejects(readDatabaseFile(file, 4), failsWith('ERR_INVENTORY_OUTPUT_TOO_LARGE'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the first package manager present wins and the ones after it are not consulted', async () => {
  const calls: string[] = [];
  const plan: CollectionPlan = { primary: [fake('dpkg', NOT_AVAILABLE, calls), fake('rpm', [pkg('bash', 'rpm')], calls), fake('pacman', [pkg('bash', 'pacman')], calls)], additional: [] };
  const result = await collectInventory({ plan });
  assert.deepEqual(calls, ['dpkg', 'rpm']);
  assert.deepEqual(result.sources, ['rpm']);
  assert.deepEqual(result.packages.map((entry) => entry.source), ['rpm']);
});

test('no package manager present fails with its own code, as does a platform without collectors', async () => {
  await assert.rejects(collectInventory({ plan: { primary: [fake('dpkg', NOT_AVAILABLE), fake('rpm', NOT_AVAILABLE)], additional: [] } }), (error: unknown) => {
    assert.ok(failsWith('ERR_INVENTORY_NO_PACKAGE_MANAGER')(error));
    assert.equal((error as InventoryError).details.tried, 'dpkg,rpm');
    return true;
  });
  await assert.rejects(collectInventory({ platform: 'aix' }), failsWith('ERR_INVENTORY_NO_PACKAGE_MANAGER'));
});

test('a failing package manager fails the collection rather than falling through to another or answering an empty list', async () => {
  const calls: string[] = [];
  await assert.rejects(collectInventory({ plan: { primary: [fake('dpkg', collectorFailure(), calls), fake('rpm', [pkg('bash', 'rpm')], calls)], additional: [] } }), failsWith('ERR_INVENTORY_COLLECTOR_FAILED'));
  assert.deepEqual(calls, ['dpkg']);
});

test('an additional source that is absent is skipped, but one that fails fails the whole collection', async () => {
  const primary = [fake('system_profiler', [pkg('Safari', 'system_profiler')])];
  const skipped = await collectInventory({ plan: { primary, additional: [fake('homebrew', NOT_AVAILABLE)] } });
  assert.deepEqual(skipped.sources, ['system_profiler']);
  assert.equal(skipped.packages.length, 1);
  await assert.rejects(collectInventory({ plan: { primary, additional: [fake('homebrew', collectorFailure())] } }), failsWith('ERR_INVENTORY_COLLECTOR_FAILED'));
});

test('exact duplicates are removed and counted; entries differing in architecture or publisher stay', async () => {
  const listed = [pkg('Zoom', 'system_profiler'), pkg('Zoom', 'system_profiler'), pkg('Zoom', 'system_profiler', { architecture: 'x86_64' }), pkg('Zoom', 'system_profiler', { publisher: 'Other' })];
  const result = await collectInventory({ plan: { primary: [fake('system_profiler', listed)], additional: [fake('homebrew', [pkg('Zoom', 'homebrew')])] } });
  assert.equal(result.duplicatesRemoved, 1);
  assert.equal(result.packages.length, 4);
});

test('a tool that really lists nothing gives an empty, successful result', async () => {
  const result = await collectInventory({ plan: { primary: [fake('apk', [])], additional: [] } });
  assert.deepEqual(result, { packages: [], sources: ['apk'], duplicatesRemoved: 0, skipped: [] });
});

test('the time limit covers the whole collection, not each command separately', async () => {
  const slow: InventoryCollector = { name: 'slow', collect: async ({ run }) => (await run(node('setTimeout(() => {}, 400)')), { packages: [], skipped: [] }) };
  const started = Date.now();
  await assert.rejects(collectInventory({ timeoutMs: 600, plan: { primary: [slow], additional: [slow, slow] } }), failsWith('ERR_INVENTORY_TIMEOUT'));
  assert.ok(Date.now() - started < 5_000);
});


test('on this Debian host the Linux plan collects hundreds of packages from dpkg', async () => {
  const result = await collectInventory({ platform: 'linux' });
  assert.deepEqual(result.sources, ['dpkg']);
  assert.ok(result.packages.length >= 100, String(result.packages.length));
  assert.ok(result.packages.some((entry) => entry.name === 'coreutils'));
});
