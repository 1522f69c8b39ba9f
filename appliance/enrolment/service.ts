import { CtOpsError } from '../../common/errors.ts';
import type { RegisterResponse } from '../../common/proto.ts';
import type { EnrolmentToken } from '../model/enrolment.ts';
import { register, type RegisterDeps } from './register.ts';
import type { RegisterInput } from './register-input.ts';
import { createEnrolmentToken, type CreatedToken, type TokenRequest } from './tokens.ts';

/**
 * Owns enrolment: Register (a known key answered, a new one enrolled with a token, a retired
 * claimant's successor, the kept machine's key rotation — register.ts and the files it calls), and
 * the enrolment tokens admins issue, list and revoke. Times are ms since the epoch.
 */
export class EnrolmentService {
  readonly #deps: RegisterDeps;

  constructor(deps: RegisterDeps) {
    this.#deps = deps;
  }

  /** Answers a verified Register request (register.ts register: errors ERR_REGISTER_*, ERR_TOKEN_*, ERR_AGENT_KEY_RETIRED …). */
  register(input: RegisterInput, now: number): Promise<RegisterResponse> {
    return register(input, this.#deps, now);
  }

  listTokens(orgId: string): Promise<EnrolmentToken[]> {
    return this.#deps.stores.enrolmentTokens.list(orgId);
  }

  /** Issues a token (the secret is returned once, only its hash stored) and logs it without the secret. */
  async issueToken(orgId: string, request: TokenRequest, now: number): Promise<CreatedToken> {
    const created = await createEnrolmentToken(this.#deps.stores, orgId, request, now);
    this.#deps.log.info({ token_id: created.token.id, by: request.createdBy, max_uses: created.token.maxUses, auto_approve: created.token.autoApprove, source: request.source }, 'enrolment token created');
    return created;
  }

  /** Revokes the organisation's token (a no-op for one already revoked) and returns it; ERR_ENROLMENT_TOKEN_NOT_FOUND otherwise. */
  async revokeToken(orgId: string, tokenId: string, by: string, now: number): Promise<EnrolmentToken> {
    const { stores, log } = this.#deps;
    return stores.transact(async (tx) => {
      const token = await tx.enrolmentTokens.get(tokenId);
      if (!token || token.orgId !== orgId) throw new CtOpsError('ERR_ENROLMENT_TOKEN_NOT_FOUND', `no enrolment token ${tokenId}`, { token_id: tokenId });
      if (await tx.enrolmentTokens.revoke(token.id, now)) tx.afterCommit(() => log.info({ token_id: token.id, by }, 'enrolment token revoked'));
      return (await tx.enrolmentTokens.get(token.id)) ?? token;
    });
  }
}

