import type * as grpc from '@grpc/grpc-js';
import { CtOpsError } from '../../common/errors.ts';
import type { AgentJwtAuthority, VerifiedAgentJwt } from '../auth/agent-jwt.ts';

/** Verifies the `authorization: Bearer <jwt>` call metadata. */
export async function authenticateCall(metadata: grpc.Metadata, jwt: AgentJwtAuthority, now: number): Promise<VerifiedAgentJwt> {
  const values = metadata.get('authorization');
  const header = values.length === 1 && typeof values[0] === 'string' ? values[0] : undefined;
  const match = header ? /^Bearer ([A-Za-z0-9_.-]+)$/.exec(header) : null;
  if (!match?.[1]) throw new CtOpsError('ERR_JWT_MISSING', 'the call has no `authorization: Bearer <jwt>` metadata');
  return jwt.verify(match[1], now);
}
