import { hashSecret, newId, newSecret } from '../lib/ids.ts';
import type { EnrolmentToken, Tags } from '../model/enrolment.ts';
import type { Stores } from '../store/index.ts';

export const DEFAULT_TOKEN_LIFETIME_MS = 7 * 86_400_000;

export interface TokenRequest {
  label: string;
  expiresInMs: number;
  maxUses: number;
  autoApprove: boolean;
  tags: Tags;
  createdBy: string;
  source: string;
  metadata: Readonly<Record<string, string>>;
}

export interface CreatedToken {
  token: EnrolmentToken;
  /** The secret itself: shown once, never stored. */
  secret: string;
}

/** Issues a token of the organisation (`now` ms since the epoch); only the secret's hash is stored. */
export async function createEnrolmentToken(stores: Stores, orgId: string, request: TokenRequest, now: number): Promise<CreatedToken> {
  const secret = newSecret('tok');
  const { expiresInMs, ...fields } = request;
  const token = { id: newId('etk'), orgId, createdAt: now, expiresAt: now + expiresInMs, ...fields };
  await stores.enrolmentTokens.insert({ ...token, secretHash: hashSecret(secret) });
  return { token: { ...token, uses: 0, revokedAt: null }, secret };
}

/** The state of a token as an admin sees it. */
export type TokenState = 'active' | 'expired' | 'revoked' | 'used-up';

export function tokenState(token: EnrolmentToken, now: number): TokenState {
  if (token.revokedAt !== null) return 'revoked';
  if (token.uses >= token.maxUses) return 'used-up';
  if (token.expiresAt <= now) return 'expired';
  return 'active';
}
