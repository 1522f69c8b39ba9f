import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import nacl from 'tweetnacl';
import { CtOpsError, GrpcCode } from '../common/errors.ts';
import type { RegisterRequest, RegisterResponse__Output } from '../common/proto.ts';
import { registerPayload } from '../common/register-payload.ts';
import { createLogger } from '../agent/log/logger.ts';
import { attemptRegistration, type RegistrationDeps } from '../agent/registration/attempt.ts';
import { clampRetryAfter, outcomeOfFailure, outcomeOfResponse } from '../agent/registration/outcome.ts';
import { buildRegisterRequest, osName, type HostDescription } from '../agent/registration/request.ts';
import { rpcFailure } from '../agent/transport/failure.ts';
import type { ChallengeResult, IngestTransport, RegisterResult } from '../agent/transport/types.ts';

const pair = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7));
const keys = { publicKey: pair.publicKey, secretKey: pair.secretKey };
const host: HostDescription = { hostname: 'web-1', machineFingerprint: 'f'.repeat(64), os: 'linux', arch: 'x64', agentVersion: '0.1.0', tags: { zone: 'b', env: 'prod' } };
const tlsError = (reason: string) => new CtOpsError('ERR_INGEST_TLS_UNTRUSTED', `untrusted: ${reason}`);

function response(fields: Partial<RegisterResponse__Output>): RegisterResponse__Output {
  return { agent_id: 'hst_1', status: 'AGENT_STATUS_PENDING', jwt: '', jwt_expires_unix: 0, retry_after_secs: 0, message: '', ...fields };
}

function verifies(request: RegisterRequest): boolean {
  const payload = registerPayload({
    publicKey: request.public_key as Uint8Array,
    orgToken: request.org_token ?? '',
    hostname: request.hostname ?? '',
    machineFingerprint: request.machine_fingerprint ?? '',
    os: request.os ?? '',
    arch: request.arch ?? '',
    agentVersion: request.agent_version ?? '',
    tags: request.tags ?? {},
    ...(request.register_challenge ? { challenge: request.register_challenge as Uint8Array } : { timestampUnixMs: Number(request.timestamp_unix_ms), nonce: request.nonce as Uint8Array }),
  });
  return nacl.sign.detached.verify(payload, request.signature as Uint8Array, request.public_key as Uint8Array);
}

test('a Register request carries every field and a signature over the canonical payload with the challenge, and no timestamp', () => {
  const challenge = new Uint8Array(57).fill(3);
  const request = buildRegisterRequest(host, keys, 'tok_1', { challenge });
  assert.deepEqual(new Uint8Array(request.register_challenge as Buffer), challenge);
  assert.equal(request.timestamp_unix_ms, undefined);
  assert.equal(request.nonce, undefined);
  assert.ok(verifies(request));
  assert.equal(verifies({ ...request, register_challenge: Buffer.alloc(57, 4) }), false, 'the challenge is signed');
});

test('the legacy Register request (an appliance without challenges) carries every field and a signature over the canonical payload', () => {
  const nonce = new Uint8Array(16).fill(9);
  const request = buildRegisterRequest(host, keys, 'tok_1', { timestampUnixMs: 1_700_000_000_123, nonce });
  assert.deepEqual(new Uint8Array(request.public_key as Buffer), pair.publicKey);
  assert.equal(request.org_token, 'tok_1');
  assert.equal(request.hostname, 'web-1');
  assert.equal(request.timestamp_unix_ms, 1_700_000_000_123);
  assert.deepEqual(new Uint8Array(request.nonce as Buffer), nonce);
  assert.deepEqual(request.tags, { zone: 'b', env: 'prod' });
  assert.equal((request.signature as Buffer).length, 64);
  assert.ok(verifies(request));
});

test('a signature does not survive a changed field (token, tags or timestamp)', () => {
  const request = buildRegisterRequest(host, keys, 'tok_1', { timestampUnixMs: 1, nonce: new Uint8Array(16) });
  assert.equal(verifies({ ...request, org_token: 'tok_2' }), false);
  assert.equal(verifies({ ...request, tags: { env: 'dev', zone: 'b' } }), false);
  assert.equal(verifies({ ...request, timestamp_unix_ms: 2 }), false);
});

test("the install bundle the agent claims (agent.toml install_bundle_id) rides outside the signed payload; none sent when not configured", () => {
  const challenge = new Uint8Array(57).fill(3);
  const claimed = buildRegisterRequest({ ...host, installBundleId: 'bnd_0123456789abcdef0123' }, keys, 'tok_1', { challenge });
  assert.equal(claimed.install_bundle_id, 'bnd_0123456789abcdef0123');
  assert.ok(verifies(claimed));
  assert.ok(verifies({ ...claimed, install_bundle_id: '' }), 'the claim is not signed: the same signature without it');
  assert.equal(buildRegisterRequest(host, keys, 'tok_1', { challenge }).install_bundle_id, undefined);
});

