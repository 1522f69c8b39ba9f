/**
 * The install bundles on record (issue 13, "Install bundles"): every bundle the running appliance
 * builds, whatever its token mode, is listed by GET /api/v1/bundles with who built it, its token and
 * the fingerprints to compare at the transfer station (the SHA-256 is the downloaded zip's, by
 * sha256sum); a withdrawn one stays listed as withdrawn; an agent that registers with the bundle id
 * from the bundle's agent.toml counts as enrolled from it, and a malformed claim is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parse as parseToml } from 'smol-toml';
import type { IngestServiceClient } from '../common/proto.ts';
import type { BundleRecordView } from '../appliance/http/admin-bundles.ts';
import { createFixtureAppliance, fixtureAdminCredential, fixtureBuildEnv, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsDownload, httpsJson } from './helpers/https.ts';
import { callGetRegisterChallenge, callRegister, challengedRegister, ingestClient, newIdentity } from './helpers/ingest-client.ts';

describe('GET /api/v1/bundles: the chain of custody from bundle to host', () => {
  let fixture: FixtureAppliance;
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  let bearer: string;
  /** What POST /api/v1/bundles answered for each token mode. */
  const built: Record<'new' | 'existing' | 'none', any> = {} as never;
  let existingToken: { id: string; token: string };

  before(async () => {
    fixture = await createFixtureAppliance();
    appliance = await TestAppliance.start({ dataDir: fixture.dataDir, env: fixtureBuildEnv(fixture) });
    bearer = fixtureAdminCredential(fixture);
    client = ingestClient(appliance.address, appliance.caCert);

    const token = await call('POST', '/api/v1/tokens', { label: 'ops', expires_in_secs: 3600, max_uses: 5 });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    existingToken = { id: token.body.id, token: token.body.token };
    const requests = {
      new: { os: 'linux', arch: 'x64', address: 'ingest.example:9443', tags: { site: 'lab' }, label: 'rack 4' },
      existing: { os: 'linux', arch: 'arm64', address: ['ingest.example:9443', '10.0.0.2:9443'], token: existingToken.id, token_secret: existingToken.token },
      none: { os: 'windows', arch: 'x64', address: 'ingest.example:9443', token: 'none' },
    };
    for (const mode of ['new', 'existing', 'none'] as const) {
      const answer = await call('POST', '/api/v1/bundles', requests[mode]);
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      built[mode] = answer.body;
    }
  });
  after(async () => {
    client?.close();
    await appliance?.dispose();
    rmSync(fixture.root, { recursive: true, force: true });
  });

  const call = (method: string, path: string, body?: unknown) => httpsJson(appliance.httpPort, appliance.caCert, method, path, { ...(body !== undefined ? { body } : {}), bearer });
  const listed = async (query = ''): Promise<{ bundles: BundleRecordView[]; total: number }> => {
    const answer = await call('GET', `/api/v1/bundles${query}`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return { bundles: answer.body, total: Number(answer.headers['x-total-count']) };
  };
  const listedOne = async (bundleId: string): Promise<BundleRecordView> => {
    const found = (await listed()).bundles.find((bundle) => bundle.bundle_id === bundleId);
    assert.ok(found, `${bundleId} is listed`);
    return found;
  };
  /** The zip as an operator downloads it, written to a file. */
  const downloaded = async (bundleId: string, file: string): Promise<string> => {
    const zip = await httpsDownload(appliance.httpPort, appliance.caCert, `/api/v1/bundles/${bundleId}`, bearer);
    assert.equal(zip.status, 200);
    const path = join(fixture.root, `${bundleId}-${file}`);
    writeFileSync(path, zip.body);
    return path;
  };

  test('a bundle of each token mode is listed newest first with who built it, its token and the fingerprints; the SHA-256 is sha256sum of the downloaded zip', async () => {
    const { bundles, total } = await listed();
    assert.equal(total, 3);
    assert.deepEqual(bundles.map((bundle) => bundle.bundle_id), [built.none.bundle_id, built.existing.bundle_id, built.new.bundle_id]);
    for (const mode of ['new', 'existing', 'none'] as const) {
      const answer = built[mode];
      const bundle = bundles.find((candidate) => candidate.bundle_id === answer.bundle_id)!;
      assert.deepEqual(
        { ...bundle, tags: undefined, label: undefined },
        {
          bundle_id: answer.bundle_id,
          created_at: answer.created_at,
          created_by: 'admin',
          os: answer.os,
          arch: answer.arch,
          agent_version: '0.1.0',
          ingest_addresses: answer.ingest_addresses ?? [answer.ingest_address],
          tags: undefined,
          label: undefined,
          token: { mode, id: answer.token.id ?? null },
          file: answer.file,
          size: answer.size,
          sha256: answer.sha256,
          bundle_key_id: answer.bundle_key_id,
          ca_fingerprint_sha256: answer.ca_fingerprint_sha256,
          hosts_enrolled: 0,
          last_host: null,
          withdrawn_at: null,
          withdrawn_by: null,
        },
        mode,
      );
      const path = await downloaded(answer.bundle_id, answer.file);
      assert.equal(execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0], bundle.sha256, `${mode}: the SHA-256 to compare at the transfer station is the zip's`);
      assert.equal(readFileSync(path).length, bundle.size);
    }
    assert.equal(built.existing.token.id, existingToken.id);
    assert.deepEqual(bundles.find((bundle) => bundle.bundle_id === built.new.bundle_id)!.tags, { site: 'lab' });
    assert.equal(bundles.find((bundle) => bundle.bundle_id === built.new.bundle_id)!.label, 'rack 4');

    const middle = await listed('?limit=1&offset=1');
    assert.deepEqual([middle.bundles.map((bundle) => bundle.bundle_id), middle.total], [[built.existing.bundle_id], 3], 'a page, with the total of all');
    assert.equal((await call('GET', '/api/v1/bundles?limit=0')).status, 400);
  });

  test('an agent registering with the bundle id of its agent.toml counts as enrolled from that bundle; a malformed claim is refused as an invalid argument', async () => {
    const zip = await downloaded(built.new.bundle_id, built.new.file);
    const agentToml = parseToml(execFileSync('unzip', ['-p', zip, `${built.new.file.replace(/\.zip$/, '')}/agent.toml`], { encoding: 'utf8' })) as { agent: { org_token: string; install_bundle_id: string } };
    assert.equal(agentToml.agent.install_bundle_id, built.new.bundle_id, 'the bundler writes the bundle id into agent.toml');

    const register = async (orgToken: string, installBundleId: string) => {
      const challenge = await callGetRegisterChallenge(client);
      assert.ok(challenge.ok, JSON.stringify(challenge));
      return callRegister(client, challengedRegister(newIdentity('bundled-host'), orgToken, challenge.value.challenge, { install_bundle_id: installBundleId }));
    };
    for (const malformed of ['bnd_123', 'etk_0123456789abcdef0123', `${built.existing.bundle_id} `]) {
      const refused = await register(existingToken.token, malformed);
      assert.ok(!refused.ok && refused.code === grpc.status.INVALID_ARGUMENT, `${JSON.stringify(malformed)}: ${JSON.stringify(refused)}`);
      assert.match(refused.details, /install_bundle_id/);
    }

    const registered = await register(agentToml.agent.org_token, agentToml.agent.install_bundle_id);
    assert.ok(registered.ok, JSON.stringify(registered));
    const hostId = registered.value.agent_id;
    const bundle = await listedOne(built.new.bundle_id);
    assert.equal(bundle.hosts_enrolled, 1);
    assert.equal(bundle.last_host?.id, hostId);
    assert.equal(bundle.last_host?.hostname, 'bundled-host');
    const host = await call('GET', `/api/v1/hosts/${hostId}`);
    assert.equal(host.body.install_bundle_id, built.new.bundle_id, "the host shows the bundle it claimed");
    const tokens = (await call('GET', '/api/v1/tokens')).body as { id: string; uses: number }[];
    assert.equal(tokens.find((token) => token.id === existingToken.id)?.uses, 0, 'the refused registrations took no use of their token');
  });

  test('a withdrawn bundle stays listed as withdrawn, by whom; withdrawing it again finds no bundle', async () => {
    const withdrawn = await call('DELETE', `/api/v1/bundles/${built.none.bundle_id}`);
    assert.equal(withdrawn.status, 204);
    const bundle = await listedOne(built.none.bundle_id);
    assert.equal(bundle.withdrawn_by, 'admin');
    assert.ok(bundle.withdrawn_at !== null && Math.abs(Date.parse(bundle.withdrawn_at) - Date.now()) < 60_000, String(bundle.withdrawn_at));
    assert.equal((await listedOne(built.existing.bundle_id)).withdrawn_at, null, 'the others stand');
    const again = await call('DELETE', `/api/v1/bundles/${built.none.bundle_id}`);
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'ERR_BUNDLE_NOT_FOUND');
    const zip = await httpsDownload(appliance.httpPort, appliance.caCert, `/api/v1/bundles/${built.none.bundle_id}`, bearer);
    assert.equal(zip.status, 404, 'its zip is gone');
    assert.equal((await listed()).total, 3);
  });
});
