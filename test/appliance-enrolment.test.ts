import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';

describe('Register over TLS against a real appliance', () => {
  const ingest = useIngestFixture();

  test('a single-use token admits exactly one of 20 racing agents', async () => {
    const { token, id } = await ingest.appliance.createToken('--max-uses', '1', '--auto-approve');
    const identities = Array.from({ length: 20 }, (_, index) => newIdentity(`racer-${index}`));
    const results = await Promise.all(identities.map((identity) => callRegister(ingest.client, signedRegister(identity, token))));
    const admitted = results.filter((result) => result.ok);
    assert.equal(admitted.length, 1);
    for (const refused of results.filter((result) => !result.ok)) {
      assert.equal(refused.ok === false && refused.code, GrpcCode.UNAUTHENTICATED);
      assert.equal(refused.ok === false && codeFromGrpcDetails(refused.details), 'ERR_TOKEN_EXHAUSTED');
    }
    const hosts = (await ingest.appliance.hosts()).filter((host) => host.hostname.startsWith('racer-'));
    assert.equal(hosts.length, 1);
    const tokens = await ingest.appliance.cliJson<Array<{ id: string; uses: number; state: string }>>('tokens', 'list');
    assert.deepEqual(tokens.find((entry) => entry.id === id), { ...tokens.find((entry) => entry.id === id), uses: 1, state: 'used-up' });
  });

  test('registration is idempotent per key and needs no token once enrolled, even after the token is used up and revoked', async () => {
    const { token, id } = await ingest.appliance.createToken('--auto-approve');
    const identity = newIdentity('idempotent');
    const first = await callRegister(ingest.client, signedRegister(identity, token));
    assert.ok(first.ok);
    assert.equal(first.value.status, 'AGENT_STATUS_ACTIVE');
    assert.ok(first.value.jwt.length > 20);
    assert.equal((await ingest.appliance.cli('tokens', 'revoke', id)).code, 0);
    const again = await callRegister(ingest.client, signedRegister(identity, ''));
    assert.ok(again.ok);
    assert.equal(again.value.agent_id, first.value.agent_id);
    assert.equal(again.value.status, 'AGENT_STATUS_ACTIVE');
    const withOldToken = await callRegister(ingest.client, signedRegister(identity, token));
    assert.ok(withOldToken.ok, 'a used-up, revoked token is not even looked at for a known key');
    assert.equal(withOldToken.value.agent_id, first.value.agent_id);
    assert.equal((await ingest.appliance.hosts()).filter((host) => host.hostname === 'idempotent').length, 1);
  });

  test('a pending host is told to retry and becomes active after an admin approves it', async () => {
    const { token } = await ingest.appliance.createToken();
    const identity = newIdentity('needs-approval');
    const first = await callRegister(ingest.client, signedRegister(identity, token));
    assert.ok(first.ok);
    assert.equal(first.value.status, 'AGENT_STATUS_PENDING');
    assert.equal(first.value.jwt, '');
    assert.equal(first.value.retry_after_secs, 1);
    assert.equal((await ingest.appliance.host(first.value.agent_id)).status, 'pending');
    assert.equal((await ingest.appliance.cli('hosts', 'approve', first.value.agent_id)).code, 0);
    const second = await callRegister(ingest.client, signedRegister(identity, ''));
    assert.ok(second.ok);
    assert.equal(second.value.status, 'AGENT_STATUS_ACTIVE');
    assert.equal((await ingest.appliance.host(first.value.agent_id)).status, 'never-connected');
  });

  test('an unsigned, tampered, stale or replayed Register is refused with its own code', async () => {
    const { token } = await ingest.appliance.createToken('--max-uses', '10');
    const identity = newIdentity('tamper');
    const cases: Array<[string, ReturnType<typeof signedRegister>, string]> = [
      ['unsigned', signedRegister(identity, token, { signature: Buffer.alloc(64) }), 'ERR_REGISTER_SIGNATURE_INVALID'],
      ['hostname changed after signing', signedRegister(identity, token, { hostname: 'someone-else' }), 'ERR_REGISTER_SIGNATURE_INVALID'],
      ['signed by another key', signedRegister(identity, token, { public_key: Buffer.from(newIdentity().keyPair.publicKey) }), 'ERR_REGISTER_SIGNATURE_INVALID'],
      ['ten minutes old', signedRegister(identity, token, {}, Date.now() - 10 * 60_000), 'ERR_REGISTER_STALE'],
      ['missing signature', signedRegister(identity, token, { signature: Buffer.alloc(0) }), 'ERR_INVALID_ARGUMENT'],
    ];
    for (const [name, request, code] of cases) {
      const result = await callRegister(ingest.client, request);
      assert.equal(result.ok, false, name);
      assert.equal(!result.ok && codeFromGrpcDetails(result.details), code, name);
    }
    const original = signedRegister(identity, token);
    const accepted = await callRegister(ingest.client, original);
    assert.ok(accepted.ok);
    const replayed = await callRegister(ingest.client, original);
    assert.equal(!replayed.ok && codeFromGrpcDetails(replayed.details), 'ERR_REGISTER_REPLAYED');
    assert.equal((await ingest.appliance.hosts()).filter((host) => host.hostname === 'tamper').length, 1);
  });

  test('unknown, revoked and missing tokens are refused and create no host', async () => {
    const { token: revoked, id } = await ingest.appliance.createToken();
    await ingest.appliance.cli('tokens', 'revoke', id);
    const identity = newIdentity('bad-token');
    for (const [token, code] of [
      ['tok_not-a-real-token', 'ERR_TOKEN_INVALID'],
      [revoked, 'ERR_TOKEN_REVOKED'],
      ['', 'ERR_TOKEN_REQUIRED'],
    ] as const) {
      const result = await callRegister(ingest.client, signedRegister(identity, token));
      assert.equal(!result.ok && result.code, GrpcCode.UNAUTHENTICATED);
      assert.equal(!result.ok && codeFromGrpcDetails(result.details), code);
    }
    assert.equal((await ingest.appliance.hosts()).filter((host) => host.hostname === 'bad-token').length, 0);
  });

  test('a second key from the same machine is held pending and flagged instead of merged', async () => {
    const { token } = await ingest.appliance.createToken('--max-uses', '2', '--auto-approve');
    const original = newIdentity('cloned-vm', 'machine-id-shared-by-clones');
    const clone = newIdentity('cloned-vm', 'machine-id-shared-by-clones');
    const first = await callRegister(ingest.client, signedRegister(original, token));
    const second = await callRegister(ingest.client, signedRegister(clone, token));
    assert.ok(first.ok && second.ok);
    assert.equal(first.value.status, 'AGENT_STATUS_ACTIVE');
    assert.equal(second.value.status, 'AGENT_STATUS_PENDING', 'auto-approve does not apply to a suspected clone');
    assert.notEqual(first.value.agent_id, second.value.agent_id);
    const flagged = await ingest.appliance.host(second.value.agent_id);
    assert.equal(flagged.fingerprint_conflict_with, first.value.agent_id);
  });

  test('a rejected host is told so and cannot be approved into streaming by a heartbeat', async () => {
    const { token } = await ingest.appliance.createToken();
    const identity = newIdentity('to-reject');
    const first = await callRegister(ingest.client, signedRegister(identity, token));
    assert.ok(first.ok);
    assert.equal((await ingest.appliance.cli('hosts', 'reject', first.value.agent_id)).code, 0);
    const again = await callRegister(ingest.client, signedRegister(identity, ''));
    assert.ok(again.ok);
    assert.equal(again.value.status, 'AGENT_STATUS_REJECTED');
    const revokeRejected = await ingest.appliance.cli('hosts', 'revoke', first.value.agent_id);
    assert.equal(revokeRejected.code, 65);
    assert.match(revokeRejected.stderr, /ERR_HOST_STATE_CONFLICT/);
  });

  test('the admin CLI reports unknown hosts and tokens with their error codes', async () => {
    const host = await ingest.appliance.cli('hosts', 'approve', 'hst_00000000000000000000');
    assert.equal(host.code, 66);
    assert.match(host.stderr, /ERR_HOST_NOT_FOUND/);
    const token = await ingest.appliance.cli('tokens', 'revoke', 'etk_00000000000000000000');
    assert.equal(token.code, 66);
    assert.match(token.stderr, /ERR_ENROLMENT_TOKEN_NOT_FOUND/);
  });
});