test('os names follow the appliance: linux, darwin, windows', () => {
  assert.equal(osName('linux'), 'linux');
  assert.equal(osName('darwin'), 'darwin');
  assert.equal(osName('win32'), 'windows');
});

test('ACTIVE with a JWT is active; ACTIVE without one is treated as pending', () => {
  assert.deepEqual(outcomeOfResponse(response({ status: 'AGENT_STATUS_ACTIVE', jwt: 'a.b.c', jwt_expires_unix: 99 })), { kind: 'active', agentId: 'hst_1', jwt: 'a.b.c', jwtExpiresUnix: 99 });
  assert.equal(outcomeOfResponse(response({ status: 'AGENT_STATUS_ACTIVE' })).kind, 'pending');
});

test('REVOKED and REJECTED stop the agent', () => {
  assert.equal(outcomeOfResponse(response({ status: 'AGENT_STATUS_REVOKED' })).kind, 'refused');
  assert.equal(outcomeOfResponse(response({ status: 'AGENT_STATUS_REJECTED' })).kind, 'refused');
});

test('an unexpected status (unspecified, or one this agent does not know) is waited out like pending, never an exit', () => {
  for (const status of ['AGENT_STATUS_UNSPECIFIED', 'AGENT_STATUS_OFFLINE', '7'] as RegisterResponse__Output['status'][]) {
    const outcome = outcomeOfResponse(response({ status, retry_after_secs: 12 }));
    assert.equal(outcome.kind, 'pending', String(status));
    assert.ok(outcome.kind === 'pending' && outcome.retryAfterSecs === 12);
  }
});

test('retry_after_secs defaults to 30 and is clamped to 1–3600', () => {
  assert.equal(clampRetryAfter(0), 30);
  assert.equal(clampRetryAfter(-4), 30);
  assert.equal(clampRetryAfter(0.2), 1);
  assert.equal(clampRetryAfter(5), 5);
  assert.equal(clampRetryAfter(99_999), 3600);
});

test('every refused-token code is fatal with exit code 78 and names the setting to fix', () => {
  for (const code of ['ERR_TOKEN_INVALID', 'ERR_TOKEN_EXPIRED', 'ERR_TOKEN_REVOKED', 'ERR_TOKEN_EXHAUSTED', 'ERR_TOKEN_REQUIRED'] as const) {
    const outcome = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAUTHENTICATED, details: `${code}: nope` }), { tlsError });
    assert.equal(outcome.kind, 'fatal', code);
    assert.ok(outcome.kind === 'fatal' && outcome.error.code === code && outcome.error.exitCode === 78);
    assert.ok(outcome.kind === 'fatal' && /org_token or CT_OPS_ORG_TOKEN/.test(outcome.error.message));
  }
});

test('an untrusted certificate is fatal ERR_INGEST_TLS_UNTRUSTED; plain unavailability is retried', () => {
  for (const details of ['No connection established. Last error: Error: self-signed certificate in certificate chain', "Hostname/IP does not match certificate's altnames: Host: x", 'SSL routines::wrong version number', 'Client network socket disconnected before secure TLS connection was established: handshake']) {
    const outcome = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAVAILABLE, details }), { tlsError });
    assert.ok(outcome.kind === 'fatal' && outcome.error.code === 'ERR_INGEST_TLS_UNTRUSTED' && outcome.error.exitCode === 78, details);
  }
  const refused = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAVAILABLE, details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:9443' }), { tlsError });
  assert.equal(refused.kind, 'retry');
});

test('a certificate not valid at the host clock (expired, not yet valid) is retried as a clock problem, never fatal', () => {
  for (const details of ['No connection established. Last error: Error: certificate is not yet valid', 'No connection established. Last error: Error: certificate has expired', 'CERT_NOT_YET_VALID', 'Error: CRL has expired']) {
    const outcome = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAVAILABLE, details }), { tlsError });
    assert.deepEqual(outcome.kind === 'retry' && [outcome.certificateTime, outcome.clockSkew], [true, true], details);
  }
});

test('a stale timestamp is retried and flagged as clock skew; a replay is retried', () => {
  const stale = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAUTHENTICATED, details: 'ERR_REGISTER_STALE: too old' }), { tlsError });
  assert.deepEqual(stale.kind === 'retry' && [stale.clockSkew, stale.failure.errorCode], [true, 'ERR_REGISTER_STALE']);
  const replayed = outcomeOfFailure(rpcFailure({ code: GrpcCode.UNAUTHENTICATED, details: 'ERR_REGISTER_REPLAYED: seen' }), { tlsError });
  assert.deepEqual(replayed.kind === 'retry' && replayed.clockSkew, false);
});

