import { randomUUID } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { CtOpsError } from '../../common/errors.ts';
import type { JwtSigningKey } from '../pki/jwt-signing-key.ts';

export const AGENT_JWT_ISSUER = 'ct-ops-appliance';
export const AGENT_JWT_AUDIENCE = 'ct-ops-ingest';

/**
 * The JWT of an `authorization: Bearer <jwt>` header (gRPC metadata or HTTP, RFC 6750 2.1);
 * ERR_JWT_MISSING when the header is absent or not a Bearer token of JWT characters.
 */
export function bearerJwt(header: string | undefined): string {
  const match = header ? /^Bearer ([A-Za-z0-9_.-]+)$/.exec(header) : null;
  if (!match?.[1]) throw new CtOpsError('ERR_JWT_MISSING', 'the request has no `authorization: Bearer <jwt>`');
  return match[1];
}

export interface IssuedJwt {
  jwt: string;
  /** Seconds since the Unix epoch. */
  expiresAt: number;
}

export interface VerifiedAgentJwt {
  agentId: string;
  expiresAt: number;
  /** When it was issued (seconds since the Unix epoch). */
  issuedAt: number;
  jti: string;
}

/** Issues and verifies the agents' JWTs: EdDSA only, fixed issuer and audience. */
export class AgentJwtAuthority {
  readonly #key: JwtSigningKey;
  readonly ttlSecs: number;

  constructor(key: JwtSigningKey, ttlSecs: number) {
    this.#key = key;
    this.ttlSecs = ttlSecs;
  }

  async issue(agentId: string, nowMs: number): Promise<IssuedJwt> {
    const issuedAt = Math.floor(nowMs / 1000);
    const expiresAt = issuedAt + this.ttlSecs;
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: this.#key.kid })
      .setSubject(agentId)
      .setIssuer(AGENT_JWT_ISSUER)
      .setAudience(AGENT_JWT_AUDIENCE)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAt)
      .setJti(randomUUID())
      .sign(this.#key.privateKey);
    return { jwt, expiresAt };
  }

  async verify(jwt: string, nowMs: number): Promise<VerifiedAgentJwt> {
    try {
      const { payload } = await jwtVerify(jwt, this.#key.publicKey, {
        algorithms: ['EdDSA'],
        issuer: AGENT_JWT_ISSUER,
        audience: AGENT_JWT_AUDIENCE,
        currentDate: new Date(nowMs),
        requiredClaims: ['sub', 'exp', 'iat', 'jti'],
      });
      return { agentId: payload.sub as string, expiresAt: payload.exp as number, issuedAt: payload.iat as number, jti: payload.jti as string };
    } catch (cause) {
      if (cause instanceof joseErrors.JWTExpired) {
        throw new CtOpsError('ERR_JWT_EXPIRED', 'the agent JWT has expired; register again by key', {}, { cause });
      }
      throw new CtOpsError('ERR_JWT_INVALID', 'the agent JWT is not valid for this appliance', {}, { cause });
    }
  }
}
