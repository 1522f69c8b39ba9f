import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import type { IngestServiceClient } from '../common/proto.ts';
import { REGISTER_CHALLENGE_BYTES, REGISTER_CHALLENGE_LIFETIME_MS } from '../appliance/enrolment/register-challenge.ts';
import { REGISTER_FAILURES_PER_WINDOW } from '../appliance/enrolment/register-throttle.ts';
import type { TestAppliance } from './helpers/appliance.ts';
import { ClockedAppliance } from './helpers/faketime.ts';
import { callGetRegisterChallenge, callRegister, challengedRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';

/**
 * Register's freshness proved by the appliance's challenge, against a real appliance whose wall
 * clock the test moves (libfaketime reading its offset from a file): the challenge's age is
 * judged by the appliance's clock alone, and each challenge admits one Register per key.
 */
describe('Register challenges against a real appliance', () => {
  let clocked: ClockedAppliance;
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  const setApplianceClock = (offset: string): void => clocked.setClock(offset);

  before(async () => {
    clocked = await ClockedAppliance.start();
    ({ appliance, client } = clocked);
  });
  after(async () => {
    await clocked?.dispose();
  });

  async function challenge(): Promise<Buffer> {
    const answer = await callGetRegisterChallenge(client);
    assert.ok(answer.ok, JSON.stringify(answer));
    return answer.value.challenge;
  }

  async function refusal(request: ReturnType<typeof signedRegister>): Promise<{ code: number; errorCode: string | undefined }> {
    const result = await callRegister(client, request);
    assert.equal(result.ok, false, 'refused');
    return { code: !result.ok ? result.code : 0, errorCode: !result.ok ? codeFromGrpcDetails(result.details) : undefined };
  }

  test("GetRegisterChallenge answers a fresh challenge, its lifetime and the appliance's time", async () => {
    const before = Date.now();
    const first = await callGetRegisterChallenge(client);
    const second = await callGetRegisterChallenge(client);
    assert.ok(first.ok && second.ok);
    assert.notDeepEqual(first.value.challenge, second.value.challenge);
    assert.equal(first.value.expires_in_ms, REGISTER_CHALLENGE_LIFETIME_MS);
    assert.ok(Math.abs(first.value.appliance_time_unix_ms - before) < 10_000, 'the appliance clock, here the true time');
  });

  test('a Register signed over a challenge enrols; the same request replayed is refused ERR_REGISTER_REPLAYED and enrols nothing more', async () => {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '5');
    const identity = newIdentity('challenge-replay');
    const request = challengedRegister(identity, token, await challenge());
    const accepted = await callRegister(client, request);
    assert.ok(accepted.ok, JSON.stringify(accepted));
    assert.equal(accepted.value.status, 'AGENT_STATUS_ACTIVE');
    assert.deepEqual(await refusal(request), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_REPLAYED' });
    // The same challenge re-signed by the same key (not a byte-for-byte replay) is refused too.
    assert.deepEqual(await refusal(challengedRegister(identity, '', request.register_challenge as Buffer)), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_REPLAYED' });
    assert.equal((await appliance.hosts()).filter((host) => host.hostname === 'challenge-replay').length, 1);
  });

  test("a challenge older than its lifetime by the appliance's clock is refused ERR_REGISTER_CHALLENGE_EXPIRED; a fresh one then works", async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const identity = newIdentity('challenge-expired');
    const old = await challenge();
    try {
      setApplianceClock(`+${Math.ceil(REGISTER_CHALLENGE_LIFETIME_MS / 60_000) + 1}m`);
      assert.deepEqual(await refusal(challengedRegister(identity, token, old)), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_CHALLENGE_EXPIRED' });
      const fresh = await callRegister(client, challengedRegister(identity, token, await challenge()));
      assert.ok(fresh.ok && fresh.value.status === 'AGENT_STATUS_ACTIVE', JSON.stringify(fresh));
    } finally {
      setApplianceClock('+0');
    }
  });

  test('a forged or altered challenge is refused ERR_REGISTER_CHALLENGE_INVALID; one of the wrong size ERR_INVALID_ARGUMENT; both forms at once ERR_INVALID_ARGUMENT', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const identity = newIdentity('challenge-forged');
    const altered = Buffer.from(await challenge());
    // Moving the issue time forward would stretch its life: the MAC covers it.
    altered.writeBigUInt64BE(altered.readBigUInt64BE(1) + 60_000n, 1);
    assert.deepEqual(await refusal(challengedRegister(identity, token, altered)), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_CHALLENGE_INVALID' });
    assert.deepEqual(await refusal(challengedRegister(identity, token, Buffer.alloc(altered.length, 7))), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_CHALLENGE_INVALID' });
    assert.deepEqual(await refusal(challengedRegister(identity, token, Buffer.alloc(16, 7))), { code: GrpcCode.INVALID_ARGUMENT, errorCode: 'ERR_INVALID_ARGUMENT' });
    const both = challengedRegister(identity, token, await challenge(), { timestamp_unix_ms: Date.now(), nonce: Buffer.alloc(16, 1) });
    assert.deepEqual(await refusal(both), { code: GrpcCode.INVALID_ARGUMENT, errorCode: 'ERR_INVALID_ARGUMENT' });
    assert.equal((await appliance.hosts()).filter((host) => host.hostname === 'challenge-forged').length, 0);
  });

  test('the legacy Register (timestamp and nonce, agents without challenges) is still accepted within 5 minutes, refused ERR_REGISTER_STALE beyond', async () => {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '2');
    const fresh = newIdentity('legacy-fresh');
    const accepted = await callRegister(client, signedRegister(fresh, token));
    assert.ok(accepted.ok && accepted.value.status === 'AGENT_STATUS_ACTIVE', JSON.stringify(accepted));
    assert.deepEqual(await refusal(signedRegister(newIdentity('legacy-stale'), token, {}, Date.now() + 10 * 60_000)), { code: GrpcCode.UNAUTHENTICATED, errorCode: 'ERR_REGISTER_STALE' });

    // Logged at info with the agent's version, once per key per appliance run, not once per Register.
    for (let again = 0; again < 3; again += 1) assert.ok((await callRegister(client, signedRegister(fresh, ''))).ok, 'a known key registers again');
    const keyPrefix = Buffer.from(fresh.keyPair.publicKey).toString('base64url').slice(0, 12);
    const logged = appliance.process.logged('legacy Register (agent without GetRegisterChallenge)', { public_key_prefix: keyPrefix });
    assert.equal(logged.length, 1, 'one line for four Registers of one key');
    assert.deepEqual([logged[0]!.level, logged[0]!.register_form, logged[0]!.agent_version], [30, 'legacy', '0.1.0-test']);
  });

  // Last: it throttles this test's source (127.0.0.1) for the rest of the window.
  test('a source the Register throttle holds gets no challenge either (ERR_REGISTER_THROTTLED); challenges never count as failures', async () => {
    for (let index = 0; index < 3 * REGISTER_FAILURES_PER_WINDOW; index += 1) assert.ok((await callGetRegisterChallenge(client)).ok, 'challenges spend no failure budget');
    const forged = challengedRegister(newIdentity('throttled'), 'tok_unknown', Buffer.alloc(REGISTER_CHALLENGE_BYTES, 9));
    // The earlier tests' refusals spent part of this source's budget already: fail until it is held.
    const codes = new Set<string | undefined>();
    for (let index = 0; index < REGISTER_FAILURES_PER_WINDOW; index += 1) codes.add((await refusal(forged)).errorCode);
    assert.deepEqual([...codes], ['ERR_REGISTER_CHALLENGE_INVALID', 'ERR_REGISTER_THROTTLED']);
    const refused = await callGetRegisterChallenge(client);
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.equal(!refused.ok && codeFromGrpcDetails(refused.details), 'ERR_REGISTER_THROTTLED');
  });
});
