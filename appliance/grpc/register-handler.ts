import type * as grpc from '@grpc/grpc-js';
import type { RegisterChallenge, RegisterChallengeRequest__Output, RegisterRequest__Output, RegisterResponse } from '../../common/proto.ts';
import { parseRegisterRequest } from '../enrolment/register-input.ts';
import type { RegisterChallenges } from '../enrolment/register-challenge.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { Services } from '../services.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

/** What the Register calls need: the enrolment workflow and the stateless challenge issuer. */
export interface RegisterDeps {
  services: Pick<Services, 'enrolment'>;
  challenges: RegisterChallenges;
}

/**
 * Register: throttled per source (RegisterThrottle); refusals go to the aggregated RefusalLog keyed
 * by the source, since the peer is not authenticated yet. EnrolmentService decides.
 */
export function registerHandler(deps: RegisterDeps & Pick<IngestGuards, 'refusals' | 'registerThrottle'>): grpc.handleUnaryCall<RegisterRequest__Output, RegisterResponse> {
  const throttle = deps.registerThrottle;
  return (call, callback) => {
    const source = peerSource(call.getPeer());
    // The throttle answers first, so a throttled source costs no parsing, signature check or query.
    throttle
      .admit(source)
      .then(() => deps.services.enrolment.register(parseRegisterRequest(call.request), Date.now()))
      .then(
        (response) => callback(null, response),
        async (error: unknown) => callback(await refuseRegister(deps, source, error)),
      );
  };
}

/**
 * GetRegisterChallenge: a fresh challenge for the source's next Register. Nothing is stored per
 * challenge (register-challenge.ts), so a flood costs a MAC per call and no memory; a source
 * the Register throttle holds gets no challenge either.
 */
export function registerChallengeHandler(deps: Pick<RegisterDeps, 'challenges'> & Pick<IngestGuards, 'refusals' | 'registerThrottle'>): grpc.handleUnaryCall<RegisterChallengeRequest__Output, RegisterChallenge> {
  return (call, callback) => {
    const source = peerSource(call.getPeer());
    deps.registerThrottle
      .admit(source)
      .then((): RegisterChallenge => {
        const now = Date.now();
        const issued = deps.challenges.issue(now);
        return { challenge: issued.challenge, expires_in_ms: issued.expiresInMs, appliance_time_unix_ms: now };
      })
      .then(
        (challenge) => callback(null, challenge),
        async (error: unknown) => callback(await refuseRegister(deps, source, error)),
      );
  };
}

/**
 * Records a refused Register from `source` (its failure budget, the refusal log) and
 * returns the status to answer; shared by the handler and by the strict deserializer's refusals
 * (appliance/grpc/malformed-requests.ts), so garbage spends a source's budget like a forged signature.
 */
export async function refuseRegister(guards: Pick<IngestGuards, 'refusals' | 'registerThrottle'>, source: string, error: unknown): Promise<ReturnType<typeof toServiceError>> {
  await guards.registerThrottle.refused(source, error);
  guards.refusals.refused({ peer: source }, error, 'register');
  return toServiceError(error);
}
