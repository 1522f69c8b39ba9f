import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { codeFromGrpcDetails } from '../common/errors.ts';
import type { IngestServiceClient, RegisterRequest } from '../common/proto.ts';
import type { TestAppliance } from './helpers/appliance.ts';
import { ClockedAppliance } from './helpers/faketime.ts';
import { callGetRegisterChallenge, callRegister, challengedRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';

/**
 * A real appliance whose wall clock libfaketime moves while it runs: stepped an hour forward
 * (expired register_nonces rows are pruned) and back. A Register captured before the step must
 * not be accepted again afterwards, in either form: the store's prune watermark refuses anything
 * expiring at or before a row it already forgot.
 */
describe("a captured Register replayed after the appliance's clock stepped forward and back", () => {
  let clocked: ClockedAppliance;
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  const setClock = (offset: string): void => clocked.setClock(offset);

  before(async () => {
    clocked = await ClockedAppliance.start();
    ({ appliance, client } = clocked);
  });
  after(async () => {
    await clocked?.dispose();
  });

  async function challenge(): Promise<Uint8Array> {
    const answer = await callGetRegisterChallenge(client);
    assert.ok(answer.ok, 'GetRegisterChallenge');
    return answer.value.challenge;
  }

  async function outcome(request: RegisterRequest): Promise<string> {
    const answer = await callRegister(client, request);
    return answer.ok ? 'accepted' : (codeFromGrpcDetails(answer.details) ?? answer.details);
  }

  test('refused in the challenge form and the legacy form; Registers are accepted again once the clock is back past the pruned rows', async () => {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '5');
    const victim = newIdentity('replay-victim');
    const capturedChallenged = challengedRegister(victim, token, await challenge());
    const capturedLegacy = signedRegister(victim, '');
    assert.equal(await outcome(capturedChallenged), 'accepted');
    assert.equal(await outcome(capturedLegacy), 'accepted', 'a known key registers again without a token');
    assert.equal(await outcome(capturedChallenged), 'ERR_REGISTER_REPLAYED');
    assert.equal(await outcome(capturedLegacy), 'ERR_REGISTER_REPLAYED');

    // An hour on: the next accepted Register prunes the expired rows, the victim's among them.
    setClock('+1h');
    assert.equal(await outcome(challengedRegister(newIdentity('replay-pruner'), token, await challenge())), 'accepted');

    setClock('+0');
    assert.equal(await outcome(capturedChallenged), 'ERR_REGISTER_CHALLENGE_EXPIRED', 'the captured challenge-form Register is not accepted again');
    assert.equal(await outcome(capturedLegacy), 'ERR_REGISTER_STALE', 'nor the captured legacy-form one');
    // The cost of a clock set back: until it passes the pruned rows again, fresh Registers wait too.
    const late = newIdentity('replay-late');
    assert.equal(await outcome(challengedRegister(late, token, await challenge())), 'ERR_REGISTER_CHALLENGE_EXPIRED');
    setClock('+1h');
    assert.equal(await outcome(challengedRegister(late, token, await challenge())), 'accepted');
  });
});
