import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { Backoff, RETRY_FLOOR_MS } from '../agent/lifecycle/backoff.ts';
import { outcomeOfFailure } from '../agent/registration/outcome.ts';
import { rpcFailure } from '../agent/transport/failure.ts';
import { AgentJwtAuthority } from '../appliance/auth/agent-jwt.ts';
import { RegisterChallenges } from '../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest } from '../appliance/enrolment/register-input.ts';
import { register, REGISTER_CLOCK_SKEW_MS } from '../appliance/enrolment/register.ts';
import { createEnrolmentToken } from '../appliance/enrolment/tokens.ts';
import { peerSource } from '../appliance/lib/peer-source.ts';
import { ensureJwtSigningKey } from '../appliance/pki/jwt-signing-key.ts';
import { openStores } from '../appliance/store/index.ts';
import { NONCE_PRUNE_BATCH } from '../appliance/store/register-nonces.ts';
import { CtOpsError, GrpcCode } from '../common/errors.ts';
import { MAX_RETRY_AFTER_MS, parseRetryAfterMs, RETRY_AFTER_MS_METADATA } from '../common/retry-hint.ts';
import { decodedRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-register-throttle-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function nonceRows(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS rows FROM register_nonces').get() as { rows: number }).rows;
  } finally {
    db.close();
  }
}

test('a refused Register records nothing: bad, used-up and missing tokens and retired keys are decided before the nonce; a known key still needs no token', async () => {
  const path = join(dir, 'refusals.db');
  const stores = openStores(path);
  const org = await stores.organisations.ensureDefault(Date.now());
  const jwtKey = await ensureJwtSigningKey(dir);
  const deps = { stores, jwt: new AgentJwtAuthority(jwtKey, 3600), challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log: pino({ level: 'silent' }) };
  const now = Date.now();
  const tokenRequest = { label: 't', expiresInMs: 60_000, maxUses: 1, autoApprove: true, tags: {}, createdBy: 'test', source: 'admin', metadata: {} };
  const single = await createEnrolmentToken(stores, org.id, tokenRequest, now);
  const attempt = (orgToken: string, identity = newIdentity(), at = now) => register(parseRegisterRequest(decodedRegister(signedRegister(identity, orgToken, {}, at))), deps, at);
  const refusedWith = async (code: string, registering: Promise<unknown>) =>
    assert.rejects(registering, (error: unknown) => error instanceof CtOpsError && error.code === code);
  try {
    const enrolled = newIdentity('enrolled');
    await attempt(single.secret, enrolled);
    assert.equal(nonceRows(path), 1);

    await refusedWith('ERR_TOKEN_INVALID', attempt('tok_made_up'));
    await refusedWith('ERR_TOKEN_REQUIRED', attempt(''));
    await refusedWith('ERR_TOKEN_EXHAUSTED', attempt(single.secret));
    const retired = newIdentity('retired');
    const other = await createEnrolmentToken(stores, org.id, { ...tokenRequest, maxUses: 5 }, now);
    const retiredHost = await attempt(other.secret, retired);
    assert.ok(retiredHost.agent_id);
    await stores.hosts.markDeleted(retiredHost.agent_id, now, 'test');
    const rowsBefore = nonceRows(path);
    await refusedWith('ERR_AGENT_KEY_RETIRED', attempt('', retired));
    await refusedWith('ERR_TOKEN_INVALID', attempt('tok_made_up'));
    assert.equal(nonceRows(path), rowsBefore, 'no refused request left a nonce');

    // Two minutes later the single-use token has expired too; the key it enrolled needs none.
    const later = now + 120_000;
    const again = await attempt(single.secret, enrolled, later);
    assert.equal(again.status, 'AGENT_STATUS_ACTIVE');
  } finally {
    stores.close();
  }
});

test('expired nonces are pruned a batch at a time as new ones are recorded, so the table stays bounded without the hourly sweep', async () => {
  const path = join(dir, 'nonces.db');
  const stores = openStores(path);
  try {
    const key = Buffer.alloc(32, 7);
    const nonce = (index: number) => Buffer.from(index.toString(16).padStart(32, '0'), 'hex');
    for (let index = 0; index < 100; index += 1) assert.equal(await stores.registerNonces.remember(key, nonce(index), 1_000, 500), 'new');
    assert.equal(nonceRows(path), 100);
    const fresh = Math.ceil(100 / (NONCE_PRUNE_BATCH - 1)) + 1;
    for (let index = 0; index < fresh; index += 1) await stores.registerNonces.remember(key, nonce(1_000 + index), 10_000, 2_000);
    assert.equal(nonceRows(path), fresh, 'only the unexpired nonces are left');
    assert.equal(await stores.registerNonces.remember(key, nonce(1_000), 10_000, 2_000), 'used', 'an unexpired nonce is still recognised');
  } finally {
    stores.close();
  }
  // The clock set back (to 600, before the pruned rows' expiry of 1 000): a nonce expiring at or
  // before a pruned row could be a replay whose row is gone, so it is refused, after a restart too.
  const reopened = openStores(path);
  try {
    const key = Buffer.alloc(32, 7);
    assert.equal(await reopened.registerNonces.remember(key, Buffer.alloc(16, 1), 1_000, 600), 'forgotten');
    assert.equal(await reopened.registerNonces.remember(key, Buffer.alloc(16, 2), 1_001, 600), 'new', 'a later expiry is still judged by its row');
  } finally {
    reopened.close();
  }
});

