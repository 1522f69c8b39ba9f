import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePublicKeyFile } from '../common/minisign.ts';
import { verifyBundle } from '../bundler/index.ts';
import { sha256Hex } from '../bundler/lib/sha256sums.ts';
import { createFixtureAppliance, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';

function download(port: number, ca: string, path: string, bearer: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: 'localhost', port, path, method: 'GET', ca, headers: { authorization: `Bearer ${bearer}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('admin API /api/v1/bundles', () => {
  let fixture: FixtureAppliance;
  let appliance: TestAppliance;
  let bearer: string;

  before(async () => {
    fixture = await createFixtureAppliance();
    appliance = await TestAppliance.start({
      dataDir: fixture.dataDir,
      env: { CT_OPS_BUNDLE_AGENTS_DIR: fixture.agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: fixture.templatesDir },
    });
    bearer = readFileSync(join(fixture.dataDir, 'admin-cli.token'), 'utf8').trim();
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
});
