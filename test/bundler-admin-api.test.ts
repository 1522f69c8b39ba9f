import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePublicKeyFile } from '../common/minisign.ts';
import { verifyBundle } from '../bundler/index.ts';
import { sha256Hex } from '../bundler/lib/sha256sums.ts';
import { createFixtureAppliance, fixtureAdminCredential, fixtureBuildEnv, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsDownload as download, httpsJson } from './helpers/https.ts';
import { packageRoot } from '../common/package-root.ts';

const BUNDLE_CLI = join(packageRoot(), 'bundler/main.ts');

/** ct-ops-bundle as an operator runs it on the appliance host, without the test's fixture directories. */
function bundleCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const clean: NodeJS.ProcessEnv = { ...process.env, SOURCE_DATE_EPOCH: '', CT_OPS_ORG_TOKEN: '', ...env };
  delete clean.CT_OPS_BUNDLE_AGENTS_DIR;
  delete clean.CT_OPS_BUNDLE_TEMPLATES_DIR;
  const result = spawnSync(process.execPath, ['--import', 'tsx', BUNDLE_CLI, ...args], { cwd: packageRoot(), encoding: 'utf8', env: clean, timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('admin API /api/v1/bundles', () => {
  let fixture: FixtureAppliance;
  let appliance: TestAppliance;
  let bearer: string;

  before(async () => {
    fixture = await createFixtureAppliance();
    appliance = await TestAppliance.start({ dataDir: fixture.dataDir, env: fixtureBuildEnv(fixture) });
    bearer = fixtureAdminCredential(fixture);
  });
  after(async () => {
    await appliance?.dispose();
    rmSync(fixture.root, { recursive: true, force: true });
  });

  const call = (method: string, path: string, body?: unknown, auth = true) =>
    httpsJson(appliance.httpPort, appliance.caCert, method, path, { ...(body !== undefined ? { body } : {}), ...(auth ? { bearer } : {}) });

  test('an admin builds a bundle with a new token and downloads a zip that verifies', async () => {
    const created = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: 'ingest.example:9443', tags: { site: 'lab' }, label: 'rack 4', expires_in_secs: 3600 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.body.bundle_id, /^bnd_[0-9a-f]{20}$/);
    assert.equal(created.body.file, 'ct-ops-agent-0.1.0-linux-x64.zip');
    assert.equal(created.body.token.mode, 'new');
    assert.equal(created.body.download, `/api/v1/bundles/${created.body.bundle_id}`);
    assert.ok(!JSON.stringify(created.body).includes('tok_'), 'the secret never leaves in the response');

    const tokens = await call('GET', '/api/v1/tokens');
    const token = tokens.body.find((candidate: { id: string }) => candidate.id === created.body.token.id);
    assert.equal(token.source, 'install-bundle');
    assert.equal(token.metadata.bundle_id, created.body.bundle_id);
    assert.equal(token.created_by, 'admin');

    const zip = await download(appliance.httpPort, appliance.caCert, created.body.download, bearer);
    assert.equal(zip.status, 200);
    assert.equal(zip.headers['content-type'], 'application/zip');
    assert.match(String(zip.headers['content-disposition']), /filename="ct-ops-agent-0\.1\.0-linux-x64\.zip"/);
    assert.equal(sha256Hex(zip.body), created.body.sha256);
    const path = join(fixture.root, created.body.file);
    writeFileSync(path, zip.body);
    const report = await verifyBundle(path, parsePublicKeyFile(readFileSync(join(fixture.dataDir, 'bundle.pub'), 'utf8')));
    assert.deepEqual(report.problems, []);
    assert.equal(report.bundleId, created.body.bundle_id);
  });

  test('token mode none, bad input, unknown bundles and missing credentials get the right answers', async () => {
    const none = await call('POST', '/api/v1/bundles', { os: 'windows', arch: 'x64', address: 'ingest.example:9443', token: 'none' });
    assert.equal(none.status, 201, JSON.stringify(none.body));
    assert.deepEqual(none.body.token, { mode: 'none' });

    const badTag = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: 'ingest.example:9443', tags: { site: 'a\u0007b' } });
    assert.equal(badTag.status, 400);
    assert.equal(badTag.body.error.code, 'ERR_INVALID_ARGUMENT');
    const badAddress = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: '$(reboot):1' });
    assert.equal(badAddress.status, 400);
    const noSecret = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: 'ingest.example:9443', token: 'etk_00000000000000000000' });
    assert.equal(noSecret.status, 400);
    const unknownToken = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: 'ingest.example:9443', token: 'etk_00000000000000000000', token_secret: `tok_${'A'.repeat(43)}` });
    assert.equal(unknownToken.status, 404);
    assert.equal(unknownToken.body.error.code, 'ERR_ENROLMENT_TOKEN_NOT_FOUND');
    const unauthenticated = await call('POST', '/api/v1/bundles', { os: 'linux', arch: 'x64', address: 'ingest.example:9443' }, false);
    assert.equal(unauthenticated.status, 401);
    const missing = await download(appliance.httpPort, appliance.caCert, '/api/v1/bundles/bnd_00000000000000000000', bearer);
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body.toString('utf8')).error.code, 'ERR_BUNDLE_NOT_FOUND');
    const noAuthDownload = await download(appliance.httpPort, appliance.caCert, `/api/v1/bundles/${none.body.bundle_id}`, 'wrong');
    assert.equal(noAuthDownload.status, 401);
  });

  test('ct-ops-bundle build on a running appliance goes through its admin API: the appliance builds and records the token, the CLI downloads the zip', async () => {
    const out = join(fixture.root, 'cli-through-api');
    const base = ['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'arm64', '--address', 'ingest.example:9443', '--out', out];
    // A second ingest instance: the API takes the list, in the order given.
    const built = bundleCli([...base, '--address', '10.0.0.2:9443', '--tag', 'site:lab', '--label', 'via api', '--expires', '2h', '--json']);
    assert.equal(built.code, 0, built.stderr);
    const printed = JSON.parse(built.stdout);
    assert.deepEqual([printed.ingest_address, printed.ingest_addresses], ['ingest.example:9443', ['ingest.example:9443', '10.0.0.2:9443']]);
    assert.equal(printed.path, join(out, 'ct-ops-agent-0.1.0-linux-arm64.zip'));
    assert.equal(printed.download, undefined, 'the same JSON as a local build');
    assert.equal(printed.token.mode, 'new');
    assert.ok(!built.stdout.includes('tok_'), 'the secret is not printed');
    const zip = readFileSync(printed.path);
    assert.equal(sha256Hex(zip), printed.sha256);
    assert.equal(statSync(printed.path).mode & 0o777, 0o600, 'a zip holding a secret is owner-only');
    const report = await verifyBundle(printed.path, parsePublicKeyFile(readFileSync(join(fixture.dataDir, 'bundle.pub'), 'utf8')));
    assert.deepEqual(report.problems, []);
    await appliance.process.waitForLog('install bundle built', { bundle_id: printed.bundle_id, by: 'admin', token_mode: 'new' });

    const tokens = await call('GET', '/api/v1/tokens');
    const token = tokens.body.find((candidate: { id: string }) => candidate.id === printed.token.id);
    assert.equal(token.source, 'install-bundle', 'recorded exactly as a local build records it');
    assert.equal(token.max_uses, 1);
    assert.equal(token.label, 'via api');
    assert.deepEqual(token.tags, { site: 'lab' });
    assert.deepEqual(token.metadata, { os: 'linux', arch: 'arm64', bundle_id: printed.bundle_id, created_by: 'admin' });
    assert.ok(Math.abs(Date.parse(token.expires_at) - Date.parse(token.created_at) - 2 * 3_600_000) < 1000);

    const existing = await call('POST', '/api/v1/tokens', { label: 'ops', expires_in_secs: 3600 });
    assert.equal(existing.status, 201, JSON.stringify(existing.body));
    const withExisting = bundleCli([...base, '--token', existing.body.id], { CT_OPS_ORG_TOKEN: existing.body.token });
    assert.equal(withExisting.code, 0, withExisting.stderr);
    const wrongSecret = bundleCli([...base, '--token', existing.body.id], { CT_OPS_ORG_TOKEN: `tok_${'A'.repeat(43)}` });
    assert.equal(wrongSecret.code, 65);
    assert.match(wrongSecret.stderr, /ERR_BUNDLE_TOKEN_UNUSABLE/);

    const localOnly = bundleCli([...base, '--agents-dir', fixture.agentsDir]);
    assert.equal(localOnly.code, 64);
    assert.match(localOnly.stderr, /the appliance is running.*--agents-dir/);
    const after = await call('GET', '/api/v1/tokens');
    assert.equal(after.body.length, tokens.body.length + 1, 'a refused build made no token (only the existing one was added)');
  });
});