/** The appliance's answer to GetRegisterChallenge: a new challenge each time, issued by a clock two days behind the host's. */
function challengeFrom(counter: () => number): () => Promise<ChallengeResult> {
  return async () => ({ ok: true, response: { challenge: Buffer.alloc(57, counter()), expires_in_ms: 120_000, appliance_time_unix_ms: 1_700_000_000_000 - 2 * 86_400_000 } });
}

function recordingTransport(answers: RegisterResult[], getRegisterChallenge = challengeFrom(((next) => () => ++next)(0))): { transport: IngestTransport; requests: RegisterRequest[] } {
  const requests: RegisterRequest[] = [];
  const transport: IngestTransport = {
    getRegisterChallenge,
    register: async (request) => {
      requests.push(request);
      const answer = answers.shift();
      assert.ok(answer, 'unexpected Register call');
      return answer;
    },
    openHeartbeat: () => assert.fail('no stream expected'),
    submitInventory: () => assert.fail('no inventory expected'),
    close: () => undefined,
  };
  return { transport, requests };
}

function deps(transport: IngestTransport, orgToken: string): RegistrationDeps {
  let counter = 0;
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  return {
    transport,
    keys,
    host,
    orgToken,
    address: { target: 'ingest:9443', unicodeTarget: 'ingest:9443' },
    log: createLogger('silent', sink),
    now: () => 1_700_000_000_000 + counter,
    nonce: () => new Uint8Array(16).fill(++counter),
    tlsError,
  };
}

const ACTIVE: RegisterResult = { ok: true, response: response({ status: 'AGENT_STATUS_ACTIVE', jwt: 'a.b.c', jwt_expires_unix: 5 }) };
const TOKEN_REQUIRED: RegisterResult = { ok: false, failure: rpcFailure({ code: GrpcCode.UNAUTHENTICATED, details: 'ERR_TOKEN_REQUIRED: unknown key' }) };

test('first enrolment sends the configured token', async () => {
  const { transport, requests } = recordingTransport([ACTIVE]);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), false)).kind, 'active');
  assert.equal(requests[0]?.org_token, 'tok_1');
});

test('a known key registers without the token', async () => {
  const { transport, requests } = recordingTransport([ACTIVE]);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), true)).kind, 'active');
  assert.equal(requests[0]?.org_token, '');
});

test('ERR_TOKEN_REQUIRED for a key thought known retries once with the token, freshly signed', async () => {
  const { transport, requests } = recordingTransport([TOKEN_REQUIRED, ACTIVE]);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), true)).kind, 'active');
  assert.deepEqual(requests.map((request) => request.org_token), ['', 'tok_1']);
  assert.notDeepEqual(requests[0]?.register_challenge, requests[1]?.register_challenge, 'each request has its own challenge');
  assert.ok(requests.every(verifies));
});

test("the agent signs the appliance's challenge and sends no timestamp: its own clock (two days ahead here) plays no part", async () => {
  const { transport, requests } = recordingTransport([ACTIVE]);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), false)).kind, 'active');
  assert.equal((requests[0]?.register_challenge as Buffer).length, 57);
  assert.equal(requests[0]?.timestamp_unix_ms, undefined);
  assert.ok(verifies(requests[0]!));
});

test('an appliance without GetRegisterChallenge (UNIMPLEMENTED) gets the legacy form: timestamp and nonce', async () => {
  const unimplemented = async (): Promise<ChallengeResult> => ({ ok: false, failure: rpcFailure({ code: GrpcCode.UNIMPLEMENTED, details: 'The server does not implement the method GetRegisterChallenge' }) });
  const { transport, requests } = recordingTransport([ACTIVE], unimplemented);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), false)).kind, 'active');
  assert.equal(requests[0]?.timestamp_unix_ms, 1_700_000_000_000);
  assert.equal(requests[0]?.register_challenge, undefined);
  assert.ok(verifies(requests[0]!));
});

test('a challenge the appliance could not give (unreachable) ends the attempt as a retry, with no Register sent', async () => {
  const unreachable = async (): Promise<ChallengeResult> => ({ ok: false, failure: rpcFailure({ code: GrpcCode.UNAVAILABLE, details: 'connect ECONNREFUSED 127.0.0.1:9443' }) });
  const { transport, requests } = recordingTransport([], unreachable);
  assert.equal((await attemptRegistration(deps(transport, 'tok_1'), false)).kind, 'retry');
  assert.equal(requests.length, 0);
});

test('ERR_TOKEN_REQUIRED with no token configured is fatal exit 78', async () => {
  const { transport, requests } = recordingTransport([TOKEN_REQUIRED]);
  const outcome = await attemptRegistration(deps(transport, ''), true);
  assert.ok(outcome.kind === 'fatal' && outcome.error.code === 'ERR_TOKEN_REQUIRED' && outcome.error.exitCode === 78);
  assert.equal(requests.length, 1);
});
