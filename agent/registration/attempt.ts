import type { CtOpsError } from '../../common/errors.ts';
import type { AgentKeys } from '../identity/keys.ts';
import type { AgentLogger } from '../log/logger.ts';
import type { IngestTransport } from '../transport/types.ts';
import { outcomeOfFailure, outcomeOfResponse, statusName, type RegisterOutcome } from './outcome.ts';
import { buildRegisterRequest, type HostDescription } from './request.ts';

export interface RegistrationDeps {
  readonly transport: IngestTransport;
  readonly keys: AgentKeys;
  readonly host: HostDescription;
  /** The configured enrolment token ('' when none). */
  readonly orgToken: string;
  readonly address: string;
  readonly log: AgentLogger;
  readonly now: () => number;
  readonly nonce: () => Uint8Array;
  readonly tlsError: (reason: string) => CtOpsError;
  /** The retired key whose proof enrols this new key (sent instead of the token), if any. */
  readonly predecessor?: AgentKeys | undefined;
}

/**
 * One Register exchange. A key the appliance already knows registers without the token
 * (it is not needed after enrolment and may since have expired); if the appliance
 * answers ERR_TOKEN_REQUIRED because it does not know the key after all, the request
 * is repeated once with the configured token.
 */
export async function attemptRegistration(deps: RegistrationDeps, keyKnown: boolean): Promise<RegisterOutcome> {
  const firstToken = keyKnown || deps.predecessor !== undefined ? '' : deps.orgToken;
  deps.log.info({ address: deps.address }, 'registering agent');
  let result = await deps.transport.register(signed(deps, firstToken));
  if (!result.ok && result.failure.errorCode === 'ERR_TOKEN_REQUIRED' && firstToken === '' && deps.orgToken !== '') {
    deps.log.warn({ address: deps.address }, 'the appliance does not know this key; registering with the enrolment token');
    result = await deps.transport.register(signed(deps, deps.orgToken));
  }
  if (!result.ok) return outcomeOfFailure(result.failure, { tlsError: deps.tlsError });
  deps.log.info({ status: statusName(result.response.status), agent_id: result.response.agent_id }, 'registration response');
  return outcomeOfResponse(result.response);
}

function signed(deps: RegistrationDeps, orgToken: string) {
  return buildRegisterRequest(deps.host, deps.keys, orgToken, deps.now(), deps.nonce(), deps.predecessor);
}