test("a legacy Register's nonce is remembered for twice the allowed skew from the appliance's clock at most, however far ahead its timestamp", async () => {
  const path = join(dir, 'legacy-cap.db');
  const stores = openStores(path);
  try {
    const org = await stores.organisations.ensureDefault(Date.now());
    const jwtKey = await ensureJwtSigningKey(dir);
    const deps = { stores, jwt: new AgentJwtAuthority(jwtKey, 3600), challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log: pino({ level: 'silent' }) };
    const now = Date.now();
    const token = await createEnrolmentToken(stores, org.id, { label: 't', expiresInMs: 60_000, maxUses: 1, autoApprove: true, tags: {}, createdBy: 'test', source: 'admin', metadata: {} }, now);
    // Four minutes ahead: within the 5-minute skew, so accepted, but kept no longer than now + 10 min.
    await register(parseRegisterRequest(decodedRegister(signedRegister(newIdentity(), token.secret, {}, now + 4 * 60_000))), deps, now);
    const db = new Database(path, { readonly: true });
    try {
      assert.equal((db.prepare('SELECT max(expires_at) AS until FROM register_nonces').get() as { until: number }).until, now + 2 * REGISTER_CLOCK_SKEW_MS);
    } finally {
      db.close();
    }
  } finally {
    stores.close();
  }
});

test('the agent waits at least the retry hint, plus up to half again as jitter, instead of its backoff schedule', () => {
  assert.equal(new Backoff(() => 0).next(25_000), 25_000);
  const high = new Backoff(() => 0.9999);
  const delay = high.next(25_000);
  assert.ok(delay > 25_000 && delay <= 37_500, `${delay}`);
  const after = high.next();
  assert.ok(after > 32_000 && after < 60_000, `a hinted wait of ${delay} ms counts as time away: the next wait is drawn under the 60 s step (${after})`);
  const short = new Backoff(() => 0.9999);
  short.next(1_000);
  const afterShort = short.next();
  assert.ok(afterShort > 2_000 && afterShort < 4_000, `after a 1.5 s hinted wait the schedule goes on under its 4 s step (${afterShort})`);
  assert.equal(new Backoff(() => 0).next(0), RETRY_FLOOR_MS, 'a hint of 0 cannot make the agent retry in a busy loop');
});

test('the retry hint is read from trailing metadata, clamped, and a throttled Register is retried, never fatal', () => {
  const metadata = new grpc.Metadata();
  metadata.set(RETRY_AFTER_MS_METADATA, '12345');
  const failure = rpcFailure({ code: GrpcCode.RESOURCE_EXHAUSTED, details: 'ERR_REGISTER_THROTTLED: too many failed Register requests', metadata });
  assert.equal(failure.retryAfterMs, 12_345);
  assert.equal(failure.errorCode, 'ERR_REGISTER_THROTTLED');
  const outcome = outcomeOfFailure(failure, { tlsError: (reason) => new CtOpsError('ERR_INGEST_TLS_UNTRUSTED', reason) });
  assert.equal(outcome.kind, 'retry');
  assert.equal(rpcFailure({ code: GrpcCode.UNAVAILABLE, details: 'x' }).retryAfterMs, undefined);
  assert.equal(parseRetryAfterMs(['999999999999']), MAX_RETRY_AFTER_MS, 'a huge hint is capped');
  for (const bad of ['-5', '1e9', 'soon', '', '12.5']) assert.equal(parseRetryAfterMs([bad]), undefined, bad);
  assert.equal(parseRetryAfterMs([]), undefined);
});

test('the throttle counts IPv4 addresses and IPv6 /64 networks, not ports', () => {
  assert.equal(peerSource('127.0.0.1:5678'), '127.0.0.1');
  assert.equal(peerSource('127.0.0.2:1'), '127.0.0.2');
  assert.equal(peerSource('::ffff:10.0.0.1:443'), '10.0.0.1');
  assert.equal(peerSource('2001:db8:0:1:aaaa:bbbb:cccc:dddd:50000'), '2001:db8:0:1::/64');
  assert.equal(peerSource('2001:DB8:0:1::7:50001'), '2001:db8:0:1::/64', 'every address of one /64 is one source');
  assert.equal(peerSource('::1:443'), '0:0:0:0::/64');
  assert.equal(peerSource('[::1]:443'), '0:0:0:0::/64', 'a bracketed IPv6 peer is the same source');
  assert.equal(peerSource('unknown'), 'unknown');
});
