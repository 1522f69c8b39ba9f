import { isClockOffsetHigh } from '../../common/clock-offset.ts';
import { GrpcCode, type CtOpsError } from '../../common/errors.ts';
import type { RegisterFreshness } from '../../common/register-payload.ts';
import type { IngestAddress } from '../config/address.ts';
import type { AgentKeys } from '../identity/keys.ts';
import type { AgentLogger } from '../log/logger.ts';
import type { IngestTransport, RegisterResult } from '../transport/types.ts';
import { outcomeOfFailure, outcomeOfResponse, statusName, type RegisterOutcome } from './outcome.ts';
import { buildRegisterRequest, type HostDescription } from './request.ts';

export interface RegistrationDeps {
  readonly transport: IngestTransport;
  readonly keys: AgentKeys;
  readonly host: HostDescription;
  /** The configured enrolment token ('' when none). */
  readonly orgToken: string;
  /** The ingest target in ASCII (logged as address) and in Unicode (address_unicode). */
  readonly address: Pick<IngestAddress, 'target' | 'unicodeTarget'>;
  readonly log: AgentLogger;
  readonly now: () => number;
  readonly nonce: () => Uint8Array;
  readonly tlsError: (reason: string) => CtOpsError;
  /** The retired key whose proof enrols this new key (sent instead of the token), if any. */
  readonly predecessor?: AgentKeys | undefined;
  /** Set in a key rotation: the appliance's nonce; `predecessor` is then the current key. */
  readonly rotationNonce?: Uint8Array | undefined;
}

/**
 * One Register exchange. A key the appliance already knows registers without the token
 * (it is not needed after enrolment and may since have expired); if the appliance
 * answers ERR_TOKEN_REQUIRED because it does not know the key after all, the request
 * is repeated once with the configured token.
 */
export async function attemptRegistration(deps: RegistrationDeps, keyKnown: boolean): Promise<RegisterOutcome> {
  const firstToken = keyKnown || deps.predecessor !== undefined ? '' : deps.orgToken;
  deps.log.info({ address: deps.address.target, address_unicode: deps.address.unicodeTarget }, 'registering agent');
  let result = await registerOnce(deps, firstToken);
  if (!result.ok && result.failure.errorCode === 'ERR_TOKEN_REQUIRED' && firstToken === '' && deps.orgToken !== '') {
    deps.log.warn({ address: deps.address.target, address_unicode: deps.address.unicodeTarget }, 'the appliance does not know this key; registering with the enrolment token');
    result = await registerOnce(deps, deps.orgToken);
  }
  if (!result.ok) return outcomeOfFailure(result.failure, { tlsError: deps.tlsError });
  deps.log.info({ status: statusName(result.response.status), agent_id: result.response.agent_id }, 'registration response');
  return outcomeOfResponse(result.response);
}

/**
 * Asks for a challenge and sends a Register signed over it: the appliance judges its freshness by
 * its own clock, so this host's clock may be wrong by any amount. An appliance without
 * GetRegisterChallenge (UNIMPLEMENTED) gets the legacy form, timestamp and nonce, which needs
 * this host's clock within minutes of the appliance's.
 */
async function registerOnce(deps: RegistrationDeps, orgToken: string): Promise<RegisterResult> {
  const asked = await deps.transport.getRegisterChallenge();
  let freshness: RegisterFreshness;
  if (asked.ok) {
    const offsetMs = deps.now() - asked.response.appliance_time_unix_ms;
    if (isClockOffsetHigh(offsetMs)) deps.log.warn({ clock_offset_ms: offsetMs }, 'host clock differs from the appliance');
    freshness = { challenge: asked.response.challenge };
  } else if (asked.failure.grpcCode === GrpcCode.UNIMPLEMENTED) {
    freshness = { timestampUnixMs: deps.now(), nonce: deps.nonce() };
  } else {
    return asked;
  }
  return deps.transport.register(buildRegisterRequest(deps.host, deps.keys, orgToken, freshness, deps.predecessor, deps.rotationNonce));
}
