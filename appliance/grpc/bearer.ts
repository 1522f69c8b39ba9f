import type * as grpc from '@grpc/grpc-js';
import { bearerJwt, type AgentJwtAuthority, type VerifiedAgentJwt } from '../auth/agent-jwt.ts';

/** Verifies the `authorization: Bearer <jwt>` call metadata. */
export async function authenticateCall(metadata: grpc.Metadata, jwt: AgentJwtAuthority, now: number): Promise<VerifiedAgentJwt> {
  const values = metadata.get('authorization');
  const header = values.length === 1 && typeof values[0] === 'string' ? values[0] : undefined;
  return jwt.verify(bearerJwt(header), now);
}
