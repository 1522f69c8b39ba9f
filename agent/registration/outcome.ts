import { CtOpsError, GrpcCode } from '../../common/errors.ts';
import type { RegisterResponse__Output } from '../../common/proto.ts';
import { isCertificateTimeFailure, isTlsTrustFailure } from '../transport/failure.ts';
import type { RpcFailure } from '../transport/types.ts';

/** The appliance's poll interval when a pending response names none. */
export const DEFAULT_PENDING_RETRY_SECS = 30;

/** What the agent does after one Register exchange. */
export type RegisterOutcome =
  | { readonly kind: 'active'; readonly agentId: string; readonly jwt: string; readonly jwtExpiresUnix: number | undefined }
  /** Pending, or any status this agent does not know: ask again later, never exit. */
  | { readonly kind: 'pending'; readonly agentId: string; readonly status: string; readonly retryAfterSecs: number; readonly message: string }
  /** An admin revoked or rejected the host: stop and stay stopped. */
  | { readonly kind: 'refused'; readonly agentId: string; readonly status: string; readonly message: string }
  /** A transient failure: retry on the backoff schedule. */
  | { readonly kind: 'retry'; readonly failure: RpcFailure; readonly clockSkew: boolean; readonly certificateTime?: boolean }
  /** Retrying cannot help (bad token, untrusted certificate). */
  | { readonly kind: 'fatal'; readonly error: CtOpsError };

/** "AGENT_STATUS_ACTIVE" → "active", as the spec's log lines show it. */
export function statusName(status: string): string {
  return String(status).replace(/^AGENT_STATUS_/, '').toLowerCase();
}

export function outcomeOfResponse(response: RegisterResponse__Output): RegisterOutcome {
  const status = statusName(response.status);
  const message = response.message ?? '';
  switch (response.status) {
    case 'AGENT_STATUS_ACTIVE':
      // An active answer without a credential cannot be used; asking again is the safe reading.
      if (response.jwt) {
        return { kind: 'active', agentId: response.agent_id, jwt: response.jwt, jwtExpiresUnix: response.jwt_expires_unix > 0 ? response.jwt_expires_unix : undefined };
      }
      break;
    case 'AGENT_STATUS_REVOKED':
    case 'AGENT_STATUS_REJECTED':
      return { kind: 'refused', agentId: response.agent_id, status, message };
    default:
      break;
  }
  return { kind: 'pending', agentId: response.agent_id, status, retryAfterSecs: clampRetryAfter(response.retry_after_secs), message };
}

export function clampRetryAfter(secs: number): number {
  if (!Number.isFinite(secs) || secs <= 0) return DEFAULT_PENDING_RETRY_SECS;
  return Math.min(3600, Math.max(1, Math.round(secs)));
}

export interface FailureContext {
  /** The ingest address and CA setting, named in a TLS error. */
  readonly tlsError: (reason: string) => CtOpsError;
}

export function outcomeOfFailure(failure: RpcFailure, context: FailureContext): RegisterOutcome {
  const code = failure.errorCode;
  if (code !== undefined && code.startsWith('ERR_TOKEN_')) {
    const reason = failure.details.slice(code.length + 1).trim() || code;
    const message =
      code === 'ERR_TOKEN_REQUIRED'
        ? `the appliance does not know this agent's key and no enrolment token was sent (${reason}); set [agent] org_token or CT_OPS_ORG_TOKEN`
        : `the appliance refused the enrolment token (${reason}); set a valid token in [agent] org_token or CT_OPS_ORG_TOKEN`;
    return { kind: 'fatal', error: new CtOpsError(code, message, { grpc_code: failure.grpcCode }) };
  }
  if (code === 'ERR_AGENT_KEY_RETIRED') {
    // The host was deleted: this identity can never come back. A new enrolment needs a new key.
    const message = `the appliance retired this agent's key (the host was deleted); to enrol again, remove the data directory and set a new enrolment token`;
    return { kind: 'fatal', error: new CtOpsError(code, message, { grpc_code: failure.grpcCode }) };
  }
  if (code === 'ERR_SUCCESSOR_REFUSED') {
    const message = `the appliance refused to enrol this new key in place of the retired one (${failure.details}); enrol it with a new enrolment token: remove retired_agent_key.pem from the data directory and set [agent] org_token`;
    return { kind: 'fatal', error: new CtOpsError(code, message, { grpc_code: failure.grpcCode }) };
  }
  if (failure.grpcCode === GrpcCode.UNAVAILABLE && isTlsTrustFailure(failure)) {
    return { kind: 'fatal', error: context.tlsError(failure.details) };
  }
  // The certificate is not valid at this host's clock: retried until NTP sets the clock.
  if (failure.grpcCode === GrpcCode.UNAVAILABLE && code === undefined && isCertificateTimeFailure(failure.details)) {
    return { kind: 'retry', failure, clockSkew: true, certificateTime: true };
  }
  return { kind: 'retry', failure, clockSkew: code === 'ERR_REGISTER_STALE' };
}
