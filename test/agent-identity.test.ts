import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import nacl from 'tweetnacl';
import { publicKeyFromPem, publicKeyToPem, seedFromPem } from '../common/ed25519-pem.ts';
import { CtOpsError } from '../common/errors.ts';
import { machineFingerprint } from '../agent/identity/fingerprint.ts';
import { jwtExpiry } from '../agent/identity/jwt-expiry.ts';
import { loadIdentity } from '../agent/identity/load.ts';
import { identityPaths } from '../agent/identity/paths.ts';
import { readAgentState, writeAgentState } from '../agent/identity/state.ts';
import { createLogger } from '../agent/log/logger.ts';
import { linuxMachineId } from '../agent/platform/machine-id/linux.ts';
import { machineIdSourceFor } from '../agent/platform/machine-id/index.ts';

function capturingLogger() {
  const events: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      events.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: createLogger('debug', sink), events, messages: () => events.map((event) => event.msg) };
}

function withDir(run: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-agent-identity-'));
  try {
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const posix = process.platform !== 'win32';
const mode = (path: string) => statSync(path).mode & 0o777;

function fakeJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part(claims)}.c2ln`;
}

test('a first start creates data_dir 0700 with agent_key.pem 0600 and agent_key.pub 0644', () => {
  withDir((dir) => {
    const dataDir = join(dir, 'nested', 'agent');
    const identity = loadIdentity(dataDir, capturingLogger().log);
    const paths = identityPaths(dataDir);
    assert.ok(existsSync(paths.privateKey) && existsSync(paths.publicKey));
    assert.equal(existsSync(paths.state), false);
    assert.equal(identity.credential, undefined);
    assert.equal(identity.keys.publicKey.length, 32);
    assert.equal(identity.keys.secretKey.length, 64);
    if (posix) {
      assert.equal(mode(dataDir), 0o700);
      assert.equal(mode(paths.privateKey), 0o600);
      assert.equal(mode(paths.publicKey), 0o644);
    }
    assert.deepEqual(readdirSync(dataDir).sort(), ['agent_key.pem', 'agent_key.pub'], 'no temporary files are left behind');
  });
});

test('the key files are standard PKCS#8 / SPKI PEM that OpenSSL reads', () => {
  withDir((dir) => {
    const identity = loadIdentity(dir, capturingLogger().log);
    const paths = identityPaths(dir);
    execFileSync('openssl', ['pkey', '-in', paths.privateKey, '-noout'], { stdio: 'pipe' });
    execFileSync('openssl', ['pkey', '-pubin', '-in', paths.publicKey, '-noout'], { stdio: 'pipe' });
    const derivedPub = execFileSync('openssl', ['pkey', '-in', paths.privateKey, '-pubout'], { encoding: 'utf8' });
    assert.deepEqual(publicKeyFromPem(derivedPub), identity.keys.publicKey, 'OpenSSL derives the same public key');
    assert.equal(readFileSync(paths.publicKey, 'utf8'), derivedPub);
  });
});

test('a restart reuses the same key pair', () => {
  withDir((dir) => {
    const first = loadIdentity(dir, capturingLogger().log);
    const second = loadIdentity(dir, capturingLogger().log);
    assert.deepEqual(second.keys.publicKey, first.keys.publicKey);
    assert.deepEqual(second.keys.secretKey, first.keys.secretKey);
  });
});

test('the key pair signs what tweetnacl verifies with the saved public key', () => {
  withDir((dir) => {
    const identity = loadIdentity(dir, capturingLogger().log);
    const message = new TextEncoder().encode('proof');
    const signature = nacl.sign.detached(message, identity.keys.secretKey);
    const savedPublic = publicKeyFromPem(readFileSync(identityPaths(dir).publicKey, 'utf8'));
    assert.ok(savedPublic && nacl.sign.detached.verify(message, signature, savedPublic));
  });
});

test('a damaged agent_key.pem is fatal and is never replaced by a new identity', () => {
  withDir((dir) => {
    loadIdentity(dir, capturingLogger().log);
    const paths = identityPaths(dir);
    writeFileSync(paths.privateKey, '-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n');
    assert.throws(
      () => loadIdentity(dir, capturingLogger().log),
      (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_DATA_DIR_UNUSABLE' && /duplicate host/.test(error.message) && error.message.includes(paths.privateKey),
    );
    assert.match(readFileSync(paths.privateKey, 'utf8'), /Z2FyYmFnZQ==/, 'the damaged file is left for the admin');
  });
});

test('a missing or mismatched agent_key.pub is rewritten from the private key', () => {
  withDir((dir) => {
    const identity = loadIdentity(dir, capturingLogger().log);
    const paths = identityPaths(dir);
    rmSync(paths.publicKey);
    loadIdentity(dir, capturingLogger().log);
    assert.deepEqual(publicKeyFromPem(readFileSync(paths.publicKey, 'utf8')), identity.keys.publicKey);
    writeFileSync(paths.publicKey, publicKeyToPem(nacl.sign.keyPair().publicKey));
    const logger = capturingLogger();
    loadIdentity(dir, logger.log);
    assert.deepEqual(publicKeyFromPem(readFileSync(paths.publicKey, 'utf8')), identity.keys.publicKey);
    assert.ok(logger.messages().includes('public key file did not match the private key; rewritten'));
  });
});

test('agent_state.json round-trips atomically with mode 0600', () => {
  withDir((dir) => {
    const paths = identityPaths(dir);
    const logger = capturingLogger();
    writeAgentState(paths, { agentId: 'hst_1', jwt: 'a.b.c', jwtExpiresUnix: 1_900_000_000 });
    assert.deepEqual(JSON.parse(readFileSync(paths.state, 'utf8')), { agent_id: 'hst_1', jwt: 'a.b.c', jwt_expires_unix: 1_900_000_000 });
    assert.deepEqual(readAgentState(paths, logger.log), { agentId: 'hst_1', jwt: 'a.b.c', jwtExpiresUnix: 1_900_000_000 });
    if (posix) assert.equal(mode(paths.state), 0o600);
    assert.deepEqual(readdirSync(dir), ['agent_state.json']);
  });
});

test('a damaged agent_state.json is warned about and treated as absent; the key is kept', () => {
  withDir((dir) => {
    const first = loadIdentity(dir, capturingLogger().log);
    for (const damaged of ['{not json', '{"agent_id": 5}', 'null', '[]']) {
      writeFileSync(identityPaths(dir).state, damaged);
      const logger = capturingLogger();
      const identity = loadIdentity(dir, logger.log);
      assert.equal(identity.credential, undefined, damaged);
      assert.deepEqual(identity.keys.publicKey, first.keys.publicKey);
      assert.ok(logger.events.some((event) => event.level === 'warn' && event.msg === 'agent state file is damaged; registering again by key'));
    }
  });
});

test('a state file whose key was deleted is discarded with the old identity', () => {
  withDir((dir) => {
    const paths = identityPaths(dir);
    loadIdentity(dir, capturingLogger().log);
    writeAgentState(paths, { agentId: 'hst_old', jwt: 'a.b.c', jwtExpiresUnix: 1 });
    rmSync(paths.privateKey);
    const logger = capturingLogger();
    const identity = loadIdentity(dir, logger.log);
    assert.equal(identity.credential, undefined);
    assert.equal(existsSync(paths.state), false);
    assert.ok(logger.messages().includes('agent state belongs to a deleted key; discarding it'));
  });
});

test('the JWT expiry is read from its exp claim when the state file has none', () => {
  withDir((dir) => {
    const paths = identityPaths(dir);
    const jwt = fakeJwt({ sub: 'hst_1', exp: 1_800_000_000 });
    writeFileSync(paths.state, JSON.stringify({ agent_id: 'hst_1', jwt }));
    assert.equal(readAgentState(paths, capturingLogger().log)?.jwtExpiresUnix, 1_800_000_000);
  });
  assert.equal(jwtExpiry('not-a-jwt'), undefined);
  assert.equal(jwtExpiry(fakeJwt({ sub: 'x' })), undefined);
});

test('the machine fingerprint is the SHA-256 of the machine id; CT_OPS_MACHINE_ID_FILE simulates clones', () => {
  withDir((dir) => {
    const file = join(dir, 'machine-id');
    writeFileSync(file, 'abc123\n');
    const logger = capturingLogger();
    const env = { CT_OPS_MACHINE_ID_FILE: file };
    const expected = createHash('sha256').update('abc123').digest('hex');
    assert.equal(machineFingerprint(linuxMachineId, env, logger.log), expected);
    writeFileSync(file, 'def456\n');
    assert.notEqual(machineFingerprint(linuxMachineId, env, logger.log), expected, 'a different machine id is a different machine');
    assert.deepEqual(logger.events, []);
  });
});

test('without a machine id the hostname is fingerprinted, with a warning', () => {
  withDir((dir) => {
    const logger = capturingLogger();
    const fingerprint = machineFingerprint(linuxMachineId, { CT_OPS_MACHINE_ID_FILE: join(dir, 'absent') }, logger.log);
    assert.equal(fingerprint, createHash('sha256').update(hostname()).digest('hex'));
    assert.ok(logger.events.some((event) => event.level === 'warn' && event.msg === 'no machine identifier found; fingerprinting the hostname instead'));
  });
});

test('one machine-id source is chosen per platform', () => {
  assert.equal(machineIdSourceFor('linux')?.name, 'machine-id');
  assert.equal(machineIdSourceFor('darwin')?.name, 'IOPlatformUUID');
  assert.equal(machineIdSourceFor('win32')?.name, 'MachineGuid');
  assert.equal(machineIdSourceFor('aix'), undefined);
});

test('a seed survives the PEM round trip', () => {
  withDir((dir) => {
    const identity = loadIdentity(dir, capturingLogger().log);
    assert.deepEqual(seedFromPem(readFileSync(identityPaths(dir).privateKey, 'utf8')), identity.keys.secretKey.subarray(0, 32));
  });
});
