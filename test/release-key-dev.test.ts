/**
 * The development release key (scripts/agents/release-key.mjs) made by builds running at once, as
 * the test lanes and a test building two releases in parallel do: every build ends up with one and
 * the same key, exactly one of them made it, and the folder holds the key with its public half.
 * (A fresh CI clone once failed here: two builds both tried to create .dev-keys/release.key.)
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePublicKeyFile, keyIdHex } from '../common/minisign.ts';
import { tempDir } from './helpers/bundler-fixtures.ts';
import { REPO_ROOT, run } from './helpers/processes.ts';

test('eight builds creating the development release key at once all get the one key published first', async () => {
  const devKeysDir = join(tempDir('ct-ops-dev-keys-'), '.dev-keys');
  const script = `
    const { loadReleaseKey } = await import(${JSON.stringify(join(REPO_ROOT, 'scripts/agents/release-key.mjs'))});
    const { keyIdHex } = await import(${JSON.stringify(join(REPO_ROOT, 'common/minisign.ts'))});
    const { key, source } = loadReleaseKey({ devKeysDir: ${JSON.stringify(devKeysDir)} });
    console.log(keyIdHex(key.keyId), source);`;
  const results = await Promise.all(Array.from({ length: 8 }, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {}, 60_000)));
  for (const result of results) assert.equal(result.code, 0, result.stderr);
  const lines = results.map((result) => result.stdout.trim().split(' '));
  assert.equal(new Set(lines.map(([keyId]) => keyId)).size, 1, `one key: ${JSON.stringify(lines)}`);
  assert.equal(lines.filter(([, source]) => source === 'dev-created').length, 1, 'made once');
  const published = parsePublicKeyFile(readFileSync(join(devKeysDir, 'release.pub'), 'utf8'));
  assert.equal(keyIdHex(published.keyId), lines[0]![0], 'release.pub is the public half of that key');
  assert.equal(statSync(join(devKeysDir, 'release.key')).mode & 0o777, 0o600);
  assert.equal(statSync(devKeysDir).mode & 0o777, 0o700);
});