describe('ct-ops-bundle build against an appliance whose SANs do not name loopback', () => {
  let fixture: FixtureAppliance;
  let appliance: TestAppliance;

  before(async () => {
    fixture = await createFixtureAppliance();
    // What a build a crash interrupted leaves: swept when the appliance starts.
    mkdirSync(join(fixture.dataDir, 'bundles', '.staging-999-1', 'half-written'), { recursive: true });
    // The example of docs/operations.md: the endpoint file still names 127.0.0.1, which the certificate does not.
    appliance = await TestAppliance.start({
      dataDir: fixture.dataDir,
      sans: ['appliance.corp.example', '10.0.0.5'],
      env: fixtureBuildEnv(fixture),
    });
  });
  after(async () => {
    await appliance?.dispose();
    rmSync(fixture.root, { recursive: true, force: true });
  });

  const base = (out: string) => ['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'appliance.corp.example:9443', '--out', out, '--json'];
  const tokens = async (): Promise<{ id: string; state: string }[]> => JSON.parse((await appliance.cli('tokens', 'list', '--json')).stdout);

  test('the bundle CLI and the admin CLI reach the local appliance over its admin API, pinned to its CA', async () => {
    const built = bundleCli(base(join(fixture.root, 'custom-sans')));
    assert.equal(built.code, 0, built.stderr);
    const printed = JSON.parse(built.stdout);
    assert.equal(sha256Hex(readFileSync(printed.path)), printed.sha256);
    const listed = await appliance.cli('tokens', 'list', '--json');
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as { id: string }[]).some((token) => token.id === printed.token.id));
  });

  test('a build the CLI cannot write is withdrawn: exit 73, its new token revoked, its zip gone from the appliance', async () => {
    const out = join(fixture.root, 'blocked-out');
    // The zip's own name is taken by a directory: --out is writable, so the appliance builds, then the write fails.
    mkdirSync(join(out, 'ct-ops-agent-0.1.0-linux-x64.zip', 'occupied'), { recursive: true });
    const before = (await tokens()).length;
    const result = bundleCli(base(out));
    assert.equal(result.code, 73, result.stderr);
    assert.match(result.stderr, /ERR_DATA_DIR_UNUSABLE/);
    const withdrawn = /bundle (bnd_[0-9a-f]{20}) withdrawn on the appliance \(its token (etk_[0-9a-f]{20}) revoked\)/.exec(result.stderr);
    assert.ok(withdrawn, result.stderr);
    const after = await tokens();
    assert.equal(after.length, before + 1);
    assert.equal(after.find((token) => token.id === withdrawn[2])?.state, 'revoked');
    assert.ok(!existsSync(join(fixture.dataDir, 'bundles', withdrawn[1]!)), 'the zip holding the secret is gone');
    assert.deepEqual(readdirSync(join(fixture.dataDir, 'bundles')).filter((name) => name.startsWith('.staging-')), [], 'no staging left, the crashed one swept');
    await appliance.process.waitForLog('install bundle withdrawn', { bundle_id: withdrawn[1], token_id: withdrawn[2], by: 'admin' });

    const unwritable = join(fixture.root, 'a-file');
    writeFileSync(unwritable, '');
    const early = bundleCli(base(join(unwritable, 'out')));
    assert.equal(early.code, 73, early.stderr);
    assert.equal((await tokens()).length, before + 1, 'an unusable --out is refused before the appliance builds: no token');
  });
});

