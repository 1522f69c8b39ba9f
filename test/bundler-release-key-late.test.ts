/**
 * A release key made after the appliance started (`npm run build:agents` in a clone, which writes
 * .dev-keys/release.pub and a release signed by it) is used by the next bundle build, through the
 * running appliance's admin API and through ct-ops-bundle, with no restart; so is a new one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdHex, publicKeyFile, signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { tempDir, writeReleaseDir, writeTemplates } from './helpers/bundler-fixtures.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { REPO_ROOT, run } from './helpers/processes.ts';

const BUNDLE_BIN = join(REPO_ROOT, 'dist/ct-ops-bundle.js');

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
    // The appliance runs in a "clone" that has no .dev-keys/ yet: it starts trusting no release key.
    clone = join(scratch, 'clone');
    mkdirSync(clone);
    agentsDir = join(scratch, 'agents');
    templatesDir = writeTemplates(join(scratch, 'templates'));
    appliance = await TestAppliance.start({ cwd: clone, env: { CT_OPS_BUNDLE_AGENTS_DIR: agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: templatesDir } });
    bearer = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
  });
  after(async () => {
    await appliance?.dispose();
    rmSync(scratch, { recursive: true, force: true });
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

  test('ct-ops-bundle build run in the clone uses the development key made after the appliance started', async () => {
    const key = buildAgents();
    const out = join(scratch, 'out');
    mkdirSync(out, { recursive: true });
    const built = await run('sh', ['-c', 'cd "$1" && shift && exec "$@"', 'sh', clone, process.execPath, BUNDLE_BIN, 'build', '--data-dir', appliance.dataDir, '--os', 'linux', '--arch', 'arm64', '--address', 'ingest.example:9443', '--token', 'none', '--out', out, '--json'], { CT_OPS_BUNDLE_AGENTS_DIR: agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: templatesDir }, 120_000);
    assert.equal(built.code, 0, built.stderr);
    assert.equal((JSON.parse(built.stdout) as { release_key_id: string }).release_key_id, keyIdHex(key.keyId));
  });
});
