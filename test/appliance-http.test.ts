import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { seedFromPem } from '../common/ed25519-pem.ts';
import { keyIdHex, parsePublicKeyFile, publicKeyFile, signingKeyFromSeed } from '../common/minisign.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { callRegister, ingestClient, newIdentity, signedRegister } from './helpers/ingest-client.ts';

describe('the appliance HTTPS side and its key material', () => {
  let appliance: TestAppliance;
  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await appliance.dispose();
    rmSync(appliance.dataDir, { recursive: true, force: true });
  });

  test('first start keeps its keys 0600 in a 0700 data directory and names the CA that signs the server certificate', () => {
    assert.equal(statSync(appliance.dataDir).mode & 0o777, 0o700);
    for (const file of ['ca.key', 'server.key', 'jwt-signing.key', 'bundle.key', 'admin-cli.token']) {
      assert.equal(statSync(join(appliance.dataDir, file)).mode & 0o777, 0o600, file);
    }
    const ca = new X509Certificate(appliance.caCert);
    const server = new X509Certificate(readFileSync(join(appliance.dataDir, 'server.crt')));
    assert.ok(server.checkIssued(ca) && server.verify(ca.publicKey));
    assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
    assert.match(server.subjectAltName ?? '', /DNS:localhost/);
    assert.match(server.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  });

  test('the bundle public key is a minisign key whose id the appliance logs, matching its private key', () => {
    const publicKey = parsePublicKeyFile(readFileSync(join(appliance.dataDir, 'bundle.pub'), 'utf8'));
    const seed = seedFromPem(readFileSync(join(appliance.dataDir, 'bundle.key'), 'utf8'));
    assert.ok(seed);
    assert.deepEqual(signingKeyFromSeed(seed).publicKey, publicKey.publicKey);
    assert.equal(appliance.process.logged('appliance started')[0]!.bundle_key_id, keyIdHex(publicKey.keyId));
    assert.match(appliance.process.stderr, new RegExp(`minisign key id ${keyIdHex(publicKey.keyId)}`));
  });

  test('/healthz answers over TLS without credentials', async () => {
    const health = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'ok');
    assert.equal(health.body.instances, undefined, 'SQLite: one instance, no others to hear');
  });

  test('an agent JWT verifies against /.well-known/jwks.json with EdDSA and carries sub, iss, aud, iat, exp and jti', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const client = ingestClient(appliance.address, appliance.caCert);
    const registered = await callRegister(client, signedRegister(newIdentity('jwks'), token));
    client.close();
    assert.ok(registered.ok);
    const jwks = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/.well-known/jwks.json');
    const { payload } = await jwtVerify(registered.value.jwt, createLocalJWKSet(jwks.body), { algorithms: ['EdDSA'], issuer: 'ct-ops-appliance', audience: 'ct-ops-ingest' });
    assert.equal(payload.sub, registered.value.agent_id);
    assert.equal((payload.exp as number) - (payload.iat as number), 86_400);
    assert.equal(payload.exp, registered.value.jwt_expires_unix);
    assert.ok(payload.jti);
    assert.equal(decodeProtectedHeader(registered.value.jwt).kid, jwks.body.keys[0].kid);
  });

  test('the admin API refuses missing or wrong credentials and lets the first admin log in with the password shown once', async () => {
    const anonymous = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/hosts');
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error.code, 'ERR_ADMIN_UNAUTHENTICATED');
    const forged = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/hosts', { bearer: 'ctadm_forged' });
    assert.equal(forged.status, 401);
    const wrong = await httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'guess' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'ERR_LOGIN_FAILED');
    const password = /password: (\S+)/.exec(appliance.process.stderr)?.[1];
    assert.ok(password, 'the first start printed the admin password');
    assert.ok(!appliance.process.stdout.includes(password), 'the password is not in the JSON log');
    const login = await httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password } });
    assert.equal(login.status, 200);
    assert.equal(login.body.must_change_password, true, 'the password shown once must be changed');
    const held = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/hosts', { bearer: login.body.token });
    assert.equal(held.status, 403);
    assert.equal(held.body.error.code, 'ERR_PASSWORD_CHANGE_REQUIRED');
    const changed = await httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/auth/password', { bearer: login.body.token, body: { current_password: password, new_password: 'a longer passphrase of my own' } });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    const hosts = await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/api/v1/hosts', { bearer: login.body.token });
    assert.equal(hosts.status, 200);
    assert.ok(Array.isArray(hosts.body));
  });

  test('a malformed admin request body is refused with ERR_INVALID_ARGUMENT', async () => {
    const credential = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    const bad = await httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/tokens', { bearer: credential, body: { max_uses: 0, surprise: true } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'ERR_INVALID_ARGUMENT');
  });

  test('a restart reuses the CA, JWT key and admin, and reissues the server certificate only when the SANs change', async () => {
    const caBefore = appliance.caCert;
    const serverBefore = readFileSync(join(appliance.dataDir, 'server.crt'), 'utf8');
    const kidBefore = (await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/.well-known/jwks.json')).body.keys[0].kid;
    await appliance.stop();
    const same = await TestAppliance.start({ dataDir: appliance.dataDir });
    assert.equal(same.caCert, caBefore);
    assert.equal(readFileSync(join(appliance.dataDir, 'server.crt'), 'utf8'), serverBefore);
    assert.equal((await httpsJson(same.httpPort, same.caCert, 'GET', '/.well-known/jwks.json')).body.keys[0].kid, kidBefore);
    assert.ok(!same.process.stderr.includes('password:'), 'the admin password is shown on the first start only');
    await same.stop();
    const releaseKey = signingKeyFromSeed(Buffer.alloc(32, 7));
    const releaseFile = join(appliance.dataDir, '..', `release-${process.pid}.pub`);
    writeFileSync(releaseFile, publicKeyFile(releaseKey));
    const renamed = await TestAppliance.start({ dataDir: appliance.dataDir, args: ['--san', 'appliance.example', '--release-public-key-file', releaseFile] });
    rmSync(releaseFile);
    assert.equal(readFileSync(join(appliance.dataDir, 'release.pub'), 'utf8'), publicKeyFile(releaseKey), 'the configured release key is kept in the data directory');
    assert.equal(renamed.process.logged('appliance started')[0]!.release_key_id, keyIdHex(releaseKey.keyId));
    const reissued = new X509Certificate(readFileSync(join(appliance.dataDir, 'server.crt')));
    assert.match(reissued.subjectAltName ?? '', /DNS:appliance\.example/);
    assert.equal(renamed.caCert, caBefore);
    await renamed.stop();
    appliance = await TestAppliance.start({ dataDir: appliance.dataDir });
  });
});