test('the admin client sends its credential only to the appliance: a link to another origin is refused before any connection', async () => {
  const fixture = await createFixtureAppliance();
  try {
    writeFileSync(join(fixture.dataDir, 'appliance.json'), JSON.stringify({ admin_api: 'https://127.0.0.1:1', grpc_port: 1, pid: 1 }));
    writeFileSync(join(fixture.dataDir, 'admin-cli.token'), 'credential-that-must-stay\n');
    const { AdminClient } = await import('../appliance/cli/admin-client.ts');
    const client = new AdminClient(fixture.dataDir);
    for (const link of ['https://elsewhere.example/api/v1/bundles/bnd_0123456789abcdef0123', '//elsewhere.example/x', 'http://127.0.0.1:1/x', 'https://127.0.0.1:2/x']) {
      await assert.rejects(client.download(link), { code: 'ERR_INTERNAL', message: /outside https:\/\/127\.0\.0\.1:1; not following it/ }, link);
    }
    // A relative link stays with the appliance (nothing listens on port 1: unreachable, not refused as foreign).
    await assert.rejects(client.download('/api/v1/bundles/bnd_0123456789abcdef0123'), { code: 'ERR_APPLIANCE_UNREACHABLE' });
  } finally {
    rmSync(fixture.root, { recursive: true, force: true });
  }
});
