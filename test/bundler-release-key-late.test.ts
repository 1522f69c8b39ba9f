/**
 * A release key made after the appliance started (`npm run build:agents` in a clone, which writes
 * .dev-keys/release.pub and a release signed by it) is used by the next bundle build, through the
 * running appliance's admin API and through ct-ops-bundle, with no restart; so is a new one. The
 * key is found at the clone's root whatever the working directory of the appliance or bundler.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdHex, publicKeyFile, signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { tempDir, writeReleaseDir, writeTemplates } from './helpers/bundler-fixtures.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { REPO_ROOT, run } from './helpers/processes.ts';

/**
 * A clone of this package in `dir` as far as the appliance and bundler need: package.json, the
 * built scripts and chunks, node_modules (a link), no .dev-keys/ yet.
 */
function makeClone(dir: string): void {
  mkdirSync(join(dir, 'dist'), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
  for (const file of ['ct-ops-appliance.js', 'ct-ops-bundle.js']) copyFileSync(join(REPO_ROOT, 'dist', file), join(dir, 'dist', file));
  cpSync(join(REPO_ROOT, 'dist', 'chunks'), join(dir, 'dist', 'chunks'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
}

describe('the release key is read at each bundle build', () => {
  let scratch: string;
  let clone: string;
  let agentsDir: string;
  let templatesDir: string;
  let appliance: TestAppliance;
  let bearer: string;

  /** What `npm run build:agents` leaves behind in a clone: the development key and a release it signed (here: stand-in executables). */
  function buildAgents(): SigningKey {
    const key = signingKeyFromSeed(randomBytes(32));
    mkdirSync(join(clone, '.dev-keys'), { recursive: true });
    writeFileSync(join(clone, '.dev-keys', 'release.pub'), publicKeyFile(key, `CT-Ops DEVELOPMENT release key ${keyIdHex(key.keyId)}`));
    rmSync(agentsDir, { recursive: true, force: true });
    writeReleaseDir(agentsDir, key);
    return key;
  }

  const buildThroughApi = () =>
    httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/bundles', { body: { os: 'linux', arch: 'x64', address: 'ingest.example:9443', token: 'none' }, bearer });

  before(async () => {
    scratch = tempDir('ct-ops-late-release-key-');
    // The appliance runs from a clone that has no .dev-keys/ yet, started in another directory:
    // it starts trusting no release key.
    clone = join(scratch, 'clone');
    makeClone(clone);
    agentsDir = join(scratch, 'agents');
    templatesDir = writeTemplates(join(scratch, 'templates'));
    appliance = await TestAppliance.start({ bin: join(clone, 'dist', 'ct-ops-appliance.js'), cwd: scratch, env: { CT_OPS_BUNDLE_AGENTS_DIR: agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: templatesDir } });
    bearer = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
  });
  after(async () => {
    await appliance?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  test("a clone without the console's built files still serves agents and the API; the console says why it cannot open", async () => {
    const console = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/console/hosts');
    assert.equal(console.status, 503);
    assert.equal(console.body.error.code, 'ERR_CONSOLE_UNAVAILABLE');
    assert.equal((await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/hosts', { bearer })).status, 200);
  });

  test('a running appliance started with no release key builds a bundle through its admin API once build:agents has made one, then again after a new one', async () => {
    assert.match(appliance.process.stderr, /Trusted agent release key: none yet/);
    const before = await buildThroughApi();
    assert.equal(before.status, 409, JSON.stringify(before.body));
    assert.equal(before.body.error.code, 'ERR_BUNDLE_INPUT_MISSING');

    const first = buildAgents();
    const built = await buildThroughApi();
    assert.equal(built.status, 201, JSON.stringify(built.body));
    assert.equal(built.body.release_key_id, keyIdHex(first.keyId));

    // A new development key (its folder deleted, build:agents run again): the next build trusts it, not a copy of the old one.
    const second = buildAgents();
    const rebuilt = await buildThroughApi();
    assert.equal(rebuilt.status, 201, JSON.stringify(rebuilt.body));
    assert.equal(rebuilt.body.release_key_id, keyIdHex(second.keyId));
    assert.ok(appliance.process.running, 'no restart');
  });

  test("ct-ops-bundle build run from another directory uses the clone's development key made after the appliance started", async () => {
    const key = buildAgents();
    const out = join(scratch, 'out');
    mkdirSync(out, { recursive: true });
    const built = await run('sh', ['-c', 'cd "$1" && shift && exec "$@"', 'sh', tmpdir(), process.execPath, join(clone, 'dist', 'ct-ops-bundle.js'), 'build', '--data-dir', appliance.dataDir, '--os', 'linux', '--arch', 'arm64', '--address', 'ingest.example:9443', '--token', 'none', '--out', out, '--json'], { CT_OPS_BUNDLE_AGENTS_DIR: agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: templatesDir }, 120_000);
    assert.equal(built.code, 0, built.stderr);
    assert.equal((JSON.parse(built.stdout) as { release_key_id: string }).release_key_id, keyIdHex(key.keyId));
  });

  test('a data directory holding a copy of a development key (kept by older appliances) drops it at start and trusts the clone\'s current key, named by its absolute path', async () => {
    const current = buildAgents();
    const old = signingKeyFromSeed(randomBytes(32));
    const dataDir = tempDir('ct-ops-dev-key-copy-');
    writeFileSync(join(dataDir, 'release.pub'), publicKeyFile(old, `CT-Ops DEVELOPMENT release key ${keyIdHex(old.keyId)}`));
    const restarted = await TestAppliance.start({ dataDir, bin: join(clone, 'dist', 'ct-ops-appliance.js'), cwd: tmpdir() });
    try {
      await restarted.process.waitForLog('removed a copy of a development release key from the data directory: the development key is read in place at each bundle build', { path: join(dataDir, 'release.pub') });
      assert.ok(!existsSync(join(dataDir, 'release.pub')), 'the copy is gone');
      assert.ok(restarted.process.stderr.includes(`Trusted agent release key: ${join(clone, '.dev-keys', 'release.pub')} (minisign key id ${keyIdHex(current.keyId)}, DEVELOPMENT key`), restarted.process.stderr);
    } finally {
      await restarted.dispose();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
